/**
 * Packaging conventions: the man page and completions are what
 * scripts/gen-docs.mjs makes from the current --help texts, the N-API version
 * --version prints is binding.gyp's, and the CLI entry is executable.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ADDON_NAPI_VERSION, versionLines } from '../../src/cli/version.js';

const ROOT = join(import.meta.dirname, '..', '..');

describe('packaging', () => {
  it('man/usernet.1 and completions/ are generated from the current --help (npm run build regenerates them)', () => {
    const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'gen-docs.mjs'), '--check'], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('the completions know every subcommand and the options of each', () => {
    const bash = readFileSync(join(ROOT, 'completions', 'usernet.bash'), 'utf8');
    expect(bash).toMatch(/compgen -W "run check slirp4netns"/);
    for (const o of ['--tap', '--publish', '--tap-name', '--disable-ipv6', '--ready-fd', '--no-offload']) expect(bash).toContain(o);
    const r = spawnSync('bash', ['-c', `source ${join(ROOT, 'completions', 'usernet.bash')}; COMP_WORDS=(usernet check --d); COMP_CWORD=2; _usernet; echo "\${COMPREPLY[@]}"`], { encoding: 'utf8' });
    expect(r.stdout.trim()).toBe('--disable-ipv6');
    expect(readFileSync(join(ROOT, 'completions', '_usernet'), 'utf8')).toMatch(/^#compdef usernet/);
    expect(readFileSync(join(ROOT, 'man', 'usernet.1'), 'utf8')).toMatch(/^\.TH USERNET 1/m);
  });

  it("--version's N-API version is binding.gyp's, and names Node and the kernel", () => {
    expect(readFileSync(join(ROOT, 'binding.gyp'), 'utf8')).toContain(`"NAPI_VERSION=${ADDON_NAPI_VERSION}"`);
    const [usernet, addon, node, kernel] = versionLines();
    expect(usernet).toMatch(/^usernet \d+\.\d+\.\d+$/);
    expect(addon).toMatch(/^addon: (build\/Release|prebuilds\/linux-x64)\/\S+\.node \((built from source|prebuilt), N-API 8\)$/);
    expect(node).toBe(`node: ${process.version} (ABI ${process.versions.modules}, N-API ${process.versions.napi})`);
    expect(kernel).toMatch(/^kernel: Linux \S+ \S+$/);
  });

  it('the built CLI entry is executable, so npx and npm link run it directly', () => {
    expect(statSync(join(ROOT, 'dist', 'src', 'cli', 'main.js')).mode & 0o111).toBe(0o111);
    expect(execFileSync(join(ROOT, 'dist', 'src', 'cli', 'main.js'), ['--version'], { encoding: 'utf8' })).toMatch(/^usernet /);
  });
});
