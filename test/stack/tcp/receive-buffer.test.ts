import { describe, expect, it } from 'vitest';
import { deferCopiesFrom, ReceiveBuffer, settleDeferredCopies, stopDeferringFrom } from '../../../stack/tcp/receive-buffer.js';

/** A source whose bytes are i & 0xff + salt, as a tap's receive slots refilled per batch. */
function pattern(len: number, salt: number): Buffer {
  const b = Buffer.allocUnsafe(len);
  for (let i = 0; i < len; i++) b[i] = (i * 7 + salt) & 0xff;
  return b;
}

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

  describe('deferred copies from a source that stays put until settled', () => {
    it('hands out big in-order segments where they are and copies only what is left unread at settle', () => {
      const src = Buffer.alloc(64 * 1024);
      deferCopiesFrom(src);
      try {
        const b = new ReceiveBuffer(1 << 20, 2048, 4);
        src.set(pattern(32 * 1024, 1), 0);
        src.set(pattern(16 * 1024, 2), 40_000);
        expect(b.write(0, src, 0, 32 * 1024)).toBe(32 * 1024);
        expect(b.write(0, src, 40_000, 16 * 1024)).toBe(16 * 1024);
        expect(b.readable).toBe(48 * 1024);
        expect(b.free()).toBe((1 << 20) - 48 * 1024);
        // The owner reads the source itself: no copy was made.
        const p = b.peek();
        expect(p.buf).toBe(src);
        expect([p.off, p.len]).toEqual([0, 32 * 1024]);
        b.consume(20_000);
        expect([b.peek().buf, b.peek().off, b.peek().len]).toEqual([src, 20_000, 32 * 1024 - 20_000]);
        // The source is about to be reused: the unread 28 KiB go into the ring first.
        settleDeferredCopies();
        src.fill(0);
        expect(b.peek().buf).not.toBe(src);
        const out = Buffer.alloc(b.readable);
        expect(b.read(out, 0, out.length)).toBe(48 * 1024 - 20_000);
        const want = Buffer.concat([pattern(32 * 1024, 1).subarray(20_000), pattern(16 * 1024, 2)]);
        expect(out.equals(want)).toBe(true);
      } finally {
        stopDeferringFrom(src);
      }
    });

    it('copies at once from other sources, small segments, and behind out-of-order data', () => {
      const src = Buffer.alloc(64 * 1024);
      deferCopiesFrom(src);
      try {
        const other = pattern(16 * 1024, 3);
        const b = new ReceiveBuffer(1 << 20, 2048, 4);
        b.write(0, other, 0, other.length);
        expect(b.peek().buf).not.toBe(other);
        b.consume(other.length);
        src.set(pattern(1000, 4), 0);
        b.write(0, src, 0, 1000);
        expect(b.peek().buf).not.toBe(src);
        b.consume(1000);
        // A segment out of order, then the big one that fills the hole in front of it.
        src.set(pattern(10_000, 5), 0);
        expect(b.write(10_000, Buffer.from('tail'), 0, 4)).toBe(0);
        expect(b.write(0, src, 0, 10_000)).toBe(10_004);
        expect(b.peek().buf).not.toBe(src);
      } finally {
        stopDeferringFrom(src);
      }
    });

    it('settles deferred bytes before a later write lands behind them, and across a wrap and a growth', () => {
      const src = Buffer.alloc(64 * 1024);
      deferCopiesFrom(src);
      try {
        const b = new ReceiveBuffer(1 << 20, 2048, 8);
        const sent: Buffer[] = [];
        // Ring bytes first (a small segment), then a deferred one.
        const small = pattern(3000, 6);
        b.write(0, small, 0, small.length);
        sent.push(small);
        src.set(pattern(12_000, 7), 0);
        b.write(0, src, 0, 12_000);
        sent.push(pattern(12_000, 7));
        // Out of order behind the deferred bytes, then the hole: the refs are settled first.
        const late = pattern(500, 8);
        const early = pattern(700, 9);
        expect(b.write(700, late, 0, 500)).toBe(0);
        src.fill(0xee, 0, 12_000);
        // The source changed without a settle: only allowed because the write above settled it.
        expect(b.write(0, early, 0, 700)).toBe(1200);
        sent.push(early, late);
        const out = Buffer.alloc(b.readable);
        b.read(out, 0, out.length);
        expect(out.equals(Buffer.concat(sent))).toBe(true);
      } finally {
        stopDeferringFrom(src);
      }
    });

    it('keeps the byte stream intact under random writes, reads, settles and source reuse', () => {
      const src = Buffer.alloc(256 * 1024);
      deferCopiesFrom(src);
      let seed = 12345;
      const rnd = (n: number) => {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        return seed % n;
      };
      try {
        const max = 256 * 1024;
        const b = new ReceiveBuffer(max, 2048, 8);
        let wrote = 0;
        let readAt = 0;
        let srcUsed = 0;
        const byteAt = (i: number) => (i * 131 + (i >>> 9)) & 0xff;
        const out = Buffer.alloc(max);
        for (let step = 0; step < 20_000; step++) {
          const op = rnd(10);
          if (op < 5) {
            const room = b.free();
            const len = Math.min(room, 1 + rnd(rnd(2) === 0 ? 40_000 : 2000));
            if (len === 0) continue;
            // A batch fills the slots one after another; a full area is a new batch.
            if (srcUsed + len > src.length) {
              settleDeferredCopies();
              src.fill(rnd(256));
              srcUsed = 0;
            }
            const at = srcUsed;
            srcUsed += len + rnd(100);
            for (let i = 0; i < len; i++) src[at + i] = byteAt(wrote + i);
            if (len > 1 && rnd(4) === 0) {
              // Reordered: the second part first, out of order, then the first fills the hole.
              const cut = 1 + rnd(len - 1);
              expect(b.write(cut, src, at + cut, len - cut)).toBe(0);
              expect(b.write(0, src, at, cut)).toBe(len);
            } else {
              expect(b.write(0, src, at, len)).toBe(len);
            }
            wrote += len;
          } else if (op < 8) {
            const n = b.read(out, 0, rnd(b.readable + 1));
            for (let i = 0; i < n; i++) if (out[i] !== byteAt(readAt + i)) throw new Error(`byte ${readAt + i} wrong at step ${step}`);
            readAt += n;
          } else {
            // End of a batch: settle, then the tap reads new frames into the slots.
            settleDeferredCopies();
            src.fill(rnd(256));
            srcUsed = 0;
          }
        }
        const n = b.read(out, 0, b.readable);
        for (let i = 0; i < n; i++) if (out[i] !== byteAt(readAt + i)) throw new Error(`byte ${readAt + i} wrong at the end`);
        expect(readAt + n).toBe(wrote);
      } finally {
        stopDeferringFrom(src);
      }
    });

    it('drops its references when the ring goes back to the pool', () => {
      const src = Buffer.alloc(64 * 1024);
      deferCopiesFrom(src);
      try {
        const b = new ReceiveBuffer(1 << 20, 2048, 4);
        b.write(0, src, 0, 20_000);
        b.recycle();
        expect(b.readable).toBe(0);
        settleDeferredCopies();
        expect(b.peek().len).toBe(0);
      } finally {
        stopDeferringFrom(src);
      }
    });
  });
});
