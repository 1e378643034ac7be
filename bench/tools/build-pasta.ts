/**
 * Current pasta for the bench, built from passt's public source into a
 * bench-only cache outside the project's tree. Debian's pasta (a 2023 build)
 * stalls on this machine's kernel, and the current one is the anchor the
 * issue compares against. Peers' code never enters the project: the source is
 * read from a tree the caller points at, the build lands in the cache, and the
 * bench only runs the binary.
 *
 *   npx tsx bench/tools/build-pasta.ts      (prints the binary the bench will use)
 *
 * Where the source comes from, first hit wins:
 *   1. $USERNET_BENCH_PASST_SRC: a passt source tree (with passt.c and a
 *      Makefile), or a git directory of passt (its newest release tag is built).
 *   2. Git mirrors of passt under $USERNET_BENCH_MIRRORS (default /work/.mirror,
 *      one directory per repository whose name contains "passt"): the newest
 *      upstream release tag (passt tags releases YYYY_MM_DD.COMMIT), else the
 *      newest HEAD that is a passt tree.
 * The build goes to $USERNET_BENCH_CACHE/passt/VERSION (default cache
 * /var/cache/usernet-bench) and is reused while it exists. When there is no
 * source or the build fails, the bench falls back to Debian's pasta and says
 * so in the results: a missing peer must never fail `npm run bench`.
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { sh } from '../lib/sys.js';

export interface PastaChoice {
  /** Absolute path of the pasta binary to run, or null when there is none. */
  path: string | null;
  /** What it is, for the results: "2026_07_16.090d739 (built from source)". */
  version: string;
  /** Set when the bench falls back to Debian's build or has no pasta; goes to the results' notes. */
  note: string | null;
}

const CACHE = process.env.USERNET_BENCH_CACHE ?? '/var/cache/usernet-bench';
const MIRRORS = process.env.USERNET_BENCH_MIRRORS ?? '/work/.mirror';
/** passt names its releases after the date and the commit. */
const RELEASE_TAG = /^(\d{4})_(\d{2})_(\d{2})\.[0-9a-f]+$/;

interface Source {
  /** A plain directory to build in place, or a git directory plus a revision to export. */
  dir?: string;
  git?: string;
  rev?: string;
  version: string;
  /** For ordering mirrors: the release date or commit date, as yyyy-mm-dd. */
  date: string;
}

function git(gitDir: string, args: string[]): string | null {
  const r = sh('git', ['--git-dir', gitDir, ...args], 60_000);
  return r.status === 0 ? r.stdout.trim() : null;
}

function isPasstRev(gitDir: string, rev: string): boolean {
  return git(gitDir, ['cat-file', '-e', `${rev}:passt.c`]) !== null && git(gitDir, ['cat-file', '-e', `${rev}:pasta.c`]) !== null;
}

/** The newest release tag of a passt git directory, else its HEAD when that is a passt tree. */
function fromGit(gitDir: string): Source | null {
  const tags = (git(gitDir, ['tag', '--list']) ?? '').split('\n').filter((t) => RELEASE_TAG.test(t));
  tags.sort();
  for (let i = tags.length - 1; i >= 0; i--) {
    if (!isPasstRev(gitDir, tags[i])) continue;
    const m = RELEASE_TAG.exec(tags[i])!;
    return { git: gitDir, rev: tags[i], version: tags[i], date: `${m[1]}-${m[2]}-${m[3]}` };
  }
  if (!isPasstRev(gitDir, 'HEAD')) return null;
  const line = git(gitDir, ['log', '-1', '--format=%cs %h', 'HEAD']);
  if (line === null) return null;
  const [date, hash] = line.split(' ');
  return { git: gitDir, rev: 'HEAD', version: `${date.replace(/-/g, '_')}.${hash}`, date };
}

function gitDirOf(path: string): string | null {
  if (existsSync(join(path, 'HEAD')) && existsSync(join(path, 'objects'))) return path;
  if (existsSync(join(path, '.git'))) return join(path, '.git');
  if (existsSync(join(path, 'repo', 'HEAD'))) return join(path, 'repo');
  return null;
}

