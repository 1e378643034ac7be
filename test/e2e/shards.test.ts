/**
 * Engine shards (`--workers 2`, src/shards/) end to end: a multi-queue tap
 * in a namespace behind `usernet run`, real Linux clients inside, servers
 * this test starts on host loopback. Each check runs many flows at once so
 * that both shards own some and frames the kernel puts on the other queue
 * must be handed over; every byte is checked.
 */
import { createHash } from 'node:crypto';
import { connect, createServer as createTcpServer, type AddressInfo, type Server as TcpServer } from 'node:net';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startBlobServer, type BlobServer } from './blob-server.js';
import { freePort, must, Sandbox, sleep, usernetArgs, usernetAsync } from './harness.js';

const sandbox = new Sandbox();
const files = new Sandbox();
afterEach(() => sandbox.cleanup());
afterAll(() => files.cleanup());

const BLOB_BYTES = 16 * 1024 * 1024;
let blob: BlobServer | null = null;
let echoTcp: TcpServer | null = null;
let echoUdp: UdpSocket | null = null;
let tcpPort = 0;
let udpPort = 0;

beforeAll(async () => {
  blob = await startBlobServer(files.tmpdir(), BLOB_BYTES, '127.0.0.1');
  echoTcp = createTcpServer({ allowHalfOpen: true }, (s) => s.pipe(s));
  await new Promise<void>((r) => echoTcp!.listen(0, '127.0.0.1', () => r()));
  tcpPort = (echoTcp.address() as AddressInfo).port;
  echoUdp = createSocket('udp4');
  echoUdp.on('message', (m, from) => echoUdp!.send(m, from.port, from.address));
  await new Promise<void>((r) => echoUdp!.bind(0, '127.0.0.1', () => r()));
  udpPort = echoUdp.address().port;
}, 60_000);

afterAll(async () => {
  await blob?.close();
  echoTcp?.close();
  echoUdp?.close();
});

/** 48 TCP connections at once, each sending 256 KiB of its own bytes and reading them back. */
const TCP_ECHO = (port: number) => `
import hashlib, os, socket, threading
N, SIZE = 48, 256 * 1024
bad = []
def one(i):
    data = os.urandom(SIZE)
    s = socket.create_connection(("10.0.2.2", ${port}), timeout=60)
    def send():
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
    t = threading.Thread(target=send)
    t.start()
    got = bytearray()
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += b
    t.join()
    s.close()
    if hashlib.sha256(got).digest() != hashlib.sha256(data).digest():
        bad.append((i, len(got)))
ts = [threading.Thread(target=one, args=(i,)) for i in range(N)]
[t.start() for t in ts]
[t.join() for t in ts]
print("tcp ok" if not bad else "tcp bad %r" % bad)
`;

/** 48 UDP sockets at once, 20 datagrams each, every one echoed back unchanged (a lost one is asked again). */
const UDP_ECHO = (port: number) => `
import os, socket, threading
N, COUNT = 48, 20
bad = []
def one(i):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1)
    for k in range(COUNT):
        msg = os.urandom(900 + i)
        for attempt in range(5):
            s.sendto(msg, ("10.0.2.2", ${port}))
            try:
                got, _ = s.recvfrom(4096)
            except socket.timeout:
                continue
            break
        else:
            bad.append((i, k, "no answer"))
            return
        if got != msg:
            bad.append((i, k, "wrong bytes"))
            return
ts = [threading.Thread(target=one, args=(i,)) for i in range(N)]
[t.start() for t in ts]
[t.join() for t in ts]
print("udp ok" if not bad else "udp bad %r" % bad)
`;

