/**
 * TCP throughput, one iperf3 stream, container namespace <-> host loopback,
 * both directions, MTU 1500 and 65520.
 *
 * - usernet: `usernet run --mtu M [--no-offload] -- iperf3 -c 10.0.2.2`, the
 *   path a user takes; 10.0.2.2 maps to 127.0.0.1 where the server listens.
 * - slirp4netns: `slirp4netns --configure --mtu=M PID tap0` on a namespace
 *   held by a `sleep` we started; same 10.0.2.2 -> 127.0.0.1 mapping.
 * - pasta: as the unprivileged bench user (it refuses root-made namespaces);
 *   its gateway maps to host loopback too.
 * - kernel: a veth pair between two namespaces the bench creates, server bound
 *   to one end: the cost of the kernel's own path, no user space in between.
 *   (Two throwaway namespaces instead of root <-> namespace keeps all traffic
 *   inside namespaces we own; the kernel work per packet is the same.)
 *
 * The iperf3 client is wrapped in `sh -c '...; sleep 0.3'` where the measured
 * user-space process would otherwise exit with it, so the last CPU sample
 * (utime+stime from /proc) is taken after the transfer ended. The set-up of
 * each system is bench/lib/peer-setup.ts, shared with the other suites.
 */
import type { BenchContext } from '../lib/context.js';
import { parseTcp } from '../lib/iperf.js';
import { hostServer, pastaRun, shellWrap, slirpNamespace, vethPair } from '../lib/peer-setup.js';
import { repeat, type Row, type Sample, type SystemName } from '../lib/results.js';
import { CpuSampler, type Proc } from '../lib/sys.js';

export const MTUS = [1500, 65520] as const;

interface Cell {
  mtu: number;
  reverse: boolean;
}

const cells: Cell[] = MTUS.flatMap((mtu) => [
  { mtu, reverse: false },
  { mtu, reverse: true },
]);

function cellName(c: Cell): string {
  return `${c.reverse ? 'host→ns' : 'ns→host'} MTU ${c.mtu}`;
}

/** One measured transfer: throughput and the measured process's CPU seconds per GB moved (null for the kernel). */
interface Transfer {
  gbps: number;
  cpuPerGB: number | null;
}

function clientArgs(ctx: BenchContext, host: string, port: number, reverse: boolean): string[] {
  return ['iperf3', '-c', host, '-p', String(port), '-t', String(ctx.seconds), '-J', ...(reverse ? ['-R'] : [])];
}

/** Runs a process that ends when the transfer does, sampling `cpuPid` (default: the process itself). */
async function transfer(ctx: BenchContext, label: string, cmd: string[], cpuPid?: number): Promise<Transfer> {
  const p: Proc = ctx.c.spawn(cmd[0], cmd.slice(1), label);
  const sampler = new CpuSampler(cpuPid ?? p.pid);
  const r = await p.wait((ctx.seconds + 25) * 1000);
  const cpu = sampler.stop();
  if (r.timedOut) throw new Error(`${label}: no result within ${ctx.seconds + 25} s (stalled)`);
  const t = parseTcp(p.stdout);
  const gb = t.bytes / 1e9;
  return { gbps: t.bitsPerSecond / 1e9, cpuPerGB: cpu !== null && gb > 0 ? cpu / gb : null };
}

async function cellsFor(
  ctx: BenchContext,
  setup: (mtu: number) => Promise<{ run: (reverse: boolean) => Promise<Transfer>; done: () => Promise<void> }>,
): Promise<Map<string, { gbps: Sample; cpu: Sample }>> {
  const out = new Map<string, { gbps: Sample; cpu: Sample }>();
  for (const mtu of MTUS) {
    let env: Awaited<ReturnType<typeof setup>> | null = null;
    let setupError = '';
    try {
      env = await setup(mtu);
    } catch (err) {
      setupError = (err as Error).message.split('\n')[0];
    }
    for (const reverse of [false, true]) {
      const cpus: number[] = [];
      const gbps = env
        ? await repeat(ctx.reps, async () => {
            const t = await env!.run(reverse);
            if (t.cpuPerGB !== null) cpus.push(t.cpuPerGB);
            return t.gbps;
          })
        : { value: null, reps: [], errors: [setupError] };
      const sorted = [...cpus].sort((a, b) => a - b);
      const cpu: Sample = { value: sorted.length ? sorted[sorted.length >> 1] : null, reps: cpus, errors: [] };
      out.set(cellName({ mtu, reverse }), { gbps, cpu });
      ctx.log(`  ${cellName({ mtu, reverse })}: ${gbps.value?.toFixed(2) ?? 'fail'} Gbit/s ${gbps.errors.join('; ')}`);
    }
    await env?.done();
  }
  return out;
}

