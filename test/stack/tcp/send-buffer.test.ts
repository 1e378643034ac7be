import { describe, expect, it } from 'vitest';
import { SendBuffer } from '../../../stack/tcp/send-buffer.js';
import { ringPool } from '../../../stack/tcp/ring-pool.js';

describe('SendBuffer', () => {
  it('allocates lazily, doubles when full, stops at max', () => {
    const b = new SendBuffer(16, 4);
    expect(b.capacity).toBe(0);
    expect(b.space()).toBe(16);
    expect(b.write(Buffer.from('0123456789abcdefXYZ'), 0, 19)).toBe(16);
    expect(b.capacity).toBe(16);
    expect(b.space()).toBe(0);
    expect(b.writable().len).toBe(0);
  });

  it('wraps: chunks never span the wrap point and keep their bytes', () => {
    const b = new SendBuffer(8, 8);
    b.write(Buffer.from('abcdefgh'), 0, 8);
    b.ack(5);
    expect(b.write(Buffer.from('ijklm'), 0, 5)).toBe(5);
    const c1 = b.chunk(0);
    expect(c1.buf.subarray(c1.off, c1.off + c1.len).toString()).toBe('fgh');
    const c2 = b.chunk(3);
    expect(c2.buf.subarray(c2.off, c2.off + c2.len).toString()).toBe('ijklm');
    expect(b.chunk(8).len).toBe(0);
    // Growing linearises the ring.
    const g = new SendBuffer(32, 8);
    g.write(Buffer.from('abcdefgh'), 0, 8);
    g.ack(3);
    g.write(Buffer.from('ijk'), 0, 3);
    g.write(Buffer.from('XYZ'), 0, 3);
    const c = g.chunk(0);
    expect(c.buf.subarray(c.off, c.off + c.len).toString()).toBe('defghijkXYZ');
  });

  it('zero-copy writable region plus commit, and release when empty', () => {
    const b = new SendBuffer(64, 16);
    const r = b.writable();
    expect(r.len).toBe(16);
    r.buf.write('hello', r.off);
    b.commit(5);
    const c = b.chunk(0);
    expect(c.buf.subarray(c.off, c.off + 5).toString()).toBe('hello');
    b.release();
    expect(b.capacity).toBe(16);
    b.ack(5);
    b.release();
    expect(b.capacity).toBe(0);
  });

  it('release gives an empty ring to the pool and keeps no reference to it', () => {
    const b = new SendBuffer(1 << 20, 12_345);
    b.write(Buffer.from('abc'), 0, 3);
    const ring = b.chunk(0).buf;
    b.release();
    expect(b.capacity).toBe(12_345);
    b.ack(3);
    const before = ringPool.size;
    b.release();
    expect(b.capacity).toBe(0);
    expect(ringPool.size).toBe(before + 1);
    // The region object the buffer hands out no longer points into the pooled ring.
    expect(b.chunk(0).buf.length).toBe(0);
    // The next write takes it back.
    expect(b.writable().buf).toBe(ring);
    expect(ringPool.size).toBe(before);
  });
});
