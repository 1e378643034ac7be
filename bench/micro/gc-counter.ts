/**
 * Counts garbage collections while a steady loop runs, via PerformanceObserver
 * 'gc' entries. Entries are delivered asynchronously, so a steady run must
 * yield to the event loop now and then (the micro-benchmarks run in slices of
 * a few milliseconds with a setImmediate between them) and take() waits one
 * more turn before reading. Because of that delay, a collection from before
 * reset() (the set-up's buffers) can arrive after it: only entries that
 * started after the reset count.
 */
import { PerformanceObserver, constants, performance } from 'node:perf_hooks';

export interface GcCounts {
  minor: number;
  major: number;
  other: number;
  /** Total pause time, ms. */
  pauseMs: number;
}

export class GcCounter {
  private counts: GcCounts = { minor: 0, major: 0, other: 0, pauseMs: 0 };
  private readonly obs: PerformanceObserver;
  private since = 0;

  constructor() {
    this.obs = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        if (e.startTime < this.since) continue;
        const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind;
        if (kind === constants.NODE_PERFORMANCE_GC_MINOR) this.counts.minor++;
        else if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) this.counts.major++;
        else this.counts.other++;
        this.counts.pauseMs += e.duration;
      }
    });
    this.obs.observe({ entryTypes: ['gc'] });
  }

  reset(): void {
    this.since = performance.now();
    this.counts = { minor: 0, major: 0, other: 0, pauseMs: 0 };
  }

  async take(): Promise<GcCounts> {
    await new Promise((r) => setTimeout(r, 20));
    return { ...this.counts };
  }

  stop(): void {
    this.obs.disconnect();
  }
}

export function yieldNow(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}
