import { describe, expect, it } from 'vitest';
import { endpointKey, FlowIndex, pairHash } from '../../../stack/nat/flow-key.js';
import { NatFlow } from '../../../stack/nat/flow-table.js';

describe('endpointKey', () => {
  it('is exact and distinct over the whole range', () => {
    expect(endpointKey(0, 0)).toBe(0);
    expect(endpointKey(0xffffffff, 0xffff)).toBe(2 ** 48 - 1);
    expect(endpointKey(1, 0)).toBe(65536);
    expect(endpointKey(0, 65535)).not.toBe(endpointKey(1, 0));
    expect(endpointKey(-1, 0)).toBe(endpointKey(0xffffffff, 0)); // signed ips are normalised
  });
});

describe('pairHash', () => {
  it('stays a safe integer and depends on both keys and their order', () => {
    const seen = new Set<number>();
    for (const a of [0, 1, 2 ** 48 - 1, endpointKey(0x0a000264, 40000)]) {
      for (const b of [0, 1, 2 ** 48 - 1, endpointKey(0x08080808, 53)]) {
        const h = pairHash(a, b);
        expect(Number.isSafeInteger(h)).toBe(true);
        expect(h).toBeGreaterThanOrEqual(0);
        seen.add(h);
      }
    }
    expect(seen.size).toBe(16);
    expect(pairHash(1, 2)).not.toBe(pairHash(2, 1));
  });
});

describe('FlowIndex', () => {
  it('tells flows apart when every hash collides', () => {
    const idx = new FlowIndex<NatFlow>(() => 42);
    const flows = Array.from({ length: 5 }, () => new NatFlow());
    flows.forEach((f, i) => idx.add(f, i, 100 - i));
    expect(idx.size).toBe(5);
    flows.forEach((f, i) => expect(idx.get(i, 100 - i)).toBe(f));
    expect(idx.get(0, 0)).toBeNull();
    // Remove from the middle, the head and the tail of the chain.
    expect(idx.remove(flows[2])).toBe(true);
    expect(idx.remove(flows[4])).toBe(true); // last added = head
    expect(idx.remove(flows[0])).toBe(true); // first added = tail
    expect(idx.remove(flows[0])).toBe(false);
    expect(idx.size).toBe(2);
    expect(idx.get(1, 99)).toBe(flows[1]);
    expect(idx.get(3, 97)).toBe(flows[3]);
    expect(idx.get(2, 98)).toBeNull();
  });

  it('stays consistent over many random inserts and removals', () => {
    const idx = new FlowIndex<NatFlow>();
    const live = new Map<string, NatFlow>();
    let seed = 1;
    const rnd = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    for (let i = 0; i < 20000; i++) {
      const a = endpointKey(0x0a000200 + rnd(4), rnd(300));
      const b = endpointKey(0x08080800 + rnd(4), rnd(30));
      const k = `${a}/${b}`;
      const have = live.get(k);
      expect(idx.get(a, b)).toBe(have ?? null);
      if (have) {
        idx.remove(have);
        live.delete(k);
      } else {
        const f = new NatFlow();
        idx.add(f, a, b);
        live.set(k, f);
      }
    }
    expect(idx.size).toBe(live.size);
  });
});
