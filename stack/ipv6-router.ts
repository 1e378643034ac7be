/**
 * The gateway's IPv6 half: neighbour discovery, router advertisements and
 * echo for the router's own addresses, sans-IO. The gateway hands it every
 * IPv6 frame (`handleFrame`); it answers what is its own business and says
 * 'to-nat' for traffic the NAT must carry.
 *
 * How it works
 * - Addresses: the gateway (prefix::2), the DNS address (prefix::3, only
 *   while DNS is enabled) and the link-local fe80::EUI-64 of the gateway MAC.
 *   The prefix must be a /64: SLAAC on Ethernet needs 64-bit identifiers.
 * - Multicast: frames to 33:33:... reach us by flooding. We accept all-nodes,
 *   all-routers and the solicited-node groups of our addresses, and ignore
 *   the rest ('ipv6-mcast-other-group'). MLD reports are counted and ignored:
 *   the bridge floods multicast anyway, so there is no group state to keep.
 * - Neighbor solicitations for our addresses get a solicited NA with the
 *   target link-layer option. A DAD probe (source ::) for one of our
 *   addresses gets an unsolicited NA to ff02::1 (RFC 4861 7.2.4). A probe or
 *   solicitation for any other address gets nothing: guests defend their own.
 * - Router advertisements: M=0, O=0, prefix (on-link, autonomous), MTU,
 *   source link-layer and RDNSS (RFC 8106) options, from the link-local
 *   address with hop limit 255. Unsolicited ones go to ff02::1: an initial
 *   burst of MAX_INITIAL_RTR_ADVERTISEMENTS at most 16 s apart, then one every
 *   [MinRtrAdvInterval, MaxRtrAdvInterval] chosen at random (RFC 4861 6.2.4,
 *   6.2.1). A solicitation from a known address is answered by unicast; one
 *   from :: by multicast, at most one per MIN_DELAY_BETWEEN_RAS.
 * - Neighbours (guest IPv6 -> MAC) are learned from source link-layer options
 *   of NS/RS, target link-layer options of NA, and the source of every frame
 *   with a usable source address. The table is bounded: a hash over the 16
 *   address bytes into preallocated typed arrays; when full, the least
 *   recently seen entry is evicted. Nothing there allocates per packet.
 * - Replies go into a transmit ring allocated once (`txSlots` slots of
 *   mtu+14 bytes) and leave through a reused Frame passed to the sink with
 *   `port` as the source, like the gateway's. Every frame yields at most one
 *   reply, so the ring must be at least as long as the largest input batch.
 * - `handleFrame` returns 'consumed', 'to-nat' or a drop reason, and counts
 *   the reason in `drops` too. After 'to-nat', `ip` and `ext` describe the
 *   packet until the next call. Nothing throws on input.
 */
import { type Frame, type FrameSink, type Port } from './frame.js';
import { emitEthernetHeader, EthernetView, ETH_HEADER_LEN, ETHERTYPE_IPV6 } from './wire/ethernet.js';
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
} from './wire/icmpv6.js';
import {
  IPV6_ALL_NODES,
  ipv6Equal,
  ipv6PrefixMatch,
  isSolicitedNodeOf,
  linkLocalFromMac,
  parsePrefix,
  prefixHost,
  type Ipv6Prefix,
} from './wire/ipv6-address.js';
import { emitIpv6Header, IPV6_HEADER_LEN, IPV6_NH_ICMPV6, Ipv6ExtInfo, Ipv6View, walkExtensionHeaders } from './wire/ipv6.js';
import { isMulticastMac, macToBytes, readMac } from './wire/mac.js';
import {
  checkNdpOption,
  emitLinkLayerOption,
  emitMtuOption,
  emitNeighborAdvertisement,
  emitNeighborSolicitation,
  emitPrefixInfoOption,
  emitRdnssOption,
  emitRouterAdvertisement,
  NA_FLAG_OVERRIDE,
  NA_FLAG_ROUTER,
  NA_FLAG_SOLICITED,
  NDP_HOP_LIMIT,
  NDP_OPT_SOURCE_LLA,
  NDP_OPT_TARGET_LLA,
  NdpMessageView,
  NdpOptionWalker,
  PREFIX_FLAG_AUTONOMOUS,
  PREFIX_FLAG_ON_LINK,
} from './wire/ndp.js';
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

