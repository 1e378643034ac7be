/**
 * The library API as a user gets it: examples/basic.mjs run as is, `usernet`
 * imported by package name from outside the repository (a node_modules
 * symlink), a consumer type-checked against the emitted .d.ts, and the
 * Network's events with a real namespace (root; traffic to loopback only).
 */
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort, ROOT, run, Sandbox, sleep } from './harness.js';
import { runAsync } from './slirp-harness.js';
import { Network, type DropInfo, type FlowClosedInfo, type FlowInfo, type PortDownInfo, type PortInfo } from '../../src/index.js';
import { ConfigError } from '../../src/errors.js';

const box = new Sandbox('i19l');
const exampleNs = `i19l-ex-${randomBytes(4).toString('hex')}`;
afterAll(async () => {
  run('ip', ['netns', 'del', exampleNs]);
  await box.cleanup();
});

/** Waits (bounded) until `cond` holds; the assertion that follows says what was expected. */
async function until(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond() && Date.now() < deadline) await sleep(20);
}

/** A directory outside the repository whose node_modules holds usernet (a symlink to it) and @types. */
function consumerDir(): string {
  const dir = box.tmpdir();
  mkdirSync(join(dir, 'node_modules', '@types'), { recursive: true });
  symlinkSync(ROOT, join(dir, 'node_modules', 'usernet'));
  symlinkSync(join(ROOT, 'node_modules', '@types', 'node'), join(dir, 'node_modules', '@types', 'node'));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', type: 'module', private: true }));
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, types: ['node'] } }),
  );
  return dir;
}

describe('library: the package', () => {
  it('examples/basic.mjs runs: a namespace, ping and HTTP to host loopback, events, stats, close', async () => {
    const r = await runAsync('sh', ['-c', `cd ${ROOT} && USERNET_EXAMPLE_NETNS=${exampleNs} exec ${process.execPath} examples/basic.mjs`], 60_000);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^attached eth0 in i19l-ex-\w+: 10\.0\.2\.100\/24 via 10\.0\.2\.2/m);
    expect(r.stdout).toMatch(/^event portUp: tap eth0$/m);
    expect(r.stdout).toMatch(/^ping: 64 bytes from 10\.0\.2\.2/m);
    expect(r.stdout).toMatch(/^event flowOpened: tcp 10\.0\.2\.100:\d+ -> 10\.0\.2\.2:\d+$/m);
    expect(r.stdout).toContain('curl: hello from the host, you asked for /example');
    expect(r.stdout).toMatch(/^stats: 1 guest\(s\), bridge forwarded \d+, tcp flows created 1$/m);
    expect(r.stdout).toMatch(/closed\n$/);
    expect(run('ip', ['netns', 'list']).stdout).not.toContain(exampleNs);
  });

  it("imports as 'usernet' from another package, and a consumer type-checks against the emitted .d.ts (and a wrong one does not)", async () => {
    const dir = consumerDir();
    const script = [
      "import { Network, ConfigError, UsernetError } from 'usernet';",
      'const net = await Network.create({ cidr: "10.0.9.0/24", ipv6Prefix: false });',
      'const info = net.info;',
      'let bad = null;',
      'try { await Network.create({ mtu: 10 }); } catch (err) { bad = { config: err instanceof ConfigError, base: err instanceof UsernetError, field: err.field, message: err.message }; }',
      'await net.close();',
      'console.log(JSON.stringify({ info, bad }));',
    ].join('\n');
    writeFileSync(join(dir, 'run.mjs'), script);
    const r = await runAsync(process.execPath, [join(dir, 'run.mjs')]);
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout);
    expect(out.info).toEqual({ cidr: '10.0.9.0/24', gateway: '10.0.9.2', dns: '10.0.9.3', mtu: 1500, ipv6Prefix: null, offload: true });
    expect(out.bad).toMatchObject({ config: true, base: true, field: 'mtu' });
    expect(out.bad.message).toMatch(/^mtu 10: out of range/);

    writeFileSync(
      join(dir, 'good.ts'),
      [
        "import { Network, ConfigError, type NetworkOptions, type FlowClosedInfo, type GuestInfo, type DropInfo } from 'usernet';",
        "const options: NetworkOptions = { cidr: '10.0.3.0/24', mtu: 1500, ipv6Prefix: false, forwards: ['127.0.0.1:8080:10.0.3.100:80'] };",
        'export async function main(): Promise<number> {',
        '  const net = await Network.create(options);',
        '  net.on("flowClosed", (f: FlowClosedInfo) => console.log(f.proto, f.reason, f.bytesToGuest));',
        '  net.on("drop", (d: DropInfo) => console.log(d.total, Object.keys(d.byPort)));',
        "  const guest: GuestInfo = net.attachNamespace({ netns: '/run/netns/x', ifname: 'eth0' });",
        '  const entry = await net.addForward({ proto: "udp", hostAddr: "127.0.0.1", hostPort: 5353, guestAddr: guest.ipv4, guestPort: 53 });',
        '  net.removeForward(entry.id);',
        '  const forwarded: number = net.stats().bridge.forwarded;',
        '  await net.close();',
        '  return forwarded + (new ConfigError("x").field === undefined ? 0 : 1);',
        '}',
      ].join('\n'),
    );
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const good = await runAsync(process.execPath, [tsc, '-p', dir], 60_000);
    expect(good.stdout + good.stderr).toBe('');
    expect(good.status).toBe(0);

    writeFileSync(
      join(dir, 'bad.ts'),
      [
        "import { Network } from 'usernet';",
        "export const a = Network.create({ mtu: '1500' });",
        "export async function b(): Promise<void> { (await Network.create()).on('flowClosed', (f) => console.log(f.nope)); }",
        "export async function c(): Promise<void> { (await Network.create()).on('no-such-event', () => {}); }",
      ].join('\n'),
    );
    const bad = await runAsync(process.execPath, [tsc, '-p', dir], 60_000);
    expect(bad.status).not.toBe(0);
    expect(bad.stdout).toMatch(/bad\.ts\(2,[^)]*\): error TS2322/);
    expect(bad.stdout).toMatch(/bad\.ts\(3,[^)]*\): error TS2339: Property 'nope'/);
    expect(bad.stdout).toMatch(/bad\.ts\(4,[^)]*\): error/);
    expect(bad.stdout).not.toMatch(/good\.ts/);
  });
});

