/**
 * Hostile input on the socket ports (QEMU stream and dgram, VXLAN), through a
 * real Runtime and real sockets: truncated and oversized length prefixes,
 * zero-length and runt frames, VXLAN headers with wrong flags or VNI, and
 * seeded random garbage. Every case must be counted and dropped (or, for a
 * stream whose framing is lost, end that one connection) while the process,
 * the bridge and the other ports carry on: an ARP request for the gateway
 * afterwards is still answered on the same or a fresh connection.
 */
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.js';
import { runtimeOptions } from '../../src/options.js';
import { Runtime } from '../../src/runtime.js';
import { SocketPorts } from '../../src/socket-ports.js';
import { parseSocketPortOptions, parseSocketPortRequest } from '../../src/socket-port-options.js';
import { ADDR_STRIDE, socketIo, unixSockaddr } from '../../src/native/socket-io.js';
import { checkVxlanHeader, VXLAN_BAD_FLAGS, VXLAN_BAD_VNI, VXLAN_OK, writeVxlanHeader } from '../../stack/wire/vxlan.js';
import { ConfigError } from '../../src/errors.js';

const dir = mkdtempSync(join(tmpdir(), `i16-${randomBytes(3).toString('hex')}-`));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const GUEST_MAC = '525400a1b2c3';

/** An ARP request from 10.0.2.15 for the gateway 10.0.2.2. */
function arpRequest(): Buffer {
  const f = Buffer.alloc(42);
  Buffer.from(`ffffffffffff${GUEST_MAC}0806`, 'hex').copy(f, 0);
  Buffer.from(`0001080006040001${GUEST_MAC}0a00020f0000000000000a000202`, 'hex').copy(f, 14);
  return f;
}

function isArpReplyFromGateway(frame: Buffer): boolean {
  return frame.length >= 42 && frame.readUInt16BE(12) === 0x0806 && frame.readUInt16BE(20) === 2 && frame.subarray(0, 6).toString('hex') === GUEST_MAC;
}

function prefixed(frame: Buffer): Buffer {
  const p = Buffer.alloc(4);
  p.writeUInt32BE(frame.length);
  return Buffer.concat([p, frame]);
}

/** A seeded xorshift: the fuzz inputs are the same on every run. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x1_0000_0000;
  };
}

function until(cond: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = () => {
      if (cond()) resolve();
      else if (Date.now() > deadline) reject(new Error('condition not met in time'));
      else setTimeout(tick, 10);
    };
    tick();
  });
}

let runtime: Runtime;
let sockets: SocketPorts;

beforeEach(() => {
  const o = runtimeOptions({ 'disable-ipv6': true, 'disable-dns': true, 'no-warm-up': true }, 'error');
  runtime = new Runtime(o, createLogger('error'));
  sockets = new SocketPorts(runtime, createLogger('error'));
});
afterEach(async () => {
  await sockets.close();
  runtime.close();
});

function portCounters(prefix: string) {
  return runtime.bridge.stats().ports.filter((p) => p.name.startsWith(prefix)).map((p) => p.counters);
}

/** A client of --listen-qemu that collects the frames it gets back. */
async function streamClient(path: string): Promise<{ sock: Socket; frames: Buffer[]; closed: () => boolean }> {
  const sock = connect(path);
  await new Promise<void>((r) => sock.once('connect', () => r()));
  const frames: Buffer[] = [];
  let acc = Buffer.alloc(0);
  let closed = false;
  sock.on('data', (d: Buffer) => {
    acc = Buffer.concat([acc, d]);
    while (acc.length >= 4 && acc.length >= 4 + acc.readUInt32BE(0)) {
      frames.push(acc.subarray(4, 4 + acc.readUInt32BE(0)));
      acc = acc.subarray(4 + acc.readUInt32BE(0));
    }
  });
  sock.on('close', () => (closed = true));
  sock.on('error', () => undefined);
  return { sock, frames, closed: () => closed };
}

