import { describe, expect, it } from 'vitest';
import {
  formatIpv6,
  ipv6Equal,
  ipv6IsLinkLocal,
  ipv6IsMulticast,
  ipv6IsUnspecified,
  ipv6PrefixMatch,
  isSolicitedNodeOf,
  linkLocalFromMac,
  multicastMac,
  parseIpv6,
  parsePrefix,
  prefixHost,
  solicitedNodeAddress,
  solicitedNodeMac,
} from '../../../stack/wire/ipv6-address.js';
import { formatMac, parseMac } from '../../../stack/wire/mac.js';

const hex = (a: Uint8Array | null) => (a === null ? null : Buffer.from(a).toString('hex'));

describe('parseIpv6', () => {
  it('parses the RFC 4291 text forms', () => {
    expect(hex(parseIpv6('2001:DB8:0:0:8:800:200C:417A'))).toBe('20010db80000000000080800200c417a');
    expect(hex(parseIpv6('2001:db8::8:800:200c:417a'))).toBe('20010db80000000000080800200c417a');
    expect(hex(parseIpv6('ff01::101'))).toBe('ff010000000000000000000000000101');
    expect(hex(parseIpv6('::1'))).toBe('00000000000000000000000000000001');
    expect(hex(parseIpv6('::'))).toBe('00000000000000000000000000000000');
    expect(hex(parseIpv6('fd00::'))).toBe('fd000000000000000000000000000000');
    expect(hex(parseIpv6('0:0:0:0:0:0:13.1.68.3'))).toBe('0000000000000000000000000d014403');
    expect(hex(parseIpv6('::ffff:129.144.52.38'))).toBe('00000000000000000000ffff81903426');
    expect(hex(parseIpv6('1:2:3:4:5:6:7::'))).toBe('00010002000300040005000600070000');
    expect(hex(parseIpv6('::2:3:4:5:6:7:8'))).toBe('00000002000300040005000600070008');
  });

  it('returns null for malformed text', () => {
    for (const bad of [
      '', ':', ':::', '1:::2', '1::2::3', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', '12345::', 'g::1',
      '::1.2.3', '::1.2.3.256', '1.2.3.4::', ':1:2:3:4:5:6:7', '1:2:3:4:5:6:7:', 'fe80::1%eth0',
      '1:2:3:4:5:6:7:8::', '::1:2:3:4:5:6:7:8', '1::2:3:4:5:6:7:8', ' ::1',
    ]) {
      expect(parseIpv6(bad), bad).toBeNull();
    }
  });
});

describe('formatIpv6 (RFC 5952)', () => {
  const f = (t: string) => formatIpv6(parseIpv6(t)!);
  it('compresses the longest zero run, lower case, no leading zeros', () => {
    expect(f('2001:0DB8:0000:0000:0000:0000:0000:0001')).toBe('2001:db8::1');
    expect(f('2001:db8:0:0:1:0:0:1')).toBe('2001:db8::1:0:0:1'); // tie: first run
    expect(f('2001:db8:0:1:1:1:1:1')).toBe('2001:db8:0:1:1:1:1:1'); // a single zero stays
    expect(f('2001:0:0:1:0:0:0:1')).toBe('2001:0:0:1::1'); // longest run wins
    expect(f('::')).toBe('::');
    expect(f('::1')).toBe('::1');
    expect(f('fd00::2')).toBe('fd00::2');
    expect(f('fe80::5055:aff:fe00:202')).toBe('fe80::5055:aff:fe00:202');
    expect(f('::ffff:10.0.2.15')).toBe('::ffff:10.0.2.15');
    expect(f('1:0:0:0:0:0:0:0')).toBe('1::');
  });
  it('round-trips', () => {
    for (const t of ['2001:db8::8:800:200c:417a', 'ff02::1:ff00:2', 'fd00::3']) expect(f(t)).toBe(t);
  });
});