describe('library: a network in this process', () => {
  it('ports, flows (outbound and a forward inbound), drops and forwards as events and calls', async () => {
    const ns = box.netns('ns');
    const net = await Network.create({ ipv6Prefix: false, dropIntervalMs: 100 });
    const ups: PortInfo[] = [];
    const downs: PortDownInfo[] = [];
    const opened: FlowInfo[] = [];
    const closed: FlowClosedInfo[] = [];
    const drops: DropInfo[] = [];
    net.on('portUp', (p) => ups.push(p));
    net.on('portDown', (p) => downs.push(p));
    net.on('flowOpened', (f) => opened.push(f));
    net.on('flowClosed', (f) => closed.push(f));
    net.on('drop', (d) => drops.push(d));
    const server = createServer((_req, res) => res.end('hi\n'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const udp = createSocket('udp4');
    const udpGot: string[] = [];
    udp.on('message', (m) => udpGot.push(m.toString()));
    await new Promise<void>((r) => udp.bind(0, '127.0.0.1', r));
    try {
      const tapName = box.ifname('tp');
      const tap = net.attachTap(tapName);
      expect(tap).toMatchObject({ name: tapName, kind: 'tap', created: true });
      expect(() => net.attachNamespace({ id: 'x' })).toThrow(ConfigError);
      const guest = net.attachNamespace({ netns: `/run/netns/${ns}`, id: 'g1', name: 'guest-one' });
      expect(guest).toMatchObject({ id: 'g1', name: 'guest-one', ifname: 'eth0', ipv4: '10.0.2.100', gateway: '10.0.2.2', ipv6: null });
      expect(net.guestList().map((g) => g.id)).toEqual(['g1']);

      // Outbound TCP and UDP to this process's loopback sockets, through the gateway address.
      const curl = await runAsync('ip', ['netns', 'exec', ns, 'curl', '-sS', '--max-time', '10', `http://10.0.2.2:${port}/`]);
      expect(curl.stderr).toBe('');
      expect(curl.stdout).toBe('hi\n');
      const send = await runAsync('ip', ['netns', 'exec', ns, 'bash', '-c', `echo ping > /dev/udp/10.0.2.2/${(udp.address() as AddressInfo).port}`]);
      expect(send.status).toBe(0);
      await until(() => udpGot.length > 0 && closed.some((f) => f.proto === 'tcp'));
      expect(udpGot).toEqual(['ping\n']);
      const tcpOut = opened.find((f) => f.proto === 'tcp' && f.direction === 'outbound');
      expect(tcpOut).toMatchObject({ guest: { address: '10.0.2.100' }, remote: { address: '10.0.2.2', port } });
      expect(opened.find((f) => f.proto === 'udp')).toMatchObject({ direction: 'outbound', guest: { address: '10.0.2.100' }, remote: { address: '10.0.2.2' } });
      const tcpClosed = closed.find((f) => f.proto === 'tcp' && f.id === tcpOut!.id);
      expect(tcpClosed?.reason).toBe('normal');
      // The HTTP request and the response with its headers.
      expect(tcpClosed?.bytesFromGuest).toBeGreaterThan(0);
      expect(tcpClosed?.bytesToGuest).toBeGreaterThan(3);

      // A forward to a guest port nobody listens on: an inbound flow, refused by the guest's kernel.
      const hostPort = await freePort();
      const entry = await net.addForward(`127.0.0.1:${hostPort}:${guest.ipv4}:9/tcp`);
      expect(net.forwards()).toEqual([{ id: entry.id, proto: 'tcp', hostAddr: '127.0.0.1', hostPort, guestAddr: '10.0.2.100', guestPort: 9 }]);
      const client = connect(hostPort, '127.0.0.1');
      client.on('error', () => undefined);
      await until(() => closed.some((f) => f.direction === 'inbound'));
      client.destroy();
      expect(opened.find((f) => f.direction === 'inbound')).toMatchObject({ proto: 'tcp', guest: { address: '10.0.2.100', port: 9 }, remote: { address: '10.0.2.2' } });
      expect(closed.find((f) => f.direction === 'inbound')?.reason).toMatch(/^(reset|refused)$/);
      expect(net.removeForward(entry.id)).toBe(true);
      expect(net.removeForward(entry.id)).toBe(false);
      expect(net.forwards()).toEqual([]);

      // An echo request to the broadcast address is dropped by the gateway: counted, and reported aggregated.
      await runAsync('ip', ['netns', 'exec', ns, 'ping', '-b', '-c', '1', '-W', '1', '10.0.2.255']);
      const echoDropped = () => drops.find((d) => (d.byPort.gateway?.['icmp-echo-broadcast'] ?? 0) > 0);
      await until(() => echoDropped() !== undefined);
      expect(echoDropped()?.byPort.gateway).toMatchObject({ 'icmp-echo-broadcast': 1 });
      for (const d of drops) expect(d.total).toBe(Object.values(d.byPort).reduce((n, r) => n + Object.values(r).reduce((a, b) => a + b, 0), 0));

      const stats = net.stats();
      expect(stats.guests.map((g) => g.id)).toEqual(['g1']);
      expect(stats.hostSockets).toMatchObject({ tcp: expect.any(Number) });

      expect(net.detach('g1')).toBe(true);
      expect(net.detach('g1')).toBe(false);
      expect(net.detachTap(tapName)).toBe(true);
      await until(() => downs.length >= 2);
      expect(ups.map((p) => `${p.kind} ${p.name}`)).toEqual([`tap ${tapName}`, 'tap eth0']);
      expect(downs.map((p) => `${p.name} ${String(p.error)}`)).toEqual(['eth0 null', `${tapName} null`]);
    } finally {
      const gotClose = new Promise<void>((r) => net.once('close', () => r()));
      await net.close();
      await gotClose;
      server.close();
      udp.close();
    }
    expect(() => net.attachTap('x')).toThrow(/closed/);
    // The guest's interface went with its detach.
    expect(run('ip', ['-n', ns, 'link', 'show', 'dev', 'eth0'], 5_000).status).not.toBe(0);
  });
});
