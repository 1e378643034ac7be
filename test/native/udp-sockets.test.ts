// Real-kernel tests of the native host UDP sockets (native/udp_sockets.cc):
// a node:dgram peer on loopback, sendmmsg with and without UDP_SEGMENT, recvmmsg
// with UDP_GRO, and ECONNREFUSED reported as an error message.
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createSocket, type Socket } from 'node:dgram';
import { constants } from 'node:os';

import { afterEach, describe, expect, it } from 'vitest';

import { native } from '../../src/native/addon.js';
import { UDP_BATCH_MAX, UDP_ERROR_FLAG, type UdpSockets } from '../../src/native/types.js';

const SLOT = 65_536;

interface Harness {
  io: UdpSockets;
  rx: Buffer;
  tx: Buffer;
  desc: Uint32Array;
  /** Every message received: [token, bytes, segment size] or [token, null, errno] for an error. */
  got: [number, Buffer | null, number][];
  until(n: number): Promise<void>;
}

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function harness(): Harness {
  const rxArea = new ArrayBuffer(SLOT * UDP_BATCH_MAX);
  const rx = Buffer.from(rxArea);
  const tx = Buffer.alloc(1 << 20);
  const meta = new Uint32Array(4 * UDP_BATCH_MAX);
  const got: Harness['got'] = [];
  let waiter: (() => void) | null = null;
  const io = native.createUdpSockets({
    rx: rxArea,
    slotSize: SLOT,
    meta,
    tx: tx.buffer as ArrayBuffer,
    onBatch: (n) => {
      for (let i = 0; i < n; i++) {
        const [token, off, len, seg] = meta.subarray(4 * i, 4 * i + 4);
        if ((seg & UDP_ERROR_FLAG) !== 0) got.push([token, null, seg & ~UDP_ERROR_FLAG]);
        else got.push([token, Buffer.from(rx.subarray(off, off + len)), seg]);
      }
      waiter?.();
    },
  });
  io.start();
  cleanups.push(() => io.close());
  return {
    io,
    rx,
    tx,
    desc: new Uint32Array(4 * 16),
    got,
    async until(n) {
      const deadline = Date.now() + 5000;
      while (got.length < n) {
        if (Date.now() > deadline) throw new Error(`only ${got.length} of ${n} messages`);
        await new Promise<void>((r) => {
          waiter = r;
          setTimeout(r, 50);
        });
      }
    },
  };
}

async function peer(): Promise<{ sock: Socket; port: number; received: Buffer[] }> {
  const sock = createSocket('udp4');
  const received: Buffer[] = [];
  sock.on('message', (m) => received.push(m));
  sock.bind(0, '127.0.0.1');
  await once(sock, 'listening');
  cleanups.push(() => sock.close());
  return { sock, port: sock.address().port, received };
}

async function waitFor(cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('UdpSockets', () => {
  it('sends plain datagrams and UDP_SEGMENT runs in one call, each arriving as its own datagram', async () => {
    const h = harness();
    const p = await peer();
    const fd = h.io.open(7, 4, '127.0.0.1', p.port, null);
    expect(fd).toBeGreaterThan(0);
    h.tx.write('one', 0);
    for (let i = 0; i < 3; i++) h.tx.fill(0x41 + i, 16 + i * 100, 16 + (i + 1) * 100);
    h.tx.fill(0x44, 316, 366); // a shorter last datagram of the run
    h.desc.set([fd, 0, 3, 0, fd, 16, 350, 100]);
    expect(h.io.send(h.desc, 2)).toBe(2);
    expect(h.io.lastError).toBe(0);
    await waitFor(() => p.received.length === 5);
    expect(p.received.map((b) => b.toString('latin1'))).toEqual(['one', 'A'.repeat(100), 'B'.repeat(100), 'C'.repeat(100), 'D'.repeat(50)]);
    expect(h.io.gsoOff).toBe(0);
    h.io.closeSocket(fd);
  });

  it('receives datagrams with their token, and a UDP_SEGMENT burst whole with its segment size (UDP_GRO)', async () => {
    const h = harness();
    const p = await peer();
    const fd = h.io.open(0x10005, 4, '127.0.0.1', p.port, null);
    expect(fd).toBeGreaterThan(0);
    expect(h.io.groSockets).toBe(1);
    // Our address, as the peer sees it.
    h.tx.write('hi', 0);
    h.desc.set([fd, 0, 2, 0]);
    const here = await new Promise<{ address: string; port: number }>((r) => {
      p.sock.once('message', (_m, rinfo) => r(rinfo));
      h.io.send(h.desc, 1);
    });
    p.sock.send(Buffer.from('pong'), here.port, here.address);
    await h.until(1);
    expect(h.got[0][0]).toBe(0x10005);
    expect(h.got[0][1]?.toString()).toBe('pong');
    expect(h.got[0][2]).toBe(4);
    // The peer's port again, now a sender with UDP_SEGMENT (node:dgram has none: python's socket module does).
    p.sock.close();
    cleanups.pop();
    const script = [
      'import socket',
      's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
      `s.bind(('127.0.0.1', ${p.port}))`,
      's.setsockopt(17, 103, 1000)',
      `s.sendto(b''.join(bytes([0x30 + i]) * 1000 for i in range(4)) + b'z' * 10, ('127.0.0.1', ${here.port}))`,
    ].join('\n');
    const r = spawnSync('python3', ['-c', script], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    await h.until(2);
    const [token, bytes, seg] = h.got[1];
    expect(token).toBe(0x10005);
    expect(seg).toBe(1000);
    expect(bytes?.length).toBe(4010);
    for (let i = 0; i < 4; i++) expect(bytes!.subarray(i * 1000, (i + 1) * 1000).equals(Buffer.alloc(1000, 0x30 + i))).toBe(true);
    h.io.closeSocket(fd);
  });

  it('reports ECONNREFUSED for a closed port as an error message', async () => {
    const h = harness();
    const p = await peer();
    const port = p.port;
    p.sock.close();
    cleanups.pop();
    const fd = h.io.open(9, 4, '127.0.0.1', port, null);
    h.tx.write('x', 0);
    h.desc.set([fd, 0, 1, 0]);
    h.io.send(h.desc, 1);
    await h.until(1);
    expect(h.got[0]).toEqual([9, null, constants.errno.ECONNREFUSED]);
    h.io.closeSocket(fd);
  });

  it('returns -errno for an open that fails, and validates its arguments', () => {
    const h = harness();
    expect(h.io.open(1, 4, '127.0.0.1', 9, '192.0.2.1')).toBe(-constants.errno.EADDRNOTAVAIL);
    expect(() => h.io.open(1, 4, 'not an address', 9, null)).toThrow(TypeError);
    expect(() => h.io.send(h.desc, 100)).toThrow(RangeError);
  });
});
