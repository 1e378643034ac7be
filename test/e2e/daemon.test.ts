/**
 * `usernet daemon` with real namespaces: attach by path and by PID, traffic
 * between guests and to host loopback, names, forwards added at run time,
 * detach and re-attach, the API's refusals, and what a kill leaves behind.
 */
import { createSocket } from 'node:dgram';
import { request } from 'node:http';
import { createConnection, type Socket } from 'node:net';
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

/** An ARP request from `mac` (10.0.2.77) for the gateway, padded to 60 bytes. */
function arpRequest(mac: string): Buffer {
  const f = Buffer.alloc(60);
  f.fill(0xff, 0, 6);
  Buffer.from(mac.replaceAll(':', ''), 'hex').copy(f, 6);
  f.writeUInt16BE(0x0806, 12);
  Buffer.from('0001080006040001', 'hex').copy(f, 14);
  Buffer.from(mac.replaceAll(':', ''), 'hex').copy(f, 22);
  Buffer.from([10, 0, 2, 77]).copy(f, 28);
  Buffer.from([10, 0, 2, 2]).copy(f, 38);
  return f;
}

/** True for the gateway's ARP reply to arpRequest(mac). */
function isArpReply(f: Buffer, mac: string): boolean {
  const hex = f.toString('hex');
  return f.length >= 42 && hex.slice(0, 12) === mac.replaceAll(':', '') && hex.slice(24, 44) === '08060001080006040002' &&
    hex.slice(44, 56) === '52550a000202' && hex.slice(56, 64) === '0a000202';
}

/** Frames of a -netdev stream connection (a 32-bit big-endian length before each) until `done` says stop. */
function streamClient(path: string): { sock: Socket; frames: Buffer[]; closed: Promise<void> } {
  const sock = createConnection(path);
  const frames: Buffer[] = [];
  let pending = Buffer.alloc(0);
  sock.on('data', (d: Buffer) => {
    pending = Buffer.concat([pending, d]);
    while (pending.length >= 4 && pending.length >= 4 + pending.readUInt32BE(0)) {
      const n = pending.readUInt32BE(0);
      frames.push(pending.subarray(4, 4 + n));
      pending = pending.subarray(4 + n);
    }
  });
  const closed = new Promise<void>((r) => sock.on('close', () => r()));
  sock.on('error', () => undefined);
  return { sock, frames, closed };
}

