/**
 * Fuzz: random datagrams cut into random fragments, shuffled together with
 * exact duplicates, overlapping re-cuts, malformed fragments and foreign
 * garbage. Seeded, so a failure reproduces.
 */
import { describe, expect, it } from 'vitest';
import { IpReassembler, MAX_REASSEMBLED_PAYLOAD } from '../../../stack/ip/reassembly.js';
import { prng as rng } from '../../helpers/prng.js';

interface Frag {
  src: number;
  dst: number;
  proto: number;
  id: number;
  off: number;
  mf: boolean;
  data: Buffer;
}

const DST = 0x08080808;

function randomDatagram(rand: () => number, big: boolean): Buffer {
  const n = big && rand() < 0.2 ? 1 + Math.floor(rand() * MAX_REASSEMBLED_PAYLOAD) : 1 + Math.floor(rand() * 9000);
  const b = Buffer.alloc(n);
  // Cheap pseudo-random fill seeded from rand, so big datagrams are quick to make.
  let x = Math.floor(rand() * 2 ** 32) | 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

/** Cuts [0, n) into fragments of random multiples of 8 (the last one any length). */
function cut(rand: () => number, payload: Buffer, src: number, id: number, out: Frag[]): void {
  let off = 0;
  while (off < payload.length) {
    const size = 8 * (1 + Math.floor(rand() * 200));
    const end = Math.min(payload.length, off + size);
    const mf = end < payload.length;
    out.push({ src, dst: DST, proto: 17, id, off, mf, data: payload.subarray(off, end) });
    off = end;
  }
}

function shuffle<T>(rand: () => number, a: T[]): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
}

function keyOf(src: number, id: number): number {
  return src * 0x10000 + id;
}

