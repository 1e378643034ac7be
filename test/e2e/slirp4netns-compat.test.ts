/**
 * The drop-in, compared: the same invocations run against Debian's
 * slirp4netns 1.2.0 (/usr/bin/slirp4netns) and against usernet's
 * bin/slirp4netns, and what each prints and returns is compared with the
 * other and with the table below (slirp4netns' words, as observed). Where
 * the package is missing, the slirp4netns half is skipped with a message and
 * usernet is still held to the table.
 *
 * Namespaces are `i20-<random hex>`, removed in afterEach even on failure;
 * processes are stopped by PID. No invocation names an existing process: a
 * PID that parses is one that does not exist (or slirp4netns would attach a
 * tap to that process's namespace).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { must, run, Sandbox, sleep, type Result } from './harness.js';
import { runAsync, SLIRP_BIN, Tracker } from './slirp-harness.js';
import { Background } from './harness.js';
import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';

const REAL = '/usr/bin/slirp4netns';
const HAVE_REAL = existsSync(REAL);
if (!HAVE_REAL) console.warn(`${REAL} is missing (Debian package slirp4netns): the slirp4netns half of these comparisons is skipped`);

const sandbox = new Sandbox();
const tracker = new Tracker();
const namespaces: string[] = [];
const servers: Server[] = [];
afterEach(async () => {
  await tracker.stopAll();
  for (const s of servers.splice(0)) s.close();
  for (const ns of namespaces.splice(0)) run('ip', ['netns', 'del', ns]);
  await sandbox.cleanup();
});

function netns(): string {
  const name = `i20-${randomBytes(4).toString('hex')}`;
  must('ip', ['netns', 'add', name]);
  namespaces.push(name);
  must('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return name;
}

/** A PID no process has now (the highest free one below pid_max). */
function deadPid(): string {
  for (let p = 4_194_000; p > 1000; p--) if (!existsSync(`/proc/${p}`)) return String(p);
  throw new Error('no free pid');
}

/** stderr's first line with the program name getopt puts in front made neutral. */
function firstErrLine(r: Result): string {
  const line = r.stderr.split('\n')[0];
  return line.replace(/^(?:usernet )?\S*slirp4netns: /, 'PROG: ');
}

interface Outcome {
  status: number | null;
  first: string;
  usage: boolean;
}

function outcome(r: Result): Outcome {
  return { status: r.status, first: firstErrLine(r), usage: /^Usage: /m.test(r.stdout) };
}