/** RFC 4861 10 router constants. */
export const MAX_INITIAL_RTR_ADVERT_INTERVAL_MS = 16_000;
export const MAX_INITIAL_RTR_ADVERTISEMENTS = 3;
export const MIN_DELAY_BETWEEN_RAS_MS = 3_000;

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
  txSlots: 256,
  /** Hop limit advertised in RAs and used for what the router originates (Linux's default). */
  hopLimit: 64,
} as const;

export interface Ipv6RouterOptions {
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
  txSlots?: number;
  /** Uniform [0, 1) source for RA jitter (tests pass a fixed one). */
  random?: () => number;
}

export type Ipv6Verdict = 'consumed' | 'to-nat' | DropReason;

export interface Ipv6RouterStats {
  neighborAdvertsSent: number;
  dadDefended: number;
  routerAdvertsSent: number;
  solicitationsAnswered: number;
  echoReplies: number;
  mldIgnored: number;
  neighbors: number;
  solicitationsSent: number;
  drops: DropCounts;
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/**
 * Bounded IPv6 -> MAC map: chained hash over preallocated arrays. Keys are
 * compared as bytes in place; nothing allocates after construction.
 */
export class Ipv6NeighborTable {
  private readonly addrs: Uint8Array;
  /** 6 bytes per entry: a MAC kept as a 48-bit double would be boxed on its way in and out. */
  private readonly macs: Uint8Array;
  private readonly seen: Float64Array;
  private readonly next: Int32Array;
  private readonly buckets: Int32Array;
  private readonly mask: number;
  private used = 0;
  private free = -1;
  size = 0;

  constructor(readonly capacity: number) {
    this.addrs = new Uint8Array(capacity * 16);
    this.macs = new Uint8Array(capacity * 6);
    this.seen = new Float64Array(capacity);
    this.next = new Int32Array(capacity).fill(-1);
    let b = 1;
    while (b < capacity * 2) b <<= 1;
    this.buckets = new Int32Array(b).fill(-1);
    this.mask = b - 1;
  }

  private hash(a: Uint8Array, off: number): number {
    let h = FNV_OFFSET;
    for (let i = 0; i < 16; i++) h = Math.imul(h ^ a[off + i], FNV_PRIME);
    return (h >>> 0) & this.mask;
  }

  private find(a: Uint8Array, off: number, bucket: number): number {
    const addrs = this.addrs;
    for (let e = this.buckets[bucket]; e !== -1; e = this.next[e]) {
      if (ipv6Equal(addrs, e * 16, a, off)) return e;
    }
    return -1;
  }

  /** The MAC of a[off, +16) as a 48-bit number, or -1. */
  lookup(a: Uint8Array, off: number): number {
    const e = this.find(a, off, this.hash(a, off));
    return e === -1 ? -1 : readMac(this.macs, e * 6);
  }

  /** Copies the MAC of a[off, +16) to out[outOff, +6); false when unknown. Allocation-free. */
  copyMac(a: Uint8Array, off: number, out: Uint8Array, outOff: number): boolean {
    const e = this.find(a, off, this.hash(a, off));
    if (e === -1) return false;
    const m = this.macs;
    for (let i = 0; i < 6; i++) out[outOff + i] = m[e * 6 + i];
    return true;
  }

  /** Remembers a[off, +16) at the MAC mac[macOff, +6). */
  learn(a: Uint8Array, off: number, mac: Uint8Array, macOff: number, now: number): void {
    const bucket = this.hash(a, off);
    let e = this.find(a, off, bucket);
    if (e !== -1) {
      for (let i = 0; i < 6; i++) this.macs[e * 6 + i] = mac[macOff + i];
      this.seen[e] = now;
      return;
    }
    if (this.free !== -1) {
      e = this.free;
      this.free = this.next[e];
    } else if (this.used < this.capacity) {
      e = this.used++;
    } else {
      // Full: evict the least recently seen. O(capacity), only when a new address appears in a full table.
      let oldest = 0;
      for (let i = 1; i < this.capacity; i++) if (this.seen[i] < this.seen[oldest]) oldest = i;
      this.remove(oldest);
      e = this.free;
      this.free = this.next[e];
    }
    const addrs = this.addrs;
    for (let i = 0; i < 16; i++) addrs[e * 16 + i] = a[off + i];
    for (let i = 0; i < 6; i++) this.macs[e * 6 + i] = mac[macOff + i];
    this.seen[e] = now;
    this.next[e] = this.buckets[bucket];
    this.buckets[bucket] = e;
    this.size++;
  }

