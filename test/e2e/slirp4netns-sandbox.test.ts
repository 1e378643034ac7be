/**
 * --enable-sandbox and --enable-seccomp of the slirp4netns front end, checked
 * from outside through /proc for every thread of the running process, with
 * the network, the API socket and shutdown still working; and the front end
 * exiting when its tap dies or its PID-mode target exits.
 */
import { randomInt } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort, must, run, Sandbox, sleep } from './harness.js';
import {
  apiCall,
  ensureRootlessUser,
  httpServer,
  openTunForUsers,
  restoreTunMode,
  ROOTLESS_USER,
  runAsync,
  SLIRP_BIN,
  spawnSlirp,
  Tracker,
  waitExit,
} from './slirp-harness.js';

const sandbox = new Sandbox();
const tracker = new Tracker();
const servers: Server[] = [];
const runDirs: string[] = [];
afterEach(async () => {
  await tracker.stopAll();
  for (const s of servers.splice(0)) s.close();
  for (const d of runDirs.splice(0)) rmSync(d, { recursive: true, force: true });
  await sandbox.cleanup();
});

async function serve(body: string): Promise<number> {
  const { server, port } = await httpServer(body);
  servers.push(server);
  return port;
}

async function unsharedPid(): Promise<number> {
  const b = sandbox.spawn('unshare', ['-n', 'sleep', '600']);
  const ours = readlinkSync('/proc/self/ns/net');
  for (let i = 0; i < 200 && readlinkSync(`/proc/${b.pid}/ns/net`) === ours; i++) await sleep(10);
  return b.pid;
}

interface TaskView {
  tid: string;
  capEff: string;
  capPrm: string;
  capInh: string;
  capBnd: string;
  capAmb: string;
  seccomp: string;
  mnt: string;
  root: string[];
}

function field(status: string, name: string): string {
  const m = new RegExp(`^${name}:\\s*(\\S+)`, 'm').exec(status);
  if (m === null) throw new Error(`no ${name} in status`);
  return m[1];
}

/** What /proc says about every thread of pid. */
function tasks(pid: number): TaskView[] {
  return readdirSync(`/proc/${pid}/task`).map((tid) => {
    const base = `/proc/${pid}/task/${tid}`;
    const status = readFileSync(`${base}/status`, 'utf8');
    return {
      tid,
      capEff: field(status, 'CapEff'),
      capPrm: field(status, 'CapPrm'),
      capInh: field(status, 'CapInh'),
      capBnd: field(status, 'CapBnd'),
      capAmb: field(status, 'CapAmb'),
      seccomp: field(status, 'Seccomp'),
      mnt: readlinkSync(`${base}/ns/mnt`),
      root: readdirSync(`${base}/root`).sort(),
    };
  });
}

const ZERO = '0000000000000000';
/** CAP_NET_BIND_SERVICE (bit 10) alone: what --enable-sandbox keeps, as slirp4netns does. */
const NET_BIND_ONLY = '0000000000000400';

function expectSandboxed(pid: number): TaskView[] {
  const all = tasks(pid);
  // V8's workers, the libuv pool and the inspector's signal thread, not just main.
  expect(all.length).toBeGreaterThan(1);
  const ours = readlinkSync('/proc/self/ns/mnt');
  for (const t of all) {
    expect({ tid: t.tid, eff: t.capEff, prm: t.capPrm, inh: t.capInh, bnd: t.capBnd, amb: t.capAmb }).toEqual({
      tid: t.tid,
      eff: NET_BIND_ONLY,
      prm: NET_BIND_ONLY,
      inh: NET_BIND_ONLY,
      bnd: NET_BIND_ONLY,
      amb: ZERO,
    });
    expect(t.mnt).not.toBe(ours);
    expect(t.mnt).toBe(all[0].mnt);
    expect(t.root).toEqual(['etc', 'run']);
  }
  return all;
}

/** A directory under /run, for an API socket that lives on the read-only /run bind. */
function runDir(): string {
  const d = mkdtempSync('/run/usernet-test-');
  runDirs.push(d);
  return d;
}