export function findPasstSource(): { source: Source | null; why: string } {
  const env = process.env.USERNET_BENCH_PASST_SRC;
  if (env !== undefined && env !== '') {
    if (existsSync(join(env, 'passt.c')) && existsSync(join(env, 'Makefile'))) {
      const g = gitDirOf(env);
      const described = g === null ? null : git(g, ['describe', '--tags', '--always']);
      return { source: { dir: env, version: described ?? 'local tree', date: '' }, why: '' };
    }
    const g = gitDirOf(env);
    const s = g === null ? null : fromGit(g);
    return s === null ? { source: null, why: `USERNET_BENCH_PASST_SRC=${env} is neither a passt tree nor a passt git directory` } : { source: s, why: '' };
  }
  let best: Source | null = null;
  let entries: string[];
  try {
    entries = readdirSync(MIRRORS).filter((n) => n.toLowerCase().includes('passt'));
  } catch {
    return { source: null, why: `no passt source: set USERNET_BENCH_PASST_SRC (no mirrors under ${MIRRORS})` };
  }
  for (const name of entries) {
    const g = gitDirOf(join(MIRRORS, name));
    const s = g === null ? null : fromGit(g);
    if (s !== null && (best === null || s.date > best.date)) best = s;
  }
  return best === null ? { source: null, why: `no passt source: set USERNET_BENCH_PASST_SRC (none of ${MIRRORS}/*passt* is a passt tree)` } : { source: best, why: '' };
}

function versionOf(bin: string): string | null {
  const r = sh(bin, ['--version'], 10_000);
  const m = /pasta\s+(\S+)/.exec(r.stdout + r.stderr);
  return r.status === 0 && m ? m[1] : null;
}

/** Builds pasta (and its AVX2 variant, which pasta execs itself on CPUs that have it) unless the cache already holds it. */
export function buildPasta(log: (s: string) => void): { path: string | null; version: string; why: string } {
  const { source, why } = findPasstSource();
  if (source === null) return { path: null, version: '', why };
  const safe = source.version.replace(/[^A-Za-z0-9_.-]/g, '_');
  const out = join(CACHE, 'passt', safe);
  const bin = join(out, 'pasta');
  if (existsSync(bin) && versionOf(bin) !== null) return { path: bin, version: source.version, why: '' };
  if (sh('sh', ['-c', 'command -v make && (command -v cc || command -v gcc)']).status !== 0) {
    return { path: null, version: '', why: 'no make or C compiler to build pasta (apt-get install make gcc)' };
  }
  mkdirSync(join(CACHE, 'passt'), { recursive: true });
  const work = `${out}.build-${process.pid}`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  try {
    if (source.git !== undefined) {
      log(`pasta: exporting ${source.version} from ${source.git}`);
      const r = sh('sh', ['-c', 'git --git-dir "$1" archive "$2" | tar -x -C "$3"', 'sh', source.git, source.rev!, work], 120_000);
      if (r.status !== 0) return { path: null, version: '', why: `git archive ${source.rev}: ${r.stderr.trim().slice(-200)}` };
    } else {
      const r = sh('cp', ['-a', `${source.dir}/.`, work], 120_000);
      if (r.status !== 0) return { path: null, version: '', why: `copying ${source.dir}: ${r.stderr.trim().slice(-200)}` };
    }
    const avx2 = /\bavx2\b/.test(sh('grep', ['-m1', '^flags', '/proc/cpuinfo']).stdout) && process.arch === 'x64';
    const targets = ['passt', 'pasta', ...(avx2 ? ['passt.avx2', 'pasta.avx2'] : [])];
    log(`pasta: building ${source.version} (make ${targets.join(' ')}; a few minutes on a busy machine)`);
    const r = sh('make', ['-C', work, '-j2', `VERSION=${source.version}`, ...targets], 600_000);
    if (r.status !== 0 || versionOf(join(work, 'pasta')) === null) {
      return { path: null, version: '', why: `building pasta ${source.version} failed: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' ')}` };
    }
    rmSync(out, { recursive: true, force: true });
    renameSync(work, out);
    // pasta runs as the unprivileged bench user: it must reach and execute the build.
    for (const d of [CACHE, join(CACHE, 'passt'), out]) chmodSync(d, statSync(d).mode | 0o755);
    return { path: bin, version: source.version, why: '' };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** The pasta the bench runs: current pasta when it builds, else Debian's with a note, else none. */
export function choosePasta(log: (s: string) => void): PastaChoice {
  let why: string;
  try {
    const b = buildPasta(log);
    if (b.path !== null) return { path: b.path, version: `${b.version} (built from source)`, note: null };
    why = b.why;
  } catch (err) {
    why = `building pasta failed: ${(err as Error).message.split('\n')[0]}`;
  }
  const r = sh('sh', ['-c', 'command -v pasta']);
  const debian = r.status === 0 ? r.stdout.trim() : null;
  if (debian === null) return { path: null, version: 'none', note: `pasta left out: ${why}; and no Debian pasta on PATH` };
  const pkg = sh('dpkg-query', ['-W', '-f', '${Version}', 'passt']).stdout.trim() || versionOf(debian) || '?';
  return { path: debian, version: `${pkg} (Debian package passt)`, note: `pasta is Debian's ${pkg} build (it stalls here in some cells), not current pasta: ${why}` };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const c = choosePasta((s) => process.stderr.write(`${s}\n`));
  process.stdout.write(`${c.path ?? 'none'}\t${c.version}${c.note ? `\n${c.note}` : ''}\n`);
}
