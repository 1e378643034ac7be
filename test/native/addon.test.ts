// Real-kernel tests of the native addon: taps and interface configuration in
// throwaway network namespaces. Needs root; every namespace is removed in afterAll.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, afterEach, describe, expect, it } from 'vitest';

import {
  ConfigError,
  NativeError,
  TAP_HINT_BUSY,
  TAP_HINT_NO_DEVICE,
  TAP_HINT_PERMISSION,
  TAP_HINT_TUN_MODE,
  TapError,
  translateTapError,
  UsernetError,
} from '../../src/errors.js';
import { native } from '../../src/native/addon.js';
import { TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_USO4, TUN_F_USO6 } from '../../src/native/types.js';

const namespaces: string[] = [];
const fds: number[] = [];
const children: ChildProcess[] = [];

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function newNetns(): string {
  const name = `usn-test-${randomBytes(4).toString('hex')}`;
  run('ip', ['netns', 'add', name]);
  namespaces.push(name);
  return name;
}

function ipJson(ns: string, args: string[]): any[] {
  return JSON.parse(run('ip', ['-j', '-n', ns, ...args]));
}

/** Catches what fn throws, failing the test if it does not throw. */
function thrown(fn: () => unknown): any {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected an error');
}

afterEach(() => {
  while (fds.length > 0) native.closeFd(fds.pop()!);
});

afterAll(() => {
  for (const c of children) c.kill('SIGKILL');
  for (const ns of namespaces) {
    try {
      run('ip', ['netns', 'del', ns]);
    } catch {
      // already gone
    }
  }
});

