/**
 * `npm run bench`: usernet side by side with the kernel, slirp4netns, pasta
 * and vde_switch, in one run on this machine, printed as one table.
 *
 *   npm run bench -- [--only tcp,udp,parallel,forward,bridge,vxlan,tx,footprint,many,micro] [--seconds 5]
 *                    [--reps 3] [--micro-seconds 10] [--no-install] [--no-write]
 *
 * Needs root (namespaces, taps). Every namespace, tap, veth, bridge, process,
 * temporary directory and the /dev/net/tun mode change it makes is undone at
 * the end, also on failure or Ctrl-C (see lib/sys.ts). All traffic stays on
 * 127.0.0.1 or inside namespaces the bench creates.
 *
 * pasta is current pasta built from passt's source into a cache outside the
 * tree when a source is at hand ($USERNET_BENCH_PASST_SRC, or git mirrors of
 * passt under $USERNET_BENCH_MIRRORS), else Debian's, with a note: see
 * tools/build-pasta.ts.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { BenchContext } from './lib/context.js';
import { buildTxbench, ensureTools, preparePastaUser } from './lib/peers.js';
import { renderRaw, renderTable, type Row } from './lib/results.js';
import { Cleanup, sh } from './lib/sys.js';
import { checkTargets } from './lib/targets.js';
import { bridgeSuite } from './suites/bridge.js';
import { footprintSuite } from './suites/footprint.js';
import { forwardSuite } from './suites/forward.js';
import { manySuite } from './suites/many.js';
import { microSuite } from './suites/micro.js';
import { parallelSuite } from './suites/parallel.js';
import { tcpSuite } from './suites/tcp.js';
import { txSuite } from './suites/tx.js';
import { udpSuite } from './suites/udp.js';
import { vxlanSuite } from './suites/vxlan.js';
import { choosePasta } from './tools/build-pasta.js';

const BENCH_DIR = resolve(import.meta.dirname);
const ROOT = dirname(BENCH_DIR);
const SUITES = ['tcp', 'udp', 'parallel', 'forward', 'bridge', 'vxlan', 'tx', 'footprint', 'many', 'micro'] as const;
type Suite = (typeof SUITES)[number];

const USAGE = `usage: npm run bench -- [--only ${SUITES.join(',')}] [--seconds N] [--reps N] [--micro-seconds N] [--no-install] [--no-write]
  --only            suites to run (default: all)
  --seconds         iperf3 and transaction run length (default 5)
  --reps            repetitions per measurement; the median is reported (default 3)
  --micro-seconds   steady run of the engine micro-benchmarks for the GC count (default 10)
  --no-install      do not apt-get missing peers; report them as missing
  --no-write        print only; leave bench/RESULTS.md and README.md alone
`;

function log(s: string): void {
  process.stderr.write(`bench: ${s}\n`);
}

function firstLine(cmd: string, args: string[]): string {
  const r = sh(cmd, args, 5_000);
  return (r.stdout || r.stderr).trim().split('\n')[0] ?? '?';
}

/** Which pasta ran, for the machine section (set once the bench has chosen). */
let pastaVersion = '';

function machine(): string {
  const c = cpus();
  const lines = [
    `- CPU: ${c.length} × ${c[0]?.model ?? '?'}; memory ${(totalmem() / 2 ** 30).toFixed(0)} GiB`,
    `- kernel: ${firstLine('uname', ['-sr'])}`,
    `- node: ${process.version}`,
    `- iperf3: ${firstLine('iperf3', ['--version'])}`,
    `- slirp4netns: ${firstLine('slirp4netns', ['--version'])}`,
    `- pasta: ${pastaVersion || `${firstLine('dpkg-query', ['-W', '-f', '${Version}', 'passt'])} (Debian package passt)`}`,
    `- vde2: ${firstLine('dpkg-query', ['-W', '-f', '${Version}', 'vde2'])}`,
  ];
  return lines.join('\n');
}

