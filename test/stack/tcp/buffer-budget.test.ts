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

  it('reserves a receive window before offering it and keeps it until the ring is recycled', () => {
    tcpBufferBudget.limit = 300 * KiB;
    const a = new ReceiveBuffer(256 * KiB, 16 * KiB, 8);
    const b = new ReceiveBuffer(256 * KiB, 16 * KiB, 8);
    const c = new ReceiveBuffer(256 * KiB, 16 * KiB, 8);
    expect(a.free()).toBe(256 * KiB);
    // b gets what is left; c its initial window only.
    expect(b.free()).toBe(16 * KiB + 60 * KiB);
    expect(c.free()).toBe(16 * KiB);
    // Everything offered fits: the ring grows into the window without the budget's leave.
    const data = Buffer.alloc(76 * KiB, 1);
    expect(b.write(0, data, 0, data.length)).toBe(76 * KiB);
    expect(b.free()).toBe(0);
    // Reading frees window; the grant stays while the connection lives.
    b.consume(76 * KiB);
    b.release();
    expect(b.free()).toBe(76 * KiB);
    expect(tcpBufferBudget.used).toBe(300 * KiB);
    a.recycle();
    expect(tcpBufferBudget.used).toBe(60 * KiB);
    expect(c.free()).toBe(256 * KiB);
    b.recycle();
    c.recycle();
    expect(tcpBufferBudget.used).toBe(0);
  });
});
