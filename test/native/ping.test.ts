// Real-kernel tests of the native ping sockets. Needs root.
//
// Ping sockets obey net.ipv4.ping_group_range, which is per network
// namespace and empty ("1 0") by default, for root as well. Rather than widen
// it on the host, every kernel test runs its body in a child process inside a
// namespace created here, with the range opened up only there. Traffic goes to
// 127.0.0.1 in that namespace or to a router namespace created here. All
// namespaces are removed in afterAll.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { NativeError, PING_HINT_GROUP_RANGE, PingError, translatePingError } from '../../src/errors.js';
import { native } from '../../src/native/addon.js';
import {
  PING_ENTRY_WORDS,
  PING_KIND_ICMP_ERROR,
  PING_KIND_REPLY,
  PING_MAX_BATCH,
  PING_TRUNCATED,
} from '../../src/native/types.js';

const { errno } = constants;
const namespaces: string[] = [];

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function newNetns(tag: string): string {
  const name = `usn-ping-${tag}-${randomBytes(4).toString('hex')}`;
  run('ip', ['netns', 'add', name]);
  namespaces.push(name);
  run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return name;
}

function allowPing(ns: string): void {
  run('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.ping_group_range=0 2147483647']);
}

afterAll(() => {
  for (const ns of namespaces) {
    try {
      run('ip', ['netns', 'del', ns]);
    } catch {
      // already gone
    }
  }
});

const here = (rel: string) => JSON.stringify(fileURLToPath(new URL(rel, import.meta.url)));

/**
 * What every child script starts with: one shared rx arena and entry array
 * (as the runtime would share them between flows), and helpers to build echo
 * requests and decode entries.
 */
const PRELUDE = `
import { native } from ${here('../../src/native/addon.ts')};
import * as T from ${here('../../src/native/types.ts')};
const SLOT = 2048;
const SLOTS = T.PING_MAX_BATCH;
const rx = new ArrayBuffer(SLOT * SLOTS);
const bytes = new Uint8Array(rx);
const entries = new Uint32Array(SLOTS * T.PING_ENTRY_WORDS);
const ip = (s: string) => s.split('.').reduce((a, b) => a * 256 + Number(b), 0);
function echo(seq: number, payload: string): Uint8Array {
  const p = Buffer.from(payload);
  const b = new Uint8Array(8 + p.length);
  b[0] = 8; b[6] = seq >> 8; b[7] = seq & 0xff;
  b.set(p, 8);
  return b;
}
function decode(i: number) {
  const e = entries.subarray(i * T.PING_ENTRY_WORDS, (i + 1) * T.PING_ENTRY_WORDS);
  const o = i * SLOT;
  const len = e[T.PING_LEN];
  return {
    len, kind: e[T.PING_KIND], addr: e[T.PING_ADDR], offender: e[T.PING_OFFENDER], ttl: e[T.PING_TTL],
    typeCode: e[T.PING_TYPE_CODE], info: e[T.PING_INFO], errno: e[T.PING_ERRNO],
    type: bytes[o], code: bytes[o + 1], id: (bytes[o + 4] << 8) | bytes[o + 5], seq: (bytes[o + 6] << 8) | bytes[o + 7],
    payload: Buffer.from(bytes.subarray(o + 8, o + Math.min(len, SLOT))).toString(),
  };
}
function open(extra: Record<string, unknown> = {}) {
  const h: any = { batches: [] as number[], got: [] as any[], errors: [] as string[] };
  h.sock = native.createPingSocket({
    rx, slotSize: SLOT, slotCount: SLOTS, entries,
    onBatch: (n: number) => { h.batches.push(n); for (let i = 0; i < n; i++) h.got.push(decode(i)); },
    onError: (e: Error) => h.errors.push(String(e)),
    ...extra,
  });
  return h;
}
function until(pred: () => boolean, ms: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + ms;
    const tick = () => {
      if (pred()) resolve();
      else if (Date.now() > deadline) reject(new Error('timed out waiting for ' + what));
      else setTimeout(tick, 5);
    };
    tick();
  });
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Blocks the event loop, so that packets arrive while nothing reads them. */
const block = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
`;