describe('openTapInNamespace', () => {
  it('opens and configures a tap inside a named namespace', () => {
    const ns = newNetns();
    const h = native.openTapInNamespace({
      target: { netnsPath: `/run/netns/${ns}` },
      tap: { name: 'usn0', vnetHdr: false, offloads: 0 },
      configure: {
        name: 'usn0',
        ipv4: '10.77.0.2',
        prefixLength: 24,
        mtu: 1400,
        mac: Uint8Array.from([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]),
        up: true,
        defaultGateway: '10.77.0.1',
        loopbackUp: true,
        txQueueLen: 500,
      },
    });
    fds.push(h.fd);
    expect(h).toMatchObject({ name: 'usn0', attached: false, vnetHdr: false, offloads: 0, netnsFd: -1, usernsFd: -1 });
    expect(h.fd).toBeGreaterThan(2);

    const [link] = ipJson(ns, ['link', 'show', 'dev', 'usn0']);
    expect(link.mtu).toBe(1400);
    expect(link.address).toBe('02:11:22:33:44:55');
    expect(link.flags).toContain('UP');
    expect(link.txqlen).toBe(500);

    const [addr] = ipJson(ns, ['addr', 'show', 'dev', 'usn0']);
    const v4 = addr.addr_info.filter((a: any) => a.family === 'inet');
    expect(v4).toHaveLength(1);
    expect(v4[0]).toMatchObject({ local: '10.77.0.2', prefixlen: 24, broadcast: '10.77.0.255' });

    const routes = ipJson(ns, ['route', 'show', 'default']);
    expect(routes).toEqual([expect.objectContaining({ dst: 'default', gateway: '10.77.0.1', dev: 'usn0' })]);

    const [lo] = ipJson(ns, ['link', 'show', 'dev', 'lo']);
    expect(lo.flags).toContain('UP');
  });

  it('attaches to a tap that already exists', () => {
    const ns = newNetns();
    run('ip', ['-n', ns, 'tuntap', 'add', 'dev', 'usn1', 'mode', 'tap']);
    const h = native.openTapInNamespace({
      target: { netnsPath: `/run/netns/${ns}` },
      tap: { name: 'usn1', vnetHdr: false, offloads: 0 },
    });
    fds.push(h.fd);
    expect(h.attached).toBe(true);
    // Attached: the kernel now reports carrier on the persistent tap.
    run('ip', ['-n', ns, 'link', 'set', 'usn1', 'up']);
    const [link] = ipJson(ns, ['link', 'show', 'dev', 'usn1']);
    expect(link.flags).toContain('LOWER_UP');
  });

  it('opens a multi-queue tap as one fd per queue, each with the vnet header and offloads', () => {
    const ns = newNetns();
    const h = native.openTapInNamespace({
      target: { netnsPath: `/run/netns/${ns}` },
      tap: { name: 'usnq0', vnetHdr: true, offloads: 0x07, queues: 3 },
      configure: { name: 'usnq0', ipv4: '10.77.9.2', prefixLength: 24, up: true },
    });
    fds.push(h.fd, ...(h.queueFds ?? []));
    expect(h).toMatchObject({ vnetHdr: true, offloads: 0x07, multiqueueFallback: null, netnsFd: -1, usernsFd: -1 });
    expect(h.queueFds).toHaveLength(2);
    expect(new Set([h.fd, ...h.queueFds!]).size).toBe(3);
    // The kernel sees one device with three queues, each attached.
    const q = run('ip', ['netns', 'exec', ns, 'ls', '/sys/class/net/usnq0/queues']).split(/\s+/).filter((x) => x.startsWith('tx-'));
    expect(q).toHaveLength(3);
    const [link] = ipJson(ns, ['-d', 'link', 'show', 'dev', 'usnq0']);
    expect(link.linkinfo.info_data.multi_queue).toBe(true);
    // Each queue carries frames: a frame the namespace sends arrives on one of them, with its 10-byte header.
    try {
      run('ip', ['netns', 'exec', ns, 'ping', '-c', '1', '-W', '0.2', '10.77.9.1']);
    } catch {
      // no answer: nobody reads the queues yet; its ARP request is what we look for
    }
    const buf = Buffer.alloc(2048);
    let got = 0;
    for (const fd of [h.fd, ...h.queueFds!]) {
      try {
        if (readSync(fd, buf) > 10 + 14) got++;
      } catch {
        // EAGAIN: nothing on this queue
      }
    }
    expect(got).toBeGreaterThan(0);
  });

  it('falls back to one queue where multi-queue is refused (an existing single-queue tap)', () => {
    const ns = newNetns();
    run('ip', ['-n', ns, 'tuntap', 'add', 'dev', 'usnq1', 'mode', 'tap']);
    const h = native.openTapInNamespace({
      target: { netnsPath: `/run/netns/${ns}` },
      tap: { name: 'usnq1', vnetHdr: true, offloads: 0x07, queues: 2 },
    });
    fds.push(h.fd, ...(h.queueFds ?? []));
    expect(h.attached).toBe(true);
    expect(h.queueFds).toEqual([]);
    expect(h.multiqueueFallback).toMatchObject({ code: 'EINVAL', syscall: 'ioctl(TUNSETIFF,IFF_MULTI_QUEUE)' });
    expect(h.vnetHdr).toBe(true);
  });

  it('joins the namespaces of a pid (user namespace optional)', async () => {
    const ns = newNetns();
    const sleeper = spawn('ip', ['netns', 'exec', ns, 'sleep', '30'], { stdio: 'ignore' });
    children.push(sleeper);
    // Wait until `ip netns exec` has switched and exec'd sleep.
    const mine = run('readlink', ['/proc/self/ns/net']).trim();
    const deadline = Date.now() + 5000;
    while (run('readlink', [`/proc/${sleeper.pid}/ns/net`]).trim() === mine) {
      if (Date.now() > deadline) throw new Error('sleeper never entered the namespace');
      await new Promise((r) => setTimeout(r, 20));
    }
    try {
      const h = native.openTapInNamespace({
        target: { pid: sleeper.pid! },
        tap: { name: 'usn-pid', vnetHdr: false, offloads: 0 },
      });
      fds.push(h.fd);
      expect(h.attached).toBe(false);
      expect(ipJson(ns, ['link', 'show', 'dev', 'usn-pid'])).toHaveLength(1);
    } finally {
      sleeper.kill('SIGKILL');
    }
  });

  it('creates a network namespace and returns an fd that keeps it', () => {
    const h = native.openTapInNamespace({
      target: { create: true },
      tap: { name: 'usn2', vnetHdr: false, offloads: 0 },
      configure: { name: 'usn2', up: true, loopbackUp: true, ipv4: '10.77.2.2', prefixLength: 24 },
    });
    fds.push(h.fd, h.netnsFd);
    expect(h.netnsFd).toBeGreaterThan(2);
    expect(h.usernsFd).toBe(-1);
    const nsFile = `/proc/${process.pid}/fd/${h.netnsFd}`;
    expect(run('readlink', [nsFile])).not.toBe(run('readlink', ['/proc/self/ns/net']));
    const links = JSON.parse(run('nsenter', [`--net=${nsFile}`, 'ip', '-j', 'link', 'show']));
    const names = links.map((l: any) => l.ifname);
    expect(names).toContain('usn2');
    expect(names).toContain('lo');
    const addrs = JSON.parse(run('nsenter', [`--net=${nsFile}`, 'ip', '-j', 'addr', 'show', 'dev', 'usn2']));
    expect(addrs[0].addr_info.some((a: any) => a.local === '10.77.2.2' && a.prefixlen === 24)).toBe(true);
  });

  it('creates a user and a network namespace with our ids mapped to root', () => {
    const h = native.openTapInNamespace({
      target: { create: true, createUserns: { uid: process.getuid!(), gid: process.getgid!() } },
      tap: { name: 'usn3', vnetHdr: false, offloads: 0 },
      configure: { name: 'usn3', up: true },
    });
    fds.push(h.fd, h.netnsFd, h.usernsFd);
    expect(h.usernsFd).toBeGreaterThan(2);
    const userFile = `/proc/${process.pid}/fd/${h.usernsFd}`;
    const netFile = `/proc/${process.pid}/fd/${h.netnsFd}`;
    expect(run('readlink', [userFile])).not.toBe(run('readlink', ['/proc/self/ns/user']));
    const links = JSON.parse(run('nsenter', [`--user=${userFile}`, `--net=${netFile}`, 'ip', '-j', 'link', 'show', 'usn3']));
    expect(links[0].flags).toContain('UP');
    const map = run('nsenter', [`--user=${userFile}`, 'cat', '/proc/self/uid_map']).trim().split(/\s+/);
    expect(map).toEqual(['0', String(process.getuid!()), '1']);
  });

  it('grants TSO offloads on a vnet_hdr tap', () => {
    const ns = newNetns();
    const want = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_USO4 | TUN_F_USO6;
    const h = native.openTapInNamespace({
      target: { netnsPath: `/run/netns/${ns}` },
      tap: { name: 'usn4', vnetHdr: true, offloads: want },
    });
    fds.push(h.fd);
    expect(h.vnetHdr).toBe(true);
    const tso = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
    expect(h.offloads & tso).toBe(tso);
    // Never more than asked for.
    expect(h.offloads & ~want).toBe(0);
  });

  it('reports EBUSY when the tap is already attached by another fd', () => {
    const ns = newNetns();
    const req = { target: { netnsPath: `/run/netns/${ns}` }, tap: { name: 'usn5', vnetHdr: false, offloads: 0 } };
    const first = native.openTapInNamespace(req);
    fds.push(first.fd);
    const e = thrown(() => native.openTapInNamespace(req));
    expect(e).toBeInstanceOf(NativeError);
    expect(e).toBeInstanceOf(TapError);
    expect(e.code).toBe('EBUSY');
    expect(e.errno).toBe(-16);
    expect(e.syscall).toBe('ioctl(TUNSETIFF)');
    expect(e.message).toContain('ioctl(TUNSETIFF) failed: EBUSY (Device or resource busy)');
    expect(e.hint).toBe(TAP_HINT_BUSY);
  });

  it('reports ENOENT, naming the step, for a namespace path that does not exist', () => {
    const e = thrown(() =>
      native.openTapInNamespace({
        target: { netnsPath: `/run/netns/usn-missing-${randomBytes(4).toString('hex')}` },
        tap: { name: 'usn6', vnetHdr: false, offloads: 0 },
      }),
    );
    expect(e).toBeInstanceOf(NativeError);
    expect(e).not.toBeInstanceOf(TapError);
    expect(e).toMatchObject({ code: 'ENOENT', errno: -2, syscall: 'open(netns)' });
    expect(e.message).toBe('open(netns) failed: ENOENT (No such file or directory)');
  });

  it('reports a failing configuration step and leaves no tap behind', () => {
    const ns = newNetns();
    // A gateway outside the interface's subnet: the route ioctl fails.
    const e = thrown(() =>
      native.openTapInNamespace({
        target: { netnsPath: `/run/netns/${ns}` },
        tap: { name: 'usn7', vnetHdr: false, offloads: 0 },
        configure: { name: 'usn7', ipv4: '10.77.7.2', prefixLength: 24, up: true, defaultGateway: '10.99.0.1' },
      }),
    );
    expect(e).toBeInstanceOf(NativeError);
    expect(e.syscall).toBe('ioctl(SIOCADDRT)');
    expect(e.code).toBe('ENETUNREACH');
    // The helper's tap fd died with it, and the tap (not persistent) with the fd.
    expect(ipJson(ns, ['link', 'show']).map((l: any) => l.ifname)).not.toContain('usn7');
  });
});