describe('stream port (-netdev stream framing)', () => {
  it('counts zero-length and runt frames and keeps the connection', async () => {
    const path = join(dir, 'a.sock');
    await sockets.listenStream(parseSocketPortOptions({ 'listen-qemu': [`unix:${path}`] }).listenQemu[0]);
    const c = await streamClient(path);
    // Split at odd places: the parser sees partial prefixes and partial frames.
    const bytes = Buffer.concat([Buffer.alloc(4), prefixed(Buffer.alloc(5, 1)), prefixed(arpRequest()), Buffer.alloc(4)]);
    for (let i = 0; i < bytes.length; i += 7) {
      c.sock.write(bytes.subarray(i, i + 7));
      await new Promise((r) => setTimeout(r, 2));
    }
    await until(() => c.frames.some(isArpReplyFromGateway));
    const [counters] = portCounters('qemu:');
    expect(counters.drops['zero-length']).toBe(2);
    expect(counters.drops.runt).toBe(1);
    expect(c.closed()).toBe(false);
    c.sock.destroy();
  });

  it('an oversized length prefix ends that connection only', async () => {
    const path = join(dir, 'b.sock');
    await sockets.listenStream(parseSocketPortOptions({ 'listen-qemu': [`unix:${path}`] }).listenQemu[0]);
    const good = await streamClient(path);
    const bad = await streamClient(path);
    await until(() => portCounters('qemu:').length === 2);
    const big = Buffer.alloc(4);
    big.writeUInt32BE(1500 + 18 + 1);
    // A good frame first: it is delivered before the bad length is seen.
    bad.sock.write(Buffer.concat([prefixed(arpRequest()), big, randomBytes(100)]));
    await until(() => bad.closed());
    expect(bad.frames.some(isArpReplyFromGateway)).toBe(true);
    await until(() => portCounters('qemu:').length === 1);
    good.sock.write(prefixed(arpRequest()));
    await until(() => good.frames.some(isArpReplyFromGateway));
    expect(good.closed()).toBe(false);
    // 0xffffffff as well.
    const worst = await streamClient(path);
    worst.sock.write(Buffer.from([0xff, 0xff, 0xff, 0xff]));
    await until(() => worst.closed());
    good.sock.destroy();
  });

  it('a peer that closes inside a frame loses only its own port', async () => {
    const path = join(dir, 'c.sock');
    await sockets.listenStream(parseSocketPortOptions({ 'listen-qemu': [`unix:${path}`] }).listenQemu[0]);
    const c = await streamClient(path);
    await until(() => portCounters('qemu:').length === 1);
    c.sock.end(prefixed(arpRequest()).subarray(0, 20));
    await until(() => portCounters('qemu:').length === 0);
  });

  it('fuzz: random byte streams never throw, and a fresh connection still works', async () => {
    const path = join(dir, 'd.sock');
    await sockets.listenStream(parseSocketPortOptions({ 'listen-qemu': [`unix:${path}`] }).listenQemu[0]);
    const rand = rng(16);
    for (let round = 0; round < 20; round++) {
      const c = await streamClient(path);
      const parts: Buffer[] = [];
      for (let i = 0; i < 30; i++) {
        const kind = rand();
        if (kind < 0.3) parts.push(prefixed(arpRequest()));
        else if (kind < 0.6) parts.push(prefixed(randomBytes(Math.floor(rand() * 1600))));
        else parts.push(randomBytes(Math.floor(rand() * 64)));
      }
      c.sock.end(Buffer.concat(parts));
      await until(() => c.closed(), 3000);
    }
    await until(() => portCounters('qemu:').length === 0);
    const c = await streamClient(path);
    c.sock.write(prefixed(arpRequest()));
    await until(() => c.frames.some(isArpReplyFromGateway));
    c.sock.destroy();
  });
});

