import { describe, expect, it } from 'vitest';
import {
  fillIcmpv6Checksum,
  ICMPV6_DEST_UNREACHABLE,
  ICMPV6_ECHO_REPLY,
  ICMPV6_ECHO_REQUEST,
  Icmpv6View,
  isIcmpv6Error,
} from '../../../stack/wire/icmpv6.js';
import { emitIpv6Header, IPV6_NH_ICMPV6 } from '../../../stack/wire/ipv6.js';
import { parseIpv6 } from '../../../stack/wire/ipv6-address.js';
import { ECHO_REPLY, ECHO_REQUEST, NS_GLOBAL } from './ipv6-capture.fixture.js';

const GW = parseIpv6('fd00::2')!;
const GUEST = parseIpv6('fd00::a')!;

describe('Icmpv6View', () => {
  it('reads a captured echo request and verifies its checksum', () => {
    const ip = ECHO_REQUEST.subarray(14);
    const v = new Icmpv6View();
    expect(v.reset(ip, 40, 24)).toBeNull();
    expect(v.type).toBe(ICMPV6_ECHO_REQUEST);
    expect(v.code).toBe(0);
    expect(v.checksum).toBe(0x0b6d);
    expect(v.identifier).toBe(0x2473);
    expect(v.sequence).toBe(1);
    expect(v.bodyOffset).toBe(44);
    expect(v.bodyLength).toBe(20);
    expect(v.checksumOk(ip, 8, 24)).toBe(true);
    // Swapping the addresses keeps the pseudo-header sum: flip a byte of one instead.
    const bad = Buffer.from(ip);
    bad[39] ^= 1;
    expect(v.reset(bad, 40, 24)).toBeNull();
    expect(v.checksumOk(bad, 8, 24)).toBe(false);
  });

  it('fills the checksum a real stack computed (echo reply and an NS)', () => {
    for (const frame of [ECHO_REPLY, NS_GLOBAL]) {
      const ip = Buffer.from(frame.subarray(14));
      const len = ip.length - 40;
      const want = ip.readUInt16BE(42);
      const v = new Icmpv6View().wrap(ip, 40, len);
      v.checksum = 0xffff;
      v.fillChecksum(ip, 8, 24);
      expect(v.checksum).toBe(want);
    }
  });

  it('setters write golden bytes', () => {
    const b = Buffer.alloc(8);
    const v = new Icmpv6View().wrap(b, 0, 8);
    v.type = ICMPV6_ECHO_REPLY;
    v.code = 0;
    v.checksum = 0xbeef;
    v.identifier = 0x1234;
    v.sequence = 0x5678;
    expect(b.toString('hex')).toBe('8100beef12345678');
    expect(v.restOfHeader).toBe(0x12345678);
  });

  it('refuses truncated messages', () => {
    const v = new Icmpv6View();
    expect(v.reset(Buffer.alloc(3), 0, 3)).toBe('icmpv6-truncated');
    expect(v.reset(Buffer.alloc(8), 4, 8)).toBe('icmpv6-truncated');
    expect(v.reset(Buffer.alloc(4), 0, 4)).toBeNull();
    expect(v.restOfHeader).toBe(0);
  });

  it('classifies error types', () => {
    expect(isIcmpv6Error(ICMPV6_DEST_UNREACHABLE)).toBe(true);
    expect(isIcmpv6Error(127)).toBe(true);
    expect(isIcmpv6Error(137)).toBe(true);
    expect(isIcmpv6Error(ICMPV6_ECHO_REQUEST)).toBe(false);
  });
});

describe('fillIcmpv6Checksum', () => {
  it('matches a checksum recomputed with odd lengths', () => {
    const b = Buffer.alloc(40 + 9);
    emitIpv6Header(b, 0, GUEST, 0, GW, 0, IPV6_NH_ICMPV6, 9, 64);
    b.set([128, 0, 0, 0, 1, 2, 3, 4, 5], 40);
    fillIcmpv6Checksum(b, 40, 9, b, 8, 24);
    const v = new Icmpv6View();
    v.reset(b, 40, 9);
    expect(v.checksumOk(b, 8, 24)).toBe(true);
  });
});
