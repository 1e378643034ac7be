/**
 * Measurements and the one table they print as.
 *
 * A row is one metric (say "TCP ns->host MTU 1500, Gbit/s") with a value per
 * system (kernel, usernet, the peers). Each value is the median of its
 * repetitions; the raw repetitions are kept for RESULTS.md. Ratio columns
 * compare usernet with every other system as "times better": value/peer for
 * higher-is-better metrics, peer/value for lower-is-better ones (latency,
 * CPU per GB), so a ratio above 1 always means usernet wins.
 */

export const SYSTEMS = ['kernel', 'usernet', 'usernet --no-offload', 'usernet --workers 1', 'slirp4netns', 'pasta', 'vde_switch'] as const;
export type SystemName = (typeof SYSTEMS)[number];
/** Systems usernet is compared against in the ratio columns. */
const RATIO_TO: SystemName[] = ['kernel', 'slirp4netns', 'pasta', 'vde_switch'];

export interface Sample {
  /** Median of `reps`, or null when every repetition failed. */
  value: number | null;
  reps: number[];
  /** Why repetitions failed (timeouts, stalls, a missing peer). */
  errors: string[];
}

export interface Row {
  group: string;
  metric: string;
  unit: string;
  higherIsBetter: boolean;
  values: Partial<Record<SystemName, Sample>>;
  /** Which usernet variant the ratios use (default 'usernet'). */
  ratioFrom?: SystemName;
}

export function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function sample(reps: number[], errors: string[] = []): Sample {
  return { value: median(reps), reps, errors };
}

/** Runs fn `reps` times and gathers numbers and failures into a Sample. */
export async function repeat(reps: number, fn: (i: number) => Promise<number>): Promise<Sample> {
  const ok: number[] = [];
  const errors: string[] = [];
  for (let i = 0; i < reps; i++) {
    try {
      ok.push(await fn(i));
    } catch (err) {
      errors.push((err as Error).message.split('\n')[0].slice(0, 200));
    }
  }
  return sample(ok, errors);
}

export function fmt(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—';
  const a = Math.abs(v);
  if (a >= 1000) return Math.round(v).toLocaleString('en-US');
  if (a >= 100) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  return v.toPrecision(2);
}

function ratio(row: Row, peer: SystemName): string {
  const u = row.values[row.ratioFrom ?? 'usernet']?.value;
  const p = row.values[peer]?.value;
  if (u === null || u === undefined || p === null || p === undefined || u === 0 || p === 0) return '—';
  const r = row.higherIsBetter ? u / p : p / u;
  return `${r >= 10 ? r.toFixed(0) : r.toFixed(2)}×`;
}

function cell(s: Sample | undefined): string {
  if (s === undefined) return '';
  if (s.value === null) return s.errors.length > 0 ? 'fail' : '—';
  return fmt(s.value) + (s.errors.length > 0 ? '*' : '');
}

/** The one table, as Markdown (it reads fine in a terminal too). */
export function renderTable(rows: Row[]): string {
  const head = ['metric', 'unit', ...SYSTEMS, ...RATIO_TO.map((p) => `usernet ÷ ${p}`)];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i < 2 ? '---' : '---:')).join('|')}|`];
  for (const r of rows) {
    const metric = `${r.group}: ${r.metric}${r.ratioFrom && r.ratioFrom !== 'usernet' ? ` (ratios: ${r.ratioFrom})` : ''}`;
    const unit = `${r.unit} ${r.higherIsBetter ? '↑' : '↓'}`;
    lines.push(`| ${[metric, unit, ...SYSTEMS.map((s) => cell(r.values[s])), ...RATIO_TO.map((p) => ratio(r, p))].join(' | ')} |`);
  }
  return lines.join('\n');
}

/** Every repetition and failure, for the record. */
export function renderRaw(rows: Row[]): string {
  const out: string[] = [];
  for (const r of rows) {
    for (const s of SYSTEMS) {
      const v = r.values[s];
      if (!v) continue;
      const reps = v.reps.map((x) => fmt(x)).join(', ');
      const errs = v.errors.length > 0 ? `; failures: ${v.errors.join(' | ')}` : '';
      out.push(`- ${r.group}: ${r.metric} — ${s}: [${reps}]${errs}`);
    }
  }
  return out.join('\n');
}
