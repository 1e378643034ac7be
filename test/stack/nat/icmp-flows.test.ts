import { describe, expect, it } from 'vitest';
import { ICMP_IDLE_TIMEOUT_MS, ICMP_MAX_FLOWS, IcmpFlowTable } from '../../../stack/nat/icmp-flows.js';

const GUEST = 0x0a000264;
const DST = 0x01010101;

function table(opts: ConstructorParameters<typeof IcmpFlowTable>[0] = {}) {
  const closed: Array<[number, string, number]> = [];
  const t = new IcmpFlowTable({ ...opts, onClose: (id, f, reason) => closed.push([id, reason, f.guestIdent]) });
  return { t, closed };
}

describe('IcmpFlowTable', () => {
  it('has the documented defaults', () => {
    expect(ICMP_IDLE_TIMEOUT_MS).toBe(30_000);
    expect(new IcmpFlowTable().maxFlows).toBe(ICMP_MAX_FLOWS);
  });

  it('keys on guest ip, guest echo id and destination, and keeps the guest id for replies', () => {
    const { t } = table();
    const f = t.lookupOrCreate(GUEST, 0x1234, DST, DST, 0)!;
    expect(f).toMatchObject({ id: 1, guestIp: GUEST, guestIdent: 0x1234, dstIp: DST, hostIp: DST, hostIdent: -1 });
    t.setHostIdent(f, 0xbeef);
    expect(f.hostIdent).toBe(0xbeef);
    expect(t.lookupOrCreate(GUEST, 0x1234, DST, 7, 1)).toBe(f);
    expect(f.hostIp).toBe(DST);
    expect(f.hostIdent).toBe(0xbeef);
    expect(t.lookupOrCreate(GUEST, 0x1235, DST, DST, 1)).not.toBe(f);
    expect(t.lookupOrCreate(GUEST + 1, 0x1234, DST, DST, 1)).not.toBe(f);
    expect(t.lookupOrCreate(GUEST, 0x1234, DST + 1, DST + 1, 1)).not.toBe(f);
    expect(t.size).toBe(4);
    expect(t.lookup(GUEST, 0x1234, DST)).toBe(f);
    expect(t.byId(f.id)).toBe(f);
  });

  it('expires after 30 s idle, traffic either way keeping it alive', () => {
    const { t, closed } = table();
    const f = t.lookupOrCreate(GUEST, 1, DST, DST, 0)!;
    t.recordOutbound(f, 64, 1_000);
    t.recordInbound(f, 64, 2_000);
    expect(f).toMatchObject({ packetsOut: 1, bytesOut: 64, packetsIn: 1, bytesIn: 64 });
    expect(t.pollAt()).toBe(32_000);
    expect(t.poll(31_999)).toBe(0);
    expect(t.poll(32_000)).toBe(1);
    expect(closed).toEqual([[1, 'idle', 1]]);
    expect(t.lookup(GUEST, 1, DST)).toBeNull();
    expect(t.pollAt()).toBe(Infinity);
  });

  it('refuses when full of live flows and evicts an idle one otherwise', () => {
    const { t, closed } = table({ maxFlows: 2 });
    t.lookupOrCreate(GUEST, 1, DST, DST, 0);
    t.lookupOrCreate(GUEST, 2, DST, DST, 10_000);
    expect(t.lookupOrCreate(GUEST, 3, DST, DST, 20_000)).toBeNull();
    expect(t.drops['flow-table-full']).toBe(1);
    const f = t.lookupOrCreate(GUEST, 3, DST, DST, 30_000)!;
    expect(f.id).toBe(1);
    expect(f.hostIdent).toBe(-1);
    expect(closed).toEqual([[1, 'evicted', 1]]);
    expect(t.stats()).toMatchObject({ active: 2, created: 3, evicted: 1, drops: { 'flow-table-full': 1 } });
  });

  it('remove() takes a flow out without a callback', () => {
    const { t, closed } = table();
    const f = t.lookupOrCreate(GUEST, 1, DST, DST, 0)!;
    expect(t.remove(f.id)).toBe(true);
    expect(t.remove(f.id)).toBe(false);
    expect(t.byId(f.id)).toBeNull();
    expect(t.lookup(GUEST, 1, DST)).toBeNull();
    expect(closed).toEqual([]);
    expect(t.pollAt()).toBe(Infinity);
  });

  it('reports flows to events: opened on creation only, closed once with the reason', () => {
    const { t } = table({ idleTimeoutMs: 100 });
    const seen: unknown[] = [];
    t.events = {
      opened: (proto, f, inbound, gIp, gPort, rIp, rPort) => seen.push(['opened', proto, f.id, inbound, gIp, gPort, rIp, rPort]),
      closed: (proto, f, reason) => seen.push(['closed', proto, f.id, reason]),
    };
    const f = t.lookupOrCreate(GUEST, 0x1234, DST, DST, 0)!;
    t.lookupOrCreate(GUEST, 0x1234, DST, DST, 1);
    t.poll(200);
    expect(seen).toEqual([
      ['opened', 'icmp', f.id, false, GUEST, 0x1234, DST, 0],
      ['closed', 'icmp', f.id, 'idle'],
    ]);
  });
});
