/**
 * Issue 17's targets for the rows of the parallel, forward and footprint
 * suites, as the issue states them; a miss is reported, never relaxed.
 */
import type { Row, SystemName } from './results.js';

function v(rows: Row[], group: string, metric: string, sys: SystemName): number | null {
  return rows.find((r) => r.group === group && r.metric === metric)?.values[sys]?.value ?? null;
}

function verdict(ok: boolean | null): string {
  return ok === null ? 'not measured' : ok ? 'met' : '**missed**';
}

function x(n: number | null): string {
  return n === null ? '—' : `${n.toFixed(2)}×`;
}

function ratio(a: number | null, b: number | null): number | null {
  return a !== null && b !== null && b > 0 ? a / b : null;
}

export function scaleTargets(rows: Row[]): string[] {
  const out: string[] = [];
  for (const r of rows.filter((r) => r.group === 'TCP parallel')) {
    const k = ratio(r.values.usernet?.value ?? null, r.values.kernel?.value ?? null);
    const jain = v(rows, 'Fairness', `Jain's index, ${r.metric}`, 'usernet');
    out.push(
      `- TCP ${r.metric} ≥ 0.7× kernel: ${verdict(k === null ? null : k >= 0.7)} (${x(k)}); ` +
        `fair (Jain ≥ 0.9): ${verdict(jain === null ? null : jain >= 0.9)} (${jain?.toFixed(3) ?? '—'})`,
    );
  }
  for (const r of rows.filter((r) => r.group === 'Port forward')) {
    const u = r.values.usernet?.value ?? null;
    const k = ratio(u, r.values.kernel?.value ?? null);
    const p = r.values.pasta?.value ?? null;
    out.push(
      `- Port forward ${r.metric} ≥ 0.8× kernel: ${verdict(k === null ? null : k >= 0.8)} (${x(k)}); ` +
        `ahead of pasta -t: ${verdict(u === null || p === null ? null : u > p)} (${x(ratio(u, p))})`,
    );
  }
  const idle = v(rows, 'Footprint', 'RSS idle after start', 'usernet');
  out.push(`- Idle RSS ≤ 40 MB: ${verdict(idle === null ? null : idle * 1.048576 <= 40)} (${idle === null ? '—' : (idle * 1.048576).toFixed(1)} MB)`);
  const per = v(rows, 'Footprint', 'RSS per established connection', 'usernet');
  out.push(`- RSS per established connection ≤ 8 KiB: ${verdict(per === null ? null : per <= 8)} (${per?.toFixed(1) ?? '—'} KiB)`);
  return out;
}
