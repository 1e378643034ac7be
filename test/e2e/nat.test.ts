/**
 * The IPv4 NAT end to end: real Linux clients (curl, iperf3, python, dig,
 * udhcpc) in a namespace behind `usernet run`, servers this test starts on
 * host loopback. Nothing goes anywhere but loopback and test namespaces.
 */
import { writeFileSync } from 'node:fs';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer } from 'node:net';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startBlobServer, type BlobServer } from './blob-server.js';
import { freePort, must, Sandbox, sleep, usernetAsync } from './harness.js';

const sandbox = new Sandbox();
const files = new Sandbox();
afterEach(() => sandbox.cleanup());
afterAll(() => files.cleanup());

const BLOB_BYTES = 200 * 1024 * 1024;
let dir = '';
let blob = '';
let blobSha = '';
let server: BlobServer | null = null;
let httpPort = 0;

beforeAll(async () => {
  dir = files.tmpdir();
  server = await startBlobServer(dir, BLOB_BYTES, '127.0.0.1');
  blob = server.path;
  blobSha = server.sha256;
  httpPort = server.port;
}, 120_000);

afterAll(() => server?.close());

function listenTcp(handler: Parameters<typeof createTcpServer>[1]): Promise<{ server: TcpServer; port: number }> {
  const server = createTcpServer({ allowHalfOpen: true }, handler);
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r({ server, port: (server.address() as AddressInfo).port })));
}