describe('usernet slirp4netns --enable-sandbox --enable-seccomp', () => {
  it('--help advertises both options with their dashes (rootlesskit and podman probe for them)', () => {
    const h = run(SLIRP_BIN, ['--help']);
    expect(h.status).toBe(0);
    expect(h.stdout).toContain('--enable-sandbox');
    expect(h.stdout).toContain('--enable-seccomp');
  });

  it('both: every thread is confined and filtered; NAT, add_hostfwd and SIGTERM (unlink under /tmp) still work', async () => {
    const port = await serve('through-the-sandbox');
    const pid = await unsharedPid();
    const sock = join(sandbox.tmpdir(), 'api.sock');
    const s = spawnSlirp(['--configure', '--enable-sandbox', '--enable-seccomp', '-r', '4', '-a', sock, String(pid), 'tap0'], tracker.track);
    expect(await s.ready).toBe('1');
    const all = expectSandboxed(s.bg.pid);
    for (const t of all) expect(t.seccomp).toBe('2');
    // The socket lives outside the sandbox's root, where only the pre-opened directory fd reaches it.
    expect(existsSync(sock)).toBe(true);

    const r = await runAsync('nsenter', ['-t', String(pid), '-n', 'curl', '-s', '-m', '10', `http://10.0.2.2:${port}/`]);
    expect(r.stdout).toBe('through-the-sandbox');

    const inside = sandbox.spawn('nsenter', [
      '-t', String(pid), '-n', process.execPath, '-e',
      "require('net').createServer((c) => c.end('inside ' + c.remoteAddress)).listen(8080, '0.0.0.0', () => console.log('up'))",
    ]);
    await inside.waitFor(/up/);
    const free = await freePort();
    const added = await apiCall(sock, {
      execute: 'add_hostfwd',
      arguments: { proto: 'tcp', host_addr: '127.0.0.1', host_port: free, guest_port: 8080 },
    });
    expect(added).toEqual({ return: { id: 1 } });
    const got = await runAsync('curl', ['-s', '-m', '10', `telnet://127.0.0.1:${free}`]);
    expect(got.stdout).toBe('inside 10.0.2.2');

    // Threads born after the sandbox (the libuv pool grows on demand) inherit it.
    expectSandboxed(s.bg.pid);

    s.child.kill('SIGTERM');
    const e = await waitExit(s.bg, 10_000);
    expect(e).toEqual({ code: 0, signal: null });
    expect(existsSync(sock)).toBe(false);
    expect(s.bg.stderr).not.toMatch(/error/i);
  });

  it('keeps CAP_NET_BIND_SERVICE (only): a forward to host port 80 added through the API after start-up binds and carries a connection', async () => {
    const pid = await unsharedPid();
    const sock = join(sandbox.tmpdir(), 'api.sock');
    const s = spawnSlirp(['-c', '--enable-sandbox', '--enable-seccomp', '-r', '4', '-a', sock, String(pid), 'tap0'], tracker.track);
    expect(await s.ready).toBe('1');
    expectSandboxed(s.bg.pid);
    const inside = sandbox.spawn('nsenter', [
      '-t', String(pid), '-n', process.execPath, '-e',
      "require('net').createServer((c) => c.end('port 80 via the sandbox')).listen(8080, '0.0.0.0', () => console.log('up'))",
    ]);
    await inside.waitFor(/up/);
    // Port 80 on an address of 127/8 of our own, so no other test or engineer's server on :80 is in the way.
    const host = `127.${1 + randomInt(254)}.${1 + randomInt(254)}.${1 + randomInt(254)}`;
    const added = await apiCall(sock, { execute: 'add_hostfwd', arguments: { proto: 'tcp', host_addr: host, host_port: 80, guest_port: 8080 } });
    expect(added).toEqual({ return: { id: 1 } });
    const got = await runAsync('curl', ['-s', '-m', '10', `telnet://${host}:80`]);
    expect(got.stdout).toBe('port 80 via the sandbox');
    expect(await apiCall(sock, { execute: 'list_hostfwd' })).toMatchObject({ entries: [{ id: 1, host_addr: host, host_port: 80 }] });
    // The threads the forward's accept and I/O started hold the same single capability.
    expectSandboxed(s.bg.pid);
  });

  it('--enable-sandbox alone: confined, no filter; an API socket on the read-only /run bind is still unlinked', async () => {
    const port = await serve('sandbox-only');
    const pid = await unsharedPid();
    const sock = join(runDir(), 'api.sock');
    const s = spawnSlirp(['-c', '--enable-sandbox', '-r', '4', '--api-socket', sock, String(pid), 'tap0'], tracker.track);
    expect(await s.ready).toBe('1');
    for (const t of expectSandboxed(s.bg.pid)) expect(t.seccomp).toBe('0');
    const r = await runAsync('nsenter', ['-t', String(pid), '-n', 'curl', '-s', '-m', '10', `http://10.0.2.2:${port}/`]);
    expect(r.stdout).toBe('sandbox-only');
    expect(await apiCall(sock, { execute: 'list_hostfwd' })).toMatchObject({ entries: [] });
    s.child.kill('SIGTERM');
    expect(await waitExit(s.bg, 10_000)).toEqual({ code: 0, signal: null });
    expect(existsSync(sock)).toBe(false);
  });

  it('--enable-seccomp alone: every thread filtered, mounts and capabilities untouched, NAT works', async () => {
    const port = await serve('seccomp-only');
    const ns = sandbox.netns('s4s');
    const s = spawnSlirp(['-c', '--enable-seccomp', '-r', '4', '--netns-type=path', `/run/netns/${ns}`, 'tap0'], tracker.track);
    expect(await s.ready).toBe('1');
    const ours = readlinkSync('/proc/self/ns/mnt');
    const all = tasks(s.bg.pid);
    expect(all.length).toBeGreaterThan(1);
    for (const t of all) {
      expect(t.seccomp).toBe('2');
      expect(t.mnt).toBe(ours);
    }
    // Run as root here: the capabilities are still there.
    expect(all[0].capEff).not.toBe(ZERO);
    const r = await runAsync('ip', ['netns', 'exec', ns, 'curl', '-s', '-m', '10', `http://10.0.2.2:${port}/`]);
    expect(r.stdout).toBe('seccomp-only');
  });

  /** As rootlesskit runs it: an ordinary user, the target in that user's own user namespace. */
  async function rootlessTarget(): Promise<{ asUser: string[]; pid: number }> {
    ensureRootlessUser();
    const asUser = ['setpriv', `--reuid=${ROOTLESS_USER}`, `--regid=${ROOTLESS_USER}`, '--init-groups'];
    const target = sandbox.spawn(asUser[0], [...asUser.slice(1), 'unshare', '--user', '--map-root-user', '--net', 'sleep', '600']);
    const ours = readlinkSync('/proc/self/ns/net');
    for (let i = 0; i < 200 && readlinkSync(`/proc/${target.pid}/ns/net`) === ours; i++) await sleep(10);
    return { asUser, pid: target.pid };
  }

  it("an unprivileged --enable-sandbox re-executes itself in the target's user namespace (same PID) and sandboxes there", async () => {
    const { asUser, pid } = await rootlessTarget();
    const tunMode = openTunForUsers();
    let s;
    try {
      s = spawnSlirp(['-c', '--enable-sandbox', '-r', '4', String(pid), 'tap0'], tracker.track, asUser);
      expect(await s.ready).toBe('1');
    } finally {
      restoreTunMode(tunMode);
    }
    const upid = s.bg.pid;
    expect(readlinkSync(`/proc/${upid}/ns/user`)).toBe(readlinkSync(`/proc/${pid}/ns/user`));
    const ourMnt = readlinkSync('/proc/self/ns/mnt');
    for (const tid of readdirSync(`/proc/${upid}/task`)) {
      const st = readFileSync(`/proc/${upid}/task/${tid}/status`, 'utf8');
      for (const f of ['CapEff', 'CapPrm', 'CapBnd']) expect(st).toMatch(new RegExp(`^${f}:\\s*${NET_BIND_ONLY}$`, 'm'));
      expect(readlinkSync(`/proc/${upid}/task/${tid}/ns/mnt`)).not.toBe(ourMnt);
    }
    s.bg.proc.kill('SIGTERM');
    const e = await waitExit(s.bg, 10_000);
    expect(e?.code).toBe(0);
  });

  it('an unprivileged --enable-sandbox with no user namespace to join fails clearly, nothing on the ready fd', async () => {
    const { asUser, pid } = await rootlessTarget();
    const s = spawnSlirp(['--enable-sandbox', '-r', '4', '--netns-type=path', `/proc/${pid}/ns/net`, 'tap0'], tracker.track, asUser);
    expect(await s.ready).toBe('');
    const e = await waitExit(s.bg, 10_000);
    expect(e?.code).toBe(1);
    expect(s.bg.stderr).toMatch(/enable-sandbox: needs CAP_SYS_ADMIN.*--userns-path/);
  });
});

