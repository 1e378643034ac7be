/**
 * podman (Debian's 4.3.1) running containers on usernet unchanged:
 * --network-cmd-path points at bin/slirp4netns (podmanRun in
 * slirp-checks.ts). The container is a local busybox root (--rootfs), so
 * nothing is pulled. IPv6 stays on, as podman has it by default (it passes
 * --enable-ipv6).
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { type Server } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { run, Sandbox } from './harness.js';
import { busyboxRootfs, httpServer, publicTmpdir, runAsync, SLIRP_BIN } from './slirp-harness.js';
import { podmanForward, podmanRun, podmanTraffic, slirpWrapper, startTrafficPeers } from './slirp-checks.js';

const sandbox = new Sandbox();
const servers: Server[] = [];
const containers: string[] = [];
let rootfs = '';
let dir = '';

const RUN = podmanRun();

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
    await podmanForward(sandbox, SLIRP_BIN, rootfs, name());
  });

  it('a container carries TCP both ways (sha256), UDP, DNS through the forwarder, ICMP and IPv6', async () => {
    const peers = await startTrafficPeers(sandbox, 'usn');
    try {
      // The wrapper only binds the test's resolv.conf for usernet (and logs): podman runs it as it runs bin/slirp4netns.
      const wrapper = slirpWrapper(sandbox.tmpdir(), { resolvConf: peers.resolvConf });
      await podmanTraffic(wrapper.path, rootfs, name(), peers);
    } finally {
      await peers.close();
    }
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