describe('datagram port (-netdev dgram)', () => {
  it('counts oversize, zero-length and runt datagrams, learns the peer and answers it', async () => {
    const path = join(dir, 'e.sock');
    sockets.listenDgram(parseSocketPortOptions({ 'listen-dgram': [`unix:${path}`] }).listenDgram[0]);
    // The peer: a bound unix datagram socket of our own (QEMU's local.path).
    const peerPath = join(dir, 'e-peer.sock');
    const [fd] = socketIo.bindDatagram(unixSockaddr(peerPath));
    const got: Buffer[] = [];
    const rx = new ArrayBuffer(2048 * 4);
    const meta = new Uint32Array(8);
    const tx = new ArrayBuffer(65536);
    const dests = new ArrayBuffer(ADDR_STRIDE);
    new Uint8Array(dests).set(unixSockaddr(path));
    const dlen = unixSockaddr(path).length;
    const peer = socketIo.createDatagramIo({
      fd, rx, slotSize: 2048, slotCount: 4, meta, addrs: new ArrayBuffer(ADDR_STRIDE * 4), tx, dests,
      onBatch: (n) => {
        for (let i = 0; i < n; i++) got.push(Buffer.from(rx, i * 2048, meta[2 * i]));
      },
      onError: () => undefined,
    });
    peer.start();
    const send = (frames: Buffer[]) => {
      let off = 0;
      const desc = new Uint32Array(frames.length * 4);
      frames.forEach((f, i) => {
        Buffer.from(tx).set(f, off);
        desc.set([off, f.length, 0, dlen], i * 4);
        off += f.length;
      });
      return peer.send(desc, frames.length);
    };
    const rand = rng(7);
    const junk = Array.from({ length: 40 }, () => randomBytes(Math.floor(rand() * 13)));
    const all = [Buffer.alloc(0), Buffer.alloc(9000), Buffer.alloc(1500 + 18 + 1), ...junk, arpRequest()];
    // A unix datagram socket queues at most net.unix.max_dgram_qlen (10) datagrams: send in small bursts.
    for (let i = 0; i < all.length; i += 5) {
      expect(send(all.slice(i, i + 5))).toBe(Math.min(5, all.length - i));
      await new Promise((r) => setTimeout(r, 5));
    }
    await until(() => got.some(isArpReplyFromGateway));
    const [c] = portCounters('dgram:');
    expect(c.drops['zero-length']).toBeGreaterThanOrEqual(1);
    expect(c.drops.oversize).toBe(2);
    expect((c.drops.runt ?? 0) + (c.drops['zero-length'] ?? 0)).toBe(41);
    peer.close();
  });
});

describe('VXLAN port', () => {
  it('header check', () => {
    const b = Buffer.alloc(8);
    writeVxlanHeader(b, 0, 42);
    expect(b.toString('hex')).toBe('0800000000002a00');
    expect(checkVxlanHeader(b, 0, 42)).toBe(VXLAN_OK);
    expect(checkVxlanHeader(b, 0, 43)).toBe(VXLAN_BAD_VNI);
    b[7] = 0xff; // reserved, ignored
    expect(checkVxlanHeader(b, 0, 42)).toBe(VXLAN_OK);
    for (const [i, v] of [[0, 0x0c], [0, 0x00], [1, 1], [3, 0x80]] as const) {
      const c = Buffer.from(b);
      c[i] = v;
      expect(checkVxlanHeader(c, 0, 42)).toBe(VXLAN_BAD_FLAGS);
    }
  });

  it('options', () => {
    const s = parseSocketPortOptions({ vxlan: ['10.1.0.2', '10.1.0.3:8472,vni=7,local=10.1.0.1:8472', '10.1.0.4:8472,vni=7,local=10.1.0.1:8472', '[fd00::2],vni=9'] });
    expect(s.vxlan).toHaveLength(3);
    expect(s.vxlan[0]).toMatchObject({ vni: 1, localAddress: '0.0.0.0', localPort: 4789, remotes: [{ address: '10.1.0.2', port: 4789 }] });
    expect(s.vxlan[1].remotes).toHaveLength(2);
    expect(s.vxlan[2]).toMatchObject({ vni: 9, localAddress: '::' });
    for (const bad of ['10.1.0.2,vni=16777216', 'x.y', '10.1.0.2,foo=1', '10.1.0.2,local=[::1]:5', '10.1.0.2:0']) {
      expect(() => parseSocketPortOptions({ vxlan: [bad] }), bad).toThrow(ConfigError);
    }
    expect(() => parseSocketPortOptions({ vxlan: ['10.1.0.2,vni=1', '10.1.0.3,vni=2'] })).toThrow(/one VNI/);
    expect(() => parseSocketPortOptions({ 'listen-qemu': ['tcp:nohost'] })).toThrow(ConfigError);
    expect(() => parseSocketPortOptions({ 'listen-dgram': ['tcp:127.0.0.1:5'] })).toThrow(ConfigError);
  });

  it('drops wrong flags, wrong VNI, runts and garbage; answers a valid frame to its sender', async () => {
    const peer = createSocket('udp4');
    await new Promise<void>((r) => peer.bind(0, '127.0.0.1', () => r()));
    const peerPort = peer.address().port;
    const probe = createSocket('udp4');
    await new Promise<void>((r) => probe.bind(0, '127.0.0.1', () => r()));
    const localPort = probe.address().port;
    await new Promise<void>((r) => probe.close(() => r()));
    sockets.addVxlan(parseSocketPortOptions({ vxlan: [`127.0.0.1:${peerPort},vni=42,local=127.0.0.1:${localPort}`] }).vxlan[0]);
    const got: Buffer[] = [];
    peer.on('message', (m) => got.push(m));
    const send = (b: Buffer) => new Promise<void>((r) => peer.send(b, localPort, '127.0.0.1', () => r()));
    const hdr = (vni: number, flags = 0x08) => {
      const h = Buffer.alloc(8);
      writeVxlanHeader(h, 0, vni);
      h[0] = flags;
      return h;
    };
    await send(Buffer.concat([hdr(42, 0x0c), arpRequest()]));
    await send(Buffer.concat([hdr(43), arpRequest()]));
    await send(Buffer.concat([hdr(42), arpRequest().subarray(0, 10)]));
    await send(Buffer.alloc(0));
    await send(Buffer.concat([hdr(42), Buffer.alloc(9000)]));
    const rand = rng(42);
    for (let i = 0; i < 50; i++) await send(randomBytes(Math.floor(rand() * 100)));
    await send(Buffer.concat([hdr(42), arpRequest()]));
    await until(() => got.some((m) => m.length >= 50 && checkVxlanHeader(m, 0, 42) === VXLAN_OK && isArpReplyFromGateway(m.subarray(8))));
    const [c] = portCounters('vxlan:');
    expect(c.drops['vxlan-flags']).toBeGreaterThanOrEqual(1);
    expect(c.drops['vxlan-vni']).toBe(1);
    expect(c.drops['vxlan-runt']).toBeGreaterThanOrEqual(2);
    expect(c.drops['vxlan-oversize']).toBe(1);
    // Only the one valid frame reached the bridge.
    expect(c.rxFrames).toBe(1);
    await new Promise<void>((r) => peer.close(() => r()));
  });
});

