/**
 * Port forwarding end to end: host clients on 127.0.0.1 reach servers inside
 * a namespace, through the slirp4netns API socket and through `usernet run -p`.
 * The servers report the peer address they see: it must be N+2.
 */
import { createSocket } from 'node:dgram';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Sandbox, sleep, usernetArgs } from './harness.js';
import { apiCall, spawnSlirp, Tracker } from './slirp-harness.js';

const sandbox = new Sandbox();
const tracker = new Tracker();
afterEach(async () => {
  await tracker.stopAll();
  await sandbox.cleanup();
});

/** A port that was free a moment ago on 127.0.0.1. */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Inside the namespace: TCP 8000 echoes lines prefixed with the peer address; UDP 9000 answers "<peer>:<data>". */
const GUEST_SERVERS = `
const net = require('net'), dgram = require('dgram');
net.createServer((s) => { s.write('peer ' + s.remoteAddress + '\\n'); s.on('data', (d) => s.write('echo ' + d)); s.on('error', () => {}); }).listen(8000, '0.0.0.0');
const u = dgram.createSocket('udp4');
u.on('message', (m, r) => u.send(r.address + ':' + m, r.port, r.address));
u.bind(9000, () => console.log('servers up'));
`;

function tcpClient(port: number): Promise<{ sock: Socket; lines: string[]; next: () => Promise<string> }> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    const lines: string[] = [];
    let buf = '';
    let waiter: (() => void) | null = null;
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        lines.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
      waiter?.();
    });
    const next = async (): Promise<string> => {
      for (let t = 0; t < 200 && lines.length === 0; t++) {
        await new Promise<void>((r) => {
          waiter = r;
          setTimeout(r, 50);
        });
      }
      const l = lines.shift();
      if (l === undefined) throw new Error('no line from the guest');
      return l;
    };
    sock.once('connect', () => resolve({ sock, lines, next }));
    sock.once('error', reject);
  });
}

function udpRequest(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    const timer = setTimeout(() => {
      s.close();
      reject(new Error('no UDP answer'));
    }, 5_000);
    s.on('message', (m) => {
      clearTimeout(timer);
      s.close();
      resolve(m.toString());
    });
    s.send(text, port, '127.0.0.1');
  });
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.on('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
  });
}

describe('port forwarding', () => {
  it('through the slirp4netns API: TCP and UDP reach the guest from N+2; removing a forward keeps live connections', async () => {
    const ns = sandbox.netns('pf');
    const sock = join(sandbox.tmpdir(), 'api.sock');
    const s = spawnSlirp(['-c', '-r', '4', '--disable-host-loopback', '-a', sock, '--netns-type=path', `/run/netns/${ns}`, 'tap0'], tracker.track);
    expect(await s.ready).toBe('1');
    const servers = sandbox.spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', GUEST_SERVERS]);
    await servers.waitFor(/servers up/);

    const tcpPort = await freePort();
    const udpPort = await freePort();
    const add1 = await apiCall(sock, { execute: 'add_hostfwd', arguments: { proto: 'tcp', host_addr: '127.0.0.1', host_port: tcpPort, guest_port: 8000 } });
    expect(add1).toEqual({ return: { id: 1 } });
    const add2 = await apiCall(sock, { execute: 'add_hostfwd', arguments: { proto: 'udp', host_addr: '127.0.0.1', host_port: udpPort, guest_addr: '10.0.2.100', guest_port: 9000 } });
    expect(add2).toEqual({ return: { id: 2 } });
    // The same port again cannot be bound.
    const dup = await apiCall(sock, { execute: 'add_hostfwd', arguments: { proto: 'tcp', host_addr: '127.0.0.1', host_port: tcpPort, guest_port: 8000 } });
    expect(dup).toEqual({ error: { desc: 'bad request: add_hostfwd: slirp_add_hostfwd failed' } });
    const list = await apiCall(sock, { execute: 'list_hostfwd' });
    expect(list.entries).toEqual([
      { id: 1, proto: 'tcp', host_addr: '127.0.0.1', host_port: tcpPort, guest_addr: '10.0.2.100', guest_port: 8000 },
      { id: 2, proto: 'udp', host_addr: '127.0.0.1', host_port: udpPort, guest_addr: '10.0.2.100', guest_port: 9000 },
    ]);

    const c = await tcpClient(tcpPort);
    expect(await c.next()).toBe('peer 10.0.2.2');
    c.sock.write('one\n');
    expect(await c.next()).toBe('echo one');
    expect(await udpRequest(udpPort, 'ping')).toBe('10.0.2.2:ping');

    expect(await apiCall(sock, { execute: 'remove_hostfwd', arguments: { id: 1 } })).toEqual({ return: {} });
    expect(await refused(tcpPort)).toBe(true);
    c.sock.write('two\n');
    expect(await c.next()).toBe('echo two');
    c.sock.destroy();
    const after = await apiCall(sock, { execute: 'list_hostfwd' });
    expect((after.entries as { id: number }[]).map((e) => e.id)).toEqual([2]);
  });

  it('usernet run -p forwards host loopback ports to the command inside', async () => {
    const tcpPort = await freePort();
    const udpPort = await freePort();
    const [cmd, args] = usernetArgs(['run', '-p', `127.0.0.1:${tcpPort}:8000`, '-p', `127.0.0.1:${udpPort}:9000/udp`, '--', process.execPath, '-e', GUEST_SERVERS]);
    const run = sandbox.spawn(cmd, args);
    await run.waitFor(/servers up/);
    const c = await tcpClient(tcpPort);
    expect(await c.next()).toBe('peer 10.0.2.2');
    c.sock.destroy();
    expect(await udpRequest(udpPort, 'hi')).toBe('10.0.2.2:hi');
    await run.stop('SIGTERM');
    await sleep(100);
    expect(await refused(tcpPort)).toBe(true);
  });
});
