/**
 * The gateway's IPv6 layer: the checks every IPv6 packet passes, echo to
 * the gateway's own addresses, fragment reassembly, and the hand-over of the
 * rest as an IpPacket to the handler plugged in for its protocol (the NAT).
 * Neighbour discovery for the same addresses is `ndp` (stack/ip6/ndp.ts),
 * router advertisements `adverts` (stack/ip6/router-adverts.ts). Sans-IO.
 *
 * How it works
 * - The gateway parsed Ethernet and the virtio-net header once (LinkInput)
 *   and hands every IPv6 frame to `input`; `handleFrame` parses a bare frame
 *   itself (tests, and harnesses without a gateway).
 * - Addresses: the gateway (prefix::2), the DNS address (prefix::3, only
 *   while DNS is enabled) and the link-local fe80::EUI-64 of the gateway MAC.
 *   The prefix must be a /64: SLAAC on Ethernet needs 64-bit identifiers.
 * - Multicast: frames to 33:33:... reach us by flooding. The groups NDP
 *   listens to pass (`ndp.acceptsGroupMac`, `ndp.acceptsGroup`: all-nodes,
 *   all-routers, the solicited-node groups of our addresses); the rest is
 *   ignored ('ipv6-mcast-other-group'). MLD reports are counted and ignored:
 *   the bridge floods multicast anyway, so there is no group state to keep.
 * - ICMPv6 neighbour and router solicitations and advertisements go to
 *   `ndp`, which answers or learns from them (and hands RS to `adverts`).
 * - Neighbours (guest IPv6 -> MAC, stack/ip6/neighbor-table.ts) are learned
 *   from the source of every frame with a usable source address, and by
 *   `ndp` from the link-layer options of NS, NA and RS.
 * - Echo replies are built in the gateway's transmit arena (LinkTx) and
 *   leave as frames from the gateway port.
 * - What is not the layer's own business ('to-nat' from `classify`): ICMPv6
 *   other than echo requests has nowhere to go ('icmpv6-not-echo'); the rest
 *   has its two addresses interned as handles (ip-addresses.ts, one
 *   reference each for the time of the call), fragments go through the
 *   reassembler and a completed datagram is rebuilt without extension
 *   headers, and the IpPacket goes to the handler of its protocol.
 * - `input` returns null or a drop reason (also counted in `drops`, except
 *   the handler's own). Nothing throws on input; nothing allocates per packet.
 */
import type { Frame } from '../frame.js';
import { IpAddresses } from '../ip/ip-addresses.js';
import { IpPacket, type IpHandler } from '../ip/ip-packet.js';
import type { IpReassembler } from '../ip/reassembly.js';
import { LinkInput, type LinkTx } from '../link.js';
import { emitEthernetHeader, ETH_HEADER_LEN, ETHERTYPE_IPV6 } from '../wire/ethernet.js';
import { Ipv6NeighborTable } from './neighbor-table.js';
import { Ndp, type NdpOwner } from './ndp.js';
import { RouterAdverts } from './router-adverts.js';
import {
  fillIcmpv6Checksum,
  ICMPV6_ECHO_REPLY,
  ICMPV6_ECHO_REQUEST,
  ICMPV6_HEADER_LEN,
  ICMPV6_MLD_DONE,
  ICMPV6_MLD_QUERY,
  ICMPV6_MLD_REPORT,
  ICMPV6_MLDV2_REPORT,
  ICMPV6_NEIGHBOR_ADVERTISEMENT,
  ICMPV6_NEIGHBOR_SOLICITATION,
  ICMPV6_ROUTER_ADVERTISEMENT,
  ICMPV6_ROUTER_SOLICITATION,
  Icmpv6View,
} from '../wire/icmpv6.js';
import { ipv6Equal, ipv6PrefixMatch, linkLocalFromMac, parsePrefix, prefixHost, type Ipv6Prefix } from '../wire/ipv6-address.js';
import { emitIpv6Header, IPV6_HEADER_LEN, IPV6_NH_ICMPV6, Ipv6ExtInfo, Ipv6View, walkExtensionHeaders } from '../wire/ipv6.js';
import { isMulticastMac, macToBytes } from '../wire/mac.js';
import { VIRTIO_NET_HDR_GSO_NONE } from '../wire/vnet.js';
import { newDropCounters, type DropCounts } from '../counters.js';
import type { DropReason } from '../drop-reasons.js';

