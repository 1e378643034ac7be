/**
 * Neighbour discovery (RFC 4861) for the gateway's IPv6 addresses, sans-IO:
 * the IPv6 twin of ARP (stack/ip4/arp.ts), held by the IPv6 layer.
 *
 * How it works
 * - `input` takes an NDP message (NS, NA, RS or RA) from a packet the IPv6
 *   layer has already checked (addresses, multicast filter, extension
 *   headers). Every message must come with hop limit 255, a sound ICMPv6
 *   checksum (unless the virtio-net header vouches for it) and sound
 *   options; a multicast or zero MAC in a link-layer option is malformed.
 *   It returns null when the message was taken, else the drop reason, which
 *   the layer counts.
 * - Neighbor solicitations for our addresses get a solicited NA with the
 *   target link-layer option, to the MAC the NS names or else to the frame's
 *   sender. A DAD probe (source ::, sent to the target's solicited-node
 *   group, without a source link-layer option) for one of our addresses gets
 *   an unsolicited NA to ff02::1 (RFC 4861 7.2.4). A probe or solicitation
 *   for any other address gets nothing: guests defend their own.
 * - Neighbor advertisements teach the neighbour table (the layer's,
 *   stack/ip6/neighbor-table.ts) the target's MAC and are told to
 *   `neighborListener`; one for our own address is a conflict, counted and
 *   ignored. The source link-layer options of NS and RS teach it too, from
 *   usable sources only (link-local or in the prefix).
 * - Router solicitations are checked here and answered by `adverts`
 *   (stack/ip6/router-adverts.ts); another router's advertisements are
 *   ignored.
 * - The multicast filter: the groups the gateway listens to are all-nodes,
 *   all-routers and the solicited-node groups of its addresses
 *   (`acceptsGroupMac` for 33:33:..., `acceptsGroup` for ff02::...). MLD
 *   reports are not NDP's: the bridge floods multicast anyway, so there is
 *   no group membership to keep.
 * - `sendSolicitation` asks for the MAC of a guest that never spoke (port
 *   forwards), from the gateway address to the target's solicited-node group.
 * - Replies are built in the gateway's transmit arena (LinkTx); views are
 *   fields: nothing allocates per packet.
 */
import type { DropReason } from '../drop-reasons.js';
import type { LinkInput, LinkTx } from '../link.js';
import { emitEthernetHeader, ETH_HEADER_LEN, ETHERTYPE_IPV6 } from '../wire/ethernet.js';
import { fillIcmpv6Checksum, ICMPV6_NEIGHBOR_ADVERTISEMENT, ICMPV6_NEIGHBOR_SOLICITATION, ICMPV6_ROUTER_SOLICITATION, type Icmpv6View } from '../wire/icmpv6.js';
import { IPV6_ALL_NODES, isSolicitedNodeOf } from '../wire/ipv6-address.js';
import { emitIpv6Header, IPV6_HEADER_LEN, IPV6_NH_ICMPV6, type Ipv6View } from '../wire/ipv6.js';
import {
  checkNdpOption,
  emitLinkLayerOption,
  emitNeighborAdvertisement,
  emitNeighborSolicitation,
  NA_FLAG_OVERRIDE,
  NA_FLAG_ROUTER,
  NA_FLAG_SOLICITED,
  NDP_HOP_LIMIT,
  NDP_OPT_SOURCE_LLA,
  NDP_OPT_TARGET_LLA,
  NdpMessageView,
  NdpOptionWalker,
} from '../wire/ndp.js';
import type { Ipv6NeighborTable } from './neighbor-table.js';
import type { RouterAdverts } from './router-adverts.js';

/** The IPv6 identity NDP answers for (the IPv6 layer). */
export interface NdpOwner {
  /** The gateway's addresses, 16 bytes each, at the offsets `ownOffsets` lists. */
  readonly own: Uint8Array;
  /** Offsets in `own` of the addresses in use (the DNS address only while DNS is enabled). */
  readonly ownOffsets: readonly number[];
  /** Offset in `own` of the gateway address (prefix::2), the source of solicitations. */
  readonly gatewayOffset: number;
  /** Offset in `own` of the address in use equal to a[off, +16), or -1. */
  ownIndex(a: Uint8Array, off: number): number;
  /** Sources worth remembering: link-local or in the prefix, unicast. */
  usableNeighborSource(b: Uint8Array, off: number): boolean;
}

export class Ndp {
  /**
   * Told of every neighbour advertisement with a target link-layer address
   * (address at b[off, +16), MAC at b[macOff, +6)): the NAT waits on these
   * when it solicits a guest that never spoke (port forwards).
   */
  neighborListener: ((b: Uint8Array, off: number, macOff: number, now: number) => void) | null = null;
  neighborAdvertsSent = 0;
  dadDefended = 0;
  solicitationsSent = 0;

