import { describe, expect, it } from 'vitest';
import {
  formatIpv4,
  inSubnet,
  Ipv4Cidr,
  isMulticastIpv4,
  parseCidr,
  parseIpv4,
  prefixToMask,
  subnetBroadcast,
  subnetHost,
} from '../../../stack/wire/ipv4-address.js';

describe('parseIpv4 / formatIpv4', () => {
  it('parses dotted quads to u32', () => {
    expect(parseIpv4('10.0.2.15')).toBe(0x0a00020f);
    expect(parseIpv4('0.0.0.0')).toBe(0);
    expect(parseIpv4('255.255.255.255')).toBe(0xffffffff);
    expect(parseIpv4('192.168.100.1')).toBe(0xc0a86401);
  });

  it('returns -1 for anything but a strict dotted quad', () => {
    const bad = [
      '', '1.2.3', '1.2.3.4.5', '256.0.0.1', '1.2.3.256', '+1.2.3.4', '1.+2.3.4', '-1.2.3.4', '1..3.4',
      '.1.2.3', '1.2.3.', ' 1.2.3.4', '1.2.3.4 ', '01.2.3.4', '1.2.3.00', '0x1.2.3.4', '1.2.3.4/24', 'a.b.c.d', '1e2.0.0.1',
    ];
    for (const text of bad) expect(parseIpv4(text), text).toBe(-1);
  });

  it('formats u32 (and values that were left signed) back to text', () => {
    expect(formatIpv4(0x0a00020f)).toBe('10.0.2.15');
    expect(formatIpv4(0xffffffff | 0)).toBe('255.255.255.255');
    expect(formatIpv4(0)).toBe('0.0.0.0');
    for (const t of ['1.2.3.4', '172.16.254.1', '224.0.0.251']) expect(formatIpv4(parseIpv4(t))).toBe(t);
  });
});

describe('subnets', () => {
  it('parses a CIDR and normalises host bits away', () => {
    const c = parseCidr('10.0.2.15/24');
    expect(c).toBeInstanceOf(Ipv4Cidr);
    expect(c.network).toBe(0x0a000200);
    expect(c.prefix).toBe(24);
    expect(c.mask).toBe(0xffffff00);
    expect(c.toString()).toBe('10.0.2.0/24');
    expect(c.host(2)).toBe(0x0a000202);
    expect(c.host(3)).toBe(0x0a000203);
    expect(c.broadcast).toBe(0x0a0002ff);
    expect(c.inSubnet(0x0a0002fe)).toBe(true);
    expect(c.inSubnet(0x0a000302)).toBe(false);
  });

  it('handles /0 and /32 and odd prefixes', () => {
    const all = parseCidr('1.2.3.4/0');
    expect(all.network).toBe(0);
    expect(all.mask).toBe(0);
    expect(all.broadcast).toBe(0xffffffff);
    expect(all.inSubnet(0xdeadbeef)).toBe(true);
    const one = parseCidr('192.168.1.77/32');
    expect(one.network).toBe(0xc0a8014d);
    expect(one.mask).toBe(0xffffffff);
    expect(one.broadcast).toBe(0xc0a8014d);
    const odd = parseCidr('172.31.255.255/12');
    expect(formatIpv4(odd.network)).toBe('172.16.0.0');
    expect(formatIpv4(odd.broadcast)).toBe('172.31.255.255');
  });

  it('throws clear errors with an example for malformed CIDRs', () => {
    expect(() => parseCidr('10.0.2.0')).toThrow(/missing "\/prefix".*10\.0\.2\.0\/24/);
    expect(() => parseCidr('10.0.2/24')).toThrow(/not a dotted-quad.*10\.0\.2\.0\/24/);
    expect(() => parseCidr('10.0.2.0/33')).toThrow(/prefix length "33" must be an integer from 0 to 32/);
    expect(() => parseCidr('10.0.2.0/')).toThrow(/prefix length ""/);
    expect(() => parseCidr('10.0.2.0/+8')).toThrow(/prefix length/);
    expect(() => parseCidr('10.0.2.0/08')).toThrow(/prefix length/);
    expect(() => parseCidr('10.0.2.0/24/1')).toThrow(/prefix length/);
    expect(() => parseCidr('300.0.2.0/24')).toThrow(/"300.0.2.0" is not a dotted-quad/);
  });

  it('free helpers agree with the class', () => {
    expect(prefixToMask(0)).toBe(0);
    expect(prefixToMask(1)).toBe(0x80000000);
    expect(prefixToMask(29)).toBe(0xfffffff8);
    expect(prefixToMask(32)).toBe(0xffffffff);
    expect(inSubnet(0x0a000263, 0x0a000200, 0xffffff00)).toBe(true);
    expect(inSubnet(0xffffffff, 0x0a000200, 0xffffff00)).toBe(false);
    expect(subnetHost(0xffffffff, 1)).toBe(0);
    expect(subnetBroadcast(0x0a000200, 0xffffff00)).toBe(0x0a0002ff);
    expect(isMulticastIpv4(parseIpv4('224.0.0.251'))).toBe(true);
    expect(isMulticastIpv4(parseIpv4('239.255.255.255'))).toBe(true);
    expect(isMulticastIpv4(parseIpv4('240.0.0.1'))).toBe(false);
    expect(isMulticastIpv4(parseIpv4('10.0.2.2'))).toBe(false);
  });
});
