/**
 * Attack 2, TCP floods, with `--limit tcp-flows=TCP_FLOWS`:
 * - SYN flood: SYN_COUNT SYNs to the gateway (the host's TCP server behind
 *   it), each from a new random source port of an address the attacker's
 *   kernel does not own (10.0.2.150-249), so no handshake ever completes.
 *   Bound: at most TCP_FLOWS flows (each one host socket) at any time; a SYN
 *   to a full table takes the place of the oldest half-open flow
 *   ('tcp-handshake-evicted'), so the well-behaved guest's new connections
 *   are accepted while the flood goes on.
 * - Connection flood: the attacker's kernel completes CONN_COUNT handshakes
 *   to the host server and never closes them. Bound: at most TCP_FLOWS flows;
 *   the connections beyond are refused with a RST (ECONNREFUSED at the
 *   attacker) and counted: one guest address holds at most TCP_FLOWS -
 *   TCP_FLOWS / 8 flows ('tcp-guest-share-full'), so the well-behaved guest's
 *   new connections are still accepted.
 * usernet's fds stay under fdsStart + TCP_FLOWS + slack (one host socket
 * per flow).
 */
import { describe, expect, it } from 'vitest';
import { attackFixture, dropCount, figures, flood, GATEWAY, rxFrames, Sampler, statsOfNet, wellBehaved } from './attack-harness.js';

const attack = attackFixture();

const TCP_FLOWS = 256;
const SYN_COUNT = 20_000;
/** SYNs per second: each one the table takes costs a host connect, and the tap drops what usernet cannot read in time. */
const SYN_RATE = 10_000;
const CONN_COUNT = 1_000;
/** Sockets besides the flows' host sockets that may come and go (DNS upstream, the good guest's extra). */
const FD_SLACK = 16;
/** Per flow: a host socket's buffers are the kernel's; usernet keeps the connection object and its rings. */
const RSS_BOUND_KB = 96 * 1024;

describe('attack: TCP floods', () => {
  it(`SYN flood of ${SYN_COUNT}: at most ${TCP_FLOWS} flows, the other guest still connects`, async () => {
    const gen = attack.generator();
    const net = await attack.start({ args: ['--limit', `tcp-flows=${TCP_FLOWS}`] });
    const sampler = new Sampler(net.usernet.pid);
    const before = await statsOfNet(net);
    const synFlood = flood(net, gen, { mode: 'syn', count: SYN_COUNT, srcIp: '10.0.2.150', dport: net.servers.hold, rate: SYN_RATE });
    const sent = await synFlood;
    // The table is full of half-open flows now (their SYN-ACKs are retransmitted for a minute).
    const mid = await statsOfNet(net);
    const good = await wellBehaved(net);
    const goodAfter = await wellBehaved(net);
    sampler.stop();
    const s = await statsOfNet(net);
    const tcp = s.nat.tcp;
    figures('syn-flood', {
      framesSent: sent.sent,
      sendMs: sent.ms,
      framesReceived: rxFrames(s, net.attacker) - rxFrames(before, net.attacker),
      flowsCreated: tcp.created,
      activeMid: mid.nat.tcp.active,
      active: tcp.active,
      evicted: dropCount(s, 'tcp-handshake-evicted'),
      tableFull: dropCount(s, 'tcp-flow-table-full'),
      ...sampler.figures(),
      good,
      goodAfter,
    });
    expect(net.usernet.running).toBe(true);
    expect(mid.nat.tcp.active).toBe(TCP_FLOWS);
    expect(dropCount(s, 'tcp-handshake-evicted')).toBeGreaterThan(0);
    expect(tcp.active).toBeLessThanOrEqual(TCP_FLOWS);
    expect(sampler.peakFds).toBeLessThanOrEqual(sampler.first.fds + TCP_FLOWS + FD_SLACK);
    expect(sampler.peakRssKb - sampler.first.rssKb).toBeLessThan(RSS_BOUND_KB);
    expect(good.ok, good.detail).toBe(true);
    expect(goodAfter.ok, goodAfter.detail).toBe(true);
  }, 120_000);

  it(`connection flood of ${CONN_COUNT} held connections: at most ${TCP_FLOWS} flows, the excess refused, the other guest still connects`, async () => {
    const net = await attack.start({ args: ['--limit', `tcp-flows=${TCP_FLOWS}`] });
    const sampler = new Sampler(net.usernet.pid);
    // Opens CONN_COUNT connections at once, reports how they ended, holds the open ones until killed.
    const py = [
      'import socket, select, errno, sys, time',
      'socks = []',
      `for i in range(${CONN_COUNT}):`,
      '    s = socket.socket(); s.setblocking(False)',
      `    s.connect_ex(("${GATEWAY}", ${net.servers.hold}))`,
      '    socks.append(s)',
      'deadline = time.time() + 20',
      'pending = set(socks); est = 0; refused = 0; other = 0',
      'while pending and time.time() < deadline:',
      '    _, w, _ = select.select([], list(pending)[:1000], [], 1)',
      '    for s in w:',
      '        e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)',
      '        pending.discard(s)',
      '        if e == 0: est += 1',
      '        elif e == errno.ECONNREFUSED: refused += 1',
      '        else: other += 1',
      'print(f"established {est} refused {refused} other {other} pending {len(pending)}", flush=True)',
      'time.sleep(60)',
    ].join('\n');
    const flooder = attack.sandbox.spawn('ip', ['netns', 'exec', net.attacker.ns, 'python3', '-c', py]);
    await flooder.waitFor(/established \d+/, 40_000);
    const good = await wellBehaved(net);
    sampler.stop();
    const s = await statsOfNet(net);
    const tcp = s.nat.tcp;
    const m = /established (\d+) refused (\d+) other (\d+) pending (\d+)/.exec(flooder.stdout)!;
    const [est, refused, other, pending] = m.slice(1).map(Number);
    await flooder.stop('SIGKILL');
    const goodAfter = await wellBehaved(net);
    figures('connection-flood', {
      connections: CONN_COUNT,
      established: est,
      refusedRst: refused,
      otherErrors: other,
      pending,
      active: tcp.active,
      shareFull: dropCount(s, 'tcp-guest-share-full'),
      tableFull: dropCount(s, 'tcp-flow-table-full'),
      ...sampler.figures(),
      good,
      goodAfter,
    });
    expect(net.usernet.running).toBe(true);
    expect(tcp.active).toBeLessThanOrEqual(TCP_FLOWS);
    expect(est).toBeLessThanOrEqual(TCP_FLOWS);
    expect(refused).toBe(CONN_COUNT - est);
    expect(est).toBe(TCP_FLOWS - Math.floor(TCP_FLOWS / 8));
    expect(dropCount(s, 'tcp-guest-share-full') + dropCount(s, 'tcp-flow-table-full')).toBeGreaterThanOrEqual(refused);
    expect(sampler.peakFds).toBeLessThanOrEqual(sampler.first.fds + TCP_FLOWS + FD_SLACK);
    expect(sampler.peakRssKb - sampler.first.rssKb).toBeLessThan(RSS_BOUND_KB);
    expect(good.ok, good.detail).toBe(true);
    expect(goodAfter.ok, goodAfter.detail).toBe(true);
  }, 120_000);
});
