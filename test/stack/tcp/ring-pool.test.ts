import { describe, expect, it } from 'vitest';
import { RingPool, ringPool } from '../../../stack/tcp/ring-pool.js';
import { closeWait, established, seg, bytes, REMOTE_SEQ } from '../../helpers/tcp-harness.js';
import { TCP_ACK, TCP_FIN } from '../../../stack/wire/tcp.js';

describe('RingPool', () => {
  it('hands back a ring of exactly the asked size, once', () => {
    const p = new RingPool();
    const a = Buffer.alloc(1024);
    p.give(a);
    expect(p.take(2048)).toBeNull();
    expect(p.take(1024)).toBe(a);
    expect(p.take(1024)).toBeNull();
  });

  it('keeps neither empty nor large rings, and at most 32 of a size', () => {
    const p = new RingPool();
    p.give(Buffer.alloc(0));
    p.give(Buffer.alloc(1024 * 1024));
    expect(p.size).toBe(0);
    for (let i = 0; i < 40; i++) p.give(Buffer.alloc(4096));
    expect(p.size).toBe(32);
  });
});

describe('TcpConnection.recycleBuffers', () => {
  it('does nothing before the connection is closed', () => {
    const h = established();
    h.send(seg({ payload: bytes(100) }));
    h.conn.recycleBuffers();
    expect(h.conn.recvAvailable()).toBe(100);
    expect(h.conn.recvBufferCapacity).toBeGreaterThan(0);
  });

  it("gives a closed connection's rings to the pool, and the next connection takes them", () => {
    const h = closeWait();
    h.conn.send(Buffer.alloc(10), 0, 10, h.now);
    h.conn.abort(h.now);
    const recvCap = h.conn.recvBufferCapacity;
    const sendCap = h.conn.sendBufferCapacity;
    expect(sendCap).toBeGreaterThan(0);
    const before = ringPool.size;
    h.conn.recycleBuffers();
    expect(h.conn.sendBufferCapacity).toBe(0);
    expect(h.conn.recvBufferCapacity).toBe(0);
    expect(ringPool.size).toBe(before + (recvCap > 0 ? 2 : 1));
    const next = established();
    next.conn.send(Buffer.alloc(10), 0, 10, next.now);
    expect(ringPool.size).toBe(before + (recvCap > 0 ? 1 : 0));
  });
});

describe('TcpConnection.flush(now, lazyAck)', () => {
  it('leaves a delayed ACK to its timer, sends it at once with an eager flush', () => {
    const h = established();
    h.inputOnly(seg({ payload: 'abc' }));
    h.conn.flush(h.now, true);
    h.expectNothing();
    h.conn.flush(h.now);
    h.expectSent({ flags: TCP_ACK, ack: REMOTE_SEQ + 3 });
  });

  it("defers the ACK of the peer's FIN in ESTABLISHED so our FIN can carry it", () => {
    const h = established();
    h.inputOnly(seg({ flags: TCP_FIN | TCP_ACK }));
    h.conn.flush(h.now, true);
    h.expectNothing();
    expect(h.conn.state).toBe('CLOSE-WAIT');
    h.conn.shutdownSend(h.now);
    h.expectSent({ flags: TCP_FIN | TCP_ACK, ack: REMOTE_SEQ + 1 });
  });
});
