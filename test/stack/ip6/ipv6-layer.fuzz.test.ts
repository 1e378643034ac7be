import { describe, expect, it } from 'vitest';
import { PortCounters, type Frame, type FrameSink, type Port } from '../../../stack/frame.js';
import { GuestOutput } from '../../../stack/guest-output.js';
import { Ipv6Layer } from '../../../stack/ip6/ipv6-layer.js';
import { emitEthernetHeader, ETHERTYPE_IPV6 } from '../../../stack/wire/ethernet.js';
import { fillIcmpv6Checksum, ICMPV6_ECHO_REQUEST } from '../../../stack/wire/icmpv6.js';
import { emitIpv6Header, IPV6_NH_DEST_OPTS, IPV6_NH_ICMPV6, IPV6_NH_TCP, Ipv6View } from '../../../stack/wire/ipv6.js';
import { parseIpv6, solicitedNodeAddress, solicitedNodeMac } from '../../../stack/wire/ipv6-address.js';
import { parseMac } from '../../../stack/wire/mac.js';
import { emitLinkLayerOption, emitNeighborSolicitation, emitRouterSolicitation, NDP_OPT_SOURCE_LLA } from '../../../stack/wire/ndp.js';
import { DAD_NS, ECHO_REQUEST, MLDV2_REPORT, NA_SOLICITED, NS_GLOBAL, RS_BARE, RS_WITH_SLLA } from '../wire/ipv6-capture.fixture.js';

const GW_MAC = parseMac('52:55:0a:00:02:02');
const GUEST_MAC = parseMac('02:00:00:00:00:0a');
const GUEST = parseIpv6('fd00::a')!;
const GW = parseIpv6('fd00::2')!;

function icmp(dstMac: number, src: Uint8Array, dst: Uint8Array, body: (b: Buffer, o: number) => number, hop = 255): Buffer {
  const b = Buffer.alloc(200);
  emitEthernetHeader(b, 0, dstMac, GUEST_MAC, ETHERTYPE_IPV6);
  const len = body(b, 54);
  emitIpv6Header(b, 14, src, 0, dst, 0, IPV6_NH_ICMPV6, len, hop);
  fillIcmpv6Checksum(b, 54, len, b, 22, 38);
  return b.subarray(0, 54 + len);
}

/** Frames that reach deep into the router: the fuzzer mutates these. */
function seeds(): Buffer[] {
  const withDst = (f: Buffer, mac: number) => {
    const c = Buffer.from(f);
    emitEthernetHeader(c, 0, mac, c.readUIntBE(6, 6), ETHERTYPE_IPV6);
    return c;
  };
  const tcp = Buffer.alloc(54 + 20 + 16);
  emitEthernetHeader(tcp, 0, GW_MAC, GUEST_MAC, ETHERTYPE_IPV6);
  emitIpv6Header(tcp, 14, GUEST, 0, GW, 0, IPV6_NH_DEST_OPTS, 36, 64);
  tcp[54] = IPV6_NH_TCP;
  tcp[55] = 1;
  return [
    icmp(solicitedNodeMac(GW), GUEST, solicitedNodeAddress(GW), (b, o) => {
      const n = emitNeighborSolicitation(b, o, GW, 0);
      return n + emitLinkLayerOption(b, o + n, NDP_OPT_SOURCE_LLA, GUEST_MAC);
    }),
    icmp(solicitedNodeMac(GW), parseIpv6('::')!, solicitedNodeAddress(GW), (b, o) => emitNeighborSolicitation(b, o, GW, 0)),
    icmp(0x3333_0000_0002, parseIpv6('fe80::ff:fe00:a')!, parseIpv6('ff02::2')!, (b, o) => {
      const n = emitRouterSolicitation(b, o);
      return n + emitLinkLayerOption(b, o + n, NDP_OPT_SOURCE_LLA, GUEST_MAC);
    }),
    icmp(GW_MAC, GUEST, GW, (b, o) => {
      b[o] = ICMPV6_ECHO_REQUEST;
      b[o + 1] = 0;
      b.writeUInt32BE(0x00010002, o + 4);
      return 40;
    }, 64),
    tcp,
    withDst(ECHO_REQUEST, GW_MAC),
    withDst(NA_SOLICITED, GW_MAC),
    Buffer.from(RS_WITH_SLLA),
    Buffer.from(RS_BARE),
    Buffer.from(MLDV2_REPORT),
    Buffer.from(NS_GLOBAL),
    Buffer.from(DAD_NS),
  ];
}