describe('ports added and removed at run time (the daemon API)', () => {
  it('add() opens a listener with an id, remove() closes it and takes its VMs off the bridge', async () => {
    const path = join(dir, 'rt.sock');
    const info = await sockets.add(parseSocketPortRequest({ kind: 'qemu-stream', listen: `unix:${path}` }));
    expect(info).toEqual({ id: 1, kind: 'qemu-stream', spec: `unix:${path}`, ports: [] });
    const c = await streamClient(path);
    c.sock.write(prefixed(arpRequest()));
    await until(() => c.frames.some(isArpReplyFromGateway));
    expect(sockets.info()[0].ports).toEqual([`qemu:${path}#1`]);
    await expect(sockets.add(parseSocketPortRequest({ kind: 'dgram', listen: `unix:${path}` }))).rejects.toMatchObject({ code: 'ERR_PORT_EXISTS' });
    expect(await sockets.remove(1)).toBe(true);
    await until(() => c.closed());
    expect(portCounters('qemu:')).toEqual([]);
    expect(existsSync(path)).toBe(false);
    expect(await sockets.remove(1)).toBe(false);
    // The path is free again.
    expect((await sockets.add(parseSocketPortRequest({ kind: 'dgram', listen: `unix:${path}` }))).id).toBe(2);
  });

  it('parseSocketPortRequest checks kinds, fields and values', () => {
    expect(parseSocketPortRequest({ kind: 'vxlan', remote: '10.0.0.2', vni: 42, local: '10.0.0.1:4789' }).spec).toMatchObject({
      vni: 42,
      localAddress: '10.0.0.1',
      localPort: 4789,
      remotes: [{ address: '10.0.0.2', port: 4789 }],
    });
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ kind: 'tap' }, /kind must be/],
      [{ kind: 'dgram', listen: 5 }, /listen must be/],
      [{ kind: 'dgram', listen: 'tcp:1.2.3.4:5' }, /expected unix:PATH/],
      [{ kind: 'dgram', listen: 'unix:rel.sock' }, /absolute/],
      [{ kind: 'dgram', listen: '/x', vni: 1 }, /unknown field "vni"/],
      [{ kind: 'vxlan', remote: '10.0.0.2', vni: -1 }, /vni must be/],
      [{ kind: 'vxlan', remote: '10.0.0.2', vni: '5' }, /vni must be/],
      [{ kind: 'vxlan', remote: '10.0.0.2', local: '10.0.0.1' }, /needs a port/],
      [{ kind: 'vxlan', remote: '10.0.0.2,vni=5' }, /remote must be/],
    ];
    for (const [body, re] of bad) expect(() => parseSocketPortRequest(body)).toThrow(re);
  });
});
