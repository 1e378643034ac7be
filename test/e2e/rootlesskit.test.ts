/**
 * rootlesskit (Debian's 1.1.0) running unchanged on usernet: it is pointed at
 * bin/slirp4netns and run as an ordinary user with /etc/subuid entries, as
 * rootless Docker and friends run it.
 */
import { readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { run, Sandbox, sleep } from './harness.js';
import {
  ensureRootlessUser,
  httpServer,
  openTunForUsers,
  publicTmpdir,
  restoreTunMode,
  runAsync,
  SLIRP_BIN,
  waitExit,
} from './slirp-harness.js';
import { asUser, rootlesskit, rootlesskitForward, rootlesskitTraffic, startTrafficPeers } from './slirp-checks.js';

const sandbox = new Sandbox();
const servers: Server[] = [];
let dir = '';
let tunMode = 0o666;

beforeAll(() => {
  if (run('which', ['rootlesskit']).status !== 0) throw new Error('rootlesskit is not installed: apt-get install rootlesskit uidmap');
  ensureRootlessUser();
  tunMode = openTunForUsers();
  dir = publicTmpdir();
});
afterEach(async () => {
  for (const s of servers.splice(0)) s.close();
  await sandbox.cleanup();
});
afterAll(() => {
  restoreTunMode(tunMode);
  rmSync(dir, { recursive: true, force: true });
});

interface ProcEntry {
  pid: number;
  ppid: number;
  state: string;
  /** Start time in clock ticks (field 22 of stat): tells a process from a later one with its PID. */
  start: string;
  cmdline: string[];
}

/** One process from /proc, or null when it is gone. */
function procEntry(pid: number): ProcEntry | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm (field 2) may hold spaces and parentheses: the fields after it follow the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((a) => a.length > 0);
    return { pid, ppid: Number(rest[1]), state: rest[0], start: rest[19], cmdline };
  } catch {
    return null;
  }
}

/** Every live descendant of root, read from /proc (nothing is signalled). */
function descendants(root: number): ProcEntry[] {
  const all = readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .map((n) => procEntry(Number(n)))
    .filter((p): p is ProcEntry => p !== null);
  const out: ProcEntry[] = [];
  const parents = new Set([root]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of all) {
      if (!parents.has(p.pid) && parents.has(p.ppid)) {
        parents.add(p.pid);
        out.push(p);
        grew = true;
      }
    }
  }
  return out;
}

/** A namespace link of pid, or null when the process is gone meanwhile. */
function nsOf(pid: number, kind: string): string | null {
  try {
    return readlinkSync(`/proc/${pid}/ns/${kind}`);
  } catch {
    return null;
  }
}

/** Waits until process pid (the one that started at `start`) has ended (a zombie has). */
async function gone(pid: number, start: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const p = procEntry(pid);
    if (p === null || p.start !== start || p.state === 'Z') return true;
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
}

const RK = rootlesskit();

