import { describe, expect, it } from 'vitest';
import { VIRTIO_NET_HDR_F_DATA_VALID } from '../../../stack/wire/vnet.js';
import { ICMPV6_NEIGHBOR_ADVERTISEMENT, ICMPV6_NEIGHBOR_SOLICITATION } from '../../../stack/wire/icmpv6.js';
import { formatIpv6, parseIpv6, solicitedNodeAddress, solicitedNodeMac } from '../../../stack/wire/ipv6-address.js';
import { formatMac, macToBytes, parseMac, readMac } from '../../../stack/wire/mac.js';
import {
  emitLinkLayerOption,
  emitNeighborAdvertisement,
  emitNeighborSolicitation,
  emitRouterAdvertisement,
  emitRouterSolicitation,
  NA_FLAG_OVERRIDE,
  NA_FLAG_ROUTER,
  NA_FLAG_SOLICITED,
  NDP_OPT_SOURCE_LLA,
  NDP_OPT_TARGET_LLA,
} from '../../../stack/wire/ndp.js';
import { RS_WITH_SLLA } from '../wire/ipv6-capture.fixture.js';
import { ALL_NODES, ALL_ROUTERS, DNS, GUEST, GUEST_LL, GUEST_MAC, GW, GW_LL, GW_MAC, icmpFrame, ndpOf, ns, parse, raInfo, setup, UNSPEC } from './ipv6-fixture.js';

const na = (target: Uint8Array, mac: number | null, flags = NA_FLAG_SOLICITED) =>
  icmpFrame(GW_MAC, GUEST, GW, (b, o) => {
    const n = emitNeighborAdvertisement(b, o, flags, target, 0);
    return mac === null ? n : n + emitLinkLayerOption(b, o + n, NDP_OPT_TARGET_LLA, mac);
  });

