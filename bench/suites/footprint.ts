/**
 * Memory and descriptors of one instance, usernet against slirp4netns and
 * pasta: RSS idle after start, idle again after a warm-up of traffic, and
 * with HOLD_CONNECTIONS concurrent established connections from the
 * namespace to a host-loopback server; RSS per connection is the growth from
 * the idle-after-traffic figure divided by the connections held.
 *
 * - usernet runs as `usernet --tap T` with the tap moved into a namespace we
 *   configure (10.0.2.100/24, default route via 10.0.2.2), so the process
 *   lives on between the steps; "after start" is once its own start-up
 *   warm-up has logged its end and a second has passed.
 * - slirp4netns: `--configure` on a namespace held by a `sleep` we started.
 * - pasta: as the bench user around a `sleep` in the namespace it creates;
 *   we run the clients in that namespace with nsenter (root may enter it).
 * The warm-up of traffic is iperf3 for 2 s each way through 10.0.2.2 to a
 * host-loopback server, then 2 s of rest. The holder (txbench hold) opens
 * the connections one by one and does one 100-byte round trip on each, so
 * each is established end to end, then keeps them open until we close its
 * stdin. Everything that holds descriptors gets RLIMIT_NOFILE for the count
 * (prlimit), within the hard limit we have.
 */
import { readFileSync } from 'node:fs';
import { freePort, type BenchContext } from '../lib/context.js';
import { sample, type Row, type SystemName } from '../lib/results.js';
import { fdCount, must, rssKiB, sh, sleep } from '../lib/sys.js';
import { pastaRun, slirpNamespace } from '../lib/peer-setup.js';

export const HOLD_CONNECTIONS = 10_000;
/**
 * slirp4netns polls every socket on each wake-up, so opening 10,000 takes it
 * minutes (each connect costs O(open sockets)); its per-connection figure
 * comes from fewer, which is plenty for a per-connection average.
 */
const SLIRP_HOLD_CONNECTIONS = 2_000;
const TRAFFIC_SECONDS = 2;

interface Instance {
  /** The measured process. */
  pid: number;
  /** Connections to hold. */
  hold: number;
  /** Runs a command inside the instance's namespace. */
  inNs: (cmd: string[]) => string[];
}

/**
 * Memory only this process holds (USS: private clean + private dirty pages,
 * from smaps_rollup): what one more instance costs. RSS also counts shared
 * pages, such as the part of the node binary a usernet touched, which every
 * node process on the machine shares.
 */
export function ussKiB(pid: number): number | null {
  try {
    const t = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const clean = /Private_Clean:\s+(\d+) kB/.exec(t);
    const dirty = /Private_Dirty:\s+(\d+) kB/.exec(t);
    return clean && dirty ? Number(clean[1]) + Number(dirty[1]) : null;
  } catch {
    return null;
  }
}

interface Figures {
  startKiB: number | null;
  startUssKiB: number | null;
  trafficKiB: number | null;
  heldKiB: number | null;
  held: number;
  note: string;
}