export { MAX_INITIAL_RTR_ADVERT_INTERVAL_MS, MAX_INITIAL_RTR_ADVERTISEMENTS, MIN_DELAY_BETWEEN_RAS_MS } from './router-adverts.js';

export const IPV6_ROUTER_DEFAULTS = {
  prefix: 'fd00::/64',
  /** RFC 4861 6.2.1 default MaxRtrAdvInterval. */
  maxRtrAdvIntervalMs: 600_000,
  /** Seconds; RFC 4861 default 3 * MaxRtrAdvInterval. */
  routerLifetimeS: 1800,
  /** Seconds; RFC 4861 6.2.1 defaults for AdvValidLifetime / AdvPreferredLifetime. */
  validLifetimeS: 2_592_000,
  preferredLifetimeS: 604_800,
  /** Seconds; RFC 8106 5.1 asks for at least MaxRtrAdvInterval, default 3 times it. */
  rdnssLifetimeS: 1800,
  dnsEnabled: true,
  neighborTableSize: 1024,
  /** Hop limit advertised in RAs and used for what the router originates (Linux's default). */
  hopLimit: 64,
} as const;

export interface Ipv6LayerOptions {
  /** "fd00::/64" or a parsed prefix; must be a /64. */
  prefix?: string | Ipv6Prefix;
  /** Gateway MAC (48-bit number, unicast). */
  mac: number;
  /** Link MTU advertised and the largest packet sent; at least 1280. */
  mtu: number;
  routerLifetimeS?: number;
  /** MaxRtrAdvInterval (4 s .. 1800 s); MinRtrAdvInterval follows RFC 4861 6.2.1. */
  maxRtrAdvIntervalMs?: number;
  validLifetimeS?: number;
  preferredLifetimeS?: number;
  rdnssLifetimeS?: number;
  /** Claims prefix::3 and advertises it in RDNSS. */
  dnsEnabled?: boolean;
  neighborTableSize?: number;
  /** The address table the packets' handles come from (shared with the NAT); a small private one by default. */
  addrs?: IpAddresses;
  /** Uniform [0, 1) source for RA jitter (tests pass a fixed one). */
  random?: () => number;
}

export type Ipv6Verdict = 'consumed' | 'to-nat' | DropReason;

export interface Ipv6LayerStats {
  neighborAdvertsSent: number;
  dadDefended: number;
  routerAdvertsSent: number;
  solicitationsAnswered: number;
  echoReplies: number;
  mldIgnored: number;
  neighbors: number;
  solicitationsSent: number;
  drops: DropCounts;
  /** IPv6 addresses interned (the NAT's flows hold most). */
  addresses: number;
  /** Packets dropped because the address table was full. */
  addressTableFull: number;
}

// Offsets of our addresses in `own`.
const OWN_GW = 0;
const OWN_DNS = 16;
const OWN_LL = 32;

export class Ipv6Layer implements NdpOwner {
  readonly prefix: Uint8Array;
  readonly prefixLength = 64;
  readonly gatewayAddress: Uint8Array;
  readonly dnsAddress: Uint8Array;
  readonly linkLocalAddress: Uint8Array;
  readonly mac: number;
  readonly mtu: number;
  readonly dnsEnabled: boolean;
  /** Router advertisements: RS answers and the unsolicited schedule. */
  readonly adverts: RouterAdverts;
  /** Neighbour discovery: NS, NA, DAD, RS checks, the multicast groups we listen to. */
  readonly ndp: Ndp;

