/**
 * usernet under the gVisor emulation (test/gvisor-emu): the tap refuses its
 * virtio-net header, the set-ioctls answer ENOTTY and netlink multicast is
 * refused, so every front end must run with a plain tap configured through
 * rtnetlink. LD_PRELOAD is set for usernet's process only (through `env`);
 * tools the test runs itself go without it. CMD under `usernet run` inherits
 * it, as a command inside gVisor is under gVisor too: the tools used here
 * (ip, ping, curl, dig, python3) only need what the emulation passes through.
 * Traffic goes to loopback and to namespaces this file creates; everything
 * is named i13n-* and removed after each test, also on failure.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildGvisorEmu, type GvisorEmu } from '../gvisor-emu/build.js';
import { startBlobServer, type BlobServer } from './blob-server.js';
import { freePort, must, run, Sandbox, sleep, usernetArgs, usernetAsync } from './harness.js';
import { startDnsmasq } from './slirp-checks.js';
import { runAsync, spawnSlirp, Tracker } from './slirp-harness.js';

const sandbox = new Sandbox('i13n');
const files = new Sandbox('i13n');
const tracker = new Tracker();
afterEach(async () => {
  await tracker.stopAll();
  await sandbox.cleanup();
});

const BLOB_BYTES = 20 * 1024 * 1024;
let emu: GvisorEmu;
let blob4: BlobServer;
let blob6: BlobServer;
let udpEcho: UdpSocket;
let udpPort = 0;

beforeAll(async () => {
  emu = buildGvisorEmu();
  blob4 = await startBlobServer(files.tmpdir(), BLOB_BYTES, '127.0.0.1');
  blob6 = await startBlobServer(files.tmpdir(), 1024, '::1');
  udpEcho = createSocket('udp4');
  udpEcho.on('message', (msg, rinfo) => udpEcho.send(Buffer.concat([Buffer.from('echo:'), msg]), rinfo.port, rinfo.address));
  await new Promise<void>((r) => udpEcho.bind(0, '127.0.0.1', r));
  udpPort = udpEcho.address().port;
}, 120_000);

afterAll(async () => {
  udpEcho?.close();
  await blob4?.close();
  await blob6?.close();
  await files.cleanup();
  emu?.remove();
});

/** `env LD_PRELOAD=... [more]`: what goes before usernet's node. */
function gvisor(more: string[] = []): string[] {
  return ['env', `LD_PRELOAD=${emu.library}`, ...more];
}

const PLAIN_BY_RTNETLINK = /tap tap0: created, vnet header off \(EINVAL\), configured via rtnetlink/;

/** A dnsmasq on 127.0.0.1 answering test.i13n (never the system resolver). */
async function startDns(): Promise<number> {
  const port = await freePort();
  await startDnsmasq(sandbox, '127.0.0.1', port, 'test.i13n', '192.0.2.13');
  return port;
}

/** python3 code: one datagram to the host's UDP echo at 10.0.2.2, prints "udp echo:ping-i13n". */
function udpPing(): string {
  return [
    'import socket',
    's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
    's.settimeout(5)',
    `s.sendto(b"ping-i13n", ("10.0.2.2", ${udpPort}))`,
    'print("udp", s.recvfrom(100)[0].decode())',
  ].join('\n');
}

/** Connects to 127.0.0.1:port until the guest's one-shot server answers; resolves with what it sent. */
async function fetchForwarded(port: number, until: Promise<unknown>): Promise<string> {
  let done = false;
  void until.then(() => (done = true));
  while (!done) {
    const got = await new Promise<string>((resolve) => {
      const c = connect(port, '127.0.0.1');
      let data = '';
      c.setEncoding('utf8');
      c.on('data', (d: string) => (data += d));
      c.on('end', () => resolve(data));
      c.on('error', () => resolve(''));
    });
    if (got !== '') return got;
    await sleep(100);
  }
  return '';
}

