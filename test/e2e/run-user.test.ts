/**
 * `usernet run` as an ordinary user (with /etc/subuid entries and without
 * them), the guest's resolv.conf, and start-up interrupted by a signal.
 *
 * The users are created here with unique names and removed afterwards, with
 * their /etc/subuid and /etc/subgid lines. /dev/net/tun is opened to everyone
 * for this file's run when it was tightened (stock Debian has 0666), and
 * restored after.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBlobServer, type BlobServer } from './blob-server.js';
import { Background, freePort, must, run, Sandbox, sleep, USERNET, usernetAsync, type Result } from './harness.js';
import { openTunForUsers, restoreTunMode } from './slirp-harness.js';

const sandbox = new Sandbox();
const tag = randomBytes(3).toString('hex');
/** One user keeps the subordinate ids useradd gave it (or gets some), the other has none. */
const WITH_SUBIDS = `usnrs${tag}`;
const WITHOUT_SUBIDS = `usnrn${tag}`;
const SUBID_RANGE = '720000:65536';
let tunMode = 0o666;
let dir: string;
let blob: BlobServer;
let dnsPort: number;

function dropSubidLines(user: string): void {
  for (const f of ['/etc/subuid', '/etc/subgid']) {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    const kept = text.split('\n').filter((l) => l !== '' && !l.startsWith(`${user}:`));
    writeFileSync(f, kept.length > 0 ? `${kept.join('\n')}\n` : '');
  }
}

function addUser(name: string, subids: boolean): void {
  must('useradd', ['-M', '-s', '/bin/sh', name]);
  // useradd may or may not have given subordinate ids (login.defs decides): make it what the test needs.
  dropSubidLines(name);
  if (subids) {
    for (const f of ['/etc/subuid', '/etc/subgid']) {
      const text = readFileSync(f, 'utf8');
      writeFileSync(f, `${text}${text.length > 0 && !text.endsWith('\n') ? '\n' : ''}${name}:${SUBID_RANGE}\n`);
    }
  }
}

/** Runs usernet as `user` (runuser keeps no root credentials), with a bounded time. */
function asUser(user: string, args: string[], timeoutMs = 90_000): Promise<Result> {
  return usernetAsync(args, timeoutMs, ['runuser', '-u', user, '--']);
}

beforeAll(async () => {
  tunMode = openTunForUsers();
  addUser(WITH_SUBIDS, true);
  addUser(WITHOUT_SUBIDS, false);
  dir = sandbox.tmpdir();
  chmodSync(dir, 0o755);
  blob = await startBlobServer(dir, 4 << 20, '127.0.0.1');
  dnsPort = await freePort();
  const dns = sandbox.spawn('dnsmasq', [
    '-k', '--port', String(dnsPort), '--listen-address=127.0.0.1', '--bind-interfaces', '--no-resolv', '--no-hosts',
    '--address=/names.usernet/192.0.2.44', `--pid-file=${join(dir, 'dnsmasq.pid')}`, '--user=root', '--log-facility=-',
  ]);
  // dnsmasq has no readiness signal: ask it until it answers (bounded).
  for (let i = 0; i < 100; i++) {
    if (run('dig', ['+short', '+time=1', '+tries=1', '-p', String(dnsPort), '@127.0.0.1', 'a.names.usernet']).stdout === '192.0.2.44\n') break;
    if (!dns.running) throw new Error(`dnsmasq exited: ${dns.stderr}`);
    await sleep(50);
  }
});

afterAll(async () => {
  await blob?.close();
  await sandbox.cleanup();
  for (const u of [WITH_SUBIDS, WITHOUT_SUBIDS]) {
    run('userdel', [u]);
    dropSubidLines(u);
  }
  restoreTunMode(tunMode);
});

describe.each([
  ['with /etc/subuid entries', WITH_SUBIDS],
  ['without /etc/subuid entries (the user alone is mapped)', WITHOUT_SUBIDS],
])('usernet run as an ordinary user %s', (_what, user) => {
  it('reaches a host-loopback server, pings the gateway and resolves names with the system resolver', async () => {
    const r = await asUser(user, [
      'run', '--dns', `127.0.0.1:${dnsPort}`, '--',
      'sh', '-c',
      `id -u; cat /proc/self/uid_map | wc -l; getent hosts www.names.usernet; ` +
        `curl -sS http://10.0.2.2:${blob.port}/blob | sha256sum; ping -c 1 -W 5 10.0.2.2 | grep -c ' 0% packet loss'`,
    ]);
    expect(r.stderr).not.toMatch(/setgroups|warn/);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('0');
    // Two map lines with subordinate ids (0 -> the user, 1.. -> the range), one without.
    expect(lines[1]).toBe(user === WITH_SUBIDS ? '2' : '1');
    expect(lines[2]).toMatch(/^192\.0\.2\.44\s+www\.names\.usernet$/);
    expect(lines[3]).toBe(`${blob.sha256}  -`);
    expect(lines[4]).toBe('1');
    expect(r.status).toBe(0);
  });

  it('forwards a host port to a server in the namespace (-p)', async () => {
    const port = await freePort();
    const bg = new Background(
      spawn('runuser', ['-u', user, '--', process.execPath, USERNET, 'run', '-p', `127.0.0.1:${port}:8080`, '--',
        'python3', '-c',
        'import http.server as h; s = h.HTTPServer(("0.0.0.0", 8080), h.SimpleHTTPRequestHandler); print("listening", flush=True); s.serve_forever()'],
      { stdio: ['ignore', 'pipe', 'pipe'], cwd: dir }),
    );
    try {
      await bg.waitFor(/listening/, 60_000);
      const got = run('sh', ['-c', `curl -sS --max-time 10 http://127.0.0.1:${port}/blob | sha256sum`], 20_000);
      expect(got.stdout).toBe(`${blob.sha256}  -\n`);
    } finally {
      await bg.stop('SIGTERM', 10_000);
    }
  });
});