  private remove(e: number): void {
    const bucket = this.hash(this.addrs, e * 16);
    let prev = -1;
    for (let i = this.buckets[bucket]; i !== -1; prev = i, i = this.next[i]) {
      if (i !== e) continue;
      if (prev === -1) this.buckets[bucket] = this.next[i];
      else this.next[prev] = this.next[i];
      this.next[e] = this.free;
      this.free = e;
      this.size--;
      return;
    }
  }
}

const ALL_NODES_MAC = Uint8Array.of(0x33, 0x33, 0, 0, 0, 1);

// Offsets of our addresses in `own`.
const OWN_GW = 0;
const OWN_DNS = 16;
const OWN_LL = 32;

export class Ipv6Router {
  readonly prefix: Uint8Array;
  readonly prefixLength = 64;
  readonly gatewayAddress: Uint8Array;
  readonly dnsAddress: Uint8Array;
  readonly linkLocalAddress: Uint8Array;
  readonly mac: number;
  readonly mtu: number;
  readonly dnsEnabled: boolean;
  readonly routerLifetimeS: number;
  readonly maxRtrAdvIntervalMs: number;
  readonly minRtrAdvIntervalMs: number;
  readonly validLifetimeS: number;
  readonly preferredLifetimeS: number;
  readonly rdnssLifetimeS: number;

  readonly txBuffer: Buffer;
  readonly txSlotSize: number;
  readonly txSlots: number;
  private txNext = 0;
  private readonly txFrame: Frame;

  /** After 'to-nat': the packet's IPv6 header and its upper layer. */
  readonly ip = new Ipv6View();
  readonly ext = new Ipv6ExtInfo();
  readonly eth = new EthernetView();
  /** After 'to-nat': NEEDS_CSUM (the L4 checksum holds only the pseudo-header sum) and DATA_VALID. */
  l4ChecksumPartial = false;
  l4ChecksumValid = false;
  /** After 'to-nat': VIRTIO_NET_HDR_GSO_* without ECN, and gso_size. */
  gsoType = VIRTIO_NET_HDR_GSO_NONE;
  gsoSize = 0;

  readonly neighbors: Ipv6NeighborTable;
  /**
   * Told of every neighbour advertisement with a target link-layer address
   * (address at b[off, +16), MAC at b[macOff, +6)): the NAT waits on these
   * when it solicits a guest that never spoke (port forwards).
   */
  neighborListener: ((b: Uint8Array, off: number, macOff: number, now: number) => void) | null = null;
  private solicitationsSent = 0;
  private readonly dropped = newDropCounters();
  /** Drops by reason so far (allocates: for stats and tests). */
  get drops(): DropCounts {
    return this.dropped.snapshot();
  }

  private readonly own = new Uint8Array(48);
  private readonly solicitScratch = new Uint8Array(16);
  private readonly ownCount: number;
  private readonly icmp = new Icmpv6View();
  private readonly ndp = new NdpMessageView();
  private readonly opts = new NdpOptionWalker();
  private readonly vnetHdr = new VnetHeaderView();
  private readonly random: () => number;

  private nextRaAt = 0;
  private initialLeft = MAX_INITIAL_RTR_ADVERTISEMENTS;
  private lastMulticastRaAt = -Infinity;
  /** Set by scanOptions: offset in the frame of the link-layer option's MAC, or -1. */
  private llaOff = -1;

  private neighborAdvertsSent = 0;
  private dadDefended = 0;
  private routerAdvertsSent = 0;
  private solicitationsAnswered = 0;
  private echoReplies = 0;
  private mldIgnored = 0;