describe('usernet run under gVisor emulation', () => {
  it('opens a plain tap, configures it by rtnetlink, and carries TCP, UDP, DNS, ICMP, IPv6 and a -p forward', async () => {
    const dnsPort = await startDns();
    const fwdPort = await freePort();
    const url = `http://10.0.2.2:${blob4.port}`;
    const udp = udpPing();
    const server = [
      'import socket',
      's = socket.socket()',
      's.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)',
      's.bind(("0.0.0.0", 8000))',
      's.listen(1)',
      's.settimeout(30)',
      'c, _ = s.accept()',
      'c.sendall(b"forwarded-i13n")',
      'c.close()',
    ].join('\n');
    const script = [
      `curl -sS --fail ${url}/blob | sha256sum | sed 's/^/down /'`,
      `curl -sS --fail -T ${blob4.path} ${url}/upload | sed 's/^/up /'`,
      `python3 -c '${udp}'`,
      `dig +short +time=3 +tries=1 @10.0.2.3 test.i13n | sed 's/^/dns /'`,
      'ping -c 2 -i 0.2 -W 2 10.0.2.2 >/dev/null && echo ping-ok',
      'ping -6 -c 2 -i 0.2 -W 2 fd00::2 >/dev/null && echo ping6-ok',
      `curl -sS --fail -g http://[fd00::2]:${blob6.port}/peer | sed 's/^/peer6 /'`,
      `python3 -c '${server}' && echo served`,
    ].join('; ');
    const running = usernetAsync(
      ['run', '--log-level', 'info', '--dns', `127.0.0.1:${dnsPort}`, '-p', `127.0.0.1:${fwdPort}:8000`, '--', 'sh', '-c', script],
      180_000,
      gvisor(),
    );
    const forwarded = await fetchForwarded(fwdPort, running);
    const r = await running;
    expect(r.stderr).toMatch(PLAIN_BY_RTNETLINK);
    expect(r.stderr).not.toMatch(/warn|error/);
    const out = r.stdout;
    expect(out).toContain(`down ${blob4.sha256}`);
    expect(out).toContain(`up ${blob4.sha256} ${BLOB_BYTES}`);
    expect(out).toContain('udp echo:ping-i13n');
    expect(out).toContain('dns 192.0.2.13');
    expect(out).toContain('ping-ok');
    expect(out).toContain('ping6-ok');
    expect(out).toMatch(/peer6 ::1/);
    expect(forwarded).toBe('forwarded-i13n');
    expect(out).toContain('served');
    expect(r.status).toBe(0);
  }, 200_000);

  it('configures address, route, MTU, MAC and lo by rtnetlink as asked', async () => {
    const r = await usernetAsync(
      ['run', '--log-level', 'info', '--mtu', '9000', '--mac', '02:13:13:13:13:13', '--', 'sh', '-c', 'ip -o addr show dev tap0; ip route; ip -o link show tap0; ip -o link show lo'],
      60_000,
      gvisor(),
    );
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(PLAIN_BY_RTNETLINK);
    expect(r.stdout).toMatch(/inet 10\.0\.2\.100\/24 brd 10\.0\.2\.255/);
    expect(r.stdout).toMatch(/default via 10\.0\.2\.2 dev tap0/);
    expect(r.stdout).toMatch(/tap0: <[^>]*UP[^>]*> mtu 9000/);
    expect(r.stdout).toMatch(/link\/ether 02:13:13:13:13:13/);
    expect(r.stdout).toMatch(/lo: <LOOPBACK,UP/);
  });

  it('with an older gVisor (no link requests by rtnetlink) fails with the setting, both errnos and a hint', async () => {
    const r = await usernetAsync(['run', '--', 'true'], 60_000, gvisor(['GVISOR_EMU_NETLINK=old']));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/tap tap0: rtnetlink\(RTM_NEWLINK,flags\) failed: ENOTSUP/);
    expect(r.stderr).toMatch(/hint: neither the ioctl \(ENOTTY\) nor rtnetlink \(ENOTSUP\) could bring lo up/);
  });
});

