import { describe, expect, it } from 'vitest';
import {
  ICMP_ERROR_MAX_LENGTH,
  icmpErrorSuppressed,
  mayGenerateIcmpError,
  writeIcmpError,
} from '../../../stack/ip4/icmp-errors.js';
import {
  ICMP_DEST_UNREACHABLE,
  ICMP_TIME_EXCEEDED,
  ICMP_TIME_EXCEEDED_TTL,
  ICMP_UNREACH_ADMIN_PROHIBITED,
  ICMP_UNREACH_FRAG_NEEDED,
  ICMP_UNREACH_HOST,
  ICMP_UNREACH_NET,
  ICMP_UNREACH_PORT,
  ICMP_UNREACH_PROTOCOL,
  Icmpv4View,
} from '../../../stack/wire/icmpv4.js';
import { Ipv4View } from '../../../stack/wire/ipv4.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const GW = 0x0a000202;

// Captured on a Linux veth: 10.0.2.15:40000 sent "hello usernet\n" to the
// closed port 10.0.2.2:5353 (with an offloaded partial UDP checksum), and
// 10.0.2.2 answered port unreachable quoting all 42 bytes.
const HELLO_IP = hex('4500002a3b2240004011e7900a00020f0a000202 9c4014e900161838 68656c6c6f20757365726e65740a');
const HELLO_UNREACH = hex(
  '45c0004651140000400110d30a0002020a00020f 0303323d00000000' +
    '4500002a3b2240004011e7900a00020f0a0002029c4014e90016183868656c6c6f20757365726e65740a',
);
// Same exchange with a 3080-byte datagram (reassembled by Linux, quoted from
// its reassembled header): the error is cut at 576 bytes.
const BIG_IP = Buffer.concat([
  hex('45000c1c3b23000040111b9e0a00020f0a000202 9c4014e90c081ba7'),
  Buffer.from(Array.from({ length: 3072 }, (_, i) => i & 0xff)),
]);
const BIG_UNREACH_HEAD = hex('45c002405115000040010ed80a0002020a00020f0303979400000000');

describe('writeIcmpError', () => {
  it('reproduces Linux port unreachable byte for byte', () => {
    const out = Buffer.alloc(1500, 0xee);
    const n = writeIcmpError(out, 0, out.length, ICMP_DEST_UNREACHABLE, ICMP_UNREACH_PORT, GW, 0x5114, HELLO_IP, 0, HELLO_IP.length);
    expect(n).toBe(70);
    expect(out.subarray(0, n).toString('hex')).toBe(HELLO_UNREACH.toString('hex'));
  });

  it('cuts the quote so the error is 576 bytes, like Linux', () => {
    const out = Buffer.alloc(2000);
    const n = writeIcmpError(out, 10, 1990, ICMP_DEST_UNREACHABLE, ICMP_UNREACH_PORT, GW, 0x5115, BIG_IP, 0, BIG_IP.length);
    expect(n).toBe(ICMP_ERROR_MAX_LENGTH);
    const e = out.subarray(10, 10 + n);
    expect(e.subarray(0, 28).toString('hex')).toBe(BIG_UNREACH_HEAD.toString('hex'));
    expect(e.subarray(28).equals(BIG_IP.subarray(0, 548))).toBe(true);
  });

  it('writes each code, the next-hop MTU only for frag-needed, with valid checksums', () => {
    const v = new Ipv4View();
    const icmp = new Icmpv4View();
    const cases: Array<[number, number, number]> = [
      [ICMP_DEST_UNREACHABLE, ICMP_UNREACH_NET, 0],
      [ICMP_DEST_UNREACHABLE, ICMP_UNREACH_HOST, 0],
      [ICMP_DEST_UNREACHABLE, ICMP_UNREACH_PROTOCOL, 0],
      [ICMP_DEST_UNREACHABLE, ICMP_UNREACH_PORT, 0],
      [ICMP_DEST_UNREACHABLE, ICMP_UNREACH_ADMIN_PROHIBITED, 0],
      [ICMP_DEST_UNREACHABLE, ICMP_UNREACH_FRAG_NEEDED, 1400],
      [ICMP_TIME_EXCEEDED, ICMP_TIME_EXCEEDED_TTL, 0],
    ];
    for (const [type, code, mtu] of cases) {
      const out = Buffer.alloc(600);
      const n = writeIcmpError(out, 0, 600, type, code, GW, 7, HELLO_IP, 0, HELLO_IP.length, 1400);
      expect(v.reset(out, 0, n)).toBeNull();
      expect(v.checksumOk()).toBe(true);
      expect(v.src).toBe(GW);
      expect(v.dst).toBe(0x0a00020f);
      expect(v.protocol).toBe(1);
      expect(icmp.reset(out, 20, n - 20)).toBeNull();
      expect(icmp.checksumOk()).toBe(true);
      expect(icmp.type).toBe(type);
      expect(icmp.code).toBe(code);
      expect(icmp.nextHopMtu).toBe(mtu);
      expect(out.subarray(28, n).equals(HELLO_IP)).toBe(true);
    }
  });

  it('quotes up to the total length, not link padding', () => {
    const padded = Buffer.concat([HELLO_IP, Buffer.alloc(18)]);
    const out = Buffer.alloc(600);
    expect(writeIcmpError(out, 0, 600, 3, 3, GW, 1, padded, 0, padded.length)).toBe(70);
  });

  it('keeps header + 8 bytes when the caller buffer is small, and refuses when even that does not fit', () => {
    const out = Buffer.alloc(600);
    expect(writeIcmpError(out, 0, 56, 3, 3, GW, 1, BIG_IP, 0, BIG_IP.length)).toBe(56);
    expect(writeIcmpError(out, 0, 55, 3, 3, GW, 1, BIG_IP, 0, BIG_IP.length)).toBe(0);
    // A datagram shorter than header + 8 is quoted whole.
    const tiny = hex('4500001800000000401100000a00020f0a000202 01020304');
    expect(writeIcmpError(out, 0, 600, 3, 3, GW, 1, tiny, 0, tiny.length)).toBe(28 + 24);
  });

  it('returns 0 for garbage instead of throwing', () => {
    const out = Buffer.alloc(600);
    expect(writeIcmpError(out, 0, 600, 3, 3, GW, 1, hex('4500'), 0, 2)).toBe(0);
    expect(writeIcmpError(out, 0, 600, 3, 3, GW, 1, hex('6000000000000000000000000000000000000000'), 0, 20)).toBe(0);
    expect(writeIcmpError(out, 0, 600, 3, 3, GW, 1, hex('4f000014000000004011000001020304 05060708'), 0, 20)).toBe(0);
    expect(writeIcmpError(out, 0, 600, 3, 3, GW, 1, HELLO_IP, 30, 20)).toBe(0);
    expect(writeIcmpError(out, 590, 600, 3, 3, GW, 1, HELLO_IP, 0, 42)).toBe(0);
  });
});

