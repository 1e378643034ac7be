/**
 * The CNI plugin under podman's CNI backend (rootful podman 4, runc,
 * cgroupfs), pointed at a private configuration: CONTAINERS_CONF names a
 * containers.conf in this test's directory, with its own network config
 * and plugin directories and its own storage (--root/--runroot), so the
 * machine's CNI and containers configuration are not touched. The plugin
 * starts the daemon on first use ("startDaemon").
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, symlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, ROOT, run, Sandbox, sleep, type Result } from './harness.js';
import { busyboxRootfs, httpServer, runAsync } from './slirp-harness.js';

const sandbox = new Sandbox();
const NET = `usncni${randomBytes(3).toString('hex')}`;
let dir: string;
let rootfs: string;
let sock: string;
const containers: string[] = [];

function podmanArgs(args: string[]): string[] {
  return ['--root', join(dir, 'root'), '--runroot', join(dir, 'runroot'), '--storage-driver', 'vfs', ...args];
}

/** podman with this file's private containers.conf (the environment of the podman process only). */
function podman(args: string[], timeoutMs = 120_000): Promise<Result> {
  return runAsync('env', [`CONTAINERS_CONF=${join(dir, 'containers.conf')}`, 'podman', ...podmanArgs(args)], timeoutMs);
}

function name(tag: string): string {
  const n = `${tag}${randomBytes(3).toString('hex')}`;
  containers.push(n);
  return n;
}

const RUN = ['run', '--runtime', 'runc', '--cgroup-manager', 'cgroupfs', '--ulimit', 'nofile=20000:20000', '--ulimit', 'nproc=1024:1024'];

/** The plugin run by hand, as a runtime would. */
function plugin(command: string, extraEnv: Record<string, string>, conf: object): Result {
  const r = run('env', [
    `CNI_COMMAND=${command}`,
    ...Object.entries(extraEnv).map(([k, v]) => `${k}=${v}`),
    'sh', '-c', `printf '%s' '${JSON.stringify(conf)}' | ${join(ROOT, 'bin', 'usernet-cni')}`,
  ]);
  return r;
}

function conflistPlugin(): Record<string, unknown> {
  return {
    type: 'usernet-cni',
    apiSocket: sock,
    startDaemon: true,
    daemonArgs: ['--no-warm-up', '--dns', '127.0.0.1:9', '--pid-file', join(dir, 'daemon.pid')],
    capabilities: { portMappings: true, aliases: true },
  };
}

beforeAll(() => {
  if (run('which', ['podman']).status !== 0) throw new Error('podman is not installed: apt-get install podman');
  dir = sandbox.tmpdir();
  sock = join(dir, 'usernet', 'api.sock');
  rootfs = busyboxRootfs(join(dir, 'rootfs'));
  for (const a of ['ping', 'nslookup', 'wc']) symlinkSync('busybox', join(rootfs, 'bin', a));
  mkdirSync(join(dir, 'cni'));
  mkdirSync(join(dir, 'plugins'));
  symlinkSync(join(ROOT, 'bin', 'usernet-cni'), join(dir, 'plugins', 'usernet-cni'));
  writeFileSync(join(dir, 'cni', `${NET}.conflist`), JSON.stringify({ cniVersion: '1.0.0', name: NET, plugins: [conflistPlugin()] }));
  writeFileSync(
    join(dir, 'containers.conf'),
    `[network]\nnetwork_backend = "cni"\ncni_plugin_dirs = ["${join(dir, 'plugins')}"]\nnetwork_config_dir = "${join(dir, 'cni')}"\n`,
  );
});

afterAll(async () => {
  for (const c of containers.splice(0)) await podman(['rm', '-f', '-t', '0', c], 60_000);
  let pid = '';
  try {
    pid = readFileSync(join(dir, 'daemon.pid'), 'utf8').trim();
  } catch {
    // never started
  }
  if (/^\d+$/.test(pid)) {
    run('kill', ['-TERM', pid]);
    for (let i = 0; i < 100 && run('kill', ['-0', pid]).status === 0; i++) await sleep(50);
  }
  await sandbox.cleanup();
});

