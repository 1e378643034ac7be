/**
 * Where an executable is: the absolute directories of PATH, then the usual
 * system ones (a sudo or a minimal environment may lack them). Relative PATH
 * entries are skipped: they would depend on the current directory.
 */
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

export function findInPath(name: string): string | null {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter((d) => d.startsWith('/'));
  for (const d of [...dirs, '/usr/bin', '/bin', '/usr/sbin', '/sbin']) {
    const p = join(d, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return null;
}