describe('icmpErrorSuppressed (RFC 1122 3.2.2)', () => {
  function ip(over: { src?: string; dst?: string; proto?: number; frag?: number; payload?: string }): Buffer {
    const payload = hex(over.payload ?? '0102030405060708');
    const b = Buffer.concat([hex('4500000000000000400000000000000000000000'), payload]);
    b.writeUInt16BE(b.length, 2);
    b[9] = over.proto ?? 17;
    b.writeUInt16BE(over.frag ?? 0, 6);
    b.writeUInt32BE(Buffer.from((over.src ?? '10.0.2.15').split('.').map(Number)).readUInt32BE(0), 12);
    b.writeUInt32BE(Buffer.from((over.dst ?? '93.184.216.34').split('.').map(Number)).readUInt32BE(0), 16);
    return b;
  }
  const BCAST = 0x0a0002ff;
  const ask = (b: Buffer, link = false) => icmpErrorSuppressed(b, 0, b.length, link, BCAST);

  it('allows an error about an ordinary unicast datagram and the first fragment', () => {
    expect(ask(ip({}))).toBeNull();
    expect(ask(ip({ frag: 0x2000 }))).toBeNull();
    expect(mayGenerateIcmpError(HELLO_IP, 0, HELLO_IP.length)).toBe(true);
    // An echo request is a query, not an error.
    expect(ask(ip({ proto: 1, payload: '0800f7ff00000000' }))).toBeNull();
  });

  it('refuses errors about ICMP errors, including unknown types and truncated ICMP', () => {
    for (const t of ['03', '04', '05', '0b', '0c', '30']) {
      expect(ask(ip({ proto: 1, payload: `${t}00000000000000` }))).toBe('icmp-error-about-error');
    }
    expect(ask(ip({ proto: 1, payload: '' }))).toBe('icmp-error-about-error');
  });

  it('refuses non-first fragments', () => {
    expect(ask(ip({ frag: 0x00b9 }))).toBe('icmp-error-fragment');
    expect(ask(ip({ frag: 0x2001 }))).toBe('icmp-error-fragment');
  });

  it('refuses broadcast and multicast destinations, link broadcasts, and sources that are not one host', () => {
    expect(ask(ip({ dst: '255.255.255.255' }))).toBe('icmp-error-broadcast');
    expect(ask(ip({ dst: '10.0.2.255' }))).toBe('icmp-error-broadcast');
    expect(ask(ip({ dst: '224.0.0.251' }))).toBe('icmp-error-multicast');
    expect(ask(ip({}), true)).toBe('icmp-error-link-broadcast');
    for (const src of ['0.0.0.0', '127.0.0.1', '224.0.0.1', '240.0.0.1', '255.255.255.255', '10.0.2.255']) {
      expect(ask(ip({ src }))).toBe('icmp-error-bad-source');
    }
  });

  it('calls garbage malformed instead of throwing', () => {
    expect(ask(hex('45'))).toBe('icmp-error-malformed');
    expect(ask(hex('4f00001400000000401100000a00020f0a000202'))).toBe('icmp-error-malformed');
    expect(icmpErrorSuppressed(HELLO_IP, 40, 20)).toBe('icmp-error-malformed');
  });
});
