/**
 * Docker (Debian's docker.io 20.10) on a usernet daemon, both ways: the
 * network and IPAM driver (`usernet docker-plugin`, `docker network create
 * -d usernet --ipam-driver usernet`) and the label follower (`usernet
 * docker`, containers started with --network none).
 *
 * The test's dockerd is private: its own data root, exec root, pid file,
 * API socket and config file in this test's directory, no bridge, no
 * iptables, vfs storage, its own cgroup parent, and a private mount
 * namespace in which a tmpfs covers /run (so it starts its own containerd
 * and sees no /run/containerd of the machine's) and this test's plugin
 * directory is bound on /run/docker/plugins, where dockerd looks for
 * plugins. The image is a busybox root imported from a tarball: no pulls.
 * Everything is named i15d-<hex> and removed in afterAll, failed or not.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Background, freePort, Sandbox, sleep, usernetAsync, type Result } from './harness.js';
import { busyboxRootfs, httpServer, runAsync } from './slirp-harness.js';

const DOCKER = '/usr/bin/docker';
const DOCKERD = '/usr/sbin/dockerd';
const haveDocker = existsSync(DOCKER) && existsSync(DOCKERD);
if (!haveDocker) console.warn('docker.test.ts: SKIPPED: docker.io is not installed (apt-get install docker.io)');

const ID = `i15d-${randomBytes(3).toString('hex')}`;
const IMAGE = `${ID}-busybox`;
const NET = `${ID}-net`;
const sandbox = new Sandbox('i15d');
let dir: string;
let sock: string;
let dockerSock: string;
let daemon: Background;
let dockerd: Background | null = null;
const containers: string[] = [];

/** The CLI of this test's dockerd. */
function docker(args: string[], timeoutMs = 60_000): Promise<Result> {
  return runAsync(DOCKER, ['-H', `unix://${dockerSock}`, ...args], timeoutMs);
}

async function mustDocker(args: string[], timeoutMs = 60_000): Promise<string> {
  const r = await docker(args, timeoutMs);
  if (r.status !== 0) throw new Error(`docker ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr}`);
  return r.stdout;
}

function container(tag: string): string {
  const n = `${ID}-${tag}`;
  containers.push(n);
  return n;
}

function client(args: string[]): Promise<Result> {
  return usernetAsync([args[0], '--api-socket', sock, ...args.slice(1)], 30_000);
}

async function guestIds(): Promise<string[]> {
  const r = await client(['ls', '--json']);
  return (JSON.parse(r.stdout) as { id: string }[]).map((g) => g.id);
}

/** The daemon's guest ids once `id` is no longer among them (bounded wait: Docker and the follower act asynchronously). */
async function waitDetached(id: string): Promise<string[]> {
  let ids: string[] = [];
  for (let i = 0; i < 100; i++) {
    ids = await guestIds();
    if (!ids.includes(id)) break;
    await sleep(100);
  }
  return ids;
}

/** Removes the cgroups dockerd made under its --cgroup-parent, deepest first. */
function removeCgroups(): void {
  const root = '/sys/fs/cgroup';
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name));
    try {
      rmdirSync(d);
    } catch {
      // still in use or gone
    }
  };
  for (const c of existsSync(root) ? readdirSync(root) : []) {
    const d = join(root, c, ID);
    if (existsSync(d)) walk(d);
  }
}

