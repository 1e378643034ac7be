// Real-kernel tests of FrameIo: frames the namespace's kernel sends arrive in
// the rx slots, and frames we send are taken in by it. Needs root; namespaces
// are removed in afterAll.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, afterEach, describe, expect, it } from 'vitest';

import { NativeError } from '../../src/errors.js';
import { native } from '../../src/native/addon.js';
import type { FrameIo } from '../../src/native/types.js';

const namespaces: string[] = [];
const ios: FrameIo[] = [];

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

afterEach(() => {
  while (ios.length > 0) ios.pop()!.close();
});

afterAll(() => {
  for (const ns of namespaces) {
    try {
      run('ip', ['netns', 'del', ns]);
    } catch {
      // already gone
    }
  }
});

const NS_MAC = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
const PEER_MAC = [0x02, 0x00, 0x00, 0x00, 0x00, 0x99];
const NS_IP = [10, 77, 1, 2];
const PEER_IP = [10, 77, 1, 99];
const VNET = 10;
const SLOT = 2048;
const SLOTS = 8;

interface Harness {
  ns: string;
  io: FrameIo;
  rx: Uint8Array;
  lengths: Uint32Array;
  /** Bytes before the Ethernet header in each slot. */
  pad: number;
  batches: number[];
  errors: Error[];
  /** Called after each batch is recorded. */
  onBatch: (count: number) => void;
}

function setup(vnetHdr: boolean): Harness {
  const ns = `usn-test-${randomBytes(4).toString('hex')}`;
  run('ip', ['netns', 'add', ns]);
  namespaces.push(ns);
  const tap = native.openTapInNamespace({
    target: { netnsPath: `/run/netns/${ns}` },
    tap: { name: 'usnf0', vnetHdr, offloads: 0 },
    configure: { name: 'usnf0', ipv4: NS_IP.join('.'), prefixLength: 24, mac: Uint8Array.from(NS_MAC), up: true },
  });
  const rxBuf = new ArrayBuffer(SLOT * SLOTS);
  const h: Harness = {
    ns,
    io: undefined as unknown as FrameIo,
    rx: new Uint8Array(rxBuf),
    lengths: new Uint32Array(SLOTS),
    pad: vnetHdr ? VNET : 0,
    batches: [],
    errors: [],
    onBatch: () => {},
  };
  h.io = native.createFrameIo({
    fd: tap.fd,
    rx: rxBuf,
    slotSize: SLOT,
    slotCount: SLOTS,
    lengths: h.lengths,
    onBatch: (count) => {
      h.batches.push(count);
      h.onBatch(count);
    },
    onError: (err) => h.errors.push(err),
  });
  ios.push(h.io);
  return h;
}

/** Index of a slot holding an ARP request for PEER_IP, or -1. */
function findArpRequest(h: Harness, count: number): number {
  for (let i = 0; i < count; i++) {
    const s = i * SLOT + h.pad;
    const r = h.rx;
    if (h.lengths[i] < h.pad + 42) continue;
    const isArp = r[s + 12] === 0x08 && r[s + 13] === 0x06;
    const isRequest = r[s + 20] === 0 && r[s + 21] === 1;
    if (isArp && isRequest && PEER_IP.every((b, k) => r[s + 38 + k] === b)) return i;
  }
  return -1;
}

/** An ARP reply "PEER_IP is at PEER_MAC", as an Ethernet header and an ARP body. */
function arpReply(): { eth: number[]; arp: number[] } {
  const eth = [...NS_MAC, ...PEER_MAC, 0x08, 0x06];
  const arp = [0, 1, 0x08, 0x00, 6, 4, 0, 2, ...PEER_MAC, ...PEER_IP, ...NS_MAC, ...NS_IP];
  return { eth, arp };
}