async function waitUntil(what: string, ok: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
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

  it('adds socket ports at run time (stream, dgram, VXLAN) that answer ARP for the gateway, lists and removes them', async () => {
    // A -netdev stream port.
    const streamPath = join(dir, 'vm-stream.sock');
    const added = await client(['port', 'add', 'qemu-stream', `unix:${streamPath}`]);
    expect(added.stderr).toBe('');
    const streamId = added.stdout.trim();
    expect(streamId).toMatch(/^\d+$/);
    const vm = streamClient(streamPath);
    await new Promise<void>((r) => vm.sock.once('connect', () => r()));
    const streamMac = '02:16:0b:00:00:01';
    const req = arpRequest(streamMac);
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(req.length);
    vm.sock.write(Buffer.concat([prefix, req]));
    await waitUntil('the ARP reply on the stream', () => vm.frames.some((f) => isArpReply(f, streamMac)));

    // A -netdev dgram port: the client binds its own path, as QEMU's local.path.
    const dgramPath = join(dir, 'vm-dgram.sock');
    const dgramAdd = JSON.parse((await client(['port', 'add', 'dgram', `unix:${dgramPath}`, '--json'])).stdout);
    expect(dgramAdd).toMatchObject({ kind: 'dgram', spec: `unix:${dgramPath}`, ports: [`dgram:${dgramPath}`] });
    const dgramMac = '02:16:0b:00:00:02';
    const py = [
      'import socket, sys',
      's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
      `s.bind(${JSON.stringify(join(dir, 'vm-dgram-client.sock'))})`,
      's.settimeout(5)',
      `s.sendto(bytes.fromhex("${arpRequest(dgramMac).toString('hex')}"), ${JSON.stringify(dgramPath)})`,
      'while True:',
      '    d = s.recv(65536)',
      '    if d[12:14] == b"\\x08\\x06" and d[20:22] == b"\\x00\\x02": print(d.hex()); break',
    ].join('\n');
    const dg = await runAsync('python3', ['-c', py], 15_000);
    expect(dg.stderr).toBe('');
    expect(isArpReply(Buffer.from(dg.stdout.trim(), 'hex'), dgramMac)).toBe(true);

    // A VXLAN endpoint whose remote is a UDP socket here; answers go to the remote's port.
    const remote = createSocket('udp4');
    await new Promise<void>((r) => remote.bind(0, '127.0.0.1', () => r()));
    const probe = createSocket('udp4');
    await new Promise<void>((r) => probe.bind(0, '127.0.0.1', () => r()));
    const localPort = probe.address().port;
    probe.close();
    const vxlanSpec = `127.0.0.1:${remote.address().port},vni=7,local=127.0.0.1:${localPort}`;
    const vxlanAdd = await client(['port', 'add', 'vxlan', vxlanSpec]);
    expect(vxlanAdd.stderr).toBe('');
    const vxlanMac = '02:16:0b:00:00:03';
    const got: Buffer[] = [];
    remote.on('message', (m: Buffer) => got.push(m));
    const header = Buffer.from([0x08, 0, 0, 0, 0, 0, 7, 0]);
    remote.send(Buffer.concat([header, arpRequest(vxlanMac)]), localPort, '127.0.0.1');
    await waitUntil('the ARP reply over VXLAN', () => got.some((m) => m.subarray(0, 8).equals(header) && isArpReply(m.subarray(8), vxlanMac)));
    remote.close();

    const ls = (await client(['port', 'ls'])).stdout.split('\n').filter((l) => l !== '').map((l) => l.split('\t'));
    expect(ls).toEqual([
      [streamId, 'qemu-stream', `unix:${streamPath}`, `qemu:${streamPath}#1`],
      [String(dgramAdd.id), 'dgram', `unix:${dgramPath}`, `dgram:${dgramPath}`],
      [vxlanAdd.stdout.trim(), 'vxlan', vxlanSpec, `vxlan:7@127.0.0.1:${localPort}`],
    ]);

    // Removing the stream port ends its VM's connection and removes the socket file.
    expect((await client(['port', 'rm', streamId])).status).toBe(0);
    await vm.closed;
    expect(existsSync(streamPath)).toBe(false);
    for (const id of [String(dgramAdd.id), vxlanAdd.stdout.trim()]) expect((await client(['port', 'rm', id])).status).toBe(0);
    expect(existsSync(dgramPath)).toBe(false);
    expect(JSON.parse((await raw('GET', '/v1/ports')).body)).toEqual({ ports: [] });
    expect(daemon.stderr).toMatch(/qemu-stream unix:.*: removed/);
  });

  it('refuses bad port requests in the API\'s error format', async () => {
    const post = (body: unknown) => raw('POST', '/v1/ports', JSON.stringify(body), { 'content-type': 'application/json' });
    const refused = async (body: unknown, status: number, code: string, message: RegExp) => {
      const r = await post(body);
      expect(r.status, r.body).toBe(status);
      expect(JSON.parse(r.body).error).toMatchObject({ code });
      expect(JSON.parse(r.body).error.message).toMatch(message);
    };
    await refused({ kind: 'tap' }, 400, 'ERR_CONFIG', /kind must be/);
    await refused({ kind: 'dgram' }, 400, 'ERR_CONFIG', /listen must be/);
    await refused({ kind: 'dgram', listen: 'unix:relative.sock' }, 400, 'ERR_CONFIG', /absolute/);
    await refused({ kind: 'dgram', listen: `unix:${join(dir, 'no-such-dir', 's.sock')}` }, 400, 'ERR_CONFIG', /not a directory/);
    await refused({ kind: 'qemu-stream', listen: 'udp:1.2.3.4:5' }, 400, 'ERR_CONFIG', /unix:PATH or tcp:HOST:PORT/);
    await refused({ kind: 'qemu-stream', listen: `unix:${join(dir, 'x.sock')}`, remote: '1.2.3.4' }, 400, 'ERR_CONFIG', /unknown field "remote"/);
    await refused({ kind: 'vxlan', remote: 'not-an-address' }, 400, 'ERR_CONFIG', /not ADDRESS:PORT/);
    await refused({ kind: 'vxlan', remote: '127.0.0.1', vni: 1 << 24 }, 400, 'ERR_CONFIG', /vni must be/);
    await refused({ kind: 'vxlan', remote: '127.0.0.1,vni=3' }, 400, 'ERR_CONFIG', /remote must be/);
    await refused({ kind: 'vxlan', remote: '[::1]', local: '127.0.0.1:4789' }, 400, 'ERR_CONFIG', /one family/);
    // The same path twice, and a TCP port that is taken.
    const path = join(dir, 'twice.sock');
    const first = await post({ kind: 'dgram', listen: `unix:${path}` });
    expect(first.status).toBe(201);
    await refused({ kind: 'qemu-stream', listen: `unix:${path}` }, 409, 'ERR_PORT_EXISTS', /already a socket port/);
    expect((await raw('DELETE', `/v1/ports/${JSON.parse(first.body).id}`)).status).toBe(200);
    const taken = sandbox.spawn('python3', ['-c', 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); print(s.getsockname()[1], flush=True); import time; time.sleep(60)']);
    await taken.waitFor(/^\d+$/m);
    await refused({ kind: 'qemu-stream', listen: `tcp:127.0.0.1:${taken.stdout.trim()}` }, 409, 'EADDRINUSE', /address already in use/);
    await taken.stop();
    const missing = await raw('DELETE', '/v1/ports/999');
    expect(missing.status).toBe(404);
    expect(JSON.parse(missing.body).error.code).toBe('ERR_NO_PORT');
    expect((await raw('PUT', '/v1/ports')).status).toBe(405);
    const cli = await client(['port', 'add', 'bogus', 'x']);
    expect(cli.status).toBe(2);
    expect(cli.stderr).toMatch(/qemu-stream, dgram or vxlan/);
    expect((await client(['port', 'rm', '999'])).stderr).toMatch(/no port 999/);
    expect(JSON.parse((await raw('GET', '/v1/ports')).body)).toEqual({ ports: [] });
    expect(daemon.running).toBe(true);
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

  it('an API socket where no directory can be made is an error, not a hang', async () => {
    const r = await usernetAsync(['daemon', '--api-socket', '/proc/usernet-no-such-dir/api.sock', '--no-warm-up'], 30_000);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/cannot create the directory \/proc\/usernet-no-such-dir/);
  });

  it('a client without a daemon says how to start one', async () => {
    const r = await usernetAsync(['ls', '--api-socket', join(dir, 'none.sock')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/no usernet daemon at .*none\.sock: start one with `usernet daemon`/);
  });
});