describe('usernet --tap under gVisor emulation', () => {
  it('bridges two namespaces over plain taps: they ping each other, the gateway, and reach the host (TCP both ways, UDP, DNS, IPv6)', async () => {
    const dnsPort = await startDns();
    const tapA = sandbox.tap('a');
    const tapB = sandbox.tap('b');
    const [node, args] = usernetArgs(['--tap', tapA, '--tap', tapB, '--log-level', 'info', '--dns', `127.0.0.1:${dnsPort}`]);
    const usernet = sandbox.spawn(gvisor()[0], [...gvisor().slice(1), node, ...args]);
    await usernet.waitFor(/gateway 10\.0\.2\.2/);
    expect(usernet.stderr).toMatch(new RegExp(`tap ${tapA}: attached, vnet header off \\(EINVAL\\)\\n`));
    expect(usernet.stderr).toMatch(new RegExp(`tap ${tapB}: attached, vnet header off \\(EINVAL\\)\\n`));
    const hosts = [
      { tap: tapA, ip: '10.0.2.101', tag: 'a' },
      { tap: tapB, ip: '10.0.2.102', tag: 'b' },
    ].map(({ tap, ip, tag }) => {
      return { ns: sandbox.guestOnTap(tap, ip, tag, true), ip };
    });
    const [a, b] = hosts;
    expect((await runAsync('ip', ['netns', 'exec', a.ns, 'ping', '-c', '3', '-i', '0.2', '-W', '2', b.ip])).stdout).toMatch(/3 received/);
    expect((await runAsync('ip', ['netns', 'exec', b.ns, 'ping', '-c', '2', '-i', '0.2', '-W', '2', a.ip])).stdout).toMatch(/2 received/);
    expect((await runAsync('ip', ['netns', 'exec', b.ns, 'ping', '-c', '1', '-W', '2', '10.0.2.2'])).stdout).toMatch(/1 received/);
    const down = await runAsync('ip', ['netns', 'exec', a.ns, 'sh', '-c', `curl -sS --fail http://10.0.2.2:${blob4.port}/blob | sha256sum`], 60_000);
    expect(down.stdout.split(' ')[0]).toBe(blob4.sha256);
    const script = [
      `curl -sS --fail -T ${blob4.path} http://10.0.2.2:${blob4.port}/upload | sed 's/^/up /'`,
      `python3 -c '${udpPing()}'`,
      `dig +short +time=3 +tries=1 @10.0.2.3 test.i13n | sed 's/^/dns /'`,
      // SLAAC: until the address has passed DAD.
      `for i in $(seq 100); do ip -6 addr show dev ${tapB} scope global -tentative | grep -q inet6 && break; sleep 0.1; done`,
      'ping -6 -c 2 -i 0.2 -W 2 fd00::2 >/dev/null && echo ping6-ok',
      `curl -sS --fail -g http://[fd00::2]:${blob6.port}/peer | sed 's/^/peer6 /'`,
    ].join('; ');
    const more = (await runAsync('ip', ['netns', 'exec', b.ns, 'sh', '-c', script], 60_000)).stdout;
    expect(more).toContain(`up ${blob4.sha256} ${BLOB_BYTES}`);
    expect(more).toContain('udp echo:ping-i13n');
    expect(more).toContain('dns 192.0.2.13');
    expect(more).toContain('ping6-ok');
    expect(more).toMatch(/peer6 ::1/);

    const before = usernet.stderr.length;
    process.kill(usernet.pid, 'SIGUSR1');
    await usernet.waitFor(/usernet: stats \{.*\}\n/);
    const stats = JSON.parse(/usernet: stats (\{.*\})\n/.exec(usernet.stderr.slice(before))![1]);
    const entry = stats.taps.find((t: any) => t.name === tapA);
    expect(entry).toMatchObject({ vnetHdr: false, offloads: [], config: null });
    expect(entry.vnetFallback).toMatchObject({ code: 'EINVAL', syscall: 'ioctl(TUNSETIFF,IFF_VNET_HDR)' });
    expect(stats.bridge.ports.find((p: any) => p.name === tapA).vnet).toBe(false);
  });
});

describe('the slirp4netns front end under gVisor emulation', () => {
  it('--configure by hand: plain tap configured by rtnetlink, the namespace reaches the host', async () => {
    const ns = sandbox.netns('s4');
    const s = spawnSlirp(['--configure', '--mtu=65520', '-r', '4', '--netns-type=path', `/run/netns/${ns}`, 'tap0'], tracker.track, gvisor(['USERNET_LOG_LEVEL=info']));
    expect(await s.ready).toBe('1');
    expect(s.bg.stderr).toMatch(PLAIN_BY_RTNETLINK);
    const link = must('ip', ['-n', ns, '-o', 'link', 'show', 'tap0']);
    expect(link).toMatch(/mtu 65520/);
    expect(link).toMatch(/UP/);
    expect(must('ip', ['-n', ns, '-o', 'addr', 'show', 'tap0'])).toMatch(/inet 10\.0\.2\.100\/24/);
    expect(must('ip', ['-n', ns, 'route'])).toMatch(/default via 10\.0\.2\.2 dev tap0/);
    const r = await runAsync('ip', ['netns', 'exec', ns, 'sh', '-c', `curl -sS --fail http://10.0.2.2:${blob4.port}/blob | sha256sum`], 60_000);
    expect(r.stdout.split(' ')[0]).toBe(blob4.sha256);
    const ping = await runAsync('ip', ['netns', 'exec', ns, 'ping', '-c', '2', '-i', '0.2', '-s', '30000', '-W', '2', '10.0.2.2']);
    expect(ping.stdout).toMatch(/2 received/);
    expect(s.bg.running).toBe(true);
  });
});

describe('tap errors with a hint', () => {
  it('/dev/null bound over /dev/net/tun: ENOTTY on TUNSETIFF, and the hint says it is not the tun device', () => {
    // A private mount namespace: the bind mount never reaches the host's /dev.
    const [node, args] = usernetArgs(['run', '--', 'true']);
    const r = run('unshare', ['-m', '--propagation', 'private', 'sh', '-c', 'mount --bind /dev/null /dev/net/tun && exec "$@"', 'sh', node, ...args]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/ioctl\(TUNSETIFF\) failed: ENOTTY/);
    expect(r.stderr).toMatch(/hint: the file at \/dev\/net\/tun is not the tun device/);
  });
});