describe('openTap and configureInterface in this process', () => {
  // The test process must stay in the host namespace, so a child Node process
  // started by `ip netns exec` makes these calls.
  it('opens, configures and closes a tap in the current namespace', () => {
    const ns = newNetns();
    const script = join(tmpdir(), `usn-open-tap-${randomBytes(4).toString('hex')}.ts`);
    const addon = fileURLToPath(new URL('../../src/native/addon.ts', import.meta.url));
    writeFileSync(
      script,
      `import { execFileSync } from 'node:child_process';
import { native } from ${JSON.stringify(addon)};
const h = native.openTap({ name: 'usn8', vnetHdr: true, offloads: 0x07 });
native.configureInterface({ name: 'usn8', mtu: 9000, ipv4: '10.77.8.2', prefixLength: 16, up: true, loopbackUp: true });
const link = JSON.parse(execFileSync('ip', ['-j', 'addr', 'show', 'dev', 'usn8'], { encoding: 'utf8' }))[0];
let busy = null;
try { native.openTap({ name: 'usn8', vnetHdr: false, offloads: 0 }); } catch (e) { busy = { name: e.constructor.name, code: e.code, hint: e.hint }; }
native.closeFd(h.fd);
let gone = false;
try { execFileSync('ip', ['link', 'show', 'dev', 'usn8'], { stdio: 'ignore' }); } catch { gone = true; }
console.log(JSON.stringify({ h, link, busy, gone }));
`,
    );
    try {
      const tsx = fileURLToPath(new URL('../../node_modules/.bin/tsx', import.meta.url));
      const out = JSON.parse(run('ip', ['netns', 'exec', ns, tsx, script]));
      expect(out.h).toMatchObject({ name: 'usn8', attached: false, vnetHdr: true, offloads: 0x07 });
      expect(out.link.mtu).toBe(9000);
      expect(out.link.flags).toContain('UP');
      expect(out.link.addr_info.some((a: any) => a.local === '10.77.8.2' && a.prefixlen === 16)).toBe(true);
      expect(out.busy).toEqual({ name: 'TapError', code: 'EBUSY', hint: TAP_HINT_BUSY });
      expect(out.gone).toBe(true);
    } finally {
      rmSync(script, { force: true });
    }
  });
});

