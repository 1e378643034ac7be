/**
 * The gateway's IPv4 layer: the checks every IPv4 datagram passes, fragment
 * reassembly, echo to the gateway's own addresses, and the hand-over of the
 * rest as an IpPacket to the handler plugged in for its protocol (the NAT).
 * ARP for the same addresses is `arp` (stack/ip4/arp.ts). Sans-IO.
 *
 * How it works
 * - The gateway parsed Ethernet and the virtio-net header once (LinkInput).
 *   NEEDS_CSUM means the L4 checksum field holds only the pseudo-header sum,
 *   and DATA_VALID means the kernel already checked it: either way the L4
 *   checksum is not verified. A GSO super-frame is offered to the handler of
 *   its protocol and is otherwise counted as 'unhandled-gso'.
 * - The IPv4 header checksum is verified before any dispatch (no offload
 *   covers it), so handlers see only sound headers, never fragments:
 *   fragments go to the reassembler first, and only a whole datagram reaches
 *   a handler ('unhandled-fragment' when no reassembler is plugged in). A
 *   reassembled datagram is rebuilt (header of its last fragment + payload)
 *   in a buffer of its own and handed on like any other.
 * - Broadcast and multicast echo requests are dropped ('icmp-echo-broadcast'),
 *   as Linux does by default (icmp_echo_ignore_broadcasts; RFC 1122 3.2.2.6
 *   allows it): answering them only serves smurf-style amplification.
 * - Before a handler sees a packet from the subnet, its source MAC is learned
 *   into `neighbors` (answers not triggered by a frame in hand need it).
 * - `input` returns null or the drop reason the gateway counts; reasons for
 *   traffic nobody takes are also counted in the gateway's `unhandled` set.
 *   Nothing throws on input; nothing allocates per packet (views, the packet
 *   and the reassembly buffer are fields; echo data is copied byte by byte).
 */
import { newDropCounters, type DropCounters } from '../counters.js';
import type { DropReason } from '../drop-reasons.js';
import type { Frame } from '../frame.js';
import { IpAddresses } from '../ip/ip-addresses.js';
import { IpPacket, type IpHandler } from '../ip/ip-packet.js';
import type { Neighbors } from '../ip/neighbors.js';
import { MAX_REASSEMBLED_PAYLOAD, type IpReassembler } from '../ip/reassembly.js';
import type { LinkInput, LinkTx } from '../link.js';
import { emitEthernetHeader, ETH_HEADER_LEN, ETHERTYPE_IPV4 } from '../wire/ethernet.js';
import { ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, Icmpv4View } from '../wire/icmpv4.js';
import { isMulticastIpv4, prefixToMask, subnetBroadcast, subnetHost } from '../wire/ipv4-address.js';
import { emitIpv4Header, IPV4_HEADER_LEN, IPV4_MAX_HEADER_LEN, IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP, Ipv4View } from '../wire/ipv4.js';
import { VIRTIO_NET_HDR_GSO_NONE } from '../wire/vnet.js';
import { Arp } from './arp.js';

/** Where the source MAC sits in an Ethernet header. */
const ETH_SRC_OFFSET = 6;
/**
 * A guest that keeps sending from one address and MAC is learned again at
 * most this often (Neighbors entries never age; this only bounds how late a
 * re-learn comes after the entry was pushed out by a full table).
 */
const LEARN_REFRESH_MS = 1_000;

/** TTL of datagrams the gateway originates (Linux's default). */
export const GATEWAY_TTL = 64;

export interface Ipv4LayerOptions {
  /** Network address (host bits zero) as a u32. */
  network: number;
  /** Prefix length, at most 29 so that the gateway and DNS addresses are hosts. */
  prefix: number;
  /** The gateway's MAC (48-bit number, unicast). */
  mac: number;
  /** Largest IPv4 datagram the gateway sends. */
  mtu: number;
  /** The address table the packets' handles come from (shared with the NAT); a small private one by default. */
  addrs?: IpAddresses;
}