describe('TCP through the NAT', () => {
  for (const mtu of [1500, 65520]) {
    for (const offload of [true, false]) {
      const opts = ['--mtu', String(mtu), ...(offload ? [] : ['--no-offload'])];
      it(`downloads and uploads 200 MB with matching sha256 (MTU ${mtu}, ${offload ? 'vnet offloads' : 'plain tap'})`, async () => {
        const url = `http://10.0.2.2:${httpPort}`;
        const r = await usernetAsync(
          ['run', ...opts, '--', 'sh', '-c', `curl -sS --fail ${url}/blob | sha256sum; curl -sS --fail -T ${blob} ${url}/upload`],
          180_000,
        );
        expect(r.stderr).toBe('');
        expect(r.status).toBe(0);
        const [down, up] = r.stdout.trim().split('\n');
        expect(down.split(' ')[0]).toBe(blobSha);
        expect(up).toBe(`${blobSha} ${BLOB_BYTES}`);
      }, 200_000);
    }
  }

  it('runs iperf3 both ways without error', async () => {
    const port = await freePort();
    const server = sandbox.spawn('iperf3', ['-s', '-B', '127.0.0.1', '-p', String(port), '--forceflush']);
    await server.waitFor(/Server listening/);
    const c = `iperf3 -c 10.0.2.2 -p ${port} -t 3 -J`;
    const r = await usernetAsync(['run', '--', 'sh', '-c', `${c} > ${dir}/up.json && ${c} -R > ${dir}/down.json`], 60_000);
    expect(r.status).toBe(0);
    for (const f of ['up', 'down']) {
      const j = JSON.parse(must('cat', [`${dir}/${f}.json`]));
      expect(j.error).toBeUndefined();
      expect(j.end.sum_received.bytes).toBeGreaterThan(10_000_000);
    }
  });

  it('reports a refused connection as refused, not as a timeout', async () => {
    const { server, port } = await listenTcp(() => undefined);
    await new Promise<void>((r) => server.close(() => r())); // now nothing listens on port
    const py = [
      'import socket',
      'try:',
      `    socket.create_connection(("10.0.2.2", ${port}), timeout=20)`,
      '    print("connected")',
      'except ConnectionRefusedError:',
      '    print("refused")',
      'except socket.timeout:',
      '    print("timeout")',
    ].join('\n');
    const r = await usernetAsync(['run', '--', 'python3', '-c', py]);
    expect(r.stdout.trim()).toBe('refused');
  });

  it('half-closes: the client shuts down writing and still receives the reply', async () => {
    const { server, port } = await listenTcp((s) => {
      let n = 0;
      s.on('data', (d: Buffer) => (n += d.length));
      s.on('end', () => s.end(`got ${n} bytes\n`));
    });
    const py = [
      'import socket',
      `s = socket.create_connection(("10.0.2.2", ${port}))`,
      's.sendall(b"x" * 100000)',
      's.shutdown(socket.SHUT_WR)',
      'data = b""',
      'while True:',
      '    d = s.recv(65536)',
      '    if not d: break',
      '    data += d',
      'print(data.decode().strip())',
    ].join('\n');
    const r = await usernetAsync(['run', '--', 'python3', '-c', py]);
    server.close();
    expect(r.stdout.trim()).toBe('got 100000 bytes');
    expect(r.status).toBe(0);
  });

  it("delivers a server's EOF that arrived while the guest was not reading (10 rounds)", async () => {
    // The server writes 24 MB and closes at once; the guest sleeps before reading, so
    // usernet's buffers fill and the server's FIN reaches usernet while it cannot read.
    const BYTES = 24 * 1024 * 1024;
    const { server, port } = await listenTcp((s) => {
      s.on('error', () => undefined);
      s.end(Buffer.alloc(BYTES, 7));
    });
    const py = [
      'import socket, time',
      'for i in range(10):',
      `    s = socket.create_connection(("10.0.2.2", ${port}), timeout=20)`,
      '    time.sleep(0.3)',
      '    n = 0',
      '    while True:',
      '        d = s.recv(1 << 20)',
      '        if not d: break',
      '        n += len(d)',
      '    s.close()',
      '    print(n)',
    ].join('\n');
    const r = await usernetAsync(['run', '--', 'python3', '-c', py], 90_000);
    server.close();
    expect(r.stdout.trim().split('\n')).toEqual(Array(10).fill(String(BYTES)));
    expect(r.status).toBe(0);
  }, 100_000);

  it('handles 2000 sequential and 500 concurrent connections and leaves no flows or fds behind', async () => {
    const { server, port } = await listenTcp((s) => {
      s.on('data', (d: Buffer) => s.write(d));
      s.on('end', () => s.end());
    });
    const py = [
      'import socket, threading',
      'def one(i):',
      `    s = socket.create_connection(("10.0.2.2", ${port}), timeout=30)`,
      '    msg = b"%06d" % i',
      '    s.sendall(msg)',
      '    got = b""',
      '    while len(got) < len(msg):',
      '        d = s.recv(64)',
      '        if not d: break',
      '        got += d',
      '    s.close()',
      '    return got == msg',
      'ok = sum(one(i) for i in range(2000))',
      'res = []',
      'def worker(i): res.append(one(i))',
      'ts = [threading.Thread(target=worker, args=(i,)) for i in range(500)]',
      '[t.start() for t in ts]',
      '[t.join() for t in ts]',
      'print("sequential", ok, "concurrent", sum(res), flush=True)',
    ].join('\n');
    // The command stays alive afterwards (sleep) so usernet can be inspected; cleanup stops it.
    const u = sandbox.spawnUsernet(['run', '--', 'sh', '-c', `python3 -c '${py}'; sleep 60`]);
    await u.waitFor(/sequential \d+ concurrent \d+/, 120_000);
    expect(u.stdout).toMatch(/sequential 2000 concurrent 500/);
    // Connections close; TIME-WAIT on our side lasts 2 s.
    let stats: any = null;
    const end = Date.now() + 15_000;
    for (;;) {
      const before = u.stderr.length;
      process.kill(u.pid, 'SIGUSR1');
      await sleep(300);
      const m = /usernet: stats (\{.*\})\n/.exec(u.stderr.slice(before));
      if (m) stats = JSON.parse(m[1]);
      const settled = stats !== null && stats.nat.tcp.active === 0 && stats.hostSockets.tcp === 0;
      if (settled || Date.now() > end) break;
    }
    const settled = stats !== null && stats.nat.tcp.active === 0 && stats.hostSockets.tcp === 0;
    expect(settled, JSON.stringify(stats?.nat?.tcp) + JSON.stringify(stats?.hostSockets)).toBe(true);
    expect(stats.nat.tcp.created).toBeGreaterThanOrEqual(2500);
    // usernet's own fds: stdio, the tap, namespaces, epoll, eventfds... but nothing per connection.
    const fds = Number(must('sh', ['-c', `ls /proc/${u.pid}/fd | wc -l`]).trim());
    expect(fds).toBeLessThan(40);
    server.close();
  }, 180_000);

  it('--disable-host-loopback really blocks the gateway address', async () => {
    const { server, port } = await listenTcp((s) => s.end('hello'));
    const r = await usernetAsync([
      'run', '--disable-host-loopback', '--', 'sh', '-c', `curl -sS --connect-timeout 10 http://10.0.2.2:${port}/; echo "exit=$?"`,
    ]);
    server.close();
    expect(r.stdout).not.toMatch(/hello/);
    expect(r.stdout).toMatch(/exit=7/);
  });
});

