/**
 * The rootlesskit and podman checks, shared by the runs on the front end as
 * it is (rootlesskit.test.ts, podman.test.ts) and under the gVisor emulation
 * (gvisor-emulation-slirp.test.ts), so both run the same commands and the
 * same assertions. The binary handed to rootlesskit/podman is SLIRP_BIN or a
 * wrapper script (slirpWrapper) that execs it with a log file, LD_PRELOAD
 * and/or a resolv.conf of the test's.
 *
 * Traffic goes to servers this module starts on loopback: a blob server
 * (TCP both ways, sha256), a dnsmasq on 127.0.0.1 reached through the UDP
 * NAT at 10.0.2.2, and a dnsmasq on a loopback address of its own, port 53,
 * which the front end's DNS forwarder (10.0.2.3) uses as upstream: a
 * resolv.conf naming it is bound over /etc/resolv.conf in a private mount
 * namespace for the front end only (never the system resolver, and the
 * host's file is untouched). The guest side is busybox, called as
 * `busybox APPLET`: the same script runs in rootlesskit's namespace (host
 * tools) and in podman's busybox root.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { expect } from 'vitest';
import { startBlobServer, type BlobServer } from './blob-server.js';
import { freePort, run, sleep, type Result, type Sandbox } from './harness.js';
import { freeTcpPort, ROOTLESS_USER, runAsync, SLIRP_BIN } from './slirp-harness.js';

/**
 * A command line run as the rootless user. setpriv and env exec (no fork as
 * su does), so the PID the test holds is the shell's and stopping it by PID
 * reaches rootlesskit.
 */
export function asUser(cmd: string): [string, string[]] {
  const uid = run('id', ['-u', ROOTLESS_USER]).stdout.trim();
  const gid = run('id', ['-g', ROOTLESS_USER]).stdout.trim();
  return [
    'setpriv',
    [`--reuid=${uid}`, `--regid=${gid}`, '--init-groups', 'env', `HOME=/home/${ROOTLESS_USER}`, `USER=${ROOTLESS_USER}`, 'sh', '-c', `cd /tmp && exec ${cmd}`],
  ];
}

/** rootlesskit with `binary` as its slirp4netns; flags and the command follow. */
export function rootlesskit(binary: string = SLIRP_BIN): string {
  return `rootlesskit --net=slirp4netns --slirp4netns-binary=${binary} --copy-up=/etc`;
}

/**
 * `podman ... run` with `binary` as its slirp4netns. On this machine podman
 * needs runc, cgroupfs and explicit ulimits (the defaults exceed the
 * sandbox's limits).
 */
export function podmanRun(binary: string = SLIRP_BIN): string[] {
  return [
    `--network-cmd-path=${binary}`, 'run', '--rm', '--runtime', 'runc', '--cgroup-manager', 'cgroupfs',
    '--ulimit', 'nofile=20000:20000', '--ulimit', 'nproc=1024:1024',
  ];
}

/** `sh -c` text: bind $0 over /etc/resolv.conf, then exec the rest (in a mount namespace of its own). */
const BIND_RESOLV = 'mount --bind "$0" /etc/resolv.conf && exec "$@"';

/** cmd args... in a private mount namespace where resolvConf is /etc/resolv.conf (run as root). */
export function withResolvConf(resolvConf: string, cmd: string, args: string[]): [string, string[]] {
  return ['unshare', ['-m', '--propagation', 'private', 'sh', '-c', BIND_RESOLV, resolvConf, cmd, ...args]];
}

/**
 * A dnsmasq on address:port answering `name` with `answer` and nothing else
 * (no upstream), registered with the sandbox; resolves once it answers.
 */
export async function startDnsmasq(sandbox: Sandbox, address: string, port: number, name: string, answer: string): Promise<void> {
  const d = sandbox.tmpdir();
  const dns = sandbox.spawn('dnsmasq', [
    '-k', '--port', String(port), `--listen-address=${address}`, '--bind-interfaces', '--no-resolv', '--no-hosts',
    `--address=/${name}/${answer}`, `--pid-file=${d}/dnsmasq.pid`, '--user=root', '--log-facility=-',
  ]);
  for (let i = 0; i < 100; i++) {
    const r = await runAsync('dig', ['+short', '+time=1', '+tries=1', '-p', String(port), `@${address}`, name]);
    if (r.stdout.trim() === answer) return;
    if (!dns.running) break;
    await sleep(50);
  }
  throw new Error(`dnsmasq did not come up on ${address}:${port}: ${dns.stderr}`);
}

