/**
 * IPv6 end to end: a real Linux kernel in the namespace of `usernet run`
 * configures itself by SLAAC from usernet's router advertisements, then
 * curl, iperf3, dig and python reach servers this test starts on host ::1
 * (through fd00::2) and the DNS forwarder (fd00::3); a host client reaches a
 * server inside through a port forward from [::1]. Nothing goes anywhere but
 * loopback and the test's own namespaces.
 */
import { connect, type Socket } from 'node:net';
import { createSocket } from 'node:dgram';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startBlobServer, type BlobServer } from './blob-server.js';
import { freePort, must, Sandbox, sleep, usernetArgs, usernetAsync } from './harness.js';

const sandbox = new Sandbox();
const files = new Sandbox();
afterEach(() => sandbox.cleanup());
afterAll(() => files.cleanup());

const BLOB_BYTES = 100 * 1024 * 1024;
let dir = '';
let blob = '';
let blobSha = '';
let server: BlobServer | null = null;
let httpPort = 0;

beforeAll(async () => {
  dir = files.tmpdir();
  server = await startBlobServer(dir, BLOB_BYTES, '::1');
  blob = server.path;
  blobSha = server.sha256;
  httpPort = server.port;
}, 120_000);

afterAll(() => server?.close());

describe('SLAAC and the router', () => {
  it('usernet run starts the command with a SLAAC address past DAD and a default route via the gateway link-local', async () => {
    const r = await usernetAsync([
      'run', '--', 'sh', '-c',
      'ip -6 addr show dev tap0 scope global; ip -6 route show default; ping -6 -c 2 -W 2 fd00::2 >/dev/null && echo ping-ok; ping -6 -c 1 -W 2 fd00::3 >/dev/null && echo dns-ping-ok',
    ]);
    expect(r.status).toBe(0);
    // The very first command sees a usable address: not tentative, in the prefix, from the RA (dynamic).
    expect(r.stdout).toMatch(/inet6 fd00::[0-9a-f:]+\/64 scope global dynamic/);
    expect(r.stdout).not.toMatch(/tentative/);
    expect(r.stdout).toMatch(/default via fe80::[0-9a-f:]+ dev tap0 proto ra/);
    expect(r.stdout).toContain('ping-ok\ndns-ping-ok');
  });

  it('--ipv6-prefix changes the prefix, --disable-ipv6 leaves the namespace without one', async () => {
    const a = await usernetAsync(['run', '--ipv6-prefix', 'fd42:1:2:3::/64', '--', 'sh', '-c', 'ip -6 addr show dev tap0 scope global; ping -6 -c 1 -W 2 fd42:1:2:3::2 >/dev/null && echo ok']);
    expect(a.stdout).toMatch(/inet6 fd42:1:2:3:[0-9a-f:]+\/64 scope global/);
    expect(a.stdout).toContain('ok');
    const b = await usernetAsync(['run', '--disable-ipv6', '--', 'sh', '-c', 'sleep 2.5; ip -6 addr show dev tap0 scope global | wc -l']);
    expect(b.stdout.trim()).toBe('0');
  });
});

describe('TCP over IPv6 through the NAT', () => {
  for (const offload of [true, false]) {
    it(`downloads 100 MB from host ::1 via [fd00::2] and uploads it back, sha256 matching (${offload ? 'vnet offloads' : 'plain tap'})`, async () => {
      const url = `http://[fd00::2]:${httpPort}`;
      const r = await usernetAsync(
        ['run', ...(offload ? [] : ['--no-offload']), '--', 'sh', '-c', `curl -sS --fail ${url}/blob | sha256sum; curl -sS --fail -T ${blob} ${url}/upload; curl -sS --fail ${url}/peer`],
        180_000,
      );
      expect(r.stderr).toBe('');
      expect(r.status).toBe(0);
      const [down, up, peer] = r.stdout.trim().split('\n');
      expect(down.split(' ')[0]).toBe(blobSha);
      expect(up).toBe(`${blobSha} ${BLOB_BYTES}`);
      // The host server sees the connection come from its own loopback.
      expect(peer).toBe('::1');
    }, 200_000);
  }

  it('runs iperf3 -6 both ways against a server on host ::1', async () => {
    const port = await freePort();
    const server = sandbox.spawn('iperf3', ['-s', '-B', '::1', '-p', String(port), '--forceflush']);
    await server.waitFor(/Server listening/);
    const c = `iperf3 -6 -c fd00::2 -p ${port} -t 3 -J`;
    const r = await usernetAsync(['run', '--', 'sh', '-c', `${c} > ${dir}/up6.json && ${c} -R > ${dir}/down6.json`], 60_000);
    expect(r.status).toBe(0);
    for (const f of ['up6', 'down6']) {
      const j = JSON.parse(must('cat', [`${dir}/${f}.json`]));
      expect(j.error).toBeUndefined();
      expect(j.end.sum_received.bytes).toBeGreaterThan(10_000_000);
    }
  });

  it('fd00::2 with --disable-host-loopback is unreachable (ICMPv6 no route, as slirp4netns), and a closed port is refused at once', async () => {
    const closed = await freePort('::1');
    const py = (port: number) =>
      [
        'import socket',
        'try:',
        `    socket.create_connection(("fd00::2", ${port}), timeout=10)`,
        '    print("connected")',
        'except ConnectionRefusedError:',
        '    print("refused")',
        'except socket.timeout:',
        '    print("timeout")',
        'except OSError as e:',
        '    print("unreachable" if e.errno == 101 else repr(e))',
      ].join('\n');
    const a = await usernetAsync(['run', '--disable-host-loopback', '--', 'python3', '-c', py(httpPort)]);
    expect(a.stdout.trim()).toBe('unreachable');
    const b = await usernetAsync(['run', '--', 'python3', '-c', py(closed)]);
    expect(b.stdout.trim()).toBe('refused');
  });
});

