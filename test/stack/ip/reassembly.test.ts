import { describe, expect, it } from 'vitest';
import {
  IpReassembler,
  MAX_REASSEMBLED_PAYLOAD,
  REASSEMBLY_MAX_BYTES,
  REASSEMBLY_MAX_DATAGRAMS,
  REASSEMBLY_TIMEOUT_MS,
} from '../../../stack/ip/reassembly.js';

const SRC = 0x0a00020f;
const DST = 0x5db8d822;
const UDP = 17;

function pattern(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + seed * 13 + (i >>> 8)) & 0xff;
  return b;
}

/** Feeds data[start, end) as one fragment. */
function feed(r: IpReassembler, data: Buffer, start: number, end: number, mf: boolean, now = 0, id = 1, src = SRC) {
  return r.input(src, DST, UDP, id, start, mf, data, start, end - start, now);
}

describe('IpReassembler', () => {
  it('has Linux-like defaults', () => {
    const r = new IpReassembler();
    expect(r.maxDatagrams).toBe(REASSEMBLY_MAX_DATAGRAMS);
    expect(REASSEMBLY_MAX_DATAGRAMS).toBe(64);
    expect(r.maxBytes).toBe(REASSEMBLY_MAX_BYTES);
    expect(REASSEMBLY_MAX_BYTES).toBe(4 * 1024 * 1024);
    expect(r.timeoutMs).toBe(REASSEMBLY_TIMEOUT_MS);
    expect(REASSEMBLY_TIMEOUT_MS).toBe(30_000);
    expect(r.pollAt()).toBe(Infinity);
  });

  it('reassembles in order, byte-exact, and frees the slot', () => {
    const r = new IpReassembler();
    const d = pattern(3080);
    expect(feed(r, d, 0, 1480, true)).toBeNull();
    expect(feed(r, d, 1480, 2960, true)).toBeNull();
    expect(r.inProgress).toBe(1);
    expect(r.bufferedBytes).toBe(2960);
    const out = feed(r, d, 2960, 3080, false);
    expect(out).not.toBeNull();
    expect(out!.buf.subarray(out!.off, out!.off + out!.len).equals(d)).toBe(true);
    expect(r.inProgress).toBe(0);
    expect(r.bufferedBytes).toBe(0);
    expect(r.reassembled).toBe(1);
    expect(r.pollAt()).toBe(Infinity);
  });

  it('reassembles in reverse and interleaved orders', () => {
    const r = new IpReassembler();
    const a = pattern(5000, 2);
    const b = pattern(2001, 3);
    expect(feed(r, a, 4000, 5000, false, 0, 1)).toBeNull();
    expect(feed(r, b, 1000, 2001, false, 0, 2)).toBeNull();
    expect(feed(r, a, 2000, 4000, true, 0, 1)).toBeNull();
    const outB = feed(r, b, 0, 1000, true, 0, 2);
    expect(outB!.buf.subarray(outB!.off, outB!.off + outB!.len).equals(b)).toBe(true);
    expect(feed(r, a, 0, 2000, true, 0, 1)!.buf.subarray(0, 5000).equals(a)).toBe(true);
    expect(r.reassembled).toBe(2);
  });

  it('keeps datagrams apart by src, dst, protocol and id', () => {
    const r = new IpReassembler();
    const d = pattern(16);
    expect(r.input(SRC, DST, UDP, 9, 0, true, d, 0, 8, 0)).toBeNull();
    expect(r.input(SRC, DST + 1, UDP, 9, 8, false, d, 8, 8, 0)).toBeNull();
    expect(r.input(SRC, DST, 6, 9, 8, false, d, 8, 8, 0)).toBeNull();
    expect(r.input(SRC + 1, DST, UDP, 9, 8, false, d, 8, 8, 0)).toBeNull();
    expect(r.input(SRC, DST, UDP, 10, 8, false, d, 8, 8, 0)).toBeNull();
    expect(r.inProgress).toBe(5);
    expect(r.input(SRC, DST, UDP, 9, 8, false, d, 8, 8, 0)!.len).toBe(16);
    expect(r.inProgress).toBe(4);
    // The slot chain for (SRC, id 9) still finds the others.
    expect(r.input(SRC, DST + 1, UDP, 9, 0, true, d, 0, 8, 0)!.len).toBe(16);
    expect(r.input(SRC, DST, 6, 9, 0, true, d, 0, 8, 0)!.len).toBe(16);
    expect(r.inProgress).toBe(2);
  });

  it('hands an unfragmented packet back without copying', () => {
    const r = new IpReassembler();
    const d = pattern(100);
    const out = r.input(SRC, DST, UDP, 1, 0, false, d, 10, 50, 0);
    expect(out!.buf).toBe(d);
    expect(out!.off).toBe(10);
    expect(out!.len).toBe(50);
    expect(r.inProgress).toBe(0);
  });

  it('kills the datagram on an overlap with different bytes', () => {
    const r = new IpReassembler();
    const d = pattern(3000);
    feed(r, d, 0, 1480, true);
    const evil = Buffer.from(d);
    evil[1000] ^= 0xff;
    expect(feed(r, evil, 1000, 1480, true)).toBeNull();
    expect(r.drops['frag-overlap']).toBe(1);
    expect(r.inProgress).toBe(0);
    expect(r.bufferedBytes).toBe(0);
    // What is left cannot complete a datagram.
    expect(feed(r, d, 1480, 3000, false)).toBeNull();
    expect(r.inProgress).toBe(1);
  });

  it('kills the datagram on a partial overlap even with equal bytes', () => {
    const r = new IpReassembler();
    const d = pattern(3000);
    feed(r, d, 0, 1480, true);
    expect(feed(r, d, 1472, 2000, true)).toBeNull();
    expect(r.drops['frag-overlap']).toBe(1);
    expect(r.inProgress).toBe(0);
  });

  it('ignores exact duplicates', () => {
    const r = new IpReassembler();
    const d = pattern(2001);
    feed(r, d, 0, 1000, true);
    expect(feed(r, d, 0, 1000, true)).toBeNull();
    expect(feed(r, d, 1000, 2001, false)!.len).toBe(2001);
    expect(r.drops['frag-duplicate']).toBe(1);
    const r2 = new IpReassembler();
    feed(r2, d, 1000, 2001, false);
    expect(feed(r2, d, 1000, 2001, false)).toBeNull();
    expect(r2.drops['frag-duplicate']).toBe(1);
    expect(feed(r2, d, 0, 1000, true)!.len).toBe(2001);
  });

  it('refuses non-last fragments that are not a multiple of 8 long', () => {
    const r = new IpReassembler();
    const d = pattern(100);
    expect(feed(r, d, 0, 13, true)).toBeNull();
    expect(feed(r, d, 8, 8, true)).toBeNull(); // empty
    expect(r.drops['frag-bad-length']).toBe(2);
    expect(r.inProgress).toBe(0);
  });

  it('refuses offsets that are not 8-byte units or out of range, and bad ranges', () => {
    const r = new IpReassembler();
    const d = pattern(100);
    expect(r.input(SRC, DST, UDP, 1, 4, true, d, 0, 8, 0)).toBeNull();
    expect(r.input(SRC, DST, UDP, 1, -8, true, d, 0, 8, 0)).toBeNull();
    expect(r.input(SRC, DST, UDP, 1, 0x2000 * 8, false, d, 0, 8, 0)).toBeNull();
    expect(r.input(SRC, DST, UDP, 1, NaN, false, d, 0, 8, 0)).toBeNull();
    expect(r.drops['frag-bad-offset']).toBe(4);
    expect(r.input(SRC, DST, UDP, 1, 8, true, d, 96, 8, 0)).toBeNull();
    expect(r.input(SRC, DST, UDP, 1, 8, true, d, -1, 8, 0)).toBeNull();
    expect(r.drops['frag-truncated']).toBe(2);
  });

  it('rejects data beyond the last fragment and a second, different last fragment', () => {
    const r = new IpReassembler();
    const d = pattern(4000);
    feed(r, d, 1000, 2000, false);
    expect(feed(r, d, 1992, 2400, true)).toBeNull();
    expect(r.drops['frag-beyond-end']).toBe(1);
    expect(r.inProgress).toBe(0);

    feed(r, d, 2000, 3000, true);
    expect(feed(r, d, 1000, 1500, false)).toBeNull(); // ends before data we hold
    expect(r.drops['frag-beyond-end']).toBe(2);

    feed(r, d, 1000, 2000, false);
    expect(feed(r, d, 2000, 2500, false)).toBeNull();
    expect(r.drops['frag-bad-last']).toBe(1);
    expect(r.inProgress).toBe(0);
  });

  it('rejects a datagram larger than 65535 bytes in total', () => {
    const r = new IpReassembler();
    const big = pattern(70000);
    expect(feed(r, big, 0, 8000, true)).toBeNull();
    expect(feed(r, big, 64000, 65520, false)).toBeNull();
    expect(r.drops['frag-too-big']).toBe(1);
    expect(r.inProgress).toBe(0);
    // The largest legal one works.
    const max = pattern(MAX_REASSEMBLED_PAYLOAD);
    for (let o = 0; o < MAX_REASSEMBLED_PAYLOAD; o += 1480) {
      const end = Math.min(o + 1480, MAX_REASSEMBLED_PAYLOAD);
      const out = feed(r, max, o, end, end < MAX_REASSEMBLED_PAYLOAD, 0, 7);
      if (end === MAX_REASSEMBLED_PAYLOAD) expect(out!.buf.subarray(0, out!.len).equals(max)).toBe(true);
      else expect(out).toBeNull();
    }
  });

  it('evicts the oldest datagram when too many are in progress', () => {
    const r = new IpReassembler({ maxDatagrams: 3 });
    const d = pattern(16);
    for (let id = 1; id <= 4; id++) feed(r, d, 0, 8, true, id, id);
    expect(r.inProgress).toBe(3);
    expect(r.evictions).toBe(1);
    // id 1 is gone: its last fragment starts a new datagram instead of completing.
    expect(feed(r, d, 8, 16, false, 5, 1)).toBeNull();
    expect(r.evictions).toBe(2); // id 2 made room
    expect(feed(r, d, 8, 16, false, 5, 3)!.len).toBe(16);
    expect(feed(r, d, 8, 16, false, 5, 4)!.len).toBe(16);
  });

  it('keeps held bytes under maxBytes by evicting the oldest others', () => {
    const r = new IpReassembler({ maxBytes: 4000 });
    const d = pattern(6000);
    feed(r, d, 0, 1480, true, 0, 1);
    feed(r, d, 0, 1480, true, 1, 2);
    expect(r.bufferedBytes).toBe(2960);
    feed(r, d, 1480, 2960, true, 2, 2); // 4440 > 4000: id 1 goes, id 2 stays
    expect(r.evictions).toBe(1);
    expect(r.inProgress).toBe(1);
    expect(r.bufferedBytes).toBe(2960);
    expect(feed(r, d, 2960, 3000, false, 3, 2)!.len).toBe(3000);
    // A fragment that can never fit is refused outright.
    const tiny = new IpReassembler({ maxBytes: 100 });
    expect(feed(tiny, d, 0, 1480, true)).toBeNull();
    expect(tiny.drops['frag-memory']).toBe(1);
    expect(tiny.inProgress).toBe(0);
  });

  it('times out after 30 s through pollAt/poll', () => {
    const r = new IpReassembler();
    const d = pattern(3000);
    feed(r, d, 0, 1480, true, 1000, 1);
    feed(r, d, 0, 1480, true, 5000, 2);
    expect(r.pollAt()).toBe(31_000);
    expect(r.poll(30_999)).toBe(0);
    expect(r.poll(31_000)).toBe(1);
    expect(r.timeouts).toBe(1);
    expect(r.pollAt()).toBe(35_000);
    // Later fragments of the expired datagram start afresh.
    expect(feed(r, d, 1480, 3000, false, 31_001, 1)).toBeNull();
    expect(r.inProgress).toBe(2);
    // input discards an expired datagram even without poll.
    expect(feed(r, d, 1480, 3000, false, 35_000, 2)).toBeNull();
    expect(r.timeouts).toBe(2);
    expect(r.stats()).toMatchObject({ inProgress: 2, timeouts: 2, reassembled: 0 });
  });

  it('reuses slot buffers: capacity stays bounded over many datagrams', () => {
    const r = new IpReassembler({ maxDatagrams: 4 });
    const d = pattern(9000);
    for (let i = 0; i < 200; i++) {
      for (let o = 0; o < 9000; o += 1480) feed(r, d, o, Math.min(o + 1480, 9000), o + 1480 < 9000, i, i);
    }
    expect(r.reassembled).toBe(200);
    expect(r.capacityBytes).toBeLessThanOrEqual(16384);
  });
});

