/**
 * The virtual gateway: the bridge port that plays the router of the
 * guest network, as slirp does (gateway = network+2, DNS = network+3).
 *
 * How it works
 * - `deliver` parses one frame with reused views and either answers it at
 *   once (ARP for its two addresses, ICMP echo to them), hands it to a
 *   per-protocol IPv4 handler plugged in with `setIpv4Handler` (TCP/UDP/ICMP
 *   NAT, DHCP, DNS live elsewhere), or counts a drop reason. Every early
 *   return counts exactly one reason in `counters.drops`; nothing throws on
 *   input, however malformed.
 * - Frames from a vnet port carry a virtio-net header before `frame.off`.
 *   NEEDS_CSUM means the L4 checksum field holds only the pseudo-header sum,
 *   and DATA_VALID means the kernel already checked it: either way the L4
 *   checksum is not verified. A GSO super-frame is offered to the handler of
 *   its protocol and is otherwise counted as 'unhandled-gso'.
 * - The IPv4 header checksum is verified before any IPv4 dispatch (no
 *   offload covers it), so handlers see only sound headers, never fragments:
 *   fragments go to the reassembler first, and only a whole datagram reaches
 *   a handler ('unhandled-fragment' when no reassembler is plugged in).
 * - Replies are built in a transmit arena allocated once: a ring of
 *   `txSlots` slots of mtu+14 bytes. A slot is reused only after the ring
 *   wraps, so a port that queues writes until `flush` still reads intact
 *   bytes as long as one input batch produces fewer than `txSlots` frames:
 *   every received frame yields at most one reply, so the ring must be at
 *   least as long as the biggest receive batch. One Frame object (vnet=false)
 *   is reused for every transmit; the sink must be done with it when
 *   `input` returns (and must not re-enter `deliver` synchronously).
 * - ARP towards guests: `sendArpRequest` asks who has a guest address (the
 *   NAT needs it for port forwards to guests that never spoke), and
 *   `arpListener` hears the sender of every sound ARP packet, gratuitous
 *   ones included, so replies and announcements teach the NAT guest MACs.
 * - Broadcast and multicast echo requests are dropped ('icmp-echo-broadcast'),
 *   as Linux does by default (icmp_echo_ignore_broadcasts; RFC 1122 3.2.2.6
 *   allows it): answering them only serves smurf-style amplification.
 * - IPv6 (when `setIpv6` plugged a router in): every IPv6 frame goes to the
 *   Ipv6Router (neighbour discovery, router advertisements, echo to its
 *   addresses); what it leaves to the NAT goes to the IPv6 handler with the
 *   router's views. Without a router IPv6 frames are 'unhandled-ipv6'.
 * - No per-packet allocation: views, the ARP repr, the handler context and
 *   the transmit frame are fields; echo data is copied byte by byte.
 */
import { PortCounters, type Frame, type FrameSink, type Port } from './frame.js';
import { ArpRepr, ARP_LEN, ARP_SHA_OFFSET, ARP_OP_REPLY, ARP_OP_REQUEST } from './wire/arp.js';
import {
  emitEthernetHeader,
  EthernetView,
  ETH_HEADER_LEN,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
} from './wire/ethernet.js';
import { ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, Icmpv4View } from './wire/icmpv4.js';
import { isMulticastIpv4, prefixToMask, subnetBroadcast, subnetHost } from './wire/ipv4-address.js';
import { emitIpv4Header, IPV4_HEADER_LEN, IPV4_MAX_HEADER_LEN, IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP, Ipv4View } from './wire/ipv4.js';
import { MAX_REASSEMBLED_PAYLOAD, type IpReassembler } from './ip/reassembly.js';
import type { Ipv6Router } from './ipv6-router.js';
import { isMulticastMac } from './wire/mac.js';
import {
  VIRTIO_NET_HDR_F_DATA_VALID,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_ECN,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_LEN,
  VnetHeaderView,
} from './wire/vnet.js';
import { newDropCounters, type DropCounts } from './counters.js';
import type { DropReason } from './drop-reasons.js';

