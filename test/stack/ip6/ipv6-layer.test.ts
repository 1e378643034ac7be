import { describe, expect, it } from 'vitest';
import { ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST } from '../../../stack/wire/icmpv6.js';
import { IPV6_NH_ICMPV6, IPV6_NH_TCP, IPV6_NH_UDP } from '../../../stack/wire/ipv6.js';
import { formatIpv6, parseIpv6 } from '../../../stack/wire/ipv6-address.js';
import { formatMac, parseMac } from '../../../stack/wire/mac.js';
import { MLDV2_REPORT } from '../wire/ipv6-capture.fixture.js';
import { ALL_NODES, DNS, GUEST_LL, GW, GW_LL, GW_MAC, GUEST, icmpFrame, l4Frame, parse, setup } from './ipv6-fixture.js';

// Neighbour discovery has its own tests (ndp.test.ts), and so have router advertisements (router-adverts.test.ts).

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
    ['link-local', GW_LL],
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
