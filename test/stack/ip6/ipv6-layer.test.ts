import { describe, expect, it } from 'vitest';
import { PortCounters, type Frame, type FrameSink, type Port } from '../../../stack/frame.js';
import { GuestOutput } from '../../../stack/guest-output.js';
import { Ipv6NeighborTable } from '../../../stack/ip6/neighbor-table.js';
import { Ipv6Layer, MAX_INITIAL_RTR_ADVERTISEMENTS, type Ipv6LayerOptions } from '../../../stack/ip6/ipv6-layer.js';
import { emitEthernetHeader, ETHERTYPE_IPV6 } from '../../../stack/wire/ethernet.js';
import {
  fillIcmpv6Checksum,
  ICMPV6_ECHO_REPLY,
  ICMPV6_ECHO_REQUEST,
  ICMPV6_NEIGHBOR_ADVERTISEMENT,
  ICMPV6_ROUTER_ADVERTISEMENT,
  Icmpv6View,
} from '../../../stack/wire/icmpv6.js';
import { emitIpv6Header, IPV6_NH_ICMPV6, IPV6_NH_TCP, IPV6_NH_UDP, Ipv6View } from '../../../stack/wire/ipv6.js';
import { formatIpv6, parseIpv6, solicitedNodeAddress, solicitedNodeMac } from '../../../stack/wire/ipv6-address.js';
import { formatMac, macToBytes, parseMac, readMac } from '../../../stack/wire/mac.js';
import {
  emitLinkLayerOption,
  emitNeighborAdvertisement,
  emitNeighborSolicitation,
  emitRouterSolicitation,
  NA_FLAG_OVERRIDE,
  NA_FLAG_ROUTER,
  NA_FLAG_SOLICITED,
  NDP_OPT_MTU,
  NDP_OPT_PREFIX_INFO,
  NDP_OPT_RDNSS,
  NDP_OPT_SOURCE_LLA,
  NDP_OPT_TARGET_LLA,
  NdpMessageView,
  NdpOptionWalker,
} from '../../../stack/wire/ndp.js';
import { MLDV2_REPORT, RS_WITH_SLLA } from '../wire/ipv6-capture.fixture.js';

const GW_MAC = parseMac('52:55:0a:00:02:02');
const GUEST_MAC = parseMac('02:00:00:00:00:0a');
const GUEST = parseIpv6('fd00::a')!;
const GUEST_LL = parseIpv6('fe80::ff:fe00:a')!;
const GW = parseIpv6('fd00::2')!;
const DNS = parseIpv6('fd00::3')!;
const ALL_NODES = parseIpv6('ff02::1')!;
const ALL_ROUTERS = parseIpv6('ff02::2')!;
const UNSPEC = parseIpv6('::')!;

class Capture implements FrameSink {
  frames: Buffer[] = [];
  input(from: Port, frame: Frame): void {
    expect(from.name).toBe('gateway');
    this.frames.push(Buffer.from(frame.buf.subarray(frame.off, frame.off + frame.len)));
  }
}

function setup(opts: Partial<Ipv6LayerOptions> = {}) {
  const sink = new Capture();
  const port: Port = { id: 0, name: 'gateway', vnet: true, counters: new PortCounters(), deliver() {}, flush() {} };
  const router = new Ipv6Layer({ mac: GW_MAC, mtu: 1500, random: () => 0.5, ...opts }, new GuestOutput(sink, port, GW_MAC, () => undefined));
  return { router, sink, port };
}

/** Builds an Ethernet + IPv6 + ICMPv6 frame with a valid checksum. */
function icmpFrame(
  dstMac: number,
  src: Uint8Array,
  dst: Uint8Array,
  body: (b: Buffer, off: number) => number,
  hopLimit = 255,
  srcMac = GUEST_MAC,
): Frame {
  const b = Buffer.alloc(1600);
  emitEthernetHeader(b, 0, dstMac, srcMac, ETHERTYPE_IPV6);
  const len = body(b, 54);
  emitIpv6Header(b, 14, src, 0, dst, 0, IPV6_NH_ICMPV6, len, hopLimit);
  fillIcmpv6Checksum(b, 54, len, b, 22, 38);
  return { buf: b, off: 0, len: 54 + len, vnet: false };
}