/**
 * Default length of the transmit ring. It must cover the largest receive
 * batch a port hands the bridge between two flushes (one reply per frame at
 * most); 256 slots of a 1500-byte MTU cost under 400 KiB.
 */
export const GATEWAY_TX_SLOTS = 256;

/** TTL of datagrams the gateway originates (Linux's default). */
export const GATEWAY_TTL = 64;

export interface GatewayOptions {
  /** Network address (host bits zero) as a u32. */
  network: number;
  /** Prefix length, at most 29 so that the gateway and DNS addresses are hosts. */
  prefix: number;
  /** The gateway's MAC (48-bit number, unicast). */
  mac: number;
  /** Largest IPv4 datagram the gateway sends; a transmit slot is mtu+14 bytes. */
  mtu: number;
  name?: string;
  txSlots?: number;
}

/**
 * What an IPv4 handler gets: views already reset on the current frame (with
 * a sound IPv4 header, checksum verified, not a fragment). Valid only during
 * the call; the object is reused for the next frame.
 */
export interface Ipv4Input {
  frame: Frame;
  eth: EthernetView;
  ip: Ipv4View;
  /** The L4 checksum field holds only the pseudo-header sum (NEEDS_CSUM): complete it, never verify it. */
  l4ChecksumPartial: boolean;
  /** The sender's kernel vouches for the L4 checksum (DATA_VALID). */
  l4ChecksumValid: boolean;
  /** VIRTIO_NET_HDR_GSO_* without the ECN bit; NONE for an ordinary frame. */
  gsoType: number;
  gsoSize: number;
  /** Destination is the gateway or the DNS address. */
  toGateway: boolean;
  /** Destination is a broadcast or multicast address. */
  toBroadcast: boolean;
}

export interface Ipv4Handler {
  /**
   * Takes one datagram. Returns null when it consumed it, or a drop reason
   * (a fixed string) that the gateway counts. Must not keep `pkt` or its views.
   */
  handleIpv4(pkt: Ipv4Input, now: number): DropReason | null;
}

/** Takes what the IPv6 router left to the NAT; `router.ip`/`router.ext` describe it. */
export interface Ipv6Handler {
  handleIpv6(router: Ipv6Router, frame: Frame, now: number): DropReason | null;
}

export interface GatewayStats {
  arpReplies: number;
  /** Requests the gateway sent to find a guest's MAC (port forwards). */
  arpRequestsSent: number;
  /** ARP packets parsed fine but not answered (other targets, replies, other operations). */
  arpIgnored: number;
  echoReplies: number;
  notForUs: number;
  /** Frames addressed to the gateway that no handler takes yet, by reason. */
  unhandled: DropCounts;
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

export class Gateway implements Port {
  id = -1;
  readonly name: string;
  /** Accepts frames with a virtio-net header; frames it emits never carry one. */
  readonly vnet = true;
  readonly counters = new PortCounters();

  readonly mac: number;
  readonly network: number;
  readonly prefix: number;
  readonly mask: number;
  readonly broadcast: number;
  /** network+2. */
  readonly address: number;
  /** network+3. */
  readonly dnsAddress: number;
  readonly mtu: number;

  /** The transmit arena: register it with native I/O to write replies without a copy. */
  readonly txBuffer: Buffer;
  readonly txSlotSize: number;
  readonly txSlots: number;
  private txNext = 0;
  private readonly txFrame: Frame;
  private ipIdent = 0;

  private readonly eth = new EthernetView();
  private readonly ip = new Ipv4View();
  private readonly ipTx = new Ipv4View();
  private readonly icmp = new Icmpv4View();
  private readonly icmpTx = new Icmpv4View();
  private readonly arp = new ArpRepr();
  private readonly vnetHdr = new VnetHeaderView();
  private readonly input: Ipv4Input;
  private readonly handlers: (Ipv4Handler | null)[] = new Array<Ipv4Handler | null>(256).fill(null);
  private reassembler: IpReassembler | null = null;
  private ipv6Router: Ipv6Router | null = null;
  private ipv6Handler: Ipv6Handler | null = null;
  /** A reassembled datagram is rebuilt here (header of its last fragment + payload) and dispatched like any other. */
  private readonly reassembled = Buffer.alloc(IPV4_MAX_HEADER_LEN + MAX_REASSEMBLED_PAYLOAD);
  private readonly reassembledFrame: Frame = { buf: this.reassembled, off: 0, len: 0, vnet: false };

