/**
 * Attack 6, slow readers and writers, and a guest that vanishes.
 *
 * Stalled connections: the attacker opens 2,000 connections to a host server
 * that pushes PUSH_BYTES into each while the guest never reads, and 2,000
 * to a host server that never reads while the guest pushes PUSH_BYTES into
 * each. Every byte usernet holds for a connection sits in its rings, and
 * those are bounded by the configured sizes (stack/tcp/config.ts,
 * stack/tcp/buffer-budget.ts):
 *
 *   - a guest that never reads: the connection's send ring holds what the
 *     guest's window does not take; it starts at sendBufferInitial = 64 KiB
 *     and grows (to 4 MiB) only with room in the TCP buffer budget;
 *   - a host that never reads: the receive ring holds what the host socket
 *     does not take; its window starts at 64 KiB and grows (to 4 MiB) only
 *     with room in the budget;
 *   - the budget is --limit tcp-buffers=32 here: 32 MiB for all of them.
 *
 *   rings <= 2,000 x 64 KiB + 2,000 x 64 KiB + 32 MiB = 282 MiB
 *
 * (without the budget it would be 4,000 x 4 MiB = 15.6 GiB). A ring that
 * grew by doubling left its smaller predecessors to the garbage collector,
 * together less than its own size, so the RSS may hold the rings twice until
 * a collection; add the flows' own state, FLOW_STATE_BYTES each, and SLACK
 * for the V8 heap's growth, and usernet's RSS stays within RSS_BOUND_KB of
 * its start. The well-behaved
 * guest's download, ping and DNS query succeed meanwhile.
 *
 * A vanishing guest: the attacker has connections mid-transfer (the host
 * pushing, the guest not reading) and UDP flows open, and its namespace is
 * deleted (its tap with it). With short idle timeouts (--limit tcp-idle=3,
 * udp-idle=3), every flow and host socket is reclaimed within them (plus
 * the sweep), and usernet's fds return to where they started.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { must, run } from './harness.js';
import { attackFixture, type AttackNet, eventually, figures, Sampler, statsOfNet, wellBehaved } from './attack-harness.js';

const attack = attackFixture();

const KiB = 1024;
const MiB = 1024 * KiB;
const PER_KIND = 2000;
const PUSH_BYTES = 512 * KiB;
const BUDGET_MIB = 32;
const SEND_INITIAL = 64 * KiB;
const RECV_BASE_WINDOW = 64 * KiB;
const RING_BOUND = PER_KIND * SEND_INITIAL + PER_KIND * RECV_BASE_WINDOW + BUDGET_MIB * MiB;
/** A flow's objects: connection, flow entry, host-side record, timers; generous. */
const FLOW_STATE_BYTES = 16 * KiB;
/** V8's heap and the allocator grow in steps; room for them. */
const SLACK = 64 * MiB;
const RSS_BOUND_KB = (2 * RING_BOUND + 2 * PER_KIND * FLOW_STATE_BYTES + SLACK) / KiB;
const CLIENT = join(import.meta.dirname, 'attack-conn-client.ts');

async function line(p: { stdout: string }, word: string, from: number, timeoutMs: number): Promise<any> {
  const re = new RegExp(`^${word} (\\{.*\\})$`, 'm');
  if (!(await eventually(() => re.test(p.stdout.slice(from)), timeoutMs))) throw new Error(`no "${word}" line: ${p.stdout}`);
  return JSON.parse(re.exec(p.stdout.slice(from))![1]);
}

async function startSlowServers(n: AttackNet): Promise<{ push: number; noread: number; pid: number }> {
  const p = attack.sandbox.spawn('ip', ['netns', 'exec', n.hostNs, process.execPath, '--import', 'tsx', join(import.meta.dirname, 'attack-slow-servers.ts'), String(PUSH_BYTES)]);
  return { ...(await line(p, 'slow-servers', 0, 30_000)), pid: p.pid };
}

/** Waits until the bytes moved both ways stop changing (the connections are stalled), at most timeoutMs. */
async function stalled(n: AttackNet, timeoutMs: number): Promise<any> {
  let prev = '';
  let st: any = null;
  await eventually(async () => {
    st = await statsOfNet(n);
    const now = `${st.nat.tcp.bytesFromGuest}/${st.nat.tcp.bytesToGuest}`;
    const same = now === prev;
    prev = now;
    return same;
  }, timeoutMs);
  return st;
}