describe('usernet slirp4netns exits when its tap goes away', () => {
  it('PID mode: the target process is killed; usernet exits within seconds and unlinks its socket', async () => {
    const pid = await unsharedPid();
    const sock = join(sandbox.tmpdir(), 'api.sock');
    const s = spawnSlirp(['-c', '--enable-sandbox', '--enable-seccomp', '-r', '4', '-a', sock, String(pid), 'tap0'], tracker.track);
    expect(await s.ready).toBe('1');
    expect(existsSync(sock)).toBe(true);
    process.kill(pid, 'SIGKILL');
    const e = await waitExit(s.bg, 5_000);
    expect(e).not.toBeNull();
    expect(e?.code).toBe(0);
    expect(existsSync(sock)).toBe(false);
  });

  it('the tap device is deleted inside the namespace: exit status 1, socket unlinked', async () => {
    const ns = sandbox.netns('s4d');
    const sock = join(sandbox.tmpdir(), 'api.sock');
    const s = spawnSlirp(['-c', '--enable-sandbox', '-r', '4', '-a', sock, '--netns-type=path', `/run/netns/${ns}`, 'tap0'], tracker.track);
    expect(await s.ready).toBe('1');
    must('ip', ['-n', ns, 'link', 'del', 'tap0']);
    const e = await waitExit(s.bg, 5_000);
    expect(e).toEqual({ code: 1, signal: null });
    expect(s.bg.stderr).toMatch(/error: tap tap0: .*EBADF/);
    expect(existsSync(sock)).toBe(false);
  });
});
