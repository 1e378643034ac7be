/**
 * The gateway's router advertisements (RFC 4861 6.2), sans-IO.
 *
 * How it works
 * - Contents: M=0, O=0, the prefix (on-link, autonomous), the MTU, the
 *   source link-layer option and RDNSS (RFC 8106) while DNS is enabled,
 *   from the link-local address with hop limit 255.
 * - Unsolicited ones go to ff02::1 at `pollAt()`: an initial burst of
 *   MAX_INITIAL_RTR_ADVERTISEMENTS at most 16 s apart, then one every
 *   [MinRtrAdvInterval, MaxRtrAdvInterval] chosen at random (RFC 4861
 *   6.2.4, 6.2.1).
 * - A solicitation from a known address is answered by unicast (`answer`);
 *   one from :: by multicast, at most one per MIN_DELAY_BETWEEN_RAS
 *   (`answerUnspecified`).
 * - Built in the gateway's transmit arena (LinkTx); nothing allocates.
 */
import type { DropReason } from '../drop-reasons.js';
import type { LinkTx } from '../link.js';
import { emitEthernetHeader, ETH_HEADER_LEN, ETHERTYPE_IPV6 } from '../wire/ethernet.js';
import { fillIcmpv6Checksum } from '../wire/icmpv6.js';
import { IPV6_ALL_NODES } from '../wire/ipv6-address.js';
import { emitIpv6Header, IPV6_HEADER_LEN, IPV6_NH_ICMPV6 } from '../wire/ipv6.js';
import {
  emitLinkLayerOption,
  emitMtuOption,
  emitPrefixInfoOption,
  emitRdnssOption,
  emitRouterAdvertisement,
  NDP_HOP_LIMIT,
  NDP_OPT_SOURCE_LLA,
  PREFIX_FLAG_AUTONOMOUS,
  PREFIX_FLAG_ON_LINK,
} from '../wire/ndp.js';

/** RFC 4861 10 router constants. */
export const MAX_INITIAL_RTR_ADVERT_INTERVAL_MS = 16_000;
export const MAX_INITIAL_RTR_ADVERTISEMENTS = 3;
export const MIN_DELAY_BETWEEN_RAS_MS = 3_000;

const ALL_NODES_MAC = Uint8Array.of(0x33, 0x33, 0, 0, 0, 1);

/** What an RA says and how often it goes (validated by the IPv6 layer). */
export interface RouterAdvertConfig {
  mac: number;
  mtu: number;
  /** The /64 prefix's 16 bytes. */
  prefix: Uint8Array;
  /** The gateway's own addresses: the DNS address at own[dnsOff, +16), the link-local one at own[llOff, +16). */
  own: Uint8Array;
  dnsOff: number;
  llOff: number;
  dnsEnabled: boolean;
  /** Cur hop limit advertised. */
  hopLimit: number;
  routerLifetimeS: number;
  maxRtrAdvIntervalMs: number;
  validLifetimeS: number;
  preferredLifetimeS: number;
  rdnssLifetimeS: number;
  /** Uniform [0, 1) source for the jitter. */
  random: () => number;
}

export class RouterAdverts {
  readonly minRtrAdvIntervalMs: number;
  sent = 0;
  solicitationsAnswered = 0;
  private nextAt = 0;
  private initialLeft = MAX_INITIAL_RTR_ADVERTISEMENTS;
  private lastMulticastAt = -Infinity;

  constructor(
    readonly cfg: Readonly<RouterAdvertConfig>,
    private readonly tx: LinkTx,
  ) {
    const maxInt = cfg.maxRtrAdvIntervalMs;
    // RFC 4861 6.2.1: MinRtrAdvInterval defaults to 0.33 * MaxRtrAdvInterval when that is 9 s or more.
    this.minRtrAdvIntervalMs = maxInt >= 9000 ? Math.round(maxInt * 0.33) : maxInt;
  }

  /** When poll must next run (the next unsolicited RA). */
  pollAt(): number {
    return this.nextAt;
  }

  /** Sends the unsolicited RA when it is due and schedules the next. */
  poll(now: number): void {
    if (now < this.nextAt) return;
    this.send(IPV6_ALL_NODES, 0, ALL_NODES_MAC, 0, now);
    this.lastMulticastAt = now;
    this.scheduleNext(now);
  }

  private scheduleNext(now: number): void {
    const c = this.cfg;
    let delay = this.minRtrAdvIntervalMs + c.random() * (c.maxRtrAdvIntervalMs - this.minRtrAdvIntervalMs);
    if (this.initialLeft > 0) {
      this.initialLeft--;
      if (delay > MAX_INITIAL_RTR_ADVERT_INTERVAL_MS) delay = MAX_INITIAL_RTR_ADVERT_INTERVAL_MS;
    }
    this.nextAt = now + Math.round(delay);
  }

  /** Answers a solicitation from :: to all nodes, unless one went less than MIN_DELAY_BETWEEN_RAS ago. */
  answerUnspecified(now: number): DropReason | null {
    if (now - this.lastMulticastAt < MIN_DELAY_BETWEEN_RAS_MS) return 'ndp-rs-rate-limited';
    this.send(IPV6_ALL_NODES, 0, ALL_NODES_MAC, 0, now);
    this.lastMulticastAt = now;
    this.solicitationsAnswered++;
    return null;
  }

  /** Answers a solicitation by unicast to dst[dstOff, +16) at the MAC mac[macOff, +6). */
  answer(dst: Uint8Array, dstOff: number, mac: Uint8Array, macOff: number, now: number): void {
    this.send(dst, dstOff, mac, macOff, now);
    this.solicitationsAnswered++;
  }

  /** Builds and sends an RA to dst[dstOff, +16) at the MAC mac[macOff, +6). */
  private send(dst: Uint8Array, dstOff: number, mac: Uint8Array, macOff: number, now: number): void {
    const c = this.cfg;
    const off = this.tx.allocTx(now);
    const buf = this.tx.txBuffer;
    const ipOff = off + ETH_HEADER_LEN;
    const icmpOff = ipOff + IPV6_HEADER_LEN;
    let p = icmpOff;
    p += emitRouterAdvertisement(buf, p, c.hopLimit, 0, c.routerLifetimeS, 0, 0);
    p += emitLinkLayerOption(buf, p, NDP_OPT_SOURCE_LLA, c.mac);
    p += emitMtuOption(buf, p, c.mtu);
    p += emitPrefixInfoOption(buf, p, c.prefix, 0, 64, PREFIX_FLAG_ON_LINK | PREFIX_FLAG_AUTONOMOUS, c.validLifetimeS, c.preferredLifetimeS);
    if (c.dnsEnabled) p += emitRdnssOption(buf, p, c.rdnssLifetimeS, c.own, c.dnsOff, 1);
    const total = p - icmpOff;
    emitIpv6Header(buf, ipOff, c.own, c.llOff, dst, dstOff, IPV6_NH_ICMPV6, total, NDP_HOP_LIMIT);
    emitEthernetHeader(buf, off, 0, c.mac, ETHERTYPE_IPV6);
    for (let i = 0; i < 6; i++) buf[off + i] = mac[macOff + i];
    fillIcmpv6Checksum(buf, icmpOff, total, buf, ipOff + 8, ipOff + 24);
    this.sent++;
    this.tx.transmit(off, ETH_HEADER_LEN + IPV6_HEADER_LEN + total, now);
  }
}
