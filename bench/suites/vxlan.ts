/**
 * Two guests on one segment that crosses a VXLAN link (VNI 42, UDP 4789) over
 * a veth underlay between two "host" namespaces, MTU 1450 inside (1500
 * outside, no fragmentation): TCP throughput (iperf3) both ways.
 *
 * - usernet: host U runs `usernet --tap T --mtu 1450 --vxlan ...`, its guest
 *   GA holds T (vnet offloads: usernet segments and checksums GA's TSO
 *   frames before they enter the tunnel); host K is the kernel's vxlan
 *   device in a Linux bridge with a veth to guest GB. The recipe of
 *   test/e2e/vxlan.test.ts.
 * - kernel: the same with the kernel's vxlan device and a Linux bridge on
 *   both hosts.
 *
 * GB's veth has tx checksumming off in both setups: through the kernel's
 * vxlan and a veth underlay a partial checksum reaches usernet's UDP socket
 * unfinished (README, "A note on testing on one machine"), and the kernel row
 * pays the same for fairness. Rows: GA sends to GB, and GB to GA (iperf3 -R).
 */
import type { BenchContext } from '../lib/context.js';
import { parseTcp } from '../lib/iperf.js';
import { repeat, type Row, type Sample, type SystemName } from '../lib/results.js';
import { must, sh } from '../lib/sys.js';

const IP_A = '10.0.2.101';
const IP_B = '10.0.2.102';
const UNDERLAY_A = '10.199.0.1';
const UNDERLAY_B = '10.199.0.2';
const MTU = '1450';

interface Pair {
  a: string;
  b: string;
}

/** Host namespaces joined by a veth underlay. */
function hosts(ctx: BenchContext, tagA: string, tagB: string): { ha: string; hb: string; va: string; vb: string } {
  const ha = ctx.c.netns(tagA);
  const hb = ctx.c.netns(tagB);
  const va = ctx.c.ifname('ul');
  const vb = ctx.c.ifname('ul');
  must('ip', ['-n', ha, 'link', 'add', va, 'type', 'veth', 'peer', 'name', vb, 'netns', hb]);
  must('ip', ['-n', ha, 'addr', 'add', `${UNDERLAY_A}/24`, 'dev', va]);
  must('ip', ['-n', hb, 'addr', 'add', `${UNDERLAY_B}/24`, 'dev', vb]);
  must('ip', ['-n', ha, 'link', 'set', va, 'up']);
  must('ip', ['-n', hb, 'link', 'set', vb, 'up']);
  return { ha, hb, va, vb };
}