describe('the guest resolv.conf', () => {
  it('names N+3 (and P::3 with IPv6) in a private mount namespace; the host file is unchanged', async () => {
    const before = readFileSync('/etc/resolv.conf', 'utf8');
    const r = await usernetAsync(['run', '--no-warm-up', '--cidr', '10.9.0.0/24', '--', 'cat', '/etc/resolv.conf']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^nameserver 10\.9\.0\.3$/m);
    expect(r.stdout).toMatch(/^nameserver fd00::3$/m);
    expect(readFileSync('/etc/resolv.conf', 'utf8')).toBe(before);
    const v4 = await usernetAsync(['run', '--no-warm-up', '--disable-ipv6', '--', 'cat', '/etc/resolv.conf']);
    expect(v4.stdout).toMatch(/^nameserver 10\.0\.2\.3$/m);
    expect(v4.stdout).not.toMatch(/fd00::3/);
  });

  it('--disable-dns leaves the host file', async () => {
    const r = await usernetAsync(['run', '--no-warm-up', '--disable-dns', '--', 'cat', '/etc/resolv.conf']);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(readFileSync('/etc/resolv.conf', 'utf8'));
  });
});

describe('signals', () => {
  it('SIGINT during start-up ends usernet and everything it started', async () => {
    const bg = sandbox.spawnUsernet(['run', '--log-level', 'debug', '--', 'sleep', '600']);
    // The IPv6 wait runs a placeholder inside the namespace: interrupt while it is there.
    await bg.waitFor(/namespace ready/, 30_000);
    let children: string[] = [];
    for (let i = 0; i < 200 && children.length === 0 && bg.running; i++) {
      children = run('ps', ['-o', 'pid=', '--ppid', String(bg.pid)]).stdout.split('\n').map((l) => l.trim()).filter((l) => l !== '');
      if (children.length === 0) await sleep(20);
    }
    expect(children.length).toBeGreaterThan(0);
    bg.proc.kill('SIGINT');
    const end = await bg.stop('SIGINT', 10_000);
    expect(end.code).toBe(130);
    expect(bg.stderr).toMatch(/SIGINT during start-up/);
    for (const pid of children) expect(run('kill', ['-0', pid]).status).not.toBe(0);
  });

  it('SIGUSR1 prints counters from start-up on and never opens the inspector', async () => {
    const bg = sandbox.spawnUsernet(['run', '--log-level', 'debug', '--', 'sleep', '600']);
    // From usernet's first log line on (the warm-up runs next), then after start-up.
    await bg.waitFor(/namespace ready/, 30_000);
    bg.proc.kill('SIGUSR1');
    await bg.waitFor(/warm-up: \d+ connections/, 30_000);
    bg.proc.kill('SIGUSR1');
    const deadline = Date.now() + 10_000;
    while ((bg.stderr.match(/^\S+Z usernet: stats \{/gm) ?? []).length < 2 && Date.now() < deadline) await sleep(20);
    expect((bg.stderr.match(/^\S+Z usernet: stats \{/gm) ?? []).length).toBe(2);
    expect(bg.stderr).not.toMatch(/Debugger listening|inspector/i);
    expect(run('ss', ['-Htln', 'sport = :9229']).stdout.trim()).toBe('');
    expect(bg.running).toBe(true);
    await bg.stop('SIGTERM', 10_000);
  });

  it.each([
    ['usernet --tap', 'tap'],
    ['the slirp4netns front end', 'slirp'],
  ])('SIGUSR1 prints counters in %s', async (_name, kind) => {
    let bg: Background;
    if (kind === 'tap') {
      bg = sandbox.spawnUsernet(['--tap', sandbox.tap('sig'), '--no-warm-up']);
      await bg.waitFor(/gateway 10\.0\.2\.2/, 30_000);
    } else {
      const ns = sandbox.netns('sig');
      bg = sandbox.spawnUsernet(['slirp4netns', '-r', '1', '--netns-type=path', `/run/netns/${ns}`, 'tap0']);
      await bg.waitFor(/^1/, 30_000);
    }
    bg.proc.kill('SIGUSR1');
    await bg.waitFor(/^\S+Z usernet: stats \{/m, 10_000);
    expect(bg.stderr).not.toMatch(/Debugger listening/);
    expect(bg.running).toBe(true);
    await bg.stop('SIGTERM', 10_000);
  });
});