  /**
   * Told of every sound ARP packet's sender (requests, replies, gratuitous
   * announcements), so the NAT can address guests that never sent it IP.
   */
  arpListener: ((ip: number, mac: number, now: number) => void) | null = null;

  private arpReplies = 0;
  private arpRequestsSent = 0;
  private arpIgnored = 0;
  private echoReplies = 0;
  private notForUs = 0;
  private readonly unhandled = newDropCounters();

  constructor(
    opts: GatewayOptions,
    private readonly sink: FrameSink,
  ) {
    const { network, prefix, mac, mtu } = opts;
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > 29) {
      throw new RangeError(`gateway prefix must be 0..29 so that network+2 and network+3 are hosts, got ${prefix}`);
    }
    const mask = prefixToMask(prefix);
    if (!Number.isInteger(network) || network < 0 || network > 0xffff_ffff || ((network & mask) >>> 0) !== network) {
      throw new RangeError(`gateway network must be a u32 network address with host bits clear, got ${network}`);
    }
    if (!Number.isInteger(mac) || mac < 0 || mac > 0xffff_ffff_ffff || isMulticastMac(mac)) {
      throw new RangeError(`gateway MAC must be a unicast 48-bit number, got ${mac}`);
    }
    if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) {
      throw new RangeError(`gateway MTU must be 68..65535, got ${mtu}`);
    }
    const slots = opts.txSlots ?? GATEWAY_TX_SLOTS;
    if (!Number.isInteger(slots) || slots < 1) throw new RangeError(`gateway txSlots must be a positive integer, got ${slots}`);

