/**
 * The soak's figures: one sample per interval, the growth verdict after the
 * warm-up, a Markdown table and a hand-written SVG plot (no dependency).
 */

export interface Sample {
  /** Seconds since the traffic started. */
  t: number;
  /** From /proc/PID: what the kernel charges the process. */
  rssKiB: number;
  fds: number;
  /** From usernet's own stats (process.*). */
  heapUsedKiB: number;
  heapTotalKiB: number;
  externalKiB: number;
  gcCount: number;
  gcPauseMs: number;
  gcPauseMaxMs: number;
  tcpFlows: number;
  udpFlows: number;
  icmpFlows: number;
  hostTcp: number;
  hostUdp: number;
  hostIcmp: number;
  macs: number;
}

export interface Trend {
  /** Median of the first and of the last fifth of the samples after the warm-up (one spike moves neither). */
  early: number;
  late: number;
  /** Least-squares slope over the samples after the warm-up, per minute. */
  slopePerMin: number;
  min: number;
  max: number;
}

export function trend(samples: Sample[], pick: (s: Sample) => number): Trend {
  const v = samples.map(pick);
  const n = v.length;
  if (n === 0) return { early: 0, late: 0, slopePerMin: 0, min: 0, max: 0 };
  const k = Math.max(1, Math.floor(n / 5));
  const mean = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
  const ts = samples.map((s) => s.t / 60);
  const mt = mean(ts);
  const mv = mean(v);
  let num = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    num += (ts[i] - mt) * (v[i] - mv);
    den += (ts[i] - mt) ** 2;
  }
  return { early: median(v.slice(0, k)), late: median(v.slice(n - k)), slopePerMin: den === 0 ? 0 : num / den, min: Math.min(...v), max: Math.max(...v) };
}

