/**
 * UDP throughput, one iperf3 flow (`-u -b 0`: as fast as the sender can),
 * container namespace <-> host loopback, both directions, 1400-byte and
 * 64-byte datagrams. The figure is what the receiver got (iperf3's receiver
 * count): a path that drops what it cannot carry does not score the
 * sender's rate. 1400 B cells in Gbit/s of payload delivered, 64 B cells in
 * thousands of datagrams delivered per second.
 *
 * - usernet: `usernet run -- iperf3 -c 10.0.2.2 -u ...` (10.0.2.2 maps to
 *   the host's 127.0.0.1 where the server listens); host→ns is `-R` (the
 *   host server sends, to the NAT's flow socket).
 * - slirp4netns and pasta: as in the TCP suite (same namespaces and maps).
 * - kernel: a veth pair between two namespaces the bench creates.
 *
 * MTU 1500 everywhere: a 1400-byte datagram is one frame, as on a real link.
 *
 * A second set of rows gives the user-space process's CPU time (utime +
 * stime from /proc, sampled as the TCP suite does) per million datagrams
 * delivered: on a shared machine the delivered rate depends on how much CPU
 * the receiving iperf3 gets, while the cost per datagram is the path's own.
 */
import type { BenchContext } from '../lib/context.js';
import { parseUdp } from '../lib/iperf.js';
import { repeat, sample, type Row, type Sample, type SystemName } from '../lib/results.js';
import { hostServer, pastaRun, shellWrap, slirpNamespace, vethPair } from '../lib/peer-setup.js';
import { CpuSampler, type Proc } from '../lib/sys.js';

const MTU = 1500;
export const UDP_SIZES = [1400, 64] as const;

interface Cell {
  size: number;
  reverse: boolean;
}

const cells: Cell[] = UDP_SIZES.flatMap((size) => [
  { size, reverse: false },
  { size, reverse: true },
]);

export function udpCellName(c: Cell): string {
  return `${c.reverse ? 'host→ns' : 'ns→host'} ${c.size} B delivered`;
}

function clientArgs(ctx: BenchContext, host: string, port: number, c: Cell): string[] {
  return ['iperf3', '-c', host, '-p', String(port), '-u', '-b', '0', '-l', String(c.size), '-t', String(ctx.seconds), '-J', ...(c.reverse ? ['-R'] : [])];
}

interface Transfer {
  /** Gbit/s of payload for 1400 B, kpps for 64 B. */
  rate: number;
  /** CPU seconds of the measured process per million datagrams delivered; null for the kernel. */
  cpuPerMpkt: number | null;
}

async function transfer(ctx: BenchContext, label: string, cmd: string[], c: Cell, cpuPid?: number): Promise<Transfer> {
  const p: Proc = ctx.c.spawn(cmd[0], cmd.slice(1), label);
  const sampler = new CpuSampler(cpuPid ?? p.pid);
  const r = await p.wait((ctx.seconds + 25) * 1000);
  const cpu = sampler.stop();
  if (r.timedOut) throw new Error(`${label}: no result within ${ctx.seconds + 25} s (stalled)`);
  const u = parseUdp(p.stdout);
  const delivered = u.packets - u.lost;
  return {
    rate: c.size >= 1000 ? (u.packetsPerSecond * c.size * 8) / 1e9 : u.packetsPerSecond / 1000,
    cpuPerMpkt: cpu !== null && delivered > 0 && cpuPid !== -1 ? cpu / (delivered / 1e6) : null,
  };
}

type Runner = (c: Cell) => Promise<Transfer>;
interface CellResult {
  rate: Sample;
  cpu: Sample;
}

async function cellsFor(ctx: BenchContext, name: string, setup: () => Promise<{ run: Runner; done: () => Promise<void> }>): Promise<Map<string, CellResult>> {
  const out = new Map<string, CellResult>();
  let env: { run: Runner; done: () => Promise<void> } | null = null;
  let setupError = '';
  try {
    env = await setup();
  } catch (err) {
    setupError = (err as Error).message.split('\n')[0];
  }
  try {
    for (const c of cells) {
      const cpus: number[] = [];
      const rate = env
        ? await repeat(ctx.reps, async () => {
            const t = await env!.run(c);
            if (t.cpuPerMpkt !== null) cpus.push(t.cpuPerMpkt);
            return t.rate;
          })
        : { value: null, reps: [], errors: [setupError] };
      out.set(udpCellName(c), { rate, cpu: sample(cpus) });
      ctx.log(`  ${name} ${udpCellName(c)}: ${rate.value?.toFixed(2) ?? 'fail'} ${c.size >= 1000 ? 'Gbit/s' : 'kpps'} ${rate.errors.join('; ')}`);
    }
  } finally {
    await env?.done();
  }
  return out;
}