  private readonly ndp = new NdpMessageView();
  private readonly opts = new NdpOptionWalker();
  /** Set by scanOptions: offset in the frame of the link-layer option's MAC, or -1. */
  private llaOff = -1;
  private readonly solicitScratch = new Uint8Array(16);

  constructor(
    private readonly mac: number,
    private readonly owner: NdpOwner,
    private readonly neighbors: Ipv6NeighborTable,
    private readonly adverts: RouterAdverts,
    private readonly tx: LinkTx,
  ) {}

  /**
   * One NDP message (`icmp`, of type NS, NA, RS or RA) in the IPv6 packet
   * `ip` of the frame `link`, whose source is :: when `srcUnspecified` and
   * whose destination is a group when `dstMulticast`. Returns null when
   * answered or learned from, else the drop reason.
   */
  input(link: LinkInput, ip: Ipv6View, icmp: Icmpv6View, srcUnspecified: boolean, dstMulticast: boolean, now: number): DropReason | null {
    if (ip.hopLimit !== NDP_HOP_LIMIT) return 'ndp-bad-hop-limit';
    const b = icmp.buf;
    if (!link.l4ChecksumPartial && !link.l4ChecksumValid && !icmp.checksumOk(b, ip.srcOffset, ip.dstOffset)) return 'icmpv6-bad-checksum';
    const ndp = this.ndp;
    const bad = ndp.reset(b, icmp.off, icmp.len);
    if (bad !== null) return bad;
    const type = icmp.type;
    if (type === ICMPV6_NEIGHBOR_SOLICITATION) return this.handleNs(link, ip, srcUnspecified, dstMulticast, now);
    if (type === ICMPV6_NEIGHBOR_ADVERTISEMENT) {
      // RFC 4861 7.1.2: a solicited NA is never sent to a group.
      if (dstMulticast && (ndp.flags & NA_FLAG_SOLICITED) !== 0) return 'ndp-na-solicited-multicast';
      return this.handleNa(srcUnspecified, now);
    }
    if (type === ICMPV6_ROUTER_SOLICITATION) return this.handleRs(link, ip, srcUnspecified, now);
    // Another router on the link: we do not listen to peers.
    return 'ndp-ra-ignored';
  }

  /** Is the destination MAC b[o, +6) one of the groups we listen to? (It is 33:33:..., checked by the caller.) */
  acceptsGroupMac(b: Uint8Array, o: number): boolean {
    const g0 = b[o + 2];
    const g1 = b[o + 3];
    const g2 = b[o + 4];
    const g3 = b[o + 5];
    if (g0 === 0 && g1 === 0 && g2 === 0 && (g3 === 1 || g3 === 2)) return true;
    if (g0 !== 0xff) return false;
    const own = this.owner.own;
    const offs = this.owner.ownOffsets;
    for (let k = 0; k < offs.length; k++) {
      const a = offs[k];
      if (own[a + 13] === g1 && own[a + 14] === g2 && own[a + 15] === g3) return true;
    }
    return false;
  }

  /** Is the IPv6 destination b[o, +16) one of our multicast groups? */
  acceptsGroup(b: Uint8Array, o: number): boolean {
    if (b[o] !== 0xff || b[o + 1] !== 0x02) return false;
    let zero = true;
    for (let i = 2; i < 15; i++) if (b[o + i] !== 0) zero = false;
    if (zero && (b[o + 15] === 1 || b[o + 15] === 2)) return true;
    const own = this.owner.own;
    const offs = this.owner.ownOffsets;
    for (let k = 0; k < offs.length; k++) {
      if (isSolicitedNodeOf(b, o, own, offs[k])) return true;
    }
    return false;
  }

  /**
   * Asks for the MAC of target[tOff, +16) with a neighbour solicitation to
   * its solicited-node group, from the gateway address (RFC 4861 7.2.2).
   */
  sendSolicitation(target: Uint8Array, tOff: number, now: number): void {
    const off = this.tx.allocTx(now);
    const buf = this.tx.txBuffer;
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
    emitIpv6Header(buf, ipOff, this.owner.own, this.owner.gatewayOffset, dst, 0, IPV6_NH_ICMPV6, total, NDP_HOP_LIMIT);
    fillIcmpv6Checksum(buf, icmpOff, total, buf, ipOff + 8, ipOff + 24);
    this.solicitationsSent++;
    this.tx.transmit(off, ETH_HEADER_LEN + IPV6_HEADER_LEN + total, now);
  }