function median(a: number[]): number {
  const s = [...a].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Growth: the last fifth's median above the first fifth's by more than
 * `tolerance` (relative) and more than `floor` (absolute): one number that
 * does not move with the noise of a single sample.
 */
export function grows(t: Trend, tolerance: number, floor: number): boolean {
  return t.late - t.early > Math.max(t.early * tolerance, floor);
}

const mib = (kib: number) => (kib / 1024).toFixed(1);

export function renderTable(samples: Sample[], everySeconds: number): string {
  const head =
    '| time | RSS MiB | heap used MiB | heap total MiB | external MiB | fds | TCP flows | UDP flows | ICMP flows | host sockets tcp/udp/icmp | GCs | GC pause ms (max) |\n' +
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|';
  const rows: string[] = [];
  let prev: Sample | null = null;
  let nextAt = 0;
  for (const s of samples) {
    if (s.t + 1e-6 < nextAt && s !== samples[samples.length - 1]) continue;
    nextAt = s.t + everySeconds;
    const gcs = prev === null ? s.gcCount : s.gcCount - prev.gcCount;
    const pause = prev === null ? s.gcPauseMs : s.gcPauseMs - prev.gcPauseMs;
    rows.push(
      `| ${fmtTime(s.t)} | ${mib(s.rssKiB)} | ${mib(s.heapUsedKiB)} | ${mib(s.heapTotalKiB)} | ${mib(s.externalKiB)} | ${s.fds} | ${s.tcpFlows} | ${s.udpFlows} | ${s.icmpFlows} | ${s.hostTcp}/${s.hostUdp}/${s.hostIcmp} | ${gcs} | ${pause.toFixed(0)} (${s.gcPauseMaxMs.toFixed(1)}) |`,
    );
    prev = s;
  }
  return `${head}\n${rows.join('\n')}`;
}

export function fmtTime(t: number): string {
  const m = Math.floor(t / 60);
  const s = Math.round(t - m * 60);
  return `${m}:${String(s).padStart(2, '0')}`;
}

interface Series {
  label: string;
  color: string;
  pick: (s: Sample) => number;
}

/**
 * Two panels over time: memory (RSS, heap used, heap total; MiB) and counts
 * (fds, TCP and UDP flows), each with its own y axis from 0, and a dashed
 * line where the warm-up ends.
 */
export function renderSvg(samples: Sample[], warmUpSeconds: number): string {
  const W = 900;
  const panelH = 260;
  const left = 60;
  const right = 170;
  const top = 30;
  const gap = 60;
  const plotW = W - left - right;
  const H = top + 2 * panelH + gap + 40;
  const tMax = Math.max(60, samples.length > 0 ? samples[samples.length - 1].t : 60);
  const x = (t: number) => left + (t / tMax) * plotW;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  const panel = (y0: number, title: string, unit: string, series: Series[]) => {
    const vMax = niceMax(Math.max(1, ...samples.flatMap((s) => series.map((se) => se.pick(s)))));
    const y = (v: number) => y0 + panelH - (v / vMax) * panelH;
    out.push(`<text x="${left}" y="${y0 - 10}" font-weight="bold">${esc(title)}</text>`);
    for (let i = 0; i <= 4; i++) {
      const v = (vMax * i) / 4;
      out.push(`<line x1="${left}" x2="${left + plotW}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#ddd"/>`);
      out.push(`<text x="${left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${fmtNum(v)}</text>`);
    }
    out.push(`<text x="14" y="${y0 + panelH / 2}" transform="rotate(-90 14 ${y0 + panelH / 2})" text-anchor="middle">${esc(unit)}</text>`);
    const tStep = niceMax(tMax / 6);
    for (let t = 0; t <= tMax + 1e-6; t += tStep) {
      out.push(`<line x1="${x(t).toFixed(1)}" x2="${x(t).toFixed(1)}" y1="${y0}" y2="${y0 + panelH}" stroke="#eee"/>`);
      out.push(`<text x="${x(t).toFixed(1)}" y="${y0 + panelH + 16}" text-anchor="middle">${fmtTime(t)}</text>`);
    }
    out.push(`<rect x="${left}" y="${y0}" width="${plotW}" height="${panelH}" fill="none" stroke="#888"/>`);
    if (warmUpSeconds > 0 && warmUpSeconds < tMax) {
      out.push(`<line x1="${x(warmUpSeconds).toFixed(1)}" x2="${x(warmUpSeconds).toFixed(1)}" y1="${y0}" y2="${y0 + panelH}" stroke="#999" stroke-dasharray="4 4"/>`);
      out.push(`<text x="${(x(warmUpSeconds) + 4).toFixed(1)}" y="${y0 + 14}" fill="#777">warm-up ends</text>`);
    }
    series.forEach((se, i) => {
      const pts = samples.map((s) => `${x(s.t).toFixed(1)},${y(se.pick(s)).toFixed(1)}`).join(' ');
      out.push(`<polyline fill="none" stroke="${se.color}" stroke-width="1.5" points="${pts}"/>`);
      const ly = y0 + 20 + i * 18;
      out.push(`<line x1="${left + plotW + 14}" x2="${left + plotW + 34}" y1="${ly - 4}" y2="${ly - 4}" stroke="${se.color}" stroke-width="2"/>`);
      out.push(`<text x="${left + plotW + 40}" y="${ly}">${esc(se.label)}</text>`);
    });
  };
  panel(top, 'usernet memory', 'MiB', [
    { label: 'RSS', color: '#d62728', pick: (s) => s.rssKiB / 1024 },
    { label: 'V8 heap total', color: '#1f77b4', pick: (s) => s.heapTotalKiB / 1024 },
    { label: 'V8 heap used', color: '#2ca02c', pick: (s) => s.heapUsedKiB / 1024 },
    { label: 'external', color: '#9467bd', pick: (s) => s.externalKiB / 1024 },
  ]);
  panel(top + panelH + gap, 'descriptors and flows', 'count', [
    { label: 'fds', color: '#d62728', pick: (s) => s.fds },
    { label: 'TCP flows', color: '#1f77b4', pick: (s) => s.tcpFlows },
    { label: 'UDP flows', color: '#2ca02c', pick: (s) => s.udpFlows },
    { label: 'ICMP flows', color: '#ff7f0e', pick: (s) => s.icmpFlows },
  ]);
  out.push(`<text x="${left + plotW / 2}" y="${H - 8}" text-anchor="middle">time since the traffic started (min:s)</text>`);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/** 1, 2 or 5 times a power of ten, at least v. */
export function niceMax(v: number): number {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fmtNum(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
}
