/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time per
 * function, the top N, as a Markdown table.
 *
 *   npx tsx bench/tools/top-functions.ts FILE.cpuprofile [N]
 *
 * Self time is taken from the sample counts: each sample is charged to the
 * node on top of the stack; `timeDeltas` give the interval per sample.
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export function topFunctions(p: Profile, n: number): string {
  const byId = new Map(p.nodes.map((x) => [x.id, x]));
  const self = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const node = byId.get(p.samples[i]);
    const dt = p.timeDeltas[i] ?? 0;
    if (!node) continue;
    const f = node.callFrame;
    const where = f.url ? `${relative(process.cwd(), f.url.replace(/^file:\/\//, ''))}:${f.lineNumber + 1}` : '';
    const key = `${f.functionName || '(anonymous)'}${where ? ` ${where}` : ''}`;
    self.set(key, (self.get(key) ?? 0) + dt);
    total += dt;
  }
  const rows = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, n);
  const lines = ['| self % | self ms | function |', '|---:|---:|---|'];
  for (const [k, us] of rows) lines.push(`| ${((100 * us) / total).toFixed(1)} | ${(us / 1000).toFixed(0)} | \`${k}\` |`);
  return lines.join('\n');
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: tsx bench/tools/top-functions.ts FILE.cpuprofile [N]\n');
    process.exit(2);
  }
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  process.stdout.write(`${topFunctions(p, Number(process.argv[3] ?? 25))}\n`);
}
