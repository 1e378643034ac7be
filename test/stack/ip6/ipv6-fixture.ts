/**
 * An IPv6 layer on fd00::/64 whose frames go to a capturing sink, and
 * builders and parsers of the frames the IPv6 unit tests exchange with it
 * (ipv6-layer, ndp, router-adverts).
 */
import { expect } from 'vitest';
import { PortCounters, type Frame, type FrameSink, type Port } from '../../../stack/frame.js';
import { GuestOutput } from '../../../stack/guest-output.js';
import { Ipv6Layer, type Ipv6LayerOptions } from '../../../stack/ip6/ipv6-layer.js';
import { emitEthernetHeader, ETHERTYPE_IPV6 } from '../../../stack/wire/ethernet.js';
import { fillIcmpv6Checksum, ICMPV6_ROUTER_ADVERTISEMENT, Icmpv6View } from '../../../stack/wire/icmpv6.js';
import { emitIpv6Header, IPV6_NH_ICMPV6, Ipv6View } from '../../../stack/wire/ipv6.js';
import { formatIpv6, parseIpv6, solicitedNodeAddress, solicitedNodeMac } from '../../../stack/wire/ipv6-address.js';
import { formatMac, parseMac } from '../../../stack/wire/mac.js';
import {
  emitLinkLayerOption,
  emitNeighborSolicitation,
  NDP_OPT_MTU,
  NDP_OPT_PREFIX_INFO,
  NDP_OPT_RDNSS,
  NDP_OPT_SOURCE_LLA,
  NDP_OPT_TARGET_LLA,
  NdpMessageView,
  NdpOptionWalker,
} from '../../../stack/wire/ndp.js';

export const GW_MAC = parseMac('52:55:0a:00:02:02');
export const GUEST_MAC = parseMac('02:00:00:00:00:0a');
export const GUEST = parseIpv6('fd00::a')!;
export const GUEST_LL = parseIpv6('fe80::ff:fe00:a')!;
export const GW = parseIpv6('fd00::2')!;
export const DNS = parseIpv6('fd00::3')!;
export const GW_LL = parseIpv6('fe80::5055:aff:fe00:202')!;
export const ALL_NODES = parseIpv6('ff02::1')!;
export const ALL_ROUTERS = parseIpv6('ff02::2')!;
export const UNSPEC = parseIpv6('::')!;

/** Copies every frame the layer sends, and checks it leaves from the gateway port. */
export class Capture implements FrameSink {
  frames: Buffer[] = [];
  input(from: Port, frame: Frame): void {
    expect(from.name).toBe('gateway');
    this.frames.push(Buffer.from(frame.buf.subarray(frame.off, frame.off + frame.len)));
  }
}

export function setup(opts: Partial<Ipv6LayerOptions> = {}) {
  const sink = new Capture();
  const port: Port = { id: 0, name: 'gateway', vnet: true, counters: new PortCounters(), deliver() {}, flush() {} };
  const router = new Ipv6Layer({ mac: GW_MAC, mtu: 1500, random: () => 0.5, ...opts }, new GuestOutput(sink, port, GW_MAC, () => undefined));
  return { router, sink, port };
}

/** Builds an Ethernet + IPv6 + ICMPv6 frame with a valid checksum. */
export function icmpFrame(
  dstMac: number,
  src: Uint8Array,
  dst: Uint8Array,
  body: (b: Buffer, off: number) => number,
  hopLimit = 255,
  srcMac = GUEST_MAC,
): Frame {
  const b = Buffer.alloc(1600);
  emitEthernetHeader(b, 0, dstMac, srcMac, ETHERTYPE_IPV6);
  const len = body(b, 54);
  emitIpv6Header(b, 14, src, 0, dst, 0, IPV6_NH_ICMPV6, len, hopLimit);
  fillIcmpv6Checksum(b, 54, len, b, 22, 38);
  return { buf: b, off: 0, len: 54 + len, vnet: false };
}

