/**
 * usernet's memory and descriptors: RSS idle, then with 10,000 concurrent
 * established connections from a namespace to a host-loopback server.
 *
 * usernet runs as `usernet --tap T` with the tap moved into a namespace we
 * configure (10.0.2.100/24, default route via 10.0.2.2), so the usernet
 * process lives on after the load and can be read from /proc at each step.
 * The holder (txbench hold) opens the connections one by one and does one
 * 100-byte round trip on each, so each is established end to end, then keeps
 * them open until we close its stdin. Client and server get a soft
 * RLIMIT_NOFILE large enough for the count (prlimit).
 */
import { readFileSync } from 'node:fs';
import { freePort, type BenchContext } from '../lib/context.js';
import { sample, type Row } from '../lib/results.js';
import { fdCount, must, rssKiB, sleep } from '../lib/sys.js';

export const HOLD_CONNECTIONS = 10_000;

export interface FootprintNotes {
  text: string;
}

export async function footprintSuite(ctx: BenchContext, notes: string[]): Promise<Row[]> {
  if (ctx.txbench === null) return [];
  const mark = ctx.c.mark();
  const tx = ctx.txbench;
  // Raising the hard limit needs CAP_SYS_RESOURCE, which a sandboxed root may lack: stay within it.
  const hard = Number(must('sh', ['-c', 'ulimit -Hn']).trim()) || HOLD_CONNECTIONS + 1024;
  const nofile = String(Math.min(hard, HOLD_CONNECTIONS * 2 + 1024));
  try {
    const port = await freePort();
    const srv = ctx.c.spawn('prlimit', [`--nofile=${nofile}:${nofile}`, '--', tx, 'server', String(port)], 'txbench server');
    await srv.waitFor(/listening/);
    const tap = ctx.c.tap('fp');
    const u = ctx.c.spawn(ctx.node, [ctx.usernetCli, '--tap', tap, '--log-level', 'info'], 'usernet');
    await u.waitFor(/gateway 10\.0\.2\.2/);
    // Measure the instance once its start-up warm-up is over (it logs one line when done).
    await u.waitFor(/warm-up/, 10_000);
    const ns = ctx.c.netns('fp');
    must('ip', ['link', 'set', tap, 'netns', ns]);
    must('ip', ['-n', ns, 'addr', 'add', '10.0.2.100/24', 'dev', tap]);
    must('ip', ['-n', ns, 'link', 'set', tap, 'up']);
    must('ip', ['-n', ns, 'route', 'add', 'default', 'via', '10.0.2.2']);
    must('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.ip_local_port_range=1024 65000']);
    await sleep(1_000);
    const idleKiB = rssKiB(u.pid);
    const idleFds = fdCount(u.pid);
    ctx.log(`  idle: RSS ${idleKiB} KiB, ${idleFds} fds`);
    const holder = ctx.c.spawn(
      'ip',
      ['netns', 'exec', ns, 'prlimit', `--nofile=${nofile}:${nofile}`, '--', tx, 'hold', '10.0.2.2', String(port), String(HOLD_CONNECTIONS)],
      'txbench hold',
      'pipe',
    );
    await holder.waitFor(/"ready"/, 180_000);
    const held = JSON.parse(holder.stdout.split('\n').find((l) => l.includes('"ready"'))!);
    await sleep(1_000);
    const busyKiB = rssKiB(u.pid);
    const busyFds = fdCount(u.pid);
    const srvFds = fdCount(srv.pid);
    const limits = /Max open files\s+(\d+)\s+(\d+)/.exec(readFileSync(`/proc/${u.pid}/limits`, 'utf8'));
    ctx.log(`  ${held.ready} connections (${held.errors} failed, ${held.seconds} s): RSS ${busyKiB} KiB, ${busyFds} fds`);
    notes.push(
      `Footprint: ${held.ready} of ${HOLD_CONNECTIONS} connections established (${held.errors} failed) in ${Number(held.seconds).toFixed(1)} s. ` +
        `usernet held ${busyFds} fds (idle: ${idleFds}), i.e. ${busyFds !== null && idleFds !== null ? busyFds - idleFds : '?'} for the connections, one host socket each; ` +
        `the server held ${srvFds} and the client one per connection. usernet's RLIMIT_NOFILE was soft ${limits?.[1] ?? '?'} / hard ${limits?.[2] ?? '?'} ` +
        `(Node itself raises the soft limit to the hard one at start-up), so it needed no raise of its own.`,
    );
    holder.child.stdin?.end();
    await holder.wait(30_000);
    const mb = (k: number | null) => (k === null ? [] : [k / 1024]);
    const perConn = busyKiB !== null && idleKiB !== null && held.ready > 0 ? [((busyKiB - idleKiB) * 1024) / held.ready / 1024] : [];
    return [
      { group: 'Footprint', metric: 'usernet RSS idle', unit: 'MiB', higherIsBetter: false, values: { usernet: sample(mb(idleKiB)) } },
      {
        group: 'Footprint',
        metric: `usernet RSS, ${held.ready} established connections`,
        unit: 'MiB',
        higherIsBetter: false,
        values: { usernet: sample(mb(busyKiB)) },
      },
      { group: 'Footprint', metric: 'RSS per connection', unit: 'KiB', higherIsBetter: false, values: { usernet: sample(perConn) } },
    ];
  } finally {
    await ctx.c.release(mark);
  }
}
