/**
 * Transactions through the NAT, from a namespace to a server on host
 * 127.0.0.1 (reached as 10.0.2.2): connections per second (connect, 100-byte
 * request, 100-byte reply, close) and request/response latency p50/p99 on
 * one persistent connection. usernet vs slirp4netns.
 *
 * Client and server are bench/tx/txbench.c: a C loop costs a few microseconds
 * per transaction, far below either network path, where a Node client would
 * add its own event-loop cost to every number. The client's namespace widens
 * its ephemeral port range and allows TIME-WAIT reuse, so a 5 s run at
 * thousands of connections per second is not limited by the client's ports.
 */
import { freePort, type BenchContext } from '../lib/context.js';
import { repeat, type Row, type Sample, type SystemName } from '../lib/results.js';
import type { Proc } from '../lib/sys.js';
import { slirpNamespace } from '../lib/peer-setup.js';

const SYSCTL = 'sysctl -qw net.ipv4.ip_local_port_range="1024 65000"; sysctl -qw net.ipv4.tcp_tw_reuse=1;';

interface TxResults {
  crr: Sample;
  p50: Sample;
  p99: Sample;
}

async function client(ctx: BenchContext, label: string, argv: string[]): Promise<any> {
  const p: Proc = ctx.c.spawn(argv[0], argv.slice(1), label);
  const r = await p.wait((ctx.seconds + 20) * 1000);
  if (r.timedOut) throw new Error(`${label}: no result within ${ctx.seconds + 20} s`);
  const line = p.stdout.split('\n').find((l) => l.startsWith('{"mode"'));
  if (!line) throw new Error(`${label}: exit ${r.code}: ${p.stderr.trim().slice(0, 200)}`);
  return JSON.parse(line);
}

async function measure(ctx: BenchContext, wrap: (inner: string) => Promise<string[]>): Promise<TxResults> {
  const tx = ctx.txbench!;
  const port = await freePort();
  const mark = ctx.c.mark();
  try {
    const srv = ctx.c.spawn(tx, ['server', String(port)], 'txbench server');
    await srv.waitFor(/listening/);
    const crr = await repeat(ctx.reps, async () => {
      const j = await client(ctx, 'txbench crr', await wrap(`${SYSCTL} exec ${tx} crr 10.0.2.2 ${port} ${ctx.seconds}`));
      if (j.count === 0) throw new Error(`no transaction completed (${j.errors} errors)`);
      return j.perSecond;
    });
    const rrs: Array<{ p50us: number; p99us: number }> = [];
    const p50 = await repeat(ctx.reps, async () => {
      const j = await client(ctx, 'txbench rr', await wrap(`exec ${tx} rr 10.0.2.2 ${port} ${ctx.seconds}`));
      rrs.push(j);
      return j.p50us;
    });
    const p99v = rrs.map((r) => r.p99us);
    const sorted = [...p99v].sort((a, b) => a - b);
    const p99: Sample = { value: sorted.length ? sorted[sorted.length >> 1] : null, reps: p99v, errors: p50.errors };
    ctx.log(`  ${crr.value?.toFixed(0)} conn/s, p50 ${p50.value?.toFixed(1)} µs, p99 ${p99.value?.toFixed(1)} µs ${crr.errors.join('; ')}`);
    return { crr, p50, p99 };
  } finally {
    await ctx.c.release(mark);
  }
}

export async function txSuite(ctx: BenchContext): Promise<Row[]> {
  if (ctx.txbench === null) return [];
  const res = new Map<SystemName, TxResults>();
  ctx.log('transactions: usernet');
  res.set(
    'usernet',
    await measure(ctx, async (inner) => [ctx.node, ctx.usernetCli, 'run', '--', 'sh', '-c', inner]),
  );
  if (ctx.tools.slirp4netns) {
    ctx.log('transactions: slirp4netns');
    const mark = ctx.c.mark();
    try {
      // One slirp4netns per measurement, like usernet run: no TIME-WAIT left over from the previous one.
      res.set(
        'slirp4netns',
        await measure(ctx, async (inner) => {
          const s = await slirpNamespace(ctx, 1500);
          return ['ip', 'netns', 'exec', s.ns, 'sh', '-c', inner];
        }),
      );
    } finally {
      await ctx.c.release(mark);
    }
  }
  const row = (metric: string, unit: string, higher: boolean, pick: (r: TxResults) => Sample): Row => {
    const values: Row['values'] = {};
    for (const [s, r] of res) values[s] = pick(r);
    return { group: 'Transactions', metric, unit, higherIsBetter: higher, values };
  };
  return [
    row('connect+100 B req+100 B resp+close', 'conn/s', true, (r) => r.crr),
    row('request/response p50, one connection', 'µs', false, (r) => r.p50),
    row('request/response p99, one connection', 'µs', false, (r) => r.p99),
  ];
}