/** A kernel VTEP in host `h`: vxlan0 and a veth to a new guest namespace in bridge br0. Returns the guest. */
function kernelSide(ctx: BenchContext, h: string, dev: string, local: string, remote: string, ip: string, tag: string): string {
  const g = ctx.c.netns(tag);
  const hv = ctx.c.ifname('hv');
  must('ip', ['-n', h, 'link', 'add', 'vxlan0', 'type', 'vxlan', 'id', '42', 'remote', remote, 'local', local, 'dstport', '4789', 'dev', dev]);
  must('ip', ['-n', h, 'link', 'add', 'br0', 'type', 'bridge']);
  must('ip', ['-n', h, 'link', 'add', hv, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', g]);
  for (const l of ['vxlan0', hv]) must('ip', ['-n', h, 'link', 'set', l, 'master', 'br0']);
  for (const l of ['vxlan0', hv, 'br0']) must('ip', ['-n', h, 'link', 'set', l, 'up']);
  guestUp(g, 'eth0', ip);
  return g;
}

function guestUp(g: string, dev: string, ip: string): void {
  must('ip', ['-n', g, 'link', 'set', dev, 'mtu', MTU]);
  must('ip', ['-n', g, 'addr', 'add', `${ip}/24`, 'dev', dev]);
  must('ip', ['-n', g, 'link', 'set', dev, 'up']);
}

function checksumOff(g: string): void {
  must('ip', ['netns', 'exec', g, 'ethtool', '-K', 'eth0', 'tx', 'off']);
}

async function usernetPair(ctx: BenchContext): Promise<Pair> {
  const { ha, hb, vb } = hosts(ctx, 'xu', 'xk');
  const tap = ctx.c.ifname('xt');
  must('ip', ['-n', ha, 'tuntap', 'add', 'dev', tap, 'mode', 'tap']);
  const u = ctx.c.spawn(
    'ip',
    ['netns', 'exec', ha, ctx.node, ctx.usernetCli, '--tap', tap, '--mtu', MTU, '--vxlan', `${UNDERLAY_B},vni=42,local=${UNDERLAY_A}:4789`, '--log-level', 'info'],
    'usernet',
  );
  await u.waitFor(/gateway 10\.0\.2\.2/);
  await u.waitFor(/warm-up/, 10_000);
  const a = ctx.c.netns('xga');
  must('ip', ['-n', ha, 'link', 'set', tap, 'netns', a]);
  guestUp(a, tap, IP_A);
  const b = kernelSide(ctx, hb, vb, UNDERLAY_B, UNDERLAY_A, IP_B, 'xgb');
  checksumOff(b);
  return { a, b };
}

function kernelPair(ctx: BenchContext): Pair {
  const { ha, hb, va, vb } = hosts(ctx, 'xka', 'xkb');
  const a = kernelSide(ctx, ha, va, UNDERLAY_A, UNDERLAY_B, IP_A, 'xga');
  const b = kernelSide(ctx, hb, vb, UNDERLAY_B, UNDERLAY_A, IP_B, 'xgb');
  checksumOff(b);
  return { a, b };
}

async function iperf(ctx: BenchContext, p: Pair, port: number, extra: string[]): Promise<number> {
  const proc = ctx.c.spawn('ip', ['netns', 'exec', p.a, 'iperf3', '-c', IP_B, '-p', String(port), '-t', String(ctx.seconds), '-J', ...extra], 'iperf3 client');
  const r = await proc.wait((ctx.seconds + 25) * 1000);
  if (r.timedOut) throw new Error(`iperf3 ${extra.join(' ')}: no result within ${ctx.seconds + 25} s`);
  return parseTcp(proc.stdout).bitsPerSecond / 1e9;
}

interface VxlanResults {
  ab: Sample;
  ba: Sample;
}

async function measure(ctx: BenchContext, make: () => Promise<Pair>): Promise<VxlanResults> {
  const mark = ctx.c.mark();
  try {
    const p = await make();
    const port = 5201;
    const srv = ctx.c.spawn('ip', ['netns', 'exec', p.b, 'iperf3', '-s', '--forceflush', '-B', IP_B, '-p', String(port)], 'iperf3 server');
    await srv.waitFor(/Server listening/);
    // ARP, MAC and VTEP learning happen here, outside the measured runs.
    const ping = sh('ip', ['netns', 'exec', p.a, 'ping', '-c', '3', '-i', '0.2', '-W', '2', IP_B], 10_000);
    if (!/ 3 received/.test(ping.stdout)) throw new Error(`no ping across the VXLAN link: ${ping.stdout.trim().split('\n').pop()}`);
    const ab = await repeat(ctx.reps, () => iperf(ctx, p, port, []));
    const ba = await repeat(ctx.reps, () => iperf(ctx, p, port, ['-R']));
    ctx.log(`  A→B ${ab.value?.toFixed(2)} Gbit/s, B→A ${ba.value?.toFixed(2)} Gbit/s ${[...ab.errors, ...ba.errors].join('; ')}`);
    return { ab, ba };
  } catch (err) {
    const e = (err as Error).message.split('\n')[0];
    ctx.log(`  failed: ${e}`);
    const f: Sample = { value: null, reps: [], errors: [e] };
    return { ab: f, ba: f };
  } finally {
    await ctx.c.release(mark);
  }
}

export async function vxlanSuite(ctx: BenchContext): Promise<Row[]> {
  const res = new Map<SystemName, VxlanResults>();
  ctx.log('vxlan: kernel vxlan on both ends');
  res.set('kernel', await measure(ctx, async () => kernelPair(ctx)));
  ctx.log('vxlan: usernet --vxlan ↔ kernel vxlan');
  res.set('usernet', await measure(ctx, () => usernetPair(ctx)));
  const row = (metric: string, pick: (r: VxlanResults) => Sample): Row => {
    const values: Row['values'] = {};
    for (const [s, r] of res) values[s] = pick(r);
    return { group: 'VXLAN', metric, unit: 'Gbit/s', higherIsBetter: true, values };
  };
  return [
    row('TCP guest→guest MTU 1450, usernet side sends', (r) => r.ab),
    row('TCP guest→guest MTU 1450, kernel side sends', (r) => r.ba),
  ];
}
