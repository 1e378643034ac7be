/**
 * What the bench creates on the machine, and how it is undone.
 *
 * How it works: every namespace, link, process, temporary directory and mode
 * change goes through one Cleanup registry, in creation order; cleanup()
 * undoes them in reverse (processes first, by the PID we got when we started
 * them, never by name). run.ts calls cleanup() in a finally block and from
 * SIGINT/SIGTERM/SIGHUP handlers, so an interrupted run leaves nothing behind.
 * cleanupSync() exists for the signal path, where there is no time to await.
 * Names carry a random suffix so parallel runs, and other users of the
 * machine, never collide with ours.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export function sh(cmd: string, args: string[], timeoutMs = 30_000): Result {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs, killSignal: 'SIGKILL' });
  const timedOut = (r.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT';
  if (r.error && !timedOut) return { status: -1, stdout: '', stderr: String(r.error.message), timedOut: false };
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '', timedOut };
}

export function must(cmd: string, args: string[], timeoutMs = 30_000): string {
  const r = sh(cmd, args, timeoutMs);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.timedOut ? 'timed out' : `exit ${r.status}`} ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function suffix(): string {
  return randomBytes(3).toString('hex');
}

/** A process we started; output is collected, exit is observable. */
export class Proc {
  stdout = '';
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  constructor(readonly child: ChildProcess, readonly label: string) {
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (this.stdout += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (this.stderr += d));
    this.exited = new Promise((res) => {
      child.on('exit', (code, signal) => res({ code, signal }));
      child.on('error', (err) => {
        this.stderr += String(err.message);
        res({ code: -1, signal: null });
      });
    });
  }
  get pid(): number {
    return this.child.pid ?? -1;
  }
  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null && this.child.pid !== undefined;
  }
  async waitFor(re: RegExp, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!re.test(this.stderr) && !re.test(this.stdout)) {
      if (!this.running) throw new Error(`${this.label} exited before printing ${re}: ${this.stderr.trim()}`);
      if (Date.now() > deadline) throw new Error(`${this.label}: timed out waiting for ${re}: ${this.stderr.trim()}`);
      await sleep(20);
    }
  }
  /** Waits for exit; past timeoutMs the process is killed and timedOut is set. */
  async wait(timeoutMs: number): Promise<{ code: number | null; timedOut: boolean }> {
    let timedOut = false;
    const t = setTimeout(() => {
      timedOut = true;
      this.kill('SIGKILL');
    }, timeoutMs);
    const r = await this.exited;
    clearTimeout(t);
    return { code: r.code, timedOut };
  }
  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.running) {
      try {
        process.kill(this.pid, signal);
      } catch {
        /* already gone */
      }
    }
  }
  async stop(timeoutMs = 3_000): Promise<void> {
    if (!this.running) return;
    this.kill('SIGTERM');
    const t = setTimeout(() => this.kill('SIGKILL'), timeoutMs);
    await this.exited;
    clearTimeout(t);
  }
}

type Undo = { kind: 'proc'; proc: Proc } | { kind: 'fn'; label: string; fn: () => void };

/**
 * What the bench creates is named `ubn-TAG-HEX` (namespaces), `ubTAGHEX`
 * (interfaces) and `usernet-bench-*` (directories); with
 * $USERNET_BENCH_PREFIX (letters, digits, dashes; at most 6) all three start
 * with that instead, so a run beside other work is told apart.
 */
const PREFIX = process.env.USERNET_BENCH_PREFIX;
if (PREFIX !== undefined && !/^[a-z0-9-]{1,6}$/.test(PREFIX)) throw new Error(`USERNET_BENCH_PREFIX=${PREFIX}: at most 6 of a-z, 0-9 and -`);

export class Cleanup {
  private undo: Undo[] = [];

  spawn(cmd: string, args: string[], label = cmd, stdin: 'ignore' | 'pipe' = 'ignore'): Proc {
    const p = new Proc(spawn(cmd, args, { stdio: [stdin, 'pipe', 'pipe'] }), label);
    this.undo.push({ kind: 'proc', proc: p });
    return p;
  }

