/**
 * The addon's execve: it replaces the calling process, so it runs in a child
 * Node process that execs a shell; the shell reports its PID and what it can
 * read from the kept fd. Validation and a failing execve run here.
 */
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, NativeError } from '../../src/errors.js';
import { native } from '../../src/native/addon.js';

const ADDON_JS = resolve(import.meta.dirname, '..', '..', 'dist', 'src', 'native', 'addon.js');

/** Runs a Node child with fd 3 a pipe carrying `fd3Text`; resolves with its stdout and exit status. */
function runChild(body: string, fd3Text: string): Promise<{ out: string; err: string; code: number | null; pid: number }> {
  const script = `import { native } from ${JSON.stringify(ADDON_JS)};\n${body}\n`;
  const proc = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
  const fd3 = proc.stdio[3] as NodeJS.WritableStream;
  // A child that never reads fd 3 resets the socket pair: expected, not a failure.
  fd3.on('error', () => undefined);
  fd3.end(fd3Text);
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  return new Promise((res) => proc.on('close', (code) => res({ out, err, code, pid: proc.pid ?? -1 })));
}

describe('native.execve', () => {
  it('replaces the process in place: same PID, environment as given, kept fd open, signals unblocked', async () => {
    // Node marks inherited fds 3+ close-on-exec at start-up; keepFds must undo that for fd 3.
    const r = await runChild(
      `native.execve('/bin/sh', ['sh', '-c', 'echo pid=$$ mark=$USERNET_EXEC_TEST; cat <&3; grep ^SigBlk /proc/self/status'], ['USERNET_EXEC_TEST=yes', 'PATH=/usr/bin:/bin'], [3]);`,
      'from-fd3\n',
    );
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toContain(`pid=${r.pid} mark=yes\n`);
    expect(r.out).toContain('from-fd3\n');
    expect(r.out).toMatch(/^SigBlk:\s*0{16}$/m);
  });

  it('without it in keepFds the inherited fd is closed by the exec (why keepFds exists); stdio stays', async () => {
    const r = await runChild(`native.execve('/bin/sh', ['sh', '-c', 'cat <&3 && echo open || echo closed'], ['PATH=/usr/bin:/bin']);`, 'x');
    expect(r.out).toMatch(/closed\n$/);
  });

  it('a failing execve throws a NativeError and the process goes on', () => {
    let err: unknown;
    try {
      native.execve('/nonexistent/usernet-exec-test', ['x'], [], [0, 1, 2]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NativeError);
    expect((err as NativeError).code).toBe('ENOENT');
    expect((err as NativeError).syscall).toBe('execve');
  });

  it('a keepFds entry that is not open fails before exec, with EBADF', () => {
    expect(() => native.execve('/bin/true', ['true'], [], [987654])).toThrow(/EBADF/);
  });

  it('refuses bad arguments with a ConfigError', () => {
    const bad: [string, string[], string[], number[]][] = [
      ['bin/true', ['true'], [], []],
      ['', ['true'], [], []],
      ['/bin/true', [], [], []],
      ['/bin/true', ['a\0b'], [], []],
      ['/bin/true', ['true'], ['NOEQUALS'], []],
      ['/bin/true', ['true'], [], [-1]],
      ['/bin/true', ['true'], [], [1.5]],
    ];
    for (const [f, a, e, k] of bad) expect(() => native.execve(f, a, e, k)).toThrow(ConfigError);
  });
});