  /** After 'to-nat': the packet's IPv6 header and its upper layer. */
  readonly ip = new Ipv6View();
  readonly ext = new Ipv6ExtInfo();
  /** The frame being handled (the gateway's, or handleFrame's own parse). */
  private link: LinkInput;
  private readonly ownLink = new LinkInput();
  readonly addrs: IpAddresses;
  private readonly pkt: IpPacket;
  private readonly handlers: (IpHandler | null)[] = new Array<IpHandler | null>(256).fill(null);
  private reassembler: IpReassembler | null = null;
  /** Handles of prefix::2 and prefix::3 (referenced for the layer's life). */
  private readonly gatewayHandle: number;
  private readonly dnsHandle: number;
  /** A reassembled datagram, rebuilt: header + payload (the payload of an IPv6 packet is at most 65535 bytes). */
  private readonly reassembled = Buffer.alloc(IPV6_HEADER_LEN + 65_535);
  private readonly reassembledFrame: Frame = { buf: this.reassembled, off: 0, len: 0, vnet: false };
  /** Packets dropped because the address table was full. */
  private addressFull = 0;

  readonly neighbors: Ipv6NeighborTable;
  private readonly dropped = newDropCounters();
  /** Drops by reason so far (allocates: for stats and tests). */
  get drops(): DropCounts {
    return this.dropped.snapshot();
  }

  /** Our addresses, 16 bytes each: gateway, DNS, link-local (NdpOwner). */
  readonly own = new Uint8Array(48);
  /** Offsets in `own` of the addresses in use: the DNS address only while DNS is enabled. */
  readonly ownOffsets: readonly number[];
  readonly gatewayOffset = OWN_GW;
  private readonly icmp = new Icmpv6View();

  private echoReplies = 0;
  private mldIgnored = 0;

  constructor(
    options: Ipv6LayerOptions,
    private readonly tx: LinkTx,
  ) {
    const d = IPV6_ROUTER_DEFAULTS;
    const p = typeof options.prefix === 'object' && options.prefix !== null ? options.prefix : parsePrefix(options.prefix ?? d.prefix);
    if (p.length !== 64) throw new RangeError(`IPv6 prefix must be a /64 (SLAAC needs 64-bit interface identifiers), got /${p.length}`);
    if (p.address[0] === 0xff || (p.address[0] === 0xfe && (p.address[1] & 0xc0) === 0x80)) {
      throw new RangeError('IPv6 prefix must be a unicast prefix outside fe80::/10 and ff00::/8');
    }
    const mac = options.mac;
    if (!Number.isInteger(mac) || mac <= 0 || mac > 0xffff_ffff_ffff || isMulticastMac(mac)) {
      throw new RangeError(`IPv6 router MAC must be a unicast 48-bit number, got ${mac}`);
    }
    const mtu = options.mtu;
    if (!Number.isInteger(mtu) || mtu < 1280 || mtu > 65535) throw new RangeError(`IPv6 MTU must be 1280..65535, got ${mtu}`);
    const maxInt = options.maxRtrAdvIntervalMs ?? d.maxRtrAdvIntervalMs;
    if (!Number.isFinite(maxInt) || maxInt < 4000 || maxInt > 1_800_000) {
      throw new RangeError(`MaxRtrAdvInterval must be 4000..1800000 ms, got ${maxInt}`);
    }
    const lifetime = options.routerLifetimeS ?? d.routerLifetimeS;
    if (!Number.isInteger(lifetime) || lifetime < 0 || lifetime > 9000) {
      throw new RangeError(`router lifetime must be 0..9000 s, got ${lifetime}`);
    }
    const valid = options.validLifetimeS ?? d.validLifetimeS;
    const preferred = options.preferredLifetimeS ?? d.preferredLifetimeS;
    const rdnss = options.rdnssLifetimeS ?? d.rdnssLifetimeS;
    for (const [name, v] of [['valid lifetime', valid], ['preferred lifetime', preferred], ['RDNSS lifetime', rdnss]] as const) {
      if (!Number.isInteger(v) || v < 0 || v > 0xffff_ffff) throw new RangeError(`${name} must be 0..2^32-1 s, got ${v}`);
    }
    if (preferred > valid) throw new RangeError(`preferred lifetime ${preferred} exceeds valid lifetime ${valid}`);
    const tableSize = options.neighborTableSize ?? d.neighborTableSize;
    if (!Number.isInteger(tableSize) || tableSize < 1) throw new RangeError(`neighbor table size must be a positive integer, got ${tableSize}`);

    this.prefix = p.address;
    this.mac = mac;
    this.mtu = mtu;
    this.dnsEnabled = options.dnsEnabled ?? d.dnsEnabled;
    this.gatewayAddress = prefixHost(p.address, 2);
    this.dnsAddress = prefixHost(p.address, 3);
    this.linkLocalAddress = linkLocalFromMac(macToBytes(mac));
    this.own.set(this.gatewayAddress, OWN_GW);
    this.own.set(this.dnsAddress, OWN_DNS);
    this.own.set(this.linkLocalAddress, OWN_LL);
    this.ownOffsets = this.dnsEnabled ? [OWN_GW, OWN_DNS, OWN_LL] : [OWN_GW, OWN_LL];
    this.adverts = new RouterAdverts(
      {
        mac,
        mtu,
        prefix: this.prefix,
        own: this.own,
        dnsOff: OWN_DNS,
        llOff: OWN_LL,
        dnsEnabled: this.dnsEnabled,
        hopLimit: d.hopLimit,
        routerLifetimeS: lifetime,
        maxRtrAdvIntervalMs: maxInt,
        validLifetimeS: valid,
        preferredLifetimeS: preferred,
        rdnssLifetimeS: rdnss,
        random: options.random ?? Math.random,
      },
      tx,
    );
    this.neighbors = new Ipv6NeighborTable(tableSize);
    this.ndp = new Ndp(mac, this, this.neighbors, this.adverts, tx);
    this.link = this.ownLink;
    this.addrs = options.addrs ?? new IpAddresses(64);
    this.pkt = new IpPacket(this.addrs);
    this.gatewayHandle = this.addrs.acquire(this.gatewayAddress, 0);
    this.dnsHandle = this.addrs.acquire(this.dnsAddress, 0);
  }

