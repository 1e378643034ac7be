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
import { describe, expect, it } from 'vitest';
import { guestShareOf } from '../../stack/limits.js';
import {
  attackFixture,
  dropCount,
  eventually,
  figures,
  flood,
  HOST_TARGET,
  rxFrames,
  sampleProc,
  Sampler,
  serverCounts,
  statsOfNet,
  wellBehaved,
  type AttackNet,
  type FloodSpec,
} from './attack-harness.js';

const attack = attackFixture();

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

type FlowKind = 'udp' | 'icmp';
type FlowFlood = Awaited<ReturnType<typeof floodFlows>>;

/**
 * Floods the `kind` flow table with `spec`; once the attacker holds its
 * share of the table (every flow fresh) the well-behaved guest runs its
 * checks; then waits for the idle timeout to reclaim every flow, and runs
 * the checks again.
 */
async function floodFlows(net: AttackNet, kind: FlowKind, cap: number, spec: FloodSpec) {
  const sampler = new Sampler(net.usernet.pid);
  const before = await statsOfNet(net);
  const flooding = flood(net, attack.generator(), spec);
  await eventually(async () => (await statsOfNet(net)).nat[kind].active >= guestShareOf(cap), 10_000);
  const good = await wellBehaved(net);
  const sent = await flooding;
  const peakFlows: number = (await statsOfNet(net)).nat[kind].active;
  const reclaimed = await eventually(async () => (await statsOfNet(net)).nat[kind].active === 0, (IDLE_S + 5) * 1000);
  sampler.stop();
  const end = await statsOfNet(net);
  const fdsEnd = sampleProc(net.usernet.pid).fds;
  const goodAfter = await wellBehaved(net);
  return { sampler, before, sent, good, peakFlows, reclaimed, end, fdsEnd, goodAfter };
}

function flowFigures(net: AttackNet, kind: FlowKind, r: FlowFlood): Record<string, unknown> {
  return {
    framesSent: r.sent.sent,
    sendMs: r.sent.ms,
    framesReceived: rxFrames(r.end, net.attacker) - rxFrames(r.before, net.attacker),
    flowsAfterFlood: r.peakFlows,
    flowsAtEnd: r.end.nat[kind].active,
    [kind]: r.end.nat[kind],
    tableFull: dropCount(r.end, `${kind}-flow-table-full`),
    ...r.sampler.figures(),
    fdsEnd: r.fdsEnd,
    good: r.good,
    goodAfter: r.goodAfter,
  };
}

/**
 * What both floods must show: usernet alive, at most `cap` flows (and host
 * sockets); the flood went past the cap, so what came beyond it found the
 * table full; RSS bounded; every flow reclaimed after the idle timeout; the
 * other guest served during and after.
 */
function expectBounded(net: AttackNet, kind: FlowKind, cap: number, r: FlowFlood): void {
  expect(net.usernet.running).toBe(true);
  expect(r.peakFlows).toBeLessThanOrEqual(cap);
  expect(dropCount(r.end, `${kind}-flow-table-full`)).toBeGreaterThan(0);
  expect(r.sampler.peakFds).toBeLessThanOrEqual(r.sampler.first.fds + cap + FD_SLACK);
  expect(r.sampler.peakRssKb - r.sampler.first.rssKb).toBeLessThan(RSS_BOUND_KB);
  expect(r.reclaimed).toBe(true);
  expect(r.fdsEnd).toBeLessThanOrEqual(r.sampler.first.fds + FD_SLACK);
  expect(r.good.ok, r.good.detail).toBe(true);
  expect(r.goodAfter.ok, r.goodAfter.detail).toBe(true);
}

describe('attack: UDP and ICMP flow floods', () => {
  it(`UDP from ${UDP_PORTS} source ports: at most ${UDP_FLOWS} flows and sockets, reclaimed after ${IDLE_S} s idle`, async () => {
    const net = await attack.start({ args: ['--limit', `udp-flows=${UDP_FLOWS}`, '--limit', `udp-idle=${IDLE_S}`] });
    const r = await floodFlows(net, 'udp', UDP_FLOWS, { mode: 'udp', count: UDP_PORTS, dport: net.servers.udp, rate: RATE });
    const counts = await serverCounts(net);
    figures('udp-flood', { ...flowFigures(net, 'udp', r), datagramsAtSink: counts.udp });
    expect(r.sent.sent).toBe(UDP_PORTS);
    expectBounded(net, 'udp', UDP_FLOWS, r);
  }, 120_000);

  it(`ICMP echo with ${ICMP_IDS} identifiers: at most ${ICMP_FLOWS} flows and sockets, reclaimed after ${IDLE_S} s idle`, async () => {
    const net = await attack.start({ args: ['--limit', `icmp-flows=${ICMP_FLOWS}`, '--limit', `icmp-idle=${IDLE_S}`] });
    const r = await floodFlows(net, 'icmp', ICMP_FLOWS, { mode: 'icmp', count: ICMP_IDS, dstIp: HOST_TARGET, rate: RATE });
    figures('icmp-flood', flowFigures(net, 'icmp', r));
    // Echo requests reached HOST_TARGET through ping sockets and its replies came back.
    expect(r.end.nat.icmp.repliesIn).toBeGreaterThan(0);
    expectBounded(net, 'icmp', ICMP_FLOWS, r);
  }, 120_000);
});
