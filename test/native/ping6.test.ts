// Real-kernel tests of IPv6 ping sockets (family 6). Needs root.
//
// As in ping.test.ts, every kernel test runs in a child process inside a
// namespace created here, with net.ipv4.ping_group_range (which governs
// ICMPv6 ping sockets too) opened only there. Traffic goes to ::1 in that
// namespace or to a router namespace created here, over ULA addresses that
// exist only between those two. All namespaces are removed in afterAll.
import { execFileSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { PING_HINT_GROUP_RANGE } from '../../src/errors.js';
import { native } from '../../src/native/addon.js';
import { PING_ADDR6_STRIDE, PING_ENTRY_WORDS, PING_KIND_ICMP_ERROR, PING_KIND_REPLY } from '../../src/native/types.js';

const { errno } = constants;
const namespaces: string[] = [];

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function newNetns(tag: string): string {
  const name = `usn-ping6-${tag}-${randomBytes(4).toString('hex')}`;
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

/** Shared rx, entries and address area, as the runtime shares them between flows. */
const PRELUDE = `
import { native } from ${here('../../src/native/addon.ts')};
import * as T from ${here('../../src/native/types.ts')};
import { formatIpv6, parseIpv6 } from ${here('../../stack/wire/ipv6-address.ts')};
const SLOT = 2048;
const SLOTS = 8;
const rx = new ArrayBuffer(SLOT * SLOTS);
const bytes = new Uint8Array(rx);
const entries = new Uint32Array(SLOTS * T.PING_ENTRY_WORDS);
const addrs = new Uint8Array(SLOTS * T.PING_ADDR6_STRIDE);
// Destinations live in one table, as in the NAT's interned address bytes.
const table = new Uint8Array(16 * 8);
let nextDst = 0;
function dst(text: string): number {
  const off = 16 * nextDst++;
  table.set(parseIpv6(text)!, off);
  return off;
}
function echo(seq: number, payload: string): Uint8Array {
  const p = Buffer.from(payload);
  const b = new Uint8Array(8 + p.length);
  b[0] = 128; b[6] = seq >> 8; b[7] = seq & 0xff;
  b.set(p, 8);
  return b;
}
function decode(i: number) {
  const e = entries.subarray(i * T.PING_ENTRY_WORDS, (i + 1) * T.PING_ENTRY_WORDS);
  const a = i * T.PING_ADDR6_STRIDE;
  const o = i * SLOT;
  const len = e[T.PING_LEN];
  return {
    len, kind: e[T.PING_KIND], hasAddr: e[T.PING_ADDR], hasOffender: e[T.PING_OFFENDER], hops: e[T.PING_TTL],
    typeCode: e[T.PING_TYPE_CODE], info: e[T.PING_INFO], errno: e[T.PING_ERRNO],
    addr: formatIpv6(addrs, a + T.PING_ADDR6_PEER), offender: formatIpv6(addrs, a + T.PING_ADDR6_OFFENDER),
    type: bytes[o], code: bytes[o + 1], id: (bytes[o + 4] << 8) | bytes[o + 5], seq: (bytes[o + 6] << 8) | bytes[o + 7],
    payload: Buffer.from(bytes.subarray(o + 8, o + Math.min(len, SLOT))).toString(),
  };
}
function open(extra: Record<string, unknown> = {}) {
  const h: any = { got: [] as any[], errors: [] as string[] };
  h.sock = native.createPingSocket({
    rx, slotSize: SLOT, slotCount: SLOTS, entries, family: 6, addrs,
    onBatch: (n: number) => { for (let i = 0; i < n; i++) h.got.push(decode(i)); },
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
`;

/** Runs `body` (the inside of an async function returning JSON) in a child inside `ns`. */
function inNetns(ns: string, body: string): any {
  const script = join(tmpdir(), `usn-ping6-${randomBytes(4).toString('hex')}.mts`);
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

describe('IPv6 ping sockets on loopback', () => {
  let ns: string;
  beforeAll(() => {
    ns = newNetns('lo');
    allowPing(ns);
  });

  it('gets a reply from ::1 with our payload, the socket id, the hop limit and the source address', () => {
    const r = inNetns(
      ns,
      `const h = open();
       const req = echo(7, 'usernet ping6 payload');
       const big = new Uint8Array(100);
       big.set(req, 30);
       const d = dst('::1');
       const sent = h.sock.send6(big, 30, req.length, table, d);
       await until(() => h.got.length >= 1, 3000, 'the reply');
       await sleep(50);
       h.sock.close();
       return { id: h.sock.localId, family: h.sock.family, sent, reqLen: req.length, got: h.got, errors: h.errors };`,
    );
    expect(r.family).toBe(6);
    expect(r.id).toBeGreaterThan(0);
    expect(r.sent).toBe(r.reqLen);
    expect(r.errors).toEqual([]);
    expect(r.got).toHaveLength(1);
    expect(r.got[0]).toMatchObject({
      kind: PING_KIND_REPLY,
      len: r.reqLen,
      hasAddr: 1,
      addr: '::1',
      hasOffender: 0,
      offender: '::',
      hops: 64,
      typeCode: 0,
      errno: 0,
      type: 129,
      code: 0,
      id: r.id,
      seq: 7,
      payload: 'usernet ping6 payload',
    });
  });

  it('fails a send to an address without a route with ENETUNREACH, and keeps working', () => {
    const r = inNetns(
      ns,
      `const h = open();
       const req = echo(1, 'nowhere');
       const n = h.sock.send6(req, 0, req.length, table, dst('fd99:dead::1'));
       const after = h.sock.send6(req, 0, req.length, table, dst('::1'));
       await until(() => h.got.length >= 1, 3000, 'the reply');
       h.sock.close();
       return { n, after, got: h.got, errors: h.errors };`,
    );
    expect(r.n).toBe(-errno.ENETUNREACH);
    expect(r.after).toBe(8 + 'nowhere'.length);
    expect(r.got.map((g: any) => g.kind)).toEqual([PING_KIND_REPLY]);
  });

  it('keeps send and send6 to their families, and checks send6 arguments', () => {
    const r = inNetns(
      ns,
      `const h = open();
       const v4 = native.createPingSocket({ rx, slotSize: SLOT, slotCount: SLOTS, entries, onBatch: () => {}, onError: () => {} });
       const req = echo(1, 'x');
       const name = (f: () => unknown) => { try { f(); return 'none'; } catch (e: any) { return e.constructor.name; } };
       const out = {
         v4family: v4.family,
         sendOn6: name(() => h.sock.send(req, 0, req.length, 0x7f000001)),
         send6On4: name(() => v4.send6(req, 0, req.length, table, 0)),
         addrPastEnd: name(() => h.sock.send6(req, 0, req.length, table, table.length - 15)),
         hop0: name(() => h.sock.send6(req, 0, req.length, table, 0, 0)),
         tclass256: name(() => h.sock.send6(req, 0, req.length, table, 0, 64, 256)),
         // An echo reply is no request: the kernel refuses it, as an errno.
         notEcho: h.sock.send6(new Uint8Array([129, 0, 0, 0, 0, 0, 0, 0]), 0, 8, table, dst('::1')),
       };
       h.sock.close();
       v4.close();
       return out;`,
    );
    expect(r).toEqual({
      v4family: 4,
      sendOn6: 'TypeError',
      send6On4: 'TypeError',
      addrPastEnd: 'RangeError',
      hop0: 'RangeError',
      tclass256: 'RangeError',
      notEcho: -errno.EINVAL,
    });
  });

  it('fails with the ping_group_range hint where the range is empty', () => {
    const deny = newNetns('deny');
    const r = inNetns(
      deny,
      `try { open(); return { opened: true }; } catch (e: any) { return { name: e.name, code: e.code, hint: e.hint }; }`,
    );
    expect(r).toEqual({ name: 'PingError', code: 'EACCES', hint: PING_HINT_GROUP_RANGE });
  });
});

describe('IPv6 ping sockets and ICMPv6 errors through a router', () => {
  // A (us): fd98:<r>::1/64, default via R (fd98:<r>::2). R forwards; it
  // routes fd98:<r>:1::/64 back to A, so a hop limit 1 probe dies at R, and
  // fd98:<r>:2::/64 is an unreachable route at R.
  // A group of four hex digits with no leading zero, so the addresses below are
  // already in the canonical form the addon reports (fd98:2d4::, not fd98:02d4::).
  const tag = randomInt(0x1000, 0x10000).toString(16);
  const net = `fd98:${tag}`;
  let a: string;
  let r: string;
  beforeAll(() => {
    a = newNetns('a');
    r = newNetns('r');
    allowPing(a);
    const va = `u6a${tag}`;
    const vr = `u6r${tag}`;
    run('ip', ['-n', a, 'link', 'add', va, 'type', 'veth', 'peer', 'name', vr, 'netns', r]);
    run('ip', ['-n', a, 'addr', 'add', `${net}::1/64`, 'dev', va, 'nodad']);
    run('ip', ['-n', a, 'link', 'set', va, 'up']);
    run('ip', ['-n', r, 'addr', 'add', `${net}::2/64`, 'dev', vr, 'nodad']);
    run('ip', ['-n', r, 'link', 'set', vr, 'up']);
    run('ip', ['-n', a, '-6', 'route', 'add', 'default', 'via', `${net}::2`]);
    run('ip', ['netns', 'exec', r, 'sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']);
    run('ip', ['-n', r, '-6', 'route', 'add', `${net}:1::/64`, 'via', `${net}::1`]);
    run('ip', ['-n', r, '-6', 'route', 'add', 'unreachable', `${net}:2::/64`]);
  });

  it('reports hop limit exceeded and unreachable with the offender, and gets the router echo', () => {
    const res = inNetns(
      a,
      `// The neighbour entry for the router may still be resolving: the first probe waits in the kernel.
       const h = open();
       const probe = echo(1, 'probe hop 1');
       const n1 = h.sock.send6(probe, 0, probe.length, table, dst('${net}:1::5'), 1);
       await until(() => h.got.length >= 1, 5000, 'time exceeded');
       const unreach = echo(2, 'to an unreachable net');
       const n2 = h.sock.send6(unreach, 0, unreach.length, table, dst('${net}:2::5'));
       await until(() => h.got.length >= 2, 5000, 'unreachable');
       const hello = echo(3, 'hello router');
       const n3 = h.sock.send6(hello, 0, hello.length, table, dst('${net}::2'));
       await until(() => h.got.length >= 3, 5000, 'the reply');
       h.sock.close();
       return { id: h.sock.localId, n: [n1, n2, n3], got: h.got, errors: h.errors };`,
    );
    expect(res.errors).toEqual([]);
    expect(res.n).toEqual([8 + 11, 8 + 21, 8 + 12]);
    expect(res.got[0]).toMatchObject({
      kind: PING_KIND_ICMP_ERROR,
      hasAddr: 1,
      addr: `${net}:1::5`,
      hasOffender: 1,
      offender: `${net}::2`,
      typeCode: (3 << 8) | 0,
      type: 128,
      id: res.id,
      seq: 1,
      payload: 'probe hop 1',
    });
    expect(res.got[0].errno).toBeGreaterThan(0);
    expect(res.got[1]).toMatchObject({
      kind: PING_KIND_ICMP_ERROR,
      addr: `${net}:2::5`,
      offender: `${net}::2`,
      typeCode: 1 << 8,
      type: 128,
      seq: 2,
    });
    expect(res.got[2]).toMatchObject({ kind: PING_KIND_REPLY, addr: `${net}::2`, id: res.id, seq: 3, payload: 'hello router' });
  });
  it('applies a socket-wide hop limit, overridden per send and restored after', () => {
    const res = inNetns(
      a,
      `const h = open({ ttl: 1 });
       const far = echo(9, 'socket hops');
       h.sock.send6(far, 0, far.length, table, dst('${net}:1::9'));
       await until(() => h.got.length >= 1, 5000, 'time exceeded');
       const near = echo(10, 'per-send hops');
       h.sock.send6(near, 0, near.length, table, dst('${net}:1::9'), 64);
       await sleep(300);
       const again = echo(11, 'socket hops again');
       h.sock.send6(again, 0, again.length, table, dst('${net}:1::9'));
       await until(() => h.got.length >= 2, 5000, 'the second time exceeded');
       await sleep(100);
       h.sock.close();
       return { got: h.got.map((g: any) => [g.kind, g.typeCode, g.seq]) };`,
    );
    // Seq 10 is routed on by R back to A, which has no such address: it dies elsewhere, never with time exceeded.
    expect(res.got).toEqual([
      [PING_KIND_ICMP_ERROR, 3 << 8, 9],
      [PING_KIND_ICMP_ERROR, 3 << 8, 11],
    ]);
  });
});

describe('IPv6 ping socket validation before the addon is called', () => {
  const base = () => ({
    rx: new ArrayBuffer(2048 * 4),
    slotSize: 2048,
    slotCount: 4,
    entries: new Uint32Array(4 * PING_ENTRY_WORDS),
    onBatch: () => {},
    onError: () => {},
  });

  it('needs an address area of 32 bytes per slot for family 6, and none for family 4', () => {
    expect(() => native.createPingSocket({ ...base(), family: 6 })).toThrow(TypeError);
    expect(() => native.createPingSocket({ ...base(), family: 6, addrs: new Uint8Array(4 * PING_ADDR6_STRIDE - 1) })).toThrow(TypeError);
    expect(() => native.createPingSocket({ ...base(), family: 5 as any })).toThrow(TypeError);
    expect(() => native.createPingSocket({ ...base(), addrs: new Uint8Array(4 * PING_ADDR6_STRIDE) })).toThrow(TypeError);
  });
});