export interface TrafficPeers {
  /** On 127.0.0.1 (10.0.2.2 from the guest). */
  blob: BlobServer;
  /** On ::1 (fd00::2 from the guest). */
  blob6: BlobServer;
  /** A dnsmasq on 127.0.0.1:udpPort, queried at 10.0.2.2 through the UDP NAT. */
  udpPort: number;
  /** A resolv.conf naming the other dnsmasq (port 53 on a loopback address of its own). */
  resolvConf: string;
  name: string;
  answer: string;
  close(): Promise<void>;
}

const BLOB_BYTES = 8 * 1024 * 1024;

/** The servers trafficScript talks to; the dnsmasqs and files go with the sandbox, close() stops the rest. */
export async function startTrafficPeers(sandbox: Sandbox, prefix: string): Promise<TrafficPeers> {
  const dir = sandbox.tmpdir();
  const name = `${prefix}-${randomBytes(3).toString('hex')}.test`;
  const answer = '192.0.2.13';
  const [a, b, c] = randomBytes(3);
  const resolverIp = `127.${1 + (a % 254)}.${b}.${1 + (c % 254)}`;
  const udpPort = await freePort();
  await startDnsmasq(sandbox, '127.0.0.1', udpPort, name, answer);
  await startDnsmasq(sandbox, resolverIp, 53, name, answer);
  const resolvConf = join(dir, 'resolv.conf');
  writeFileSync(resolvConf, `nameserver ${resolverIp}\n`);
  chmodSync(resolvConf, 0o644);
  const blob = await startBlobServer(dir, BLOB_BYTES, '127.0.0.1');
  const blob6 = await startBlobServer(sandbox.tmpdir(), 1024, '::1');
  return { blob, blob6, udpPort, resolvConf, name, answer, close: async () => void (await Promise.all([blob.close(), blob6.close()])) };
}

/**
 * The guest's side (busybox only): download with sha256, upload of what it
 * got (the server answers its sha256 and size), UDP through the NAT, DNS
 * through the forwarder, ICMP to the gateway; with ipv6, once SLAAC's
 * address has passed DAD, ICMPv6 and TCP to the host's ::1.
 */
export function trafficScript(p: TrafficPeers, ipv6: boolean): string {
  const url = `http://10.0.2.2:${p.blob.port}`;
  const lines = [
    'f=$(busybox mktemp)',
    `trap 'busybox rm -f "$f"' EXIT`,
    `busybox wget -q -O "$f" ${url}/blob && echo "down $(busybox sha256sum < "$f")"`,
    // busybox wget --post-file stops at the first NUL: the PUT goes by nc, which half-closes at the end of its input.
    `n=$(busybox stat -c %s "$f"); { printf 'PUT /upload HTTP/1.0\\r\\nContent-Length: %s\\r\\n\\r\\n' "$n"; busybox cat "$f"; } | busybox nc 10.0.2.2 ${p.blob.port} | busybox tail -n 1 | busybox sed 's/^/up /'`,
    `busybox nslookup -type=a ${p.name} 10.0.2.2:${p.udpPort} | busybox sed -n 's/^Address: /udp /p'`,
    `busybox nslookup -type=a ${p.name} 10.0.2.3 | busybox sed -n 's/^Address: /dns /p'`,
    'busybox ping -c 2 -W 2 10.0.2.2 >/dev/null && echo ping-ok',
  ];
  if (ipv6) {
    lines.push(
      'i=0; until busybox ip -o -6 addr show dev tap0 scope global | busybox grep -v tentative | busybox grep -q inet6 || [ $i -ge 100 ]; do busybox sleep 0.1; i=$((i+1)); done',
      'busybox ping6 -c 2 -W 2 fd00::2 >/dev/null && echo ping6-ok',
      `echo "peer6 $(busybox wget -q -O - http://[fd00::2]:${p.blob6.port}/peer)"`,
    );
  }
  return `${lines.join('\n')}\n`;
}

export function expectTraffic(out: string, p: TrafficPeers, ipv6: boolean): void {
  expect(out).toContain(`down ${p.blob.sha256}`);
  expect(out).toContain(`up ${p.blob.sha256} ${p.blob.bytes}`);
  expect(out).toContain(`udp ${p.answer}`);
  expect(out).toContain(`dns ${p.answer}`);
  expect(out).toContain('ping-ok');
  if (ipv6) {
    expect(out).toContain('ping6-ok');
    expect(out).toMatch(/peer6 ::1$/m);
  }
}

export interface SlirpWrapper {
  /** The executable to hand to rootlesskit or podman. */
  path: string;
  /** What usernet logged so far (at info). */
  log(): string;
}