async function measureInstance(ctx: BenchContext, sys: SystemName, inst: Instance, nofile: string, txPort: number, iperfPort: number): Promise<Figures> {
  await sleep(1_000);
  const startKiB = rssKiB(inst.pid);
  const startUssKiB = ussKiB(inst.pid);
  const idleFds = fdCount(inst.pid);
  ctx.log(`  ${sys} after start: RSS ${startKiB} KiB (private ${startUssKiB} KiB), ${idleFds} fds`);
  for (const reverse of [false, true]) {
    const cmd = inst.inNs(['iperf3', '-c', '10.0.2.2', '-p', String(iperfPort), '-t', String(TRAFFIC_SECONDS), ...(reverse ? ['-R'] : [])]);
    const p = ctx.c.spawn(cmd[0], cmd.slice(1), `${sys} warm-up traffic`);
    await p.wait((TRAFFIC_SECONDS + 20) * 1000);
  }
  await sleep(2_000);
  const trafficKiB = rssKiB(inst.pid);
  ctx.log(`  ${sys} after traffic: RSS ${trafficKiB} KiB`);
  const cmd = inst.inNs(['prlimit', `--nofile=${nofile}:${nofile}`, '--', ctx.txbench!, 'hold', '10.0.2.2', String(txPort), String(inst.hold)]);
  const holder = ctx.c.spawn(cmd[0], cmd.slice(1), `${sys} txbench hold`, 'pipe');
  await holder.waitFor(/"ready"/, 240_000);
  const held = JSON.parse(holder.stdout.split('\n').find((l) => l.includes('"ready"'))!);
  await sleep(1_000);
  const heldKiB = rssKiB(inst.pid);
  const busyFds = fdCount(inst.pid);
  ctx.log(`  ${sys}, ${held.ready} connections (${held.errors} failed, ${held.seconds} s): RSS ${heldKiB} KiB, ${busyFds} fds`);
  let limits = '';
  try {
    const m = /Max open files\s+(\d+)\s+(\d+)/.exec(readFileSync(`/proc/${inst.pid}/limits`, 'utf8'));
    limits = m ? `; RLIMIT_NOFILE soft ${m[1]} / hard ${m[2]}` : '';
  } catch {
    /* gone */
  }
  holder.child.stdin?.end();
  await holder.wait(30_000);
  return {
    startKiB,
    startUssKiB,
    trafficKiB,
    heldKiB,
    held: held.ready,
    note: `${sys}: ${held.ready} of ${inst.hold} held (${held.errors} failed) in ${Number(held.seconds).toFixed(1)} s, ${busyFds ?? '?'} fds (idle ${idleFds ?? '?'})${limits}`,
  };
}

async function usernetInstance(ctx: BenchContext, nofile: string): Promise<Instance> {
  const tap = ctx.c.tap('fp');
  const u = ctx.c.spawn('prlimit', [`--nofile=${nofile}:${nofile}`, '--', ctx.node, ctx.usernetCli, '--tap', tap, '--log-level', 'info'], 'usernet');
  await u.waitFor(/gateway 10\.0\.2\.2/);
  // Measure the instance once its start-up warm-up is over (it logs one line when done).
  await u.waitFor(/warm-up: \d+/, 15_000);
  const ns = ctx.c.netns('fp');
  must('ip', ['link', 'set', tap, 'netns', ns]);
  must('ip', ['-n', ns, 'addr', 'add', '10.0.2.100/24', 'dev', tap]);
  must('ip', ['-n', ns, 'link', 'set', tap, 'up']);
  must('ip', ['-n', ns, 'route', 'add', 'default', 'via', '10.0.2.2']);
  must('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.ip_local_port_range=1024 65000']);
  return { pid: u.pid, hold: HOLD_CONNECTIONS, inNs: (cmd) => ['ip', 'netns', 'exec', ns, ...cmd] };
}

async function slirpInstance(ctx: BenchContext, nofile: string): Promise<Instance> {
  // slirpNamespace spawns slirp4netns itself; its descriptor limit is raised in place once it runs.
  const s = await slirpNamespace(ctx, 1500);
  must('prlimit', [`--pid=${s.pid}`, `--nofile=${nofile}:${nofile}`]);
  must('ip', ['netns', 'exec', s.ns, 'sysctl', '-qw', 'net.ipv4.ip_local_port_range=1024 65000']);
  return { pid: s.pid, hold: SLIRP_HOLD_CONNECTIONS, inNs: (cmd) => ['ip', 'netns', 'exec', s.ns, ...cmd] };
}

async function pastaInstance(ctx: BenchContext, nofile: string): Promise<Instance> {
  const p = ctx.c.spawn(
    'prlimit',
    [
      `--nofile=${nofile}:${nofile}`,
      '--',
      ...pastaRun(ctx, 1500, ['sleep', '3600']),
    ],
    'pasta',
  );
  // prlimit and setpriv exec in place: p.pid is pasta's; the sleep is its child, in the new namespaces.
  const deadline = Date.now() + 10_000;
  let child = '';
  for (;;) {
    child = sh('pgrep', ['-P', String(p.pid), '-x', 'sleep']).stdout.trim().split('\n')[0] ?? '';
    if (child !== '' && /10\.0\.2\.100/.test(sh('nsenter', ['-t', child, '-n', 'ip', '-4', 'addr']).stdout)) break;
    if (!p.running) throw new Error(`pasta exited: ${p.stderr.trim()}`);
    if (Date.now() > deadline) throw new Error('pasta did not configure its namespace within 10 s');
    await sleep(50);
  }
  const inNs = (cmd: string[]): string[] => ['nsenter', '-t', child, '-n', '--', ...cmd];
  must(inNs(['sysctl', '-qw', 'net.ipv4.ip_local_port_range=1024 65000'])[0], inNs(['sysctl', '-qw', 'net.ipv4.ip_local_port_range=1024 65000']).slice(1));
  // pasta keeps two descriptors per connection (the socket and a timerfd): stay within the limit.
  return { pid: p.pid, hold: Math.min(HOLD_CONNECTIONS, Math.floor((Number(nofile) - 256) / 2)), inNs };
}

