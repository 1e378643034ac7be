import { describe, expect, it } from 'vitest';
import {
  UDP_DNS_IDLE_TIMEOUT_MS,
  UDP_IDLE_TIMEOUT_MS,
  UDP_MAX_FLOWS,
  UdpFlowTable,
  type UdpFlow,
} from '../../../stack/nat/udp-flows.js';
import { guestShareOf } from '../../../stack/limits.js';

const GUEST = 0x0a000264; // 10.0.2.100
const DST = 0x5db8d822;
const HOST = 0x5db8d822;
const RESOLVER = 0x7f000035;

function table(opts: ConstructorParameters<typeof UdpFlowTable>[0] = {}) {
  const closed: Array<[number, string, number]> = [];
  const t = new UdpFlowTable({ ...opts, onClose: (id, f, reason) => closed.push([id, reason, f.guestPort]) });
  return { t, closed };
}

describe('UdpFlowTable', () => {
  it('has the documented defaults', () => {
    expect(UDP_MAX_FLOWS).toBe(4096);
    expect(UDP_IDLE_TIMEOUT_MS).toBe(60_000);
    expect(UDP_DNS_IDLE_TIMEOUT_MS).toBe(10_000);
    expect(new UdpFlowTable().maxFlows).toBe(4096);
  });

  it('creates a flow once and finds it again by key and by id', () => {
    const { t } = table();
    const f = t.lookupOrCreate(GUEST, 40000, DST, 443, HOST, 443, 0)!;
    expect(f).not.toBeNull();
    expect(f).toMatchObject({ id: 1, guestIp: GUEST, guestPort: 40000, dstIp: DST, dstPort: 443, hostIp: HOST, hostPort: 443, isDns: false });
    expect(t.lookupOrCreate(GUEST, 40000, DST, 443, 1, 1, 5)).toBe(f);
    expect(f.hostIp).toBe(HOST); // an existing flow keeps its mapping
    expect(t.lookup(GUEST, 40000, DST, 443)).toBe(f);
    expect(t.byId(1)).toBe(f);
    expect(t.size).toBe(1);
    expect(t.stats()).toMatchObject({ active: 1, created: 1 });
  });

  it('keeps flows apart on every key field', () => {
    const { t } = table();
    const ids = new Set<number>();
    ids.add(t.lookupOrCreate(GUEST, 1000, DST, 53, HOST, 53, 0)!.id);
    ids.add(t.lookupOrCreate(GUEST + 1, 1000, DST, 53, HOST, 53, 0)!.id);
    ids.add(t.lookupOrCreate(GUEST, 1001, DST, 53, HOST, 53, 0)!.id);
    ids.add(t.lookupOrCreate(GUEST, 1000, DST + 1, 53, HOST, 53, 0)!.id);
    ids.add(t.lookupOrCreate(GUEST, 1000, DST, 54, HOST, 54, 0)!.id);
    expect(ids.size).toBe(5);
    expect(t.size).toBe(5);
    expect(t.lookup(GUEST, 1000, DST, 55)).toBeNull();
    // Extreme values do not collide either.
    const a = t.lookupOrCreate(0xffffffff, 65535, 0xffffffff, 65535, 1, 1, 0)!;
    const b = t.lookupOrCreate(0xffffffff, 65535, 0xffffffff, 65534, 1, 1, 0)!;
    expect(a).not.toBe(b);
  });

  it('counts traffic both ways and keeps the flow alive with it', () => {
    const { t, closed } = table();
    const f = t.lookupOrCreate(GUEST, 40000, DST, 443, HOST, 443, 0)!;
    t.recordOutbound(f, 100, 0);
    t.recordOutbound(f, 50, 1000);
    t.recordInbound(f, 1200, 30_000);
    expect(f).toMatchObject({ packetsOut: 2, bytesOut: 150, packetsIn: 1, bytesIn: 1200, lastActivity: 30_000 });
    expect(t.pollAt()).toBe(90_000);
    expect(t.poll(89_999)).toBe(0);
    expect(t.poll(90_000)).toBe(1);
    expect(closed).toEqual([[1, 'idle', 40000]]);
    expect(t.size).toBe(0);
    expect(t.byId(1)).toBeNull();
    expect(t.lookup(GUEST, 40000, DST, 443)).toBeNull();
    expect(t.pollAt()).toBe(Infinity);
    expect(t.stats()).toMatchObject({ active: 0, expired: 1 });
  });

  it('expires DNS flows after 10 s and others after 60 s, in deadline order', () => {
    const { t, closed } = table();
    t.lookupOrCreate(GUEST, 1, DST, 443, HOST, 443, 0);
    const dns = t.lookupOrCreate(GUEST, 2, 0x0a000203, 53, RESOLVER, 53, 5_000)!;
    expect(dns.isDns).toBe(true);
    expect(t.deadline(dns)).toBe(15_000);
    expect(t.pollAt()).toBe(15_000);
    expect(t.poll(15_000)).toBe(1);
    expect(closed).toEqual([[2, 'idle', 2]]);
    expect(t.pollAt()).toBe(60_000);
    expect(t.poll(60_000)).toBe(1);
    expect(closed[1]).toEqual([1, 'idle', 1]);
  });

  it('activity reorders flows so only idle ones expire', () => {
    const { t, closed } = table();
    const a = t.lookupOrCreate(GUEST, 1, DST, 9, HOST, 9, 0)!;
    t.lookupOrCreate(GUEST, 2, DST, 9, HOST, 9, 10_000);
    t.recordInbound(a, 10, 20_000);
    expect(t.pollAt()).toBe(70_000);
    t.poll(75_000);
    expect(closed.map((c) => c[2])).toEqual([2]);
    expect(t.byId(a.id)).toBe(a);
  });

  it('revives an expired flow that poll has not reaped yet', () => {
    const { t, closed } = table();
    const f = t.lookupOrCreate(GUEST, 1, DST, 9, HOST, 9, 0)!;
    expect(t.lookupOrCreate(GUEST, 1, DST, 9, HOST, 9, 61_000)).toBe(f);
    expect(t.poll(61_000)).toBe(0);
    expect(closed).toEqual([]);
  });

  it("keeps one guest address to its share, leaving room for other guests; a closed flow frees its place", () => {
    const { t } = table({ maxFlows: 16, guestShare: guestShareOf(16) });
    expect(guestShareOf(16)).toBe(14);
    for (let p = 1; p <= 14; p++) expect(t.lookupOrCreate(GUEST, p, DST, 9, HOST, 9, 0)).not.toBeNull();
    expect(t.lookupOrCreate(GUEST, 15, DST, 9, HOST, 9, 0)).toBeNull();
    expect(t.drops['flow-guest-share-full']).toBe(1);
    const OTHER = GUEST + 1;
    expect(t.lookupOrCreate(OTHER, 1, DST, 9, HOST, 9, 0)).not.toBeNull();
    expect(t.lookupOrCreate(OTHER, 2, DST, 9, HOST, 9, 0)).not.toBeNull();
    expect(t.size).toBe(16);
    // Port forwards' flows count for no guest.
    expect(t.remove(t.lookup(OTHER, 2, DST, 9)!.id)).toBe(true);
    expect(t.lookupOrCreate(GUEST, 99, DST, 9, HOST, 9, 0, true)).not.toBeNull();
    // Expiry gives the guest its places back.
    expect(t.poll(UDP_IDLE_TIMEOUT_MS)).toBe(16);
    for (let p = 100; p < 114; p++) expect(t.lookupOrCreate(GUEST, p, DST, 9, HOST, 9, UDP_IDLE_TIMEOUT_MS)).not.toBeNull();
  });

  it('refuses a new flow when full and nothing is idle, then evicts the oldest idle one', () => {
    const { t, closed } = table({ maxFlows: 3 });
    for (let p = 1; p <= 3; p++) t.lookupOrCreate(GUEST, p, DST, 9, HOST, 9, p * 1000);
    expect(t.lookupOrCreate(GUEST, 4, DST, 9, HOST, 9, 10_000)).toBeNull();
    expect(t.drops['flow-table-full']).toBe(1);
    expect(closed).toEqual([]);
    // At 62 s flows 1 (deadline 61 s) is past its timeout, 2 and 3 are not.
    const f = t.lookupOrCreate(GUEST, 4, DST, 9, HOST, 9, 62_000)!;
    expect(f).not.toBeNull();
    expect(closed).toEqual([[1, 'evicted', 1]]);
    expect(f.id).toBe(1); // the only free id
    expect(t.lookup(GUEST, 1, DST, 9)).toBeNull();
    expect(t.stats()).toMatchObject({ active: 3, evicted: 1 });
  });

  it('evicts the least recently active idle flow across timeout classes', () => {
    const { t, closed } = table({ maxFlows: 2 });
    t.lookupOrCreate(GUEST, 1, DST, 9, HOST, 9, 0); // deadline 60 s
    t.lookupOrCreate(GUEST, 2, DST, 53, HOST, 53, 1_000); // deadline 11 s
    expect(t.lookupOrCreate(GUEST, 3, DST, 9, HOST, 9, 20_000)).not.toBeNull();
    expect(closed).toEqual([[2, 'evicted', 2]]);
    expect(t.lookupOrCreate(GUEST, 4, DST, 9, HOST, 9, 59_000)).toBeNull();
    expect(t.lookupOrCreate(GUEST, 4, DST, 9, HOST, 9, 70_000)).not.toBeNull();
    expect(closed[1]).toEqual([1, 'evicted', 1]);
  });

  it('remove() frees the flow without a callback; ids are reused FIFO with a new generation', () => {
    const { t, closed } = table({ maxFlows: 8 });
    const flows: UdpFlow[] = [];
    for (let p = 1; p <= 4; p++) flows.push(t.lookupOrCreate(GUEST, p, DST, 9, HOST, 9, 0)!);
    expect(flows.map((f) => f.id)).toEqual([1, 2, 3, 4]);
    const gen2 = flows[1].generation;
    expect(t.remove(2)).toBe(true);
    expect(t.remove(2)).toBe(false);
    expect(t.remove(999)).toBe(false);
    expect(t.remove(3)).toBe(true);
    expect(closed).toEqual([]);
    expect(t.lookup(GUEST, 2, DST, 9)).toBeNull();
    expect(t.stats().removed).toBe(2);
    // Fresh ids first, freed ones afterwards in the order they were freed.
    const ids: number[] = [];
    for (let p = 10; p < 16; p++) ids.push(t.lookupOrCreate(GUEST, p, DST, 9, HOST, 9, 0)!.id);
    expect(ids).toEqual([5, 6, 7, 8, 2, 3]);
    expect(t.byId(2)!.generation).toBe(gen2 + 1);
    expect(t.byId(2)!.guestPort).toBe(14);
    expect(t.byId(2)!.packetsOut).toBe(0);
  });

  it('holds thousands of flows and expires them all (fake clock)', () => {
    const { t, closed } = table();
    let now = 0;
    for (let i = 0; i < UDP_MAX_FLOWS; i++) {
      now += 1;
      expect(t.lookupOrCreate(GUEST, 1024 + i, DST + (i & 7), i & 1 ? 53 : 123, HOST, 123, now)).not.toBeNull();
    }
    expect(t.size).toBe(UDP_MAX_FLOWS);
    expect(t.lookupOrCreate(GUEST, 9, DST, 9, HOST, 9, now)).toBeNull();
    let polls = 0;
    while (t.pollAt() !== Infinity) {
      now = t.pollAt();
      t.poll(now);
      polls++;
    }
    expect(closed.length).toBe(UDP_MAX_FLOWS);
    expect(t.size).toBe(0);
    expect(polls).toBeGreaterThan(1);
    // DNS flows (odd i) went first.
    expect(closed.slice(0, UDP_MAX_FLOWS / 2).every(([, , port]) => (port - 1024) % 2 === 1)).toBe(true);
  });

  it('reports flows to events: opened on creation only, closed once with the reason', () => {
    const { t } = table({ idleTimeoutMs: 100 });
    const seen: unknown[] = [];
    t.events = {
      opened: (proto, f, inbound, gIp, gPort, rIp, rPort) => seen.push(['opened', proto, f.id, inbound, gIp, gPort, rIp, rPort]),
      closed: (proto, f, reason, fromGuest, toGuest) => seen.push(['closed', proto, f.id, reason, fromGuest, toGuest]),
    };
    const a = t.lookupOrCreate(GUEST, 40000, DST, 443, HOST, 443, 0)!;
    t.lookupOrCreate(GUEST, 40000, DST, 443, HOST, 443, 1);
    t.recordOutbound(a, 10, 1);
    t.recordInbound(a, 20, 1);
    const b = t.lookupOrCreate(GUEST, 40001, DST, 443, HOST, 443, 2, true)!;
    t.poll(101);
    t.remove(b.id);
    expect(seen).toEqual([
      ['opened', 'udp', a.id, false, GUEST, 40000, DST, 443],
      ['opened', 'udp', b.id, true, GUEST, 40001, DST, 443],
      ['closed', 'udp', a.id, 'idle', 10, 20],
      ['closed', 'udp', b.id, 'removed', 0, 0],
    ]);
  });
});