  add(label: string, fn: () => void): void {
    this.undo.push({ kind: 'fn', label, fn });
  }

  netns(tag: string): string {
    const name = `${PREFIX ?? 'ubn-'}${tag}-${suffix()}`;
    must('ip', ['netns', 'add', name]);
    this.add(`netns ${name}`, () => void sh('ip', ['netns', 'del', name]));
    must('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    return name;
  }

  /** An interface name of at most 15 bytes. */
  ifname(tag: string): string {
    const head = PREFIX ?? 'ub';
    return `${head}${tag.slice(0, PREFIX === undefined ? 5 : 9 - head.length)}${suffix()}`;
  }

  /** A persistent tap in the root namespace; deleted wherever it moved to (its namespace going also removes it). */
  tap(tag: string): string {
    const name = this.ifname(tag);
    must('ip', ['tuntap', 'add', 'dev', name, 'mode', 'tap']);
    this.add(`tap ${name}`, () => void sh('ip', ['link', 'del', name]));
    return name;
  }

  tmpdir(): string {
    const d = mkdtempSync(join(tmpdir(), PREFIX ?? 'usernet-bench-'));
    this.add(`dir ${d}`, () => rmSync(d, { recursive: true, force: true }));
    return d;
  }

  /** Sets a file's mode and restores the old one at cleanup. */
  chmod(path: string, mode: number): void {
    const old = statSync(path).mode & 0o7777;
    if (old === mode) return;
    chmodSync(path, mode);
    this.add(`chmod ${path}`, () => chmodSync(path, old));
  }

  /** Stops the processes started since `mark` and undoes the rest, newest first. */
  async release(mark: number): Promise<void> {
    const tail = this.undo.splice(mark);
    for (const u of tail) if (u.kind === 'proc') await u.proc.stop().catch(() => undefined);
    for (const u of tail.reverse()) {
      if (u.kind === 'fn') {
        try {
          u.fn();
        } catch (err) {
          process.stderr.write(`bench: cleanup of ${u.label} failed: ${(err as Error).message}\n`);
        }
      }
    }
  }

  mark(): number {
    return this.undo.length;
  }

  async cleanup(): Promise<void> {
    await this.release(0);
  }

  /** For signal handlers: SIGKILL our processes, then undo the rest, without awaiting. */
  cleanupSync(): void {
    const all = this.undo.splice(0);
    for (const u of all) if (u.kind === 'proc') u.proc.kill('SIGKILL');
    for (const u of all.reverse()) {
      if (u.kind === 'fn') {
        try {
          u.fn();
        } catch {
          /* best effort on the way out */
        }
      }
    }
  }
}

/** utime + stime of a process, in seconds (clock ticks are 100 Hz on Linux). */
export function cpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}

export function rssKiB(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

export function fdCount(pid: number): number | null {
  const r = sh('ls', [`/proc/${pid}/fd`]);
  return r.status === 0 ? r.stdout.split('\n').filter(Boolean).length : null;
}

/**
 * Samples a process's CPU time until it exits; `last` is the final reading
 * taken while it was alive (the workload ends well before the process does,
 * see the sleep after iperf3 in the callers).
 */
export class CpuSampler {
  first: number | null = null;
  last: number | null = null;
  private timer: NodeJS.Timeout;
  constructor(private readonly pid: number, periodMs = 100) {
    this.first = cpuSeconds(pid);
    this.last = this.first;
    this.timer = setInterval(() => {
      const v = cpuSeconds(this.pid);
      if (v !== null) this.last = v;
    }, periodMs);
  }
  stop(): number | null {
    clearInterval(this.timer);
    const v = cpuSeconds(this.pid);
    if (v !== null) this.last = v;
    return this.first === null || this.last === null ? null : this.last - this.first;
  }
}