/** Makes the namespace's kernel ARP for PEER_IP (nobody answers the ping itself). */
function pingPeer(ns: string): void {
  const p = spawn('ip', ['netns', 'exec', ns, 'ping', '-c', '1', '-W', '1', PEER_IP.join('.')], { stdio: 'ignore' });
  p.on('error', () => {});
}

function until(pred: () => boolean, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + ms;
    const tick = () => {
      if (pred()) resolve();
      else if (Date.now() > deadline) reject(new Error('timed out'));
      else setTimeout(tick, 10);
    };
    tick();
  });
}

function neighbour(ns: string): any {
  const entries = JSON.parse(run('ip', ['-j', '-n', ns, 'neigh', 'show', 'dev', 'usnf0', 'to', PEER_IP.join('.')]));
  return entries[0];
}

describe.each([
  ['plain', false],
  ['vnet_hdr', true],
])('FrameIo on a %s tap', (_label, vnetHdr) => {
  it('receives the ARP request and answers it with a gathered write', async () => {
    const h = setup(vnetHdr);
    const tx = new ArrayBuffer(256);
    const txBytes = new Uint8Array(tx);
    const txIdx = h.io.registerBuffer(tx);
    expect(txIdx).toBe(1);
    const { eth, arp } = arpReply();
    // Layout in tx: [vnet header (zeroes: a plain frame)] [ethernet] [arp], as three descriptors.
    txBytes.set(eth, 16);
    txBytes.set(arp, 64);
    const desc = vnetHdr
      ? Uint32Array.from([txIdx, 0, VNET, 1, txIdx, 16, 14, 1, txIdx, 64, 28, 0])
      : Uint32Array.from([txIdx, 16, 14, 1, txIdx, 64, 28, 0]);

    let answered = -1;
    h.onBatch = (count) => {
      if (answered >= 0) return;
      const slot = findArpRequest(h, count);
      if (slot < 0) return;
      // The request carries the namespace's MAC as sender.
      const s = slot * SLOT + h.pad;
      expect(Array.from(h.rx.subarray(s + 6, s + 12))).toEqual(NS_MAC);
      answered = h.io.send(desc, 1);
    };
    h.io.start();
    pingPeer(h.ns);
    await until(() => answered >= 0, 5000);
    expect(answered).toBe(1);
    expect(h.io.lastError).toBe(0);
    expect(h.batches.every((c) => c >= 1 && c <= SLOTS)).toBe(true);
    await until(() => neighbour(h.ns)?.lladdr !== undefined, 3000);
    expect(neighbour(h.ns)).toMatchObject({ dst: PEER_IP.join('.'), lladdr: '02:00:00:00:00:99' });
    expect(h.errors).toEqual([]);
  });
});

