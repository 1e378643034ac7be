/**
 * The process's own footprint for the stats: resident memory, the V8 heap,
 * open file descriptors and garbage-collection pauses. Memory and fds are
 * read when the stats are asked for (process.memoryUsage, /proc/self/fd);
 * GC pauses come from one perf_hooks 'gc' observer shared by every Runtime
 * of the process (the warm-up's private copy included) and counted from its
 * first start, so the numbers are the process's, whichever runtime reports
 * them. The observer runs while at least one Runtime is open: it costs one
 * callback per collection, nothing per frame.
 */
import { readdirSync } from 'node:fs';
import { constants, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';

export interface GcStats {
  /** Collections seen, all kinds. */
  count: number;
  /** Of those, full mark-sweep-compact ones (the rest are scavenges, incremental steps, weak callbacks). */
  major: number;
  /** Sum of their pauses, milliseconds. */
  pauseMsTotal: number;
  /** The longest pause, milliseconds. */
  pauseMsMax: number;
}

export interface ProcessStats {
  /** -1 when it could not be read (no descriptor left). */
  rssBytes: number;
  heapUsedBytes: number;
  heapTotalBytes: number;
  /** C++ objects bound to JS, ArrayBuffers included. */
  externalBytes: number;
  arrayBuffersBytes: number;
  /** Open file descriptors; -1 where /proc/self/fd cannot be read. */
  fds: number;
  gc: GcStats;
}

const gc: GcStats = { count: 0, major: 0, pauseMsTotal: 0, pauseMsMax: 0 };
let observer: PerformanceObserver | null = null;
let users = 0;

function onEntries(list: { getEntries(): PerformanceEntry[] }): void {
  for (const e of list.getEntries()) {
    gc.count++;
    if ((e as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) gc.major++;
    gc.pauseMsTotal += e.duration;
    if (e.duration > gc.pauseMsMax) gc.pauseMsMax = e.duration;
  }
}

/** Starts counting GC pauses (once per process); pair with releaseGcObserver. */
export function acquireGcObserver(): void {
  if (users++ > 0) return;
  observer = new PerformanceObserver(onEntries);
  observer.observe({ entryTypes: ['gc'] });
}

/** The last user stops the observer; the counts stay. */
export function releaseGcObserver(): void {
  if (users === 0 || --users > 0) return;
  observer?.disconnect();
  observer = null;
}

function fdCount(): number {
  try {
    // One entry is the directory handle readdir itself holds open.
    return readdirSync('/proc/self/fd').length - 1;
  } catch {
    return -1;
  }
}

/**
 * process.memoryUsage reads /proc/self/stat for the RSS and throws EMFILE when
 * the process is out of descriptors, exactly when its stats matter: then the
 * heap comes from V8 alone and the RSS (and arrayBuffers) is -1.
 */
function memory(): NodeJS.MemoryUsage {
  try {
    return process.memoryUsage();
  } catch {
    const h = getHeapStatistics();
    return { rss: -1, heapUsed: h.used_heap_size, heapTotal: h.total_heap_size, external: h.external_memory, arrayBuffers: -1 };
  }
}

export function processStats(): ProcessStats {
  const m = memory();
  return {
    rssBytes: m.rss,
    heapUsedBytes: m.heapUsed,
    heapTotalBytes: m.heapTotal,
    externalBytes: m.external,
    arrayBuffersBytes: m.arrayBuffers,
    fds: fdCount(),
    gc: { count: gc.count, major: gc.major, pauseMsTotal: Math.round(gc.pauseMsTotal * 1000) / 1000, pauseMsMax: Math.round(gc.pauseMsMax * 1000) / 1000 },
  };
}
