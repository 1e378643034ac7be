import { describe, expect, it } from 'vitest';
import { acquireGcObserver, processStats, releaseGcObserver } from '../../src/process-stats.js';

describe('processStats', () => {
  it('reports memory, descriptors and the GC pauses seen while observed', async () => {
    acquireGcObserver();
    try {
      const before = processStats().gc.count;
      // Short-lived garbage until a scavenge is seen (entries reach observers asynchronously).
      let keep = 0;
      for (let round = 0; round < 200 && processStats().gc.count === before; round++) {
        for (let i = 0; i < 200_000; i++) keep += [i, i + 1, { i }].length;
        await new Promise((r) => setTimeout(r, 5));
      }
      expect(keep).toBeGreaterThan(0);
      const s = processStats();
      expect(s.rssBytes).toBeGreaterThan(s.heapUsedBytes);
      expect(s.heapTotalBytes).toBeGreaterThanOrEqual(s.heapUsedBytes);
      expect(s.fds).toBeGreaterThanOrEqual(3);
      expect(s.gc.count).toBeGreaterThan(before);
      expect(s.gc.pauseMsTotal).toBeGreaterThan(0);
      expect(s.gc.pauseMsMax).toBeLessThanOrEqual(s.gc.pauseMsTotal);
    } finally {
      releaseGcObserver();
    }
  });

  it('stops observing with its last user and keeps the counts', async () => {
    acquireGcObserver();
    acquireGcObserver();
    releaseGcObserver();
    releaseGcObserver();
    releaseGcObserver(); // one too many: ignored
    const count = processStats().gc.count;
    let keep = 0;
    for (let i = 0; i < 200_000; i++) keep += [i, { i }].length;
    expect(keep).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 50));
    expect(processStats().gc.count).toBe(count);
  });
});