describe('validation before the addon is called', () => {
  const target = { netnsPath: '/run/netns/unused' };
  it.each([
    ['too long', 'usn-name-longer-than-15'],
    ['empty', ''],
    ['with a slash', 'a/b'],
    ['with a space', 'a b'],
  ])('rejects a tap name %s', (_why, name) => {
    const e = thrown(() => native.openTap({ name, vnetHdr: false, offloads: 0 }));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.code).toBe('ERR_CONFIG');
    expect(thrown(() => native.openTapInNamespace({ target, tap: { name, vnetHdr: false, offloads: 0 } }))).toBeInstanceOf(
      ConfigError,
    );
  });

  it.each([
    [{ mtu: 67 }, 'mtu'],
    [{ mtu: 65536 }, 'mtu'],
    [{ mtu: 1500.5 }, 'mtu'],
    [{ mac: new Uint8Array(5) }, 'mac'],
    [{ mac: Uint8Array.from([1, 0, 0, 0, 0, 1]) }, 'mac'],
    [{ ipv4: '10.0.0' }, 'ipv4'],
    [{ ipv4: '10.0.0.256' }, 'ipv4'],
    [{ ipv4: '010.0.0.1' }, 'ipv4'],
    [{ prefixLength: 33 }, 'prefixLength'],
    [{ defaultGateway: 'gateway' }, 'defaultGateway'],
    [{ txQueueLen: -1 }, 'txQueueLen'],
  ])('rejects interface config %o', (bad, field) => {
    const e = thrown(() => native.configureInterface({ name: 'usn9', ...bad } as any));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.field).toBe(field);
  });

  it.each([
    [{}, 'target'],
    [{ pid: 0 }, 'pid'],
    [{ pid: -5 }, 'pid'],
    [{ pid: 1, netnsPath: '/x' }, 'target'],
    [{ netnsPath: '' }, 'netnsPath'],
    [{ netnsPath: '/x', createUserns: { uid: 0, gid: 0 } }, 'createUserns'],
    [{ create: true, createUserns: { uid: -1, gid: 0 } }, 'createUserns'],
  ])('rejects namespace target %o', (t, field) => {
    const e = thrown(() =>
      native.openTapInNamespace({ target: t as any, tap: { name: 'usn9', vnetHdr: false, offloads: 0 } }),
    );
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.field).toBe(field);
  });

  it('rejects offload bits the kernel does not define', () => {
    expect(thrown(() => native.openTap({ name: 'usn9', vnetHdr: true, offloads: 0x80 }))).toBeInstanceOf(ConfigError);
    expect(thrown(() => native.openTap({ name: 'usn9', vnetHdr: true, offloads: 0, queues: 17 }))).toBeInstanceOf(ConfigError);
    expect(thrown(() => native.openTap({ name: 'usn9', vnetHdr: true, offloads: 0, queues: 0 }))).toBeInstanceOf(ConfigError);
  });
});