function ensureBuilt(): void {
  const cli = join(ROOT, 'dist', 'src', 'cli', 'main.js');
  const addon = join(ROOT, 'build', 'Release', 'usernet_native.node');
  if (!existsSync(addon)) {
    log('building the native addon (npm run install)');
    const r = sh('npm', ['run', 'install', '--prefix', ROOT], 600_000);
    if (r.status !== 0) throw new Error(`addon build failed: ${r.stderr.slice(-500)}`);
  }
  if (!existsSync(cli)) {
    log('compiling TypeScript (tsc)');
    const r = sh(join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', join(ROOT, 'tsconfig.json')], 600_000);
    if (!existsSync(cli)) throw new Error(`tsc failed: ${r.stdout.slice(-500)}`);
  }
}

const README_START = '<!-- bench:speed:start -->';
const README_END = '<!-- bench:speed:end -->';

function pick(rows: Row[], group: string, metricPrefix: string): Row | undefined {
  return rows.find((r) => r.group === group && r.metric.startsWith(metricPrefix));
}

/** The README's Speed section: the headline rows only. */
function readmeSection(rows: Row[], date: string, command: string): string {
  const head: Row[] = [];
  for (const [g, m] of [
    ['TCP', 'ns→host MTU 1500'],
    ['TCP', 'host→ns MTU 1500'],
    ['TCP', 'ns→host MTU 65520'],
    ['TCP', 'host→ns MTU 65520'],
    ['Bridge', 'TCP'],
    ['Bridge', 'UDP'],
    ['Bridge', 'ping'],
    ['Transactions', 'connect'],
    ['Transactions', 'request/response p99'],
  ] as const) {
    const r = pick(rows, g, m);
    if (r) head.push(r);
  }
  return [
    README_START,
    `Measured by \`${command}\` on ${date} (2-core machine; the full table, the machine and the notes are in [bench/RESULTS.md](bench/RESULTS.md)). Medians of 3; ratios are "times better than" (above 1: usernet wins).`,
    '',
    renderTable(head),
    README_END,
  ].join('\n');
}

function updateReadme(section: string): void {
  const path = join(ROOT, 'README.md');
  const text = readFileSync(path, 'utf8');
  const s = text.indexOf(README_START);
  const e = text.indexOf(README_END);
  let out: string;
  if (s >= 0 && e > s) out = text.slice(0, s) + section + text.slice(e + README_END.length);
  else {
    // First time: a Speed section before Development.
    const at = text.indexOf('## Development');
    const block = `## Speed\n\n${section}\n\n`;
    out = at >= 0 ? text.slice(0, at) + block + text.slice(at) : `${text.trimEnd()}\n\n${block}`;
  }
  writeFileSync(path, out);
}

async function main(): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: process.argv.slice(2),
      options: {
        only: { type: 'string' },
        seconds: { type: 'string' },
        reps: { type: 'string' },
        'micro-seconds': { type: 'string' },
        'no-install': { type: 'boolean' },
        'no-write': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const only = (values.only ?? SUITES.join(',')).split(',').map((s) => s.trim()).filter(Boolean);
  for (const s of only) {
    if (!(SUITES as readonly string[]).includes(s)) {
      process.stderr.write(`unknown suite ${s}\n${USAGE}`);
      return 2;
    }
  }
  const num = (v: string | undefined, d: number, name: string): number => {
    const n = v === undefined ? d : Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} wants a positive number`);
    return n;
  };
  const seconds = num(values.seconds, 5, 'seconds');
  const reps = Math.round(num(values.reps, 3, 'reps'));
  const microSeconds = num(values['micro-seconds'], 10, 'micro-seconds');
  const needsRoot = only.some((s) => s !== 'micro');
  if (needsRoot && process.getuid?.() !== 0) {
    process.stderr.write('bench: the network suites need root (namespaces, taps); run as root or use --only micro\n');
    return 2;
  }

  const c = new Cleanup();
  const onSignal = (sig: NodeJS.Signals): void => {
    log(`${sig}: removing what the bench created`);
    c.cleanupSync();
    process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGHUP' ? 1 : 15));
  };
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, onSignal);

  const notes: string[] = [];
  const rows: Row[] = [];
  const started = new Date();
  try {
    ensureBuilt();
    const tools = needsRoot
      ? ensureTools(!values['no-install'], log)
      : { iperf3: false, slirp4netns: false, pasta: false, vde: false, cc: null, missing: [] };
    // Current pasta from source when it builds (tools/build-pasta.ts), else Debian's with a note.
    let pastaBin = 'pasta';
    if (needsRoot && ['tcp', 'parallel', 'forward', 'footprint'].some((s) => only.includes(s))) {
      const choice = choosePasta(log);
      pastaVersion = choice.version;
      if (choice.note !== null) notes.push(choice.note);
      if (choice.path !== null) {
        pastaBin = choice.path;
        tools.pasta = true;
        tools.missing = tools.missing.filter((m) => !m.startsWith('pasta '));
      }
      log(`pasta: ${choice.path ?? 'none'}, ${choice.version}`);
    }
    for (const m of tools.missing) log(`missing: ${m}`);
    for (const m of tools.missing) notes.push(`Missing: ${m}; its cells are empty.`);
    let pastaOk = false;
    if (tools.pasta && ['tcp', 'udp', 'parallel', 'forward', 'footprint'].some((s) => only.includes(s))) {
      const p = preparePastaUser(c);
      pastaOk = p.ok;
      if (!p.ok) notes.push(`pasta left out: ${p.why}`);
    }
    let txbench: string | null = null;
    if (tools.cc && (only.includes('tx') || only.includes('footprint'))) {
      txbench = buildTxbench(tools.cc, BENCH_DIR, c.tmpdir());
    }
    const ctx: BenchContext = {
      c,
      seconds,
      reps,
      tools,
      node: process.execPath,
      usernetCli: join(ROOT, 'dist', 'src', 'cli', 'main.js'),
      txbench,
      pastaOk,
      pastaBin,
      log,
      microSeconds,
    };
    const run: Record<Suite, () => Promise<Row[]>> = {
      tcp: () => (tools.iperf3 ? tcpSuite(ctx) : Promise.resolve([])),
      udp: () => (tools.iperf3 ? udpSuite(ctx) : Promise.resolve([])),
      parallel: () => (tools.iperf3 ? parallelSuite(ctx) : Promise.resolve([])),
      forward: () => (tools.iperf3 ? forwardSuite(ctx, notes) : Promise.resolve([])),
      bridge: () => (tools.iperf3 ? bridgeSuite(ctx) : Promise.resolve([])),
      vxlan: () => (tools.iperf3 ? vxlanSuite(ctx) : Promise.resolve([])),
      tx: () => txSuite(ctx),
      footprint: () => footprintSuite(ctx, notes),
      many: () => manySuite(ctx, notes),
      micro: () => microSuite(ctx, BENCH_DIR, notes),
    };
    for (const s of SUITES) {
      if (!only.includes(s)) continue;
      const t0 = Date.now();
      try {
        rows.push(...(await run[s]()));
      } catch (err) {
        log(`suite ${s} failed: ${(err as Error).stack}`);
        notes.push(`Suite ${s} failed: ${(err as Error).message.split('\n')[0]}`);
      }
      log(`${s} done in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    }
  } finally {
    await c.cleanup();
    for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(s, onSignal);
  }

  const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
  const date = started.toISOString().replace('T', ' ').slice(0, 16) + ' UTC';
  const table = renderTable(rows);
  const targets = checkTargets(rows);
  process.stdout.write(`\n${table}\n\n${targets}\n\ncommand: ${command}\n${machine()}\n`);
  if (notes.length > 0) process.stdout.write(`\n${notes.map((n) => `- ${n}`).join('\n')}\n`);
  if (!values['no-write']) {
    const md = [
      '# Benchmark results',
      '',
      `Date: ${date}. Command: \`${command}\` (as root).`,
      '',
      '## Machine',
      '',
      machine(),
      '',
      '## Results',
      '',
      `Medians of ${reps} runs (engine rows: one run, averaged over millions of frames). ` +
        'Ratios are "times better than": value ÷ peer where higher is better (↑), peer ÷ value where lower is better (↓); ' +
        'above 1 means usernet wins. `*`: some repetitions failed (see below); `fail`: all did; `—`: not measured. ' +
        'Kernel rows are two namespaces joined by a veth pair (TCP), a Linux bridge (Bridge) or the kernel\'s vxlan device on ' +
        'both ends of a veth underlay (VXLAN, where usernet is one end and the kernel the other); every usernet, slirp4netns ' +
        'and pasta TCP row goes namespace ↔ host 127.0.0.1 through the gateway address 10.0.2.2. ' +
        'CPU rows are the user-space process\'s own utime+stime (usernet, slirp4netns, pasta) per GB received.',
      '',
      table,
      '',
      '## Targets (issue 4)',
      '',
      targets,
      '',
      ...(notes.length > 0 ? ['## Notes', '', ...notes.map((n) => `- ${n}`), ''] : []),
      '## Where the time goes',
      '',
      'Profiles of the weak cells and what would close the gaps: [PROFILE.md](PROFILE.md).',
      '',
      '## Every repetition',
      '',
      renderRaw(rows),
      '',
    ].join('\n');
    writeFileSync(join(BENCH_DIR, 'RESULTS.md'), md);
    if (only.length === SUITES.length) updateReadme(readmeSection(rows, date, command));
    log('wrote bench/RESULTS.md');
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
