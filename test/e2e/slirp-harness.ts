/**
 * Helpers for the slirp4netns drop-in tests: the shipped bin/slirp4netns,
 * spawned with extra fds (ready/exit), async command runs (the test process
 * itself serves the guest, so it must not block), a tiny HTTP-ish server and
 * the API client. Everything is registered with a Sandbox or closed by the
 * caller; processes are stopped by PID only.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { appendFileSync, chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { Background, ROOT, type Result } from './harness.js';

export const SLIRP_BIN = join(ROOT, 'bin', 'slirp4netns');

// The slirp4netns tests import runAsync from here; it lives with the other command runners.
export { runAsync } from './harness.js';

/** A TCP server on 127.0.0.1 that answers every connection with `body` (HTTP/1.0 style) and closes. */
/** A TCP port on 127.0.0.1 that nothing listened on a moment ago (the kernel's pick). */
export async function freeTcpPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const addr = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  return addr.port;
}

export async function httpServer(body: string, host = '127.0.0.1'): Promise<{ server: Server; port: number }> {
  const server = createServer((s) => {
    s.once('data', () => s.end(`HTTP/1.0 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`));
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  return { server, port: addr.port };
}

/** One API request: write, shut down the write side, read the whole reply. */
export function apiCall(path: string, req: unknown): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const c = connect(path);
    let data = '';
    c.setEncoding('utf8');
    c.on('connect', () => c.end(`${JSON.stringify(req)}\n`));
    c.on('data', (d: string) => (data += d));
    c.on('end', () => {
      try {
        resolve(JSON.parse(data) as Record<string, unknown>);
      } catch (err) {
        reject(err);
      }
    });
    c.on('error', reject);
  });
}

export interface SlirpProcess {
  bg: Background;
  child: ChildProcess;
  /** Resolves with what was written to the ready fd once it is closed ('' when the process died first). */
  ready: Promise<string>;
}

/**
 * Spawns bin/slirp4netns with fd 3 as the exit fd (a stream the test holds the
 * writing end of) and fd 4 as the ready fd, when the args refer to them.
 */
export function spawnSlirp(args: string[], register: (b: Background) => void, prefix: string[] = []): SlirpProcess {
  // A prefix such as `ip netns exec NS` keeps fds 3 and 4 open for the program it runs.
  const [file, argv] = prefix.length > 0 ? [prefix[0], [...prefix.slice(1), SLIRP_BIN, ...args]] : [SLIRP_BIN, args];
  const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'] });
  const bg = new Background(child);
  register(bg);
  const readyStream = child.stdio[4] as Readable;
  const ready = new Promise<string>((resolve) => {
    let got = '';
    readyStream.setEncoding('utf8');
    readyStream.on('data', (d: string) => (got += d));
    readyStream.on('end', () => resolve(got));
    readyStream.on('close', () => resolve(got));
    readyStream.on('error', () => resolve(got));
  });
  return { bg, child, ready };
}

export async function waitExit(bg: Background, timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null } | null> {
  return Promise.race([bg.exited, new Promise<null>((r) => setTimeout(() => r(null), timeoutMs))]);
}

/** Processes started with custom stdio; stopAll() stops each by PID (SIGTERM, then SIGKILL). */
export class Tracker {
  private procs: Background[] = [];
  readonly track = (b: Background): void => {
    this.procs.push(b);
  };
  async stopAll(): Promise<void> {
    for (const p of this.procs.splice(0)) await p.stop('SIGTERM', 3_000).catch(() => undefined);
  }
}

/** An ordinary user with subordinate ids, for rootlesskit; created once, left in place (idempotent). */
export const ROOTLESS_USER = 'usnslirp';
const SUBID_RANGE = '300000:65536';

export function ensureRootlessUser(): void {
  if (runSync('id', [ROOTLESS_USER]).status !== 0) {
    const r = runSync('useradd', ['-m', '-s', '/bin/sh', ROOTLESS_USER]);
    // Another test file may have created it meanwhile.
    if (r.status !== 0 && runSync('id', [ROOTLESS_USER]).status !== 0) throw new Error(`useradd failed: ${r.stderr}`);
  }
  for (const f of ['/etc/subuid', '/etc/subgid']) {
    const text = existsSync(f) ? readFileSync(f, 'utf8') : '';
    if (!text.split('\n').some((l) => l.startsWith(`${ROOTLESS_USER}:`))) {
      appendFileSync(f, `${text.length > 0 && !text.endsWith('\n') ? '\n' : ''}${ROOTLESS_USER}:${SUBID_RANGE}\n`);
    }
  }
}

/** A directory everybody can read (for scripts the rootless user runs); remove it with rmSync. */
export function publicTmpdir(): string {
  const d = mkdtempSync(join(tmpdir(), 'usernet-pub-'));
  chmodSync(d, 0o755);
  return d;
}

/**
 * A minimal root filesystem for `podman run --rootfs`: the host's busybox and
 * the libraries it links, plus the applets the tests use. No image pull.
 */
export function busyboxRootfs(dir: string): string {
  const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));
  if (busybox === undefined) throw new Error('busybox not installed (apt-get install busybox)');
  for (const d of ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp', 'root', 'www']) mkdirSync(join(dir, d), { recursive: true });
  copyFileSync(busybox, join(dir, 'bin', 'busybox'));
  chmodSync(join(dir, 'bin', 'busybox'), 0o755);
  const ldd = runSync('ldd', [busybox]).stdout;
  for (const lib of ldd.match(/\/[^\s]+/g) ?? []) {
    mkdirSync(join(dir, dirname(lib)), { recursive: true });
    copyFileSync(realpathSync(lib), join(dir, lib));
  }
  for (const a of ['sh', 'wget', 'httpd', 'echo', 'sleep', 'cat', 'ip', 'mkdir']) symlinkSync('busybox', join(dir, 'bin', a));
  writeFileSync(join(dir, 'www', 'index.html'), 'hello-from-container\n');
  return dir;
}

function runSync(cmd: string, args: string[]): Result {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return { status: r.status, signal: r.signal, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/**
 * Rootless users open /dev/net/tun themselves (rootlesskit creates tap0 with
 * ip-tuntap inside its namespace): stock Debian has it 0666. Makes it so when
 * something on this machine tightened it, and returns the mode to restore.
 */
export function openTunForUsers(): number {
  const mode = statSync('/dev/net/tun').mode & 0o777;
  if ((mode & 0o006) !== 0o006) chmodSync('/dev/net/tun', 0o666);
  return mode;
}

export function restoreTunMode(mode: number): void {
  if ((mode & 0o006) !== 0o006) chmodSync('/dev/net/tun', mode);
}
