/**
 * Port forwards: an iperf3 server in the container namespace, reached from
 * the host through a forwarded host port, one stream, both directions
 * (host→guest: the host client sends; guest→host: iperf3 -R), MTU 65520.
 *
 * - usernet: `usernet run --mtu M -p 127.0.0.1:P:5201 -- iperf3 -s -p 5201`.
 * - slirp4netns: `--api-socket` and an `add_hostfwd` request, 127.0.0.1:P to
 *   the namespace's 10.0.2.100:5201.
 * - pasta: `-t 127.0.0.1/P:5201`, as the bench user.
 * - kernel: the kernel's own port forward, in two namespaces joined by a veth
 *   pair: an nftables DNAT rule in the client's namespace sends connections to
 *   its own address and port P to the server's 5201 (conntrack and NAT on
 *   every packet, no user space in between). The rule lives and dies with the
 *   throwaway namespace.
 */
import { connect } from 'node:net';
import { join } from 'node:path';
import { freePort, type BenchContext } from '../lib/context.js';
import { parseTcp } from '../lib/iperf.js';
import { repeat, type Row, type Sample, type SystemName } from '../lib/results.js';
import { CpuSampler, must, type Proc } from '../lib/sys.js';
import { pastaCommand, pastaNetArgs, slirpNamespace, vethPair } from '../lib/peer-setup.js';

export const FORWARD_MTU = 65520;
const GUEST_PORT = 5201;

interface Env {
  /** Where the host-side client connects, and in which namespace (null: the bench's own). */
  host: string;
  port: number;
  netns: string | null;
  /** The forwarding process, for CPU per GB (null for the kernel). */
  cpuPid: number | null;
  done: () => Promise<void>;
}

function cellName(reverse: boolean): string {
  return `${reverse ? 'guest→host' : 'host→guest'} MTU ${FORWARD_MTU}`;
}

async function measure(ctx: BenchContext, env: Env, reverse: boolean): Promise<{ gbps: number; cpuPerGB: number | null }> {
  const args = ['iperf3', '-c', env.host, '-p', String(env.port), '-t', String(ctx.seconds), '-J', ...(reverse ? ['-R'] : [])];
  const cmd = env.netns === null ? args : ['ip', 'netns', 'exec', env.netns, ...args];
  const sampler = env.cpuPid === null ? null : new CpuSampler(env.cpuPid);
  const p: Proc = ctx.c.spawn(cmd[0], cmd.slice(1), 'forward client');
  const r = await p.wait((ctx.seconds + 25) * 1000);
  const cpu = sampler?.stop() ?? null;
  if (r.timedOut) throw new Error(`forward client: no result within ${ctx.seconds + 25} s (stalled)`);
  const t = parseTcp(p.stdout);
  const gb = t.bytes / 1e9;
  return { gbps: t.bitsPerSecond / 1e9, cpuPerGB: cpu !== null && gb > 0 ? cpu / gb : null };
}

/** One request on slirp4netns's API socket; resolves with its JSON answer. */
function slirpApi(sock: string, request: unknown): Promise<any> {
  return new Promise((resolve, reject) => {
    const s = connect(sock);
    let text = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (text += d));
    s.on('error', reject);
    s.on('end', () => {
      try {
        resolve(JSON.parse(text));
      } catch {
        reject(new Error(`slirp4netns API: ${text}`));
      }
    });
    s.end(JSON.stringify(request));
  });
}

async function usernetEnv(ctx: BenchContext): Promise<Env> {
  const mark = ctx.c.mark();
  const port = await freePort();
  const u = ctx.c.spawn(
    ctx.node,
    [ctx.usernetCli, 'run', '--mtu', String(FORWARD_MTU), '-p', `127.0.0.1:${port}:${GUEST_PORT}`, '--', 'iperf3', '-s', '--forceflush', '-p', String(GUEST_PORT)],
    'usernet run (forward)',
  );
  await u.waitFor(/Server listening/, 20_000);
  return { host: '127.0.0.1', port, netns: null, cpuPid: u.pid, done: () => ctx.c.release(mark) };
}

async function slirpEnv(ctx: BenchContext): Promise<Env> {
  const mark = ctx.c.mark();
  const sock = join(ctx.c.tmpdir(), 'slirp.sock');
  const s = await slirpNamespace(ctx, FORWARD_MTU, ['--api-socket', sock]);
  const srv = ctx.c.spawn('ip', ['netns', 'exec', s.ns, 'iperf3', '-s', '--forceflush', '-p', String(GUEST_PORT)], 'slirp4netns guest server');
  await srv.waitFor(/Server listening/);
  const port = await freePort();
  const answer = await slirpApi(sock, {
    execute: 'add_hostfwd',
    arguments: { proto: 'tcp', host_addr: '127.0.0.1', host_port: port, guest_port: GUEST_PORT },
  });
  if (answer.error) throw new Error(`slirp4netns add_hostfwd: ${JSON.stringify(answer.error)}`);
  return { host: '127.0.0.1', port, netns: null, cpuPid: s.pid, done: () => ctx.c.release(mark) };
}

