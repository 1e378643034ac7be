/**
 * rootlesskit (Debian's 1.1.0) running unchanged on usernet: it is pointed at
 * bin/slirp4netns and run as an ordinary user with /etc/subuid entries, as
 * rootless Docker and friends run it.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { connect, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { run, Sandbox } from './harness.js';
import { ensureRootlessUser, httpServer, openTunForUsers, publicTmpdir, restoreTunMode, ROOTLESS_USER, runAsync, SLIRP_BIN } from './slirp-harness.js';

const sandbox = new Sandbox();
const servers: Server[] = [];
let dir = '';
let tunMode = 0o666;

beforeAll(() => {
  if (run('which', ['rootlesskit']).status !== 0) throw new Error('rootlesskit is not installed: apt-get install rootlesskit uidmap');
  ensureRootlessUser();
  tunMode = openTunForUsers();
  dir = publicTmpdir();
});
afterEach(async () => {
  for (const s of servers.splice(0)) s.close();
  await sandbox.cleanup();
});
afterAll(() => {
  restoreTunMode(tunMode);
  rmSync(dir, { recursive: true, force: true });
});

/**
 * A command line run as the rootless user. setpriv and env exec (no fork as
 * su does), so the PID the test holds is the shell's and stopping it by PID
 * reaches rootlesskit.
 */
function asUser(cmd: string): [string, string[]] {
  const uid = run('id', ['-u', ROOTLESS_USER]).stdout.trim();
  const gid = run('id', ['-g', ROOTLESS_USER]).stdout.trim();
  return [
    'setpriv',
    [`--reuid=${uid}`, `--regid=${gid}`, '--init-groups', 'env', `HOME=/home/${ROOTLESS_USER}`, `USER=${ROOTLESS_USER}`, 'sh', '-c', `cd /tmp && exec ${cmd}`],
  ];
}

const RK = `rootlesskit --net=slirp4netns --slirp4netns-binary=${SLIRP_BIN} --copy-up=/etc`;

describe('rootlesskit --net=slirp4netns with usernet', () => {
  it('the command inside reaches a host-loopback server through 10.0.2.2', async () => {
    const { server, port } = await httpServer('hello-rootlesskit');
    servers.push(server);
    const [cmd, args] = asUser(`timeout 60 ${RK} --mtu=65520 sh -c 'ip -o addr show tap0; curl -s -m 10 http://10.0.2.2:${port}/'`);
    const r = await runAsync(cmd, args, 90_000);
    expect(r.stdout).toMatch(/inet 10\.0\.2\.100\/24/);
    expect(r.stdout).toMatch(/hello-rootlesskit$/);
    expect(r.status).toBe(0);
  });

  it('--disable-host-loopback is honoured', async () => {
    const { server, port } = await httpServer('must-not-arrive');
    servers.push(server);
    const [cmd, args] = asUser(`timeout 60 ${RK} --disable-host-loopback sh -c 'curl -s -m 5 http://10.0.2.2:${port}/; echo status=$?'`);
    const r = await runAsync(cmd, args, 90_000);
    expect(r.stdout).not.toMatch(/must-not-arrive/);
    expect(r.stdout).toMatch(/status=[1-9]/);
  });

  it('--port-driver=slirp4netns -p: a host client reaches a server inside', async () => {
    const port = 20000 + Math.floor(Math.random() * 20000);
    const script = join(dir, 'server.cjs');
    writeFileSync(
      script,
      "require('net').createServer((s) => s.end('inside ' + s.remoteAddress + '\\n')).listen(8000, '0.0.0.0', () => console.log('server up'));\nsetTimeout(() => process.exit(0), 60000);\n",
    );
    const [cmd, args] = asUser(`${RK} --port-driver=slirp4netns -p 127.0.0.1:${port}:8000/tcp ${process.execPath} ${script}`);
    const rk = sandbox.spawn(cmd, args);
    await rk.waitFor(/server up/, 30_000);
    const reply = await new Promise<string>((resolve, reject) => {
      let got = '';
      const s = connect(port, '127.0.0.1');
      s.setEncoding('utf8');
      s.on('data', (d: string) => (got += d));
      s.on('end', () => resolve(got));
      s.on('error', reject);
    });
    expect(reply).toBe('inside 10.0.2.2\n');
  });

  it('--slirp4netns-seccomp=true: usernet runs filtered and the command still reaches the host', async () => {
    const { server, port } = await httpServer('hello-seccomp');
    servers.push(server);
    // The script finds its own usernet (rootlesskit passes the PID of its child, our parent, before
    // the tap name) and prints each thread's Seccomp field.
    const probe = `for p in $(pgrep -f "main.js slirp4netns .* $PPID tap0"); do grep -h "^Seccomp:" /proc/$p/task/*/status; done | sort | uniq -c`;
    const [cmd, args] = asUser(
      `timeout 60 ${RK} --slirp4netns-seccomp=true sh -c 'curl -s -m 10 http://10.0.2.2:${port}/; echo; ${probe.replace(/'/g, "'\\''")}'`,
    );
    const r = await runAsync(cmd, args, 90_000);
    expect(r.stdout).toMatch(/^hello-seccomp$/m);
    expect(r.stdout).toMatch(/^\s*\d+ Seccomp:\s+2$/m);
    expect(r.stdout).not.toMatch(/Seccomp:\s+0/);
    expect(r.status).toBe(0);
  });

  it('--slirp4netns-sandbox=true as an ordinary user fails at start-up (no CAP_SYS_ADMIN for a mount namespace)', async () => {
    const [cmd, args] = asUser(`timeout 60 ${RK} --slirp4netns-sandbox=true true`);
    const r = await runAsync(cmd, args, 90_000);
    expect(r.status).not.toBe(0);
    // rootlesskit keeps our stderr to itself; it reports that the ready fd never came (the message
    // usernet prints in this case is checked in slirp4netns-sandbox.test.ts).
    expect(r.stderr).toMatch(/--enable-sandbox .*tap0\): slirp4netns failed/);
  });
});