  /** Plugs (or with null, unplugs) the handler for one upper-layer protocol number. */
  setHandler(protocol: number, handler: IpHandler | null): void {
    if (!Number.isInteger(protocol) || protocol < 0 || protocol > 255) {
      throw new RangeError(`IP protocol must be 0..255, got ${protocol}`);
    }
    this.handlers[protocol] = handler;
  }

  /** Fragments go through this reassembler (whose addresses are handles of `addrs`; the owner polls it); without one they are dropped. */
  setReassembler(r: IpReassembler | null): void {
    this.reassembler = r;
  }

  /** One of the router's addresses (DNS only while enabled). */
  isLocalAddress(a: Uint8Array, off: number): boolean {
    return this.ownIndex(a, off) !== -1;
  }

  /** Offset in `own` of the address in use equal to a[off, +16), or -1. */
  ownIndex(a: Uint8Array, off: number): number {
    const own = this.own;
    const offs = this.ownOffsets;
    for (let k = 0; k < offs.length; k++) {
      const o = offs[k];
      if (ipv6Equal(own, o, a, off)) return o;
    }
    return -1;
  }

  /** Sources worth remembering: link-local or in our prefix, unicast. */
  usableNeighborSource(b: Uint8Array, o: number): boolean {
    if (b[o] === 0xfe && (b[o + 1] & 0xc0) === 0x80) return true;
    return ipv6PrefixMatch(b, o, this.prefix, 0, 64);
  }

  /** MAC of a guest address, or -1 (for the NAT). */
  lookup(a: Uint8Array, off: number): number {
    return this.neighbors.lookup(a, off);
  }

  /** Copies the MAC of a guest address to out[outOff, +6); false when unknown (no allocation). */
  copyNeighborMac(a: Uint8Array, off: number, out: Uint8Array, outOff: number): boolean {
    return this.neighbors.copyMac(a, off, out, outOff);
  }

  /** When poll must next run (the next unsolicited RA). */
  pollAt(): number {
    return this.adverts.pollAt();
  }

  /** Sends the unsolicited RA when it is due and schedules the next. */
  poll(now: number): void {
    this.adverts.poll(now);
  }