  constructor(
    options: Ipv6RouterOptions,
    private readonly sink: FrameSink,
    /** The gateway port: the `from` of every frame the router emits. */
    private readonly port: Port,
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
    const slots = options.txSlots ?? d.txSlots;
    if (!Number.isInteger(slots) || slots < 1) throw new RangeError(`txSlots must be a positive integer, got ${slots}`);

    this.prefix = p.address;
    this.mac = mac;
    this.mtu = mtu;
    this.dnsEnabled = options.dnsEnabled ?? d.dnsEnabled;
    this.routerLifetimeS = lifetime;
    this.maxRtrAdvIntervalMs = maxInt;
    // RFC 4861 6.2.1: MinRtrAdvInterval defaults to 0.33 * MaxRtrAdvInterval when that is 9 s or more.
    this.minRtrAdvIntervalMs = maxInt >= 9000 ? Math.round(maxInt * 0.33) : maxInt;
    this.validLifetimeS = valid;
    this.preferredLifetimeS = preferred;
    this.rdnssLifetimeS = rdnss;
    this.random = options.random ?? Math.random;
    this.gatewayAddress = prefixHost(p.address, 2);
    this.dnsAddress = prefixHost(p.address, 3);
    this.linkLocalAddress = linkLocalFromMac(macToBytes(mac));
    this.own.set(this.gatewayAddress, OWN_GW);
    this.own.set(this.dnsAddress, OWN_DNS);
    this.own.set(this.linkLocalAddress, OWN_LL);
    this.ownCount = 3;
    this.neighbors = new Ipv6NeighborTable(tableSize);
    this.txSlots = slots;
    this.txSlotSize = mtu + ETH_HEADER_LEN;
    this.txBuffer = Buffer.alloc(slots * this.txSlotSize);
    this.txFrame = { buf: this.txBuffer, off: 0, len: 0, vnet: false };
  }

  /** One of the router's addresses (DNS only while enabled). */
  isLocalAddress(a: Uint8Array, off: number): boolean {
    return this.ownIndex(a, off) !== -1;
  }

  /** Offset in `own` of the address equal to a[off, +16), or -1. */
  private ownIndex(a: Uint8Array, off: number): number {
    const own = this.own;
    for (let k = 0; k < this.ownCount; k++) {
      const o = k * 16;
      if (o === OWN_DNS && !this.dnsEnabled) continue;
      if (ipv6Equal(own, o, a, off)) return o;
    }
    return -1;
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
    return this.nextRaAt;
  }

  /** Sends the unsolicited RA when it is due and schedules the next. */
  poll(now: number): void {
    if (now < this.nextRaAt) return;
    this.sendRa(IPV6_ALL_NODES, 0, ALL_NODES_MAC, 0, now);
    this.lastMulticastRaAt = now;
    this.scheduleNextRa(now);
  }

  private scheduleNextRa(now: number): void {
    let delay = this.minRtrAdvIntervalMs + this.random() * (this.maxRtrAdvIntervalMs - this.minRtrAdvIntervalMs);
    if (this.initialLeft > 0) {
      this.initialLeft--;
      if (delay > MAX_INITIAL_RTR_ADVERT_INTERVAL_MS) delay = MAX_INITIAL_RTR_ADVERT_INTERVAL_MS;
    }
    this.nextRaAt = now + Math.round(delay);
  }

  stats(): Ipv6RouterStats {
    return {
      neighborAdvertsSent: this.neighborAdvertsSent,
      dadDefended: this.dadDefended,
      routerAdvertsSent: this.routerAdvertsSent,
      solicitationsAnswered: this.solicitationsAnswered,
      echoReplies: this.echoReplies,
      mldIgnored: this.mldIgnored,
      neighbors: this.neighbors.size,
      solicitationsSent: this.solicitationsSent,
      drops: this.dropped.snapshot(),
    };
  }

  private drop(reason: DropReason): DropReason {
    this.dropped.add(reason);
    return reason;
  }

  private allocTx(): number {
    const off = this.txNext * this.txSlotSize;
    this.txNext = this.txNext + 1 === this.txSlots ? 0 : this.txNext + 1;
    return off;
  }

  private transmit(off: number, len: number, now: number): void {
    const f = this.txFrame;
    f.buf = this.txBuffer;
    f.off = off;
    f.len = len;
    f.vnet = false;
    this.port.counters.txFrames++;
    this.port.counters.txBytes += len;
    this.sink.input(this.port, f, now);
  }

  /** Is the destination MAC one of the groups we listen to? (dst is 33:33:..., checked by the caller.) */
  private acceptsGroupMac(b: Uint8Array, o: number): boolean {
    const g0 = b[o + 2];
    const g1 = b[o + 3];
    const g2 = b[o + 4];
    const g3 = b[o + 5];
    if (g0 === 0 && g1 === 0 && g2 === 0 && (g3 === 1 || g3 === 2)) return true;
    if (g0 !== 0xff) return false;
    const own = this.own;
    for (let k = 0; k < this.ownCount; k++) {
      const a = k * 16;
      if (a === OWN_DNS && !this.dnsEnabled) continue;
      if (own[a + 13] === g1 && own[a + 14] === g2 && own[a + 15] === g3) return true;
    }
    return false;
  }

