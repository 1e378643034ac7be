import { describe, expect, it } from 'vitest';
import { ReceiveBuffer } from '../../../stack/tcp/receive-buffer.js';

describe('ReceiveBuffer', () => {
  it('places out-of-order bytes in the ring and releases them when the hole fills', () => {
    const b = new ReceiveBuffer(64, 8, 4);
    expect(b.write(3, Buffer.from('def'), 0, 3)).toBe(0);
    expect(b.readable).toBe(0);
    expect(b.write(0, Buffer.from('abc'), 0, 3)).toBe(6);
    const out = Buffer.alloc(6);
    expect(b.read(out, 0, 6)).toBe(6);
    expect(out.toString()).toBe('abcdef');
    expect(b.free()).toBe(64);
  });

  it('wraps around and grows without losing in-order or out-of-order bytes', () => {
    const b = new ReceiveBuffer(32, 8, 4);
    b.write(0, Buffer.from('0123456'), 0, 7);
    b.consume(5);
    // Wraps in the 8-byte ring, then grows past it with a pending hole.
    expect(b.write(0, Buffer.from('789'), 0, 3)).toBe(3);
    expect(b.write(4, Buffer.from('XYZW'), 0, 4)).toBe(0);
    expect(b.capacity).toBe(16);
    expect(b.write(0, Buffer.from('a'), 0, 1)).toBe(1);
    expect(b.write(0, Buffer.from('bcd'), 0, 3)).toBe(7);
    const out = Buffer.alloc(13);
    expect(b.read(out, 0, 13)).toBe(13);
    expect(out.toString()).toBe('56789abcdXYZW');
  });

  it('in-order data with nothing held out of order skips the bookkeeping and leaves no SACK block behind', () => {
    const b = new ReceiveBuffer(64, 8, 4);
    expect(b.write(3, Buffer.from('def'), 0, 3)).toBe(0);
    expect([b.ooo.lastStart, b.ooo.lastEnd]).toEqual([3, 6]);
    expect(b.write(0, Buffer.from('abc'), 0, 3)).toBe(6);
    expect([b.ooo.count, b.ooo.lastStart, b.ooo.lastEnd]).toEqual([0, -1, -1]);
    expect(b.write(0, Buffer.from('gh'), 0, 2)).toBe(2);
    expect([b.ooo.count, b.ooo.lastStart, b.ooo.lastEnd]).toEqual([0, -1, -1]);
    expect(b.write(2, Buffer.from('k'), 0, 1)).toBe(0);
    expect([b.ooo.count, b.ooo.lastStart, b.ooo.lastEnd]).toEqual([1, 2, 3]);
    expect(b.write(0, Buffer.from('ij'), 0, 2)).toBe(3);
    const out = Buffer.alloc(11);
    expect(b.read(out, 0, 11)).toBe(11);
    expect(out.toString()).toBe('abcdefghijk');
  });

  it('refuses beyond the range cap with -1 and keeps the window as free space', () => {
    const b = new ReceiveBuffer(100, 16, 1);
    expect(b.write(10, Buffer.from('x'), 0, 1)).toBe(0);
    expect(b.write(20, Buffer.from('y'), 0, 1)).toBe(-1);
    expect(b.write(0, Buffer.alloc(40), 0, 40)).toBe(40);
    expect(b.free()).toBe(60);
    const p = b.peek();
    expect(p.len).toBe(40);
  });
});
