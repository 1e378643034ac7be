/**
 * Counts the garbage collections that start while `run` runs, and the heap's
 * growth across it: the allocation checks of the TCP and UDP data paths.
 * `run` is synchronous, so nothing else allocates meanwhile. The
 * young generation is emptied first unless `emptyFirst` is false (a full
 * collection through `gc` from a
 * new context), so a nursery left nearly full by the harness cannot make a
 * collection that the measured code did not cause. Counts and bytes, not time.
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { runInNewContext } from 'node:vm';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';

setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as () => void;

export async function measureAllocation(run: () => void, emptyFirst = true): Promise<{ gcs: number; grew: number }> {
  const starts: number[] = [];
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) starts.push(e.startTime);
  });
  obs.observe({ entryTypes: ['gc'] });
  await new Promise((r) => setTimeout(r, 10));
  if (emptyFirst) collect();
  // Only collections that started while run() ran count; entries arrive later.
  const t0 = performance.now();
  const before = getHeapStatistics().used_heap_size;
  run();
  const after = getHeapStatistics().used_heap_size;
  const t1 = performance.now();
  await new Promise((r) => setTimeout(r, 20));
  obs.disconnect();
  return { gcs: starts.filter((t) => t >= t0 && t <= t1).length, grew: after - before };
}
