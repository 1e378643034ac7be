import { describe, expect, it } from 'vitest';
import {
  ICMPV6_DEST_UNREACHABLE,
  ICMPV6_PACKET_TOO_BIG,
  ICMPV6_PARAM_UNKNOWN_OPTION,
  ICMPV6_PARAMETER_PROBLEM,
  ICMPV6_TIME_EXCEEDED,
  ICMPV6_UNREACH_PORT,
  Icmpv6View,
} from '../../../stack/wire/icmpv6.js';
import { icmpv6ErrorSuppressed, writeIcmpv6Error } from '../../../stack/ip6/icmp-errors.js';
import { emitIpv6Header, IPV6_MIN_MTU, IPV6_NH_HOP_BY_HOP, IPV6_NH_ICMPV6, IPV6_NH_UDP, Ipv6View } from '../../../stack/wire/ipv6.js';
import { parseIpv6 } from '../../../stack/wire/ipv6-address.js';
import { ECHO_REQUEST, MLDV2_REPORT } from '../wire/ipv6-capture.fixture.js';

const GW = parseIpv6('fd00::2')!;
const GUEST = parseIpv6('fd00::a')!;

function udpPacket(src: Uint8Array, dst: Uint8Array, payload: number): Buffer {
  const b = Buffer.alloc(40 + 8 + payload, 0x5a);
  emitIpv6Header(b, 0, src, 0, dst, 0, IPV6_NH_UDP, 8 + payload, 64);
  return b;
}

describe('writeIcmpv6Error', () => {
  it('builds a port unreachable with golden layout and a valid checksum', () => {
    const orig = udpPacket(GUEST, parseIpv6('2001:db8::99')!, 4);
    const out = Buffer.alloc(1500);
    const n = writeIcmpv6Error(out, 10, 1490, ICMPV6_DEST_UNREACHABLE, ICMPV6_UNREACH_PORT, GW, 0, orig, 0, orig.length);
    expect(n).toBe(40 + 8 + orig.length);
    const ip = new Ipv6View();
    expect(ip.reset(out, 10, n)).toBeNull();
    expect(ip.nextHeader).toBe(IPV6_NH_ICMPV6);
    expect(ip.hopLimit).toBe(64);
    expect(Buffer.from(out.subarray(ip.srcOffset, ip.srcOffset + 16))).toEqual(Buffer.from(GW));
    expect(Buffer.from(out.subarray(ip.dstOffset, ip.dstOffset + 16))).toEqual(Buffer.from(GUEST));
    expect(out.subarray(50, 58).toString('hex').replace(/^(....)..../, '$1xxxx')).toBe('0104xxxx00000000');
    expect(out.subarray(58, 58 + orig.length)).toEqual(orig);
    const v = new Icmpv6View();
    v.reset(out, 50, n - 40);
    expect(v.checksumOk(out, ip.srcOffset, ip.dstOffset)).toBe(true);
  });

  it('quotes at most what keeps the error within 1280 bytes, and carries the MTU of packet-too-big', () => {
    const orig = udpPacket(GUEST, parseIpv6('2001:db8::99')!, 1452);
    const out = Buffer.alloc(2000);
    const n = writeIcmpv6Error(out, 0, 2000, ICMPV6_PACKET_TOO_BIG, 0, GW, 0, orig, 0, orig.length, 1280);
    expect(n).toBe(IPV6_MIN_MTU);
    expect(out.readUInt32BE(44)).toBe(1280);
    expect(out.subarray(48, n)).toEqual(orig.subarray(0, n - 48));
  });

  it('stops the quote at the payload length (no link padding) and fails on bad input', () => {
    const orig = Buffer.concat([udpPacket(GUEST, GW, 0), Buffer.alloc(12)]);
    const out = Buffer.alloc(200);
    expect(writeIcmpv6Error(out, 0, 200, ICMPV6_TIME_EXCEEDED, 0, GW, 0, orig, 0, orig.length)).toBe(48 + 48);
    expect(writeIcmpv6Error(out, 0, 200, ICMPV6_TIME_EXCEEDED, 0, GW, 0, orig, 0, 39)).toBe(0);
    const v4 = Buffer.from(orig);
    v4[0] = 0x45;
    expect(writeIcmpv6Error(out, 0, 200, ICMPV6_TIME_EXCEEDED, 0, GW, 0, v4, 0, v4.length)).toBe(0);
    expect(writeIcmpv6Error(out, 0, 60, ICMPV6_TIME_EXCEEDED, 0, GW, 0, orig, 0, orig.length)).toBe(0);
    expect(writeIcmpv6Error(out, 150, 100, ICMPV6_TIME_EXCEEDED, 0, GW, 0, orig, 0, orig.length)).toBe(0);
  });
});

