/**
 * Observability end to end: json logs line by line, --log-file, stats lines,
 * the --metrics endpoint over a unix socket and over loopback TCP, on the
 * real `usernet --tap` and `usernet run`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort, Sandbox, sleep, usernet, usernetAsync, type Background } from './harness.js';

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

  it('refuses a non-loopback address unless --metrics-allow-remote', () => {
    const r = usernet(['--tap', 'i19o-none', '--metrics', 'tcp:0.0.0.0:9464']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/not a loopback address.*--metrics-allow-remote/);
  });
});