function l4Frame(dst: Uint8Array, proto: number, payload = 20, dstMac = GW_MAC): Frame {
  const b = Buffer.alloc(54 + payload);
  emitEthernetHeader(b, 0, dstMac, GUEST_MAC, ETHERTYPE_IPV6);
  emitIpv6Header(b, 14, GUEST, 0, dst, 0, proto, payload, 64);
  return { buf: b, off: 0, len: b.length, vnet: false };
}

function ns(target: Uint8Array, src: Uint8Array, slla: number | null): Frame {
  const dst = solicitedNodeAddress(target);
  return icmpFrame(solicitedNodeMac(target), src, dst, (b, o) => {
    let n = emitNeighborSolicitation(b, o, target, 0);
    if (slla !== null) n += emitLinkLayerOption(b, o + n, NDP_OPT_SOURCE_LLA, slla);
    return n;
  });
}

interface Parsed {
  dstMac: string;
  srcMac: string;
  src: string;
  dst: string;
  hopLimit: number;
  type: number;
  checksumOk: boolean;
  frame: Buffer;
  ip: Ipv6View;
}

function parse(f: Buffer): Parsed {
  const ip = new Ipv6View();
  expect(ip.reset(f, 14, f.length - 14)).toBeNull();
  expect(f.readUInt16BE(12)).toBe(ETHERTYPE_IPV6);
  expect(ip.nextHeader).toBe(IPV6_NH_ICMPV6);
  expect(ip.packetLength).toBe(f.length - 14);
  const icmp = new Icmpv6View();
  expect(icmp.reset(f, 54, ip.payloadLength)).toBeNull();
  return {
    dstMac: formatMac(f.readUIntBE(0, 6)),
    srcMac: formatMac(f.readUIntBE(6, 6)),
    src: formatIpv6(f, 22),
    dst: formatIpv6(f, 38),
    hopLimit: ip.hopLimit,
    type: icmp.type,
    checksumOk: icmp.checksumOk(f, 22, 38),
    frame: f,
    ip,
  };
}

function naOf(f: Buffer) {
  const v = new NdpMessageView();
  expect(v.reset(f, 54, f.length - 54)).toBeNull();
  const w = new NdpOptionWalker().reset(f, v.optionsOffset, v.optionsLength);
  let tlla = -1;
  while (w.next()) if (w.type === NDP_OPT_TARGET_LLA) tlla = w.linkLayerAddress;
  expect(w.error).toBeNull();
  return { flags: v.flags, target: formatIpv6(f, v.targetOffset), tlla: tlla === -1 ? null : formatMac(tlla) };
}

describe('Ipv6Layer configuration', () => {
  it('derives its addresses from the prefix and MAC', () => {
    const { router } = setup();
    expect(formatIpv6(router.gatewayAddress)).toBe('fd00::2');
    expect(formatIpv6(router.dnsAddress)).toBe('fd00::3');
    expect(formatIpv6(router.linkLocalAddress)).toBe('fe80::5055:aff:fe00:202');
    const other = setup({ prefix: '2001:db8:1:2::/64' }).router;
    expect(formatIpv6(other.gatewayAddress)).toBe('2001:db8:1:2::2');
  });
  it('refuses unusable configuration with clear errors', () => {
    expect(() => setup({ prefix: 'fd00::/48' })).toThrow(/\/64/);
    expect(() => setup({ prefix: 'fe80::/64' })).toThrow(/fe80/);
    expect(() => setup({ prefix: 'nonsense' })).toThrow(/length/);
    expect(() => setup({ mtu: 1000 })).toThrow(/1280/);
    expect(() => setup({ mac: parseMac('33:33:00:00:00:01') })).toThrow(/unicast/);
    expect(() => setup({ maxRtrAdvIntervalMs: 1000 })).toThrow(/MaxRtrAdvInterval/);
    expect(() => setup({ preferredLifetimeS: 10, validLifetimeS: 5 })).toThrow(/exceeds/);
  });
});

