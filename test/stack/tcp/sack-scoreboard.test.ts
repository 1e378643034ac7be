import { describe, expect, it } from 'vitest';
import { SackScoreboard } from '../../../stack/tcp/sack-scoreboard.js';

describe('SackScoreboard', () => {
  it('clips, merges, advances and answers skip/gap questions across the wrap', () => {
    const s = new SackScoreboard(4);
    const una = 0xffff_ff00;
    const max = 0x200;
    s.add(0xffff_ff80, 0x10, una, max);
    s.add(0x100, 0x300, una, max);
    s.add(0x10, 0x20, una, max);
    expect(s.count).toBe(2);
    expect([s.left(0), s.right(0), s.left(1), s.right(1)]).toEqual([0xffff_ff80, 0x20, 0x100, 0x200]);
    expect(s.skip(0xffff_ff90)).toBe(0x20);
    expect(s.skip(0x30)).toBe(0x30);
    expect(s.gapAfter(0x30)).toBe(0xd0);
    expect(s.gapAfter(0x150)).toBe(Infinity);
    expect(s.bytesBelow(0x180)).toBe(0xa0 + 0x80);
    s.advance(0x120);
    expect(s.count).toBe(1);
    expect(s.left(0)).toBe(0x120);
    // Blocks below SND.UNA or empty are ignored.
    s.add(0x10, 0x20, 0x120, max);
    s.add(0x150, 0x150, 0x120, max);
    expect(s.count).toBe(1);
  });
});