function unhandledReason(protocol: number): DropReason {
  switch (protocol) {
    case IP_PROTO_TCP:
      return 'unhandled-tcp';
    case IP_PROTO_UDP:
      return 'unhandled-udp';
    case IP_PROTO_ICMP:
      return 'unhandled-icmp';
    default:
      return 'unhandled-ip-proto';
  }
}

export class Ipv4Layer {
  readonly network: number;
  readonly prefix: number;
  readonly mask: number;
  readonly broadcast: number;
  /** network+2. */
  readonly address: number;
  /** network+3. */
  readonly dnsAddress: number;
  readonly mtu: number;
  readonly mac: number;
  readonly arp: Arp;
  /** Guest MACs learned from the packets handed on; null: learn nothing. */
  neighbors: Neighbors | null = null;
  echoReplies = 0;

  private ipIdent = 0;
  /** The last handed-on frame's source MAC, in halves (int32) and whole, and whom it was last learned for (handOn). */
  private lastMacHi = -1;
  private lastMacLo = 0;
  private lastMac = 0;
  private learnedIp = -1;
  private learnedAt = 0;
  private readonly ip = new Ipv4View();
  private readonly ipTx = new Ipv4View();
  private readonly icmp = new Icmpv4View();
  private readonly icmpTx = new Icmpv4View();
  private readonly pkt: IpPacket;
  private readonly handlers: (IpHandler | null)[] = new Array<IpHandler | null>(256).fill(null);
  private reassembler: IpReassembler | null = null;
  /** A reassembled datagram is rebuilt here (header of its last fragment + payload) and handed on like any other. */
  private readonly reassembled = Buffer.alloc(IPV4_MAX_HEADER_LEN + MAX_REASSEMBLED_PAYLOAD);
  private readonly reassembledFrame: Frame = { buf: this.reassembled, off: 0, len: 0, vnet: false };