function usernet(ctx: BenchContext, port: number, offload: boolean) {
  return cellsFor(ctx, offload ? 'usernet' : 'usernet --no-offload', async () => ({
    run: (c) =>
      transfer(
        ctx,
        'usernet run',
        [ctx.node, ctx.usernetCli, 'run', '--mtu', String(MTU), ...(offload ? [] : ['--no-offload']), '--', ...shellWrap(clientArgs(ctx, '10.0.2.2', port, c))],
        c,
      ),
    done: async () => undefined,
  }));
}

function slirp(ctx: BenchContext, port: number) {
  return cellsFor(ctx, 'slirp4netns', async () => {
    const s = await slirpNamespace(ctx, MTU);
    return {
      run: (c) => transfer(ctx, 'slirp4netns client', ['ip', 'netns', 'exec', s.ns, ...clientArgs(ctx, '10.0.2.2', port, c)], c, s.pid),
      done: s.release,
    };
  });
}

function pasta(ctx: BenchContext, port: number) {
  return cellsFor(ctx, 'pasta', async () => ({
    run: (c) => transfer(ctx, 'pasta', pastaRun(ctx, MTU, shellWrap(clientArgs(ctx, '10.0.2.2', port, c))), c),
    done: async () => undefined,
  }));
}

function kernel(ctx: BenchContext) {
  return cellsFor(ctx, 'kernel', async () => {
    const mark = ctx.c.mark();
    const v = vethPair(ctx, MTU);
    const port = 5201;
    const srv = ctx.c.spawn('ip', ['netns', 'exec', v.server, 'iperf3', '-s', '--forceflush', '-B', v.serverIp, '-p', String(port)], 'kernel iperf3 server');
    await srv.waitFor(/Server listening/);
    return {
      run: (c) => transfer(ctx, 'kernel client', ['ip', 'netns', 'exec', v.client, ...clientArgs(ctx, v.serverIp, port, c)], c, -1),
      done: () => ctx.c.release(mark),
    };
  });
}

export async function udpSuite(ctx: BenchContext): Promise<Row[]> {
  const mark = ctx.c.mark();
  const results = new Map<SystemName, Map<string, CellResult>>();
  try {
    const { port } = await hostServer(ctx);
    ctx.log('udp: kernel veth');
    results.set('kernel', await kernel(ctx));
    ctx.log('udp: usernet (vnet offloads)');
    results.set('usernet', await usernet(ctx, port, true));
    ctx.log('udp: usernet --no-offload');
    results.set('usernet --no-offload', await usernet(ctx, port, false));
    if (ctx.tools.slirp4netns) {
      ctx.log('udp: slirp4netns');
      results.set('slirp4netns', await slirp(ctx, port));
    }
    if (ctx.tools.pasta && ctx.pastaOk) {
      ctx.log('udp: pasta');
      results.set('pasta', await pasta(ctx, port));
    }
  } finally {
    await ctx.c.release(mark);
  }
  const rows: Row[] = cells.map((c) => {
    const name = udpCellName(c);
    const values: Row['values'] = {};
    for (const [sys, m] of results) if (m.has(name)) values[sys] = m.get(name)!.rate;
    return { group: 'UDP', metric: name, unit: c.size >= 1000 ? 'Gbit/s' : 'kpps', higherIsBetter: true, values };
  });
  for (const c of cells) {
    const name = udpCellName(c);
    const values: Row['values'] = {};
    for (const [sys, m] of results) if (sys !== 'kernel' && m.has(name)) values[sys] = m.get(name)!.cpu;
    rows.push({ group: 'CPU', metric: `UDP ${name.replace(' delivered', '')}, process CPU per million datagrams delivered`, unit: 's/Mpkt', higherIsBetter: false, values });
  }
  return rows;
}

/** The UDP targets (≥ 3× slirp4netns and ≥ 0.7× kernel, every cell), as lines for checkTargets. */
export function udpTargets(rows: Row[]): string[] {
  const out: string[] = [];
  for (const c of cells) {
    const r = rows.find((x) => x.group === 'UDP' && x.metric === udpCellName(c));
    const u = r?.values.usernet?.value ?? null;
    const k = r?.values.kernel?.value ?? null;
    const s = r?.values.slirp4netns?.value ?? null;
    const kr = u !== null && k !== null && k > 0 ? u / k : null;
    const sr = u !== null && s !== null && s > 0 ? u / s : null;
    const verdict = (x: number | null, need: number) => (x === null ? 'not measured' : x >= need ? 'met' : '**missed**');
    out.push(
      `- UDP ${udpCellName(c)}: ≥ 0.7× kernel: ${verdict(kr, 0.7)} (${kr === null ? '—' : kr.toFixed(2)}×); ` +
        `≥ 3× slirp4netns: ${verdict(sr, 3)} (${sr === null ? '—' : sr.toFixed(2)}×)`,
    );
  }
  return out;
}