describe('neighbor solicitation and DAD', () => {
  for (const [name, target] of [
    ['gateway', GW],
    ['DNS', DNS],
    ['link-local', parseIpv6('fe80::5055:aff:fe00:202')!],
  ] as const) {
    it(`answers an NS for its ${name} address with a solicited NA`, () => {
      const { router, sink } = setup();
      expect(router.handleFrame(ns(target, GUEST, GUEST_MAC), 1000)).toBe('consumed');
      expect(sink.frames.length).toBe(1);
      const p = parse(sink.frames[0]);
      expect(p).toMatchObject({ dstMac: '02:00:00:00:00:0a', srcMac: '52:55:0a:00:02:02', src: formatIpv6(target), dst: 'fd00::a', hopLimit: 255, type: ICMPV6_NEIGHBOR_ADVERTISEMENT, checksumOk: true });
      expect(naOf(p.frame)).toEqual({ flags: NA_FLAG_ROUTER | NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE, target: formatIpv6(target), tlla: '52:55:0a:00:02:02' });
      // The option taught us the guest.
      expect(formatMac(router.lookup(GUEST, 0))).toBe('02:00:00:00:00:0a');
    });
  }

  it('answers an NS without a source link-layer option to the frame sender', () => {
    const { router, sink } = setup();
    const f = icmpFrame(GW_MAC, GUEST, GW, (b, o) => emitNeighborSolicitation(b, o, GW, 0));
    expect(router.handleFrame(f, 0)).toBe('consumed');
    expect(parse(sink.frames[0]).dstMac).toBe('02:00:00:00:00:0a');
  });

  it('defends its own address against a DAD probe with an NA to all-nodes', () => {
    const { router, sink } = setup();
    expect(router.handleFrame(ns(GW, UNSPEC, null), 0)).toBe('consumed');
    const p = parse(sink.frames[0]);
    expect(p).toMatchObject({ dstMac: '33:33:00:00:00:01', src: 'fd00::2', dst: 'ff02::1', hopLimit: 255, checksumOk: true });
    expect(naOf(p.frame)).toEqual({ flags: NA_FLAG_ROUTER | NA_FLAG_OVERRIDE, target: 'fd00::2', tlla: '52:55:0a:00:02:02' });
    expect(router.stats().dadDefended).toBe(1);
    expect(router.lookup(UNSPEC, 0)).toBe(-1);
  });

  it("never claims a guest's address: DAD probes and NS for others get nothing", () => {
    const { router, sink } = setup();
    // Most guest addresses hash to solicited-node groups we are not in: filtered at the MAC.
    for (const target of [GUEST, GUEST_LL, parseIpv6('fd00::4')!, parseIpv6('fd00::1')!]) {
      expect(router.handleFrame(ns(target, UNSPEC, null), 0)).toBe('ipv6-mcast-other-group');
      expect(router.handleFrame(ns(target, GUEST, GUEST_MAC), 0)).toBe('ipv6-mcast-other-group');
    }
    // Addresses sharing our low 24 bits reach the NS code through our group, and still get nothing.
    for (const target of [parseIpv6('fd00::1:0:2')!, parseIpv6('fd00::ab00:3')!, parseIpv6('fe80::1:2:aff:fe00:202')!, parseIpv6('fe80::2')!]) {
      expect(router.handleFrame(ns(target, UNSPEC, null), 0)).toBe('ndp-ns-not-ours');
      expect(router.handleFrame(ns(target, GUEST, GUEST_MAC), 0)).toBe('ndp-ns-not-ours');
    }
    // A unicast NS straight to our MAC for a guest address: still not ours to answer.
    const direct = icmpFrame(GW_MAC, GUEST_LL, parseIpv6('fd00::99')!, (b, o) => emitNeighborSolicitation(b, o, parseIpv6('fd00::99')!, 0));
    expect(router.handleFrame(direct, 0)).toBe('ndp-ns-not-ours');
    expect(router.stats().dadDefended).toBe(0);
    expect(sink.frames.length).toBe(0);
  });

  it('does not claim the DNS address when DNS is disabled', () => {
    const { router, sink } = setup({ dnsEnabled: false });
    expect(router.handleFrame(ns(DNS, GUEST, GUEST_MAC), 0)).toBe('ipv6-mcast-other-group');
    expect(sink.frames.length).toBe(0);
  });

  it('drops malformed NDP: bad hop limit, bad checksum, zero-length option, DAD with SLLA, multicast target', () => {
    const { router, sink } = setup();
    const lowHop = icmpFrame(solicitedNodeMac(GW), GUEST, solicitedNodeAddress(GW), (b, o) => emitNeighborSolicitation(b, o, GW, 0), 64);
    expect(router.handleFrame(lowHop, 0)).toBe('ndp-bad-hop-limit');
    const badSum = ns(GW, GUEST, GUEST_MAC);
    badSum.buf[56] ^= 0xff;
    expect(router.handleFrame(badSum, 0)).toBe('icmpv6-bad-checksum');
    const zeroOpt = icmpFrame(solicitedNodeMac(GW), GUEST, solicitedNodeAddress(GW), (b, o) => {
      const n = emitNeighborSolicitation(b, o, GW, 0);
      b[o + n] = NDP_OPT_SOURCE_LLA;
      b[o + n + 1] = 0;
      return n + 8;
    });
    expect(router.handleFrame(zeroOpt, 0)).toBe('ndp-opt-zero-length');
    expect(router.handleFrame(ns(GW, UNSPEC, GUEST_MAC), 0)).toBe('ndp-dad-with-slla');
    const dadUnicast = icmpFrame(GW_MAC, UNSPEC, GW, (b, o) => emitNeighborSolicitation(b, o, GW, 0));
    expect(router.handleFrame(dadUnicast, 0)).toBe('ndp-dad-bad-dst');
    const mcTarget = icmpFrame(GW_MAC, GUEST, GW, (b, o) => emitNeighborSolicitation(b, o, ALL_NODES, 0));
    expect(router.handleFrame(mcTarget, 0)).toBe('ndp-ns-multicast-target');
    expect(router.handleFrame(ns(GW, GUEST, parseMac('33:33:00:00:00:01')), 0)).toBe('ndp-bad-lla');
    expect(router.handleFrame(ns(GW, GUEST, 0), 0)).toBe('ndp-bad-lla');
    const naToGroup = icmpFrame(0x3333_0000_0001, GUEST, ALL_NODES, (b, o) => emitNeighborAdvertisement(b, o, NA_FLAG_SOLICITED, GUEST, 0));
    expect(router.handleFrame(naToGroup, 0)).toBe('ndp-na-solicited-multicast');
    expect(sink.frames.length).toBe(0);
    // The frames' Ethernet source was still learned; the bad options taught nothing.
    expect(formatMac(router.lookup(GUEST, 0))).toBe('02:00:00:00:00:0a');
    expect(router.drops['ndp-bad-hop-limit']).toBe(1);
  });

  it('learns guests from NA target options and counts conflicts for its own addresses', () => {
    const { router } = setup();
    const other = parseIpv6('fd00::77')!;
    const na = (target: Uint8Array, mac: number) =>
      icmpFrame(GW_MAC, GUEST, GW, (b, o) => {
        const n = emitNeighborAdvertisement(b, o, NA_FLAG_SOLICITED, target, 0);
        return n + emitLinkLayerOption(b, o + n, NDP_OPT_TARGET_LLA, mac);
      });
    expect(router.handleFrame(na(other, parseMac('02:00:00:00:00:77')), 5)).toBe('consumed');
    expect(formatMac(router.lookup(other, 0))).toBe('02:00:00:00:00:77');
    expect(router.handleFrame(na(GW, parseMac('02:00:00:00:00:77')), 5)).toBe('ndp-na-conflict');
  });
});

