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
 *
 * All of them are set up first; the repetitions then alternate between the
 * systems (see bridgeSuite).
 */
import type { BenchContext } from '../lib/context.js';
import { parseTcp, parseUdp } from '../lib/iperf.js';
import { sample, type Row, type Sample, type SystemName } from '../lib/results.js';
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

type Metric = keyof BridgeResults;

/** One system's switch with its two namespaces and the iperf3 server, ready to measure. */
interface Setup {
  name: SystemName;
  pair: Pair | null;
  /** Why it could not be set up. */
  error: string | null;
  reps: Record<Metric, number[]>;
  errors: Record<Metric, string[]>;
}

const PORT = 5201;

async function setUp(ctx: BenchContext, name: SystemName, make: () => Promise<Pair>): Promise<Setup> {
  const s: Setup = { name, pair: null, error: null, reps: { tcp: [], udp: [], rtt: [] }, errors: { tcp: [], udp: [], rtt: [] } };
  try {
    const p = await make();
    const srv = ctx.c.spawn('ip', ['netns', 'exec', p.b, 'iperf3', '-s', '--forceflush', '-B', p.ipB, '-p', String(PORT)], 'iperf3 server');
    await srv.waitFor(/Server listening/);
    // ARP and MAC learning happen here, outside the measured runs.
    pingAvgMs(p);
    s.pair = p;
  } catch (err) {
    s.error = (err as Error).message.split('\n')[0];
    ctx.log(`  ${name}: set-up failed: ${s.error}`);
  }
  return s;
}

async function measureOnce(ctx: BenchContext, p: Pair, metric: Metric): Promise<number> {
  if (metric === 'tcp') return parseTcp(await iperf(ctx, p, PORT, [])).bitsPerSecond / 1e9;
  if (metric === 'udp') return parseUdp(await iperf(ctx, p, PORT, ['-u', '-l', '64', '-b', '0'])).packetsPerSecond / 1e3;
  return pingAvgMs(p);
}

/**
 * Every system is set up first and the repetitions then alternate between them (rep 1 of
 * each, rep 2 of each, ...), metric by metric: on a machine shared with other work the load
 * drifts over the minutes a suite takes, and measuring one system's repetitions back to back
 * and the next system's a minute later put that drift into the ratios. The switches that are
 * not being measured sit idle meanwhile.
 */
export async function bridgeSuite(ctx: BenchContext): Promise<Row[]> {
  const mark = ctx.c.mark();
  const setups: Setup[] = [];
  try {
    ctx.log('bridge: setting up the kernel bridge + veth, usernet (vnet offloads), usernet --no-offload' + (ctx.tools.vde ? ', vde_switch' : ''));
    setups.push(await setUp(ctx, 'kernel', async () => kernelPair(ctx)));
    setups.push(await setUp(ctx, 'usernet', () => usernetPair(ctx, true)));
    setups.push(await setUp(ctx, 'usernet --no-offload', () => usernetPair(ctx, false)));
    if (ctx.tools.vde) setups.push(await setUp(ctx, 'vde_switch', () => vdePair(ctx)));
    for (const metric of ['tcp', 'udp', 'rtt'] as const) {
      for (let rep = 0; rep < ctx.reps; rep++) {
        for (const s of setups) {
          if (s.pair === null) continue;
          try {
            s.reps[metric].push(await measureOnce(ctx, s.pair, metric));
          } catch (err) {
            s.errors[metric].push((err as Error).message.split('\n')[0].slice(0, 200));
          }
        }
      }
    }
  } finally {
    await ctx.c.release(mark);
  }
  const res = new Map<SystemName, BridgeResults>();
  for (const s of setups) {
    const pick = (m: Metric): Sample => (s.error !== null ? { value: null, reps: [], errors: [s.error] } : sample(s.reps[m], s.errors[m]));
    const r: BridgeResults = { tcp: pick('tcp'), udp: pick('udp'), rtt: pick('rtt') };
    ctx.log(`  ${s.name}: TCP ${r.tcp.value?.toFixed(2)} Gbit/s, UDP ${r.udp.value?.toFixed(0)} kpps, RTT ${r.rtt.value?.toFixed(3)} ms`);
    res.set(s.name, r);
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
