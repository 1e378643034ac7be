/**
 * TCP with several parallel streams (iperf3 -P 4 and -P 16), container
 * namespace <-> host loopback, both directions, MTU 1500 and 65520; and how
 * fairly the streams shared the path, as Jain's index over the bytes each
 * stream delivered: (Σx)² / (n·Σx²), 1 when every stream got the same, 1/n
 * when one took everything.
 *
 * The systems are set up as in the single-stream TCP suite (suites/tcp.ts,
 * bench/lib/peer-setup.ts): usernet through `usernet run` (an engine
 * shard per core, and --workers 1), slirp4netns on a namespace we
 * hold, pasta as the bench user, and the kernel as a veth pair between two
 * namespaces, which spreads the streams over every core. Throughput is
 * iperf3's receiver sum.
 */
import { availableParallelism } from 'node:os';
import type { BenchContext } from '../lib/context.js';
import { median, repeat, type Row, type Sample, type SystemName } from '../lib/results.js';
import { hostServer, pastaRun, shellWrap, slirpNamespace, vethPair } from '../lib/peer-setup.js';
import { type Proc } from '../lib/sys.js';
import { MTUS } from './tcp.js';

export const STREAMS = [4, 16] as const;

interface Measured {
  gbps: number;
  jain: number;
}

/** Jain's fairness index of per-stream amounts. */
export function jain(xs: number[]): number {
  const n = xs.length;
  if (n === 0) return NaN;
  let sum = 0;
  let sq = 0;
  for (const x of xs) {
    sum += x;
    sq += x * x;
  }
  return sq === 0 ? NaN : (sum * sum) / (n * sq);
}

/** Throughput and fairness from iperf3 -J with -P: the receiver's sum, and each stream's received bytes. */
export function parseParallel(stdout: string): Measured {
  const start = stdout.indexOf('{');
  if (start < 0) throw new Error(`iperf3 printed no JSON: ${stdout.slice(0, 200)}`);
  const j = JSON.parse(stdout.slice(start));
  if (j.error) throw new Error(`iperf3: ${j.error}`);
  const sum = j.end?.sum_received;
  if (!sum || typeof sum.bits_per_second !== 'number') throw new Error('iperf3 JSON without end.sum_received');
  const bytes = (j.end.streams ?? []).map((s: any) => Number(s.receiver?.bytes ?? NaN)).filter((b: number) => Number.isFinite(b));
  return { gbps: sum.bits_per_second / 1e9, jain: jain(bytes) };
}

function cellName(streams: number, reverse: boolean, mtu: number): string {
  return `${streams} streams ${reverse ? 'host→ns' : 'ns→host'} MTU ${mtu}`;
}

function client(ctx: BenchContext, host: string, port: number, streams: number, reverse: boolean): string[] {
  return ['iperf3', '-c', host, '-p', String(port), '-t', String(ctx.seconds), '-P', String(streams), '-J', ...(reverse ? ['-R'] : [])];
}

async function runOnce(ctx: BenchContext, label: string, cmd: string[]): Promise<Measured> {
  const p: Proc = ctx.c.spawn(cmd[0], cmd.slice(1), label);
  const r = await p.wait((ctx.seconds + 30) * 1000);
  if (r.timedOut) throw new Error(`${label}: no result within ${ctx.seconds + 30} s (stalled)`);
  return parseParallel(p.stdout);
}

type Setup = (mtu: number) => Promise<{ run: (streams: number, reverse: boolean) => Promise<Measured>; done: () => Promise<void> }>;