describe('slirp4netns 1.2.0 and usernet side by side', () => {
  it('-v: the same five lines (keys in order), values that enable exactly what usernet has, and a line naming usernet', () => {
    const ours = run(SLIRP_BIN, ['-v']);
    expect(ours.status).toBe(0);
    const lines = ours.stdout.trimEnd().split('\n');
    const keys = (ls: string[]) => ls.map((l) => (l.startsWith('slirp4netns version') ? 'version' : l.split(':')[0]));
    expect(keys(lines)).toEqual(['version', 'commit', 'libslirp', 'SLIRP_CONFIG_VERSION_MAX', 'libseccomp', 'usernet']);
    expect(lines[0]).toBe('slirp4netns version 1.2.0');
    // The probe of the issue: >= 3 means --disable-dns and --outbound-addr exist (both do in usernet).
    expect(Number(/^SLIRP_CONFIG_VERSION_MAX: (\d+)$/m.exec(ours.stdout)?.[1])).toBe(3);
    if (!HAVE_REAL) return;
    const real = run(REAL, ['-v']);
    expect(real.status).toBe(0);
    const realLines = real.stdout.trimEnd().split('\n');
    expect(keys(lines).slice(0, realLines.length)).toEqual(keys(realLines));
    for (const k of ['version', 'commit', 'libslirp', 'libseccomp']) {
      expect(lines[keys(lines).indexOf(k)]).toBe(realLines[keys(realLines).indexOf(k)]);
    }
  });

  it('every command-line and start-up error: the same exit status, usage text or not, and slirp4netns words first', () => {
    const dead = deadPid();
    // [argv, slirp4netns' first stderr line (getopt's with "PROG: "), status, usage text follows]
    const table: [string[], string, number, boolean][] = [
      [[], '', 1, true],
      [[dead], '', 1, true],
      [['--bogus', dead, 'tap0'], "PROG: unrecognized option '--bogus'", 1, true],
      [['-x', dead, 'tap0'], "PROG: invalid option -- 'x'", 1, true],
      [[dead, 'tap0', '--mtu'], "PROG: option '--mtu' requires an argument", 1, true],
      [[dead, 'tap0', '-m'], "PROG: option requires an argument -- 'm'", 1, true],
      [['--configure=1', dead, 'tap0'], "PROG: option '--configure' doesn't allow an argument", 1, true],
      [['abc', 'tap0'], 'PID must be a positive integer', 1, true],
      [['0', 'tap0'], 'PID must be a positive integer', 1, true],
      [['-5', 'tap0'], "PROG: invalid option -- '5'", 1, true],
      [[dead, 'tap0'], `/proc/${dead}/ns/net: No such file or directory`, 1, false],
      [[dead, 'tap0', 'extra'], `/proc/${dead}/ns/net: No such file or directory`, 1, false],
      [['--netns-type=path', '/nonexistent-i20', 'tap0'], 'existing path expected when --netns-type=path: No such file or directory', 1, true],
      [['--netns-type=path', '/etc/hostname', 'i20tap0'], 'setns(CLONE_NEWNET): Invalid argument', 1, false],
      [['--userns-path=/nonexistent-i20', dead, 'tap0'], "userns path doesn't exist: /nonexistent-i20", 1, true],
      [['--mtu=0', dead, 'tap0'], 'MTU must be a positive integer (< 65522)', 1, true],
      [['--mtu=65522', dead, 'tap0'], 'MTU must be a positive integer (< 65522)', 1, true],
      [['--mtu=abc', dead, 'tap0'], 'MTU must be a positive integer (< 65522)', 1, true],
      [['-r', 'x', dead, 'tap0'], 'ready-fd must be a non-negative integer', 1, true],
      [['-e', '-1', dead, 'tap0'], 'exit-fd must be a non-negative integer', 1, true],
      [['--cidr=10.0.2.100/24', dead, 'tap0'], 'CIDR needs to be a network address like 10.0.2.0/24, not like 10.0.2.100/24', 1, false],
      [['--cidr=foo', dead, 'tap0'], 'invalid CIDR: foo', 1, false],
      [['--cidr=10.0.2.0', dead, 'tap0'], 'invalid CIDR: 10.0.2.0', 1, false],
      [['--cidr=10.0.2.0/26', dead, 'tap0'], 'prefix length needs to be 1-25', 1, false],
      [['--cidr=10.0.2.0/0', dead, 'tap0'], 'prefix length needs to be 1-25', 1, false],
      [['--cidr=300.0.2.0/24', dead, 'tap0'], 'invalid network address: 300.0.2.0', 1, false],
      [['--macaddress=02:00:00:00:00:01', dead, 'tap0'], '--macaddr cannot be specified when --configure or -c is not specified', 1, true],
      [['-c', '--macaddress=zz', dead, 'tap0'], '"zz" is an invalid MAC address.', 1, false],
      [['--target-type=foo', dead, 'tap0'], '--target-type must be either "netns" or "bess"', 1, true],
      [['--outbound-addr=nosuchif-i20', dead, 'tap0'], 'outbound-addr has to be valid ipv4 address or interface name.', 1, false],
      [['--mtu=0', '-h'], 'MTU must be a positive integer (< 65522)', 1, true],
      [['-h', '--bogus'], '', 0, true],
    ];
    const mismatches: unknown[] = [];
    for (const [argv, words, status, usage] of table) {
      const ours = outcome(run(SLIRP_BIN, argv));
      // usernet may add a hint after slirp4netns' words, never before.
      const oursOk = ours.status === status && ours.usage === usage && ours.first.startsWith(words) && (words !== '' || ours.first === '');
      if (!oursOk) mismatches.push({ argv, program: 'usernet', want: { status, words, usage }, got: ours });
      if (!HAVE_REAL) continue;
      const real = outcome(run(REAL, argv, 10_000));
      if (!(real.status === status && real.usage === usage && real.first === words)) {
        mismatches.push({ argv, program: 'slirp4netns', want: { status, words, usage }, got: real });
      }
    }
    expect(mismatches).toEqual([]);
  });

  /** Starts one program on a fresh namespace in path mode and waits for its ready fd. */
  async function start(bin: string, args: string[]): Promise<{ ns: string; bg: Background }> {
    const ns = netns();
    const child = spawn(bin, [...args, '-r', '3', '--netns-type=path', `/run/netns/${ns}`, 'i20tap0'], { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
    const bg = new Background(child);
    tracker.track(bg);
    const ready = await new Promise<string>((resolve) => {
      let got = '';
      const r = child.stdio[3] as Readable;
      r.setEncoding('utf8');
      r.on('data', (d: string) => (got += d));
      r.on('close', () => resolve(got));
      r.on('error', () => resolve(got));
    });
    if (ready !== '1') throw new Error(`${bin} did not become ready: ${bg.stderr}`);
    return { ns, bg };
  }

  const programs: [string, string][] = [['usernet', SLIRP_BIN], ...(HAVE_REAL ? [['slirp4netns', REAL] as [string, string]] : [])];

  /** Raw API exchange: writes `data` (ending the write side when `end`), returns the reply and whether the server closed. */
  function apiRaw(path: string, data: string, end: boolean): Promise<{ reply: string; closed: boolean }> {
    return new Promise((resolve) => {
      const c = connect(path);
      let reply = '';
      c.setEncoding('utf8');
      c.on('data', (d: string) => (reply += d));
      c.on('error', () => undefined);
      c.on('end', () => {
        c.destroy();
        resolve({ reply, closed: true });
      });
      c.on('close', () => resolve({ reply, closed: true }));
      c.on('connect', () => (end ? c.end(data) : c.write(data)));
    });
  }

  it('API errors: the same replies, and a too large request is answered and closed although the client never ends it', async () => {
    const replies: Record<string, unknown[]> = {};
    for (const [name, bin] of programs) {
      const sock = join(sandbox.tmpdir(), 'api.sock');
      const { bg } = await start(bin, ['-a', sock]);
      const busy = createServer();
      await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
      servers.push(busy);
      const busyPort = (busy.address() as { port: number }).port;
      const out: unknown[] = [];
      const requests = [
        'not json',
        '{}',
        '{"execute":"frobnicate"}',
        '{"execute":"add_hostfwd","arguments":{"proto":"sctp","host_port":1,"guest_port":1}}',
        '{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":0,"guest_port":1}}',
        '{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"x","host_port":1,"guest_port":1}}',
        '{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_port":1,"guest_port":0}}',
        `{"execute":"add_hostfwd","arguments":{"proto":"tcp","host_addr":"127.0.0.1","host_port":${busyPort},"guest_port":80}}`,
        '{"execute":"remove_hostfwd","arguments":{"id":99}}',
        '{"execute":"remove_hostfwd"}',
      ];
      for (const req of requests) out.push(JSON.parse((await apiRaw(sock, req, true)).reply));
      const list = JSON.parse((await apiRaw(sock, '{"execute":"list_hostfwd"}', true)).reply) as { entries: unknown };
      out.push({ entries: list.entries });
      // 5000 bytes, write side left open: slirp4netns reads 4096, answers and closes.
      const big = await apiRaw(sock, `{"execute":"list_hostfwd","pad":"${' '.repeat(5000)}`, false);
      out.push(JSON.parse(big.reply), big.closed);
      expect(bg.running).toBe(true);
      replies[name] = out;
    }
    expect(replies.usernet).toEqual([
      { error: { desc: 'bad request: cannot parse JSON' } },
      { error: { desc: 'bad request: no execute found' } },
      { error: { desc: 'bad request: unknown execute' } },
      { error: { desc: 'bad request: add_hostfwd: bad arguments.proto' } },
      { error: { desc: 'bad request: add_hostfwd: bad arguments.host_port' } },
      { error: { desc: 'bad request: add_hostfwd: bad arguments.host_addr' } },
      { error: { desc: 'bad request: add_hostfwd: bad arguments.guest_port' } },
      { error: { desc: 'bad request: add_hostfwd: slirp_add_hostfwd failed' } },
      { error: { desc: 'bad request: remove_hostfwd: bad arguments.id' } },
      { error: { desc: 'bad request: remove_hostfwd: bad arguments.id' } },
      { entries: [] },
      { error: { desc: 'bad request: too large message' } },
      true,
    ]);
    if (HAVE_REAL) expect(replies.slirp4netns).toEqual(replies.usernet);
  });

  it('--disable-host-loopback: TCP and UDP to N+2 and to fd00::2 fail with "Network is unreachable" (ICMP), not "Connection refused"', async () => {
    const host = createServer((c) => c.end('must-not-arrive'));
    await new Promise<void>((r) => host.listen(0, '127.0.0.1', r));
    servers.push(host);
    const port = (host.address() as { port: number }).port;
    // The errno each attempt ends in; UDP with IP(V6)_RECVERR so a net unreachable reaches the socket.
    const py = [
      'import errno, socket',
      'def name(e): return errno.errorcode.get(e.errno, repr(e)) if isinstance(e, OSError) and e.errno else repr(e)',
      'for fam, addr in ((socket.AF_INET, "10.0.2.2"), (socket.AF_INET6, "fd00::2")):',
      '    s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(10)',
      '    try: s.connect((addr, PORT)); print("tcp", addr, "connected")',
      '    except Exception as e: print("tcp", addr, name(e))',
      '    u = socket.socket(fam, socket.SOCK_DGRAM); u.settimeout(10)',
      '    if fam == socket.AF_INET: u.setsockopt(socket.SOL_IP, 11, 1)',
      '    else: u.setsockopt(socket.IPPROTO_IPV6, 25, 1)',
      '    u.connect((addr, PORT)); u.send(b"x")',
      '    try: u.recv(100); print("udp", addr, "answered")',
      '    except Exception as e: print("udp", addr, name(e))',
    ]
      .join('\n')
      .replaceAll('PORT', String(port));
    const seen: Record<string, string> = {};
    for (const [name, bin] of programs) {
      const { ns } = await start(bin, ['-c', '-6', '--disable-host-loopback']);
      let addr = '';
      for (let i = 0; i < 100 && !/inet6 fd00:.*scope global(?!.*tentative)/.test(addr); i++) {
        await sleep(100);
        addr = must('ip', ['-n', ns, '-o', '-6', 'addr', 'show', 'dev', 'i20tap0', 'scope', 'global']);
      }
      const r = await runAsync('ip', ['netns', 'exec', ns, 'python3', '-c', py], 60_000);
      seen[name] = r.stdout + r.stderr;
    }
    expect(seen.usernet).toBe(
      ['tcp 10.0.2.2 ENETUNREACH', 'udp 10.0.2.2 ENETUNREACH', 'tcp fd00::2 ENETUNREACH', 'udp fd00::2 ENETUNREACH', ''].join('\n'),
    );
    if (HAVE_REAL) expect(seen.slirp4netns).toBe(seen.usernet);
  });

  it('--enable-sandbox as root: every thread keeps CAP_NET_BIND_SERVICE and nothing else, in both', async () => {
    const caps: Record<string, string[]> = {};
    for (const [name, bin] of programs) {
      const { bg } = await start(bin, ['--enable-sandbox']);
      const sets = new Set<string>();
      for (const tid of readdirSync(`/proc/${bg.pid}/task`)) {
        const st = readFileSync(`/proc/${bg.pid}/task/${tid}/status`, 'utf8');
        sets.add(['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb'].map((f) => `${f}=${new RegExp(`^${f}:\\s*(\\S+)`, 'm').exec(st)?.[1]}`).join(' '));
      }
      caps[name] = [...sets];
    }
    expect(caps.usernet).toEqual(['CapInh=0000000000000400 CapPrm=0000000000000400 CapEff=0000000000000400 CapBnd=0000000000000400 CapAmb=0000000000000000']);
    if (HAVE_REAL) expect(caps.slirp4netns).toEqual(caps.usernet);
  });
});