beforeAll(async () => {
  if (!haveDocker) return;
  dir = sandbox.tmpdir();
  sock = join(dir, 'api.sock');
  dockerSock = join(dir, 'docker.sock');
  const plugins = join(dir, 'plugins');
  mkdirSync(plugins);
  for (const d of ['data', 'exec']) mkdirSync(join(dir, d));
  writeFileSync(join(dir, 'daemon.json'), '{}\n');
  const rootfs = busyboxRootfs(join(dir, 'rootfs'));
  for (const a of ['ping', 'grep']) symlinkSync('busybox', join(rootfs, 'bin', a));

  // One daemon for both ways: the plugin's containers and the labelled ones share its network.
  daemon = sandbox.spawnUsernet([
    'docker-plugin', '--api-socket', sock, '--plugin-socket', join(plugins, 'usernet.sock'), '--no-warm-up', '--dns', '127.0.0.1:9', '--log-level', 'info',
  ]);
  await daemon.waitFor(/daemon: API on/, 30_000);

  const dockerdArgs = [
    '--bridge=none', '--iptables=false', '--ip6tables=false', '--ip-forward=false', '--ip-masq=false',
    '--data-root', join(dir, 'data'), '--exec-root', join(dir, 'exec'), '--pidfile', join(dir, 'docker.pid'),
    '-H', `unix://${dockerSock}`, '--config-file', join(dir, 'daemon.json'), '--storage-driver', 'vfs',
    // Containers never ask the machine's resolver: usernet's DNS (which knows only the guests' names here).
    '--dns', '10.0.2.3', '--exec-opt', 'native.cgroupdriver=cgroupfs', '--cgroup-parent', `/${ID}`,
  ];
  // unshare and sh exec in place: the PID is dockerd's.
  dockerd = sandbox.spawn('unshare', [
    '-m', '--propagation', 'private', 'sh', '-c',
    `mount -t tmpfs ${ID} /run && mkdir -p /run/docker/plugins && mount --bind ${plugins} /run/docker/plugins && exec ${DOCKERD} "$@"`,
    'sh', ...dockerdArgs,
  ]);
  let up = false;
  for (let i = 0; i < 300 && !up && dockerd.running; i++) {
    up = (await docker(['version'], 10_000)).status === 0;
    if (!up) await sleep(100);
  }
  if (!up) throw new Error(`dockerd did not start: ${dockerd.stderr.slice(-2000)}`);
  const imported = await runAsync('sh', ['-c', `tar -C ${rootfs} -c . | ${DOCKER} -H unix://${dockerSock} import - ${IMAGE}`], 120_000);
  if (imported.status !== 0) throw new Error(`docker import failed: ${imported.stderr}`);
}, 120_000);

afterAll(async () => {
  if (!haveDocker) return;
  if (dockerd?.running) {
    for (const c of containers.splice(0)) await docker(['rm', '-f', c], 60_000);
    await docker(['network', 'rm', NET], 30_000);
  }
  await dockerd?.stop('SIGTERM', 30_000);
  await sandbox.cleanup();
  removeCgroups();
}, 120_000);

/** Waits for the interface `usernet docker` gives a container after it started. */
const WAIT_ETH0 = 'i=0; until ip -o -4 addr show eth0 2>/dev/null | grep -q inet || [ $i -ge 300 ]; do sleep 0.1; i=$((i+1)); done';