function raInfo(f: Buffer) {
  const v = new NdpMessageView();
  expect(v.reset(f, 54, f.length - 54)).toBeNull();
  expect(v.type).toBe(ICMPV6_ROUTER_ADVERTISEMENT);
  const w = new NdpOptionWalker().reset(f, v.optionsOffset, v.optionsLength);
  const r: Record<string, unknown> = { curHopLimit: v.curHopLimit, flags: v.flags, routerLifetime: v.routerLifetime, reachable: v.reachableTime, retrans: v.retransTimer };
  while (w.next()) {
    if (w.type === NDP_OPT_SOURCE_LLA) r.slla = formatMac(w.linkLayerAddress);
    if (w.type === NDP_OPT_MTU) r.mtu = w.mtu;
    if (w.type === NDP_OPT_PREFIX_INFO) r.prefix = { prefix: `${formatIpv6(f, w.prefixOffset)}/${w.prefixLength}`, flags: w.prefixFlags, valid: w.validLifetime, preferred: w.preferredLifetime };
    if (w.type === NDP_OPT_RDNSS) r.rdnss = { lifetime: w.rdnssLifetime, servers: Array.from({ length: w.rdnssCount }, (_, i) => formatIpv6(f, w.rdnssAddressOffset + 16 * i)) };
  }
  expect(w.error).toBeNull();
  return r;
}