describe('translateTapError', () => {
  const sys = (code: string, errno: number, syscall: string) =>
    Object.assign(new Error(`${syscall} failed: ${code}`), { code, errno, syscall });

  it('explains a missing /dev/net/tun', () => {
    const e = translateTapError(sys('ENOENT', -2, 'open(/dev/net/tun)'), 'tap0') as TapError;
    expect(e).toBeInstanceOf(TapError);
    expect(e).toBeInstanceOf(UsernetError);
    expect(e.hint).toBe(TAP_HINT_NO_DEVICE);
    expect(e.message).toBe('tap tap0: open(/dev/net/tun) failed: ENOENT');
    expect(e).toMatchObject({ code: 'ENOENT', errno: -2, syscall: 'open(/dev/net/tun)', tapName: 'tap0' });
  });

  it('explains missing privileges', () => {
    expect((translateTapError(sys('EPERM', -1, 'ioctl(TUNSETIFF)'), 't') as TapError).hint).toBe(TAP_HINT_PERMISSION);
    expect((translateTapError(sys('EACCES', -13, 'open(/dev/net/tun)'), 't') as TapError).hint).toBe(TAP_HINT_TUN_MODE);
    expect((translateTapError(sys('EACCES', -13, 'ioctl(TUNSETIFF)'), 't') as TapError).hint).toBe(TAP_HINT_PERMISSION);
  });

  it('leaves errors it has no advice for as plain NativeErrors', () => {
    const e = translateTapError(sys('ENOENT', -2, 'open(netns)'), 't');
    expect(e).toBeInstanceOf(NativeError);
    expect(e).not.toBeInstanceOf(TapError);
    const t = new TypeError('x');
    expect(translateTapError(t, 't')).toBe(t);
  });
});