describe('rootlesskit --net=slirp4netns with usernet', () => {
  it('the command inside reaches a host-loopback server through 10.0.2.2', async () => {
    const { server, port } = await httpServer('hello-rootlesskit');
    servers.push(server);
    const [cmd, args] = asUser(`timeout 60 ${RK} --mtu=65520 sh -c 'ip -o addr show tap0; curl -s -m 10 http://10.0.2.2:${port}/'`);
    const r = await runAsync(cmd, args, 90_000);
    expect(r.stdout).toMatch(/inet 10\.0\.2\.100\/24/);
    expect(r.stdout).toMatch(/hello-rootlesskit$/);
    expect(r.status).toBe(0);
  });

  it('--disable-host-loopback is honoured', async () => {
    const { server, port } = await httpServer('must-not-arrive');
    servers.push(server);
    const [cmd, args] = asUser(`timeout 60 ${RK} --disable-host-loopback sh -c 'curl -s -m 5 http://10.0.2.2:${port}/; echo status=$?'`);
    const r = await runAsync(cmd, args, 90_000);
    expect(r.stdout).not.toMatch(/must-not-arrive/);
    expect(r.stdout).toMatch(/status=[1-9]/);
  });

  it('--port-driver=slirp4netns -p: a host client reaches a server inside', async () => {
    await rootlesskitForward(sandbox, SLIRP_BIN, dir);
  });

  it('carries TCP both ways (sha256), UDP, DNS through the forwarder and ICMP', async () => {
    const peers = await startTrafficPeers(sandbox, 'usn');
    try {
      await rootlesskitTraffic(SLIRP_BIN, dir, peers);
    } finally {
      await peers.close();
    }
  });

  it('--slirp4netns-seccomp=true: usernet runs filtered and the command still reaches the host', async () => {
    const { server, port } = await httpServer('hello-seccomp');
    servers.push(server);
    // The script finds its own usernet (rootlesskit passes the PID of its child, our parent, before
    // the tap name) and prints each thread's Seccomp field.
    const probe = `for p in $(pgrep -f "main.js slirp4netns .* $PPID tap0"); do grep -h "^Seccomp:" /proc/$p/task/*/status; done | sort | uniq -c`;
    const [cmd, args] = asUser(
      `timeout 60 ${RK} --slirp4netns-seccomp=true sh -c 'curl -s -m 10 http://10.0.2.2:${port}/; echo; ${probe.replace(/'/g, "'\\''")}'`,
    );
    const r = await runAsync(cmd, args, 90_000);
    expect(r.stdout).toMatch(/^hello-seccomp$/m);
    expect(r.stdout).toMatch(/^\s*\d+ Seccomp:\s+2$/m);
    expect(r.stdout).not.toMatch(/Seccomp:\s+0/);
    expect(r.status).toBe(0);
  });

  it('--slirp4netns-sandbox=true --slirp4netns-seccomp=true: usernet joins the namespace, is confined, and the command reaches the host', async () => {
    const { server, port } = await httpServer('hello-sandbox');
    servers.push(server);
    // The command holds rootlesskit (and so usernet) up until the test has looked at /proc.
    const done = join(dir, `done-${process.pid}-${Date.now()}`);
    const inner = `curl -s -m 10 http://10.0.2.2:${port}/; echo; echo probe-now; i=0; while [ ! -e ${done} ] && [ $i -lt 400 ]; do sleep 0.1; i=$((i+1)); done`;
    const [cmd, args] = asUser(`${RK} --slirp4netns-sandbox=true --slirp4netns-seccomp=true sh -c '${inner}'`);
    const rk = sandbox.spawn(cmd, args);
    try {
      await rk.waitFor(/probe-now/, 60_000);
      expect(rk.stdout).toMatch(/^hello-sandbox$/m);
      const tree = descendants(rk.pid);
      const usernet = tree.filter((p) => p.cmdline.includes('slirp4netns') && p.cmdline.some((a) => a.endsWith('main.js')));
      expect(usernet.map((p) => p.cmdline.join(' '))).toHaveLength(1);
      const u = usernet[0];
      // Re-executed in place: still rootlesskit's own child (the PID it tracks and signals), no wrapper.
      expect(u.ppid).toBe(rk.pid);
      expect(u.cmdline).toEqual(expect.arrayContaining(['--enable-sandbox', '--enable-seccomp', 'tap0']));
      const hostUserns = readlinkSync('/proc/self/ns/user');
      const hostMnt = readlinkSync('/proc/self/ns/mnt');
      const hostNet = readlinkSync('/proc/self/ns/net');
      // The user namespace is rootlesskit's child's (the one whose network namespace is tap0's)...
      const child = tree.find((p) => p.pid !== u.pid && nsOf(p.pid, 'user') !== null && ![null, hostNet].includes(nsOf(p.pid, 'net')));
      expect(child).toBeDefined();
      const userns = readlinkSync(`/proc/${u.pid}/ns/user`);
      expect(userns).not.toBe(hostUserns);
      expect(userns).toBe(nsOf(child!.pid, 'user'));
      // ...while the sockets stay in the host's network namespace (NAT to the host works).
      expect(readlinkSync(`/proc/${u.pid}/ns/net`)).toBe(hostNet);
      const threads = readdirSync(`/proc/${u.pid}/task`);
      expect(threads.length).toBeGreaterThan(1);
      for (const tid of threads) {
        const status = readFileSync(`/proc/${u.pid}/task/${tid}/status`, 'utf8');
        // CAP_NET_BIND_SERVICE alone, as slirp4netns keeps it.
        expect(status).toMatch(/^CapEff:\s+0000000000000400$/m);
        expect(status).toMatch(/^CapPrm:\s+0000000000000400$/m);
        expect(status).toMatch(/^Seccomp:\s+2$/m);
        expect(readlinkSync(`/proc/${u.pid}/task/${tid}/ns/mnt`)).not.toBe(hostMnt);
      }
      writeFileSync(done, '');
      const e = await waitExit(rk, 30_000);
      expect(e).toEqual({ code: 0, signal: null });
      // Nothing of ours outlives rootlesskit.
      expect(await gone(u.pid, u.start, 10_000)).toBe(true);
    } finally {
      rmSync(done, { force: true });
    }
  });
});
