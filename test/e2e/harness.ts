/**
 * End-to-end harness: runs the built `usernet` (dist/) and real Linux tools in
 * throwaway network namespaces. Everything a test creates is registered here
 * and removed in cleanup(), also when the test fails: namespaces, taps,
 * processes (stopped by PID, never by name), temporary files.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const ROOT = resolve(import.meta.dirname, '..', '..');
export const USERNET = join(ROOT, 'dist', 'src', 'cli', 'main.js');

export interface Result {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (bounded by timeoutMs) and returns its output. */
export function run(cmd: string, args: string[], timeoutMs = 30_000): Result {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs });
  if (r.error && (r.error as NodeJS.ErrnoException).code !== 'ETIMEDOUT') throw r.error;
  return { status: r.status, signal: r.signal, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** Runs a command to completion without blocking the event loop (the test process may serve the guest meanwhile); bounded by timeoutMs, then SIGKILL. */
export function runAsync(cmd: string, args: string[], timeoutMs = 30_000): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr });
    });
  });
}

/** Runs a command that must succeed. */
export function must(cmd: string, args: string[], timeoutMs = 30_000): string {
  const r = run(cmd, args, timeoutMs);
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr || r.stdout}`);
  }
  return r.stdout;
}

export function usernetArgs(args: string[]): [string, string[]] {
  return [process.execPath, [USERNET, ...args]];
}

/** Runs usernet to completion. */
export function usernet(args: string[], timeoutMs = 60_000): Result {
  const [cmd, a] = usernetArgs(args);
  return run(cmd, a, timeoutMs);
}

export class Background {
  stdout = '';
  stderr = '';
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  constructor(readonly proc: ChildProcess) {
    proc.stdout?.setEncoding('utf8').on('data', (d: string) => (this.stdout += d));
    proc.stderr?.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    this.exited = new Promise((res) => proc.on('exit', (code, signal) => res({ code, signal })));
  }
  get pid(): number {
    return this.proc.pid ?? -1;
  }
  get running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }
  /** Waits until stderr or stdout matches, or fails after timeoutMs. */
  async waitFor(re: RegExp, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!re.test(this.stderr) && !re.test(this.stdout)) {
      if (!this.running) throw new Error(`process exited before ${re}: ${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}; stderr: ${this.stderr}`);
      await sleep(20);
    }
  }
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 5_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.running) this.proc.kill(signal);
    const timer = setTimeout(() => this.running && this.proc.kill('SIGKILL'), timeoutMs);
    const r = await this.exited;
    clearTimeout(timer);
    return r;
  }
}

/**
 * A port the kernel just handed out on `host` and nobody listens on now: for a
 * server a test starts (dnsmasq, iperf3) or a port that must be closed. A
 * random pick could be some other test's ephemeral port.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, host, r));
  const p = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function suffix(): string {
  return randomBytes(3).toString('hex');
}

/**
 * Tracks what one test file creates. Call cleanup() in afterEach/afterAll.
 * Names start with `prefix` (namespaces `<prefix>-<tag>-<random>`).
 */
export class Sandbox {
  constructor(private readonly prefix = 'usn') {}

  private namespaces: string[] = [];
  private links: string[] = [];
  private procs: Background[] = [];
  private dirs: string[] = [];

  /** A new network namespace `usn-<tag>-<random>` with lo up. */
  netns(tag: string): string {
    const name = `${this.prefix}-${tag}-${suffix()}`;
    must('ip', ['netns', 'add', name]);
    this.namespaces.push(name);
    must('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    return name;
  }

  /** A unique interface name (at most 15 bytes). */
  ifname(tag: string): string {
    const head = this.prefix === 'usn' ? 'u' : `${this.prefix}-`;
    return `${head}${tag.slice(0, Math.max(0, 9 - head.length))}${suffix()}`;
  }

  /** A persistent tap in the root namespace, removed at cleanup wherever it went. */
  tap(tag: string): string {
    const name = this.ifname(tag);
    must('ip', ['tuntap', 'add', 'dev', name, 'mode', 'tap']);
    this.links.push(name);
    return name;
  }

  /** A new namespace holding `tap` with `ip`/24, up; with `route`, a default route via 10.0.2.2. */
  guestOnTap(tap: string, ip: string, tag: string, route = false): string {
    const ns = this.netns(tag);
    must('ip', ['link', 'set', tap, 'netns', ns]);
    must('ip', ['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', tap]);
    must('ip', ['-n', ns, 'link', 'set', tap, 'up']);
    if (route) must('ip', ['-n', ns, 'route', 'add', 'default', 'via', '10.0.2.2']);
    return ns;
  }

  tmpdir(): string {
    const d = mkdtempSync(join(tmpdir(), this.prefix === 'usn' ? 'usernet-test-' : `${this.prefix}-`));
    this.dirs.push(d);
    return d;
  }

  spawn(cmd: string, args: string[]): Background {
    const b = new Background(spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    this.procs.push(b);
    return b;
  }

  spawnUsernet(args: string[]): Background {
    const [cmd, a] = usernetArgs(args);
    return this.spawn(cmd, a);
  }

  async cleanup(): Promise<void> {
    for (const p of this.procs.splice(0)) await p.stop('SIGTERM', 3_000).catch(() => undefined);
    for (const ns of this.namespaces.splice(0)) {
      for (const l of this.links) run('ip', ['-n', ns, 'tuntap', 'del', 'dev', l, 'mode', 'tap']);
      run('ip', ['netns', 'del', ns]);
    }
    for (const l of this.links.splice(0)) run('ip', ['tuntap', 'del', 'dev', l, 'mode', 'tap']);
    for (const d of this.dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  }
}

/**
 * Runs usernet to completion without blocking this process's event loop
 * (tests that serve the guest from this process need that).
 */
export function usernetAsync(args: string[], timeoutMs = 120_000, prefix: string[] = []): Promise<Result> {
  const [cmd, a] = usernetArgs(args);
  const [file, argv] = prefix.length > 0 ? [prefix[0], [...prefix.slice(1), cmd, ...a]] : [cmd, a];
  return new Promise((resolve, reject) => {
    // Its own process group, so a timeout also stops the command usernet runs (and what that
    // started): killing usernet alone would leave them running in the namespace, holding our pipes.
    const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr });
    });
  });
}

/** Asks a running usernet for its counters (SIGUSR1) and returns the stats object it prints next. */
export async function statsOf(usernet: Background): Promise<any> {
  const before = usernet.stderr.length;
  process.kill(usernet.pid, 'SIGUSR1');
  const deadline = Date.now() + 5_000;
  for (;;) {
    const m = /usernet: stats (\{.*\})\n/.exec(usernet.stderr.slice(before));
    if (m) return JSON.parse(m[1]);
    if (Date.now() > deadline) throw new Error(`no stats line: ${usernet.stderr}`);
    await sleep(20);
  }
}