class CountingSink implements FrameSink {
  frames = 0;
  private readonly ip = new Ipv6View();
  input(_from: Port, frame: Frame): void {
    this.frames++;
    // Whatever the input, what we emit must be a sound IPv6 packet inside the frame.
    expect(this.ip.reset(frame.buf, frame.off + 14, frame.len - 14)).toBeNull();
    expect(this.ip.packetLength).toBe(frame.len - 14);
    expect(frame.off + frame.len).toBeLessThanOrEqual(frame.buf.length);
  }
}

describe('Ipv6Layer fuzz', () => {
  it('never throws on mutated frames, and every frame is accounted for', () => {
    const sink = new CountingSink();
    const port: Port = { id: 0, name: 'gateway', vnet: true, counters: new PortCounters(), deliver() {}, flush() {} };
    const router = new Ipv6Layer({ mac: GW_MAC, mtu: 1500, neighborTableSize: 64 }, new GuestOutput(sink, port, GW_MAC, () => undefined, 1));
    let seed = 0x2545f491;
    const rnd = (n: number) => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const base = seeds();
    const verdicts: Record<string, number> = {};
    const N = 30_000;
    const vnetBuf = Buffer.alloc(10 + 300);
    for (let i = 0; i < N; i++) {
      const s = base[rnd(base.length)];
      let m = Buffer.from(s);
      const kind = rnd(6);
      const flips = 1 + rnd(4);
      for (let k = 0; k < flips; k++) {
        // Bias toward header and length bytes where the interesting checks live.
        const pos = kind < 3 ? 14 + rnd(Math.min(60, m.length - 14)) : rnd(m.length);
        m[pos] = kind === 1 ? m[pos] ^ (1 << rnd(8)) : rnd(256);
      }
      if (kind === 4) m = m.subarray(0, rnd(m.length + 1));
      if (kind === 5) m = Buffer.concat([m, Buffer.alloc(rnd(40), rnd(256))]);
      let frame: Frame = { buf: m, off: 0, len: m.length, vnet: false };
      if (rnd(8) === 0 && m.length <= 300) {
        // With a random virtio-net header in front.
        for (let k = 0; k < 10; k++) vnetBuf[k] = rnd(256);
        m.copy(vnetBuf, 10);
        frame = { buf: vnetBuf, off: 10, len: m.length, vnet: true };
      }
      let v: string;
      try {
        v = router.handleFrame(frame, i * 10);
      } catch (e) {
        throw new Error(`threw on ${m.toString('hex')}: ${String(e)}`, { cause: e });
      }
      expect(typeof v).toBe('string');
      verdicts[v] = (verdicts[v] ?? 0) + 1;
      if (rnd(100) === 0) router.poll(i * 10);
    }
    const total = Object.values(verdicts).reduce((a, b) => a + b, 0);
    expect(total).toBe(N);
    const dropped = Object.values(router.drops).reduce((a, b) => a + b, 0);
    expect(dropped + (verdicts.consumed ?? 0) + (verdicts['to-nat'] ?? 0)).toBe(N);
    // The counters moved in many directions: parsers rejected things at every layer.
    for (const reason of ['eth-truncated', 'ipv6-truncated', 'ipv6-bad-version', 'icmpv6-bad-checksum', 'not-for-us'] as const) {
      expect(router.drops[reason], reason).toBeGreaterThan(0);
    }
    expect(verdicts.consumed).toBeGreaterThan(0);
    expect(sink.frames).toBeGreaterThan(0);
    expect(router.stats().neighbors).toBeLessThanOrEqual(64);
  });
});
