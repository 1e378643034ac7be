import { describe, expect, it } from 'vitest';
import { Assembler } from '../../../stack/tcp/assembler.js';

function ranges(a: Assembler): Array<[number, number]> {
  const r: Array<[number, number]> = [];
  for (let i = 0; i < a.count; i++) r.push([a.start(i), a.end(i)]);
  return r;
}

describe('Assembler', () => {
  it('merges overlapping and adjacent ranges', () => {
    const a = new Assembler(4);
    expect(a.add(10, 5)).toBe(true);
    expect(a.add(20, 5)).toBe(true);
    expect(a.add(15, 5)).toBe(true);
    expect(ranges(a)).toEqual([[10, 25]]);
    expect(a.add(5, 30)).toBe(true);
    expect(ranges(a)).toEqual([[5, 35]]);
    expect(a.bytes()).toBe(30);
  });

  it('takeFront returns in-order bytes and shifts the rest', () => {
    const a = new Assembler(4);
    a.add(10, 5);
    a.add(0, 4);
    expect(a.takeFront()).toBe(4);
    expect(ranges(a)).toEqual([[6, 11]]);
    expect(a.takeFront()).toBe(0);
  });

  it('refuses a new range at the cap but always accepts offset 0 and merges', () => {
    const a = new Assembler(2);
    expect(a.add(10, 1)).toBe(true);
    expect(a.add(20, 1)).toBe(true);
    expect(a.add(30, 1)).toBe(false);
    expect(ranges(a)).toEqual([[10, 11], [20, 21]]);
    expect(a.add(11, 2)).toBe(true);
    expect(a.add(0, 1)).toBe(true);
    expect(a.count).toBe(3);
    expect(a.takeFront()).toBe(1);
    expect(ranges(a)).toEqual([[9, 12], [19, 20]]);
  });
});
