/**
 * The engine alone (bench/micro/): run in a separate Node process so the
 * driver's allocations stay out of the GC counts. One run: each figure is
 * already an average over millions of frames or segments.
 */
import { join } from 'node:path';
import type { BenchContext } from '../lib/context.js';
import { sample, type Row } from '../lib/results.js';

export async function microSuite(ctx: BenchContext, benchDir: string, notes: string[]): Promise<Row[]> {
  const p = ctx.c.spawn(ctx.node, ['--import', 'tsx', join(benchDir, 'micro', 'main.ts'), String(ctx.microSeconds)], 'micro');
  const r = await p.wait((ctx.microSeconds * 2 + 60) * 1000);
  if (r.timedOut || r.code !== 0) {
    const why = r.timedOut ? 'timed out' : `exit ${r.code}: ${p.stderr.trim().split('\n').slice(0, 3).join(' ')}`;
    ctx.log(`  micro-benchmarks failed: ${why}`);
    return [{ group: 'Engine', metric: 'micro-benchmarks', unit: '', higherIsBetter: true, values: { usernet: { value: null, reps: [], errors: [why] } } }];
  }
  const j = JSON.parse(p.stdout.trim().split('\n').pop()!);
  const one = (v: number): Row['values'] => ({ usernet: sample([v]) });
  const row = (metric: string, unit: string, higher: boolean, v: number): Row => ({ group: 'Engine', metric, unit, higherIsBetter: higher, values: one(v) });
  const g = j.gc;
  notes.push(
    `Engine GC, ${j.steadySeconds} s steady runs: bridge 64 B unicast ${g.bridge64.work.toLocaleString('en-US')} frames: ` +
      `${g.bridge64.gc.minor} minor / ${g.bridge64.gc.major} major GCs (${g.bridge64.gc.pauseMs.toFixed(1)} ms paused); ` +
      `TCP MSS segments ${g.tcpMss.work.toLocaleString('en-US')}: ${g.tcpMss.gc.minor} minor / ${g.tcpMss.gc.major} major ` +
      `(${g.tcpMss.gc.pauseMs.toFixed(1)} ms paused).`,
  );
  ctx.log(`  bridge ${(j.bridge64.framesPerSecond / 1e6).toFixed(1)} Mframes/s; TCP send ${j.tcpMss.sendNsPerSegment.toFixed(0)} ns/seg, receive ${j.tcpMss.recvNsPerSegment.toFixed(0)} ns/seg`);
  return [
    row('bridge, 64 B known unicast', 'Mframes/s', true, j.bridge64.framesPerSecond / 1e6),
    row('bridge, 1514 B known unicast', 'Mframes/s', true, j.bridge1514.framesPerSecond / 1e6),
    row('bridge, 64 KiB GSO frame vnet→vnet', 'Mframes/s', true, j.bridgeGso.framesPerSecond / 1e6),
    row('TCP send path, 1448 B segments', 'ns/segment', false, j.tcpMss.sendNsPerSegment),
    row('TCP receive path, 1448 B segments', 'ns/segment', false, j.tcpMss.recvNsPerSegment),
    row('TCP send path, 64 KiB TSO segments', 'ns/segment', false, j.tcpTso.sendNsPerSegment),
    row('TCP receive path, 64 KiB TSO segments', 'ns/segment', false, j.tcpTso.recvNsPerSegment),
    row(`GCs in ${j.steadySeconds} s steady bridge forwarding`, 'count', false, g.bridge64.gc.minor + g.bridge64.gc.major),
    row(`GCs in ${j.steadySeconds} s steady TCP data transfer`, 'count', false, g.tcpMss.gc.minor + g.tcpMss.gc.major),
  ];
}
