/**
 * usernet as slirp4netns, driven by hand the way PEERS.md runs the real one:
 * a namespace from unshare(1) or ip-netns(8), bin/slirp4netns attached to it,
 * curl inside reaching a server on host loopback through 10.0.2.2.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { must, run, Sandbox, sleep } from './harness.js';
import { httpServer, runAsync, SLIRP_BIN, spawnSlirp, Tracker, waitExit } from './slirp-harness.js';

const sandbox = new Sandbox();
const tracker = new Tracker();
const servers: Server[] = [];
afterEach(async () => {
  await tracker.stopAll();
  for (const s of servers.splice(0)) s.close();
  await sandbox.cleanup();
});

async function serve(body: string, host = '127.0.0.1'): Promise<number> {
  const { server, port } = await httpServer(body, host);
  servers.push(server);
  return port;
}

/** A process in a fresh network namespace (unshare -n), for PID mode. */
async function unsharedPid(): Promise<number> {
  const b = sandbox.spawn('unshare', ['-n', 'sleep', '600']);
  for (let i = 0; i < 100 && run('readlink', [`/proc/${b.pid}/ns/net`]).stdout === run('readlink', ['/proc/self/ns/net']).stdout; i++) await sleep(10);
  return b.pid;
}

describe('usernet slirp4netns', () => {
  it('--help and --version exit 0 on stdout; bad usage exits 1 with usage on stdout', () => {
    const h = run(SLIRP_BIN, ['--help']);
    expect(h.status).toBe(0);
    expect(h.stdout).toContain('--netns-type');
    expect(h.stdout).toContain('--disable-host-loopback');
    const v = run(SLIRP_BIN, ['--version']);
    expect(v.status).toBe(0);
    expect(v.stdout).toMatch(/slirp4netns version 1\.2\.0/);
    const bad = run(SLIRP_BIN, ['--frobnicate', '1', 'tap0']);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/unrecognized option '--frobnicate'/);
    expect(bad.stdout).toMatch(/^Usage: /);
    expect(h.stdout).toContain('--enable-ipv6');
    expect(h.stdout).toContain('--outbound-addr6');
    const six = run(SLIRP_BIN, ['--enable-ipv6', '--mtu=1000', '1', 'tap0']);
    expect(six.status).toBe(1);
    expect(six.stderr).toMatch(/IPv6 needs an MTU of at least 1280/);
  });

  it('PID mode with --configure --mtu=65520: curl inside reaches a host-loopback server via 10.0.2.2', async () => {
    const port = await serve('hello-from-host');
    const pid = await unsharedPid();
    const s = spawnSlirp(['--configure', '--mtu=65520', '-r', '4', String(pid), 'tap0'], tracker.track);
    expect(await s.ready).toBe('1');
    const link = must('nsenter', ['-t', String(pid), '-n', 'ip', '-o', 'link', 'show', 'tap0']);
    expect(link).toMatch(/mtu 65520/);
    expect(link).toMatch(/UP/);
    expect(must('nsenter', ['-t', String(pid), '-n', 'ip', '-o', 'addr', 'show', 'tap0'])).toMatch(/inet 10\.0\.2\.100\/24/);
    expect(must('nsenter', ['-t', String(pid), '-n', 'ip', 'route'])).toMatch(/default via 10\.0\.2\.2 dev tap0/);
    expect(must('nsenter', ['-t', String(pid), '-n', 'ip', '-o', 'link', 'show', 'lo'])).toMatch(/UP/);
    const r = await runAsync('nsenter', ['-t', String(pid), '-n', 'curl', '-s', '-m', '10', `http://10.0.2.2:${port}/`]);
    expect(r.stdout).toBe('hello-from-host');
    expect(s.bg.running).toBe(true);
  });

  it('path mode (--netns-type=path), --macaddress and --cidr; --disable-host-loopback blocks 10.0.2.2', async () => {
    const port = await serve('ok');
    const ns = sandbox.netns('s4p');
    const s = spawnSlirp(
      ['-c', '--cidr=10.7.0.0/24', '--macaddress=02:11:22:33:44:55', '--disable-host-loopback', '-r4', '--netns-type=path', `/run/netns/${ns}`, 'eth9'],
      tracker.track,
    );
    expect(await s.ready).toBe('1');
    expect(must('ip', ['-n', ns, '-o', 'link', 'show', 'eth9'])).toMatch(/link\/ether 02:11:22:33:44:55/);
    expect(must('ip', ['-n', ns, '-o', 'addr', 'show', 'eth9'])).toMatch(/inet 10\.7\.0\.100\/24/);
    // The gateway itself answers; host loopback behind it is off.
    const ping = await runAsync('ip', ['netns', 'exec', ns, 'ping', '-c', '1', '-W', '3', '10.7.0.2']);
    expect(ping.stdout).toMatch(/1 received/);
    const r = await runAsync('ip', ['netns', 'exec', ns, 'curl', '-s', '-m', '5', `http://10.7.0.2:${port}/`]);
    expect(r.status).not.toBe(0);
    expect(r.stdout).toBe('');
  });

  it('-6 (--enable-ipv6): the namespace takes a SLAAC address and reaches host ::1 via [fd00::2]', async () => {
    const port = await serve('hello-v6', '::1');
    const ns = sandbox.netns('s46');
    const s = spawnSlirp(['-c', '-6', '-r', '4', '--netns-type=path', `/run/netns/${ns}`, 'tap0'], tracker.track);
    expect(await s.ready).toBe('1');
    let addr = '';
    for (let i = 0; i < 100 && !/inet6 fd00:.*scope global(?!.*tentative)/.test(addr); i++) {
      await new Promise((r) => setTimeout(r, 100));
      addr = must('ip', ['-n', ns, '-o', '-6', 'addr', 'show', 'dev', 'tap0', 'scope', 'global']);
    }
    expect(addr).toMatch(/inet6 fd00::[0-9a-f:]+\/64 scope global/);
    const r = await runAsync('ip', ['netns', 'exec', ns, 'curl', '-s', '-m', '10', `http://[fd00::2]:${port}/`]);
    expect(r.stdout).toBe('hello-v6');
    // Without -6 there is no IPv6 router on the link.
    const ns2 = sandbox.netns('s4n');
    const s2 = spawnSlirp(['-c', '-r', '4', '--netns-type=path', `/run/netns/${ns2}`, 'tap0'], tracker.track);
    expect(await s2.ready).toBe('1');
    await new Promise((r) => setTimeout(r, 3000));
    expect(must('ip', ['-n', ns2, '-o', '-6', 'addr', 'show', 'dev', 'tap0', 'scope', 'global'])).toBe('');
  });

  it('attaches to an existing tap (as rootlesskit creates it) without --configure', async () => {
    const port = await serve('attached');
    const ns = sandbox.netns('s4a');
    must('ip', ['-n', ns, 'tuntap', 'add', 'dev', 'tap0', 'mode', 'tap']);
    must('ip', ['-n', ns, 'link', 'set', 'tap0', 'up']);
    must('ip', ['-n', ns, 'addr', 'add', '10.0.2.100/24', 'dev', 'tap0']);
    must('ip', ['-n', ns, 'route', 'add', 'default', 'via', '10.0.2.2']);
    const s = spawnSlirp(['--mtu', '1500', '-r', '4', '--netns-type', 'path', `/run/netns/${ns}`, 'tap0'], tracker.track);
    expect(await s.ready).toBe('1');
    const r = await runAsync('ip', ['netns', 'exec', ns, 'curl', '-s', '-m', '10', `http://10.0.2.2:${port}/`]);
    expect(r.stdout).toBe('attached');
  });

  it('ready fd: nothing is written when start-up fails, and the exit status is 1', async () => {
    const s = spawnSlirp(['-c', '-r', '4', '--netns-type=path', '/run/netns/usn-does-not-exist', 'tap0'], tracker.track);
    expect(await s.ready).toBe('');
    const e = await waitExit(s.bg, 10_000);
    expect(e?.code).toBe(1);
    expect(s.bg.stderr).toMatch(/netns|No such file/i);
  });

  it('exit fd: data does not stop it, hang-up does; the API socket is unlinked', async () => {
    const ns = sandbox.netns('s4e');
    const sock = join(sandbox.tmpdir(), 'api.sock');
    const s = spawnSlirp(['-c', '-e', '3', '-r', '4', '-a', sock, '--netns-type=path', `/run/netns/${ns}`, 'tap0'], tracker.track);
    expect(await s.ready).toBe('1');
    expect(existsSync(sock)).toBe(true);
    const exitFd = s.child.stdio[3] as NodeJS.WritableStream & { end(): void };
    exitFd.write('some data\n');
    await sleep(500);
    expect(s.bg.running).toBe(true);
    exitFd.end();
    const e = await waitExit(s.bg, 10_000);
    expect(e?.code).toBe(0);
    expect(existsSync(sock)).toBe(false);
  });

  it('SIGTERM leaves no process, tap or socket file behind', async () => {
    const ns = sandbox.netns('s4t');
    const sock = join(sandbox.tmpdir(), 'api.sock');
    const s = spawnSlirp(['-c', '-r', '4', '--api-socket', sock, '--netns-type=path', `/run/netns/${ns}`, 'tap0'], tracker.track);
    expect(await s.ready).toBe('1');
    expect(must('ip', ['-n', ns, '-o', 'link', 'show', 'tap0'])).toMatch(/tap0/);
    s.child.kill('SIGTERM');
    const e = await waitExit(s.bg, 10_000);
    expect(e).toEqual({ code: 0, signal: null });
    expect(existsSync(sock)).toBe(false);
    expect(run('ip', ['-n', ns, 'link', 'show', 'tap0']).status).not.toBe(0);
    expect(run('kill', ['-0', String(s.bg.pid)]).status).not.toBe(0);
  });

  it('--outbound-addr binds outbound sockets, given as an address or an interface name', async () => {
    // A stand-in "host" namespace with two addresses, so nothing leaves this machine.
    const hostNs = sandbox.netns('s4o');
    must('ip', ['-n', hostNs, 'link', 'add', 'dum0', 'type', 'veth', 'peer', 'name', 'dum1']);
    must('ip', ['-n', hostNs, 'addr', 'add', '10.99.0.1/24', 'dev', 'dum0']);
    must('ip', ['-n', hostNs, 'addr', 'add', '10.98.0.7/24', 'dev', 'dum1']);
    must('ip', ['-n', hostNs, 'link', 'set', 'dum0', 'up']);
    must('ip', ['-n', hostNs, 'link', 'set', 'dum1', 'up']);
    const server = sandbox.spawn('ip', [
      'netns', 'exec', hostNs, process.execPath, '-e',
      "require('net').createServer(s=>s.end(s.remoteAddress)).listen(9099,'10.99.0.1',()=>console.log('listening'))",
    ]);
    await server.waitFor(/listening/);
    for (const outbound of ['10.98.0.7', 'dum1']) {
      const guestNs = sandbox.netns('s4g');
      // usernet itself runs in the stand-in host namespace.
      const inHost = spawnSlirp(['-c', '-r', '4', `--outbound-addr=${outbound}`, '--netns-type=path', `/run/netns/${guestNs}`, 'tap0'], tracker.track, [
        'ip', 'netns', 'exec', hostNs,
      ]);
      expect(await inHost.ready).toBe('1');
      const r = await runAsync('ip', ['netns', 'exec', guestNs, 'curl', '-s', '-m', '10', 'telnet://10.99.0.1:9099']);
      expect(r.stdout).toBe('10.98.0.7');
      inHost.child.kill('SIGTERM');
      await waitExit(inHost.bg, 5_000);
    }
  });
});
