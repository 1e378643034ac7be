/**
 * Attacks 4 and 5.
 * - Fragment flood: FRAGS IPv4 and FRAGS IPv6 fragments to the gateway,
 *   first fragments that never complete, each of a new datagram, every
 *   fourth followed by a fragment that overlaps it. Bound: each reassembler holds
 *   at most REASSEMBLY_MAX_DATAGRAMS (64) datagrams and REASSEMBLY_MAX_BYTES
 *   (4 MiB) (stack/ipv4-reassembly.ts), so usernet's RSS grows by at most
 *   about 2 x 4 MiB plus transient garbage; with `--limit
 *   reassembly-timeout=REASM_S` every incomplete datagram is gone REASM_S
 *   after its first fragment.
 * - DNS flood: DNS_QUERIES queries with random ids and random names under
 *   flood.test, which the loopback resolver never answers (a dead upstream:
 *   each query waits its full timeout). Bound: the forwarder's pending table
 *   holds at most DNS_MAX_PENDING (1024) queries (stack/dns-forwarder.ts);
 *   the well-behaved guest's query is answered during the flood.
 */
import { describe, expect, it } from 'vitest';
import { attackFixture, DNS, dropCount, eventually, figures, flood, rxFrames, Sampler, serverCounts, statsOfNet, wellBehaved } from './attack-harness.js';
import { REASSEMBLY_MAX_BYTES, REASSEMBLY_MAX_DATAGRAMS } from '../../stack/ip/reassembly.js';
import { DNS_MAX_PENDING } from '../../stack/dns-forwarder.js';

const attack = attackFixture();

const FRAGS = 40_000;
const REASM_S = 2;
const DNS_QUERIES = 50_000;
/** Queries per second: the flood lasts 5 s, longer than the well-behaved guest's checks, so its query meets a full table. */
const DNS_RATE = 10_000;
/** Frames per second: paced so that usernet reads most of the flood rather than the tap dropping it. */
const RATE = 25_000;
/** Two reassemblers at their byte cap, plus transient garbage of the flood. */
const FRAG_RSS_BOUND_KB = (2 * REASSEMBLY_MAX_BYTES) / 1024 + 64 * 1024;
const DNS_RSS_BOUND_KB = 64 * 1024;
const FD_SLACK = 16;

describe('attack: fragment and DNS floods', () => {
  it(`fragment flood (${FRAGS} IPv4 + ${FRAGS} IPv6): reassembly holds at most ${REASSEMBLY_MAX_DATAGRAMS} datagrams / ${REASSEMBLY_MAX_BYTES} bytes each, reclaimed after ${REASM_S} s`, async () => {
    const gen = attack.generator();
    const net = await attack.start({ args: ['--limit', `reassembly-timeout=${REASM_S}`] });
    const sampler = new Sampler(net.usernet.pid);
    const before = await statsOfNet(net);
    const [sent4, good] = await Promise.all([flood(net, gen, { mode: 'frag4', count: FRAGS, rate: RATE }), wellBehaved(net)]);
    const sent6 = await flood(net, gen, { mode: 'frag6', count: FRAGS, srcIp: 'fd00::dead', dstIp: 'fd00::2', rate: RATE });
    const s = await statsOfNet(net);
    const reclaimed = await eventually(async () => {
      const t = await statsOfNet(net);
      return t.nat.reassembly.inProgress === 0 && t.nat.reassembly6.inProgress === 0;
    }, (REASM_S + 5) * 1000);
    sampler.stop();
    const end = await statsOfNet(net);
    const goodAfter = await wellBehaved(net);
    figures('fragment-flood', {
      framesSent: sent4.sent + sent6.sent,
      sendMs: sent4.ms + sent6.ms,
      framesReceived: rxFrames(end, net.attacker) - rxFrames(before, net.attacker),
      afterFlood: { v4: s.nat.reassembly, v6: s.nat.reassembly6 },
      atEnd: { v4: end.nat.reassembly, v6: end.nat.reassembly6 },
      ...sampler.figures(),
      good,
      goodAfter,
    });
    expect(net.usernet.running).toBe(true);
    for (const r of [s.nat.reassembly, s.nat.reassembly6]) {
      expect(r.inProgress).toBeLessThanOrEqual(REASSEMBLY_MAX_DATAGRAMS);
      expect(r.bufferedBytes).toBeLessThanOrEqual(REASSEMBLY_MAX_BYTES);
    }
    expect(s.nat.reassembly.evictions + s.nat.reassembly.timeouts + dropCount(s.nat.reassembly, 'frag-overlap')).toBeGreaterThan(0);
    expect(reclaimed).toBe(true);
    expect(end.nat.reassembly.bufferedBytes).toBe(0);
    expect(end.nat.reassembly6.bufferedBytes).toBe(0);
    expect(sampler.peakRssKb - sampler.first.rssKb).toBeLessThan(FRAG_RSS_BOUND_KB);
    expect(sampler.peakFds).toBeLessThanOrEqual(sampler.first.fds + FD_SLACK);
    expect(good.ok, good.detail).toBe(true);
    expect(goodAfter.ok, goodAfter.detail).toBe(true);
  }, 120_000);

  it(`DNS flood of ${DNS_QUERIES} queries to a dead upstream: at most ${DNS_MAX_PENDING} pending, the other guest's query answered`, async () => {
    const gen = attack.generator();
    const net = await attack.start();
    const sampler = new Sampler(net.usernet.pid);
    const before = await statsOfNet(net);
    const dnsFlood = flood(net, gen, { mode: 'dns', count: DNS_QUERIES, dstIp: DNS, dport: 53, rate: DNS_RATE });
    // Let the flood fill the pending table before the well-behaved guest asks.
    await eventually(async () => (await statsOfNet(net)).nat.udp.dns.queries >= DNS_MAX_PENDING, 20_000);
    const good = await wellBehaved(net);
    const sent = await dnsFlood;
    sampler.stop();
    const s = await statsOfNet(net);
    const counts = await serverCounts(net);
    const goodAfter = await wellBehaved(net);
    figures('dns-flood', {
      framesSent: sent.sent,
      sendMs: sent.ms,
      framesReceived: rxFrames(s, net.attacker) - rxFrames(before, net.attacker),
      dns: s.nat.udp.dns,
      upstreamAnswered: counts.dnsAnswered,
      upstreamDropped: counts.dnsDropped,
      ...sampler.figures(),
      good,
      goodAfter,
    });
    expect(net.usernet.running).toBe(true);
    // More queries than slots reached the forwarder, so the table was full: each one beyond took the oldest one's slot.
    expect(s.nat.udp.dns.queries).toBeGreaterThan(DNS_MAX_PENDING);
    expect(s.nat.udp.dns.servfail['pending-full']).toBeGreaterThan(0);
    expect(sampler.peakRssKb - sampler.first.rssKb).toBeLessThan(DNS_RSS_BOUND_KB);
    expect(sampler.peakFds).toBeLessThanOrEqual(sampler.first.fds + FD_SLACK);
    expect(good.ok, good.detail).toBe(true);
    expect(goodAfter.ok, goodAfter.detail).toBe(true);
  }, 120_000);
});
