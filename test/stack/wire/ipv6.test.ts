import { describe, expect, it } from 'vitest';
import {
  emitIpv6Header,
  IPV6_HEADER_LEN,
  IPV6_MAX_EXT_HEADERS,
  IPV6_NH_DEST_OPTS,
  IPV6_NH_FRAGMENT,
  IPV6_NH_HOP_BY_HOP,
  IPV6_NH_ICMPV6,
  IPV6_NH_ROUTING,
  IPV6_NH_TCP,
  IPV6_NH_UDP,
  Ipv6ExtInfo,
  Ipv6View,
  walkExtensionHeaders,
} from '../../../stack/wire/ipv6.js';
import { formatIpv6, parseIpv6 } from '../../../stack/wire/ipv6-address.js';
import { ECHO_REQUEST, MLDV2_REPORT } from './ipv6-capture.fixture.js';

const A = parseIpv6('2001:db8::1')!;
const B = parseIpv6('2001:db8::2')!;

/** RFC 8200 3 layout, written out field by field. */
const GOLDEN_HEADER =
  '6' + 'b8' + '12345' + // version 6, traffic class 0xb8, flow label 0x12345
  '0008' + '11' + '40' + // payload length 8, next header UDP, hop limit 64
  '20010db8000000000000000000000001' +
  '20010db8000000000000000000000002';

function packet(nextHeader: number, exts: number[][], payloadLen = 8): Buffer {
  const extBytes = exts.flat();
  const pl = extBytes.length + payloadLen;
  const b = Buffer.alloc(IPV6_HEADER_LEN + pl);
  emitIpv6Header(b, 0, A, 0, B, 0, nextHeader, pl, 64);
  Buffer.from(extBytes).copy(b, IPV6_HEADER_LEN);
  return b;
}

describe('Ipv6View', () => {
  it('reads every field of a golden header', () => {
    const b = Buffer.from(GOLDEN_HEADER + '0000000000000000', 'hex');
    const v = new Ipv6View();
    expect(v.reset(b, 0, b.length)).toBeNull();
    expect(v.version).toBe(6);
    expect(v.trafficClass).toBe(0xb8);
    expect(v.flowLabel).toBe(0x12345);
    expect(v.payloadLength).toBe(8);
    expect(v.nextHeader).toBe(IPV6_NH_UDP);
    expect(v.hopLimit).toBe(64);
    expect(formatIpv6(b, v.srcOffset)).toBe('2001:db8::1');
    expect(formatIpv6(b, v.dstOffset)).toBe('2001:db8::2');
    expect(v.payloadOffset).toBe(40);
    expect(v.packetLength).toBe(48);
  });

  it('setters write the golden bytes', () => {
    const b = Buffer.alloc(48);
    emitIpv6Header(b, 0, A, 0, B, 0, IPV6_NH_UDP, 8, 64, 0xb8);
    const v = new Ipv6View().wrap(b, 0, 48);
    v.flowLabel = 0x12345;
    expect(b.subarray(0, 40).toString('hex')).toBe(GOLDEN_HEADER);
    v.trafficClass = 0;
    v.flowLabel = 0;
    v.hopLimit = 1;
    v.nextHeader = 6;
    v.payloadLength = 0x1234;
    expect(b.subarray(0, 8).toString('hex')).toBe('6000000012340601');
  });

  it('emits the header of a captured packet byte for byte (flow label aside)', () => {
    const ip = ECHO_REQUEST.subarray(14);
    const b = Buffer.alloc(40);
    emitIpv6Header(b, 0, ip, 8, ip, 24, IPV6_NH_ICMPV6, 24, 64);
    new Ipv6View().wrap(b, 0, 40).flowLabel = 0x67c4e;
    expect(b.toString('hex')).toBe(ip.subarray(0, 40).toString('hex'));
  });

  it('rejects truncated, wrong-version and overlong packets; tolerates link padding', () => {
    const v = new Ipv6View();
    const ok = packet(IPV6_NH_UDP, []);
    expect(v.reset(ok, 0, 39)).toBe('ipv6-truncated');
    expect(v.reset(ok, 10, ok.length)).toBe('ipv6-truncated');
    expect(v.reset(ok, -1, 40)).toBe('ipv6-truncated');
    const v4 = Buffer.from(ok);
    v4[0] = 0x45;
    expect(v.reset(v4, 0, v4.length)).toBe('ipv6-bad-version');
    const long = Buffer.from(ok);
    long[5] = 9;
    expect(v.reset(long, 0, long.length)).toBe('ipv6-bad-payload-length');
    const padded = Buffer.concat([ok, Buffer.alloc(10)]);
    expect(v.reset(padded, 0, padded.length)).toBeNull();
    expect(v.packetLength).toBe(48);
  });
});