describe('UDP through the NAT', () => {
  let echo: UdpSocket;
  let port = 0;
  beforeAll(async () => {
    echo = createSocket('udp4');
    echo.on('message', (msg, rinfo) => echo.send(msg, rinfo.port, rinfo.address));
    await new Promise<void>((r) => echo.bind(0, '127.0.0.1', r));
    port = echo.address().port;
  });
  afterAll(() => echo?.close());

  for (const mtu of [1500, 65520]) {
    it(`echoes 10-byte and 60,000-byte datagrams (MTU ${mtu})`, async () => {
      const py = [
        'import socket, os',
        's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
        's.settimeout(5)',
        'for n in (10, 60000):',
        '    msg = os.urandom(n)',
        `    s.sendto(msg, ("10.0.2.2", ${port}))`,
        '    got, addr = s.recvfrom(65535)',
        '    print(n, got == msg, addr[0])',
      ].join('\n');
      const r = await usernetAsync(['run', '--mtu', String(mtu), '--', 'python3', '-c', py]);
      expect(r.stdout).toBe('10 True 10.0.2.2\n60000 True 10.0.2.2\n');
      expect(r.status).toBe(0);
    });
  }

  it('reports an unreachable UDP port with ICMP, so the client fails at once', async () => {
    const closed = createSocket('udp4');
    await new Promise<void>((r) => closed.bind(0, '127.0.0.1', r));
    const dead = closed.address().port;
    closed.close();
    const py = [
      'import socket',
      's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
      `s.connect(("10.0.2.2", ${dead}))`,
      's.settimeout(10)',
      's.send(b"hello")',
      'try:',
      '    s.recv(100)',
      '    print("answered")',
      'except ConnectionRefusedError:',
      '    print("refused")',
      'except socket.timeout:',
      '    print("timeout")',
    ].join('\n');
    const r = await usernetAsync(['run', '--', 'python3', '-c', py]);
    expect(r.stdout.trim()).toBe('refused');
  });
});