describe('IPv6 use (address handles, 32-bit ids)', () => {
  it('keeps datagrams apart by their full 32-bit id and holds address references while waiting', async () => {
    const { IpAddresses } = await import('../../../stack/ip/ip-addresses.js');
    const addrs = new IpAddresses(8);
    const src = addrs.parse('fd00::100');
    const dst = addrs.parse('fd00::2');
    const r = new IpReassembler({ addrs });
    const a = Buffer.alloc(16, 0x61);
    const b = Buffer.alloc(16, 0x62);
    // Same low 16 bits of the id, different high bits: two datagrams.
    expect(r.input(src, dst, 17, 0x0001_0007, 0, true, a, 0, 16, 0)).toBeNull();
    expect(r.input(src, dst, 17, 0x0002_0007, 0, true, b, 0, 16, 0)).toBeNull();
    expect(r.inProgress).toBe(2);
    addrs.release(src);
    addrs.release(dst);
    // The waiting slots keep both addresses interned.
    expect(addrs.size).toBe(2);
    const done = r.input(src, dst, 17, 0x0002_0007, 16, false, a, 0, 8, 1)!;
    expect(done.len).toBe(24);
    expect(done.buf.subarray(done.off, done.off + 16).every((c) => c === 0x62)).toBe(true);
    expect(r.poll(REASSEMBLY_TIMEOUT_MS + 10)).toBe(1);
    expect(r.inProgress).toBe(0);
    expect(addrs.size).toBe(0);
  });
});
