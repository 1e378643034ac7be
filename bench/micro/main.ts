/**
 * Entry point of the engine micro-benchmarks, run in a process of its own
 * (`node --import tsx bench/micro/main.ts SECONDS`) so the bench driver's own
 * allocations never show up in the GC counts. Prints one JSON object.
 *
 * Throughput figures come from short timed runs; the GC figures from one
 * steady run per workload of SECONDS, counted with PerformanceObserver.
 */
import { bridgeThroughput } from './bridge.js';
import { GcCounter, type GcCounts } from './gc-counter.js';
import { tcpSegments } from './tcp.js';

async function main(): Promise<void> {
  const steady = Number(process.argv[2] ?? 10);
  const short = Math.min(3, steady);
  const gc = new GcCounter();
  const out: Record<string, unknown> = {};
  out.bridge64 = await bridgeThroughput(64, false, short);
  out.bridge1514 = await bridgeThroughput(1514, false, short);
  out.bridgeGso = await bridgeThroughput(65_000, true, short);
  out.tcpMss = await tcpSegments(1460, short);
  out.tcpTso = await tcpSegments(65_535 - 20 - 60, short);

  const gcRuns: Record<string, { gc: GcCounts; heapDeltaKiB: number; work: number }> = {};
  const reset = (): void => gc.reset();
  let heap0 = 0;
  const onSteady = (): void => {
    heap0 = process.memoryUsage().heapUsed;
    reset();
  };
  for (const [name, fn] of [
    ['bridge64', () => bridgeThroughput(64, false, steady, onSteady).then((r) => r.frames)],
    ['tcpMss', () => tcpSegments(1460, steady, onSteady).then((r) => r.segments)],
  ] as const) {
    const work = await fn();
    const counts = await gc.take();
    gcRuns[name] = { gc: counts, heapDeltaKiB: Math.round((process.memoryUsage().heapUsed - heap0) / 1024), work };
  }
  out.gc = gcRuns;
  out.steadySeconds = steady;
  gc.stop();
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