/** A frame from the guest carrying `payload` bytes of protocol `proto`. */
export function l4Frame(dst: Uint8Array, proto: number, payload = 20, dstMac = GW_MAC): Frame {
  const b = Buffer.alloc(54 + payload);
  emitEthernetHeader(b, 0, dstMac, GUEST_MAC, ETHERTYPE_IPV6);
  emitIpv6Header(b, 14, GUEST, 0, dst, 0, proto, payload, 64);
  return { buf: b, off: 0, len: b.length, vnet: false };
}

/** A neighbour solicitation for `target` to its solicited-node group, with a source link-layer option unless `slla` is null. */
export function ns(target: Uint8Array, src: Uint8Array, slla: number | null): Frame {
  const dst = solicitedNodeAddress(target);
  return icmpFrame(solicitedNodeMac(target), src, dst, (b, o) => {
    let n = emitNeighborSolicitation(b, o, target, 0);
    if (slla !== null) n += emitLinkLayerOption(b, o + n, NDP_OPT_SOURCE_LLA, slla);
    return n;
  });
}

export interface Parsed {
  dstMac: string;
  srcMac: string;
  src: string;
  dst: string;
  hopLimit: number;
  type: number;
  checksumOk: boolean;
  frame: Buffer;
  ip: Ipv6View;
}

/** Checks that a sent frame is Ethernet + IPv6 + ICMPv6 and returns its fields. */
export function parse(f: Buffer): Parsed {
  const ip = new Ipv6View();
  expect(ip.reset(f, 14, f.length - 14)).toBeNull();
  expect(f.readUInt16BE(12)).toBe(ETHERTYPE_IPV6);
  expect(ip.nextHeader).toBe(IPV6_NH_ICMPV6);
  expect(ip.packetLength).toBe(f.length - 14);
  const icmp = new Icmpv6View();
  expect(icmp.reset(f, 54, ip.payloadLength)).toBeNull();
  return {
    dstMac: formatMac(f.readUIntBE(0, 6)),
    srcMac: formatMac(f.readUIntBE(6, 6)),
    src: formatIpv6(f, 22),
    dst: formatIpv6(f, 38),
    hopLimit: ip.hopLimit,
    type: icmp.type,
    checksumOk: icmp.checksumOk(f, 22, 38),
    frame: f,
    ip,
  };
}

/** The flags, target and link-layer option (source or target, by `llaType`) of a sent NS or NA. */
export function ndpOf(f: Buffer, llaType = NDP_OPT_TARGET_LLA) {
  const v = new NdpMessageView();
  expect(v.reset(f, 54, f.length - 54)).toBeNull();
  const w = new NdpOptionWalker().reset(f, v.optionsOffset, v.optionsLength);
  let lla = -1;
  while (w.next()) if (w.type === llaType) lla = w.linkLayerAddress;
  expect(w.error).toBeNull();
  return { flags: v.flags, target: formatIpv6(f, v.targetOffset), lla: lla === -1 ? null : formatMac(lla) };
}

/** The fields and options of a sent RA. */
export function raInfo(f: Buffer) {
  const v = new NdpMessageView();
  expect(v.reset(f, 54, f.length - 54)).toBeNull();
  expect(v.type).toBe(ICMPV6_ROUTER_ADVERTISEMENT);
  const w = new NdpOptionWalker().reset(f, v.optionsOffset, v.optionsLength);
  const r: Record<string, unknown> = { curHopLimit: v.curHopLimit, flags: v.flags, routerLifetime: v.routerLifetime, reachable: v.reachableTime, retrans: v.retransTimer };
  while (w.next()) {
    if (w.type === NDP_OPT_SOURCE_LLA) r.slla = formatMac(w.linkLayerAddress);
    if (w.type === NDP_OPT_MTU) r.mtu = w.mtu;
    if (w.type === NDP_OPT_PREFIX_INFO) r.prefix = { prefix: `${formatIpv6(f, w.prefixOffset)}/${w.prefixLength}`, flags: w.prefixFlags, valid: w.validLifetime, preferred: w.preferredLifetime };
    if (w.type === NDP_OPT_RDNSS) r.rdnss = { lifetime: w.rdnssLifetime, servers: Array.from({ length: w.rdnssCount }, (_, i) => formatIpv6(f, w.rdnssAddressOffset + 16 * i)) };
  }
  expect(w.error).toBeNull();
  return r;
}
