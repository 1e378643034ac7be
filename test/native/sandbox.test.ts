/**
 * The addon's confinement calls. Sandboxing and filtering are irreversible,
 * so they run in a child Node process (never in the test runner); the child
 * reports what it can see and waits while this process inspects its threads
 * through /proc. Validation, unlinkAt and the process watch run here.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync, constants } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, NativeError } from '../../src/errors.js';
import { native } from '../../src/native/addon.js';

const ADDON_JS = resolve(import.meta.dirname, '..', '..', 'dist', 'src', 'native', 'addon.js');
const O_PATH = 0o10000000;

const children: ChildProcess[] = [];
const dirs: string[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/**
 * Runs `body` (ESM, with `native` imported) in a child Node process. The child
 * prints one JSON line via report(value), then stays alive until its stdin closes.
 */
function child(body: string): { proc: ChildProcess; report: Promise<Record<string, unknown>>; done: Promise<number | null> } {
  const script = `import { native } from ${JSON.stringify(ADDON_JS)};
import * as fs from 'node:fs';
import * as cp from 'node:child_process';
import { Worker } from 'node:worker_threads';
const report = (v) => process.stdout.write(JSON.stringify(v) + '\\n');
// A thread may exit between the listing and the read (a finished worker): skip it.
const statusOf = (t) => { try { return fs.readFileSync('/proc/self/task/' + t + '/status', 'utf8'); } catch { return null; } };
const threads = () => fs.readdirSync('/proc/self/task').map(statusOf).filter((s) => s !== null).map((s) => s.match(/^Seccomp:\\s*(\\d)/m)[1]);
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
${body}
`;
  const proc = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'pipe'] });
  children.push(proc);
  let out = '';
  let err = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const report = new Promise<Record<string, unknown>>((res, rej) => {
    proc.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) res(JSON.parse(out.slice(0, nl)) as Record<string, unknown>);
    });
    proc.on('exit', (code) => rej(new Error(`child exited (${code}) before reporting: ${err}`)));
  });
  const done = new Promise<number | null>((res) => proc.on('exit', (code) => res(code)));
  return { proc, report, done };
}

/** A thread's status, or '' when it exited between listing the tasks and reading it (a finished worker). */
function status(pid: number | undefined, tid: string): string {
  try {
    return readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ESRCH') return '';
    throw e;
  }
}

describe('native sandbox calls: validation (nothing reaches the kernel)', () => {
  it('enterSandbox refuses bad options with a ConfigError', () => {
    const bad: unknown[] = [
      null,
      { scratch: 'tmp', keep: ['/etc'] },
      { scratch: '/tmp/../x', keep: ['/etc'] },
      { scratch: '/tmp', keep: ['etc'] },
      { scratch: '/tmp', keep: ['/etc/ssl'] },
      { scratch: '/tmp', keep: ['/'] },
      { scratch: '/tmp', keep: ['/..'] },
      { scratch: '/tmp', keep: ['/etc', '/etc'] },
      { scratch: '/tmp', keep: '/etc' },
    ];
    for (const o of bad) expect(() => native.enterSandbox(o as never)).toThrow(ConfigError);
  });

  it('unlinkAt and watchProcessExit check their arguments', () => {
    expect(() => native.unlinkAt(-1, 'x')).toThrow(TypeError);
    for (const name of ['', 'a/b', '.', '..']) expect(() => native.unlinkAt(0, name)).toThrow(TypeError);
    expect(() => native.watchProcessExit(0, () => undefined)).toThrow(ConfigError);
  });
});

