/**
 * Two namespaces on one switch, MTU 1500: TCP throughput (iperf3), UDP
 * 64-byte datagrams per second delivered (iperf3 -u -l 64 -b 0, the
 * receiver's count) and ping RTT (50 pings, 10 ms apart, average).
 *
 * - usernet: taps made in the root namespace, attached by `usernet --tap a
 *   --tap b`, then moved into the two namespaces (the recipe of
 *   test/e2e/bridge.test.ts); with vnet offloads and with --no-offload.
 * - vde_switch: a switch in the foreground (its stdin kept open by us, so it
 *   stays up and its PID is ours), one vde_plug2tap per namespace.
 * - kernel: a Linux bridge in a third namespace with a veth to each side.
 */
import type { BenchContext } from '../lib/context.js';
import { parseTcp, parseUdp } from '../lib/iperf.js';
import { repeat, type Row, type Sample, type SystemName } from '../lib/results.js';
import { must, sh, sleep } from '../lib/sys.js';

interface Pair {
  a: string;
  b: string;
  ipB: string;
}

const IP_A = '10.0.2.101';
const IP_B = '10.0.2.102';

function addressUp(ns: string, dev: string, ip: string): void {
  must('ip', ['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', dev]);
  must('ip', ['-n', ns, 'link', 'set', dev, 'up']);
}

async function usernetPair(ctx: BenchContext, offload: boolean): Promise<Pair> {
  const tapA = ctx.c.tap('a');
  const tapB = ctx.c.tap('b');
  const u = ctx.c.spawn(
    ctx.node,
    [ctx.usernetCli, '--tap', tapA, '--tap', tapB, '--log-level', 'info', ...(offload ? [] : ['--no-offload'])],
    'usernet',
  );
  await u.waitFor(/gateway 10\.0\.2\.2/);
  // Measure the instance once its start-up warm-up is over (it logs one line when done).
  await u.waitFor(/warm-up/, 10_000);
  const a = ctx.c.netns('ua');
  const b = ctx.c.netns('ub');
  must('ip', ['link', 'set', tapA, 'netns', a]);
  must('ip', ['link', 'set', tapB, 'netns', b]);
  addressUp(a, tapA, IP_A);
  addressUp(b, tapB, IP_B);
  return { a, b, ipB: IP_B };
}

async function vdePair(ctx: BenchContext): Promise<Pair> {
  const dir = ctx.c.tmpdir();
  const sock = `${dir}/switch`;
  const sw = ctx.c.spawn('vde_switch', ['-s', sock], 'vde_switch', 'pipe');
  const deadline = Date.now() + 5_000;
  while (sh('test', ['-S', `${sock}/ctl`]).status !== 0) {
    if (!sw.running) throw new Error(`vde_switch exited: ${sw.stderr.trim()}`);
    if (Date.now() > deadline) throw new Error('vde_switch did not create its socket');
    await sleep(20);
  }
  const nss: string[] = [];
  for (const [tag, ip] of [
    ['va', IP_A],
    ['vb', IP_B],
  ] as const) {
    const ns = ctx.c.netns(tag);
    must('ip', ['-n', ns, 'tuntap', 'add', 'eth0', 'mode', 'tap']);
    const plug = ctx.c.spawn('ip', ['netns', 'exec', ns, 'vde_plug2tap', '-s', sock, 'eth0'], 'vde_plug2tap');
    await sleep(100);
    if (!plug.running) throw new Error(`vde_plug2tap exited: ${plug.stderr.trim()}`);
    addressUp(ns, 'eth0', ip);
    nss.push(ns);
  }
  return { a: nss[0], b: nss[1], ipB: IP_B };
}