async function usernet(ctx: BenchContext, port: number, offload: boolean) {
  return cellsFor(ctx, async (mtu) => ({
    run: (reverse) =>
      transfer(ctx, 'usernet run', [
        ctx.node,
        ctx.usernetCli,
        'run',
        '--mtu',
        String(mtu),
        ...(offload ? [] : ['--no-offload']),
        '--',
        ...shellWrap(clientArgs(ctx, '10.0.2.2', port, reverse)),
      ]),
    done: async () => undefined,
  }));
}

async function slirp(ctx: BenchContext, port: number) {
  return cellsFor(ctx, async (mtu) => {
    const s = await slirpNamespace(ctx, mtu);
    return {
      run: (reverse) => transfer(ctx, 'slirp4netns client', ['ip', 'netns', 'exec', s.ns, ...clientArgs(ctx, '10.0.2.2', port, reverse)], s.pid),
      done: s.release,
    };
  });
}

async function pasta(ctx: BenchContext, port: number) {
  return cellsFor(ctx, async (mtu) => ({
    run: (reverse) => transfer(ctx, 'pasta', pastaRun(ctx, mtu, shellWrap(clientArgs(ctx, '10.0.2.2', port, reverse)))),
    done: async () => undefined,
  }));
}

async function kernel(ctx: BenchContext) {
  return cellsFor(ctx, async (mtu) => {
    const mark = ctx.c.mark();
    const v = vethPair(ctx, mtu);
    const port = 5201;
    const srv = ctx.c.spawn('ip', ['netns', 'exec', v.server, 'iperf3', '-s', '--forceflush', '-B', v.serverIp, '-p', String(port)], 'kernel iperf3 server');
    await srv.waitFor(/Server listening/);
    return {
      run: async (reverse) => {
        const t = await transfer(ctx, 'kernel client', ['ip', 'netns', 'exec', v.client, ...clientArgs(ctx, v.serverIp, port, reverse)]);
        return { gbps: t.gbps, cpuPerGB: null };
      },
      done: () => ctx.c.release(mark),
    };
  });
}

export async function tcpSuite(ctx: BenchContext): Promise<Row[]> {
  const mark = ctx.c.mark();
  const results = new Map<SystemName, Map<string, { gbps: Sample; cpu: Sample }>>();
  try {
    const { port } = await hostServer(ctx);
    ctx.log('tcp: kernel veth');
    results.set('kernel', await kernel(ctx));
    ctx.log('tcp: usernet (vnet offloads)');
    results.set('usernet', await usernet(ctx, port, true));
    ctx.log('tcp: usernet --no-offload');
    results.set('usernet --no-offload', await usernet(ctx, port, false));
    if (ctx.tools.slirp4netns) {
      ctx.log('tcp: slirp4netns');
      results.set('slirp4netns', await slirp(ctx, port));
    }
    if (ctx.tools.pasta && ctx.pastaOk) {
      ctx.log('tcp: pasta');
      results.set('pasta', await pasta(ctx, port));
    }
  } finally {
    await ctx.c.release(mark);
  }
  const rows: Row[] = [];
  for (const c of cells) {
    const name = cellName(c);
    const values: Row['values'] = {};
    for (const [sys, m] of results) if (m.has(name)) values[sys] = m.get(name)!.gbps;
    rows.push({ group: 'TCP', metric: name, unit: 'Gbit/s', higherIsBetter: true, values });
  }
  for (const c of cells) {
    const name = cellName(c);
    const values: Row['values'] = {};
    for (const [sys, m] of results) if (sys !== 'kernel' && m.has(name)) values[sys] = m.get(name)!.cpu;
    rows.push({ group: 'CPU', metric: `${name}, process CPU per GB moved`, unit: 's/GB', higherIsBetter: false, values });
  }
  return rows;
}