async function pastaEnv(ctx: BenchContext): Promise<Env> {
  const mark = ctx.c.mark();
  const port = await freePort();
  const p = ctx.c.spawn(
    pastaCommand(ctx)[0],
    [
      ...pastaCommand(ctx).slice(1),
      ...pastaNetArgs(FORWARD_MTU),
      '-t',
      `127.0.0.1/${port}:${GUEST_PORT}`,
      '-T',
      'none',
      '-u',
      'none',
      '-U',
      'none',
      '--',
      // pasta does not end its command when it exits: the server must not outlive it.
      'setpriv',
      '--pdeathsig',
      'TERM',
      '--',
      'iperf3',
      '-s',
      '--forceflush',
      '-p',
      String(GUEST_PORT),
    ],
    'pasta (forward)',
  );
  await p.waitFor(/Server listening/, 20_000);
  return { host: '127.0.0.1', port, netns: null, cpuPid: p.pid, done: () => ctx.c.release(mark) };
}

async function kernelEnv(ctx: BenchContext): Promise<Env> {
  const mark = ctx.c.mark();
  const v = vethPair(ctx, FORWARD_MTU);
  const clientIp = '10.201.0.2';
  const srv = ctx.c.spawn('ip', ['netns', 'exec', v.server, 'iperf3', '-s', '--forceflush', '-B', v.serverIp, '-p', String(GUEST_PORT)], 'kernel iperf3 server');
  await srv.waitFor(/Server listening/);
  const port = 40000;
  const rules = `table ip ubfwd {\n chain out {\n  type nat hook output priority -100\n  ip daddr ${clientIp} tcp dport ${port} dnat to ${v.serverIp}:${GUEST_PORT}\n }\n}\n`;
  const r = ctx.c.spawn('ip', ['netns', 'exec', v.client, 'nft', '-f', '-'], 'nft', 'pipe');
  r.child.stdin!.end(rules);
  const done = await r.wait(10_000);
  if (done.code !== 0) throw new Error(`nft: ${r.stderr.trim()}`);
  must('ip', ['netns', 'exec', v.client, 'nft', 'list', 'table', 'ip', 'ubfwd']);
  return { host: clientIp, port, netns: v.client, cpuPid: null, done: () => ctx.c.release(mark) };
}

export async function forwardSuite(ctx: BenchContext, notes: string[]): Promise<Row[]> {
  const systems: Array<[SystemName, (ctx: BenchContext) => Promise<Env>]> = [['kernel', kernelEnv], ['usernet', usernetEnv]];
  if (ctx.tools.slirp4netns) systems.push(['slirp4netns', slirpEnv]);
  if (ctx.tools.pasta && ctx.pastaOk) systems.push(['pasta', pastaEnv]);
  const results = new Map<SystemName, Map<string, { gbps: Sample; cpu: Sample }>>();
  for (const [sys, setup] of systems) {
    ctx.log(`forward: ${sys}`);
    const m = new Map<string, { gbps: Sample; cpu: Sample }>();
    let env: Env | null = null;
    let setupError = '';
    try {
      env = await setup(ctx);
    } catch (err) {
      setupError = (err as Error).message.split('\n')[0];
      ctx.log(`  ${sys}: setup failed: ${setupError}`);
    }
    try {
      for (const reverse of [false, true]) {
        const cpus: number[] = [];
        const gbps = env
          ? await repeat(ctx.reps, async () => {
              const t = await measure(ctx, env!, reverse);
              if (t.cpuPerGB !== null) cpus.push(t.cpuPerGB);
              return t.gbps;
            })
          : { value: null, reps: [], errors: [setupError] };
        const sorted = [...cpus].sort((a, b) => a - b);
        m.set(cellName(reverse), { gbps, cpu: { value: sorted.length ? sorted[sorted.length >> 1] : null, reps: cpus, errors: [] } });
        ctx.log(`  ${cellName(reverse)}: ${gbps.value?.toFixed(2) ?? 'fail'} Gbit/s ${gbps.errors.join('; ')}`);
      }
    } finally {
      await env?.done();
    }
    results.set(sys, m);
  }
  notes.push(
    'Port forwards: iperf3 server in the namespace, client on the host through the forwarded port (usernet -p, slirp4netns add_hostfwd, ' +
      'pasta -t, all on 127.0.0.1); the kernel row is an nftables DNAT from the client namespace\'s own address to a server across a veth pair.',
  );
  const rows: Row[] = [];
  for (const reverse of [false, true]) {
    const name = cellName(reverse);
    const values: Row['values'] = {};
    for (const [sys, m] of results) if (m.has(name)) values[sys] = m.get(name)!.gbps;
    rows.push({ group: 'Port forward', metric: name, unit: 'Gbit/s', higherIsBetter: true, values });
  }
  for (const reverse of [false, true]) {
    const name = cellName(reverse);
    const values: Row['values'] = {};
    for (const [sys, m] of results) if (sys !== 'kernel' && m.has(name)) values[sys] = m.get(name)!.cpu;
    rows.push({ group: 'CPU', metric: `port forward ${name}, process CPU per GB moved`, unit: 's/GB', higherIsBetter: false, values });
  }
  return rows;
}
