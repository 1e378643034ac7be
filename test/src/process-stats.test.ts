import { describe, expect, it } from 'vitest';
import { acquireGcObserver, processStats, releaseGcObserver } from '../../src/process-stats.js';

describe('processStats', () => {
  it('reports memory, descriptors and the GC pauses seen while observed', async () => {
    acquireGcObserver();
    try {
      const before = processStats().gc.count;
      // Enough short-lived garbage for a few scavenges.
      let keep = 0;
      for (let i = 0; i < 200_000; i++) keep += [i, i + 1, { i }].length;
      expect(keep).toBeGreaterThan(0);
      // Entries reach observers asynchronously.
      await new Promise((r) => setTimeout(r, 50));
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
