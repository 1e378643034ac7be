import { describe, expect, it } from 'vitest';
import { DhcpServer, type DhcpResult } from '../../stack/dhcp-server.js';
import {
  BOOTP_REPLY,
  BOOTP_REQUEST,
  DHCP_ACK,
  DHCP_DECLINE,
  DHCP_DISCOVER,
  DHCP_INFORM,
  DHCP_NAK,
  DHCP_OFFER,
  DHCP_RELEASE,
  DHCP_REQUEST,
  DhcpRepr,
} from '../../stack/wire/dhcp.js';
import { BROADCAST_MAC } from '../../stack/wire/mac.js';
import type { DropReason } from '../../stack/drop-reasons.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const ip = (a: number, b: number, c: number, d: number): number => ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;

const NET = ip(10, 0, 2, 0);
const GW = ip(10, 0, 2, 2);
const DNS = ip(10, 0, 2, 3);
const FIRST = ip(10, 0, 2, 15);
const MAC_A = 0x02000000000f;
const MAC_B = 0x020000000010;
const OTHER_SERVER = ip(10, 0, 2, 99);
const DAY_MS = 86_400_000;

/** The captured BusyBox udhcpc DISCOVER (see test/stack/wire/dhcp.test.ts). */
const UDHCPC_DISCOVER = hex(
  '01010600d96e4e46000000000000000000000000000000000000000002000000000f' +
    '00'.repeat(202) +
    '638253633501013902024037070103060c0f1c2a0c03626f783c0c756468637020312e33352e303d070102000000000fff' +
    '00'.repeat(15),
);

function newServer(extra: Partial<ConstructorParameters<typeof DhcpServer>[0]> = {}): DhcpServer {
  return new DhcpServer({ network: NET, prefix: 24, ...extra });
}

interface Msg {
  type: number;
  mac?: number;
  xid?: number;
  ciaddr?: number;
  requested?: number;
  serverId?: number;
  clientId?: Uint8Array;
  broadcast?: boolean;
  hostname?: string;
}

function msg(m: Msg): DhcpRepr {
  const r = new DhcpRepr();
  r.op = BOOTP_REQUEST;
  r.xid = m.xid ?? 0x1234;
  r.chaddr = m.mac ?? MAC_A;
  r.messageType = m.type;
  r.ciaddr = m.ciaddr ?? 0;
  if (m.requested !== undefined) r.requestedIp = m.requested;
  if (m.serverId !== undefined) r.serverId = m.serverId;
  if (m.clientId !== undefined) r.clientId = m.clientId;
  if (m.hostname !== undefined) r.hostname = Buffer.from(m.hostname);
  r.broadcast = m.broadcast ?? false;
  return r;
}

/** Sends through the wire format, as the gateway does, and parses the reply back. */
function exchange(s: DhcpServer, m: DhcpRepr, now: number): { res: DhcpResult; reply: DhcpRepr; bytes: Buffer } | null {
  const wire = Buffer.alloc(m.bufferLen());
  m.emitInto(wire, 0);
  const res = s.handlePayload(wire, 0, wire.length, now);
  if (res === null) return null;
  const bytes = Buffer.alloc(res.reply.bufferLen());
  res.reply.emitInto(bytes, 0);
  const reply = new DhcpRepr();
  expect(reply.parse(bytes, 0, bytes.length)).toBeNull();
  return { res: { ...res }, reply, bytes };
}

/** DISCOVER then REQUEST (SELECTING); returns the bound address. */
function bind(s: DhcpServer, mac: number, now: number, clientId?: Uint8Array): number {
  const offer = exchange(s, msg({ type: DHCP_DISCOVER, mac, clientId }), now);
  expect(offer?.reply.messageType).toBe(DHCP_OFFER);
  const yiaddr = offer!.reply.yiaddr;
  const ack = exchange(s, msg({ type: DHCP_REQUEST, mac, clientId, requested: yiaddr, serverId: GW }), now);
  expect(ack?.reply.messageType).toBe(DHCP_ACK);
  expect(ack!.reply.yiaddr).toBe(yiaddr);
  return yiaddr;
}