  stats(): Ipv6LayerStats {
    return {
      neighborAdvertsSent: this.ndp.neighborAdvertsSent,
      dadDefended: this.ndp.dadDefended,
      routerAdvertsSent: this.adverts.sent,
      solicitationsAnswered: this.adverts.solicitationsAnswered,
      echoReplies: this.echoReplies,
      mldIgnored: this.mldIgnored,
      neighbors: this.neighbors.size,
      solicitationsSent: this.ndp.solicitationsSent,
      drops: this.dropped.snapshot(),
      addresses: this.addrs.size,
      addressTableFull: this.addressFull,
    };
  }

  private drop(reason: DropReason): DropReason {
    this.dropped.add(reason);
    return reason;
  }

  /**
   * Takes one bare IPv6 frame (Ethernet at frame.off; a virtio-net header
   * before it when frame.vnet), parsing its link layer itself, and returns
   * 'consumed', 'to-nat' (nothing is handed on) or a drop reason. For tests
   * and harnesses without a gateway; the gateway calls `input`.
   */
  handleFrame(frame: Frame, now: number): Ipv6Verdict {
    const link = this.ownLink;
    const bad = link.parseEthernet(frame);
    if (bad !== null) return this.drop(bad);
    if (link.eth.etherType !== ETHERTYPE_IPV6) return this.drop('not-ipv6');
    if (link.eth.srcIsMulticast) return this.drop('eth-src-multicast');
    const v = link.parseVnet();
    if (v !== null) return this.drop(v);
    return this.classify(link, now);
  }

  /**
   * One IPv6 frame the gateway parsed (`link`): answered here, handed on as
   * an IpPacket to its protocol's handler, or dropped. Returns null or the
   * drop reason.
   */
  input(link: LinkInput, now: number): DropReason | null {
    const v = this.classify(link, now);
    if (v === 'consumed') return null;
    if (v !== 'to-nat') return v;
    return this.handOn(link, now);
  }

  /** The checks, and the answers to what is the layer's own business: 'consumed', 'to-nat' or a drop reason. */
  private classify(link: LinkInput, now: number): Ipv6Verdict {
    this.link = link;
    const eth = link.eth;
    const frame = link.frame;
    const b = frame.buf;
    const eo = frame.off;
    const l2Multicast = eth.dstIsMulticast;
    if (l2Multicast) {
      if (b[eo] !== 0x33 || b[eo + 1] !== 0x33) return this.drop('ipv6-l2-broadcast');
      if (!this.ndp.acceptsGroupMac(b, eo)) return this.drop('ipv6-mcast-other-group');
    } else if (!eth.dstIs(this.mac)) {
      return this.drop('not-for-us');
    }

    const ip = this.ip;
    let r = ip.reset(b, eth.payloadOffset, eth.payloadLength);
    if (r !== null) return this.drop(r);
    const so = ip.srcOffset;
    const dof = ip.dstOffset;
    if (b[so] === 0xff) return this.drop('ipv6-bad-src');
    const srcUnspecified = isZero16(b, so);
    const dstMulticast = b[dof] === 0xff;
    // RFC 4861/2464: unicast IPv6 inside a link-layer multicast is not for us to take.
    if (l2Multicast && !dstMulticast) return this.drop('ipv6-unicast-in-l2-multicast');
    if (dstMulticast && !l2Multicast) return this.drop('ipv6-multicast-in-l2-unicast');
    if (dstMulticast && !this.ndp.acceptsGroup(b, dof)) return this.drop('ipv6-mcast-other-group');
    // Someone on the link using one of our addresses as its source is a conflict, not a neighbour.
    if (!srcUnspecified && this.ownIndex(b, so) !== -1) return this.drop('ipv6-src-is-ours');

    const ext = this.ext;
    r = walkExtensionHeaders(ip, ext);
    if (r !== null) return this.drop(r);

    if (!srcUnspecified && this.usableNeighborSource(b, so)) this.neighbors.learn(b, so, b, eo + 6, now);

    if (link.gsoType !== VIRTIO_NET_HDR_GSO_NONE) {
      // Super-frames are TCP/UDP for the NAT.
      if (dstMulticast || srcUnspecified) return this.drop('ipv6-gso-bad-address');
      return 'to-nat';
    }

    if (ext.protocol === IPV6_NH_ICMPV6) {
      if (ext.hasFragment) return this.drop('icmpv6-fragment-unhandled');
      return this.handleIcmpv6(frame, srcUnspecified, dstMulticast, now);
    }
    if (srcUnspecified) return this.drop('ipv6-bad-src');
    if (dstMulticast) return this.drop('ipv6-multicast-ignored');
    // Fragments are reassembled on the way to the handler.
    // Link-local destinations other than ours have no route through the gateway.
    if (b[dof] === 0xfe && (b[dof + 1] & 0xc0) === 0x80 && !ipv6Equal(b, dof, this.own, OWN_LL)) {
      return this.drop('ipv6-link-local-not-ours');
    }
    return 'to-nat';
  }