describe('predicates and derived addresses', () => {
  it('compares, matches prefixes, classifies', () => {
    const a = parseIpv6('fd00::1234')!;
    const b = parseIpv6('fd00::1:1234')!;
    const buf = new Uint8Array(40);
    buf.set(a, 7);
    expect(ipv6Equal(buf, 7, a, 0)).toBe(true);
    expect(ipv6Equal(a, 0, b, 0)).toBe(false);
    expect(ipv6PrefixMatch(a, 0, b, 0, 64)).toBe(true);
    expect(ipv6PrefixMatch(a, 0, b, 0, 112)).toBe(false);
    expect(ipv6PrefixMatch(parseIpv6('fd00:8000::')!, 0, parseIpv6('fd00:c000::')!, 0, 17)).toBe(true);
    expect(ipv6PrefixMatch(parseIpv6('fd00:8000::')!, 0, parseIpv6('fd00:c000::')!, 0, 18)).toBe(false);
    expect(ipv6PrefixMatch(a, 0, b, 0, 0)).toBe(true);
    expect(ipv6IsUnspecified(parseIpv6('::')!, 0)).toBe(true);
    expect(ipv6IsMulticast(parseIpv6('ff02::1')!, 0)).toBe(true);
    expect(ipv6IsLinkLocal(parseIpv6('febf::1')!, 0)).toBe(true);
    expect(ipv6IsLinkLocal(parseIpv6('fec0::1')!, 0)).toBe(false);
  });

  it('derives the EUI-64 link-local address (RFC 4291 appendix A)', () => {
    const mac = Buffer.from('525500000202', 'hex'); // 52:55:00:00:02:02 -> U/L bit flipped: 50
    expect(formatIpv6(linkLocalFromMac(mac))).toBe('fe80::5055:ff:fe00:202');
    expect(formatIpv6(linkLocalFromMac(Buffer.from('0002b3010203', 'hex')))).toBe('fe80::202:b3ff:fe01:203');
  });

  it('derives solicited-node groups and multicast MACs', () => {
    const a = parseIpv6('fd00::4:5678:9abc')!;
    const sn = solicitedNodeAddress(a);
    expect(formatIpv6(sn)).toBe('ff02::1:ff78:9abc');
    expect(isSolicitedNodeOf(sn, 0, a, 0)).toBe(true);
    expect(isSolicitedNodeOf(sn, 0, parseIpv6('fd00::1')!, 0)).toBe(false);
    expect(formatMac(solicitedNodeMac(a))).toBe('33:33:ff:78:9a:bc');
    expect(formatMac(multicastMac(parseIpv6('ff02::1')!))).toBe('33:33:00:00:00:01');
    expect(multicastMac(sn)).toBe(parseMac('33:33:ff:78:9a:bc'));
  });
});

describe('parsePrefix', () => {
  it('parses and clears host bits', () => {
    const p = parsePrefix('fd00::/64');
    expect(p.length).toBe(64);
    expect(formatIpv6(p.address)).toBe('fd00::');
    expect(formatIpv6(parsePrefix('2001:db8:1:2:3::/48').address)).toBe('2001:db8:1::');
    expect(formatIpv6(parsePrefix('2001:db8:ffff::/33').address)).toBe('2001:db8:8000::');
    expect(parsePrefix('::/0').length).toBe(0);
  });
  it('throws clear errors', () => {
    expect(() => parsePrefix('fd00::')).toThrow(/no "\/length"/);
    expect(() => parsePrefix('fd00::/129')).toThrow(/above 128/);
    expect(() => parsePrefix('fd00::/x')).toThrow(/not a number/);
    expect(() => parsePrefix('fd00::/')).toThrow(/not a number/);
    expect(() => parsePrefix('fd00:::/64')).toThrow(/not an IPv6 address/);
  });
  it('builds hosts in a prefix', () => {
    const p = parsePrefix('fd00::/64').address;
    expect(formatIpv6(prefixHost(p, 2))).toBe('fd00::2');
    expect(formatIpv6(prefixHost(p, 0x10000))).toBe('fd00::1:0');
  });
});
