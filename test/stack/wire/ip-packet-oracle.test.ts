/**
 * The npm package ip-packet (2.2.1, pinned devDependency) as an independent
 * oracle for the IPv4 view: its decoder reads what Ipv4View and
 * emitIpv4Header write, and Ipv4View reads what its encoder writes, on the
 * golden frames and on seeded random valid headers.
 *
 * What ip-packet covers: the IPv4 header only, without options (its decoder
 * throws on IHL > 5), encode and decode, and the header checksum as a separate
 * call. It has no IPv6, TCP, UDP or ICMP support, so those views have no
 * oracle here. It allocates per packet (strings for addresses): tests only.
 */
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { emitIpv4Header, IPV4_HEADER_LEN, Ipv4View } from '../../../stack/wire/ipv4.js';
import { formatIpv4, parseIpv4 } from '../../../stack/wire/ipv4-address.js';

interface IpPacket {
  version: number;
  ihl?: number;
  dscp: number;
  ecn: number;
  length?: number;
  identification: number;
  flags: number;
  /** In 8-byte units, as on the wire. */
  fragmentOffset: number;
  ttl: number;
  protocol: number;
  checksum: number;
  sourceIp: string;
  destinationIp: string;
  data: Buffer;
}
interface State {
  buffer: Buffer;
  start: number;
  end: number;
}
const ipPacket = createRequire(import.meta.url)('ip-packet') as {
  encode(state: State, p: IpPacket): void;
  decode(state: State): Required<IpPacket>;
  preencode(state: State, p: IpPacket): void;
  checksum(header: Buffer): number;
};

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// The golden frames of ipv4.test.ts. Captured from Linux: echo request 10.0.2.15 -> 10.0.2.2, DF, id 0x4a2e.
const ECHO = hex('4500002c4a2e40004001d8920a00020f0a000202 08005c690fa200012a05046b000000004f830e0000000000');
// `ping -R` (IHL 15, record route): beyond ip-packet.
const ECHO_RR = hex('4f00004c4a2f400040019a530a00020f0a000202' + '010727080a00020f' + '00'.repeat(32) + '0800dc4b0fa300010001020304050607');

function oracleDecode(buf: Buffer): Required<IpPacket> {
  return ipPacket.decode({ buffer: buf, start: 0, end: buf.length });
}

function oracleEncode(p: IpPacket): Buffer {
  const state = { buffer: Buffer.alloc(0), start: 0, end: 0 };
  ipPacket.preencode(state, p);
  state.buffer = Buffer.alloc(state.end);
  ipPacket.encode(state, p);
  return state.buffer;
}

/** Every field as both sides name it, from our view. */
function fromView(v: Ipv4View): Omit<Required<IpPacket>, 'data'> & { data: string } {
  return {
    version: v.version,
    ihl: v.ihl,
    dscp: v.dscp,
    ecn: v.ecn,
    length: v.totalLength,
    identification: v.identification,
    flags: v.flags,
    fragmentOffset: v.fragmentOffset / 8,
    ttl: v.ttl,
    protocol: v.protocol,
    checksum: v.checksum,
    sourceIp: formatIpv4(v.src),
    destinationIp: formatIpv4(v.dst),
    data: Buffer.from(v.payload()).toString('hex'),
  };
}

function fromOracle(p: Required<IpPacket>): ReturnType<typeof fromView> {
  return { ...p, data: p.data.toString('hex') };
}

/** Deterministic xorshift32, so a failure names a reproducible case. */
function rng(seed: number): (n: number) => number {
  let s = seed >>> 0 || 1;
  return (n) => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s % n;
  };
}

interface Fields {
  dscp: number;
  ecn: number;
  identification: number;
  flags: number;
  fragmentUnits: number;
  ttl: number;
  protocol: number;
  src: number;
  dst: number;
  data: Buffer;
}

function randomFields(r: (n: number) => number): Fields {
  const data = Buffer.alloc(r(200));
  for (let i = 0; i < data.length; i++) data[i] = r(256);
  return {
    dscp: r(64),
    ecn: r(4),
    identification: r(0x10000),
    // Reserved bit clear: DF and MF only, as a valid sender sets them.
    flags: r(4),
    fragmentUnits: r(0x2000),
    ttl: 1 + r(255),
    protocol: r(256),
    src: (r(0x10000) * 0x10000 + r(0x10000)) >>> 0,
    dst: (r(0x10000) * 0x10000 + r(0x10000)) >>> 0,
    data,
  };
}