  /**
   * Hands the packet `classify` left ('to-nat') to its protocol's handler as
   * an IpPacket: ICMPv6 other than echo requests has nowhere to go past the
   * gateway (errors, MLD, unknown types); the addresses are interned for the
   * time of the call; fragments are reassembled first.
   */
  private handOn(link: LinkInput, now: number): DropReason | null {
    const ext = this.ext;
    const proto = ext.protocol;
    const frame = link.frame;
    if (proto === IPV6_NH_ICMPV6 && (ext.length < 1 || frame.buf[ext.offset] !== ICMPV6_ECHO_REQUEST)) return 'icmpv6-not-echo';
    const handler = this.handlers[proto];
    if (handler === null) return 'unhandled-ip-proto';
    const ip = this.ip;
    const b = frame.buf;
    const a = this.addrs;
    const src = a.acquire(b, ip.srcOffset);
    if (src < 0) {
      this.addressFull++;
      return 'ipv6-address-table-full';
    }
    const dst = a.acquire(b, ip.dstOffset);
    if (dst < 0) {
      a.release(src);
      this.addressFull++;
      return 'ipv6-address-table-full';
    }
    const p = this.pkt;
    p.frame = frame;
    p.ipOff = ip.off;
    p.ipLen = ip.packetLength;
    p.l4Off = ext.offset;
    p.l4Len = ext.length;
    p.l4ChecksumPartial = link.l4ChecksumPartial;
    p.l4ChecksumValid = link.l4ChecksumValid;
    if (ext.hasFragment) {
      const bad = this.reassemble(link, src, dst, now);
      if (bad !== 'complete') {
        a.release(dst);
        a.release(src);
        return bad;
      }
    }
    p.srcMac = link.eth.src;
    p.v6 = true;
    p.src = src;
    p.dst = dst;
    p.protocol = proto;
    p.gsoType = link.gsoType;
    p.gsoSize = link.gsoSize;
    p.toGateway = dst === this.gatewayHandle || dst === this.dnsHandle;
    p.toBroadcast = false;
    const r = handler.handleIp(p, now);
    a.release(dst);
    a.release(src);
    return r;
  }

  /**
   * Feeds a fragment to the reassembler. When it completes a datagram, the
   * packet is rebuilt unfragmented (the IPv6 header without extension
   * headers, then the payload) and `pkt` is pointed at it: 'complete'.
   * Otherwise null (waiting, or dropped and counted by the reassembler) or
   * a drop reason.
   */
  private reassemble(link: LinkInput, src: number, dst: number, now: number): DropReason | 'complete' | null {
    const r = this.reassembler;
    if (r === null) return 'unhandled-fragment';
    const ext = this.ext;
    if (link.gsoType !== VIRTIO_NET_HDR_GSO_NONE) return 'fragment-gso';
    const frame = link.frame;
    const d = r.input(src, dst, ext.protocol, ext.fragmentId, ext.fragmentOffset, ext.moreFragments, frame.buf, ext.offset, ext.length, now);
    if (d === null) return null;
    const out = this.reassembled;
    const ipOff = this.ip.off;
    frame.buf.copy(out, 0, ipOff, ipOff + IPV6_HEADER_LEN);
    out[4] = d.len >>> 8;
    out[5] = d.len & 0xff;
    out[6] = ext.protocol;
    d.buf.copy(out, IPV6_HEADER_LEN, d.off, d.off + d.len);
    const f = this.reassembledFrame;
    f.len = IPV6_HEADER_LEN + d.len;
    const p = this.pkt;
    p.frame = f;
    p.ipOff = 0;
    p.ipLen = IPV6_HEADER_LEN + d.len;
    p.l4Off = IPV6_HEADER_LEN;
    p.l4Len = d.len;
    // Offload flags described only the last fragment.
    p.l4ChecksumPartial = false;
    p.l4ChecksumValid = false;
    return 'complete';
  }