describe('UDP and DNS over IPv6', () => {
  it('echoes UDP datagrams between the namespace and host ::1', async () => {
    const echo = createSocket({ type: 'udp6', ipv6Only: true });
    echo.on('message', (msg, rinfo) => echo.send(Buffer.concat([Buffer.from('echo:'), msg]), rinfo.port, rinfo.address));
    await new Promise<void>((r) => echo.bind(0, '::1', r));
    const port = echo.address().port;
    const py = [
      'import socket',
      's = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)',
      's.settimeout(5)',
      'for m in (b"one", b"x" * 1200):',
      `    s.sendto(m, ("fd00::2", ${port}))`,
      '    d, a = s.recvfrom(2000)',
      '    print(len(d), d[:8].decode(), a[0])',
    ].join('\n');
    const r = await usernetAsync(['run', '--', 'python3', '-c', py]);
    echo.close();
    expect(r.stdout).toBe('8 echo:one fd00::2\n1205 echo:xxx fd00::2\n');
  });

  it('carries 20,000-byte UDP datagrams both ways as IPv6 fragments (reassembled at the gateway, fragmented to the guest)', async () => {
    const big = createSocket({ type: 'udp6', ipv6Only: true });
    // A short request asks for that many bytes; a long one is answered with its length and whether it is intact.
    big.on('message', (msg, rinfo) => {
      const reply = msg.length < 10 ? Buffer.alloc(Number(msg.toString()), 0x61) : Buffer.from(`got ${msg.length} ${msg.every((c) => c === 0x62)}`);
      big.send(reply, rinfo.port, rinfo.address);
    });
    await new Promise<void>((r) => big.bind(0, '::1', r));
    const port = big.address().port;
    const py = [
      'import socket',
      's = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)',
      's.settimeout(5)',
      `s.sendto(b"20000", ("fd00::2", ${port}))`,
      'd, a = s.recvfrom(70000)',
      'print(len(d), d == b"a" * 20000)',
      `s.sendto(b"b" * 20000, ("fd00::2", ${port}))`,
      'd, a = s.recvfrom(70000)',
      'print(d.decode())',
    ].join('\n');
    const r = await usernetAsync(['run', '--', 'python3', '-c', py]);
    big.close();
    expect(r.stdout).toBe('20000 True\ngot 20000 true\n');
  });

  it('answers dig -6 @fd00::3 over UDP and TCP from a resolver on loopback', async () => {
    const port = await freePort();
    const d = sandbox.tmpdir();
    const dns = sandbox.spawn('dnsmasq', [
      '-k', '--port', String(port), '--listen-address=127.0.0.1', '--bind-interfaces', '--no-resolv', '--no-hosts',
      '--address=/test.usernet/2001:db8::7', `--pid-file=${d}/dnsmasq.pid`, '--user=root', '--log-facility=-',
    ]);
    await sleep(300);
    expect(dns.running).toBe(true);
    const r = await usernetAsync([
      'run', '--dns', `127.0.0.1:${port}`, '--', 'sh', '-c',
      'dig -6 +short +time=3 +tries=1 @fd00::3 AAAA test.usernet; dig -6 +short +tcp +time=3 +tries=1 @fd00::3 AAAA www.test.usernet; grep -c fd00::3 /proc/net/if_inet6 || true',
    ]);
    expect(r.stdout.split('\n').slice(0, 2)).toEqual(['2001:db8::7', '2001:db8::7']);
  });
});

/** Inside the namespace: TCP 8000 greets with the peer address and echoes; UDP 9000 answers "<peer>:<data>"; both on ::. */
const GUEST_SERVERS = `
const net = require('net'); const dgram = require('dgram');
net.createServer((s) => { s.write('peer ' + s.remoteAddress + '\\n'); s.on('data', (d) => s.write('echo ' + d)); s.on('error', () => {}); }).listen(8000, '::');
const u = dgram.createSocket('udp6'); u.on('message', (m, r) => u.send(r.address + ':' + m, r.port, r.address));
u.bind(9000, '::', () => console.log('servers up'));
`;

function lines(sock: Socket): () => Promise<string> {
  let buf = '';
  const waiting: ((l: string) => void)[] = [];
  const ready: string[] = [];
  sock.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const l = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const w = waiting.shift();
      if (w) w(l);
      else ready.push(l);
    }
  });
  return () => (ready.length > 0 ? Promise.resolve(ready.shift()!) : new Promise((r) => waiting.push(r)));
}

describe('port forwards to an IPv6 guest', () => {
  it('usernet run -p [::1]:P:8000 reaches a server inside, which sees the client as fd00::2 (TCP and UDP)', async () => {
    const tcpPort = await freePort('::1');
    const udpPort = await freePort('::1');
    const [cmd, args] = usernetArgs(['run', '-p', `[::1]:${tcpPort}:8000`, '-p', `[::1]:${udpPort}:9000/udp`, '--', process.execPath, '-e', GUEST_SERVERS]);
    const run = sandbox.spawn(cmd, args);
    await run.waitFor(/servers up/, 20_000);
    const sock = connect({ host: '::1', port: tcpPort });
    const next = lines(sock);
    expect(await next()).toBe('peer fd00::2');
    sock.write('one\n');
    expect(await next()).toBe('echo one');
    sock.destroy();
    const u = createSocket('udp6');
    const answer = new Promise<string>((r) => u.once('message', (m) => r(m.toString())));
    u.send('hi', udpPort, '::1');
    expect(await answer).toBe('fd00::2:hi');
    u.close();
    await run.stop('SIGTERM');
  });
});