describe('icmpv6ErrorSuppressed (RFC 4443 2.4(e))', () => {
  const unreach = (b: Buffer, l2 = false) => icmpv6ErrorSuppressed(b, 0, b.length, ICMPV6_DEST_UNREACHABLE, ICMPV6_UNREACH_PORT, l2);

  it('allows an error about ordinary unicast traffic', () => {
    expect(unreach(udpPacket(GUEST, parseIpv6('2001:db8::1')!, 4))).toBeNull();
  });
  it('never about an ICMPv6 error, even behind extension headers', () => {
    const out = Buffer.alloc(300);
    const orig = udpPacket(GUEST, GW, 4);
    const n = writeIcmpv6Error(out, 0, 300, ICMPV6_DEST_UNREACHABLE, 0, GW, 0, orig, 0, orig.length);
    const err = Buffer.from(out.subarray(0, n));
    err.set(GUEST, 24); // pretend the error came from elsewhere to the guest
    expect(unreach(err)).toBe('icmpv6-error-about-error');
    const echo = Buffer.from(ECHO_REQUEST.subarray(14));
    expect(unreach(echo)).toBeNull();
    // MLD (type 143) is informational; multicast destination stops it anyway.
    expect(unreach(Buffer.from(MLDV2_REPORT.subarray(14)))).toBe('icmpv6-error-multicast');
    // An error behind a hop-by-hop header.
    const hbh = Buffer.alloc(40 + 8 + 8);
    emitIpv6Header(hbh, 0, GUEST, 0, GW, 0, IPV6_NH_HOP_BY_HOP, 16, 64);
    hbh[40] = IPV6_NH_ICMPV6;
    hbh[48] = ICMPV6_TIME_EXCEEDED;
    expect(unreach(hbh)).toBe('icmpv6-error-about-error');
  });
  it('never to multicast or unspecified sources', () => {
    expect(unreach(udpPacket(parseIpv6('::')!, GW, 4))).toBe('icmpv6-error-bad-source');
    expect(unreach(udpPacket(parseIpv6('ff02::1')!, GW, 4))).toBe('icmpv6-error-bad-source');
  });
  it('about multicast destinations only packet-too-big and unknown-option parameter problems', () => {
    const m = udpPacket(GUEST, parseIpv6('ff05::1:3')!, 4);
    expect(unreach(m)).toBe('icmpv6-error-multicast');
    expect(unreach(udpPacket(GUEST, GW, 4), true)).toBe('icmpv6-error-link-multicast');
    expect(icmpv6ErrorSuppressed(m, 0, m.length, ICMPV6_PACKET_TOO_BIG, 0, true)).toBeNull();
    expect(icmpv6ErrorSuppressed(m, 0, m.length, ICMPV6_PARAMETER_PROBLEM, ICMPV6_PARAM_UNKNOWN_OPTION)).toBeNull();
  });
  it('says malformed rather than guessing', () => {
    expect(unreach(Buffer.alloc(20))).toBe('icmpv6-error-malformed');
    const b = udpPacket(GUEST, GW, 4);
    b[6] = IPV6_NH_HOP_BY_HOP;
    b[41] = 200;
    expect(unreach(b)).toBe('icmpv6-error-malformed');
  });
});

