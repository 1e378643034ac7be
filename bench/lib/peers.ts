/**
 * Finds the tools the bench drives, installs the missing ones from Debian
 * (we run as root on a Debian machine) and says plainly which peers will be
 * left out when that fails, so a partial table is never mistaken for a full one.
 */
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { sh, type Cleanup } from './sys.js';

export interface Tools {
  iperf3: boolean;
  slirp4netns: boolean;
  pasta: boolean;
  vde: boolean;
  cc: string | null;
  /** Why a peer is missing, for the report. */
  missing: string[];
}

function which(cmd: string): boolean {
  return sh('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/** Debian package for each command we need. */
const PACKAGES: Array<[string, string]> = [
  ['iperf3', 'iperf3'],
  ['slirp4netns', 'slirp4netns'],
  ['pasta', 'passt'],
  ['vde_switch', 'vde2'],
  ['vde_plug2tap', 'vde2'],
  ['ping', 'iputils-ping'],
];

export function ensureTools(install: boolean, log: (s: string) => void): Tools {
  const absent = PACKAGES.filter(([cmd]) => !which(cmd));
  if (absent.length > 0 && install) {
    const pkgs = [...new Set(absent.map(([, p]) => p))];
    log(`installing ${pkgs.join(' ')} (apt-get)`);
    const env = 'DEBIAN_FRONTEND=noninteractive';
    let r = sh('sh', ['-c', `${env} apt-get install -y -qq ${pkgs.join(' ')}`], 300_000);
    if (r.status !== 0) {
      sh('apt-get', ['update', '-qq'], 300_000);
      r = sh('sh', ['-c', `${env} apt-get install -y -qq ${pkgs.join(' ')}`], 300_000);
    }
    if (r.status !== 0) log(`apt-get failed: ${r.stderr.trim().split('\n').slice(-2).join(' ')}`);
  }
  const missing: string[] = [];
  const has = (cmd: string, pkg: string): boolean => {
    const ok = which(cmd);
    if (!ok) missing.push(`${cmd} not found (apt-get install ${pkg})`);
    return ok;
  };
  const cc = which('cc') ? 'cc' : which('gcc') ? 'gcc' : null;
  if (cc === null) missing.push('no C compiler: transactions and footprint need one (apt-get install gcc)');
  return {
    iperf3: has('iperf3', 'iperf3'),
    slirp4netns: has('slirp4netns', 'slirp4netns'),
    pasta: has('pasta', 'passt'),
    vde: has('vde_switch', 'vde2') && has('vde_plug2tap', 'vde2'),
    cc,
    missing,
  };
}

/** Compiles bench/tx/txbench.c into a per-run directory; returns the binary's path. */
export function buildTxbench(cc: string, benchDir: string, outDir: string): string {
  mkdirSync(outDir, { recursive: true });
  const out = join(outDir, 'txbench');
  const src = join(benchDir, 'tx', 'txbench.c');
  if (!existsSync(out) || statSync(out).mtimeMs < statSync(src).mtimeMs) {
    const r = sh(cc, ['-O2', '-Wall', '-o', out, src], 60_000);
    if (r.status !== 0) throw new Error(`compiling txbench failed: ${r.stderr}`);
  }
  return out;
}

export const BENCH_USER = 'bench';

/**
 * pasta will not serve a namespace made by root for root, so it runs as an
 * ordinary user who needs the tun device: make the user (idempotent) and open
 * /dev/net/tun to everyone for the duration of the run only.
 */
export function preparePastaUser(c: Cleanup): { ok: boolean; why: string } {
  if (sh('id', ['-u', BENCH_USER]).status !== 0) {
    const r = sh('useradd', ['-m', BENCH_USER]);
    if (r.status !== 0 && sh('id', ['-u', BENCH_USER]).status !== 0) return { ok: false, why: `useradd: ${r.stderr.trim()}` };
  }
  try {
    c.chmod('/dev/net/tun', 0o666);
  } catch (err) {
    return { ok: false, why: `chmod /dev/net/tun: ${(err as Error).message}` };
  }
  return { ok: true, why: '' };
}