describe('CNI plugin with podman', () => {
  it('two containers on one usernet network talk to each other by name, reach host loopback, and a published port reaches one', async () => {
    const { server, port } = await httpServer('hello-host');
    const published = await freePort();
    try {
      const a = name('cnia');
      // No -p: rootful podman holds every -p host port itself (it expects kernel NAT from the portmap
      // plugin), so a userspace network cannot serve it; the port is published through the daemon.
      const started = await podman([
        ...RUN, '-d', '--name', a, '--network', NET, '--dns', '10.0.2.3', '--rootfs', rootfs, '/bin/httpd', '-f', '-p', '80', '-h', '/www',
      ]);
      expect(started.stderr).not.toMatch(/Error/);
      expect(started.status).toBe(0);
      const id = started.stdout.trim();
      expect(id).toMatch(/^[0-9a-f]{64}$/);
      const pub = run('node', [join(ROOT, 'dist', 'src', 'cli', 'main.js'), 'publish', '--api-socket', sock, '--guest', `${id}.eth0`, `127.0.0.1:${published}:80`]);
      expect(pub.stderr).toBe('');
      const b = name('cnib');
      const r = await podman([
        ...RUN, '--rm', '--name', b, '--network', NET, '--dns', '10.0.2.3', '--rootfs', rootfs, '/bin/sh', '-c',
        // busybox wget crashes with -T here (SIGSEGV): the podman run's own time limit bounds it.
        `ip -o -4 addr show eth0; ping -c 1 -W 5 ${a}; wget -q -O - http://${a}/; wget -q -O - http://10.0.2.2:${port}/; echo`,
      ]);
      expect(r.stderr).not.toMatch(/Error/);
      expect(r.stdout).toMatch(/inet 10\.0\.2\.101\/24/);
      expect(r.stdout).toMatch(new RegExp(`PING ${a} \\(10\\.0\\.2\\.100\\)`));
      expect(r.stdout).toMatch(/hello-from-container\n/);
      expect(r.stdout).toMatch(/hello-host\n/);
      const got = await runAsync('curl', ['-sS', '--max-time', '10', `http://127.0.0.1:${published}/`]);
      expect(got.stdout).toBe('hello-from-container\n');
      // podman rm runs CNI DEL: the guest and the forward published for it are gone.
      expect((await podman(['rm', '-f', '-t', '0', a], 60_000)).status).toBe(0);
      const ls = JSON.parse(run('node', [join(ROOT, 'dist', 'src', 'cli', 'main.js'), 'ls', '--json', '--api-socket', sock]).stdout);
      expect(ls).toEqual([]);
      expect((await runAsync('curl', ['-sS', '--max-time', '5', `http://127.0.0.1:${published}/`])).status).not.toBe(0);
    } finally {
      server.close();
    }
  });

  it('turns runtimeConfig.portMappings into forwards, as a runtime without its own port handling passes them (ADD and DEL by hand)', async () => {
    const ns = sandbox.netns('cni');
    const server = sandbox.spawn('ip', ['netns', 'exec', ns, 'python3', '-c',
      'import http.server as h; s = h.HTTPServer(("0.0.0.0", 8080), h.SimpleHTTPRequestHandler); print("listening", flush=True); s.serve_forever()']);
    await server.waitFor(/listening/, 20_000);
    const hostPort = await freePort();
    const conf = { cniVersion: '1.0.0', name: NET, ...conflistPlugin(), runtimeConfig: { portMappings: [{ hostPort, containerPort: 8080, protocol: 'tcp', hostIP: '127.0.0.1' }] } };
    const ids = { CNI_CONTAINERID: 'byhand01', CNI_IFNAME: 'eth0', CNI_NETNS: `/run/netns/${ns}`, CNI_PATH: join(dir, 'plugins'), CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=byhand' };
    const add = plugin('ADD', ids, conf);
    expect(add.status).toBe(0);
    const result = JSON.parse(add.stdout);
    expect(result).toMatchObject({
      cniVersion: '1.0.0',
      interfaces: [{ name: 'eth0', sandbox: `/run/netns/${ns}` }],
      ips: [{ address: expect.stringMatching(/^10\.0\.2\.\d+\/24$/), gateway: '10.0.2.2', interface: 0 }, { address: expect.stringMatching(/^fd00::/), gateway: 'fd00::2' }],
      routes: [{ dst: '0.0.0.0/0', gw: '10.0.2.2' }],
      dns: { nameservers: ['10.0.2.3', 'fd00::3'] },
    });
    const got = await runAsync('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '10', `http://127.0.0.1:${hostPort}/`]);
    expect(got.stdout).toBe('200');
    expect(plugin('CHECK', ids, { ...conf, prevResult: result }).status).toBe(0);
    expect(plugin('DEL', ids, conf).status).toBe(0);
    expect(run('ip', ['-n', ns, 'link', 'show', 'eth0']).status).not.toBe(0);
    expect((await runAsync('curl', ['-sS', '--max-time', '5', `http://127.0.0.1:${hostPort}/`])).status).not.toBe(0);
    await server.stop();
  });

  it('speaks the protocol by hand: VERSION, STATUS, CHECK of an unknown container, DEL twice, GC, bad input', () => {
    const conf = { cniVersion: '1.1.0', name: NET, ...conflistPlugin() };
    const version = plugin('VERSION', {}, conf);
    expect(JSON.parse(version.stdout)).toEqual({ cniVersion: '1.1.0', supportedVersions: ['0.4.0', '1.0.0', '1.1.0'] });
    expect(plugin('STATUS', {}, conf).status).toBe(0);
    const ids = { CNI_CONTAINERID: 'deadbeef', CNI_IFNAME: 'eth0', CNI_NETNS: '/run/netns/none', CNI_PATH: join(dir, 'plugins') };
    const unknown = plugin('CHECK', ids, conf);
    expect(unknown.status).toBe(1);
    expect(JSON.parse(unknown.stdout)).toMatchObject({ code: 3 });
    for (let i = 0; i < 2; i++) {
      const del = plugin('DEL', ids, conf);
      expect(del.status).toBe(0);
      expect(del.stdout).toBe('');
    }
    expect(plugin('GC', {}, { ...conf, 'cni.dev/valid-attachments': [] }).status).toBe(0);
    const badNs = plugin('ADD', { ...ids, CNI_NETNS: '/run/netns/no-such-usernet-ns' }, conf);
    expect(badNs.status).toBe(1);
    expect(JSON.parse(badNs.stdout).msg).toMatch(/ENOENT|No such file/);
    const noEnv = plugin('ADD', {}, conf);
    expect(JSON.parse(noEnv.stdout)).toMatchObject({ code: 4, msg: 'CNI_CONTAINERID is not set' });
    const badVersion = plugin('ADD', ids, { ...conf, cniVersion: '0.1.0' });
    expect(JSON.parse(badVersion.stdout)).toMatchObject({ code: 1 });
    const notJson = run('env', ['CNI_COMMAND=ADD', 'sh', '-c', `echo '{oops' | ${join(ROOT, 'bin', 'usernet-cni')}`]);
    expect(JSON.parse(notJson.stdout)).toMatchObject({ code: 6 });
  });

  it('DEL succeeds when no daemon runs', () => {
    const conf = { cniVersion: '1.0.0', name: NET, type: 'usernet-cni', apiSocket: join(dir, 'nobody', 'api.sock') };
    const del = plugin('DEL', { CNI_CONTAINERID: 'x1', CNI_IFNAME: 'eth0' }, conf);
    expect(del.status).toBe(0);
  });
});
