/**
 * Builds the gVisor emulation library (gvisor_emu.c) and its checker into a
 * fresh temporary directory `i13n-<random>` with the system C compiler, as
 * every test run does (nothing prebuilt is committed). remove() deletes it.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const HERE = resolve(import.meta.dirname);

export interface GvisorEmu {
  dir: string;
  /** The LD_PRELOAD library. */
  library: string;
  /** test/gvisor-emu/check.c, built. */
  checker: string;
  remove(): void;
}

export function buildGvisorEmu(): GvisorEmu {
  const dir = mkdtempSync(join(tmpdir(), 'i13n-'));
  const library = join(dir, 'gvisor_emu.so');
  const checker = join(dir, 'check');
  try {
    execFileSync('cc', ['-shared', '-fPIC', '-O2', '-Wall', '-Wextra', '-Werror', '-o', library, join(HERE, 'gvisor_emu.c'), '-ldl']);
    execFileSync('cc', ['-O2', '-Wall', '-Werror', '-o', checker, join(HERE, 'check.c')]);
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return { dir, library, checker, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