describe('FrameIo', () => {
  it('delivers nothing while paused and catches up after resume', async () => {
    const h = setup(false);
    let sawArp = false;
    h.onBatch = (count) => {
      if (findArpRequest(h, count) >= 0) sawArp = true;
    };
    h.io.start();
    h.io.pause();
    pingPeer(h.ns);
    await new Promise((r) => setTimeout(r, 400));
    expect(h.batches).toEqual([]);
    h.io.resume();
    await until(() => sawArp, 5000);
    expect(h.batches.length).toBeGreaterThan(0);
  });

  it('readNow reads a waiting batch for its caller without calling onBatch, and nothing while paused', () => {
    const h = setup(false);
    h.io.start();
    expect(h.io.readNow()).toBe(0);
    // The event loop is blocked until ping returns, so the ARP request waits in the tap's queue.
    try {
      execFileSync('ip', ['netns', 'exec', h.ns, 'ping', '-c', '1', '-W', '1', PEER_IP.join('.')], { stdio: 'ignore' });
    } catch {
      // No reply (nobody is PEER_IP): ping exits 1.
    }
    h.io.pause();
    expect(h.io.readNow()).toBe(0);
    h.io.resume();
    const n = h.io.readNow();
    expect(n).toBeGreaterThan(0);
    expect(findArpRequest(h, n)).toBeGreaterThanOrEqual(0);
    expect(h.batches).toEqual([]);
    expect(h.errors).toEqual([]);
  });

  it('reports a deleted tap once through onError and stops', async () => {
    const h = setup(false);
    h.io.start();
    run('ip', ['-n', h.ns, 'link', 'del', 'usnf0']);
    await until(() => h.errors.length > 0, 5000);
    await new Promise((r) => setTimeout(r, 100));
    expect(h.errors).toHaveLength(1);
    const e = h.errors[0] as NativeError;
    expect(e).toBeInstanceOf(NativeError);
    // libuv reports the poll error as EBADF; a read reports EBADFD.
    expect(['EBADF', 'EBADFD']).toContain(e.code);
    expect(e.errno).toBeLessThan(0);
    // Resuming a failed FrameIo is a no-op, and close stays idempotent.
    h.io.resume();
    h.io.close();
    h.io.close();
  });

  it('records the errno of a failed write and stops the batch there', () => {
    const h = setup(false);
    // Too short to be an Ethernet frame: the tap refuses it with EINVAL.
    const tx = new ArrayBuffer(64);
    const idx = h.io.registerBuffer(tx);
    const desc = Uint32Array.from([idx, 0, 5, 0, idx, 0, 5, 0]);
    expect(h.io.send(desc, 2)).toBe(0);
    expect(h.io.lastError).toBe(22);
    // A good frame afterwards clears lastError.
    new Uint8Array(tx).set(arpReply().eth, 0);
    expect(h.io.send(Uint32Array.from([idx, 0, 60, 0]), 1)).toBe(1);
    expect(h.io.lastError).toBe(0);
  });

  it('throws TypeError for bad descriptors and sends nothing of that frame', () => {
    const h = setup(false);
    const idx = h.io.registerBuffer(new ArrayBuffer(100));
    expect(() => h.io.send(Uint32Array.from([5, 0, 10, 0]), 1)).toThrow(TypeError);
    expect(() => h.io.send(Uint32Array.from([idx, 90, 11, 0]), 1)).toThrow(TypeError);
    expect(() => h.io.send(Uint32Array.from([idx, 0xffffffff, 2, 0]), 1)).toThrow(TypeError);
    expect(() => h.io.send(Uint32Array.from([idx, 0, 60, 1]), 1)).toThrow(TypeError);
    expect(() => h.io.send(Uint32Array.from([idx, 0, 60, 0]), 2)).toThrow(TypeError);
    // rx itself is buffer 0 and may be sent from (the bridge forwards in place).
    expect(h.io.send(Uint32Array.from([0, SLOT, 60, 0]), 1)).toBe(1);
  });

  it('rejects a transferred buffer instead of using freed memory', () => {
    const h = setup(false);
    const buf = new ArrayBuffer(100);
    const idx = h.io.registerBuffer(buf);
    structuredClone(buf, { transfer: [buf] });
    expect(buf.byteLength).toBe(0);
    expect(() => h.io.send(Uint32Array.from([idx, 0, 60, 0]), 1)).toThrow(TypeError);
  });

  it('caps registered buffers at 64', () => {
    const h = setup(false);
    for (let i = 1; i < 64; i++) expect(h.io.registerBuffer(new ArrayBuffer(8))).toBe(i);
    expect(() => h.io.registerBuffer(new ArrayBuffer(8))).toThrow(RangeError);
    expect(() => h.io.registerBuffer(new Uint8Array(8) as any)).toThrow(TypeError);
  });

  it('unregisters a buffer: descriptors naming it fail, and its index is reused', () => {
    const h = setup(false);
    for (let i = 1; i < 64; i++) expect(h.io.registerBuffer(new ArrayBuffer(64))).toBe(i);
    h.io.unregisterBuffer(7);
    expect(() => h.io.send(Uint32Array.from([7, 0, 60, 0]), 1)).toThrow(TypeError);
    expect(h.io.registerBuffer(new ArrayBuffer(64))).toBe(7);
    expect(h.io.send(Uint32Array.from([7, 0, 60, 0]), 1)).toBe(1);
    expect(() => h.io.unregisterBuffer(0)).toThrow(RangeError);
    expect(() => h.io.unregisterBuffer(64)).toThrow(RangeError);
  });

  it('after close, send writes nothing and reports EBADF', () => {
    const h = setup(false);
    h.io.start();
    h.io.close();
    expect(h.io.send(Uint32Array.from([0, 0, 60, 0]), 1)).toBe(0);
    expect(h.io.lastError).toBe(9);
    h.io.start();
  });

  it('validates its options in TypeScript', () => {
    const base = {
      fd: 0,
      rx: new ArrayBuffer(SLOT * SLOTS),
      slotSize: SLOT,
      slotCount: SLOTS,
      lengths: new Uint32Array(SLOTS),
      onBatch: () => {},
      onError: () => {},
    };
    expect(() => native.createFrameIo({ ...base, rx: new ArrayBuffer(SLOT * SLOTS - 1) })).toThrow(TypeError);
    expect(() => native.createFrameIo({ ...base, lengths: new Uint32Array(SLOTS - 1) })).toThrow(TypeError);
    expect(() => native.createFrameIo({ ...base, slotSize: 0 })).toThrow(TypeError);
    expect(() => native.createFrameIo({ ...base, slotCount: 0 })).toThrow(TypeError);
    expect(() => native.createFrameIo({ ...base, fd: -1 })).toThrow(TypeError);
    expect(() => native.createFrameIo({ ...base, onBatch: undefined as any })).toThrow(TypeError);
  });

  it('raises an exception thrown by onBatch as uncaught, and tears down cleanly on exit', () => {
    const ns = `usn-test-${randomBytes(4).toString('hex')}`;
    run('ip', ['netns', 'add', ns]);
    namespaces.push(ns);
    const addon = fileURLToPath(new URL('../../src/native/addon.ts', import.meta.url));
    const script = join(tmpdir(), `usn-frame-io-${randomBytes(4).toString('hex')}.ts`);
    // Runs inside the namespace: opens a tap, throws from onBatch, and exits
    // from the uncaughtException handler with the poll still active.
    writeFileSync(
      script,
      `import { spawn } from 'node:child_process';
import { native } from ${JSON.stringify(addon)};
const tap = native.openTap({ name: 'usnf1', vnetHdr: false, offloads: 0 });
native.configureInterface({ name: 'usnf1', ipv4: '10.77.3.2', prefixLength: 24, up: true });
let microtaskRan = false;
const io = native.createFrameIo({
  fd: tap.fd, rx: new ArrayBuffer(${SLOT * SLOTS}), slotSize: ${SLOT}, slotCount: ${SLOTS},
  lengths: new Uint32Array(${SLOTS}),
  onBatch: () => { queueMicrotask(() => { microtaskRan = true; }); throw new Error('boom from onBatch'); },
  onError: () => {},
});
process.on('uncaughtException', (e) => {
  console.log(JSON.stringify({ message: e.message }));
  setTimeout(() => { console.log(JSON.stringify({ microtaskRan })); process.exit(0); }, 50);
});
io.start();
spawn('ping', ['-c', '1', '-W', '1', '10.77.3.99'], { stdio: 'ignore' });
setTimeout(() => { console.log('no batch'); process.exit(3); }, 5000);
`,
    );
    try {
      const tsx = fileURLToPath(new URL('../../node_modules/.bin/tsx', import.meta.url));
      const lines = run('ip', ['netns', 'exec', ns, tsx, script]).trim().split('\n');
      expect(JSON.parse(lines[0])).toEqual({ message: 'boom from onBatch' });
      expect(JSON.parse(lines[lines.length - 1])).toEqual({ microtaskRan: true });
    } finally {
      rmSync(script, { force: true });
    }
  });
});