async function cellsFor(ctx: BenchContext, setup: Setup): Promise<Map<string, { gbps: Sample; jain: Sample }>> {
  const out = new Map<string, { gbps: Sample; jain: Sample }>();
  for (const mtu of MTUS) {
    let env: Awaited<ReturnType<Setup>> | null = null;
    let setupError = '';
    try {
      env = await setup(mtu);
    } catch (err) {
      setupError = (err as Error).message.split('\n')[0];
    }
    for (const streams of STREAMS) {
      for (const reverse of [false, true]) {
        const fair: number[] = [];
        const gbps = env
          ? await repeat(ctx.reps, async () => {
              const m = await env!.run(streams, reverse);
              if (Number.isFinite(m.jain)) fair.push(m.jain);
              return m.gbps;
            })
          : { value: null, reps: [], errors: [setupError] };
        const name = cellName(streams, reverse, mtu);
        out.set(name, { gbps, jain: { value: median(fair), reps: fair, errors: [] } });
        ctx.log(`  ${name}: ${gbps.value?.toFixed(2) ?? 'fail'} Gbit/s, Jain ${median(fair)?.toFixed(3) ?? '—'} ${gbps.errors.join('; ')}`);
      }
    }
    await env?.done();
  }
  return out;
}

export async function parallelSuite(ctx: BenchContext): Promise<Row[]> {
  const mark = ctx.c.mark();
  const results = new Map<SystemName, Map<string, { gbps: Sample; jain: Sample }>>();
  try {
    const { port } = await hostServer(ctx);
    ctx.log('parallel: kernel veth');
    results.set(
      'kernel',
      await cellsFor(ctx, async (mtu) => {
        const m = ctx.c.mark();
        const v = vethPair(ctx, mtu);
        const srv = ctx.c.spawn('ip', ['netns', 'exec', v.server, 'iperf3', '-s', '--forceflush', '-B', v.serverIp, '-p', '5201'], 'kernel iperf3 server');
        await srv.waitFor(/Server listening/);
        return {
          run: (n, rev) => runOnce(ctx, 'kernel client', ['ip', 'netns', 'exec', v.client, ...client(ctx, v.serverIp, 5201, n, rev)]),
          done: () => ctx.c.release(m),
        };
      }),
    );
    // usernet: an engine shard per core (src/shards/), and one thread (--workers 1, the default).
    for (const [sys, extra] of [['usernet', ['--workers', String(availableParallelism())]], ['usernet --workers 1', ['--workers', '1']]] as const) {
      ctx.log(`parallel: ${sys}`);
      results.set(
        sys,
        await cellsFor(ctx, async (mtu) => ({
          run: (n, rev) =>
            runOnce(ctx, sys, [ctx.node, ctx.usernetCli, 'run', '--mtu', String(mtu), ...extra, '--', ...shellWrap(client(ctx, '10.0.2.2', port, n, rev))]),
          done: async () => undefined,
        })),
      );
    }
    if (ctx.tools.slirp4netns) {
      ctx.log('parallel: slirp4netns');
      results.set(
        'slirp4netns',
        await cellsFor(ctx, async (mtu) => {
          const s = await slirpNamespace(ctx, mtu);
          return {
            run: (n, rev) => runOnce(ctx, 'slirp4netns client', ['ip', 'netns', 'exec', s.ns, ...client(ctx, '10.0.2.2', port, n, rev)]),
            done: s.release,
          };
        }),
      );
    }
    if (ctx.tools.pasta && ctx.pastaOk) {
      ctx.log('parallel: pasta');
      results.set(
        'pasta',
        await cellsFor(ctx, async (mtu) => ({
          run: (n, rev) => runOnce(ctx, 'pasta', pastaRun(ctx, mtu, shellWrap(client(ctx, '10.0.2.2', port, n, rev)))),
          done: async () => undefined,
        })),
      );
    }
  } finally {
    await ctx.c.release(mark);
  }
  const rows: Row[] = [];
  const names = MTUS.flatMap((mtu) => STREAMS.flatMap((n) => [false, true].map((rev) => cellName(n, rev, mtu))));
  for (const name of names) {
    const values: Row['values'] = {};
    for (const [sys, m] of results) if (m.has(name)) values[sys] = m.get(name)!.gbps;
    rows.push({ group: 'TCP parallel', metric: name, unit: 'Gbit/s', higherIsBetter: true, values });
  }
  for (const name of names) {
    const values: Row['values'] = {};
    for (const [sys, m] of results) if (m.has(name)) values[sys] = m.get(name)!.jain;
    rows.push({ group: 'Fairness', metric: `Jain's index, ${name}`, unit: 'index', higherIsBetter: true, values });
  }
  return rows;
}