describe('DNS forwarder', () => {
  it('answers dig @10.0.2.3 over UDP and TCP from a resolver on loopback', async () => {
    const port = await freePort();
    const d = sandbox.tmpdir();
    const dns = sandbox.spawn('dnsmasq', [
      '-k', '--port', String(port), '--listen-address=127.0.0.1', '--bind-interfaces', '--no-resolv', '--no-hosts',
      `--address=/test.usernet/192.0.2.7`, `--pid-file=${d}/dnsmasq.pid`, '--user=root', '--log-facility=-',
    ]);
    await sleep(300);
    expect(dns.running).toBe(true);
    const r = await usernetAsync([
      'run', '--dns', `127.0.0.1:${port}`, '--', 'sh', '-c',
      'dig +short +time=3 +tries=1 @10.0.2.3 test.usernet; dig +short +tcp +time=3 +tries=1 @10.0.2.3 www.test.usernet',
    ]);
    expect(r.stdout).toBe('192.0.2.7\n192.0.2.7\n');
  });

  it('fails over to the next upstream when the first does not answer', async () => {
    const port = await freePort();
    const silent = createSocket('udp4'); // takes queries, never answers
    await new Promise<void>((r) => silent.bind(0, '127.0.0.1', r));
    const d = sandbox.tmpdir();
    sandbox.spawn('dnsmasq', [
      '-k', '--port', String(port), '--listen-address=127.0.0.1', '--bind-interfaces', '--no-resolv', '--no-hosts',
      '--address=/test.usernet/192.0.2.8', `--pid-file=${d}/dnsmasq.pid`, '--user=root', '--log-facility=-',
    ]);
    await sleep(300);
    const r = await usernetAsync([
      'run', '--dns', `127.0.0.1:${silent.address().port}`, '--dns', `127.0.0.1:${port}`, '--', 'dig', '+short', '+time=8', '+tries=1', '@10.0.2.3', 'test.usernet',
    ]);
    silent.close();
    expect(r.stdout).toBe('192.0.2.8\n');
  });
});

describe('DHCP server', () => {
  it('gives busybox udhcpc a lease with router, DNS and MTU', async () => {
    const d = sandbox.tmpdir();
    const script = join(d, 'udhcpc.sh');
    writeFileSync(script, '#!/bin/sh\n[ "$1" = bound ] && echo "ip=$ip mask=$subnet router=$router dns=$dns mtu=$mtu lease=$lease"\nexit 0\n', { mode: 0o755 });
    const r = await usernetAsync([
      'run', '--mtu', '9000', '--', 'sh', '-c', `ip addr flush dev tap0 && busybox udhcpc -i tap0 -f -q -n -t 3 -O mtu -s ${script}`,
    ]);
    expect(r.stdout).toMatch(/ip=10\.0\.2\.(1[5-9]|2\d|30) mask=255\.255\.255\.0 router=10\.0\.2\.2 dns=10\.0\.2\.3 mtu=9000 lease=86400/);
  });
});

describe('ICMP echo NAT', () => {
  it('pings a host beyond the gateway through a ping socket', async () => {
    // usernet runs inside a test namespace ("the host") with a veth to another test namespace.
    const host = sandbox.netns('h');
    const target = sandbox.netns('t');
    const a = sandbox.ifname('va');
    const b = sandbox.ifname('vb');
    must('ip', ['-n', host, 'link', 'add', a, 'type', 'veth', 'peer', 'name', b, 'netns', target]);
    must('ip', ['-n', host, 'addr', 'add', '198.18.7.1/24', 'dev', a]);
    must('ip', ['-n', host, 'link', 'set', a, 'up']);
    must('ip', ['-n', target, 'addr', 'add', '198.18.7.2/24', 'dev', b]);
    must('ip', ['-n', target, 'link', 'set', b, 'up']);
    // The namespace starts with an empty ping_group_range: usernet (root) widens it for its own group.
    must('ip', ['netns', 'exec', host, 'sysctl', '-qw', 'net.ipv4.ping_group_range=1 0']);
    const r = await usernetAsync(['run', '--', 'ping', '-c', '3', '-i', '0.2', '-W', '2', '198.18.7.2'], 60_000, ['ip', 'netns', 'exec', host]);
    expect(r.stdout).toMatch(/3 packets transmitted, 3 received/);
    expect(must('ip', ['netns', 'exec', host, 'cat', '/proc/sys/net/ipv4/ping_group_range']).split(/\s+/).slice(0, 2)).toEqual(['0', '0']);
    // TTL exceeded comes back from the first router (the gateway's host side would be the next hop).
    const r2 = await usernetAsync(['run', '--', 'ping', '-c', '1', '-W', '2', '198.18.9.9'], 60_000, ['ip', 'netns', 'exec', host]);
    expect(r2.stdout).toMatch(/Unreachable|1 packets transmitted, 0 received/);
  });
});