describe('attack: slow readers and writers', () => {
  it(`holds ${PER_KIND} never-reading and ${PER_KIND} never-read connections within the rings' bound; the other guest is unaffected`, async () => {
    const net = await attack.start({ args: ['--limit', `tcp-buffers=${BUDGET_MIB}`] });
    const servers = await startSlowServers(net);
    const sampler = new Sampler(net.usernet.pid);
    const spawnClient = (mode: string, port: number, bytes = 0) =>
      attack.sandbox.spawn('ip', ['netns', 'exec', net.attacker.ns, process.execPath, '--import', 'tsx', CLIENT, mode, '10.0.2.2', String(port), String(PER_KIND), String(bytes)]);
    const noread = spawnClient('noread', servers.push);
    const push = spawnClient('push', servers.noread, PUSH_BYTES);
    const [noreadOpened, pushOpened] = await Promise.all([line(noread, 'ready', 0, 90_000), line(push, 'ready', 0, 90_000)]);
    // Every connection is open: now the data moves, both ways, until the windows close.
    process.kill(servers.pid, 'SIGUSR2');
    process.kill(push.pid, 'SIGHUP');
    const st = await stalled(net, 60_000);
    const good = await wellBehaved(net);
    sampler.stop();
    const from = [noread.stdout.length, push.stdout.length];
    process.kill(push.pid, 'SIGUSR1');
    const pushed = await line(push, 'progress', from[1], 10_000);
    figures('slow-peers', {
      noreadOpened,
      pushOpened,
      flows: st.nat.tcp.active,
      hostSockets: st.hostSockets.tcp,
      bytesToGuest: st.nat.tcp.bytesToGuest,
      bytesFromGuest: st.nat.tcp.bytesFromGuest,
      guestWrote: pushed.written,
      tcpBuffers: st.tcpBuffers,
      rssStartKb: sampler.first.rssKb,
      peakRssKb: sampler.peakRssKb,
      rssBoundKb: RSS_BOUND_KB,
      heapUsedKb: Math.round(st.process.heapUsedBytes / KiB),
      externalKb: Math.round(st.process.externalBytes / KiB),
      peakFds: sampler.peakFds,
      good,
    });
    expect(net.usernet.running).toBe(true);
    expect(noreadOpened.connected).toBe(PER_KIND);
    expect(pushOpened.connected).toBe(PER_KIND);
    expect(st.nat.tcp.active).toBe(2 * PER_KIND);
    // The data did move until the windows closed, and then stopped: nothing is buffered beyond them.
    expect(st.nat.tcp.bytesToGuest).toBeGreaterThan(PER_KIND * 16 * KiB);
    expect(st.nat.tcp.bytesFromGuest).toBeGreaterThan(PER_KIND * 16 * KiB);
    expect(st.tcpBuffers.usedBytes).toBeLessThanOrEqual(BUDGET_MIB * MiB);
    expect(sampler.peakRssKb - sampler.first.rssKb).toBeLessThan(RSS_BOUND_KB);
    // One host socket per connection, and nothing else grows.
    expect(sampler.peakFds).toBeLessThanOrEqual(sampler.first.fds + 2 * PER_KIND + 8);
    expect(good.ok, good.detail).toBe(true);
    // Both ends let go: the guest's sockets close (its FINs on the never-read connections stay queued
    // behind the data the host never took, as they should), then the host servers exit.
    process.kill(noread.pid, 'SIGUSR2');
    process.kill(push.pid, 'SIGUSR2');
    process.kill(servers.pid, 'SIGTERM');
    // Everything is released once both ends have let go. The guest's RSTs can be lost: during the stall
    // the guest's tap queue overflows (the guests' probes and retransmits of 2,000 connections; the figure
    // tapTxDropped), and a lost RST is only found out by usernet's next zero-window probe, which has
    // backed off towards rtoMax (60 s): so the bound is that plus 10 s.
    await line(noread, 'closed', from[0], 30_000);
    const released = await eventually(async () => (await statsOfNet(net)).hostSockets.tcp === 0, 70_000);
    const end = await statsOfNet(net);
    const states = (ns: string) => run('ip', ['netns', 'exec', ns, 'ss', '-tanH']).stdout.split('\n').filter(Boolean).reduce<Record<string, number>>((a, l) => ((a[l.split(/\s+/)[0]] = (a[l.split(/\s+/)[0]] ?? 0) + 1), a), {});
    const tapDrops = /TX:.*\n\s*\d+\s+\d+\s+\d+\s+(\d+)/.exec(run('ip', ['-n', net.attacker.ns, '-s', 'link', 'show', net.attacker.tap]).stdout)?.[1];
    figures('slow-peers-released', { tapTxDropped: Number(tapDrops ?? -1), tcpDrops: end.nat.tcp.drops, engineDrops: end.nat.tcp.engineDrops, hostStates: states(net.hostNs), guestStates: states(net.attacker.ns), released, flows: end.nat.tcp.active, hostSockets: end.hostSockets, closed: end.nat.tcp.closed, tcpBuffers: end.tcpBuffers });
    expect(released).toBe(true);
    expect(end.tcpBuffers.usedBytes).toBe(0);
  }, 240_000);

  it('reclaims every flow and socket of a guest whose namespace is deleted mid-transfer, within the idle timeouts', async () => {
    const IDLE_S = 3;
    const net = await attack.start({ args: ['--limit', `tcp-idle=${IDLE_S}`, '--limit', `udp-idle=${IDLE_S}`] });
    const servers = await startSlowServers(net);
    const sampler = new Sampler(net.usernet.pid);
    const fdsStart = sampler.first.fds;
    const client = attack.sandbox.spawn('ip', ['netns', 'exec', net.attacker.ns, process.execPath, '--import', 'tsx', CLIENT, 'noread', '10.0.2.2', String(servers.push), '200']);
    const opened = await line(client, 'ready', 0, 30_000);
    process.kill(servers.pid, 'SIGUSR2');
    // Counted now: the guest never reads, so our zero-window probes back off past the 3 s idle
    // timeout, and on a loaded machine the UDP client below can take that long to start.
    const busyTcp = (await statsOfNet(net)).nat.tcp.active;
    const udpClient = attack.sandbox.spawn('ip', ['netns', 'exec', net.attacker.ns, process.execPath, '--import', 'tsx', CLIENT, 'udp', '10.0.2.2', String(net.servers.udp), '300']);
    await line(udpClient, 'ready', 0, 30_000);
    await eventually(async () => (await statsOfNet(net)).nat.udp.active >= 300, 10_000);
    const busy = await statsOfNet(net);
    // The guest vanishes: its processes, then its namespace (and the tap in it).
    await client.stop('SIGKILL');
    await udpClient.stop('SIGKILL');
    must('ip', ['netns', 'del', net.attacker.ns]);
    const gone = Date.now();
    const reclaimed = await eventually(async () => {
      const s = await statsOfNet(net);
      return s.nat.tcp.active === 0 && s.hostSockets.tcp === 0 && s.nat.udp.active === 0 && s.hostSockets.udp <= 1;
    }, (IDLE_S + 20) * 1000);
    const reclaimMs = Date.now() - gone;
    const after = await statsOfNet(net);
    sampler.stop();
    const good = await wellBehaved(net);
    figures('vanished-guest', {
      opened,
      busy: { tcp: busyTcp, udp: busy.nat.udp.active, hostSockets: busy.hostSockets },
      after: { tcp: after.nat.tcp.active, udp: after.nat.udp.active, hostSockets: after.hostSockets, closed: after.nat.tcp.closed, idleResets: after.nat.tcp.idleResets },
      reclaimMs,
      fdsStart,
      fdsAfter: sampler.last.fds,
      peakFds: sampler.peakFds,
      good,
    });
    expect(net.usernet.running).toBe(true);
    expect(busyTcp).toBe(200);
    expect(busy.nat.udp.active).toBeGreaterThanOrEqual(300);
    expect(reclaimed).toBe(true);
    // The DNS forwarder's upstream socket may stay; nothing of the guest's does.
    expect(sampler.last.fds).toBeLessThanOrEqual(fdsStart + 2);
    expect(good.ok, good.detail).toBe(true);
  }, 120_000);
});