function kernelPair(ctx: BenchContext): Pair {
  const br = ctx.c.netns('kbr');
  must('ip', ['-n', br, 'link', 'add', 'br0', 'type', 'bridge']);
  must('ip', ['-n', br, 'link', 'set', 'br0', 'up']);
  const nss: string[] = [];
  for (const [tag, ip] of [
    ['ka', IP_A],
    ['kb', IP_B],
  ] as const) {
    const ns = ctx.c.netns(tag);
    must('ip', ['-n', br, 'link', 'add', `p${tag}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
    must('ip', ['-n', br, 'link', 'set', `p${tag}`, 'master', 'br0']);
    must('ip', ['-n', br, 'link', 'set', `p${tag}`, 'up']);
    addressUp(ns, 'eth0', ip);
    nss.push(ns);
  }
  return { a: nss[0], b: nss[1], ipB: IP_B };
}

async function iperf(ctx: BenchContext, p: Pair, port: number, extra: string[]): Promise<string> {
  const proc = ctx.c.spawn(
    'ip',
    ['netns', 'exec', p.a, 'iperf3', '-c', p.ipB, '-p', String(port), '-t', String(ctx.seconds), '-J', ...extra],
    'iperf3 client',
  );
  const r = await proc.wait((ctx.seconds + 25) * 1000);
  if (r.timedOut) throw new Error(`iperf3 ${extra.join(' ')}: no result within ${ctx.seconds + 25} s`);
  return proc.stdout;
}

function pingAvgMs(p: Pair): number {
  const r = sh('ip', ['netns', 'exec', p.a, 'ping', '-q', '-c', '50', '-i', '0.01', '-W', '2', p.ipB], 30_000);
  const m = /= [\d.]+\/([\d.]+)\//.exec(r.stdout);
  if (!m) throw new Error(`ping: ${r.stdout.trim().split('\n').pop()} ${r.stderr.trim()}`);
  return Number(m[1]);
}

interface BridgeResults {
  tcp: Sample;
  udp: Sample;
  rtt: Sample;
}

async function measure(ctx: BenchContext, make: () => Promise<Pair>): Promise<BridgeResults> {
  const mark = ctx.c.mark();
  try {
    const p = await make();
    const port = 5201;
    const srv = ctx.c.spawn('ip', ['netns', 'exec', p.b, 'iperf3', '-s', '--forceflush', '-B', p.ipB, '-p', String(port)], 'iperf3 server');
    await srv.waitFor(/Server listening/);
    // ARP and MAC learning happen here, outside the measured runs.
    pingAvgMs(p);
    const tcp = await repeat(ctx.reps, async () => parseTcp(await iperf(ctx, p, port, [])).bitsPerSecond / 1e9);
    const udp = await repeat(ctx.reps, async () => parseUdp(await iperf(ctx, p, port, ['-u', '-l', '64', '-b', '0'])).packetsPerSecond / 1e3);
    const rtt = await repeat(ctx.reps, async () => pingAvgMs(p));
    ctx.log(`  TCP ${tcp.value?.toFixed(2)} Gbit/s, UDP ${udp.value?.toFixed(0)} kpps, RTT ${rtt.value?.toFixed(3)} ms`);
    return { tcp, udp, rtt };
  } catch (err) {
    const e = (err as Error).message.split('\n')[0];
    ctx.log(`  failed: ${e}`);
    const f: Sample = { value: null, reps: [], errors: [e] };
    return { tcp: f, udp: f, rtt: f };
  } finally {
    await ctx.c.release(mark);
  }
}

export async function bridgeSuite(ctx: BenchContext): Promise<Row[]> {
  const res = new Map<SystemName, BridgeResults>();
  ctx.log('bridge: kernel bridge + veth');
  res.set('kernel', await measure(ctx, async () => kernelPair(ctx)));
  ctx.log('bridge: usernet (vnet offloads)');
  res.set('usernet', await measure(ctx, () => usernetPair(ctx, true)));
  ctx.log('bridge: usernet --no-offload');
  res.set('usernet --no-offload', await measure(ctx, () => usernetPair(ctx, false)));
  if (ctx.tools.vde) {
    ctx.log('bridge: vde_switch');
    res.set('vde_switch', await measure(ctx, () => vdePair(ctx)));
  }
  const row = (metric: string, unit: string, higher: boolean, pick: (r: BridgeResults) => Sample): Row => {
    const values: Row['values'] = {};
    for (const [s, r] of res) values[s] = pick(r);
    return { group: 'Bridge', metric, unit, higherIsBetter: higher, values };
  };
  return [
    row('TCP ns↔ns MTU 1500', 'Gbit/s', true, (r) => r.tcp),
    row('UDP 64 B delivered', 'kpps', true, (r) => r.udp),
    row('ping RTT avg', 'ms', false, (r) => r.rtt),
  ];
}
