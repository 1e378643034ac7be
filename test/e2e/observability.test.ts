/**
 * Observability end to end: json logs line by line, --log-file, stats lines,
 * the --metrics endpoint over a unix socket and over loopback TCP, on the
 * real `usernet --tap` and `usernet run`; pcapng captures read by tcpdump
 * and, where installed, tshark (which names the interfaces).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort, must, Sandbox, sleep, usernet, usernetAsync, type Background } from './harness.js';

const sandbox = new Sandbox('i19o');
afterEach(() => sandbox.cleanup());

function httpGet(target: { socketPath: string } | { host: string; port: number }, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ ...target, path, timeout: 5_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

/** Every non-empty line parsed as JSON (fails the test on one that is not). */
function jsonLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch {
        throw new Error(`not a JSON line: ${l}`);
      }
    });
}

async function until(what: string, ok: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

describe('logs', () => {
  it('usernet run --log-format json: every stderr line is one object with time, level, msg', async () => {
    const r = await usernetAsync(['run', '--log-format', 'json', '--log-level', 'debug', '--', 'true']);
    expect(r.status).toBe(0);
    const lines = jsonLines(r.stderr);
    expect(lines.length).toBeGreaterThan(2);
    for (const l of lines) {
      expect(l.time).toMatch(ISO);
      expect(['error', 'warn', 'info', 'debug']).toContain(l.level);
      expect(typeof l.msg).toBe('string');
    }
    expect(lines.some((l) => String(l.msg).startsWith('namespace ready'))).toBe(true);
    // Progress at info for what the command waits on: one line as each starts, one as it ends.
    const info = lines.filter((l) => l.level === 'info').map((l) => String(l.msg));
    expect(info.filter((m) => m.startsWith('IPv6: waiting for the namespace'))).toHaveLength(1);
    expect(info.filter((m) => /^namespace IPv6 ready: fd00::\S+ after \d+ ms$/.test(m))).toHaveLength(1);
    expect(info.filter((m) => m.startsWith('warm-up: started'))).toHaveLength(1);
    expect(info.filter((m) => /^warm-up: \d+ connections/.test(m))).toHaveLength(1);
  });

  it('usernet --tap --log-file: lines appended to the file with a timestamp, none on stderr; stats lines there too', async () => {
    const dir = sandbox.tmpdir();
    const file = join(dir, 'usernet.log');
    const tap = sandbox.tap('log');
    const bg = sandbox.spawnUsernet(['--tap', tap, '--no-warm-up', '--log-file', file]);
    await until('the gateway line in the log file', () => existsSync(file) && /gateway 10\.0\.2\.2/.test(readFileSync(file, 'utf8')));
    bg.proc.kill('SIGUSR1');
    await until('the stats line', () => / usernet: stats \{/.test(readFileSync(file, 'utf8')));
    await bg.stop('SIGTERM', 10_000);
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    for (const l of lines) expect(l).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z usernet: /);
    expect(lines.some((l) => / usernet: info: SIGTERM: stopping$/.test(l))).toBe(true);
    const stats = JSON.parse(/ usernet: stats (\{.*\})$/m.exec(lines.join('\n'))![1]);
    expect(stats.time).toMatch(ISO);
    expect(typeof stats.uptimeSeconds).toBe('number');
    expect(stats.bridge.macTable.entries).toBeUndefined();
    expect(bg.stderr).toBe('');
  });

  it('a fatal error: with json on stderr, a json line too; a --log-file that cannot be opened is named', () => {
    // `lo` exists and is no tap: opening it fails (EINVAL) and changes nothing.
    const r = usernet(['--tap', 'lo', '--no-warm-up', '--log-format', 'json']);
    expect(r.status).toBe(1);
    const lines = jsonLines(r.stderr);
    expect(lines.at(-1)).toMatchObject({ level: 'error', msg: expect.stringMatching(/^tap lo: ioctl\(TUNSETIFF\) failed/) });
    const dir = sandbox.tmpdir();
    // The daemon too: its API socket cannot go under a regular file.
    writeFileSync(join(dir, 'plain'), '');
    const d = usernet(['daemon', '--no-warm-up', '--log-format', 'json', '--api-socket', join(dir, 'plain', 'api.sock')]);
    expect(d.status).toBe(1);
    expect(jsonLines(d.stderr).at(-1)).toMatchObject({ level: 'error', msg: expect.stringMatching(/EEXIST/) });
    const bad = usernet(['--tap', 'lo', '--log-file', join(dir, 'no-such-dir', 'x.log')]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/^usernet: --log-file \S+x\.log: ENOENT/);
  });

  it('json stats: one clean object (msg "stats", time, uptime), the MAC table with --stats-mac-table', async () => {
    const tap = sandbox.tap('js');
    const bg = sandbox.spawnUsernet(['--tap', tap, '--no-warm-up', '--log-format', 'json', '--stats-mac-table']);
    await bg.waitFor(/gateway 10\.0\.2\.2/, 30_000);
    bg.proc.kill('SIGUSR1');
    await bg.waitFor(/"msg":"stats"/, 10_000);
    await bg.stop('SIGTERM', 10_000);
    const lines = jsonLines(bg.stderr);
    const stats = lines.find((l) => l.msg === 'stats') as Record<string, any>;
    expect(stats.level).toBe('info');
    expect(stats.time).toMatch(ISO);
    expect(stats.uptimeSeconds).toBeGreaterThanOrEqual(0);
    expect(stats.bridge.macTable.entries).toContainEqual(expect.objectContaining({ mac: '52:55:0a:00:02:02', port: 'gateway', isStatic: true }));
  });
});

describe('--metrics', () => {
  async function scrape(bg: Background, target: { socketPath: string } | { host: string; port: number }): Promise<string> {
    await bg.waitFor(/metrics: GET \/metrics/, 30_000);
    const r = await httpGet(target, '/metrics');
    expect(r.status).toBe(200);
    return r.body;
  }

  it('usernet --tap on a unix socket: Prometheus text and /stats; the socket is gone after exit', async () => {
    const dir = sandbox.tmpdir();
    const path = join(dir, 'metrics.sock');
    const tap = sandbox.tap('mu');
    const bg = sandbox.spawnUsernet(['--tap', tap, '--no-warm-up', '--metrics', `unix:${path}`]);
    const text = await scrape(bg, { socketPath: path });
    expect(text).toMatch(/^usernet_uptime_seconds \d+(\.\d+)?$/m);
    expect(text).toMatch(/^usernet_bridge_mac_table_capacity 4096$/m);
    expect(text).toMatch(/^usernet_nat_tcp_active 0$/m);
    expect(text).not.toMatch(/usernet_guests/);
    const stats = JSON.parse((await httpGet({ socketPath: path }, '/stats?macTable=1')).body);
    expect(stats.bridge.ports.map((p: { name: string }) => p.name)).toContain(tap);
    expect(stats.bridge.macTable.entries.length).toBeGreaterThan(0);
    expect((await httpGet({ socketPath: path }, '/')).status).toBe(404);
    await bg.stop('SIGTERM', 10_000);
    expect(existsSync(path)).toBe(false);
  });

  it('usernet run on loopback TCP, while the command runs', async () => {
    const port = await freePort();
    const bg = sandbox.spawnUsernet(['run', '--log-level', 'info', '--metrics', `tcp:127.0.0.1:${port}`, '--', 'sleep', '600']);
    const text = await scrape(bg, { host: '127.0.0.1', port });
    expect(text).toMatch(/^usernet_gateway_/m);
    expect(text).toMatch(/^usernet_bridge_forwarded \d+$/m);
    await bg.stop('SIGTERM', 10_000);
  });

  it('usernet daemon: --metrics with usernet_guests; usernet stats --mac-table asks for the MAC table', async () => {
    const dir = sandbox.tmpdir();
    const api = join(dir, 'api.sock');
    const path = join(dir, 'metrics.sock');
    const bg = sandbox.spawnUsernet(['daemon', '--api-socket', api, '--no-warm-up', '--log-format', 'json', '--metrics', `unix:${path}`]);
    const text = await scrape(bg, { socketPath: path });
    expect(text).toMatch(/^usernet_guests 0$/m);
    const plain = await usernetAsync(['stats', '--api-socket', api], 30_000);
    expect(plain.status).toBe(0);
    expect(JSON.parse(plain.stdout).bridge.macTable.entries).toBeUndefined();
    const withTable = await usernetAsync(['stats', '--api-socket', api, '--mac-table'], 30_000);
    expect(JSON.parse(withTable.stdout).bridge.macTable.entries).toContainEqual(expect.objectContaining({ port: 'gateway', isStatic: true }));
    await bg.stop('SIGTERM', 10_000);
    expect(jsonLines(bg.stderr).some((l) => l.msg === 'SIGTERM: detaching 0 guest(s) and stopping')).toBe(true);
    expect(existsSync(path)).toBe(false);
  });

  it('refuses a non-loopback address unless --metrics-allow-remote', () => {
    const r = usernet(['--tap', 'i19o-none', '--metrics', 'tcp:0.0.0.0:9464']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/not a loopback address.*--metrics-allow-remote/);
  });
});

describe('--pcap (pcapng)', () => {
  const tshark = existsSync('/usr/bin/tshark');

  /** tshark's interface name and source MAC for each frame. */
  function interfacesOf(file: string): { iface: string; src: string; info: string }[] {
    const out = must('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.interface_name', '-e', 'eth.src', '-e', '_ws.col.Info']);
    return out
      .trim()
      .split('\n')
      .map((l) => l.split('\t'))
      .map(([iface, src, info]) => ({ iface, src, info }));
  }

  it('usernet run: tcpdump reads it; the namespace tap and the gateway are two interfaces', async () => {
    const file = join(sandbox.tmpdir(), 'cap.pcapng');
    const r = await usernetAsync(['run', '--pcap', file, '--', 'ping', '-c', '2', '-i', '0.2', '10.0.2.2']);
    expect(r.status).toBe(0);
    expect(readFileSync(file).readUInt32LE(0)).toBe(0x0a0d0d0a);
    const text = must('tcpdump', ['-n', '-e', '-r', file]);
    expect(text).toMatch(/ARP \(0x0806\).*Request who-has 10\.0\.2\.2 tell 10\.0\.2\.100/);
    expect(text).toMatch(/10\.0\.2\.2 > 10\.0\.2\.100: ICMP echo reply/);
    if (!tshark) return;
    const frames = interfacesOf(file);
    expect(new Set(frames.map((f) => f.iface))).toEqual(new Set(['tap0', 'gateway']));
    expect(frames.filter((f) => /Echo \(ping\) request/.test(f.info)).every((f) => f.iface === 'tap0')).toBe(true);
    expect(frames.filter((f) => /Echo \(ping\) reply/.test(f.info)).every((f) => f.iface === 'gateway' && f.src === '52:55:0a:00:02:02')).toBe(true);
  });

  it.runIf(tshark)('usernet --tap with two taps: each frame on the tap it came in on', async () => {
    const file = join(sandbox.tmpdir(), 'two.pcapng');
    const tapA = sandbox.tap('pa');
    const tapB = sandbox.tap('pb');
    const bg = sandbox.spawnUsernet(['--tap', tapA, '--tap', tapB, '--no-warm-up', '--pcap', file]);
    await bg.waitFor(/gateway 10\.0\.2\.2/, 30_000);
    const a = sandbox.guestOnTap(tapA, '10.0.2.101', 'pa');
    sandbox.guestOnTap(tapB, '10.0.2.102', 'pb');
    expect(must('ip', ['netns', 'exec', a, 'ping', '-c', '2', '-i', '0.2', '-W', '2', '10.0.2.102'])).toMatch(/2 received/);
    await bg.stop('SIGTERM', 10_000);
    const frames = interfacesOf(file);
    const requests = frames.filter((f) => /Echo \(ping\) request/.test(f.info));
    const replies = frames.filter((f) => /Echo \(ping\) reply/.test(f.info));
    expect(requests.length).toBeGreaterThanOrEqual(2);
    expect(replies.length).toBeGreaterThanOrEqual(2);
    expect(requests.every((f) => f.iface === tapA)).toBe(true);
    expect(replies.every((f) => f.iface === tapB)).toBe(true);
  });

  it.runIf(tshark)('the slirp4netns front end: USERNET_PCAP, pcapng by default', async () => {
    const file = join(sandbox.tmpdir(), 'slirp.pcapng');
    const ns = sandbox.netns('sl');
    const saved = process.env.USERNET_PCAP;
    process.env.USERNET_PCAP = file;
    let bg: Background;
    try {
      bg = sandbox.spawnUsernet(['slirp4netns', '-c', '-r', '1', '--netns-type=path', `/run/netns/${ns}`, 'tap0']);
    } finally {
      if (saved === undefined) delete process.env.USERNET_PCAP;
      else process.env.USERNET_PCAP = saved;
    }
    await bg.waitFor(/^1/, 30_000);
    expect(must('ip', ['netns', 'exec', ns, 'ping', '-c', '1', '-W', '2', '10.0.2.2'])).toMatch(/1 received/);
    await bg.stop('SIGTERM', 10_000);
    const ifaces = new Set(interfacesOf(file).map((f) => f.iface));
    expect(ifaces).toEqual(new Set(['tap0', 'gateway']));
  });
});