describe('DhcpServer', () => {
  it('answers the captured udhcpc DISCOVER with the hand-built OFFER', () => {
    const s = newServer();
    const res = s.handlePayload(UDHCPC_DISCOVER, 0, UDHCPC_DISCOVER.length, 1000);
    expect(res).not.toBeNull();
    const out = Buffer.alloc(res!.reply.bufferLen());
    res!.reply.emitInto(out, 0);
    const expected = hex(
      '02 01 06 00 d96e4e46 0000 0000 00000000 0a00020f 00000000 00000000 02000000000f' +
        '00'.repeat(202) +
        '63825363 350102 3604 0a000202 3304 00015180 3a04 0000a8c0 3b04 00012750 0104 ffffff00' +
        '0304 0a000202 0604 0a000203 1c04 0a0002ff 1a02 05dc 3d07 01 02000000000f ff',
    );
    expect(out).toEqual(expected);
    expect(res!.broadcast).toBe(true);
    expect(res!.dstIp).toBe(0xffffffff);
    expect(res!.dstMac).toBe(BROADCAST_MAC);
    expect(res!.srcIp).toBe(GW);
    expect(s.counters.rx.discover).toBe(1);
    expect(s.counters.tx.offer).toBe(1);
  });

  it('offers the same address to the same client and the next one to another', () => {
    const s = newServer();
    const a1 = exchange(s, msg({ type: DHCP_DISCOVER, mac: MAC_A }), 0)!;
    const a2 = exchange(s, msg({ type: DHCP_DISCOVER, mac: MAC_A }), 10)!;
    const b = exchange(s, msg({ type: DHCP_DISCOVER, mac: MAC_B }), 20)!;
    expect(a1.reply.yiaddr).toBe(FIRST);
    expect(a2.reply.yiaddr).toBe(FIRST);
    expect(b.reply.yiaddr).toBe(FIRST + 1);
    expect(b.reply.chaddr).toBe(MAC_B);
    expect(b.reply.op).toBe(BOOTP_REPLY);
  });

  it('honours a requested address when it is free and in the range', () => {
    const s = newServer();
    expect(exchange(s, msg({ type: DHCP_DISCOVER, requested: FIRST + 5 }), 0)!.reply.yiaddr).toBe(FIRST + 5);
    // Out of the range: ignored.
    expect(exchange(s, msg({ type: DHCP_DISCOVER, mac: MAC_B, requested: ip(10, 0, 2, 200) }), 0)!.reply.yiaddr).toBe(FIRST);
    // Held by another client: ignored.
    const c = exchange(s, msg({ type: DHCP_DISCOVER, mac: 0x020000000099, requested: FIRST + 5 }), 0)!;
    expect(c.reply.yiaddr).toBe(FIRST + 1);
  });

  it('ACKs a REQUEST for its own offer with the lease options', () => {
    const s = newServer();
    const offer = exchange(s, msg({ type: DHCP_DISCOVER, xid: 77 }), 0)!;
    const ack = exchange(s, msg({ type: DHCP_REQUEST, xid: 78, requested: offer.reply.yiaddr, serverId: GW }), 5)!;
    const r = ack.reply;
    expect(r.messageType).toBe(DHCP_ACK);
    expect(r.xid).toBe(78);
    expect(r.yiaddr).toBe(FIRST);
    expect(r.serverId).toBe(GW);
    expect(r.leaseTime).toBe(86400);
    expect(r.renewalTime).toBe(43200);
    expect(r.rebindingTime).toBe(75600);
    expect(r.subnetMask).toBe(0xffffff00);
    expect(r.router).toBe(GW);
    expect(r.dnsServers).toEqual([DNS]);
    expect(r.broadcastAddress).toBe(ip(10, 0, 2, 255));
    expect(r.mtu).toBe(1500);
    expect(ack.res.broadcast).toBe(true);
    const leases = s.leases(5);
    expect(leases).toEqual([{ ip: FIRST, mac: MAC_A, state: 'bound', expiresAt: 5 + DAY_MS, hostname: null }]);
  });

  it('drops a REQUEST for another server and frees its offer', () => {
    const s = newServer({ rangeCount: 1 });
    exchange(s, msg({ type: DHCP_DISCOVER, mac: MAC_A }), 0);
    // The pool of one is held by the offer.
    expect(exchange(s, msg({ type: DHCP_DISCOVER, mac: MAC_B }), 1)).toBeNull();
    expect(exchange(s, msg({ type: DHCP_REQUEST, mac: MAC_A, requested: ip(10, 0, 2, 50), serverId: OTHER_SERVER }), 2)).toBeNull();
    expect(s.counters.drops['request-other-server']).toBe(1);
    expect(exchange(s, msg({ type: DHCP_DISCOVER, mac: MAC_B }), 3)!.reply.yiaddr).toBe(FIRST);
  });

  it('handles INIT-REBOOT: ACK for its lease, NAK for a wrong network or a taken address', () => {
    const s = newServer();
    const a = bind(s, MAC_A, 0);
    const ok = exchange(s, msg({ type: DHCP_REQUEST, requested: a }), 1000)!;
    expect(ok.reply.messageType).toBe(DHCP_ACK);
    expect(ok.reply.yiaddr).toBe(a);

    const wrong = exchange(s, msg({ type: DHCP_REQUEST, mac: MAC_B, requested: ip(192, 168, 1, 20) }), 1000)!;
    expect(wrong.reply.messageType).toBe(DHCP_NAK);
    expect(wrong.reply.yiaddr).toBe(0);
    expect(wrong.reply.leaseTime).toBeNull();
    expect(wrong.reply.serverId).toBe(GW);
    expect(wrong.res.broadcast).toBe(true);
    expect(wrong.res.dstIp).toBe(0xffffffff);
    expect(s.counters.naks['wrong-network']).toBe(1);

    const taken = exchange(s, msg({ type: DHCP_REQUEST, mac: MAC_B, requested: a }), 1000)!;
    expect(taken.reply.messageType).toBe(DHCP_NAK);
    expect(s.counters.naks['address-taken']).toBe(1);

    const outside = exchange(s, msg({ type: DHCP_REQUEST, mac: MAC_B, requested: ip(10, 0, 2, 100) }), 1000)!;
    expect(outside.reply.messageType).toBe(DHCP_NAK);
    expect(s.counters.naks['outside-range']).toBe(1);
    expect(s.counters.tx.nak).toBe(3);
  });

  it('grants a free address of the range to a client it has forgotten (usernet restart)', () => {
    const s = newServer();
    const r = exchange(s, msg({ type: DHCP_REQUEST, requested: FIRST + 3 }), 0)!;
    expect(r.reply.messageType).toBe(DHCP_ACK);
    expect(r.reply.yiaddr).toBe(FIRST + 3);
    // Renewing a lease it never gave, also fine while the address is free.
    const renew = exchange(s, msg({ type: DHCP_REQUEST, mac: MAC_B, ciaddr: FIRST + 4 }), 0)!;
    expect(renew.reply.messageType).toBe(DHCP_ACK);
    expect(renew.reply.ciaddr).toBe(FIRST + 4);
  });

  it('moves a client that asks for another free address, freeing its old one', () => {
    const s = newServer();
    const a = bind(s, MAC_A, 0);
    const moved = exchange(s, msg({ type: DHCP_REQUEST, requested: a + 6 }), 10)!;
    expect(moved.reply.messageType).toBe(DHCP_ACK);
    // The client holds one address only: the new one.
    expect(exchange(s, msg({ type: DHCP_DISCOVER }), 20)!.reply.yiaddr).toBe(a + 6);
    expect(s.leases(20).filter((l) => l.mac === MAC_A).map((l) => l.ip)).toEqual([a + 6]);
    // The old address went back to the pool.
    expect(exchange(s, msg({ type: DHCP_DISCOVER, mac: MAC_B, requested: a }), 30)!.reply.yiaddr).toBe(a);
  });

  it('renews with a unicast ACK, rebinds to broadcast when the client asks', () => {
    const s = newServer();
    const a = bind(s, MAC_A, 0);
    const renew = exchange(s, msg({ type: DHCP_REQUEST, ciaddr: a }), DAY_MS / 2)!;
    expect(renew.reply.messageType).toBe(DHCP_ACK);
    expect(renew.reply.yiaddr).toBe(a);
    expect(renew.reply.ciaddr).toBe(a);
    expect(renew.res.broadcast).toBe(false);
    expect(renew.res.dstIp).toBe(a);
    expect(renew.res.dstMac).toBe(MAC_A);
    // The lease now runs a full day from the renewal.
    expect(s.leases(DAY_MS / 2)[0].expiresAt).toBe(DAY_MS / 2 + DAY_MS);

    const rebind = exchange(s, msg({ type: DHCP_REQUEST, ciaddr: a, broadcast: true }), DAY_MS)!;
    expect(rebind.reply.messageType).toBe(DHCP_ACK);
    expect(rebind.res.broadcast).toBe(true);
    expect(rebind.res.dstMac).toBe(BROADCAST_MAC);
    expect(rebind.reply.broadcast).toBe(true);

    // Renewing an address that belongs to somebody else.
    const nak = exchange(s, msg({ type: DHCP_REQUEST, mac: MAC_B, ciaddr: a }), DAY_MS)!;
    expect(nak.reply.messageType).toBe(DHCP_NAK);
    expect(nak.res.broadcast).toBe(true);
  });

  it('keeps a declined address out of the pool for a while', () => {
    const s = newServer({ declineHoldMs: 10_000 });
    const a = bind(s, MAC_A, 0);
    expect(exchange(s, msg({ type: DHCP_DECLINE, requested: a, serverId: GW }), 100)).toBeNull();
    expect(s.counters.rx.decline).toBe(1);
    // The same client is offered another address.
    const next = exchange(s, msg({ type: DHCP_DISCOVER }), 200)!;
    expect(next.reply.yiaddr).toBe(a + 1);
    // Even asking for the declined one does not get it back yet.
    expect(exchange(s, msg({ type: DHCP_DISCOVER, mac: MAC_B, requested: a }), 300)!.reply.yiaddr).toBe(a + 2);
    expect(s.leases(300).find((l) => l.ip === a)?.state).toBe('declined');
    // After the hold it is free again.
    expect(exchange(s, msg({ type: DHCP_DISCOVER, mac: 0x020000000077, requested: a }), 10_200)!.reply.yiaddr).toBe(a);
    // A decline from somebody who does not hold the address is ignored.
    expect(exchange(s, msg({ type: DHCP_DECLINE, mac: MAC_B, requested: a + 1 }), 10_300)).toBeNull();
    expect(s.counters.drops['decline-not-owner']).toBe(1);
  });

  it('frees a released address and gives it back to the same client', () => {
    const s = newServer({ rangeCount: 2 });
    const a = bind(s, MAC_A, 0);
    expect(exchange(s, msg({ type: DHCP_RELEASE, ciaddr: a, serverId: GW }), 10)).toBeNull();
    expect(s.leases(10)[0].state).toBe('released');
    // The same client gets its address back.
    expect(exchange(s, msg({ type: DHCP_DISCOVER }), 20)!.reply.yiaddr).toBe(a);
    // A release by somebody else is ignored.
    expect(exchange(s, msg({ type: DHCP_RELEASE, mac: MAC_B, ciaddr: a }), 30)).toBeNull();
    expect(s.counters.drops['release-not-owner']).toBe(1);
  });

  it('gives a released address to another client when the pool has nothing else', () => {
    const s = newServer({ rangeCount: 1 });
    const a = bind(s, MAC_A, 0);
    expect(exchange(s, msg({ type: DHCP_DISCOVER, mac: MAC_B }), 1)).toBeNull();
    exchange(s, msg({ type: DHCP_RELEASE, ciaddr: a }), 2);
    expect(exchange(s, msg({ type: DHCP_DISCOVER, mac: MAC_B }), 3)!.reply.yiaddr).toBe(a);
  });

  it('answers INFORM with configuration only, unicast to ciaddr', () => {
    const s = newServer();
    const inf = exchange(s, msg({ type: DHCP_INFORM, ciaddr: ip(10, 0, 2, 100) }), 0)!;
    expect(inf.reply.messageType).toBe(DHCP_ACK);
    expect(inf.reply.yiaddr).toBe(0);
    expect(inf.reply.ciaddr).toBe(ip(10, 0, 2, 100));
    expect(inf.reply.leaseTime).toBeNull();
    expect(inf.reply.renewalTime).toBeNull();
    expect(inf.reply.router).toBe(GW);
    expect(inf.reply.dnsServers).toEqual([DNS]);
    expect(inf.res.broadcast).toBe(false);
    expect(inf.res.dstIp).toBe(ip(10, 0, 2, 100));
    expect(inf.res.dstMac).toBe(MAC_A);
    expect(exchange(s, msg({ type: DHCP_INFORM }), 0)).toBeNull();
    expect(s.counters.drops['inform-no-ciaddr']).toBe(1);
    expect(s.leases(0)).toEqual([]);
  });

  it('stops offering when the pool is exhausted, and reuses expired leases', () => {
    const s = newServer();
    const macs = Array.from({ length: 16 }, (_, i) => 0x020000000100 + i);
    macs.forEach((m, i) => expect(bind(s, m, i)).toBe(FIRST + i));
    const late = 0x020000000200;
    expect(exchange(s, msg({ type: DHCP_DISCOVER, mac: late }), 100)).toBeNull();
    expect(s.counters.drops['pool-exhausted']).toBe(1);
    expect(s.leases(100).length).toBe(16);
    // The first lease ran out first: that address is the one reused.
    const offer = exchange(s, msg({ type: DHCP_DISCOVER, mac: late }), DAY_MS + 0.5)!;
    expect(offer.reply.yiaddr).toBe(FIRST);
    // Its former owner now gets a NAK for it.
    exchange(s, msg({ type: DHCP_REQUEST, mac: late, requested: FIRST, serverId: GW }), DAY_MS + 1);
    const nak = exchange(s, msg({ type: DHCP_REQUEST, mac: macs[0], ciaddr: FIRST }), DAY_MS + 2)!;
    expect(nak.reply.messageType).toBe(DHCP_NAK);
  });

  it('returns an expired lease to its own client while nobody took it', () => {
    const s = newServer();
    const a = bind(s, MAC_A, 0);
    bind(s, MAC_B, 0);
    expect(s.leases(2 * DAY_MS).map((l) => l.state)).toEqual(['expired', 'expired']);
    expect(exchange(s, msg({ type: DHCP_DISCOVER }), 2 * DAY_MS)!.reply.yiaddr).toBe(a);
    const ack = exchange(s, msg({ type: DHCP_REQUEST, requested: a }), 2 * DAY_MS)!;
    expect(ack.reply.messageType).toBe(DHCP_ACK);
  });

  it('lets an unanswered offer lapse after the hold time', () => {
    const s = newServer({ rangeCount: 1, offerHoldMs: 5_000 });
    exchange(s, msg({ type: DHCP_DISCOVER, mac: MAC_A }), 0);
    expect(exchange(s, msg({ type: DHCP_DISCOVER, mac: MAC_B }), 4_999)).toBeNull();
    expect(exchange(s, msg({ type: DHCP_DISCOVER, mac: MAC_B }), 5_000)!.reply.yiaddr).toBe(FIRST);
  });

  it('identifies clients by client id when they send one, and echoes it', () => {
    const s = newServer();
    const id = hex('ff 00000001 000100012a3b4c5d');
    const a = bind(s, MAC_A, 0, id);
    // Same client id from a new MAC (a recreated VM interface): same address.
    const again = exchange(s, msg({ type: DHCP_DISCOVER, mac: MAC_B, clientId: id }), 10)!;
    expect(again.reply.yiaddr).toBe(a);
    expect(Buffer.from(again.reply.clientId!)).toEqual(id);
    // Same MAC, different client id: another client.
    const other = exchange(s, msg({ type: DHCP_DISCOVER, mac: MAC_A, clientId: hex('01 aabbccddeeff') }), 20)!;
    expect(other.reply.yiaddr).not.toBe(a);
  });

  it('remembers the hostname the client sent', () => {
    const s = newServer();
    exchange(s, msg({ type: DHCP_DISCOVER, hostname: 'box\u0007' }), 0);
    exchange(s, msg({ type: DHCP_REQUEST, requested: FIRST, serverId: GW }), 0);
    expect(s.leases(0)[0].hostname).toBe('box?');
  });

  it('leaves DNS out when DNS is disabled, and uses configured values', () => {
    const s = newServer({ dns: null, mtu: 1400, leaseTimeS: 3600, rangeStart: ip(10, 0, 2, 100), rangeCount: 4 });
    const o = exchange(s, msg({ type: DHCP_DISCOVER }), 0)!;
    expect(o.reply.dnsServers).toEqual([]);
    expect(o.reply.mtu).toBe(1400);
    expect(o.reply.leaseTime).toBe(3600);
    expect(o.reply.renewalTime).toBe(1800);
    expect(o.reply.rebindingTime).toBe(3150);
    expect(o.reply.yiaddr).toBe(ip(10, 0, 2, 100));
  });

  it('fits the default range to small networks', () => {
    const s = new DhcpServer({ network: ip(192, 168, 7, 0), prefix: 29 });
    expect(s.rangeStart).toBe(ip(192, 168, 7, 4));
    expect(s.rangeCount).toBe(3);
    const s27 = new DhcpServer({ network: ip(192, 168, 7, 0), prefix: 27 });
    expect(s27.rangeStart).toBe(ip(192, 168, 7, 15));
    expect(s27.rangeCount).toBe(16);
  });

  it('refuses bad configuration', () => {
    expect(() => newServer({ rangeStart: ip(10, 0, 2, 1), rangeCount: 4 })).toThrow(RangeError);
    expect(() => newServer({ rangeStart: ip(10, 0, 2, 250), rangeCount: 10 })).toThrow(RangeError);
    expect(() => newServer({ rangeStart: ip(10, 0, 3, 1) })).toThrow(RangeError);
    expect(() => newServer({ rangeCount: 0 })).toThrow(RangeError);
    expect(() => new DhcpServer({ network: ip(10, 0, 2, 1), prefix: 24 })).toThrow(RangeError);
    expect(() => new DhcpServer({ network: NET, prefix: 31 })).toThrow(RangeError);
    expect(() => newServer({ leaseTimeS: 1 })).toThrow(RangeError);
  });

  it('drops what it does not serve, one reason each', () => {
    const s = newServer();
    const cases: [DhcpRepr, DropReason][] = [];
    const reply = msg({ type: DHCP_DISCOVER });
    reply.op = BOOTP_REPLY;
    cases.push([reply, 'dhcp-not-request']);
    const tokenRing = msg({ type: DHCP_DISCOVER });
    tokenRing.htype = 6;
    cases.push([tokenRing, 'dhcp-not-ethernet']);
    cases.push([msg({ type: DHCP_DISCOVER, mac: 0 }), 'dhcp-bad-chaddr']);
    cases.push([msg({ type: DHCP_DISCOVER, mac: 0x01005e000001 }), 'dhcp-bad-chaddr']);
    const bootp = msg({ type: DHCP_DISCOVER });
    bootp.messageType = null;
    cases.push([bootp, 'bootp-unsupported']);
    const relayed = msg({ type: DHCP_DISCOVER });
    relayed.giaddr = ip(10, 0, 9, 1);
    cases.push([relayed, 'dhcp-relayed']);
    cases.push([msg({ type: DHCP_OFFER }), 'dhcp-unexpected-type']);
    cases.push([msg({ type: 200 }), 'dhcp-unexpected-type']);
    cases.push([msg({ type: DHCP_REQUEST }), 'request-no-address']);
    cases.push([msg({ type: DHCP_DECLINE, requested: FIRST, serverId: OTHER_SERVER }), 'decline-other-server']);
    cases.push([msg({ type: DHCP_RELEASE, ciaddr: FIRST, serverId: OTHER_SERVER }), 'release-other-server']);
    for (const [m, reason] of cases) {
      const before = s.counters.drops[reason] ?? 0;
      expect(exchange(s, m, 0), reason).toBeNull();
      expect(s.counters.drops[reason], reason).toBe(before + 1);
    }
    expect(s.handlePayload(Buffer.alloc(100), 0, 100, 0)).toBeNull();
    expect(s.counters.drops['dhcp-truncated']).toBe(1);
    expect(s.counters.tx).toEqual({});
  });
});