describe('walkExtensionHeaders', () => {
  const v = new Ipv6View();
  const info = new Ipv6ExtInfo();
  const walk = (b: Buffer) => {
    const r = v.reset(b, 0, b.length);
    if (r !== null) return r;
    return walkExtensionHeaders(v, info);
  };

  it('finds the upper layer with no extension headers', () => {
    expect(walk(packet(IPV6_NH_TCP, []))).toBeNull();
    expect(info).toMatchObject({ protocol: IPV6_NH_TCP, offset: 40, length: 8, count: 0, hasFragment: false, nextHeaderFieldOffset: 6 });
  });

  it('walks hop-by-hop, destination options, routing and fragment headers', () => {
    const hbh = [IPV6_NH_DEST_OPTS, 0, 5, 2, 0, 0, 1, 0]; // router alert + Pad2... 8 bytes
    const dst = [IPV6_NH_ROUTING, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]; // 16 bytes (len 1)
    const rt = [IPV6_NH_FRAGMENT, 0, 4, 0, 0, 0, 0, 0]; // routing type 4 (SRH-like), 8 bytes, segments left 0
    // Fragment: offset 185*8 = 1480, M=1, id 0xdeadbeef.
    const frag = [IPV6_NH_UDP, 0, (1480 >> 8) & 0xff, (1480 & 0xf8) | 1, 0xde, 0xad, 0xbe, 0xef];
    const b = packet(IPV6_NH_HOP_BY_HOP, [hbh, dst, rt, frag]);
    expect(walk(b)).toBeNull();
    expect(info.protocol).toBe(IPV6_NH_UDP);
    expect(info.offset).toBe(40 + 8 + 16 + 8 + 8);
    expect(info.length).toBe(8);
    expect(info.count).toBe(4);
    expect(info.hasFragment).toBe(true);
    expect(info.fragmentOffset).toBe(1480);
    expect(info.moreFragments).toBe(true);
    expect(info.fragmentId).toBe(0xdeadbeef);
    expect(info.nextHeaderFieldOffset).toBe(40 + 32);
  });

  it('walks the hop-by-hop header of a captured MLDv2 report', () => {
    const b = Buffer.from(MLDV2_REPORT.subarray(14));
    expect(walk(b)).toBeNull();
    expect(info.protocol).toBe(IPV6_NH_ICMPV6);
    expect(info.offset).toBe(48);
    expect(b[info.offset]).toBe(143);
  });

  it('refuses a hop-by-hop header that is not first', () => {
    const b = packet(IPV6_NH_DEST_OPTS, [[IPV6_NH_HOP_BY_HOP, 0, 1, 4, 0, 0, 0, 0], [IPV6_NH_UDP, 0, 1, 4, 0, 0, 0, 0]]);
    expect(walk(b)).toBe('ipv6-hbh-not-first');
  });

  it('stops after the bound on headers', () => {
    const many: number[][] = [];
    for (let i = 0; i < IPV6_MAX_EXT_HEADERS + 1; i++) many.push([i === IPV6_MAX_EXT_HEADERS ? IPV6_NH_UDP : IPV6_NH_DEST_OPTS, 0, 1, 4, 0, 0, 0, 0]);
    expect(walk(packet(IPV6_NH_DEST_OPTS, many))).toBe('ipv6-ext-too-many');
    expect(walk(packet(IPV6_NH_DEST_OPTS, many.slice(0, IPV6_MAX_EXT_HEADERS).map((h, i, all) => (i === all.length - 1 ? [IPV6_NH_UDP, ...h.slice(1)] : h))))).toBeNull();
    expect(info.count).toBe(IPV6_MAX_EXT_HEADERS);
  });

  it('never reads past the packet, whatever the length bytes say', () => {
    // Length 255 -> 2048 bytes claimed in a 16-byte payload.
    expect(walk(packet(IPV6_NH_DEST_OPTS, [[IPV6_NH_UDP, 255, 0, 0, 0, 0, 0, 0]], 8))).toBe('ipv6-ext-truncated');
    // Header cut short: fewer than 8 bytes left.
    expect(walk(packet(IPV6_NH_ROUTING, [], 4))).toBe('ipv6-ext-truncated');
    expect(walk(packet(IPV6_NH_FRAGMENT, [], 7))).toBe('ipv6-ext-truncated');
    expect(walk(packet(IPV6_NH_HOP_BY_HOP, [], 0))).toBe('ipv6-ext-truncated');
    // Header ending exactly at the packet end is fine (upper layer empty).
    expect(walk(packet(IPV6_NH_DEST_OPTS, [[59, 0, 1, 4, 0, 0, 0, 0]], 0))).toBeNull();
    expect(info).toMatchObject({ protocol: 59, length: 0 });
    // Bytes beyond the payload length (link padding) are not walked.
    const b = packet(IPV6_NH_DEST_OPTS, [], 0);
    const padded = Buffer.concat([b, Buffer.from([IPV6_NH_UDP, 0, 1, 4, 0, 0, 0, 0])]);
    expect(walk(padded)).toBe('ipv6-ext-truncated');
  });

  it('refuses two fragment headers', () => {
    const f1 = [IPV6_NH_FRAGMENT, 0, 0, 1, 0, 0, 0, 1];
    const f2 = [IPV6_NH_UDP, 0, 0, 0, 0, 0, 0, 1];
    expect(walk(packet(IPV6_NH_FRAGMENT, [f1, f2]))).toBe('ipv6-ext-two-fragments');
  });

  it('survives every hostile length byte', () => {
    const b = packet(IPV6_NH_HOP_BY_HOP, [[IPV6_NH_DEST_OPTS, 0, 0, 0, 0, 0, 0, 0], [IPV6_NH_ROUTING, 0, 0, 0, 0, 0, 0, 0], [IPV6_NH_UDP, 0, 0, 0, 0, 0, 0, 0]], 16);
    for (let pos = 40; pos < b.length; pos++) {
      for (const val of [0, 1, 2, 0x7f, 0xff, IPV6_NH_HOP_BY_HOP, IPV6_NH_FRAGMENT, IPV6_NH_DEST_OPTS]) {
        const m = Buffer.from(b);
        m[pos] = val;
        const r = walk(m);
        if (r === null) {
          expect(info.offset + info.length).toBe(m.length);
          expect(info.offset).toBeLessThanOrEqual(m.length);
        } else {
          expect(typeof r).toBe('string');
        }
      }
    }
  });
});