describe('router advertisements', () => {
  it('carry prefix (on-link, autonomous), MTU, source link-layer and RDNSS, M=0 O=0', () => {
    const { router, sink } = setup({ mtu: 1400, routerLifetimeS: 900, rdnssLifetimeS: 300, validLifetimeS: 7200, preferredLifetimeS: 3600 });
    router.poll(0);
    expect(sink.frames.length).toBe(1);
    const p = parse(sink.frames[0]);
    expect(p).toMatchObject({ dstMac: '33:33:00:00:00:01', srcMac: '52:55:0a:00:02:02', src: 'fe80::5055:aff:fe00:202', dst: 'ff02::1', hopLimit: 255, checksumOk: true });
    expect(raInfo(p.frame)).toEqual({
      curHopLimit: 64,
      flags: 0,
      routerLifetime: 900,
      reachable: 0,
      retrans: 0,
      slla: '52:55:0a:00:02:02',
      mtu: 1400,
      prefix: { prefix: 'fd00::/64', flags: 0xc0, valid: 7200, preferred: 3600 },
      rdnss: { lifetime: 300, servers: ['fd00::3'] },
    });
  });

  it('omit RDNSS when DNS is disabled', () => {
    const { router, sink } = setup({ dnsEnabled: false });
    router.poll(0);
    expect(raInfo(sink.frames[0]).rdnss).toBeUndefined();
  });

  it('send an initial burst, then every [Min, Max]RtrAdvInterval', () => {
    let r = 0.5;
    const { router, sink } = setup({ maxRtrAdvIntervalMs: 60_000, random: () => r });
    expect(router.pollAt()).toBe(0);
    const times: number[] = [];
    let now = 0;
    for (let i = 0; i < 6; i++) {
      now = router.pollAt();
      router.poll(now);
      times.push(now);
    }
    expect(sink.frames.length).toBe(6);
    const gaps = times.slice(1).map((t, i) => t - times[i]);
    // Min = 0.33 * 60 s = 19.8 s; midpoint 39.9 s; initial ones capped at 16 s.
    expect(gaps.slice(0, MAX_INITIAL_RTR_ADVERTISEMENTS - 1)).toEqual([16_000, 16_000]);
    expect(gaps.slice(MAX_INITIAL_RTR_ADVERTISEMENTS)).toEqual([39_900, 39_900]);
    r = 0;
    router.poll(router.pollAt());
    r = 0.999999;
    const t0 = router.pollAt();
    expect(t0 - now - 39_900).toBe(19_800);
    router.poll(t0);
    expect(router.pollAt() - t0).toBe(60_000);
    // Not due: nothing.
    router.poll(router.pollAt() - 1);
    expect(sink.frames.length).toBe(8);
  });

  it('answer a captured RS by unicast to the soliciting host and learn it', () => {
    const { router, sink } = setup();
    const f = Buffer.from(RS_WITH_SLLA);
    expect(router.handleFrame({ buf: f, off: 0, len: f.length, vnet: false }, 0)).toBe('consumed');
    const p = parse(sink.frames[0]);
    expect(p).toMatchObject({ dstMac: '02:00:00:00:00:0a', dst: 'fe80::ff:fe00:a', src: 'fe80::5055:aff:fe00:202', checksumOk: true });
    expect(raInfo(p.frame).prefix).toMatchObject({ prefix: 'fd00::/64' });
    expect(formatMac(router.lookup(GUEST_LL, 0))).toBe('02:00:00:00:00:0a');
  });

  it('answer an RS from :: by multicast, rate-limited', () => {
    const { router, sink } = setup();
    const rs = () => icmpFrame(0x3333_0000_0002, UNSPEC, ALL_ROUTERS, (b, o) => emitRouterSolicitation(b, o));
    expect(router.handleFrame(rs(), 10_000)).toBe('consumed');
    expect(parse(sink.frames[0]).dst).toBe('ff02::1');
    expect(router.handleFrame(rs(), 11_000)).toBe('ndp-rs-rate-limited');
    expect(router.handleFrame(rs(), 13_000)).toBe('consumed');
    const withSlla = icmpFrame(0x3333_0000_0002, UNSPEC, ALL_ROUTERS, (b, o) => {
      const n = emitRouterSolicitation(b, o);
      return n + emitLinkLayerOption(b, o + n, NDP_OPT_SOURCE_LLA, GUEST_MAC);
    });
    expect(router.handleFrame(withSlla, 20_000)).toBe('ndp-rs-unspecified-with-slla');
  });
});

