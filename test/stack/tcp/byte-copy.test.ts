import { describe, expect, it } from 'vitest';
import { byteCopyStats, copyBytes } from '../../../stack/tcp/byte-copy.js';

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

describe('copyBytes', () => {
  it('copies short ranges with a loop and long ones from a fresh source', () => {
    const src = pattern(300, 1);
    const dst = Buffer.alloc(300);
    copyBytes(dst, 5, src, 7, 10);
    expect(dst.subarray(5, 15)).toEqual(src.subarray(7, 17));
    copyBytes(dst, 100, src, 50, 200);
    expect(dst.subarray(100, 300)).toEqual(src.subarray(50, 250));
    copyBytes(dst, 0, src, 0, 0);
    expect(dst[0]).toBe(0);
  });

  it('gives a source that keeps coming back a table and copies right from it, any length, any slot', () => {
    // A receive area inside a larger ArrayBuffer, as Buffer.from(pool) can be.
    const backing = pattern(1 << 16, 3);
    const area = backing.subarray(1000, 1000 + 8 * 2048);
    const dst = Buffer.alloc(4096);
    const before = byteCopyStats().tables;
    for (let round = 0; round < 4; round++) {
      for (let slot = 0; slot < 8; slot++) {
        const off = slot * 2048 + 66;
        // Same start with the first length, then another one (the fill path).
        const len = round % 2 === 0 ? 1448 : 1448 - slot * 100;
        dst.fill(0);
        copyBytes(dst, 17, area, off, len);
        expect(dst.subarray(17, 17 + len)).toEqual(area.subarray(off, off + len));
        expect(dst[16]).toBe(0);
        expect(dst[17 + len]).toBe(0);
      }
    }
    expect(byteCopyStats().tables).toBe(before + 1);
  });

  it('keeps working past the table cap (it starts over) and for plain Uint8Array destinations', () => {
    const src = pattern(40_000, 9);
    const dst = new Uint8Array(100);
    const flushed = byteCopyStats().flushed;
    for (let off = 0; off + 50 <= src.length; off += 2) {
      copyBytes(dst, 1, src, off, 50);
      if (off % 998 === 0) expect(Buffer.from(dst.subarray(1, 51))).toEqual(src.subarray(off, off + 50));
    }
    expect(byteCopyStats().flushed).toBeGreaterThan(flushed);
    copyBytes(dst, 0, src, 39_900, 100);
    expect(Buffer.from(dst)).toEqual(src.subarray(39_900, 40_000));
  });
});
