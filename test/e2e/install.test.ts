/**
 * Installing the packed package on a machine without a compiler: `npm pack`
 * (in a copy of the checkout, so this tree's build/ and prebuilds/ are left
 * alone) ships prebuilds/linux-x64; `npm install` of the tarball with cc, gcc,
 * g++, c++, cpp and make hidden from PATH must take the prebuild (a source
 * build would fail), and the installed `usernet` must run and pass its check.
 * Dependencies come from the npm registry (or npm's cache).
 */
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, statSync, symlinkSync, mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT } from './harness.js';

const COMPILER = /^((x86_64|aarch64)-linux-gnu-)?(cc|gcc|g\+\+|c\+\+|cpp|make|gmake|clang|clang\+\+|ld)(-[0-9.]+)?$/;
const work = mkdtempSync(join(tmpdir(), 'usernet-install-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A directory of links to every program on PATH except compilers and make. */
function pathWithoutCompilers(): string {
  const bin = join(work, 'bin');
  mkdirSync(bin);
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    for (const n of names) {
      if (COMPILER.test(n) || existsSync(join(bin, n))) continue;
      try {
        if (statSync(join(dir, n)).isFile()) symlinkSync(join(dir, n), join(bin, n));
      } catch {
        // dangling link or unreadable: skip
      }
    }
  }
  return bin;
}

describe('install without a compiler', () => {
  it('npm pack ships the linux-x64 prebuild; the tarball installs without cc/g++/make and usernet check passes', () => {
    const src = join(work, 'src');
    mkdirSync(src);
    const tracked = execFileSync('git', ['ls-files', '-z'], { cwd: ROOT, encoding: 'utf8' }).split('\0').filter(Boolean);
    for (const f of tracked) if (existsSync(join(ROOT, f))) cpSync(join(ROOT, f), join(src, f), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules'), join(src, 'node_modules'));
    const packed = execFileSync('npm', ['pack', '--json', '--pack-destination', work], { cwd: src, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const info = JSON.parse(packed.slice(packed.indexOf('['))) as { filename: string; files: { path: string; mode: number }[] }[];
    const paths = info[0].files.map((f) => f.path);
    expect(paths).toContain('prebuilds/linux-x64/usernet.node');
    expect(paths).toEqual(expect.arrayContaining(['man/usernet.1', 'completions/usernet.bash', 'completions/_usernet', 'LICENSE', 'CHANGELOG.md', 'binding.gyp']));
    expect(info[0].files.find((f) => f.path === 'dist/src/cli/main.js')!.mode & 0o111).not.toBe(0);

    const app = join(work, 'app');
    mkdirSync(app);
    const env = { ...process.env, PATH: pathWithoutCompilers(), npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' };
    expect(() => execFileSync('sh', ['-c', 'command -v g++ || command -v cc || command -v make'], { env })).toThrow();
    execFileSync('npm', ['init', '-y'], { cwd: app, env, stdio: 'ignore' });
    execFileSync('npm', ['install', '--prefer-offline', join(work, info[0].filename)], { cwd: app, env, stdio: ['ignore', 'pipe', 'pipe'], timeout: 240_000 });
    const version = execFileSync('npx', ['--no-install', 'usernet', '--version'], { cwd: app, env, encoding: 'utf8' });
    expect(version).toMatch(/^usernet \d+\.\d+\.\d+\naddon: prebuilds\/linux-x64\/usernet\.node \(prebuilt, N-API 8\)/);
    const check = execFileSync('npx', ['--no-install', 'usernet', 'check', '--disable-ipv6'], { cwd: app, env, encoding: 'utf8', timeout: 60_000 });
    expect(check).toMatch(/PASS {2}TCP 10\.0\.2\.2 -> 127\.0\.0\.1/);
    expect(check).toMatch(/0 failed/);
  }, 420_000);
});
