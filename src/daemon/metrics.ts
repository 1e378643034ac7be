/**
 * The runtime's counters in the Prometheus text exposition format (version
 * 0.0.4), for GET /metrics. The stats object is walked as it is: a number
 * becomes a sample named after its path (usernet_nat_tcp_flows), and a key
 * that is not an identifier (a drop reason such as "tcp-bad-checksum", a
 * port name) becomes a `key` label instead of part of the name. Arrays (the
 * MAC table) and strings are left out.
 */

export function prometheusText(stats: object, guests?: number): string {
  const lines: string[] = ['# usernet counters, from the same object as GET /stats'];
  // The daemon's attached namespaces; --tap and run have no such count.
  if (guests !== undefined) lines.push(`usernet_guests ${guests}`);
  walk('usernet', stats, '', lines);
  return `${lines.join('\n')}\n`;
}

function walk(name: string, value: unknown, labels: string, out: string[]): void {
  if (typeof value === 'number') {
    if (Number.isFinite(value)) out.push(`${name}${labels === '' ? '' : `{${labels}}`} ${value}`);
    return;
  }
  if (typeof value === 'boolean') {
    out.push(`${name}${labels === '' ? '' : `{${labels}}`} ${value ? 1 : 0}`);
    return;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return;
  for (const [k, v] of Object.entries(value)) {
    if (/^[A-Za-z][A-Za-z0-9]*$/.test(k)) walk(`${name}_${snake(k)}`, v, labels, out);
    else {
      const label = labels === '' ? 'key' : `key${labels.split(',').length + 1}`;
      walk(name, v, `${labels}${labels === '' ? '' : ','}${label}="${escapeLabel(k)}"`, out);
    }
  }
}

function snake(k: string): string {
  return k.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}
