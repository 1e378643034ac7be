/**
 * `usernet daemon` with real namespaces: attach by path and by PID, traffic
 * between guests and to host loopback, names, forwards added at run time,
 * detach and re-attach, the API's refusals, and what a kill leaves behind.
 */
import { request } from 'node:http';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBlobServer, type BlobServer } from './blob-server.js';
import { Background, freePort, must, run, Sandbox, sleep, usernetAsync, type Result } from './harness.js';
import { runAsync } from './slirp-harness.js';

const sandbox = new Sandbox();
let dir: string;
let sock: string;
let daemon: Background;
let blob: BlobServer;
let nsA: string;
let nsB: string;
let holderB: Background;
let resolvConf: string;

/** A client command against this file's daemon. */
function client(args: string[]): Promise<Result> {
  return usernetAsync([args[0], '--api-socket', sock, ...args.slice(1)], 30_000);
}

/** Runs a shell command in a namespace, with a resolv.conf naming usernet's DNS (private mount namespace). */
function inNs(ns: string, script: string, timeoutMs = 30_000): Result {
  return run('ip', ['netns', 'exec', ns, 'unshare', '--mount', '--', 'sh', '-c', `mount --bind ${resolvConf} /etc/resolv.conf && ${script}`], timeoutMs);
}

/** A raw HTTP request to the API socket (for the refusals the CLI never sends). */
function raw(method: string, path: string, body?: string | Buffer, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: sock, method, path, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

beforeAll(async () => {
  dir = sandbox.tmpdir();
  sock = join(dir, 'api.sock');
  resolvConf = join(dir, 'resolv.conf');
  writeFileSync(resolvConf, 'nameserver 10.0.2.3\n');
  blob = await startBlobServer(dir, 2 << 20, '127.0.0.1');
  // No upstream resolver is needed: the names asked here are the guests'.
  daemon = sandbox.spawnUsernet(['daemon', '--api-socket', sock, '--pid-file', join(dir, 'pid'), '--no-warm-up', '--dns', '127.0.0.1:9', '--log-level', 'info']);
  await daemon.waitFor(/daemon: API on/, 30_000);
  nsA = sandbox.netns('dma');
  nsB = sandbox.netns('dmb');
  holderB = sandbox.spawn('ip', ['netns', 'exec', nsB, 'sleep', '600']);
});

afterAll(async () => {
  await blob?.close();
  await sandbox.cleanup();
});

describe('usernet daemon', () => {
  it('writes its pid file and makes the API socket 0600', () => {
    expect(must('cat', [join(dir, 'pid')]).trim()).toBe(String(daemon.pid));
    expect(must('stat', ['-c', '%a', sock]).trim()).toBe('600');
  });

  it('attaches a namespace by path and another by PID; they reach each other, by address and by name, and host loopback', async () => {
    const a = await client(['attach', '--netns', `/run/netns/${nsA}`, '--id', 'web', '--json']);
    expect(a.stderr).toBe('');
    const web = JSON.parse(a.stdout);
    expect(web).toMatchObject({ id: 'web', name: 'web', ifname: 'eth0', ipv4: '10.0.2.100', gateway: '10.0.2.2', dns: '10.0.2.3', mac: '52:54:0a:00:02:64' });
    // The holder's pid is ip(8) execing sleep in place: the same process.
    const b = await client(['attach', '--pid', String(holderB.pid), '--id', 'db', '--ifname', 'net0', '--json']);
    const db = JSON.parse(b.stdout);
    expect(db).toMatchObject({ id: 'db', ifname: 'net0', ipv4: '10.0.2.101' });
    expect(must('ip', ['-n', nsA, '-o', '-4', 'addr', 'show', 'dev', 'eth0'])).toMatch(/inet 10\.0\.2\.100\/24/);
    expect(must('ip', ['-n', nsB, 'route'])).toMatch(/default via 10\.0\.2\.2 dev net0/);
    expect(inNs(nsA, 'ping -c 1 -W 5 10.0.2.101 >/dev/null && getent ahostsv4 db | head -1 && ping -4 -c 1 -W 5 db >/dev/null && echo ok').stdout).toMatch(/^10\.0\.2\.101\s+STREAM db\nok$/m);
    // Async: the blob server runs in this process.
    const got = await runAsync('ip', ['netns', 'exec', nsB, 'sh', '-c', `curl -sS --max-time 20 http://10.0.2.2:${blob.port}/blob | sha256sum`]);
    expect(got.stdout).toBe(`${blob.sha256}  -\n`);
    const ls = await client(['ls']);
    expect(ls.stdout.split('\n').filter((l) => l !== '').map((l) => l.split('\t')[0])).toEqual(['web', 'db']);
  });

  it('answers names over IPv6 too once SLAAC is done', async () => {
    let out = '';
    for (let i = 0; i < 100 && !/ok/.test(out); i++) {
      out = inNs(nsB, 'ping -6 -c 1 -W 2 web >/dev/null 2>&1 && echo ok').stdout;
      if (!/ok/.test(out)) await sleep(100);
    }
    expect(out).toBe('ok\n');
    expect(inNs(nsB, 'getent ahostsv6 web | head -1').stdout).toMatch(/^fd00::5054:aff:fe00:264\s/);
  });

  it('publishes a host port to a guest at run time and removes it', async () => {
    const port = await freePort();
    const server = sandbox.spawn('ip', ['netns', 'exec', nsA, 'python3', '-c',
      'import http.server as h; s = h.HTTPServer(("0.0.0.0", 8080), h.SimpleHTTPRequestHandler); print("listening", flush=True); s.serve_forever()']);
    await server.waitFor(/listening/, 20_000);
    const pub = await client(['publish', '--guest', 'web', `127.0.0.1:${port}:8080`]);
    expect(pub.stderr).toBe('');
    const id = pub.stdout.trim();
    expect(id).toMatch(/^\d+$/);
    expect(run('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '10', `http://127.0.0.1:${port}/`]).stdout).toBe('200');
    expect((await client(['unpublish', id])).status).toBe(0);
    expect(run('curl', ['-sS', '--max-time', '5', `http://127.0.0.1:${port}/`]).status).not.toBe(0);
    await server.stop();
  });

  it('detach removes the interface; the same id gets its address back', async () => {
    expect((await client(['detach', 'web'])).status).toBe(0);
    expect(run('ip', ['-n', nsA, 'link', 'show', 'eth0']).status).not.toBe(0);
    const again = JSON.parse((await client(['attach', '--netns', `/run/netns/${nsA}`, '--id', 'web', '--json'])).stdout);
    expect(again.ipv4).toBe('10.0.2.100');
    const other = JSON.parse((await client(['attach', '--netns', `/run/netns/${nsA}`, '--id', 'extra', '--ifname', 'eth1', '--json'])).stdout);
    expect(other.ipv4).toBe('10.0.2.102');
    expect((await client(['detach', 'extra'])).status).toBe(0);
  });

  it('refuses bad requests with errors and stays up', async () => {
    const dup = await client(['attach', '--netns', `/run/netns/${nsA}`, '--id', 'web']);
    expect(dup.status).toBe(1);
    expect(dup.stderr).toMatch(/already/);
    const noNs = await client(['attach', '--netns', '/run/netns/no-such-usernet-ns', '--id', 'ghost']);
    expect(noNs.status).toBe(1);
    expect(noNs.stderr).toMatch(/ENOENT|No such file/);
    const badJson = await raw('POST', '/v1/guests', '{"pid":', { 'content-type': 'application/json' });
    expect(badJson.status).toBe(400);
    expect(JSON.parse(badJson.body).error.code).toBe('ERR_BAD_JSON');
    const big = await raw('POST', '/v1/guests', Buffer.alloc(200_000, 0x20), { 'content-type': 'application/json' });
    expect(big.status).toBe(413);
    expect((await raw('GET', '/v1/nothing')).status).toBe(404);
    expect((await raw('PUT', '/v1/guests')).status).toBe(405);
    const badField = await raw('POST', '/v1/guests', JSON.stringify({ pid: -3 }), { 'content-type': 'application/json' });
    expect(badField.status).toBe(400);
    expect(JSON.parse(badField.body).error.message).toMatch(/pid/);
    expect((await client(['detach', 'nobody'])).stderr).toMatch(/no guest "nobody"/);
    expect(daemon.running).toBe(true);
    const health = JSON.parse((await raw('GET', '/v1/health')).body);
    expect(health).toMatchObject({ ok: true, guests: 2 });
  });

  it('serves stats and Prometheus metrics', async () => {
    const stats = JSON.parse((await client(['stats'])).stdout);
    expect(stats.guests.length).toBe(2);
    expect(stats.nat).toBeTypeOf('object');
    const metrics = await raw('GET', '/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.body).toMatch(/^usernet_guests 2$/m);
    for (const line of metrics.body.split('\n').filter((l) => l !== '' && !l.startsWith('#'))) {
      expect(line).toMatch(/^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*\})? -?[0-9.e+-]+$/);
    }
  });

  it('detaches a guest attached by PID when that process exits', async () => {
    await holderB.stop('SIGKILL');
    let ids = '';
    for (let i = 0; i < 100; i++) {
      ids = (await client(['ls'])).stdout;
      if (!/^db\t/m.test(ids)) break;
      await sleep(50);
    }
    expect(ids).not.toMatch(/^db\t/m);
    expect(daemon.stderr).toMatch(/guest db: process \d+ exited; detaching/);
  });

  it('SIGTERM detaches everything and removes the socket and pid file', async () => {
    const end = await daemon.stop('SIGTERM', 10_000);
    expect(end.code).toBe(0);
    expect(run('ip', ['-n', nsA, 'link', 'show', 'eth0']).status).not.toBe(0);
    expect(existsSync(sock)).toBe(false);
    expect(existsSync(join(dir, 'pid'))).toBe(false);
  });

  it('SIGKILL mid-transfer leaves no interface behind, and a new daemon takes over the stale socket', async () => {
    const d2 = sandbox.spawnUsernet(['daemon', '--api-socket', sock, '--no-warm-up', '--dns', '127.0.0.1:9']);
    await d2.waitFor(/daemon: API on/, 30_000);
    expect((await client(['attach', '--netns', `/run/netns/${nsA}`, '--id', 'web'])).status).toBe(0);
    const transfer = sandbox.spawn('ip', ['netns', 'exec', nsA, 'sh', '-c', `curl -sS --max-time 20 --limit-rate 200k http://10.0.2.2:${blob.port}/blob >/dev/null; echo done`]);
    await sleep(300);
    await d2.stop('SIGKILL');
    await transfer.exited;
    expect(run('ip', ['-n', nsA, 'link', 'show', 'eth0']).status).not.toBe(0);
    const d3 = sandbox.spawnUsernet(['daemon', '--api-socket', sock, '--no-warm-up', '--dns', '127.0.0.1:9']);
    await d3.waitFor(/daemon: API on/, 30_000);
    expect((await client(['ls'])).status).toBe(0);
    await d3.stop('SIGTERM');
  });

  it('a client without a daemon says how to start one', async () => {
    const r = await usernetAsync(['ls', '--api-socket', join(dir, 'none.sock')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/no usernet daemon at .*none\.sock: start one with `usernet daemon`/);
  });
});
