/**
 * UdpSendBatch: how guest datagrams are gathered for one sendmmsg, and which
 * of them join into one UDP_SEGMENT message.
 */
import { describe, expect, it } from 'vitest';
import { GSO_MAX_SEGMENTS, mergeableRun, UdpSendBatch } from '../../../src/host/udp-send-batch.js';

function bytes(n: number, fill: number): Buffer {
  return Buffer.alloc(n, fill);
}

/** The messages as [fd, length, gsoSize] and the bytes of each. */
function messages(b: UdpSendBatch): { fd: number; len: number; gso: number; data: Buffer }[] {
  const out = [];
  for (let i = 0; i < b.count; i++) {
    const [fd, off, len, gso] = b.desc.subarray(4 * i, 4 * i + 4);
    out.push({ fd, len, gso, data: Buffer.from(b.tx.subarray(off, off + len)) });
  }
  return out;
}

describe('UdpSendBatch', () => {
  it('joins a run of equal-size datagrams to one socket into one message cut at their size', () => {
    const b = new UdpSendBatch(1 << 16, 16);
    for (let i = 0; i < 5; i++) expect(b.add(7, bytes(1400, i), 0, 1400)).toBe(true);
    const m = messages(b);
    expect(m).toHaveLength(1);
    expect(m[0]).toMatchObject({ fd: 7, len: 7000, gso: 1400 });
    for (let i = 0; i < 5; i++) expect(m[0].data.subarray(i * 1400, (i + 1) * 1400).equals(bytes(1400, i))).toBe(true);
    expect(b.datagrams).toBe(5);
  });

  it('lets a shorter datagram end a run, and starts a new message after it', () => {
    const b = new UdpSendBatch(1 << 16, 16);
    b.add(3, bytes(100, 1), 0, 100);
    b.add(3, bytes(100, 2), 0, 100);
    b.add(3, bytes(40, 3), 0, 40);
    b.add(3, bytes(40, 4), 0, 40);
    expect(messages(b).map((m) => [m.len, m.gso])).toEqual([
      [240, 100],
      [40, 0],
    ]);
  });

  it('never joins a longer datagram, another socket, or an empty datagram', () => {
    const b = new UdpSendBatch(1 << 16, 16);
    b.add(3, bytes(100, 1), 0, 100);
    b.add(3, bytes(200, 2), 0, 200);
    b.add(4, bytes(200, 3), 0, 200);
    b.add(4, bytes(0, 0), 0, 0);
    b.add(4, bytes(0, 0), 0, 0);
    expect(messages(b).map((m) => [m.fd, m.len, m.gso])).toEqual([
      [3, 100, 0],
      [3, 200, 0],
      [4, 200, 0],
      [4, 0, 0],
      [4, 0, 0],
    ]);
    expect(b.datagrams).toBe(5);
  });

  it('keeps a run within the segment limit', () => {
    const b = new UdpSendBatch(1 << 20, 16);
    for (let i = 0; i < GSO_MAX_SEGMENTS + 1; i++) b.add(9, bytes(64, i & 0xff), 0, 64);
    expect(messages(b).map((m) => [m.len, m.gso])).toEqual([
      [64 * GSO_MAX_SEGMENTS, 64],
      [64, 0],
    ]);
  });

  it('keeps a run within 64 KiB', () => {
    const b = new UdpSendBatch(1 << 20, 16);
    for (let i = 0; i < 50; i++) b.add(9, bytes(1400, 1), 0, 1400);
    const m = messages(b);
    expect(m.length).toBe(2);
    expect(m[0].len).toBeLessThanOrEqual(65_000);
    expect(m[0].len + m[1].len).toBe(50 * 1400);
  });

  it('sends a guest super-frame as its own message with its segment size', () => {
    const b = new UdpSendBatch(1 << 16, 16);
    b.add(5, bytes(1000, 1), 0, 1000);
    b.add(5, bytes(2500, 2), 0, 2500, 1000);
    b.add(5, bytes(1000, 3), 0, 1000);
    expect(messages(b).map((m) => [m.len, m.gso])).toEqual([
      [1000, 0],
      [2500, 1000],
      [1000, 0],
    ]);
    expect(b.datagrams).toBe(5);
  });

  it('copies from the offset given and says when it is full', () => {
    const b = new UdpSendBatch(300, 2);
    const src = Buffer.from('xxhelloyy');
    expect(b.add(1, src, 2, 5)).toBe(true);
    expect(messages(b)[0].data.toString()).toBe('hello');
    expect(b.add(2, bytes(200, 0), 0, 200)).toBe(true);
    expect(b.add(3, bytes(10, 0), 0, 10)).toBe(false); // no descriptor left
    expect(b.add(2, bytes(200, 0), 0, 200)).toBe(false); // no tx room left
    b.clear();
    expect(b.count).toBe(0);
    expect(b.add(3, bytes(10, 0), 0, 10)).toBe(true);
  });
});

describe('mergeableRun', () => {
  /** meta rows [token, offset, length, segmentSize]. */
  function meta(rows: [number, number, number][]): Uint32Array {
    const m = new Uint32Array(rows.length * 4);
    rows.forEach(([token, len, seg], i) => m.set([token, i * 65536, len, seg], i * 4));
    return m;
  }

  it('joins single datagrams of one socket and one size, the last one maybe shorter', () => {
    const m = meta([
      [1, 1400, 1400],
      [1, 1400, 1400],
      [1, 700, 700],
      [1, 1400, 1400],
    ]);
    expect(mergeableRun(m, 0, 4)).toBe(3);
    expect(mergeableRun(m, 3, 4)).toBe(1);
  });

  it('stops at another socket, a longer datagram, a GRO burst or an error', () => {
    expect(mergeableRun(meta([[1, 100, 100], [2, 100, 100]]), 0, 2)).toBe(1);
    expect(mergeableRun(meta([[1, 100, 100], [1, 200, 200]]), 0, 2)).toBe(1);
    expect(mergeableRun(meta([[1, 100, 100], [1, 100, 100], [1, 300, 100]]), 0, 3)).toBe(2);
    expect(mergeableRun(meta([[1, 300, 100], [1, 100, 100]]), 0, 2)).toBe(1);
    expect(mergeableRun(meta([[1, 100, 100], [1, 0, 0x8000_006f]]), 0, 2)).toBe(1);
    expect(mergeableRun(meta([[1, 0, 0], [1, 0, 0]]), 0, 2)).toBe(1);
  });

  it('keeps within the segment and byte limits', () => {
    const small = meta(Array.from({ length: GSO_MAX_SEGMENTS + 5 }, () => [1, 10, 10] as [number, number, number]));
    expect(mergeableRun(small, 0, GSO_MAX_SEGMENTS + 5)).toBe(GSO_MAX_SEGMENTS);
    const big = meta(Array.from({ length: 60 }, () => [1, 1400, 1400] as [number, number, number]));
    const r = mergeableRun(big, 0, 60);
    expect(r * 1400).toBeLessThanOrEqual(65_000);
    expect((r + 1) * 1400).toBeGreaterThan(65_000);
  });

  it('looks only up to n', () => {
    expect(mergeableRun(meta([[1, 10, 10], [1, 10, 10], [1, 10, 10]]), 0, 2)).toBe(2);
  });
});