/**
 * An executable in `dir` (which the rootless user can read) that execs
 * bin/slirp4netns in place (same PID, fds and signals) with
 * USERNET_LOG_LEVEL=info and stderr appended to a log file; with preload,
 * under that LD_PRELOAD library (copied into dir, as the rootless user may
 * not read where it was built); with resolvConf (root only: podman), in a
 * private mount namespace where that file is /etc/resolv.conf.
 */
export function slirpWrapper(dir: string, opts: { preload?: string; resolvConf?: string } = {}): SlirpWrapper {
  const id = `i13r-${randomBytes(3).toString('hex')}`;
  const log = join(dir, `${id}.log`);
  writeFileSync(log, '');
  chmodSync(log, 0o666);
  const env = ['env', 'USERNET_LOG_LEVEL=info'];
  if (opts.preload !== undefined) {
    const lib = join(dir, `${id}.so`);
    copyFileSync(opts.preload, lib);
    chmodSync(lib, 0o644);
    env.push(`LD_PRELOAD=${lib}`);
  }
  const exec =
    opts.resolvConf !== undefined
      ? `unshare -m --propagation private sh -c '${BIND_RESOLV}' ${opts.resolvConf} ${env.join(' ')} ${SLIRP_BIN} "$@"`
      : `${env.join(' ')} ${SLIRP_BIN} "$@"`;
  const path = join(dir, id);
  writeFileSync(path, `#!/bin/sh\nexec 2>>${log}\nexec ${exec}\n`);
  chmodSync(path, 0o755);
  return { path, log: () => readFileSync(log, 'utf8') };
}

/** rootlesskit runs trafficScript (IPv4; the rootlesskit tests do not turn IPv6 on) with the peers' resolv.conf. */
export async function rootlesskitTraffic(binary: string, dir: string, p: TrafficPeers): Promise<Result> {
  const script = join(dir, `traffic-${randomBytes(3).toString('hex')}.sh`);
  writeFileSync(script, trafficScript(p, false));
  chmodSync(script, 0o644);
  const [cmd, args] = withResolvConf(p.resolvConf, ...asUser(`timeout 120 ${rootlesskit(binary)} sh ${script}`));
  const r = await runAsync(cmd, args, 150_000);
  expectTraffic(r.stdout, p, false);
  expect(r.status).toBe(0);
  return r;
}

/** --port-driver=slirp4netns -p: a host client reaches a server inside (and sees 10.0.2.2 as the peer). */
export async function rootlesskitForward(sandbox: Sandbox, binary: string, dir: string): Promise<void> {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const script = join(dir, `server-${randomBytes(3).toString('hex')}.cjs`);
  writeFileSync(
    script,
    "require('net').createServer((s) => s.end('inside ' + s.remoteAddress + '\\n')).listen(8000, '0.0.0.0', () => console.log('server up'));\nsetTimeout(() => process.exit(0), 60000);\n",
  );
  const [cmd, args] = asUser(`${rootlesskit(binary)} --port-driver=slirp4netns -p 127.0.0.1:${port}:8000/tcp ${process.execPath} ${script}`);
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
}

/** A container (allow_host_loopback=true, IPv6 on as podman has it) runs trafficScript with IPv6. */
export async function podmanTraffic(binary: string, rootfs: string, name: string, p: TrafficPeers): Promise<Result> {
  const r = await runAsync(
    'podman',
    [...podmanRun(binary), '--name', name, '--cap-add=NET_RAW', '--network', 'slirp4netns:allow_host_loopback=true', '--rootfs', rootfs, '/bin/sh', '-c', trafficScript(p, true)],
    180_000,
  );
  expect(r.stderr).not.toMatch(/Error/);
  expectTraffic(r.stdout, p, true);
  expect(r.status).toBe(0);
  return r;
}

/** usernet processes podman started (their API socket lives under /run/libpod). */
function slirpCount(): number {
  return run('ps', ['-eo', 'args']).stdout.split('\n').filter((l) => l.includes('dist/src/cli/main.js slirp4netns') && l.includes('/run/libpod/')).length;
}

/**
 * port_handler=slirp4netns -p: a host client reaches a server in the
 * container; stopping the container closes the exit fd and usernet goes
 * away with it.
 */
export async function podmanForward(sandbox: Sandbox, binary: string, rootfs: string, name: string): Promise<void> {
  const port = await freeTcpPort();
  const p = sandbox.spawn('podman', [
    ...podmanRun(binary), '--name', name, '--network', 'slirp4netns:port_handler=slirp4netns', '-p', `127.0.0.1:${port}:8000/tcp`,
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
  run('podman', ['rm', '-f', '-t', '0', name]);
  await p.exited;
  for (let i = 0; i < 50 && slirpCount() > 0; i++) await sleep(100);
  expect(slirpCount()).toBe(0);
}
