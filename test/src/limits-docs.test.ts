/**
 * The limits module is the one source of every cap, timeout and budget:
 * --help prints from it, the parser takes its names and ranges from it, and
 * README's Reliability table must state each limit as the module has it.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultInCli, limitNames, limits, readmeCap, type Limit } from '../../stack/limits.js';
import { LIMIT_NAMES } from '../../src/options.js';
import { mainHelp } from '../../src/cli/help.js';

const README = readFileSync(join(__dirname, '..', '..', 'README.md'), 'utf8');

function reliabilityRows(): Map<string, string> {
  const start = README.indexOf('## Reliability');
  const end = README.indexOf('### Verified under attack', start);
  const rows = new Map<string, string>();
  for (const line of README.slice(start, end).split('\n')) {
    const m = /^\| ([^|]+?) \|/.exec(line);
    if (m !== null) rows.set(m[1], line);
  }
  return rows;
}

describe('stack/limits.ts', () => {
  it("README's Reliability table states every limit's default in its row", () => {
    const rows = reliabilityRows();
    for (const [key, l] of Object.entries(limits) as [string, Limit][]) {
      const row = rows.get(l.row);
      expect(row, `${key}: no row "${l.row}"`).toBeDefined();
      const cap = readmeCap(l);
      // A bare number must stand alone (64 is not the 64 of 1024).
      const re = new RegExp(`(^|[^0-9])${cap.replace(/[.*+?^${}()|[\]\\`]/g, '\\$&')}($|[^0-9])`);
      expect(row, `${key}: "${cap}"`).toMatch(re);
    }
  });

  it('--help lists every --limit name with its default, and the parser takes the same names', () => {
    const help = mainHelp.replace(/\n\s+/g, ' ');
    for (const { name, limit } of limitNames()) {
      expect(help).toContain(`--limit ${name}=`);
      expect(help).toMatch(new RegExp(`--limit ${name}=\\S+ [^\\n]*?\\(default ${defaultInCli(limit)}\\)`));
    }
    expect(Object.keys(LIMIT_NAMES)).toEqual(limitNames().map((n) => n.name));
  });
});
