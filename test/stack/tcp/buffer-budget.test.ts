import { afterEach, describe, expect, it } from 'vitest';
import { tcpBufferBudget } from '../../../stack/tcp/buffer-budget.js';
import { ReceiveBuffer } from '../../../stack/tcp/receive-buffer.js';
import { SendBuffer } from '../../../stack/tcp/send-buffer.js';

const KiB = 1024;

afterEach(() => {
  tcpBufferBudget.limit = Infinity;
});

function fillSend(b: SendBuffer): number {
  const chunk = Buffer.alloc(8 * KiB, 7);
  let n = 0;
  for (;;) {
    const k = b.write(chunk, 0, chunk.length);
    n += k;
    if (k < chunk.length) return n;
  }
}

describe('the TCP buffer budget', () => {
  it('without a limit, rings grow to their maximum and nothing is accounted', () => {
    const s = new SendBuffer(256 * KiB, 64 * KiB);
    expect(fillSend(s)).toBe(256 * KiB);
    const r = new ReceiveBuffer(256 * KiB, 16 * KiB, 8);
    expect(r.free()).toBe(256 * KiB);
    expect(tcpBufferBudget.used).toBe(0);
  });

  it('lets send rings grow past their initial size only with room in the budget, and takes it back on release', () => {
    tcpBufferBudget.limit = 100 * KiB;
    const a = new SendBuffer(256 * KiB, 64 * KiB);
    const b = new SendBuffer(256 * KiB, 64 * KiB);
    // a: 64 KiB initial + the whole 100 KiB budget; b: its initial 64 KiB and nothing more.
    expect(fillSend(a)).toBe(164 * KiB);
    expect(fillSend(b)).toBe(64 * KiB);
    expect(tcpBufferBudget.used).toBe(100 * KiB);
    expect(tcpBufferBudget.refusals).toBeGreaterThanOrEqual(2);
    a.ack(a.length);
    a.release();
    expect(tcpBufferBudget.used).toBe(0);
    // b grows once the budget has room again (its next full ring asks again).
    b.ack(8 * KiB);
    expect(fillSend(b)).toBe(8 * KiB + 100 * KiB);
    b.recycle();
    expect(tcpBufferBudget.used).toBe(0);
  });

  it('opens a receive window past 64 KiB as the peer uses it, reserving it first, and keeps it until the ring is recycled', () => {
    tcpBufferBudget.limit = 200 * KiB;
    const a = new ReceiveBuffer(256 * KiB, 16 * KiB, 8);
    const b = new ReceiveBuffer(256 * KiB, 16 * KiB, 8);
    const idle = new ReceiveBuffer(256 * KiB, 16 * KiB, 8);
    const chunk = Buffer.alloc(16 * KiB, 1);
    /** The peer sends 16 KiB, the host takes it; returns the window offered next. */
    const round = (r: ReceiveBuffer): number => {
      expect(r.write(0, chunk, 0, chunk.length)).toBe(chunk.length);
      r.consume(chunk.length);
      return r.free();
    };
    // Every connection starts at 64 KiB, budget or not; an idle one stays there.
    expect([a.free(), b.free(), idle.free()]).toEqual([64 * KiB, 64 * KiB, 64 * KiB]);
    // a doubles after each half window received: 64 -> 128 -> 256 KiB (192 KiB of budget).
    const seen = [];
    for (let i = 0; i < 12; i++) seen.push(round(a));
    expect(seen[1]).toBe(128 * KiB);
    expect(Math.max(...seen)).toBe(256 * KiB);
    expect(tcpBufferBudget.used).toBe(192 * KiB);
    // b gets the 8 KiB left, then nothing more: it works on with what it has.
    for (let i = 0; i < 12; i++) round(b);
    expect(b.free()).toBe(72 * KiB);
    expect(tcpBufferBudget.used).toBe(200 * KiB);
    expect(idle.free()).toBe(64 * KiB);
    // A window once offered is kept while the connection lives, even idle and empty.
    a.release();
    expect(a.free()).toBe(256 * KiB);
    a.recycle();
    expect(tcpBufferBudget.used).toBe(8 * KiB);
    for (let i = 0; i < 12; i++) round(b);
    expect(b.free()).toBe(256 * KiB);
    b.recycle();
    idle.recycle();
    expect(tcpBufferBudget.used).toBe(0);
  });
});