describe.skipIf(!haveDocker)('Docker on usernet (docker.io 20.10)', () => {
  it('network driver: two containers reach each other by name, host loopback through N+2, and a published port', async () => {
    const { server, port } = await httpServer('hello-host');
    try {
      const created = await docker(['network', 'create', '-d', 'usernet', '--ipam-driver', 'usernet', NET]);
      expect(created.stderr).toBe('');
      expect(created.stdout.trim()).toMatch(/^[0-9a-f]{64}$/);
      const inspect = JSON.parse(await mustDocker(['network', 'inspect', NET]))[0];
      expect(inspect.IPAM.Config[0]).toMatchObject({ Subnet: '10.0.2.0/24', Gateway: '10.0.2.2' });

      const published = await freePort();
      const web = container('web');
      await mustDocker(['run', '-d', '--name', web, '--network', NET, '--dns', '10.0.2.3', '-p', `127.0.0.1:${published}:80`, IMAGE, '/bin/httpd', '-f', '-p', '80', '-h', '/www']);
      const webInfo = JSON.parse(await mustDocker(['inspect', web]))[0].NetworkSettings.Networks[NET];
      expect(webInfo.IPAddress).toMatch(/^10\.0\.2\.(1\d\d|2[0-4]\d|25[0-4])$/);
      expect(webInfo.MacAddress).toBe(`52:54:0a:00:02:${Number(webInfo.IPAddress.split('.')[3]).toString(16).padStart(2, '0')}`);
      expect(await guestIds()).toContain(webInfo.EndpointID);

      const cli = container('cli');
      const r = await docker([
        'run', '--rm', '--name', cli, '--network', NET, '--dns', '10.0.2.3', IMAGE, '/bin/sh', '-c',
        // busybox wget crashes with -T here (SIGSEGV): the docker run's own time limit bounds it.
        `ip -o -4 addr show eth0; ip route; ping -c 1 -W 5 ${web}; wget -q -O - http://${web}/; wget -q -O - http://10.0.2.2:${port}/; echo`,
      ], 60_000);
      expect(r.stdout).toMatch(/eth0\s+inet 10\.0\.2\.\d+\/24/);
      expect(r.stdout).toMatch(/default via 10\.0\.2\.2 dev eth0/);
      expect(r.stdout).toMatch(new RegExp(`PING ${web} \\(${webInfo.IPAddress.replace(/\./g, '\\.')}\\)`));
      expect(r.stdout).toMatch(/1 packets received/);
      expect(r.stdout).toMatch(/hello-from-container\n/);
      expect(r.stdout).toMatch(/hello-host\n/);

      const got = await runAsync('curl', ['-sS', '--max-time', '10', `http://127.0.0.1:${published}/`]);
      expect(got.stdout).toBe('hello-from-container\n');

      // Removing the container removes its endpoint: the guest, its tap and its forward are gone.
      expect((await docker(['rm', '-f', web])).status).toBe(0);
      expect(await waitDetached(webInfo.EndpointID)).not.toContain(webInfo.EndpointID);
      expect((await runAsync('ip', ['link', 'show', `usn${String(webInfo.EndpointID).slice(0, 12)}`])).status).not.toBe(0);
      expect((await runAsync('curl', ['-sS', '--max-time', '5', `http://127.0.0.1:${published}/`])).status).not.toBe(0);
      // One Docker network per usernet: a second is refused with a reason.
      const second = await docker(['network', 'create', '-d', 'usernet', '--ipam-driver', 'usernet', `${ID}-net2`]);
      expect(second.status).not.toBe(0);
      expect(second.stderr).toMatch(/exists already/);
      expect((await docker(['network', 'rm', NET])).status).toBe(0);
    } finally {
      server.close();
    }
  });

  it('usernet docker: labelled --network none containers (one running before it starts) reach each other by name, host loopback, IPv6, and a published port', async () => {
    const { server, port } = await httpServer('hello-host');
    const published = await freePort();
    let follower: Background | null = null;
    try {
      const web = container('lweb');
      await mustDocker([
        'run', '-d', '--name', web, '--network', 'none', '--dns', '10.0.2.3', '--label', `usernet.network=${ID}`,
        '--label', `usernet.publish=127.0.0.1:${published}:80`, IMAGE, '/bin/sh', '-c', `${WAIT_ETH0}; exec /bin/httpd -f -p 80 -h /www`,
      ]);
      // Started after the container: it attaches what already runs.
      follower = sandbox.spawnUsernet(['docker', '--api-socket', sock, '--docker-host', `unix://${dockerSock}`, '--network', ID]);
      await follower.waitFor(new RegExp(`${web} \\(\\w+\\) attached`), 30_000);

      const cli = container('lcli');
      const r = await docker([
        'run', '--rm', '--name', cli, '--network', 'none', '--dns', '10.0.2.3', '--label', `usernet.network=${ID}`,
        '--sysctl', 'net.ipv6.conf.all.disable_ipv6=0', IMAGE, '/bin/sh', '-c',
        `${WAIT_ETH0}; ip -o -4 addr show eth0; cat /etc/resolv.conf; ping -c 1 -W 5 ${web}; wget -q -O - http://${web}/; wget -q -O - http://10.0.2.2:${port}/; echo; ` +
          // SLAAC from the gateway's router advertisements (bounded wait).
          'i=0; until ip -o -6 addr show eth0 | grep -q "inet6 fd00::"  || [ $i -ge 100 ]; do sleep 0.1; i=$((i+1)); done; ip -o -6 addr show eth0',
      ], 90_000);
      expect(r.stdout).toMatch(/eth0\s+inet 10\.0\.2\.\d+\/24/);
      expect(r.stdout).toMatch(/nameserver 10\.0\.2\.3/);
      expect(r.stdout).toMatch(new RegExp(`PING ${web} \\(10\\.0\\.2\\.\\d+\\)`));
      expect(r.stdout).toMatch(/1 packets received/);
      expect(r.stdout).toMatch(/hello-from-container\n/);
      expect(r.stdout).toMatch(/hello-host\n/);
      expect(r.stdout).toMatch(/inet6 fd00::5054:aff:fe00:[0-9a-f]+\/64/);
      expect(follower.stderr).toMatch(new RegExp(`${cli} \\(\\w+\\) attached: 10\\.0\\.2\\.\\d+, name ${cli}`));

      const got = await runAsync('curl', ['-sS', '--max-time', '10', `http://127.0.0.1:${published}/`]);
      expect(got.stdout).toBe('hello-from-container\n');

      const webId = (await mustDocker(['inspect', '-f', '{{.Id}}', web])).trim();
      expect(await guestIds()).toContain(webId);
      expect((await docker(['rm', '-f', web])).status).toBe(0);
      expect(await waitDetached(webId)).not.toContain(webId);
      expect((await runAsync('curl', ['-sS', '--max-time', '5', `http://127.0.0.1:${published}/`])).status).not.toBe(0);
      expect(follower.running).toBe(true);
      expect((await follower.stop('SIGTERM', 10_000)).code).toBe(0);
    } finally {
      server.close();
      await follower?.stop('SIGTERM', 5_000);
    }
  });
});