  /**
   * Walks the options of the message in `ndp`: every option must be sound.
   * Returns a drop reason or null; sets llaOff to the offset of the MAC in
   * the (last) option of type `llaType`, or -1. A multicast or zero MAC
   * there is malformed.
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

  private handleNs(link: LinkInput, ip: Ipv6View, srcUnspecified: boolean, dstMulticast: boolean, now: number): DropReason | null {
    const b = this.ndp.buf;
    const t = this.ndp.targetOffset;
    if (b[t] === 0xff) return 'ndp-ns-multicast-target';
    const bad = this.scanOptions(NDP_OPT_SOURCE_LLA);
    if (bad !== null) return bad;
    const slla = this.llaOff;
    const owner = this.owner;
    if (srcUnspecified) {
      // RFC 4861 7.1.1: a DAD probe goes to the solicited-node group and carries no source link-layer option.
      if (!dstMulticast || !isSolicitedNodeOf(b, ip.dstOffset, b, t)) return 'ndp-dad-bad-dst';
      if (slla !== -1) return 'ndp-dad-with-slla';
    } else if (slla !== -1 && owner.usableNeighborSource(b, ip.srcOffset)) {
      this.neighbors.learn(b, ip.srcOffset, b, slla, now);
    }
    const k = owner.ownIndex(b, t);
    // Not ours: the guest that owns it answers; a guest's DAD probe must meet silence from us.
    if (k === -1) return 'ndp-ns-not-ours';

    const own = owner.own;
    const off = this.tx.allocTx(now);
    const buf = this.tx.txBuffer;
    const ipOff = off + ETH_HEADER_LEN;
    const icmpOff = ipOff + IPV6_HEADER_LEN;
    const len = emitNeighborAdvertisement(buf, icmpOff, 0, own, k);
    const total = len + emitLinkLayerOption(buf, icmpOff + len, NDP_OPT_TARGET_LLA, this.mac);
    if (srcUnspecified) {
      // RFC 4861 7.2.4: answer a DAD probe to all-nodes, not solicited.
      buf[icmpOff + 4] = NA_FLAG_ROUTER | NA_FLAG_OVERRIDE;
      emitEthernetHeader(buf, off, 0x3333_0000_0001, this.mac, ETHERTYPE_IPV6);
      emitIpv6Header(buf, ipOff, own, k, IPV6_ALL_NODES, 0, IPV6_NH_ICMPV6, total, NDP_HOP_LIMIT);
      this.dadDefended++;
    } else {
      buf[icmpOff + 4] = NA_FLAG_ROUTER | NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE;
      // Reply to the link-layer address the solicitation names, else to the frame's sender.
      emitEthernetHeader(buf, off, 0, this.mac, ETHERTYPE_IPV6);
      if (slla === -1) link.eth.copySrcTo(buf, off);
      else for (let i = 0; i < 6; i++) buf[off + i] = b[slla + i];
      emitIpv6Header(buf, ipOff, own, k, b, ip.srcOffset, IPV6_NH_ICMPV6, total, NDP_HOP_LIMIT);
    }
    fillIcmpv6Checksum(buf, icmpOff, total, buf, ipOff + 8, ipOff + 24);
    this.neighborAdvertsSent++;
    this.tx.transmit(off, ETH_HEADER_LEN + IPV6_HEADER_LEN + total, now);
    return null;
  }

  private handleNa(srcUnspecified: boolean, now: number): DropReason | null {
    if (srcUnspecified) return 'ndp-na-bad-src';
    const ndp = this.ndp;
    const b = ndp.buf;
    const t = ndp.targetOffset;
    if (b[t] === 0xff) return 'ndp-na-multicast-target';
    const bad = this.scanOptions(NDP_OPT_TARGET_LLA);
    if (bad !== null) return bad;
    if (this.owner.ownIndex(b, t) !== -1) return 'ndp-na-conflict';
    const tlla = this.llaOff;
    if (tlla !== -1 && this.owner.usableNeighborSource(b, t)) {
      this.neighbors.learn(b, t, b, tlla, now);
      this.neighborListener?.(b, t, tlla, now);
    }
    return null;
  }

  private handleRs(link: LinkInput, ip: Ipv6View, srcUnspecified: boolean, now: number): DropReason | null {
    const bad = this.scanOptions(NDP_OPT_SOURCE_LLA);
    if (bad !== null) return bad;
    const slla = this.llaOff;
    const b = this.ndp.buf;
    // RFC 4861 6.1.1: no source link-layer option from ::.
    if (srcUnspecified) return slla !== -1 ? 'ndp-rs-unspecified-with-slla' : this.adverts.answerUnspecified(now);
    let macOff = link.frame.off + 6;
    if (slla !== -1) {
      macOff = slla;
      if (this.owner.usableNeighborSource(b, ip.srcOffset)) this.neighbors.learn(b, ip.srcOffset, b, slla, now);
    }
    this.adverts.answer(b, ip.srcOffset, b, macOff, now);
    return null;
  }
}
