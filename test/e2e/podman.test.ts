/**
 * podman (Debian's 4.3.1) running containers on usernet unchanged:
 * --network-cmd-path points at bin/slirp4netns. The container is a local
 * busybox root (--rootfs), so nothing is pulled. On this machine podman
 * needs runc, cgroupfs and explicit ulimits (the defaults exceed the
 * sandbox's limits). IPv6 stays on, as podman has it by default (it passes
 * --enable-ipv6).
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { connect, type Server } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { run, Sandbox } from './harness.js';
import { busyboxRootfs, freeTcpPort, httpServer, publicTmpdir, runAsync, SLIRP_BIN } from './slirp-harness.js';

const sandbox = new Sandbox();
const servers: Server[] = [];
const containers: string[] = [];
let rootfs = '';
let dir = '';

const RUN = [
  `--network-cmd-path=${SLIRP_BIN}`, 'run', '--rm', '--runtime', 'runc', '--cgroup-manager', 'cgroupfs',
  '--ulimit', 'nofile=20000:20000', '--ulimit', 'nproc=1024:1024',
];

beforeAll(() => {
  if (run('which', ['podman']).status !== 0) throw new Error('podman is not installed: apt-get install podman');
  dir = publicTmpdir();
  rootfs = busyboxRootfs(`${dir}/rootfs`);
});
afterEach(async () => {
  for (const s of servers.splice(0)) s.close();
  await sandbox.cleanup();
  for (const c of containers.splice(0)) run('podman', ['rm', '-f', '-t', '0', c]);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function name(): string {
  const n = `usn-pm-${randomBytes(3).toString('hex')}`;
  containers.push(n);
  return n;
}

/** usernet processes podman started (their API socket lives under /run/libpod). */
function slirpCount(): number {
  return run('ps', ['-eo', 'args']).stdout.split('\n').filter((l) => l.includes('dist/src/cli/main.js slirp4netns') && l.includes('/run/libpod/')).length;
}

describe('podman --network slirp4netns with usernet', () => {
  it('a container reaches host-loopback servers over IPv4 and IPv6 with allow_host_loopback=true', async () => {
    const { server, port } = await httpServer('hello-podman');
    servers.push(server);
    const v6 = await httpServer('hello-podman-v6', '::1');
    servers.push(v6.server);
    const r = await runAsync(
      'podman',
      [...RUN, '--name', name(), '--network', 'slirp4netns:allow_host_loopback=true', '--rootfs', rootfs, '/bin/sh', '-c',
        // SLAAC takes a moment after the network is up (RS delay and DAD).
        `ip -o addr show tap0; wget -q -O - http://10.0.2.2:${port}/; echo; ` +
          'sleep 3; ' +
          `ip -o -6 addr show tap0 scope global; wget -q -O - http://[fd00::2]:${v6.port}/`],
      120_000,
    );
    expect(r.stderr).not.toMatch(/Error/);
    expect(r.stdout).toMatch(/inet 10\.0\.2\.100\/24/);
    expect(r.stdout).toMatch(/hello-podman\n/);
    expect(r.stdout).toMatch(/inet6 fd00::[0-9a-f:]+\/64 scope global/);
    expect(r.stdout).toMatch(/hello-podman-v6$/);
    expect(r.status).toBe(0);
  });

  it('host loopback is off by default (podman passes --disable-host-loopback)', async () => {
    const { server, port } = await httpServer('must-not-arrive');
    servers.push(server);
    const r = await runAsync(
      'podman',
      [...RUN, '--name', name(), '--network', 'slirp4netns', '--rootfs', rootfs, '/bin/sh', '-c',
        `wget -q -T 5 -O - http://10.0.2.2:${port}/; echo status=$?`],
      120_000,
    );
    expect(r.stdout).not.toMatch(/must-not-arrive/);
    expect(r.stdout).toMatch(/status=[1-9]/);
  });

  it('port_handler=slirp4netns -p: a host client reaches a server in the container', async () => {
    const port = await freeTcpPort();
    const c = name();
    const p = sandbox.spawn('podman', [
      ...RUN, '--name', c, '--network', 'slirp4netns:port_handler=slirp4netns', '-p', `127.0.0.1:${port}:8000/tcp`,
      '--rootfs', rootfs, '/bin/sh', '-c', 'httpd -p 8000 -h /www && echo server up && sleep 60',
    ]);
    await p.waitFor(/server up/, 60_000);
    const reply = await new Promise<string>((resolve, reject) => {
      let got = '';
      const s = connect(port, '127.0.0.1', () => s.write('GET / HTTP/1.0\r\n\r\n'));
      s.setEncoding('utf8');
      s.on('data', (d: string) => (got += d));
      s.on('end', () => resolve(got));
      s.on('error', reject);
    });
    expect(reply).toMatch(/^HTTP\/1\.[01] 200/);
    expect(reply).toMatch(/hello-from-container/);
    // Stopping the container closes the exit fd: usernet goes away with it.
    run('podman', ['rm', '-f', '-t', '0', c]);
    await p.exited;
    for (let i = 0; i < 50 && slirpCount() > 0; i++) await new Promise((r) => setTimeout(r, 100));
    expect(slirpCount()).toBe(0);
  });

  it('enable_ipv6=false leaves the container without IPv6 (podman then omits --enable-ipv6)', async () => {
    const r = await runAsync(
      'podman',
      [...RUN, '--name', name(), '--network', 'slirp4netns:enable_ipv6=false', '--rootfs', rootfs, '/bin/sh', '-c', 'sleep 3; ip -o -6 addr show tap0 scope global; echo done'],
      120_000,
    );
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe('done');
  });
});