  /** Is the IPv6 destination one of our multicast groups? */
  private acceptsGroup(b: Uint8Array, o: number): boolean {
    if (b[o] !== 0xff || b[o + 1] !== 0x02) return false;
    let zero = true;
    for (let i = 2; i < 15; i++) if (b[o + i] !== 0) zero = false;
    if (zero && (b[o + 15] === 1 || b[o + 15] === 2)) return true;
    const own = this.own;
    for (let k = 0; k < this.ownCount; k++) {
      const a = k * 16;
      if (a === OWN_DNS && !this.dnsEnabled) continue;
      if (isSolicitedNodeOf(b, o, own, a)) return true;
    }
    return false;
  }

  /**
   * Takes one IPv6 frame (Ethernet at frame.off; a virtio-net header before
   * it when frame.vnet). Returns 'consumed', 'to-nat', or a drop reason.
   */
  handleFrame(frame: Frame, now: number): Ipv6Verdict {
    const eth = this.eth;
    const bad = eth.reset(frame.buf, frame.off, frame.len);
    if (bad !== null) return this.drop(bad);
    if (eth.etherType !== ETHERTYPE_IPV6) return this.drop('not-ipv6');
    const b = frame.buf;
    const eo = frame.off;
    if (eth.srcIsMulticast) return this.drop('eth-src-multicast');
    const l2Multicast = eth.dstIsMulticast;
    if (l2Multicast) {
      if (b[eo] !== 0x33 || b[eo + 1] !== 0x33) return this.drop('ipv6-l2-broadcast');
      if (!this.acceptsGroupMac(b, eo)) return this.drop('ipv6-mcast-other-group');
    } else if (!eth.dstIs(this.mac)) {
      return this.drop('not-for-us');
    }

    this.l4ChecksumPartial = false;
    this.l4ChecksumValid = false;
    this.gsoType = VIRTIO_NET_HDR_GSO_NONE;
    this.gsoSize = 0;
    if (frame.vnet) {
      if (frame.off < VIRTIO_NET_HDR_LEN) return this.drop('vnet-truncated');
      const v = this.vnetHdr.reset(frame.buf, frame.off - VIRTIO_NET_HDR_LEN);
      const flags = v.flags;
      this.l4ChecksumPartial = (flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0;
      this.l4ChecksumValid = (flags & VIRTIO_NET_HDR_F_DATA_VALID) !== 0;
      this.gsoType = v.gsoType & ~VIRTIO_NET_HDR_GSO_ECN;
      this.gsoSize = v.gsoSize;
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
    if (dstMulticast && !this.acceptsGroup(b, dof)) return this.drop('ipv6-mcast-other-group');
    // Someone on the link using one of our addresses as its source is a conflict, not a neighbour.
    if (!srcUnspecified && this.ownIndex(b, so) !== -1) return this.drop('ipv6-src-is-ours');

    const ext = this.ext;
    r = walkExtensionHeaders(ip, ext);
    if (r !== null) return this.drop(r);

    if (!srcUnspecified && this.usableNeighborSource(b, so)) this.neighbors.learn(b, so, b, eo + 6, now);

    if (this.gsoType !== VIRTIO_NET_HDR_GSO_NONE) {
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
    // Fragments go to the NAT, which reassembles them.
    // Link-local destinations other than ours have no route through the gateway.
    if (b[dof] === 0xfe && (b[dof + 1] & 0xc0) === 0x80 && !ipv6Equal(b, dof, this.own, OWN_LL)) {
      return this.drop('ipv6-link-local-not-ours');
    }
    return 'to-nat';
  }

  /** Sources worth remembering: link-local or in our prefix, unicast. */
  private usableNeighborSource(b: Uint8Array, o: number): boolean {
    if (b[o] === 0xfe && (b[o + 1] & 0xc0) === 0x80) return true;
    return ipv6PrefixMatch(b, o, this.prefix, 0, 64);
  }

  private handleIcmpv6(frame: Frame, srcUnspecified: boolean, dstMulticast: boolean, now: number): Ipv6Verdict {
    const ip = this.ip;
    const ext = this.ext;
    const b = frame.buf;
    const icmp = this.icmp;
    const r = icmp.reset(b, ext.offset, ext.length);
    if (r !== null) return this.drop(r);
    const type = icmp.type;
    const checksumTrusted = this.l4ChecksumPartial || this.l4ChecksumValid;
    switch (type) {
      case ICMPV6_NEIGHBOR_SOLICITATION:
      case ICMPV6_NEIGHBOR_ADVERTISEMENT:
      case ICMPV6_ROUTER_SOLICITATION:
      case ICMPV6_ROUTER_ADVERTISEMENT: {
        if (ip.hopLimit !== NDP_HOP_LIMIT) return this.drop('ndp-bad-hop-limit');
        if (!checksumTrusted && !icmp.checksumOk(b, ip.srcOffset, ip.dstOffset)) return this.drop('icmpv6-bad-checksum');
        const ndp = this.ndp;
        const bad = ndp.reset(b, ext.offset, ext.length);
        if (bad !== null) return this.drop(bad);
        if (type === ICMPV6_NEIGHBOR_SOLICITATION) return this.handleNs(frame, srcUnspecified, dstMulticast, now);
        if (type === ICMPV6_NEIGHBOR_ADVERTISEMENT) {
          // RFC 4861 7.1.2: a solicited NA is never sent to a group.
          if (dstMulticast && (ndp.flags & NA_FLAG_SOLICITED) !== 0) return this.drop('ndp-na-solicited-multicast');
          return this.handleNa(srcUnspecified, now);
        }
        if (type === ICMPV6_ROUTER_SOLICITATION) return this.handleRs(frame, srcUnspecified, now);
        // Another router on the link: we do not listen to peers.
        return this.drop('ndp-ra-ignored');
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
        if (!checksumTrusted && !icmp.checksumOk(b, ip.srcOffset, ip.dstOffset)) return this.drop('icmpv6-bad-checksum');
        return this.replyEcho(frame, now);
      }
      default:
        if (srcUnspecified || dstMulticast) return this.drop('icmpv6-unhandled');
        if (this.ownIndex(b, ip.dstOffset) !== -1) return this.drop('icmpv6-unhandled');
        return 'to-nat';
    }
  }

  /**
   * Walks the NDP options of the message in `ndp`: every option must be
   * sound. Returns a drop reason or null; sets llaOff to the offset of
   * the MAC in the (last) option of type `llaType`, or -1. A multicast or
   * zero MAC there is malformed.
   */
  private scanOptions(llaType: number): DropReason | null {
    const w = this.opts.reset(this.ndp.buf, this.ndp.optionsOffset, this.ndp.optionsLength);
    this.llaOff = -1;
    while (w.next()) {
      const bad = checkNdpOption(w);
      if (bad !== null) return bad;
      if (w.type === llaType) this.llaOff = w.offset + 2;
    }
    if (w.error !== null) return w.error;
    const o = this.llaOff;
    if (o !== -1) {
      const b = this.ndp.buf;
      if ((b[o] & 1) !== 0 || (b[o] | b[o + 1] | b[o + 2] | b[o + 3] | b[o + 4] | b[o + 5]) === 0) return 'ndp-bad-lla';
    }
    return null;
  }

  private handleNs(frame: Frame, srcUnspecified: boolean, dstMulticast: boolean, now: number): Ipv6Verdict {
    const ip = this.ip;
    const b = frame.buf;
    const t = this.ndp.targetOffset;
    if (b[t] === 0xff) return this.drop('ndp-ns-multicast-target');
    const bad = this.scanOptions(NDP_OPT_SOURCE_LLA);
    if (bad !== null) return this.drop(bad);
    const slla = this.llaOff;
    if (srcUnspecified) {
      // RFC 4861 7.1.1: a DAD probe goes to the solicited-node group and carries no source link-layer option.
      if (!dstMulticast || !isSolicitedNodeOf(b, ip.dstOffset, b, t)) return this.drop('ndp-dad-bad-dst');
      if (slla !== -1) return this.drop('ndp-dad-with-slla');
    } else if (slla !== -1 && this.usableNeighborSource(b, ip.srcOffset)) {
      this.neighbors.learn(b, ip.srcOffset, b, slla, now);
    }
    const k = this.ownIndex(b, t);
    // Not ours: the guest that owns it answers; a guest's DAD probe must meet silence from us.
    if (k === -1) return this.drop('ndp-ns-not-ours');

    const off = this.allocTx();
    const buf = this.txBuffer;
    const ipOff = off + ETH_HEADER_LEN;
    const icmpOff = ipOff + IPV6_HEADER_LEN;
    const len = emitNeighborAdvertisement(buf, icmpOff, 0, this.own, k);
    const total = len + emitLinkLayerOption(buf, icmpOff + len, NDP_OPT_TARGET_LLA, this.mac);
    if (srcUnspecified) {
      // RFC 4861 7.2.4: answer a DAD probe to all-nodes, not solicited.
      buf[icmpOff + 4] = NA_FLAG_ROUTER | NA_FLAG_OVERRIDE;
      emitEthernetHeader(buf, off, 0x3333_0000_0001, this.mac, ETHERTYPE_IPV6);
      emitIpv6Header(buf, ipOff, this.own, k, IPV6_ALL_NODES, 0, IPV6_NH_ICMPV6, total, NDP_HOP_LIMIT);
      this.dadDefended++;
    } else {
      buf[icmpOff + 4] = NA_FLAG_ROUTER | NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE;
      // Reply to the link-layer address the solicitation names, else to the frame's sender.
      emitEthernetHeader(buf, off, 0, this.mac, ETHERTYPE_IPV6);
      if (slla === -1) this.eth.copySrcTo(buf, off);
      else for (let i = 0; i < 6; i++) buf[off + i] = b[slla + i];
      emitIpv6Header(buf, ipOff, this.own, k, b, ip.srcOffset, IPV6_NH_ICMPV6, total, NDP_HOP_LIMIT);
    }
    fillIcmpv6Checksum(buf, icmpOff, total, buf, ipOff + 8, ipOff + 24);
    this.neighborAdvertsSent++;
    this.transmit(off, ETH_HEADER_LEN + IPV6_HEADER_LEN + total, now);
    return 'consumed';
  }

  private handleNa(srcUnspecified: boolean, now: number): Ipv6Verdict {
    if (srcUnspecified) return this.drop('ndp-na-bad-src');
    const ndp = this.ndp;
    const b = ndp.buf;
    const t = ndp.targetOffset;
    if (b[t] === 0xff) return this.drop('ndp-na-multicast-target');
    const bad = this.scanOptions(NDP_OPT_TARGET_LLA);
    if (bad !== null) return this.drop(bad);
    if (this.ownIndex(b, t) !== -1) return this.drop('ndp-na-conflict');
    const tlla = this.llaOff;
    if (tlla !== -1 && this.usableNeighborSource(b, t)) {
      this.neighbors.learn(b, t, b, tlla, now);
      this.neighborListener?.(b, t, tlla, now);
    }
    return 'consumed';
  }

  /**
   * Asks for the MAC of target[tOff, +16) with a neighbour solicitation to
   * its solicited-node group, from the gateway address (RFC 4861 7.2.2).
   */
  sendNeighborSolicitation(target: Uint8Array, tOff: number, now: number): void {
    const off = this.allocTx();
    const buf = this.txBuffer;
    const ipOff = off + ETH_HEADER_LEN;
    const icmpOff = ipOff + IPV6_HEADER_LEN;
    const len = emitNeighborSolicitation(buf, icmpOff, target, tOff);
    const total = len + emitLinkLayerOption(buf, icmpOff + len, NDP_OPT_SOURCE_LLA, this.mac);
    // Destination ff02::1:ffXX:XXXX, at MAC 33:33:ff:XX:XX:XX.
    const dst = this.solicitScratch;
    dst.fill(0);
    dst[0] = 0xff;
    dst[1] = 0x02;
    dst[11] = 0x01;
    dst[12] = 0xff;
    dst[13] = target[tOff + 13];
    dst[14] = target[tOff + 14];
    dst[15] = target[tOff + 15];
    const mac = 0x3333_ff00_0000 + target[tOff + 13] * 0x10000 + target[tOff + 14] * 0x100 + target[tOff + 15];
    emitEthernetHeader(buf, off, mac, this.mac, ETHERTYPE_IPV6);
    emitIpv6Header(buf, ipOff, this.own, OWN_GW, dst, 0, IPV6_NH_ICMPV6, total, NDP_HOP_LIMIT);
    fillIcmpv6Checksum(buf, icmpOff, total, buf, ipOff + 8, ipOff + 24);
    this.solicitationsSent++;
    this.transmit(off, ETH_HEADER_LEN + IPV6_HEADER_LEN + total, now);
  }

  private handleRs(frame: Frame, srcUnspecified: boolean, now: number): Ipv6Verdict {
    const bad = this.scanOptions(NDP_OPT_SOURCE_LLA);
    if (bad !== null) return this.drop(bad);
    const slla = this.llaOff;
    const ip = this.ip;
    const b = frame.buf;
    if (srcUnspecified) {
      // RFC 4861 6.1.1: no source link-layer option from ::.
      if (slla !== -1) return this.drop('ndp-rs-unspecified-with-slla');
      if (now - this.lastMulticastRaAt < MIN_DELAY_BETWEEN_RAS_MS) return this.drop('ndp-rs-rate-limited');
      this.sendRa(IPV6_ALL_NODES, 0, ALL_NODES_MAC, 0, now);
      this.lastMulticastRaAt = now;
      this.solicitationsAnswered++;
      return 'consumed';
    }
    let macOff = frame.off + 6;
    if (slla !== -1) {
      macOff = slla;
      if (this.usableNeighborSource(b, ip.srcOffset)) this.neighbors.learn(b, ip.srcOffset, b, slla, now);
    }
    this.sendRa(b, ip.srcOffset, b, macOff, now);
    this.solicitationsAnswered++;
    return 'consumed';
  }

  /** Builds and sends an RA to dst[dstOff, +16) at the MAC mac[macOff, +6). */
  private sendRa(dst: Uint8Array, dstOff: number, mac: Uint8Array, macOff: number, now: number): void {
    const off = this.allocTx();
    const buf = this.txBuffer;
    const ipOff = off + ETH_HEADER_LEN;
    const icmpOff = ipOff + IPV6_HEADER_LEN;
    let p = icmpOff;
    p += emitRouterAdvertisement(buf, p, IPV6_ROUTER_DEFAULTS.hopLimit, 0, this.routerLifetimeS, 0, 0);
    p += emitLinkLayerOption(buf, p, NDP_OPT_SOURCE_LLA, this.mac);
    p += emitMtuOption(buf, p, this.mtu);
    p += emitPrefixInfoOption(
      buf,
      p,
      this.prefix,
      0,
      this.prefixLength,
      PREFIX_FLAG_ON_LINK | PREFIX_FLAG_AUTONOMOUS,
      this.validLifetimeS,
      this.preferredLifetimeS,
    );
    if (this.dnsEnabled) p += emitRdnssOption(buf, p, this.rdnssLifetimeS, this.own, OWN_DNS, 1);
    const total = p - icmpOff;
    emitIpv6Header(buf, ipOff, this.own, OWN_LL, dst, dstOff, IPV6_NH_ICMPV6, total, NDP_HOP_LIMIT);
    emitEthernetHeader(buf, off, 0, this.mac, ETHERTYPE_IPV6);
    for (let i = 0; i < 6; i++) buf[off + i] = mac[macOff + i];
    fillIcmpv6Checksum(buf, icmpOff, total, buf, ipOff + 8, ipOff + 24);
    this.routerAdvertsSent++;
    this.transmit(off, ETH_HEADER_LEN + IPV6_HEADER_LEN + total, now);
  }

  /** Echo reply from the address that was pinged, without the request's extension headers. */
  private replyEcho(frame: Frame, now: number): Ipv6Verdict {
    const ip = this.ip;
    const icmp = this.icmp;
    const icmpLen = icmp.len;
    if (IPV6_HEADER_LEN + icmpLen > this.mtu) return this.drop('icmpv6-echo-too-big');
    const b = frame.buf;
    const off = this.allocTx();
    const buf = this.txBuffer;
    emitEthernetHeader(buf, off, 0, this.mac, ETHERTYPE_IPV6);
    this.eth.copySrcTo(buf, off);
    const ipOff = off + ETH_HEADER_LEN;
    emitIpv6Header(buf, ipOff, b, ip.dstOffset, b, ip.srcOffset, IPV6_NH_ICMPV6, icmpLen, IPV6_ROUTER_DEFAULTS.hopLimit, ip.trafficClass);
    const icmpOff = ipOff + IPV6_HEADER_LEN;
    const from = icmp.off;
    for (let i = 0; i < icmpLen; i++) buf[icmpOff + i] = b[from + i];
    buf[icmpOff] = ICMPV6_ECHO_REPLY;
    buf[icmpOff + 1] = 0;
    fillIcmpv6Checksum(buf, icmpOff, icmpLen, buf, ipOff + 8, ipOff + 24);
    this.echoReplies++;
    this.transmit(off, ETH_HEADER_LEN + IPV6_HEADER_LEN + icmpLen, now);
    return 'consumed';
  }
}

function isZero16(b: Uint8Array, o: number): boolean {
  for (let i = 0; i < 16; i++) if (b[o + i] !== 0) return false;
  return true;
}