    this.name = opts.name ?? 'gateway';
    this.mac = mac;
    this.network = network;
    this.prefix = prefix;
    this.mask = mask;
    this.broadcast = subnetBroadcast(network, mask);
    this.address = subnetHost(network, 2);
    this.dnsAddress = subnetHost(network, 3);
    this.mtu = mtu;
    this.txSlots = slots;
    this.txSlotSize = mtu + ETH_HEADER_LEN;
    this.txBuffer = Buffer.alloc(this.txSlots * this.txSlotSize);
    this.txFrame = { buf: this.txBuffer, off: 0, len: 0, vnet: false };
    this.input = {
      frame: this.txFrame,
      eth: this.eth,
      ip: this.ip,
      l4ChecksumPartial: false,
      l4ChecksumValid: false,
      gsoType: VIRTIO_NET_HDR_GSO_NONE,
      gsoSize: 0,
      toGateway: false,
      toBroadcast: false,
    };
  }

  /** Plugs (or with null, unplugs) the handler for one IP protocol number. */
  setIpv4Handler(protocol: number, handler: Ipv4Handler | null): void {
    if (!Number.isInteger(protocol) || protocol < 0 || protocol > 255) {
      throw new RangeError(`IP protocol must be 0..255, got ${protocol}`);
    }
    this.handlers[protocol] = handler;
  }

  /** Plugs in the IPv6 half (router and NAT handler); null turns IPv6 off. */
  setIpv6(router: Ipv6Router | null, handler: Ipv6Handler | null): void {
    this.ipv6Router = router;
    this.ipv6Handler = handler;
  }

  get ipv6(): Ipv6Router | null {
    return this.ipv6Router;
  }

  /** Fragments addressed to the gateway go through this reassembler (the owner polls it); without one they are dropped. */
  setReassembler(r: IpReassembler | null): void {
    this.reassembler = r;
  }

  /** The gateway or the DNS address. */
  isLocalAddress(ip: number): boolean {
    return ip === this.address || ip === this.dnsAddress;
  }

  /** Offset in txBuffer of the next free transmit slot (txSlotSize bytes). */
  allocTx(): number {
    const off = this.txNext * this.txSlotSize;
    this.txNext = this.txNext + 1 === this.txSlots ? 0 : this.txNext + 1;
    return off;
  }

  /** Hands txBuffer[off, off+len) to the sink as a frame without virtio-net header. */
  transmit(off: number, len: number, now: number): void {
    const f = this.txFrame;
    f.buf = this.txBuffer;
    f.off = off;
    f.len = len;
    f.vnet = false;
    this.counters.txFrames++;
    this.counters.txBytes += len;
    this.sink.input(this, f, now);
  }

  deliver(frame: Frame, now: number): void {
    this.counters.rxFrames++;
    this.counters.rxBytes += frame.len;
    const eth = this.eth;
    const bad = eth.reset(frame.buf, frame.off, frame.len);
    if (bad !== null) return this.drop(bad);
    if (!eth.dstIsMulticast && !eth.dstIs(this.mac)) {
      // Flooded unknown unicast for somebody else: normal on a bridge.
      this.notForUs++;
      return this.drop('not-for-us');
    }
    if (eth.srcIsMulticast) return this.drop('eth-src-multicast');

    const pkt = this.input;
    pkt.frame = frame;
    pkt.l4ChecksumPartial = false;
    pkt.l4ChecksumValid = false;
    pkt.gsoType = VIRTIO_NET_HDR_GSO_NONE;
    pkt.gsoSize = 0;
    if (frame.vnet) {
      if (frame.off < VIRTIO_NET_HDR_LEN) return this.drop('vnet-truncated');
      const v = this.vnetHdr.reset(frame.buf, frame.off - VIRTIO_NET_HDR_LEN);
      const flags = v.flags;
      pkt.l4ChecksumPartial = (flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0;
      pkt.l4ChecksumValid = (flags & VIRTIO_NET_HDR_F_DATA_VALID) !== 0;
      pkt.gsoType = v.gsoType & ~VIRTIO_NET_HDR_GSO_ECN;
      pkt.gsoSize = v.gsoSize;
    }

    switch (eth.etherType) {
      case ETHERTYPE_IPV4:
        return this.handleIpv4(pkt, now);
      case ETHERTYPE_ARP:
        if (pkt.gsoType !== VIRTIO_NET_HDR_GSO_NONE) return this.unhandle('unhandled-gso');
        return this.handleArp(frame, now);
      case ETHERTYPE_IPV6:
        return this.handleIpv6(frame, now);
      default:
        return this.unhandle('unhandled-ethertype');
    }
  }

  flush(_now: number): void {}

  stats(): GatewayStats {
    return {
      arpReplies: this.arpReplies,
      arpRequestsSent: this.arpRequestsSent,
      arpIgnored: this.arpIgnored,
      echoReplies: this.echoReplies,
      notForUs: this.notForUs,
      unhandled: this.unhandled.snapshot(),
    };
  }

  private drop(reason: DropReason): void {
    this.counters.drop(reason);
  }

  private unhandle(reason: DropReason): void {
    this.unhandled.add(reason);
    this.counters.drop(reason);
  }

  private handleArp(frame: Frame, now: number): void {
    const arp = this.arp;
    const eth = this.eth;
    const bad = arp.parse(frame.buf, eth.payloadOffset, eth.payloadLength);
    if (bad !== null) return this.drop(bad);
    this.learnArpSender(frame, now);
    if (arp.op !== ARP_OP_REQUEST) {
      this.arpIgnored++;
      return this.drop('arp-not-request');
    }
    const target = arp.targetIp;
    if (!this.isLocalAddress(target)) {
      // Real hosts on the bridge answer for themselves.
      this.arpIgnored++;
      return this.drop('arp-other-target');
    }
    // The asker's MAC is checked and copied as bytes: a 48-bit number handed
    // to a helper the JIT did not inline would be boxed once per packet.
    const rx = frame.buf;
    const sha = eth.payloadOffset + ARP_SHA_OFFSET;
    if ((rx[sha] & 1) !== 0 || (rx[sha] | rx[sha + 1] | rx[sha + 2] | rx[sha + 3] | rx[sha + 4] | rx[sha + 5]) === 0) {
      return this.drop('arp-bad-sender');
    }
    const askerMac = arp.senderMac;
    const askerIp = arp.senderIp;

    const off = this.allocTx();
    const buf = this.txBuffer;
    emitEthernetHeader(buf, off, 0, this.mac, ETHERTYPE_ARP);
    for (let i = 0; i < 6; i++) buf[off + i] = rx[sha + i];
    arp.op = ARP_OP_REPLY;
    arp.senderMac = this.mac;
    arp.senderIp = target;
    arp.targetMac = askerMac;
    arp.targetIp = askerIp;
    arp.emitInto(buf, off + ETH_HEADER_LEN);
    this.arpReplies++;
    this.transmit(off, ETH_HEADER_LEN + ARP_LEN, now);
  }

  /** Reports the sender of the ARP packet just parsed, unless it is unusable (multicast, zero, probe with 0.0.0.0). */
  private learnArpSender(frame: Frame, now: number): void {
    const l = this.arpListener;
    if (l === null) return;
    const ip = this.arp.senderIp;
    if (ip === 0 || this.isLocalAddress(ip)) return;
    const rx = frame.buf;
    const sha = this.eth.payloadOffset + ARP_SHA_OFFSET;
    if ((rx[sha] & 1) !== 0 || (rx[sha] | rx[sha + 1] | rx[sha + 2] | rx[sha + 3] | rx[sha + 4] | rx[sha + 5]) === 0) return;
    l(ip, this.arp.senderMac, now);
  }

  /**
   * Broadcasts "who-has ip tell <gateway address>": the NAT needs the MAC of a
   * guest that has not sent anything yet (port forwards). Rare, so it shares
   * the reply ring.
   */
  sendArpRequest(ip: number, now: number): void {
    const off = this.allocTx();
    const buf = this.txBuffer;
    emitEthernetHeader(buf, off, 0xffff_ffff_ffff, this.mac, ETHERTYPE_ARP);
    const arp = this.arp;
    arp.op = ARP_OP_REQUEST;
    arp.senderMac = this.mac;
    arp.senderIp = this.address;
    arp.targetMac = 0;
    arp.targetIp = ip >>> 0;
    arp.emitInto(buf, off + ETH_HEADER_LEN);
    this.arpRequestsSent++;
    this.transmit(off, ETH_HEADER_LEN + ARP_LEN, now);
  }

  private handleIpv6(frame: Frame, now: number): void {
    const router = this.ipv6Router;
    if (router === null) return this.unhandle('unhandled-ipv6');
    const verdict = router.handleFrame(frame, now);
    if (verdict === 'consumed') return;
    if (verdict !== 'to-nat') return this.drop(verdict);
    const h = this.ipv6Handler;
    if (h === null) return this.unhandle('unhandled-ipv6');
    const bad = h.handleIpv6(router, frame, now);
    if (bad !== null) this.drop(bad);
  }

  private handleIpv4(pkt: Ipv4Input, now: number): void {
    const eth = this.eth;
    const ip = this.ip;
    let bad = ip.reset(pkt.frame.buf, eth.payloadOffset, eth.payloadLength);
    if (bad !== null) return this.drop(bad);
    if (!ip.checksumOk()) return this.drop('ipv4-bad-checksum');

    const src = ip.src;
    // RFC 1122 3.2.1.3: a broadcast or multicast source is never valid.
    if (src === 0xffff_ffff || src === this.broadcast || isMulticastIpv4(src)) return this.drop('ipv4-bad-src');
    const dst = ip.dst;
    const toBroadcast = dst === 0xffff_ffff || dst === this.broadcast || isMulticastIpv4(dst);
    // RFC 1122 3.3.6: unicast IP inside a link-layer broadcast is discarded.
    if (eth.dstIsMulticast && !toBroadcast) return this.drop('ipv4-unicast-in-l2-multicast');
    pkt.toBroadcast = toBroadcast;
    pkt.toGateway = this.isLocalAddress(dst);

    if (ip.isFragment) {
      if (this.reassembler === null) return this.unhandle('unhandled-fragment');
      if (!this.reassemble(pkt, now)) return;
    }

    const protocol = ip.protocol;
    const handler = this.handlers[protocol];
    if (pkt.gsoType !== VIRTIO_NET_HDR_GSO_NONE) {
      // Super-frames are TCP/UDP segments for the NAT; nothing built in takes them.
      if (handler === null) return this.unhandle('unhandled-gso');
      bad = handler.handleIpv4(pkt, now);
      if (bad !== null) this.drop(bad);
      return;
    }

    if (protocol === IP_PROTO_ICMP) {
      const icmp = this.icmp;
      bad = icmp.reset(pkt.frame.buf, ip.payloadOffset, ip.payloadLength);
      if (bad !== null) return this.drop(bad);
      if (icmp.type === ICMP_ECHO_REQUEST) {
        if (pkt.toGateway) return this.replyEcho(pkt, now);
        if (toBroadcast) return this.drop('icmp-echo-broadcast');
      }
    }

    if (handler === null) return this.unhandle(unhandledReason(protocol));
    bad = handler.handleIpv4(pkt, now);
    if (bad !== null) this.drop(bad);
  }

  /**
   * Feeds a fragment to the reassembler. When it completes a datagram, the
   * views and pkt.frame are moved onto a rebuilt, unfragmented copy and true
   * is returned; otherwise false (waiting, or dropped and counted).
   */
  private reassemble(pkt: Ipv4Input, now: number): boolean {
    const ip = this.ip;
    if (pkt.gsoType !== VIRTIO_NET_HDR_GSO_NONE) {
      this.drop('fragment-gso');
      return false;
    }
    const r = this.reassembler!;
    const d = r.input(ip.src, ip.dst, ip.protocol, ip.identification, ip.fragmentOffset, ip.moreFragments, pkt.frame.buf, ip.payloadOffset, ip.payloadLength, now);
    if (d === null) return false;
    const hl = ip.headerLength;
    const total = hl + d.len;
    if (total > 0xffff) {
      this.drop('fragment-too-big');
      return false;
    }
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
    pkt.frame = f;
    // Offload flags described only the last fragment.
    pkt.l4ChecksumPartial = false;
    pkt.l4ChecksumValid = false;
    return true;
  }

  /** Echo reply from the address that was pinged, without the request's IP options. */
  private replyEcho(pkt: Ipv4Input, now: number): void {
    const ip = this.ip;
    const icmp = this.icmp;
    if (!pkt.l4ChecksumPartial && !pkt.l4ChecksumValid && !icmp.checksumOk()) return this.drop('icmp-bad-checksum');
    const requester = ip.src;
    if (requester === 0) return this.drop('icmp-echo-bad-src');
    const icmpLen = icmp.len;
    if (IPV4_HEADER_LEN + icmpLen > this.mtu) return this.drop('icmp-echo-too-big');

    const off = this.allocTx();
    const buf = this.txBuffer;
    emitEthernetHeader(buf, off, 0, this.mac, ETHERTYPE_IPV4);
    this.eth.copySrcTo(buf, off);
    const icmpOff = off + ETH_HEADER_LEN + IPV4_HEADER_LEN;
    // A byte loop, not Buffer#copy: for a partial range Node's copy allocates a
    // Uint8Array per call, and echo data is short.
    const src = pkt.frame.buf;
    const from = icmp.off;
    for (let i = 0; i < icmpLen; i++) buf[icmpOff + i] = src[from + i];
    const reply = this.icmpTx.wrap(buf, icmpOff, icmpLen);
    reply.type = ICMP_ECHO_REPLY;
    reply.code = 0;
    reply.fillChecksum();
    this.ipIdent = (this.ipIdent + 1) & 0xffff;
    emitIpv4Header(buf, off + ETH_HEADER_LEN, ip.dst, requester, IP_PROTO_ICMP, icmpLen, GATEWAY_TTL, this.ipIdent, false, ip.tos);
    this.echoReplies++;
    this.transmit(off, ETH_HEADER_LEN + IPV4_HEADER_LEN + icmpLen, now);
  }
}