/** Runs `body` (the inside of an async function returning JSON) in a child inside `ns`. */
function inNetns(ns: string, body: string): any {
  const script = join(tmpdir(), `usn-ping-${randomBytes(4).toString('hex')}.mts`);
  writeFileSync(
    script,
    `${PRELUDE}
async function main(): Promise<unknown> {
${body}
}
main().then(
  (r) => { console.log(JSON.stringify(r)); process.exit(0); },
  (e) => { console.log(JSON.stringify({ failed: String(e && e.stack || e) })); process.exit(1); },
);
`,
  );
  const tsx = fileURLToPath(new URL('../../node_modules/.bin/tsx', import.meta.url));
  try {
    let out: string;
    try {
      out = run('ip', ['netns', 'exec', ns, tsx, script]);
    } catch (e: any) {
      throw new Error(`child failed: ${e.stdout ?? ''}${e.stderr ?? ''}`, { cause: e });
    }
    const lines = out.trim().split('\n');
    return JSON.parse(lines[lines.length - 1]);
  } finally {
    rmSync(script, { force: true });
  }
}

describe('ping sockets on loopback', () => {
  let ns: string;
  beforeAll(() => {
    ns = newNetns('lo');
    allowPing(ns);
  });

  it('gets a reply from 127.0.0.1 with our payload and the socket id', () => {
    const r = inNetns(
      ns,
      `const h = open();
       const req = echo(7, 'usernet ping payload');
       // Sent from the middle of a larger buffer: off and len are honoured.
       const big = new Uint8Array(100);
       big.set(req, 30);
       const sent = h.sock.send(big, 30, req.length, ip('127.0.0.1'));
       await until(() => h.got.length >= 1, 3000, 'the reply');
       await sleep(50);
       h.sock.close();
       return { id: h.sock.localId, sent, reqLen: req.length, got: h.got, errors: h.errors };`,
    );
    expect(r.id).toBeGreaterThan(0);
    expect(r.id).toBeLessThanOrEqual(0xffff);
    expect(r.sent).toBe(r.reqLen);
    expect(r.errors).toEqual([]);
    expect(r.got).toHaveLength(1);
    expect(r.got[0]).toMatchObject({
      kind: PING_KIND_REPLY,
      len: r.reqLen,
      addr: 0x7f000001,
      offender: 0,
      ttl: 64,
      typeCode: 0,
      errno: 0,
      type: 0,
      code: 0,
      id: r.id,
      seq: 7,
      payload: 'usernet ping payload',
    });
  });

  it('receives a burst of 100 echoes in capped batches', () => {
    const r = inNetns(
      ns,
      `const h = open();
       const sent: number[] = [];
       // Sent in one go, so the replies are all queued before the first wakeup.
       for (let seq = 0; seq < 100; seq++) sent.push(h.sock.send(echo(seq, 'burst ' + seq), 0, 8 + ('burst ' + seq).length, ip('127.0.0.1')));
       await until(() => h.got.length >= 100, 5000, '100 replies');
       await sleep(50);
       h.sock.close();
       return { id: h.sock.localId, sent, batches: h.batches, got: h.got };`,
    );
    expect(r.sent.every((n: number, seq: number) => n === 8 + `burst ${seq}`.length)).toBe(true);
    expect(r.batches.reduce((a: number, b: number) => a + b, 0)).toBe(100);
    expect(Math.max(...r.batches)).toBeLessThanOrEqual(PING_MAX_BATCH);
    expect(r.batches[0]).toBe(PING_MAX_BATCH);
    expect(r.batches.length).toBeGreaterThanOrEqual(2);
    const seqs = r.got.map((g: any) => g.seq).sort((a: number, b: number) => a - b);
    expect(seqs).toEqual([...Array(100).keys()]);
    for (const g of r.got) {
      expect(g.kind).toBe(PING_KIND_REPLY);
      expect(g.id).toBe(r.id);
      expect(g.payload).toBe(`burst ${g.seq}`);
    }
  });

  it('marks a reply longer than a slot as truncated', () => {
    const r = inNetns(
      ns,
      `const small = new Uint32Array(T.PING_ENTRY_WORDS);
       let entry: number[] = [];
       const sock = native.createPingSocket({
         rx: new ArrayBuffer(16), slotSize: 16, slotCount: 1, entries: small,
         onBatch: () => { entry = Array.from(small); }, onError: () => {},
       });
       const req = echo(1, 'x'.repeat(100));
       sock.send(req, 0, req.length, ip('127.0.0.1'));
       await until(() => entry.length > 0, 3000, 'the reply');
       sock.close();
       return { entry };`,
    );
    expect(r.entry[0]).toBe(16);
    expect(r.entry[1]).toBe(PING_KIND_REPLY | PING_TRUNCATED);
  });

  it('fails a send to an address without a route with ENETUNREACH at once', () => {
    const r = inNetns(
      ns,
      `const h = open();
       const req = echo(1, 'nowhere');
       const n = h.sock.send(req, 0, req.length, ip('10.255.255.1'));
       await sleep(200);
       const after = h.sock.send(req, 0, req.length, ip('127.0.0.1'));
       await until(() => h.got.length >= 1, 3000, 'the reply');
       h.sock.close();
       return { n, after, got: h.got, errors: h.errors };`,
    );
    expect(r.n).toBe(-errno.ENETUNREACH);
    // The failure left nothing queued, and the socket still works.
    expect(r.after).toBe(8 + 'nowhere'.length);
    expect(r.got.map((g: any) => g.kind)).toEqual([PING_KIND_REPLY]);
    expect(r.errors).toEqual([]);
  });

  it('runs no callback after close, and then sends nothing', () => {
    const r = inNetns(
      ns,
      `const h = open();
       const req = echo(3, 'closing');
       const n = h.sock.send(req, 0, req.length, ip('127.0.0.1'));
       // The reply is already queued (loopback answers within the send), but
       // the poll has not fired yet.
       h.sock.close();
       await sleep(300);
       const afterClose = h.sock.send(req, 0, req.length, ip('127.0.0.1'));
       h.sock.close();
       return { n, afterClose, batches: h.batches, errors: h.errors, id: h.sock.localId };`,
    );
    expect(r.n).toBe(8 + 'closing'.length);
    expect(r.batches).toEqual([]);
    expect(r.errors).toEqual([]);
    expect(r.afterClose).toBe(-errno.EBADF);
    expect(r.id).toBeGreaterThan(0);
  });

  it('a closed socket lets go of its callbacks and buffers (the callbacks close over its wrapper)', () => {
    const r = inNetns(
      ns,
      `const v8 = await import('node:v8');
       const vm = await import('node:vm');
       v8.setFlagsFromString('--expose-gc');
       const gc = vm.runInNewContext('gc');
       // A FinalizationRegistry: V8 keeps a WeakRef's target for the rest of the job that made it.
       const dead = new Set<string>();
       const registry = new FinalizationRegistry<string>((name) => dead.add(name));
       (() => {
         const rx2 = new ArrayBuffer(SLOT * SLOTS);
         const entries2 = new Uint32Array(SLOTS * T.PING_ENTRY_WORDS);
         const h: any = {};
         h.sock = native.createPingSocket({ rx: rx2, slotSize: SLOT, slotCount: SLOTS, entries: entries2, onBatch: () => h.sock, onError: () => h.sock });
         registry.register(rx2, 'rx');
         registry.register(entries2, 'entries');
         registry.register(h.sock, 'sock');
         h.sock.close();
       })();
       for (let i = 0; i < 10 && dead.size < 3; i++) {
         gc();
         await sleep(10);
       }
       return { dead: [...dead].sort() };`,
    );
    expect(r.dead).toEqual(['entries', 'rx', 'sock']);
  });

  it('opens and closes 200 sockets without leaking fds', () => {
    const r = inNetns(
      ns,
      `const fs = await import('node:fs');
       // Socket fds by number (Node's own files may open and close meanwhile).
       const sockets = () => new Set(fs.readdirSync('/proc/self/fd').filter((fd) => {
         try { return fs.readlinkSync('/proc/self/fd/' + fd).startsWith('socket:'); } catch { return false; }
       }));
       const before = sockets();
       const socks = [];
       for (let i = 0; i < 200; i++) socks.push(open().sock);
       const added = [...sockets()].filter((fd) => !before.has(fd));
       const ids = new Set(socks.map((s) => s.localId));
       for (const s of socks) s.close();
       await sleep(50);
       const after = sockets();
       return { added: added.length, leaked: added.filter((fd) => after.has(fd)).length, distinct: ids.size };`,
    );
    expect(r.distinct).toBe(200);
    expect(r.added).toBe(200);
    expect(r.leaked).toBe(0);
  });

  it('checks send arguments before the syscall', () => {
    const r = inNetns(
      ns,
      `const h = open();
       const req = echo(1, 'x');
       const name = (f: () => unknown) => { try { f(); return 'none'; } catch (e: any) { return e.constructor.name; } };
       const out = {
         pastEnd: name(() => h.sock.send(req, 2, req.length, ip('127.0.0.1'))),
         negativeOff: name(() => h.sock.send(req, -1, 1, ip('127.0.0.1'))),
         notBytes: name(() => h.sock.send(new Uint16Array(8) as any, 0, 8, ip('127.0.0.1'))),
         badDst: name(() => h.sock.send(req, 0, req.length, 2 ** 32)),
         ttl0: name(() => h.sock.send(req, 0, req.length, ip('127.0.0.1'), 0)),
         tos256: name(() => h.sock.send(req, 0, req.length, ip('127.0.0.1'), 64, 256)),
         // Not an echo request: the kernel refuses it, as an errno.
         notEcho: h.sock.send(new Uint8Array(8), 0, 8, ip('127.0.0.1')),
       };
       h.sock.close();
       return out;`,
    );
    expect(r).toEqual({
      pastEnd: 'RangeError',
      negativeOff: 'RangeError',
      notBytes: 'TypeError',
      badDst: 'TypeError',
      ttl0: 'RangeError',
      tos256: 'RangeError',
      notEcho: -errno.EINVAL,
    });
  });
});