describe('IpReassembler fuzz', () => {
  it('clean fragments with duplicates, shuffled: every datagram reassembles byte-exact', () => {
    for (let round = 0; round < 20; round++) {
      const rand = rng(1000 + round);
      const r = new IpReassembler();
      const originals = new Map<number, Buffer>();
      const frags: Frag[] = [];
      // Stay under the default limits so nothing may be evicted.
      let bytes = 0;
      for (let i = 0; i < 40; i++) {
        const d = randomDatagram(rand, false);
        bytes += d.length;
        const src = 0x0a000200 + (i % 5);
        originals.set(keyOf(src, i), d);
        const start = frags.length;
        cut(rand, d, src, i, frags);
        for (let k = start, n = frags.length; k < n; k++) if (rand() < 0.15) frags.push({ ...frags[k] });
      }
      expect(bytes).toBeLessThan(r.maxBytes);
      shuffle(rand, frags);
      const done = new Map<number, number>();
      for (const f of frags) {
        const out = r.input(f.src, f.dst, f.proto, f.id, f.off, f.mf, f.data, 0, f.data.length, 0);
        if (out === null) continue;
        const want = originals.get(keyOf(f.src, f.id))!;
        expect(out.buf.subarray(out.off, out.off + out.len).equals(want)).toBe(true);
        done.set(keyOf(f.src, f.id), (done.get(keyOf(f.src, f.id)) ?? 0) + 1);
      }
      for (const k of originals.keys()) expect(done.get(k) ?? 0).toBeGreaterThanOrEqual(1);
      expect(r.drops['frag-overlap'] ?? 0).toBe(0);
      expect(r.evictions).toBe(0);
    }
  });

  it('with overlaps, malformed fragments and garbage under tight limits: never throws, stays bounded, never wrong', () => {
    const maxDatagrams = 32;
    const maxBytes = 512 * 1024;
    for (let round = 0; round < 30; round++) {
      const rand = rng(77 + round);
      const r = new IpReassembler({ maxDatagrams, maxBytes, timeoutMs: 500 });
      const originals = new Map<number, Buffer>();
      const frags: Frag[] = [];
      for (let i = 0; i < 60; i++) {
        const d = randomDatagram(rand, true);
        const src = 0x0a000200 + (i % 3);
        originals.set(keyOf(src, i), d);
        const start = frags.length;
        cut(rand, d, src, i, frags);
        const n = frags.length;
        for (let k = start; k < n; k++) {
          const f = frags[k];
          const p = rand();
          if (p < 0.1) frags.push({ ...f }); // exact duplicate
          else if (p < 0.2 && d.length > 16) {
            // Overlapping re-cut with the true bytes: must be refused, never mis-assembled.
            const o = 8 * Math.floor((rand() * d.length) / 8);
            const e = Math.min(d.length, o + 8 * (1 + Math.floor(rand() * 50)));
            frags.push({ ...f, off: o, mf: e < d.length, data: d.subarray(o, e) });
          } else if (p < 0.3) {
            // Malformed, each kind refused by a rule; bytes inside the datagram are the true ones,
            // so a refusal that failed would show up as a wrong datagram below.
            const kind = Math.floor(rand() * 4);
            const o8 = 8 * Math.floor((rand() * d.length) / 8);
            if (kind === 0) {
              const e = Math.min(d.length, o8 + 1 + Math.floor(rand() * 1000));
              frags.push({ ...f, off: o8, mf: true, data: d.subarray(o8, e) }); // not a multiple of 8
            } else if (kind === 1) {
              frags.push({ ...f, off: o8 + 1 + Math.floor(rand() * 7), data: f.data }); // unaligned offset
            } else if (kind === 2) {
              const o = 65520 - 8 * Math.floor(rand() * 100);
              frags.push({ ...f, off: o, mf: rand() < 0.5, data: Buffer.alloc(MAX_REASSEMBLED_PAYLOAD - o + 1 + Math.floor(rand() * 100)) });
            } else {
              const o = 8 * Math.ceil(d.length / 8) + 8 * Math.floor(rand() * 100);
              frags.push({ ...f, off: o, mf: true, data: Buffer.alloc(8 * (1 + Math.floor(rand() * 20)), 0xa5) });
            }
          }
        }
      }
      // Foreign garbage from a source no original uses.
      for (let g = 0; g < 120; g++) {
        const data = Buffer.alloc(Math.floor(rand() * 2000));
        for (let i = 0; i < data.length; i++) data[i] = Math.floor(rand() * 256);
        frags.push({
          src: 0xc0a80001,
          dst: Math.floor(rand() * 2 ** 32),
          proto: Math.floor(rand() * 256),
          id: Math.floor(rand() * 65536),
          off: rand() < 0.5 ? 8 * Math.floor(rand() * 9000) : Math.floor(rand() * 80000) - 100,
          mf: rand() < 0.5,
          data,
        });
      }
      shuffle(rand, frags);
      let now = 0;
      let completed = 0;
      let checks = 0;
      for (const f of frags) {
        now += rand() * 3;
        if (rand() < 0.01) r.poll(now);
        let out: ReturnType<typeof r.input>;
        try {
          out = r.input(f.src, f.dst, f.proto, f.id, f.off, f.mf, f.data, 0, f.data.length, now);
        } catch (e) {
          throw new Error(`input threw on round ${round}: ${String(e)}`, { cause: e });
        }
        if (r.bufferedBytes > maxBytes || r.bufferedBytes < 0 || r.inProgress > maxDatagrams) {
          throw new Error(`bounds broken on round ${round}: ${r.bufferedBytes} bytes, ${r.inProgress} datagrams`);
        }
        if (++checks % 64 === 0) expect(r.capacityBytes).toBeLessThanOrEqual(maxDatagrams * 65536);
        if (out === null || out === undefined || f.src === 0xc0a80001) continue;
        const o = out as { buf: Buffer; off: number; len: number };
        const want = originals.get(keyOf(f.src, f.id))!;
        if (!o.buf.subarray(o.off, o.off + o.len).equals(want)) throw new Error(`wrong datagram on round ${round}`);
        completed++;
      }
      expect(completed).toBeGreaterThan(0);
      r.poll(now + 1000);
      expect(r.inProgress).toBe(0);
      expect(r.bufferedBytes).toBe(0);
      const drops = Object.values(r.drops).reduce((a, b) => a + b, 0);
      expect(drops).toBeGreaterThan(0);
      if (process.env.FUZZ_VERBOSE) console.log(round, completed, r.evictions, r.timeouts, r.drops);
    }
  });
});
