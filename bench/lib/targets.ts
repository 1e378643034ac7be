/**
 * The targets, checked against one run's rows. Each line says met,
 * missed or not measured, with the numbers it was judged on. The targets are
 * written here as the issue states them; a miss is reported, never relaxed.
 */
import type { Row, SystemName } from './results.js';
import { udpTargets } from '../suites/udp.js';
import { scaleTargets } from './targets-scale.js';

function v(rows: Row[], group: string, metric: string, sys: SystemName): number | null {
  return rows.find((r) => r.group === group && r.metric === metric)?.values[sys]?.value ?? null;
}

function verdict(ok: boolean | null): string {
  return ok === null ? 'not measured' : ok ? 'met' : '**missed**';
}

function r2(x: number): string {
  return x.toFixed(2);
}

export function checkTargets(rows: Row[]): string {
  const out: string[] = [];
  const cells = ['ns→host MTU 1500', 'host→ns MTU 1500', 'ns→host MTU 65520', 'host→ns MTU 65520'];
  for (const c of cells) {
    const u = v(rows, 'TCP', c, 'usernet');
    const k = v(rows, 'TCP', c, 'kernel');
    const s = v(rows, 'TCP', c, 'slirp4netns');
    const need = c.includes('1500') ? 3 : 1.5;
    const kr = u !== null && k !== null ? u / k : null;
    const sr = u !== null && s !== null ? u / s : null;
    out.push(`- TCP ${c}: ≥ 0.5× kernel: ${verdict(kr === null ? null : kr >= 0.5)} (${kr === null ? '—' : r2(kr)}×); ` +
      `≥ ${need}× slirp4netns: ${verdict(sr === null ? null : sr >= need)} (${sr === null ? '—' : r2(sr)}×)`);
  }
  out.push(...udpTargets(rows));
  const bt = [v(rows, 'Bridge', 'TCP ns↔ns MTU 1500', 'usernet'), v(rows, 'Bridge', 'TCP ns↔ns MTU 1500', 'vde_switch')];
  const bu = [v(rows, 'Bridge', 'UDP 64 B delivered', 'usernet'), v(rows, 'Bridge', 'UDP 64 B delivered', 'vde_switch')];
  const br = [v(rows, 'Bridge', 'ping RTT avg', 'usernet'), v(rows, 'Bridge', 'ping RTT avg', 'vde_switch')];
  const ratio = (p: Array<number | null>) => (p[0] !== null && p[1] !== null && p[1] > 0 ? p[0] / p[1] : null);
  const btr = ratio(bt);
  const bur = ratio(bu);
  out.push(`- Bridge TCP ≥ 5× vde_switch: ${verdict(btr === null ? null : btr >= 5)} (${btr === null ? '—' : r2(btr)}×)`);
  out.push(`- Bridge 64 B packet rate ≥ 2× vde_switch: ${verdict(bur === null ? null : bur >= 2)} (${bur === null ? '—' : r2(bur)}×)`);
  out.push(`- Bridge RTT below vde_switch: ${verdict(br[0] === null || br[1] === null ? null : br[0] < br[1])} (${br[0] ?? '—'} vs ${br[1] ?? '—'} ms)`);
  const cr = [v(rows, 'Transactions', 'connect+100 B req+100 B resp+close', 'usernet'), v(rows, 'Transactions', 'connect+100 B req+100 B resp+close', 'slirp4netns')];
  const p99 = [v(rows, 'Transactions', 'request/response p99, one connection', 'usernet'), v(rows, 'Transactions', 'request/response p99, one connection', 'slirp4netns')];
  out.push(`- Connection rate ≥ slirp4netns: ${verdict(cr[0] === null || cr[1] === null ? null : cr[0] >= cr[1])} (${cr[0]?.toFixed(0) ?? '—'} vs ${cr[1]?.toFixed(0) ?? '—'} conn/s)`);
  out.push(`- p99 latency ≤ slirp4netns: ${verdict(p99[0] === null || p99[1] === null ? null : p99[0] <= p99[1])} (${p99[0]?.toFixed(1) ?? '—'} vs ${p99[1]?.toFixed(1) ?? '—'} µs)`);
  const gcRows = rows.filter((r) => r.group === 'Engine' && r.metric.startsWith('GCs in'));
  if (gcRows.length === 0) out.push('- No GC growth on the data paths in steady state: not measured');
  for (const r of gcRows) {
    const n = r.values.usernet?.value ?? null;
    // "Flat" read strictly: no more than a handful of collections over the whole run, i.e. no per-frame garbage.
    out.push(`- Flat GC count, ${r.metric.replace(/^GCs in /, '')}: ${verdict(n === null ? null : n <= 5)} (${n ?? '—'} collections)`);
  }
  out.push(...scaleTargets(rows));
  return out.join('\n');
}
