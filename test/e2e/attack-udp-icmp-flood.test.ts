/**
 * Attack 3, UDP and ICMP flow floods, with small caps and idle timeouts
 * (`--limit udp-flows=UDP_FLOWS --limit udp-idle=IDLE_S`, and the same for
 * ICMP):
 * - UDP: datagrams from UDP_PORTS distinct source ports to a host UDP sink
 *   (through the gateway) that never answers. Bound: at most UDP_FLOWS flows
 *   and so host sockets; datagrams beyond are dropped
 *   ('udp-flow-table-full') while every flow is younger than its idle timeout; after the idle
 *   timeout every flow is reclaimed and the fds return to where they were.
 * - ICMP: echo requests with ICMP_IDS distinct identifiers to an address
 *   beyond the gateway (HOST_TARGET, inside the test's host namespace).
 *   Bound: at most ICMP_FLOWS flows (ping sockets), reclaimed after the idle
 *   timeout.
 * One guest address holds at most guestShareOf(cap) = 7/8 of each table
 * ('flow-guest-share-full'), so the well-behaved guest's own UDP flow and
 * ping beyond the gateway (and its transfer, ping and DNS query) succeed
 * while the attacker's flows are all live.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Sandbox } from './harness.js';
import { guestShareOf } from '../../stack/limits.js';
import {
  buildGenerator,
  dropCount,
  eventually,
  figures,
  flood,
  rxFrames,
  HOST_TARGET,
  Sampler,
  sampleProc,
  serverCounts,
  startAttackNet,
  statsOfNet,
  wellBehaved,
  type AttackNet,
} from './attack-harness.js';

const sandbox = new Sandbox();
const files = new Sandbox();
let net: AttackNet | null = null;
afterEach(async () => {
  await net?.close();
  net = null;
  await sandbox.cleanup();
});
afterAll(() => files.cleanup());

const UDP_FLOWS = 512;
const UDP_PORTS = 50_000;
const ICMP_FLOWS = 256;
const ICMP_IDS = 20_000;
/** Longer than the flood and the well-behaved guest's checks: the attacker's flows are all live meanwhile. */
const IDLE_S = 5;
/** Frames per second: paced so that usernet reads most of the flood rather than the tap dropping it. */
const RATE = 25_000;
/** Sockets besides the flows' own that may come and go (DNS upstream, the good guest's connection). */
const FD_SLACK = 16;
const RSS_BOUND_KB = 96 * 1024;