describe('usernet run --workers 2', () => {
  it('runs on two shards: parallel TCP echo, parallel downloads, UDP flows, ping and the gateway, every byte checked', async () => {
    const url = `http://10.0.2.2:${blob!.port}/blob`;
    const downloads = Array.from({ length: 8 }, () => `curl -sS --fail ${url} | sha256sum`).join(' & ');
    const script = [
      `python3 -c '${TCP_ECHO(tcpPort)}'`,
      `python3 -c '${UDP_ECHO(udpPort)}'`,
      `{ ${downloads} & wait; }`,
      'ping -c 3 -i 0.2 -W 2 10.0.2.2 | grep -c "bytes from"',
      'ping -c 3 -i 0.2 -W 2 fd00::2 | grep -c "bytes from"',
      'ip -d link show tap0 | grep -o "multi_queue numqueues 2"',
    ].join('; ');
    const r = await usernetAsync(['run', '--workers', '2', '--log-level', 'info', '--', 'sh', '-c', script], 240_000);
    expect(r.stderr).toMatch(/2 engine shards on worker threads/);
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('tcp ok');
    expect(lines[1]).toBe('udp ok');
    const sums = lines.slice(2, 10);
    expect(sums).toHaveLength(8);
    for (const s of sums) expect(s.split(' ')[0]).toBe(blob!.sha256);
    expect(lines.slice(10, 12)).toEqual(['3', '3']);
    expect(lines[12]).toBe('multi_queue numqueues 2');
  }, 260_000);

  it('answers DNS from every shard (many source ports)', async () => {
    const port = await freePort();
    const d = sandbox.tmpdir();
    const dns = sandbox.spawn('dnsmasq', [
      '-k', '--port', String(port), '--listen-address=127.0.0.1', '--bind-interfaces', '--no-resolv', '--no-hosts',
      '--address=/test.usernet/192.0.2.7', `--pid-file=${d}/dnsmasq.pid`, '--user=root', '--log-facility=-',
    ]);
    await sleep(300);
    expect(dns.running).toBe(true);
    const queries = Array.from({ length: 12 }, (_, i) => `dig +short +time=3 +tries=2 @10.0.2.3 n${i}.test.usernet`).join('; ');
    const r = await usernetAsync(['run', '--workers', '2', '--dns', `127.0.0.1:${port}`, '--', 'sh', '-c', `${queries}; dig +short +tcp +time=3 @10.0.2.3 t.test.usernet`]);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('192.0.2.7\n'.repeat(13));
  }, 60_000);

  it('forwards host ports (TCP and UDP) to the namespace: many connections, each echoed', async () => {
    const tcpFwd = await freePort();
    const udpFwd = await freePort();
    const guest = `
import socket, socketserver, threading
class T(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            b = self.request.recv(65536)
            if not b:
                break
            self.request.sendall(b)
class TS(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128
srv = TS(("0.0.0.0", 8000), T)
threading.Thread(target=srv.serve_forever, daemon=True).start()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("0.0.0.0", 9000))
print("servers up", flush=True)
while True:
    m, a = u.recvfrom(4096)
    u.sendto(m, a)
`;
    const [cmd, args] = usernetArgs(['run', '--workers', '2', '-p', `127.0.0.1:${tcpFwd}:8000`, '-p', `127.0.0.1:${udpFwd}:9000/udp`, '--', 'python3', '-c', guest]);
    const run = sandbox.spawn(cmd, args);
    await run.waitFor(/servers up/);
    const one = (i: number) =>
      new Promise<boolean>((resolve, reject) => {
        const data = Buffer.alloc(128 * 1024 + i, i);
        const sum = createHash('sha256').update(data).digest('hex');
        const h = createHash('sha256');
        let n = 0;
        const s = connect({ host: '127.0.0.1', port: tcpFwd }, () => s.end(data));
        s.on('data', (b: Buffer) => {
          h.update(b);
          n += b.length;
        });
        s.on('end', () => resolve(n === data.length && h.digest('hex') === sum));
        s.on('error', reject);
      });
    const ok = await Promise.all(Array.from({ length: 24 }, (_, i) => one(i)));
    expect(ok.every(Boolean)).toBe(true);
    const u = createSocket('udp4');
    try {
      for (let i = 0; i < 5; i++) {
        const msg = Buffer.from(`udp ${i}`);
        const got = await new Promise<Buffer>((resolve) => {
          const retry = setInterval(() => u.send(msg, udpFwd, '127.0.0.1'), 500);
          u.once('message', (m) => {
            clearInterval(retry);
            resolve(m);
          });
          u.send(msg, udpFwd, '127.0.0.1');
        });
        expect(got.toString()).toBe(`udp ${i}`);
      }
    } finally {
      u.close();
    }
    await run.stop('SIGTERM');
  }, 120_000);

  it('stops with a clear error, and kills the command, when a shard loses its tap queue', async () => {
    // The command would sleep past the harness's timeout (then the status is null): 1 means usernet killed it.
    const r = await usernetAsync(['run', '--workers', '2', '--', 'sh', '-c', 'ip link del tap0; exec sleep 300'], 60_000);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/engine shard \d of 2 stopped: shard \d: tap tap0 queue failed/);
  }, 70_000);

  it('serves a tap it creates (--tap --workers 2) in this namespace: ping, and TCP to the host loopback, sha256 checked', async () => {
    const ns = sandbox.netns('shq');
    const tap = sandbox.ifname('shq');
    const [cmd, args] = usernetArgs(['--tap', tap, '--workers', '2', '--log-level', 'info']);
    const u = sandbox.spawn('ip', ['netns', 'exec', ns, cmd, ...args]);
    await u.waitFor(/2 shards/, 30_000);
    must('ip', ['-n', ns, 'addr', 'add', '10.0.2.100/24', 'dev', tap]);
    must('ip', ['-n', ns, 'link', 'set', tap, 'up']);
    // The namespace's own loopback is usernet's host loopback here: a server there is reached as 10.0.2.2.
    const d = sandbox.tmpdir();
    must('sh', ['-c', `head -c 4000000 /dev/urandom > ${d}/blob`]);
    const sum = must('sha256sum', [`${d}/blob`]).split(' ')[0];
    sandbox.spawn('ip', ['netns', 'exec', ns, 'python3', '-m', 'http.server', '8000', '--bind', '127.0.0.1', '--directory', d]);
    await sleep(500);
    const out = must('ip', ['netns', 'exec', ns, 'sh', '-c',
      'ping -c 2 -i 0.2 -W 2 10.0.2.2 | grep -c "bytes from"; ' +
      'for i in 1 2 3 4 5 6; do curl -sS --retry 5 --retry-connrefused http://10.0.2.2:8000/blob | sha256sum & done; wait; ' +
      `ip -d link show ${tap} | grep -o "multi_queue numqueues 2"`], 60_000);
    const lines = out.trim().split('\n');
    expect(lines[0]).toBe('2');
    expect(lines.slice(1, 7).map((l) => l.split(' ')[0])).toEqual(new Array(6).fill(sum));
    expect(lines[7]).toBe('multi_queue numqueues 2');
  }, 90_000);

  it('refuses --workers 2 with what shards do not serve yet, and runs one worker by default there', async () => {
    const d = sandbox.tmpdir();
    const refused = await usernetAsync(['run', '--workers', '2', '--pcap', `${d}/x.pcap`, '--', 'true']);
    expect(refused.status).toBe(2);
    expect(refused.stderr).toMatch(/--workers 2: engine shards do not serve --pcap yet; use --workers 1/);
    const dflt = await usernetAsync(['run', '--pcap', `${d}/y.pcap`, '--log-level', 'info', '--', 'ping', '-c', '1', '-W', '2', '10.0.2.2']);
    expect(dflt.status).toBe(0);
    expect(dflt.stderr).not.toMatch(/engine shards on worker threads/);
  });
});
