import { describe, expect, it } from 'vitest';
import { seqAdd, seqDiff, seqGe, seqGt, seqInRange, seqLe, seqLt, seqMax, seqMin } from '../../../stack/tcp/seq.js';

describe('sequence arithmetic', () => {
  it('compares across the 2^32 wrap', () => {
    expect(seqLt(0xffff_fff0, 0x10)).toBe(true);
    expect(seqGt(0x10, 0xffff_fff0)).toBe(true);
    expect(seqLe(5, 5) && seqGe(5, 5)).toBe(true);
    expect(seqLt(5, 5)).toBe(false);
    expect(seqDiff(0x10, 0xffff_fff0)).toBe(0x20);
    expect(seqDiff(0xffff_fff0, 0x10)).toBe(-0x20);
    expect(seqMax(0xffff_fff0, 0x10)).toBe(0x10);
    expect(seqMin(0xffff_fff0, 0x10)).toBe(0xffff_fff0);
    expect(seqInRange(0, 0xffff_ffff, 1)).toBe(true);
    expect(seqInRange(1, 0xffff_ffff, 1)).toBe(false);
  });

  it('adds modulo 2^32, also negative amounts', () => {
    expect(seqAdd(0xffff_ffff, 1)).toBe(0);
    expect(seqAdd(0, -1)).toBe(0xffff_ffff);
    expect(seqAdd(0x8000_0000, 0x8000_0000)).toBe(0);
  });
});