describe('echo', () => {
  const echo = (dst: Uint8Array, dstMac = GW_MAC) =>
    icmpFrame(
      dstMac,
      GUEST,
      dst,
      (b, o) => {
        b[o] = ICMPV6_ECHO_REQUEST;
        b[o + 1] = 0;
        b.writeUInt32BE(0x12340007, o + 4);
        b.write('hello, router', o + 8);
        return 8 + 13;
      },
      64,
    );

  for (const [name, dst] of [
    ['gateway', GW],
    ['DNS', DNS],
    ['link-local', parseIpv6('fe80::5055:aff:fe00:202')!],
  ] as const) {
    it(`replies to an echo request to its ${name} address`, () => {
      const { router, sink } = setup();
      const req = echo(dst);
      expect(router.handleFrame(req, 0)).toBe('consumed');
      const p = parse(sink.frames[0]);
      expect(p).toMatchObject({ dstMac: '02:00:00:00:00:0a', src: formatIpv6(dst), dst: 'fd00::a', type: ICMPV6_ECHO_REPLY, checksumOk: true, hopLimit: 64 });
      expect(p.frame.subarray(58)).toEqual(req.buf.subarray(58, req.len));
      expect(router.stats().echoReplies).toBe(1);
    });
  }

  it('sends echo to other destinations to the NAT, drops multicast echo', () => {
    const { router, sink } = setup();
    expect(router.handleFrame(echo(parseIpv6('2001:db8::1')!), 0)).toBe('to-nat');
    expect(router.ext.protocol).toBe(IPV6_NH_ICMPV6);
    expect(router.handleFrame(echo(ALL_NODES, 0x3333_0000_0001), 0)).toBe('icmpv6-echo-multicast');
    const bad = echo(GW);
    bad.buf[60] ^= 1;
    expect(router.handleFrame(bad, 0)).toBe('icmpv6-bad-checksum');
    expect(sink.frames.length).toBe(0);
  });
});