/** Writes the fields with Ipv4View's setters (the NAT's way of building headers) and fills the checksum. */
function buildWithView(f: Fields): Buffer {
  const buf = Buffer.alloc(IPV4_HEADER_LEN + f.data.length);
  const v = new Ipv4View().wrap(buf, 0, buf.length);
  v.version = 4;
  v.ihl = 5;
  v.dscp = f.dscp;
  v.ecn = f.ecn;
  v.totalLength = buf.length;
  v.identification = f.identification;
  v.flags = f.flags;
  v.fragmentOffset = f.fragmentUnits * 8;
  v.ttl = f.ttl;
  v.protocol = f.protocol;
  v.src = f.src;
  v.dst = f.dst;
  f.data.copy(buf, IPV4_HEADER_LEN);
  v.fillChecksum();
  return buf;
}

describe('Ipv4View against ip-packet', () => {
  it('the golden echo request decodes to the same fields on both sides', () => {
    const v = new Ipv4View();
    expect(v.reset(ECHO, 0, ECHO.length)).toBe(null);
    expect(fromOracle(oracleDecode(ECHO))).toEqual(fromView(v));
    expect(oracleDecode(ECHO).sourceIp).toBe('10.0.2.15');
  });

  it("the golden frame re-encoded by ip-packet is byte for byte the capture, and our checksum is the oracle's", () => {
    const p = oracleDecode(ECHO);
    expect(oracleEncode(p).equals(ECHO)).toBe(true);
    const copy = Buffer.from(ECHO);
    copy.writeUInt16BE(0, 10);
    expect(ipPacket.checksum(copy)).toBe(0xd892);
    const v = new Ipv4View();
    v.reset(copy, 0, copy.length);
    v.fillChecksum();
    expect(copy.equals(ECHO)).toBe(true);
  });

  it('with options (IHL 15) ip-packet gives up where Ipv4View does not', () => {
    expect(() => oracleDecode(ECHO_RR)).toThrow(/IHL <= 5/);
    expect(new Ipv4View().reset(ECHO_RR, 0, ECHO_RR.length)).toBe(null);
  });

  it('random valid headers written by Ipv4View decode alike in ip-packet (2000 cases)', () => {
    const r = rng(0x19);
    for (let i = 0; i < 2000; i++) {
      const f = randomFields(r);
      const buf = buildWithView(f);
      const v = new Ipv4View();
      expect(v.reset(buf, 0, buf.length), `case ${i}`).toBe(null);
      expect(fromOracle(oracleDecode(buf)), `case ${i}`).toEqual(fromView(v));
      // The oracle's checksum over our header agrees with the one we filled.
      expect(ipPacket.checksum(Buffer.from(buf.subarray(0, IPV4_HEADER_LEN))), `case ${i}`).toBe(v.checksum);
    }
  });

  it('random headers encoded by ip-packet parse alike in Ipv4View, checksum included (2000 cases)', () => {
    const r = rng(0x2019);
    for (let i = 0; i < 2000; i++) {
      const f = randomFields(r);
      const p: IpPacket = {
        version: 4,
        dscp: f.dscp,
        ecn: f.ecn,
        identification: f.identification,
        flags: f.flags,
        fragmentOffset: f.fragmentUnits,
        ttl: f.ttl,
        protocol: f.protocol,
        checksum: 0,
        sourceIp: formatIpv4(f.src),
        destinationIp: formatIpv4(f.dst),
        data: f.data,
      };
      const buf = oracleEncode(p);
      ipPacket.checksum(buf);
      const v = new Ipv4View();
      expect(v.reset(buf, 0, buf.length), `case ${i}`).toBe(null);
      expect(v.checksumOk(), `case ${i}`).toBe(true);
      expect(fromView(v), `case ${i}`).toEqual(fromOracle(oracleDecode(buf)));
      expect(buildWithView(f).equals(buf), `case ${i}`).toBe(true);
    }
  });

  it('emitIpv4Header (the NAT and gateway header writer) matches ip-packet byte for byte', () => {
    const r = rng(7);
    for (let i = 0; i < 500; i++) {
      const f = randomFields(r);
      const df = r(2) === 1;
      const tos = (f.dscp << 2) | f.ecn;
      const ours = Buffer.alloc(IPV4_HEADER_LEN + f.data.length);
      emitIpv4Header(ours, 0, f.src, f.dst, f.protocol, f.data.length, f.ttl, f.identification, df, tos);
      f.data.copy(ours, IPV4_HEADER_LEN);
      const theirs = oracleEncode({
        version: 4, dscp: f.dscp, ecn: f.ecn, identification: f.identification, flags: df ? 2 : 0, fragmentOffset: 0,
        ttl: f.ttl, protocol: f.protocol, checksum: 0, sourceIp: formatIpv4(f.src), destinationIp: formatIpv4(f.dst), data: f.data,
      });
      ipPacket.checksum(theirs);
      expect(ours.equals(theirs), `case ${i}: ${ours.subarray(0, 20).toString('hex')} vs ${theirs.subarray(0, 20).toString('hex')}`).toBe(true);
      expect(parseIpv4(formatIpv4(f.src))).toBe(f.src);
    }
  });
});