describe('neighbor solicitation and DAD', () => {
  for (const [name, target] of [
    ['gateway', GW],
    ['DNS', DNS],
    ['link-local', GW_LL],
  ] as const) {
    it(`answers an NS for its ${name} address with a solicited NA`, () => {
      const { router, sink } = setup();
      expect(router.handleFrame(ns(target, GUEST, GUEST_MAC), 1000)).toBe('consumed');
      expect(sink.frames.length).toBe(1);
      const p = parse(sink.frames[0]);
      expect(p).toMatchObject({ dstMac: '02:00:00:00:00:0a', srcMac: '52:55:0a:00:02:02', src: formatIpv6(target), dst: 'fd00::a', hopLimit: 255, type: ICMPV6_NEIGHBOR_ADVERTISEMENT, checksumOk: true });
      expect(ndpOf(p.frame)).toEqual({ flags: NA_FLAG_ROUTER | NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE, target: formatIpv6(target), lla: '52:55:0a:00:02:02' });
      // The option taught us the guest.
      expect(formatMac(router.lookup(GUEST, 0))).toBe('02:00:00:00:00:0a');
      expect(router.stats().neighborAdvertsSent).toBe(1);
    });
  }

  it('answers an NS without a source link-layer option to the frame sender', () => {
    const { router, sink } = setup();
    const f = icmpFrame(GW_MAC, GUEST, GW, (b, o) => emitNeighborSolicitation(b, o, GW, 0));
    expect(router.handleFrame(f, 0)).toBe('consumed');
    expect(parse(sink.frames[0]).dstMac).toBe('02:00:00:00:00:0a');
  });

  it('answers at the MAC the source link-layer option names, not the frame sender', () => {
    const { router, sink } = setup();
    expect(router.handleFrame(ns(GW, GUEST, parseMac('02:00:00:00:00:bb')), 0)).toBe('consumed');
    expect(parse(sink.frames[0]).dstMac).toBe('02:00:00:00:00:bb');
  });

  it('defends its own address against a DAD probe with an NA to all-nodes', () => {
    const { router, sink } = setup();
    expect(router.handleFrame(ns(GW, UNSPEC, null), 0)).toBe('consumed');
    const p = parse(sink.frames[0]);
    expect(p).toMatchObject({ dstMac: '33:33:00:00:00:01', src: 'fd00::2', dst: 'ff02::1', hopLimit: 255, checksumOk: true });
    expect(ndpOf(p.frame)).toEqual({ flags: NA_FLAG_ROUTER | NA_FLAG_OVERRIDE, target: 'fd00::2', lla: '52:55:0a:00:02:02' });
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
    // Even when the NS reaches it through a group we are in (unicast to our MAC and address).
    const direct = icmpFrame(GW_MAC, GUEST, GW, (b, o) => emitNeighborSolicitation(b, o, DNS, 0));
    expect(router.handleFrame(direct, 0)).toBe('ndp-ns-not-ours');
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

  it('trusts a checksum the virtio-net header vouches for', () => {
    const { router, sink } = setup();
    const f = ns(GW, GUEST, GUEST_MAC);
    f.buf[56] ^= 0xff;
    const vnet = Buffer.alloc(10 + f.len);
    vnet[0] = VIRTIO_NET_HDR_F_DATA_VALID;
    f.buf.copy(vnet, 10, 0, f.len);
    expect(router.handleFrame({ buf: vnet, off: 10, len: f.len, vnet: true }, 0)).toBe('consumed');
    expect(sink.frames.length).toBe(1);
  });
});

describe('neighbor advertisements', () => {
  it('learn guests from target link-layer options, tell the listener, and count conflicts for its own addresses', () => {
    const { router } = setup();
    const heard: string[] = [];
    router.ndp.neighborListener = (b, off, macOff) => heard.push(`${formatIpv6(b, off)} ${formatMac(readMac(b, macOff))}`);
    const other = parseIpv6('fd00::77')!;
    expect(router.handleFrame(na(other, parseMac('02:00:00:00:00:77')), 5)).toBe('consumed');
    expect(formatMac(router.lookup(other, 0))).toBe('02:00:00:00:00:77');
    expect(heard).toEqual(['fd00::77 02:00:00:00:00:77']);
    expect(router.handleFrame(na(GW, parseMac('02:00:00:00:00:77')), 5)).toBe('ndp-na-conflict');
    // No target option, or a target outside the prefix: nothing to learn, nothing told.
    expect(router.handleFrame(na(parseIpv6('fd00::78')!, null), 5)).toBe('consumed');
    expect(router.handleFrame(na(parseIpv6('2001:db8::1')!, parseMac('02:00:00:00:00:79')), 5)).toBe('consumed');
    expect(router.lookup(parseIpv6('2001:db8::1')!, 0)).toBe(-1);
    expect(heard.length).toBe(1);
  });

  it('drop an NA from :: or for a multicast target', () => {
    const { router } = setup();
    const fromUnspec = icmpFrame(0x3333_0000_0001, UNSPEC, ALL_NODES, (b, o) => emitNeighborAdvertisement(b, o, 0, GUEST, 0));
    expect(router.handleFrame(fromUnspec, 0)).toBe('ndp-na-bad-src');
    expect(router.handleFrame(na(ALL_NODES, GUEST_MAC), 0)).toBe('ndp-na-multicast-target');
  });
});

describe('router solicitations', () => {
  it('answer a captured RS by unicast to the soliciting host and learn it', () => {
    const { router, sink } = setup();
    const f = Buffer.from(RS_WITH_SLLA);
    expect(router.handleFrame({ buf: f, off: 0, len: f.length, vnet: false }, 0)).toBe('consumed');
    const p = parse(sink.frames[0]);
    expect(p).toMatchObject({ dstMac: '02:00:00:00:00:0a', dst: 'fe80::ff:fe00:a', src: 'fe80::5055:aff:fe00:202', checksumOk: true });
    expect(raInfo(p.frame).prefix).toMatchObject({ prefix: 'fd00::/64' });
    expect(formatMac(router.lookup(GUEST_LL, 0))).toBe('02:00:00:00:00:0a');
    expect(router.stats().solicitationsAnswered).toBe(1);
  });

  it('answer an RS without a source link-layer option at the frame sender', () => {
    const { router, sink } = setup();
    const rs = icmpFrame(0x3333_0000_0002, GUEST_LL, ALL_ROUTERS, (b, o) => emitRouterSolicitation(b, o), 255, parseMac('02:00:00:00:00:cc'));
    expect(router.handleFrame(rs, 0)).toBe('consumed');
    expect(parse(sink.frames[0])).toMatchObject({ dstMac: '02:00:00:00:00:cc', dst: 'fe80::ff:fe00:a' });
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

  it("ignore another router's advertisements", () => {
    const { router, sink } = setup();
    const ra = icmpFrame(0x3333_0000_0001, GUEST_LL, ALL_NODES, (b, o) => emitRouterAdvertisement(b, o, 64, 0, 1800, 0, 0));
    expect(router.handleFrame(ra, 0)).toBe('ndp-ra-ignored');
    expect(sink.frames.length).toBe(0);
  });
});

describe('multicast groups', () => {
  const group = (text: string) => parseIpv6(text)!;
  const mac = (text: string) => macToBytes(parseMac(text));

  it('listens to all-nodes, all-routers and the solicited-node groups of its addresses', () => {
    const { router } = setup();
    for (const g of ['ff02::1', 'ff02::2', 'ff02::1:ff00:2', 'ff02::1:ff00:3', 'ff02::1:ff00:202']) {
      expect(router.ndp.acceptsGroup(group(g), 0), g).toBe(true);
    }
    for (const g of ['ff02::fb', 'ff02::16', 'ff02::1:ff00:a', 'ff05::1', 'ff02::1:2', 'fd00::2']) {
      expect(router.ndp.acceptsGroup(group(g), 0), g).toBe(false);
    }
    for (const m of ['33:33:00:00:00:01', '33:33:00:00:00:02', '33:33:ff:00:00:02', '33:33:ff:00:00:03', '33:33:ff:00:02:02']) {
      expect(router.ndp.acceptsGroupMac(mac(m), 0), m).toBe(true);
    }
    for (const m of ['33:33:00:00:00:fb', '33:33:00:00:00:16', '33:33:ff:00:00:0a', '33:33:00:01:00:01']) {
      expect(router.ndp.acceptsGroupMac(mac(m), 0), m).toBe(false);
    }
  });

  it("leaves the DNS address's group while DNS is disabled", () => {
    const { router } = setup({ dnsEnabled: false });
    expect(router.ndp.acceptsGroup(group('ff02::1:ff00:3'), 0)).toBe(false);
    expect(router.ndp.acceptsGroupMac(mac('33:33:ff:00:00:03'), 0)).toBe(false);
    expect(router.ndp.acceptsGroup(group('ff02::1:ff00:2'), 0)).toBe(true);
  });
});

describe('sendSolicitation', () => {
  it("asks for a guest's MAC from the gateway address, to its solicited-node group", () => {
    const { router, sink } = setup();
    const target = parseIpv6('fd00::12:3456')!;
    router.ndp.sendSolicitation(target, 0, 0);
    expect(sink.frames.length).toBe(1);
    const p = parse(sink.frames[0]);
    expect(p).toMatchObject({ dstMac: '33:33:ff:12:34:56', srcMac: '52:55:0a:00:02:02', src: 'fd00::2', dst: 'ff02::1:ff12:3456', hopLimit: 255, type: ICMPV6_NEIGHBOR_SOLICITATION, checksumOk: true });
    expect(ndpOf(p.frame, NDP_OPT_SOURCE_LLA)).toEqual({ flags: 0, target: 'fd00::12:3456', lla: '52:55:0a:00:02:02' });
    expect(router.stats().solicitationsSent).toBe(1);
  });
});