describe('dispatch', () => {
  it('hands TCP/UDP to local and remote addresses to the NAT and learns the sender', () => {
    const { router } = setup();
    expect(router.handleFrame(l4Frame(GW, IPV6_NH_TCP), 0)).toBe('to-nat');
    expect(router.ext).toMatchObject({ protocol: IPV6_NH_TCP, offset: 54, length: 20 });
    expect(formatIpv6(router.ip.buf, router.ip.dstOffset)).toBe('fd00::2');
    expect(router.handleFrame(l4Frame(parseIpv6('2606:4700::1111')!, IPV6_NH_UDP), 0)).toBe('to-nat');
    expect(router.handleFrame(l4Frame(DNS, IPV6_NH_UDP), 0)).toBe('to-nat');
    expect(formatMac(router.lookup(GUEST, 0))).toBe('02:00:00:00:00:0a');
  });

  it('filters multicast groups, foreign unicast and hostile addresses', () => {
    const { router } = setup();
    expect(router.handleFrame(l4Frame(GW, IPV6_NH_TCP, 20, parseMac('02:00:00:00:00:99')), 0)).toBe('not-for-us');
    expect(router.handleFrame(l4Frame(parseIpv6('ff02::fb')!, IPV6_NH_UDP, 20, 0x3333_0000_00fb), 0)).toBe('ipv6-mcast-other-group');
    expect(router.handleFrame(l4Frame(ALL_NODES, IPV6_NH_UDP, 20, 0x3333_0000_0001), 0)).toBe('ipv6-multicast-ignored');
    expect(router.handleFrame(l4Frame(GW, IPV6_NH_UDP, 20, 0xffff_ffff_ffff), 0)).toBe('ipv6-l2-broadcast');
    expect(router.handleFrame(l4Frame(GW, IPV6_NH_UDP, 20, 0x3333_0000_0001), 0)).toBe('ipv6-unicast-in-l2-multicast');
    expect(router.handleFrame(l4Frame(parseIpv6('fe80::1')!, IPV6_NH_UDP), 0)).toBe('ipv6-link-local-not-ours');
    const spoof = l4Frame(GW, IPV6_NH_UDP);
    spoof.buf.set(GW, 22);
    expect(router.handleFrame(spoof, 0)).toBe('ipv6-src-is-ours');
  });

  it('ignores (and counts) MLD reports', () => {
    const { router, sink } = setup();
    const f = Buffer.from(MLDV2_REPORT);
    // Sent to ff02::16, a group we are not in: filtered at the MAC.
    expect(router.handleFrame({ buf: f, off: 0, len: f.length, vnet: false }, 0)).toBe('ipv6-mcast-other-group');
    // An MLD report to all-nodes (MLDv1 style destination) reaches the ICMPv6 switch.
    const mld = icmpFrame(0x3333_0000_0001, GUEST_LL, ALL_NODES, (b, o) => {
      b[o] = 131;
      b[o + 1] = 0;
      return 24;
    }, 1);
    expect(router.handleFrame(mld, 0)).toBe('mld-ignored');
    expect(router.stats().mldIgnored).toBe(1);
    expect(sink.frames.length).toBe(0);
  });
});

describe('Ipv6NeighborTable', () => {
  it('is bounded and evicts the least recently seen', () => {
    const t = new Ipv6NeighborTable(4);
    const a = (n: number) => parseIpv6(`fd00::${n.toString(16)}`)!;
    const mac = (n: number) => macToBytes(0x0200_0000_0000 + n);
    for (let i = 1; i <= 4; i++) t.learn(a(i), 0, mac(i), 0, i);
    expect(t.size).toBe(4);
    t.learn(a(1), 0, mac(11), 0, 10); // refresh 1
    t.learn(a(5), 0, mac(5), 0, 11); // evicts 2 (oldest)
    expect(t.size).toBe(4);
    expect(t.lookup(a(2), 0)).toBe(-1);
    expect(t.lookup(a(1), 0)).toBe(0x0200_0000_0000 + 11);
    expect(t.lookup(a(5), 0)).toBe(0x0200_0000_0000 + 5);
    for (let i = 100; i < 200; i++) t.learn(a(i), 0, mac(i), 0, 100 + i);
    expect(t.size).toBe(4);
    for (let i = 196; i < 200; i++) expect(t.lookup(a(i), 0)).toBe(0x0200_0000_0000 + i);
    const out = new Uint8Array(8);
    expect(t.copyMac(a(199), 0, out, 1)).toBe(true);
    expect(formatMac(readMac(out, 1))).toBe('02:00:00:00:00:c7');
    expect(t.copyMac(a(1), 0, out, 1)).toBe(false);
  });
});