describe('ping sockets and ICMP errors through a router', () => {
  // A (us): 10.203.0.1/24, default via R. R: 10.203.0.2/24, forwarding on.
  // 10.204.0.0/24 is routed on by R (back to A), so a TTL 1 probe dies at R
  // with "time exceeded"; 10.205.0.0/24 is an unreachable route at R.
  let a: string;
  let r: string;
  beforeAll(() => {
    a = newNetns('a');
    r = newNetns('r');
    allowPing(a);
    run('ip', ['-n', a, 'link', 'add', 'usnpa', 'type', 'veth', 'peer', 'name', 'usnpr', 'netns', r]);
    run('ip', ['-n', a, 'addr', 'add', '10.203.0.1/24', 'dev', 'usnpa']);
    run('ip', ['-n', a, 'link', 'set', 'usnpa', 'up']);
    run('ip', ['-n', a, 'route', 'add', 'default', 'via', '10.203.0.2']);
    run('ip', ['-n', r, 'addr', 'add', '10.203.0.2/24', 'dev', 'usnpr']);
    run('ip', ['-n', r, 'link', 'set', 'usnpr', 'up']);
    run('ip', ['netns', 'exec', r, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    // R's ICMP rate limit stays at its default: its per-peer bucket (a burst
    // of 6) covers the 5 errors these tests provoke. Setting icmp_ratelimit to
    // 0 would not help: it empties the bucket that R's unreachable-route
    // errors draw from too, and silences them.
    run('ip', ['-n', r, 'route', 'add', '10.204.0.0/24', 'via', '10.203.0.1']);
    run('ip', ['-n', r, 'route', 'add', 'unreachable', '10.205.0.0/24']);
  });

  it('reports TTL exceeded and host unreachable with the offender, type and code, and keeps sending', () => {
    const res = inNetns(
      a,
      `const h = open();
       const probe = echo(1, 'probe ttl 1');
       const n1 = h.sock.send(probe, 0, probe.length, ip('10.204.0.5'), 1);
       await until(() => h.got.length >= 1, 3000, 'time exceeded');
       const unreach = echo(2, 'to an unreachable net');
       const n2 = h.sock.send(unreach, 0, unreach.length, ip('10.205.0.5'));
       await until(() => h.got.length >= 2, 3000, 'host unreachable');
       // The next error arrives while the loop is blocked and becomes the
       // socket's pending error; the send after it must still go out.
       const n3 = h.sock.send(probe, 0, probe.length, ip('10.204.0.5'), 1, 0x10);
       block(200);
       const hello = echo(4, 'hello router');
       const n4 = h.sock.send(hello, 0, hello.length, ip('10.203.0.2'));
       await until(() => h.got.length >= 4, 3000, 'the third error and the reply');
       h.sock.close();
       return { id: h.sock.localId, n: [n1, n2, n3, n4], got: h.got, errors: h.errors };`,
    );
    expect(res.errors).toEqual([]);
    expect(res.n).toEqual([8 + 11, 8 + 21, 8 + 11, 8 + 12]);
    const router = 0x0acb0002;
    expect(res.got[0]).toMatchObject({
      kind: PING_KIND_ICMP_ERROR,
      addr: 0x0acc0005,
      offender: router,
      typeCode: (11 << 8) | 0,
      errno: errno.EHOSTUNREACH,
      // The slot holds our request as quoted back: echo request, our id.
      type: 8,
      id: res.id,
      seq: 1,
      payload: 'probe ttl 1',
    });
    expect(res.got[1]).toMatchObject({
      kind: PING_KIND_ICMP_ERROR,
      addr: 0x0acd0005,
      offender: router,
      typeCode: (3 << 8) | 1,
      errno: errno.EHOSTUNREACH,
      type: 8,
      id: res.id,
      seq: 2,
    });
    // Errors are drained before replies within a batch.
    expect(res.got[2]).toMatchObject({ kind: PING_KIND_ICMP_ERROR, typeCode: 11 << 8, seq: 1 });
    expect(res.got[3]).toMatchObject({ kind: PING_KIND_REPLY, addr: router, id: res.id, seq: 4, payload: 'hello router' });
  });

  it('applies a socket-wide TTL', () => {
    const res = inNetns(
      a,
      `const h = open({ ttl: 1 });
       const probe = echo(9, 'socket ttl');
       h.sock.send(probe, 0, probe.length, ip('10.204.0.9'));
       // A per-send TTL overrides it.
       const far = echo(10, 'per-send ttl');
       h.sock.send(far, 0, far.length, ip('10.203.0.2'), 64);
       await until(() => h.got.length >= 2, 3000, 'two entries');
       h.sock.close();
       return { got: h.got };`,
    );
    const kinds = res.got.map((g: any) => [g.kind, g.seq]).sort();
    expect(kinds).toEqual([
      [PING_KIND_REPLY, 10],
      [PING_KIND_ICMP_ERROR, 9],
    ].sort());
  });
});

describe('ping socket creation errors', () => {
  it('fails with EACCES and the ping_group_range hint where the range is empty', () => {
    // A fresh namespace has the default range "1 0": nobody, root included.
    const ns = newNetns('deny');
    const r = inNetns(
      ns,
      `const range = (await import('node:fs')).readFileSync('/proc/sys/net/ipv4/ping_group_range', 'utf8').trim();
       try {
         open();
         return { range, opened: true };
       } catch (e: any) {
         return { range, name: e.name, code: e.code, errno: e.errno, syscall: e.syscall, hint: e.hint, message: e.message };
       }`,
    );
    expect(r.range.split(/\s+/)).toEqual(['1', '0']);
    expect(r).toMatchObject({
      name: 'PingError',
      code: 'EACCES',
      errno: -errno.EACCES,
      syscall: 'socket(ICMP)',
      hint: PING_HINT_GROUP_RANGE,
    });
    expect(r.message).toContain('ping_group_range');
  });

  it('translatePingError adds the hint only to EACCES from socket(ICMP)', () => {
    const raw = Object.assign(new Error('socket(ICMP) failed: EACCES'), {
      code: 'EACCES',
      errno: -13,
      syscall: 'socket(ICMP)',
    });
    const e = translatePingError(raw) as PingError;
    expect(e).toBeInstanceOf(PingError);
    expect(e).toBeInstanceOf(NativeError);
    expect(e.hint).toBe(PING_HINT_GROUP_RANGE);
    const other = translatePingError(Object.assign(new Error('x'), { code: 'EMFILE', errno: -24, syscall: 'socket(ICMP)' }));
    expect(other).toBeInstanceOf(NativeError);
    expect(other).not.toBeInstanceOf(PingError);
    const plain = new TypeError('bad');
    expect(translatePingError(plain)).toBe(plain);
  });
});

describe('ping socket validation before the addon is called', () => {
  const base = () => ({
    rx: new ArrayBuffer(2048 * 4),
    slotSize: 2048,
    slotCount: 4,
    entries: new Uint32Array(4 * PING_ENTRY_WORDS),
    onBatch: () => {},
    onError: () => {},
  });

  it('rejects bad layouts and values', () => {
    expect(() => native.createPingSocket({ ...base(), slotCount: PING_MAX_BATCH + 1 })).toThrow(TypeError);
    expect(() => native.createPingSocket({ ...base(), slotCount: 0 })).toThrow(TypeError);
    expect(() => native.createPingSocket({ ...base(), slotSize: 4 })).toThrow(TypeError);
    expect(() => native.createPingSocket({ ...base(), rx: new ArrayBuffer(2048 * 4 - 1) })).toThrow(TypeError);
    expect(() => native.createPingSocket({ ...base(), entries: new Uint32Array(4 * PING_ENTRY_WORDS - 1) })).toThrow(
      TypeError,
    );
    expect(() => native.createPingSocket({ ...base(), ttl: 0 })).toThrow(RangeError);
    expect(() => native.createPingSocket({ ...base(), ttl: 256 })).toThrow(RangeError);
    expect(() => native.createPingSocket({ ...base(), tos: -1 })).toThrow(RangeError);
    expect(() => native.createPingSocket({ ...base(), onBatch: undefined as any })).toThrow(TypeError);
    expect(() => native.createPingSocket(null as any)).toThrow(TypeError);
  });
});