describe('native sandbox calls: in this process', () => {
  it('unlinkAt removes a name relative to a directory fd, and reports ENOENT after', () => {
    const d = mkdtempSync(join(tmpdir(), 'usernet-unlinkat-'));
    dirs.push(d);
    writeFileSync(join(d, 'f'), 'x');
    const fd = openSync(d, O_PATH | constants.O_DIRECTORY);
    try {
      native.unlinkAt(fd, 'f');
      expect(existsSync(join(d, 'f'))).toBe(false);
      let caught: unknown;
      try {
        native.unlinkAt(fd, 'f');
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(NativeError);
      expect((caught as NativeError).code).toBe('ENOENT');
    } finally {
      closeSync(fd);
    }
  });

  it('watchProcessExit fires once when the process exits, and not after close()', async () => {
    const p = spawn('sleep', ['30']);
    children.push(p);
    let fired = 0;
    const w = native.watchProcessExit(p.pid!, () => fired++);
    await new Promise((r) => setTimeout(r, 100));
    expect(fired).toBe(0);
    p.kill('SIGKILL');
    for (let i = 0; i < 100 && fired === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(fired).toBe(1);
    w.close();

    const q = spawn('sleep', ['30']);
    children.push(q);
    let late = 0;
    native.watchProcessExit(q.pid!, () => late++).close();
    q.kill('SIGKILL');
    await new Promise((r) => setTimeout(r, 200));
    expect(late).toBe(0);
  });

  it('watchProcessExit on a PID that does not exist throws ESRCH', () => {
    expect(() => native.watchProcessExit(0x3fff_fff0, () => undefined)).toThrow(/ESRCH/);
  });
});

describe('native sandbox calls: in a child process', () => {
  it('installSeccompFilter: every thread, threads made later too; execve fails with EPERM; work goes on', async () => {
    const c = child(`
const r = native.installSeccompFilter();
let exec;
try { cp.execFileSync('/bin/true'); exec = 'ran'; } catch (e) { exec = e.code; }
// A thread made after the filter: glibc's clone3 gets ENOSYS and falls back to clone.
const w = new Worker(new URL('data:text/javascript,import { parentPort } from "node:worker_threads"; parentPort.postMessage(40 + 2);'));
const answer = await new Promise((res) => w.once('message', res));
const read = await fs.promises.readFile('/etc/hostname', 'utf8').then(() => 'ok', (e) => e.code);
report({ r, exec, answer, read, seccomp: threads() });
`);
    const rep = await c.report;
    expect(rep.r).toMatchObject({ denied: expect.any(Number), instructions: expect.any(Number) });
    expect(rep.exec).toBe('EPERM');
    expect(rep.answer).toBe(42);
    expect(rep.read).toBe('ok');
    const seen = rep.seccomp as string[];
    expect(seen.length).toBeGreaterThan(5);
    expect(new Set(seen)).toEqual(new Set(['2']));
    for (const tid of readdirSync(`/proc/${c.proc.pid}/task`)) {
      const st = status(c.proc.pid, tid);
      if (st !== '') expect(st).toMatch(/^Seccomp:\s*2$/m);
    }
    c.proc.stdin!.end();
    expect(await c.done).toBe(0);
  });

  it('enterSandbox: every thread in one new mount namespace rooted at /etc + /run, read-only, no capability but CAP_NET_BIND_SERVICE', async () => {
    const c = child(`
// Grow the libuv pool first, so there are threads that only the signal can reach.
await Promise.all([1, 2, 3, 4].map(() => fs.promises.readFile('/etc/hostname')));
const r = native.enterSandbox({ scratch: '/tmp', keep: ['/etc', '/run'] });
let write;
try { fs.writeFileSync('/etc/usernet-sandbox-test', 'x'); write = 'wrote'; } catch (e) { write = e.code; }
let mk;
try { fs.mkdirSync('/new'); mk = 'made'; } catch (e) { mk = e.code; }
report({ r, root: fs.readdirSync('/').sort(), write, mk, hostname: fs.readFileSync('/etc/hostname', 'utf8').length > 0 });
`);
    const rep = await c.report;
    expect(rep.root).toEqual(['etc', 'run']);
    expect(rep.write).toBe('EROFS');
    expect(rep.mk).toBe('EROFS');
    expect(rep.hostname).toBe(true);
    const tids = readdirSync(`/proc/${c.proc.pid}/task`);
    expect((rep.r as { threads: number }).threads).toBe(tids.length);
    const ours = readlinkSync('/proc/self/ns/mnt');
    const mnts = new Set<string>();
    for (const tid of tids) {
      const s = status(c.proc.pid, tid);
      // CAP_NET_BIND_SERVICE (bit 10) alone stays, as slirp4netns keeps it; never an ambient one.
      for (const f of ['CapEff', 'CapPrm', 'CapInh', 'CapBnd']) expect(s).toMatch(new RegExp(`^${f}:\\s*0000000000000400$`, 'm'));
      expect(s).toMatch(/^CapAmb:\s*0{16}$/m);
      const mnt = readlinkSync(`/proc/${c.proc.pid}/task/${tid}/ns/mnt`);
      expect(mnt).not.toBe(ours);
      mnts.add(mnt);
      expect(readdirSync(`/proc/${c.proc.pid}/task/${tid}/root`).sort()).toEqual(['etc', 'run']);
    }
    expect(mnts.size).toBe(1);
    // Our own /tmp is untouched: the tmpfs went on the child's private copy.
    expect(existsSync(tmpdir())).toBe(true);
    c.proc.stdin!.end();
    expect(await c.done).toBe(0);
  });
});