export async function footprintSuite(ctx: BenchContext, notes: string[]): Promise<Row[]> {
  if (ctx.txbench === null) return [];
  // Raising the hard limit needs CAP_SYS_RESOURCE, which a sandboxed root may lack: stay within it.
  const hard = Number(must('sh', ['-c', 'ulimit -Hn']).trim()) || HOLD_CONNECTIONS + 1024;
  const nofile = String(Math.min(hard, HOLD_CONNECTIONS * 2 + 1024));
  const systems: Array<[SystemName, (ctx: BenchContext, nofile: string) => Promise<Instance>]> = [['usernet', usernetInstance]];
  if (ctx.tools.slirp4netns) systems.push(['slirp4netns', slirpInstance]);
  if (ctx.tools.pasta && ctx.pastaOk) systems.push(['pasta', pastaInstance]);
  const figures = new Map<SystemName, Figures>();
  const outer = ctx.c.mark();
  try {
    const txPort = await freePort();
    const srv = ctx.c.spawn('prlimit', [`--nofile=${nofile}:${nofile}`, '--', ctx.txbench, 'server', String(txPort)], 'txbench server');
    await srv.waitFor(/listening/);
    const iperfPort = await freePort();
    const ip = ctx.c.spawn('iperf3', ['-s', '--forceflush', '-B', '127.0.0.1', '-p', String(iperfPort)], 'iperf3 server');
    await ip.waitFor(/Server listening/);
    for (const [sys, start] of systems) {
      ctx.log(`footprint: ${sys}`);
      const mark = ctx.c.mark();
      try {
        figures.set(sys, await measureInstance(ctx, sys, await start(ctx, nofile), nofile, txPort, iperfPort));
      } catch (err) {
        const why = (err as Error).message.split('\n')[0];
        ctx.log(`  ${sys} failed: ${why}`);
        notes.push(`Footprint: ${sys} failed: ${why}`);
      } finally {
        await ctx.c.release(mark);
      }
    }
  } finally {
    await ctx.c.release(outer);
  }
  notes.push(
    `Footprint: RSS of the one process that forwards (usernet, slirp4netns, pasta) after start, after ${TRAFFIC_SECONDS} s of iperf3 each way and 2 s of rest, ` +
      `and holding established connections (${HOLD_CONNECTIONS}; slirp4netns ${SLIRP_HOLD_CONNECTIONS}; pasta as many as two descriptors each allow); per connection = (held − after traffic) ÷ connections held. ` +
      [...figures.values()].map((f) => f.note).join('; ') +
      '. usernet\'s RSS includes the pages of the node binary it touched (shared with every other node process); bench/PROFILE.md says what each MB is.',
  );
  const mib = (k: number | null): number[] => (k === null ? [] : [k / 1024]);
  const row = (metric: string, unit: string, pick: (f: Figures) => number[]): Row => {
    const values: Row['values'] = {};
    for (const [sys, f] of figures) values[sys] = sample(pick(f));
    return { group: 'Footprint', metric, unit, higherIsBetter: false, values };
  };
  return [
    row('RSS idle after start', 'MiB', (f) => mib(f.startKiB)),
    row('private memory (USS) idle after start', 'MiB', (f) => mib(f.startUssKiB)),
    row(`RSS idle after ${TRAFFIC_SECONDS} s of traffic each way`, 'MiB', (f) => mib(f.trafficKiB)),
    row('RSS with established connections (counts in the notes)', 'MiB', (f) => mib(f.heldKiB)),
    row('RSS per established connection', 'KiB', (f) =>
      f.heldKiB !== null && f.trafficKiB !== null && f.held > 0 ? [(f.heldKiB - f.trafficKiB) / f.held] : [],
    ),
  ];
}