  private handleIcmpv6(frame: Frame, srcUnspecified: boolean, dstMulticast: boolean, now: number): Ipv6Verdict {
    const ip = this.ip;
    const ext = this.ext;
    const b = frame.buf;
    const icmp = this.icmp;
    const r = icmp.reset(b, ext.offset, ext.length);
    if (r !== null) return this.drop(r);
    switch (icmp.type) {
      case ICMPV6_NEIGHBOR_SOLICITATION:
      case ICMPV6_NEIGHBOR_ADVERTISEMENT:
      case ICMPV6_ROUTER_SOLICITATION:
      case ICMPV6_ROUTER_ADVERTISEMENT: {
        const bad = this.ndp.input(this.link, ip, icmp, srcUnspecified, dstMulticast, now);
        return bad === null ? 'consumed' : this.drop(bad);
      }
      case ICMPV6_MLD_QUERY:
      case ICMPV6_MLD_REPORT:
      case ICMPV6_MLD_DONE:
      case ICMPV6_MLDV2_REPORT:
        this.mldIgnored++;
        return this.drop('mld-ignored');
      case ICMPV6_ECHO_REQUEST: {
        if (srcUnspecified) return this.drop('ipv6-bad-src');
        // As the IPv4 gateway: no answers to multicast echo (amplification).
        if (dstMulticast) return this.drop('icmpv6-echo-multicast');
        if (this.ownIndex(b, ip.dstOffset) === -1) return 'to-nat';
        if (icmp.len < ICMPV6_HEADER_LEN) return this.drop('icmpv6-truncated');
        const checksumTrusted = this.link.l4ChecksumPartial || this.link.l4ChecksumValid;
        if (!checksumTrusted && !icmp.checksumOk(b, ip.srcOffset, ip.dstOffset)) return this.drop('icmpv6-bad-checksum');
        return this.replyEcho(frame, now);
      }
      default:
        if (srcUnspecified || dstMulticast) return this.drop('icmpv6-unhandled');
        if (this.ownIndex(b, ip.dstOffset) !== -1) return this.drop('icmpv6-unhandled');
        return 'to-nat';
    }
  }

  /** Echo reply from the address that was pinged, without the request's extension headers. */
  private replyEcho(frame: Frame, now: number): Ipv6Verdict {
    const ip = this.ip;
    const icmp = this.icmp;
    const icmpLen = icmp.len;
    if (IPV6_HEADER_LEN + icmpLen > this.mtu) return this.drop('icmpv6-echo-too-big');
    const b = frame.buf;
    const off = this.tx.allocTx(now);
    const buf = this.tx.txBuffer;
    emitEthernetHeader(buf, off, 0, this.mac, ETHERTYPE_IPV6);
    this.link.eth.copySrcTo(buf, off);
    const ipOff = off + ETH_HEADER_LEN;
    emitIpv6Header(buf, ipOff, b, ip.dstOffset, b, ip.srcOffset, IPV6_NH_ICMPV6, icmpLen, IPV6_ROUTER_DEFAULTS.hopLimit, ip.trafficClass);
    const icmpOff = ipOff + IPV6_HEADER_LEN;
    const from = icmp.off;
    for (let i = 0; i < icmpLen; i++) buf[icmpOff + i] = b[from + i];
    buf[icmpOff] = ICMPV6_ECHO_REPLY;
    buf[icmpOff + 1] = 0;
    fillIcmpv6Checksum(buf, icmpOff, icmpLen, buf, ipOff + 8, ipOff + 24);
    this.echoReplies++;
    this.tx.transmit(off, ETH_HEADER_LEN + IPV6_HEADER_LEN + icmpLen, now);
    return 'consumed';
  }
}

function isZero16(b: Uint8Array, o: number): boolean {
  for (let i = 0; i < 16; i++) if (b[o + i] !== 0) return false;
  return true;
}