  constructor(
    opts: Ipv4LayerOptions,
    private readonly tx: LinkTx,
    /** Traffic nobody takes, by reason (the gateway's `unhandled` set). */
    private readonly unhandled: DropCounters = newDropCounters(),
  ) {
    const { network, prefix, mtu } = opts;
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > 29) {
      throw new RangeError(`gateway prefix must be 0..29 so that network+2 and network+3 are hosts, got ${prefix}`);
    }
    const mask = prefixToMask(prefix);
    if (!Number.isInteger(network) || network < 0 || network > 0xffff_ffff || ((network & mask) >>> 0) !== network) {
      throw new RangeError(`gateway network must be a u32 network address with host bits clear, got ${network}`);
    }
    if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) {
      throw new RangeError(`gateway MTU must be 68..65535, got ${mtu}`);
    }
    this.network = network;
    this.prefix = prefix;
    this.mask = mask;
    this.broadcast = subnetBroadcast(network, mask);
    this.address = subnetHost(network, 2);
    this.dnsAddress = subnetHost(network, 3);
    this.mtu = mtu;
    this.mac = opts.mac;
    this.pkt = new IpPacket(opts.addrs ?? new IpAddresses(1));
    this.arp = new Arp(opts.mac, this, tx);
  }

  /** Plugs (or with null, unplugs) the handler for one IP protocol number. */
  setHandler(protocol: number, handler: IpHandler | null): void {
    if (!Number.isInteger(protocol) || protocol < 0 || protocol > 255) {
      throw new RangeError(`IP protocol must be 0..255, got ${protocol}`);
    }
    this.handlers[protocol] = handler;
  }

  /** Fragments addressed to the gateway go through this reassembler (the owner polls it); without one they are dropped. */
  setReassembler(r: IpReassembler | null): void {
    this.reassembler = r;
  }

  /** The gateway or the DNS address. */
  isLocalAddress(ip: number): boolean {
    return ip === this.address || ip === this.dnsAddress;
  }

  inSubnet(ip: number): boolean {
    return ((ip & this.mask) >>> 0) === this.network;
  }

  private unhandle(reason: DropReason): DropReason {
    this.unhandled.add(reason);
    return reason;
  }

  /** One IPv4 frame (Ethernet and virtio-net header already parsed in `link`). */
  input(link: LinkInput, now: number): DropReason | null {
    const eth = link.eth;
    const ip = this.ip;
    const bad = ip.reset(link.frame.buf, eth.payloadOffset, eth.payloadLength);
    if (bad !== null) return bad;
    if (!ip.checksumOk()) return 'ipv4-bad-checksum';

    const src = ip.src;
    // RFC 1122 3.2.1.3: a broadcast or multicast source is never valid.
    if (src === 0xffff_ffff || src === this.broadcast || isMulticastIpv4(src)) return 'ipv4-bad-src';
    const dst = ip.dst;
    const toBroadcast = dst === 0xffff_ffff || dst === this.broadcast || isMulticastIpv4(dst);
    // RFC 1122 3.3.6: unicast IP inside a link-layer broadcast is discarded.
    if (eth.dstIsMulticast && !toBroadcast) return 'ipv4-unicast-in-l2-multicast';

    const p = this.pkt;
    p.frame = link.frame;
    p.l4ChecksumPartial = link.l4ChecksumPartial;
    p.l4ChecksumValid = link.l4ChecksumValid;
    const gsoType = link.gsoType;
    if (ip.isFragment) {
      if (this.reassembler === null) return this.unhandle('unhandled-fragment');
      if (gsoType !== VIRTIO_NET_HDR_GSO_NONE) return 'fragment-gso';
      const r = this.reassemble(now);
      if (r !== 'complete') return r;
    }

    const protocol = ip.protocol;
    const handler = this.handlers[protocol];
    if (gsoType !== VIRTIO_NET_HDR_GSO_NONE) {
      // Super-frames are TCP/UDP segments for the NAT; nothing built in takes them.
      if (handler === null) return this.unhandle('unhandled-gso');
      return this.handOn(link, handler, toBroadcast, now);
    }

    if (protocol === IP_PROTO_ICMP) {
      const icmp = this.icmp;
      const r = icmp.reset(p.frame.buf, ip.payloadOffset, ip.payloadLength);
      if (r !== null) return r;
      if (icmp.type === ICMP_ECHO_REQUEST) {
        if (this.isLocalAddress(dst)) return this.replyEcho(link, now);
        if (toBroadcast) return 'icmp-echo-broadcast';
      }
    }

    if (handler === null) return this.unhandle(unhandledReason(protocol));
    return this.handOn(link, handler, toBroadcast, now);
  }

  /** Fills the IpPacket from the (possibly rebuilt) datagram in `ip` and hands it to `handler`. */
  private handOn(link: LinkInput, handler: IpHandler, toBroadcast: boolean, now: number): DropReason | null {
    const ip = this.ip;
    const src = ip.src;
    // The source MAC as a 48-bit number, re-read only when its bytes change:
    // a double returned by a getter that is not inlined, or passed to `learn`,
    // is a heap allocation, and this runs for every frame.
    const eth = link.eth;
    const b = eth.buf;
    const o = eth.off + ETH_SRC_OFFSET;
    const macHi = (b[o] << 8) | b[o + 1];
    const macLo = (b[o + 2] << 24) | (b[o + 3] << 16) | (b[o + 4] << 8) | b[o + 5];
    if (macHi !== this.lastMacHi || macLo !== this.lastMacLo) {
      this.lastMacHi = macHi;
      this.lastMacLo = macLo;
      this.lastMac = eth.src;
      this.learnedIp = -1;
    }
    const n = this.neighbors;
    // The same guest as the last frame learned within LEARN_REFRESH_MS: already known.
    if (n !== null && src !== 0 && (src !== this.learnedIp || now - this.learnedAt >= LEARN_REFRESH_MS) && this.inSubnet(src)) {
      n.learn(src, this.lastMac, now);
      this.learnedIp = src;
      this.learnedAt = now;
    }
    const p = this.pkt;
    p.srcMac = this.lastMac;
    p.v6 = false;
    p.src = src;
    p.dst = ip.dst;
    p.protocol = ip.protocol;
    p.ipOff = ip.off;
    p.ipLen = ip.totalLength;
    p.l4Off = ip.payloadOffset;
    p.l4Len = ip.payloadLength;
    p.gsoType = link.gsoType;
    p.gsoSize = link.gsoSize;
    p.toGateway = this.isLocalAddress(p.dst);
    p.toBroadcast = toBroadcast;
    return handler.handleIp(p, now);
  }

  /**
   * Feeds the fragment in `ip` to the reassembler. When it completes a
   * datagram, `ip` and the packet's frame are moved onto a rebuilt,
   * unfragmented copy: 'complete'. Otherwise null (waiting, or dropped and
   * counted by the reassembler) or a drop reason.
   */
  private reassemble(now: number): DropReason | 'complete' | null {
    const ip = this.ip;
    const p = this.pkt;
    const d = this.reassembler!.input(ip.src, ip.dst, ip.protocol, ip.identification, ip.fragmentOffset, ip.moreFragments, p.frame.buf, ip.payloadOffset, ip.payloadLength, now);
    if (d === null) return null;
    const hl = ip.headerLength;
    const total = hl + d.len;
    if (total > 0xffff) return 'fragment-too-big';
    const out = this.reassembled;
    out.set(ip.buf.subarray(ip.off, ip.off + hl), 0);
    out.set(d.buf.subarray(d.off, d.off + d.len), hl);
    const v = this.ipTx.wrap(out, 0, total);
    v.totalLength = total;
    v.flags = 0;
    v.fragmentOffset = 0;
    v.fillChecksum();
    ip.reset(out, 0, total);
    const f = this.reassembledFrame;
    f.off = 0;
    f.len = total;
    p.frame = f;
    // Offload flags described only the last fragment.
    p.l4ChecksumPartial = false;
    p.l4ChecksumValid = false;
    return 'complete';
  }

  /** Echo reply from the address that was pinged, without the request's IP options. */
  private replyEcho(link: LinkInput, now: number): DropReason | null {
    const ip = this.ip;
    const icmp = this.icmp;
    const p = this.pkt;
    if (!p.l4ChecksumPartial && !p.l4ChecksumValid && !icmp.checksumOk()) return 'icmp-bad-checksum';
    const requester = ip.src;
    if (requester === 0) return 'icmp-echo-bad-src';
    const icmpLen = icmp.len;
    if (IPV4_HEADER_LEN + icmpLen > this.mtu) return 'icmp-echo-too-big';

    const tx = this.tx;
    const off = tx.allocTx(now);
    const buf = tx.txBuffer;
    emitEthernetHeader(buf, off, 0, this.mac, ETHERTYPE_IPV4);
    link.eth.copySrcTo(buf, off);
    const icmpOff = off + ETH_HEADER_LEN + IPV4_HEADER_LEN;
    // A byte loop, not Buffer#copy: for a partial range Node's copy allocates a
    // Uint8Array per call, and echo data is short.
    const src = p.frame.buf;
    const from = icmp.off;
    for (let i = 0; i < icmpLen; i++) buf[icmpOff + i] = src[from + i];
    const reply = this.icmpTx.wrap(buf, icmpOff, icmpLen);
    reply.type = ICMP_ECHO_REPLY;
    reply.code = 0;
    reply.fillChecksum();
    this.ipIdent = (this.ipIdent + 1) & 0xffff;
    emitIpv4Header(buf, off + ETH_HEADER_LEN, ip.dst, requester, IP_PROTO_ICMP, icmpLen, GATEWAY_TTL, this.ipIdent, false, ip.tos);
    this.echoReplies++;
    tx.transmit(off, ETH_HEADER_LEN + IPV4_HEADER_LEN + icmpLen, now);
    return null;
  }
}
