/**
 * Attack 1, MAC flood: the attacker sends 200,000 frames, each from a new
 * random source MAC. Bound: the bridge's table holds at most --mac-table-size
 * entries (here 256, so eviction starts early), every MAC beyond that is an
 * eviction (counted), and the well-behaved guest's download, ping and DNS
 * query succeed during the flood. usernet's fds grow by no more than the
 * well-behaved guest's own sockets (a MAC is no socket) and its RSS stays within RSS_BOUND_KB of where it started.
 */
import { describe, expect, it } from 'vitest';
import { attackFixture, figures, flood, Sampler, statsOfNet, wellBehaved } from './attack-harness.js';

const attack = attackFixture();

const MAC_TABLE_SIZE = 256;
const FRAMES = 200_000;
/** Paced so that usernet reads most of them: an unpaced sender mostly fills the tap's queue, which drops the rest. */
const RATE = 100_000;
/**
 * The table is a fixed-size structure: a flood may cost transient garbage
 * (frames in flight, stats strings) but no memory per MAC seen. 64 MiB over
 * the starting RSS is far above that garbage and far below what 200,000
 * retained entries plus V8's growth would take if eviction failed.
 */
const RSS_BOUND_KB = 64 * 1024;
/** The well-behaved guest's own sockets: its download's connection and the DNS forwarder's upstream socket, with slack. */
const GOOD_GUEST_FDS = 4;

describe('attack: MAC flood', () => {
  it(`keeps the MAC table at its cap (${MAC_TABLE_SIZE}) through ${FRAMES} random source MACs; the other guest is unaffected`, async () => {
    const gen = attack.generator();
    const net = await attack.start({ args: ['--mac-table-size', String(MAC_TABLE_SIZE), '--stats-mac-table'] });
    const sampler = new Sampler(net.usernet.pid);
    const before = await statsOfNet(net);
    const [sent, good] = await Promise.all([flood(net, gen, { mode: 'mac', count: FRAMES, rate: RATE }), wellBehaved(net)]);
    sampler.stop();
    const after = await statsOfNet(net);
    const goodAfter = await wellBehaved(net);
    const port = after.bridge.ports.find((p: any) => p.name === net.attacker.tap);
    const table = after.bridge.macTable;
    figures('mac-flood', {
      framesSent: sent.sent,
      sendMs: sent.ms,
      framesReceived: port.counters.rxFrames - before.bridge.ports.find((p: any) => p.name === net.attacker.tap).counters.rxFrames,
      macEntries: table.size,
      macCapacity: table.capacity,
      evictions: after.bridge.evictions - before.bridge.evictions,
      ...sampler.figures(),
      good,
      goodAfter,
    });
    expect(net.usernet.running).toBe(true);
    expect(sent.sent).toBe(FRAMES);
    expect(table.capacity).toBe(MAC_TABLE_SIZE);
    expect(table.size).toBeLessThanOrEqual(MAC_TABLE_SIZE);
    expect(table.entries.length).toBe(table.size);
    // Every random MAC the bridge saw beyond the free slots took the place of another.
    const received = port.counters.rxFrames - before.bridge.ports.find((p: any) => p.name === net.attacker.tap).counters.rxFrames;
    expect(after.bridge.evictions - before.bridge.evictions).toBeGreaterThanOrEqual(received - MAC_TABLE_SIZE);
    expect(good.ok, good.detail).toBe(true);
    expect(goodAfter.ok, goodAfter.detail).toBe(true);
    expect(sampler.peakFds).toBeLessThanOrEqual(sampler.first.fds + GOOD_GUEST_FDS);
    expect(sampler.peakRssKb - sampler.first.rssKb).toBeLessThan(RSS_BOUND_KB);
  }, 120_000);
});
