import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { parseMetricsListen, type MetricsServer } from '../../src/metrics-endpoint.js';
import { startMetricsServer } from '../../src/metrics-server.js';
import { prometheusText } from '../../src/daemon/metrics.js';
import { observabilityOptions } from '../../src/observability-options.js';

const quiet = createLogger('error', () => undefined);

class FakeSource {
  asked: ({ macTable?: boolean } | undefined)[] = [];
  stats(opts?: { macTable?: boolean }): object {
    this.asked.push(opts);
    return { uptimeSeconds: 1.5, nat: { tcp: { active: 2 } }, bridge: { drops: { 'bad-frame': 3 }, macTable: { size: 1, ...(opts?.macTable ? { entries: [{ mac: 'x' }] } : {}) } } };
  }
}

function get(target: { socketPath: string } | { host: string; port: number }, path: string, method = 'GET'): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ ...target, path, method }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('--metrics parsing', () => {
  it('unix and loopback tcp', () => {
    expect(parseMetricsListen('unix:/run/x.sock', false)).toEqual({ kind: 'unix', path: '/run/x.sock' });
    expect(parseMetricsListen('tcp:127.0.0.1:9464', false)).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 9464 });
    expect(parseMetricsListen('tcp:127.1.2.3:0', false)).toEqual({ kind: 'tcp', host: '127.1.2.3', port: 0 });
    expect(parseMetricsListen('tcp:[::1]:9464', false)).toEqual({ kind: 'tcp', host: '::1', port: 9464 });
    expect(parseMetricsListen('tcp:localhost:9464', false)).toEqual({ kind: 'tcp', host: 'localhost', port: 9464 });
  });

  it('refuses other addresses unless allowed', () => {
    expect(() => parseMetricsListen('tcp:0.0.0.0:9464', false)).toThrow(/--metrics-allow-remote/);
    expect(() => parseMetricsListen('tcp:[::]:9464', false)).toThrow(ConfigError);
    expect(() => parseMetricsListen('tcp:192.0.2.1:9464', false)).toThrow(/loopback/);
    expect(parseMetricsListen('tcp:0.0.0.0:9464', true)).toEqual({ kind: 'tcp', host: '0.0.0.0', port: 9464 });
  });

  it('refuses what is not an address', () => {
    for (const bad of ['9464', 'http://127.0.0.1:9464', 'unix:', 'tcp:127.0.0.1', 'tcp:127.0.0.1:70000', 'tcp:::1:9464', 'tcp:example.com:80']) {
      expect(() => parseMetricsListen(bad, true), bad).toThrow(ConfigError);
    }
  });

  it('--metrics-allow-remote alone is a mistake', () => {
    expect(() => observabilityOptions({ 'metrics-allow-remote': true })).toThrow(/needs --metrics/);
    expect(observabilityOptions({ metrics: 'tcp:127.0.0.1:1' }).metrics).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 1 });
  });
});

describe('prometheusText', () => {
  it('without a guest count (--tap, run): no usernet_guests line', () => {
    const text = prometheusText(new FakeSource().stats());
    expect(text).not.toMatch(/usernet_guests/);
    expect(text).toMatch(/^usernet_uptime_seconds 1\.5$/m);
    expect(text).toMatch(/^usernet_nat_tcp_active 2$/m);
    expect(text).toMatch(/^usernet_bridge_drops\{key="bad-frame"\} 3$/m);
    expect(prometheusText({}, 4)).toMatch(/^usernet_guests 4$/m);
  });
});

describe('metrics server', () => {
  let dir = '';
  let server: MetricsServer | null = null;
  afterEach(async () => {
    await server?.close();
    server = null;
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
    dir = '';
  });

  it('unix socket: /metrics, /stats (?macTable=1), 404, 405; the socket is removed at close', async () => {
    dir = mkdtempSync(join(tmpdir(), 'i19o-metrics-'));
    const path = join(dir, 'm.sock');
    const source = new FakeSource();
    server = await startMetricsServer({ kind: 'unix', path }, source, quiet);
    expect(server.address).toBe(`unix:${path}`);
    const m = await get({ socketPath: path }, '/metrics');
    expect(m.status).toBe(200);
    expect(m.type).toBe('text/plain; version=0.0.4');
    expect(m.body).toBe(prometheusText(source.stats()));
    const s = await get({ socketPath: path }, '/stats');
    expect(JSON.parse(s.body).bridge.macTable.entries).toBeUndefined();
    const t = await get({ socketPath: path }, '/stats?macTable=1');
    expect(JSON.parse(t.body).bridge.macTable.entries).toEqual([{ mac: 'x' }]);
    expect((await get({ socketPath: path }, '/nope')).status).toBe(404);
    expect((await get({ socketPath: path }, '/metrics', 'POST')).status).toBe(405);
    await server.close();
    server = null;
    expect(existsSync(path)).toBe(false);
  });

  it('a stale socket is replaced; a regular file is not', async () => {
    dir = mkdtempSync(join(tmpdir(), 'i19o-metrics-'));
    const path = join(dir, 'm.sock');
    const first = await startMetricsServer({ kind: 'unix', path }, new FakeSource(), quiet);
    // A crash leaves the socket file: simulated by closing the server without removing it.
    server = await startMetricsServer({ kind: 'unix', path }, new FakeSource(), quiet);
    expect((await get({ socketPath: path }, '/metrics')).status).toBe(200);
    // The first one's close leaves the second one's socket alone.
    await first.close();
    expect((await get({ socketPath: path }, '/metrics')).status).toBe(200);
    await server.close();
    expect(existsSync(path)).toBe(false);
    server = null;
    const file = join(dir, 'plain');
    writeFileSync(file, 'keep me');
    await expect(startMetricsServer({ kind: 'unix', path: file }, new FakeSource(), quiet)).rejects.toThrow(/not a socket/);
    expect(existsSync(file)).toBe(true);
  });

  it('tcp on loopback with port 0: the address names the port the kernel gave', async () => {
    server = await startMetricsServer({ kind: 'tcp', host: '127.0.0.1', port: 0 }, new FakeSource(), quiet, () => 7);
    const m = /^tcp:127\.0\.0\.1:(\d+)$/.exec(server.address);
    expect(m).not.toBeNull();
    const r = await get({ host: '127.0.0.1', port: Number(m![1]) }, '/metrics');
    expect(r.status).toBe(200);
    expect(r.body).toMatch(/^usernet_guests 7$/m);
  });
});