describe('attack: UDP and ICMP flow floods', () => {
  it(`UDP from ${UDP_PORTS} source ports: at most ${UDP_FLOWS} flows and sockets, reclaimed after ${IDLE_S} s idle`, async () => {
    const gen = buildGenerator(files);
    net = await startAttackNet(sandbox, { args: ['--limit', `udp-flows=${UDP_FLOWS}`, '--limit', `udp-idle=${IDLE_S}`] });
    const sampler = new Sampler(net.usernet.pid);
    const before = await statsOfNet(net);
    const udpFlood = flood(net, gen, { mode: 'udp', count: UDP_PORTS, dport: net.servers.udp, rate: RATE });
    // The well-behaved guest asks once the attacker holds its share of the table, with every flow fresh.
    await eventually(async () => (await statsOfNet(net!)).nat.udp.active >= guestShareOf(UDP_FLOWS), 10_000);
    const good = await wellBehaved(net);
    const sent = await udpFlood;
    const s = await statsOfNet(net);
    const peakFlows = s.nat.udp.active;
    const reclaimed = await eventually(async () => (await statsOfNet(net!)).nat.udp.active === 0, (IDLE_S + 5) * 1000);
    sampler.stop();
    const end = await statsOfNet(net);
    const fdsEnd = sampleProc(net.usernet.pid).fds;
    const goodAfter = await wellBehaved(net);
    const counts = await serverCounts(net);
    figures('udp-flood', {
      framesSent: sent.sent,
      sendMs: sent.ms,
      framesReceived: rxFrames(end, net.attacker) - rxFrames(before, net.attacker),
      flowsAfterFlood: peakFlows,
      flowsAtEnd: end.nat.udp.active,
      udp: end.nat.udp,
      datagramsAtSink: counts.udp,
      tableFull: dropCount(end, 'udp-flow-table-full'),
      rssStartKb: sampler.first.rssKb,
      peakRssKb: sampler.peakRssKb,
      fdsStart: sampler.first.fds,
      peakFds: sampler.peakFds,
      fdsEnd,
      good,
      goodAfter,
    });
    expect(net.usernet.running).toBe(true);
    expect(sent.sent).toBe(UDP_PORTS);
    expect(peakFlows).toBeLessThanOrEqual(UDP_FLOWS);
    // The flood went past the cap: datagrams beyond it found the table full.
    expect(dropCount(end, 'udp-flow-table-full')).toBeGreaterThan(0);
    expect(sampler.peakFds).toBeLessThanOrEqual(sampler.first.fds + UDP_FLOWS + FD_SLACK);
    expect(sampler.peakRssKb - sampler.first.rssKb).toBeLessThan(RSS_BOUND_KB);
    expect(reclaimed).toBe(true);
    expect(fdsEnd).toBeLessThanOrEqual(sampler.first.fds + FD_SLACK);
    expect(good.ok, good.detail).toBe(true);
    expect(goodAfter.ok, goodAfter.detail).toBe(true);
  }, 120_000);

  it(`ICMP echo with ${ICMP_IDS} identifiers: at most ${ICMP_FLOWS} flows and sockets, reclaimed after ${IDLE_S} s idle`, async () => {
    const gen = buildGenerator(files);
    net = await startAttackNet(sandbox, { args: ['--limit', `icmp-flows=${ICMP_FLOWS}`, '--limit', `icmp-idle=${IDLE_S}`] });
    const sampler = new Sampler(net.usernet.pid);
    const before = await statsOfNet(net);
    const icmpFlood = flood(net, gen, { mode: 'icmp', count: ICMP_IDS, dstIp: HOST_TARGET, rate: RATE });
    await eventually(async () => (await statsOfNet(net!)).nat.icmp.active >= guestShareOf(ICMP_FLOWS), 10_000);
    const good = await wellBehaved(net);
    const sent = await icmpFlood;
    const s = await statsOfNet(net);
    const peakFlows = s.nat.icmp.active;
    const reclaimed = await eventually(async () => (await statsOfNet(net!)).nat.icmp.active === 0, (IDLE_S + 5) * 1000);
    sampler.stop();
    const end = await statsOfNet(net);
    const fdsEnd = sampleProc(net.usernet.pid).fds;
    const goodAfter = await wellBehaved(net);
    figures('icmp-flood', {
      framesSent: sent.sent,
      sendMs: sent.ms,
      framesReceived: rxFrames(end, net.attacker) - rxFrames(before, net.attacker),
      flowsAfterFlood: peakFlows,
      flowsAtEnd: end.nat.icmp.active,
      icmp: end.nat.icmp,
      tableFull: dropCount(end, 'icmp-flow-table-full'),
      rssStartKb: sampler.first.rssKb,
      peakRssKb: sampler.peakRssKb,
      fdsStart: sampler.first.fds,
      peakFds: sampler.peakFds,
      fdsEnd,
      good,
      goodAfter,
    });
    expect(net.usernet.running).toBe(true);
    expect(peakFlows).toBeLessThanOrEqual(ICMP_FLOWS);
    expect(dropCount(end, 'icmp-flow-table-full')).toBeGreaterThan(0);
    expect(end.nat.icmp.repliesIn).toBeGreaterThan(0);
    expect(sampler.peakFds).toBeLessThanOrEqual(sampler.first.fds + ICMP_FLOWS + FD_SLACK);
    expect(sampler.peakRssKb - sampler.first.rssKb).toBeLessThan(RSS_BOUND_KB);
    expect(reclaimed).toBe(true);
    expect(fdsEnd).toBeLessThanOrEqual(sampler.first.fds + FD_SLACK);
    expect(good.ok, good.detail).toBe(true);
    expect(goodAfter.ok, goodAfter.detail).toBe(true);
  }, 120_000);
});
