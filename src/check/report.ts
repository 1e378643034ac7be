/**
 * The result table of `usernet check`: one row per capability or end-to-end
 * probe, each with a status, what was seen, and for a failure what to do.
 *
 * Statuses: PASS; FAIL (usernet, or the part of it the row names, does not
 * work here; the row carries a fix); WARN (works, but slower or only in some
 * modes, e.g. a missing offload); SKIP (not probed, with the reason). The
 * exit status is 0 only when no row is FAIL.
 */

export type CheckStatus = 'PASS' | 'FAIL' | 'WARN' | 'SKIP';

export interface CheckRow {
  /** Section the row is printed under. */
  group: string;
  name: string;
  status: CheckStatus;
  /** What was seen: a value, an error message. */
  detail: string;
  /** What to do; shown for FAIL and WARN rows. */
  fix?: string;
}

/** Exit status of the check: 0 when nothing failed, 1 otherwise. */
export function checkExitStatus(rows: readonly CheckRow[]): number {
  return rows.some((r) => r.status === 'FAIL') ? 1 : 0;
}

/** Longest detail printed on the row itself; longer ones wrap under it. */
const DETAIL_WIDTH = 60;

/**
 * Formats the rows as a plain-text table grouped by `group`, in the order
 * given, fixes indented under their row, and a summary line. Plain ASCII
 * and no colours: the output goes into bug reports and CI logs.
 */
export function formatCheckTable(rows: readonly CheckRow[]): string {
  const nameWidth = Math.max(4, ...rows.map((r) => r.name.length));
  const out: string[] = [];
  let group: string | null = null;
  for (const r of rows) {
    if (r.group !== group) {
      if (group !== null) out.push('');
      out.push(`${r.group}:`);
      group = r.group;
    }
    const detail = oneLine(r.detail);
    const head = `  ${r.status}  ${r.name.padEnd(nameWidth)}`;
    if (detail.length <= DETAIL_WIDTH) out.push(`${head}  ${detail}`.trimEnd());
    else out.push(head.trimEnd(), `${' '.repeat(8)}${detail}`);
    if (r.fix !== undefined && (r.status === 'FAIL' || r.status === 'WARN')) out.push(`${' '.repeat(8)}fix: ${oneLine(r.fix)}`);
  }
  out.push('', summary(rows));
  return `${out.join('\n')}\n`;
}

/** "12 passed, 1 failed, 2 warnings, 1 skipped", leaving out the zero counts but the first two. */
export function summary(rows: readonly CheckRow[]): string {
  const n = (s: CheckStatus) => rows.filter((r) => r.status === s).length;
  const parts = [`${n('PASS')} passed`, `${n('FAIL')} failed`];
  if (n('WARN') > 0) parts.push(`${n('WARN')} warning${n('WARN') === 1 ? '' : 's'}`);
  if (n('SKIP') > 0) parts.push(`${n('SKIP')} skipped`);
  const verdict = n('FAIL') === 0 ? 'usernet works on this machine' : 'usernet does not fully work on this machine: see the fixes above';
  return `${parts.join(', ')}: ${verdict}`;
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}
