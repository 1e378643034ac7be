/**
 * ICMP echo NAT, for ICMP over IPv4 and ICMPv6 alike: a guest's ping to any
 * destination goes out through a host ping socket of its family (one per
 * guest echo flow, opened by the runtime), and the replies come back with the
 * guest's own echo identifier restored.
 *
 * How it works
 * - Echo to the gateway's own addresses mostly never gets here: the gateway
 *   (IPv4) and the IPv6 router answer those themselves. What the address map
 *   sends elsewhere leaves with one hop less, as from any router; a request
 *   whose TTL / hop limit would reach zero is dropped ('icmp-ttl-expired').
 * - Addresses are handles (ip-addresses.ts); the flow table holds references
 *   on the flow's addresses, so a reply or error long after the guest's
 *   packet still finds them interned.
 * - The kernel rewrites the identifier (and the checksum) of what the socket
 *   sends; `reply` writes the guest's identifier back and recomputes the
 *   checksum, over the IPv6 pseudo-header for ICMPv6.
 * - ICMP errors the host socket hears about the guest's requests
 *   (unreachable, TTL / hop limit exceeded, packet too big) become errors of
 *   the same type to the guest, from the router that sent them (or from the
 *   destination as the guest addressed it, when it is the destination's
 *   own), quoting the guest's request rebuilt as it left the guest.
 * - Nothing allocates per packet: one view per family, one scratch buffer,
 *   one quote buffer.
 */
import { checksum } from '../wire/checksum.js';
import { IP_PROTO_ICMP } from '../wire/ipv4.js';
import { IPV6_HEADER_LEN, IPV6_MIN_MTU, IPV6_NH_ICMPV6 } from '../wire/ipv6.js';
import { ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, Icmpv4View } from '../wire/icmpv4.js';
import { ICMPV6_ECHO_REPLY, ICMPV6_ECHO_REQUEST, Icmpv6View } from '../wire/icmpv6.js';
import { writeIcmpv6Error } from '../ip6/icmp-errors.js';
import { writeIcmpError } from '../ip4/icmp-errors.js';
import type { AddressMap } from './address-map.js';
import { IPV6_HANDLE_BASE } from '../ip/ip-addresses.js';
import type { IpOutput } from '../ip/ip-output.js';
import type { IpPacket } from '../ip/ip-packet.js';
import type { Neighbors } from '../ip/neighbors.js';
import { IcmpFlowTable, type IcmpFlow } from './icmp-flows.js';
import { guestShareOf } from '../limits.js';
import { newDropCounters, type DropCounts } from '../counters.js';
import type { DropReason } from '../drop-reasons.js';

const ICMP_HEADER_LEN = 8;
const IPV4_TTL_OFFSET = 8;
const IPV6_HOP_LIMIT_OFFSET = 7;
/** ICMP errors over IPv4 stay within 576 bytes (RFC 1812 4.3.2.3), so the quote does too. */
const IPV4_QUOTE_MAX = 576;
/** An ICMPv6 error stays within the IPv6 minimum MTU (RFC 4443 2.4(c)): its IPv6 and ICMPv6 headers, then the quote. */
const IPV6_QUOTE_MAX = IPV6_MIN_MTU - IPV6_HEADER_LEN - ICMP_HEADER_LEN;

export interface IcmpHostEnv {
  /** Opens a ping socket of flow.hostIp's family for a new flow. */
  open(flow: IcmpFlow): void;
  /** Sends an echo request (ICMP or ICMPv6 header + payload) to flow.hostIp with the given TTL / hop limit. */
  send(flow: IcmpFlow, buf: Buffer, off: number, len: number, ttl: number): void;
  close(flow: IcmpFlow): void;
}

export interface IcmpNatOptions {
  addressMap: AddressMap;
  maxFlows: number;
  idleTimeoutMs: number;
}

export class IcmpNat {
  host!: IcmpHostEnv;
  readonly flows: IcmpFlowTable;
  private readonly icmp = new Icmpv4View();
  private readonly icmp6 = new Icmpv6View();
  private readonly scratch = Buffer.alloc(65_535);
  private readonly quote = Buffer.alloc(IPV6_HEADER_LEN + IPV6_QUOTE_MAX);
  private readonly dropped = newDropCounters();
  /** Drops by reason so far (allocates: for stats and tests). */
  get drops(): DropCounts {
    return this.dropped.snapshot();
  }
  echoesOut = 0;
  repliesIn = 0;
  errorsIn = 0;

  constructor(
    private readonly opts: IcmpNatOptions,
    /** Its `addrs` names the flows' address handles. */
    readonly output: IpOutput,
    private readonly neighbors: Neighbors,
  ) {
    this.flows = new IcmpFlowTable({
      addrs: output.addrs,
      maxFlows: opts.maxFlows,
      idleTimeoutMs: opts.idleTimeoutMs,
      guestShare: guestShareOf(opts.maxFlows),
      onClose: (_id, flow) => this.host.close(flow),
    });
  }

  /** One ICMP (IPv4) or ICMPv6 packet from a guest. Returns a drop reason or null. */
  handle(pkt: IpPacket, now: number): DropReason | null {
    const buf = pkt.frame.buf;
    let ident: number;
    let ttl: number;
    let proto: number;
    if (pkt.v6) {
      const icmp = this.icmp6;
      const bad = icmp.reset(buf, pkt.l4Off, pkt.l4Len);
      if (bad !== null) return bad;
      if (icmp.type !== ICMPV6_ECHO_REQUEST) return 'icmpv6-not-echo';
      if (icmp.len < ICMP_HEADER_LEN) return 'icmpv6-truncated';
      if (!pkt.l4ChecksumOk()) return 'icmp-bad-checksum';
      ident = icmp.identifier;
      ttl = buf[pkt.ipOff + IPV6_HOP_LIMIT_OFFSET];
      proto = IPV6_NH_ICMPV6;
    } else {
      const icmp = this.icmp;
      const bad = icmp.reset(buf, pkt.l4Off, pkt.l4Len);
      if (bad !== null) return bad;
      if (icmp.type !== ICMP_ECHO_REQUEST) return 'icmp-not-echo';
      if (pkt.toBroadcast) return 'icmp-echo-broadcast';
      if (!pkt.l4ChecksumPartial && !pkt.l4ChecksumValid && !icmp.checksumOk()) return 'icmp-bad-checksum';
      ident = icmp.identifier;
      ttl = buf[pkt.ipOff + IPV4_TTL_OFFSET];
      proto = IP_PROTO_ICMP;
    }
    const target = this.opts.addressMap.mapOutbound(pkt.dst, 0, proto);
    if (target.kind !== 'host') return target.reason ?? 'icmp-blocked';
    if (ttl <= 1) return 'icmp-ttl-expired';
    const flow = this.flows.lookupOrCreate(pkt.src, ident, pkt.dst, target.ip, now);
    if (flow === null) return 'icmp-flow-table-full';
    if (flow.packetsOut === 0 && flow.packetsIn === 0) this.host.open(flow);
    this.flows.recordOutbound(flow, pkt.l4Len, now);
    this.echoesOut++;
    // We are a router: the packet leaves with one hop less.
    this.host.send(flow, buf, pkt.l4Off, pkt.l4Len, ttl - 1);
    return null;
  }

  /** An echo reply (ICMP or ICMPv6 header + payload, as the ping socket gives it) for this flow. */
  reply(flow: IcmpFlow, buf: Buffer, off: number, len: number, now: number): void {
    if (!flow.active) return;
    const v6 = flow.guestIp >= IPV6_HANDLE_BASE;
    if (len < ICMP_HEADER_LEN || buf[off] !== (v6 ? ICMPV6_ECHO_REPLY : ICMP_ECHO_REPLY)) return this.bump('icmp-reply-malformed');
    const mac = this.neighbors.lookup(flow.guestIp);
    if (mac < 0) return this.bump('icmp-no-neighbor');
    this.flows.recordInbound(flow, len, now);
    this.repliesIn++;
    const s = this.scratch;
    buf.copy(s, 0, off, off + len);
    s[4] = flow.guestIdent >>> 8;
    s[5] = flow.guestIdent & 0xff;
    s[2] = 0;
    s[3] = 0;
    const proto = v6 ? IPV6_NH_ICMPV6 : IP_PROTO_ICMP;
    // ICMPv6 covers the pseudo-header (RFC 4443 2.3); ICMP over IPv4 only itself.
    const c = checksum(s, 0, len, v6 ? this.output.addrs.pseudoSum(flow.dstIp, flow.guestIp, proto, len) : 0);
    s[2] = c >>> 8;
    s[3] = c & 0xff;
    const bad = this.output.sendRaw(mac, flow.dstIp, flow.guestIp, proto, s, 0, len, now);
    if (bad !== null) this.bump(bad);
  }

  /**
   * The host heard an ICMP error (type, code of the flow's family) from
   * `offender` (an address handle of that family, 0 when unknown) about one
   * of this flow's requests, quoted as `buf[off, off+len)` (the echo
   * request). `info` is the next-hop MTU of "fragmentation needed" or
   * "packet too big", the pointer of a parameter problem.
   */
  error(flow: IcmpFlow, type: number, code: number, offender: number, info: number, buf: Buffer, off: number, len: number, now: number): void {
    if (!flow.active) return;
    const mac = this.neighbors.lookup(flow.guestIp);
    if (mac < 0) return this.bump('icmp-no-neighbor');
    const v6 = flow.guestIp >= IPV6_HANDLE_BASE;
    // Rebuild the guest's request as it left the guest (its identifier, not the socket's) to quote it.
    const qLen = Math.min(len, v6 ? IPV6_QUOTE_MAX : IPV4_QUOTE_MAX);
    if (qLen < ICMP_HEADER_LEN) return this.bump('icmp-error-malformed');
    this.errorsIn++;
    const a = this.output.addrs;
    const q = this.quote;
    const proto = v6 ? IPV6_NH_ICMPV6 : IP_PROTO_ICMP;
    // The quote claims the request's full length, as the original header did, even when cut short.
    const hl = a.emitHeader(q, 0, flow.guestIp, flow.dstIp, proto, len, 0, false);
    buf.copy(q, hl, off, off + qLen);
    q[hl + 4] = flow.guestIdent >>> 8;
    q[hl + 5] = flow.guestIdent & 0xff;
    if (qLen === len) {
      // Complete: its checksum can be the one the guest sent, so the quote matches the request byte for byte.
      q[hl + 2] = 0;
      q[hl + 3] = 0;
      const c = checksum(q, hl, len, v6 ? a.pseudoSum(flow.guestIp, flow.dstIp, proto, len) : 0);
      q[hl + 2] = c >>> 8;
      q[hl + 3] = c & 0xff;
    }
    // A destination's own errors come from the address the guest knows it by.
    const from = offender === 0 || offender === flow.hostIp ? flow.dstIp : offender;
    const s = this.scratch;
    const n = v6
      ? writeIcmpv6Error(s, 0, IPV6_MIN_MTU, type, code, a.bytes, a.offsetOf(from), q, 0, hl + qLen, info)
      : writeIcmpError(s, 0, IPV4_QUOTE_MAX, type, code, from, this.output.nextIdent(), q, 0, hl + qLen, info);
    if (n === 0) return this.bump('icmp-error-unquotable');
    this.output.sendPacket(mac, s, 0, n, now);
  }

  pollAt(): number {
    return this.flows.pollAt();
  }

  poll(now: number): void {
    this.flows.poll(now);
  }

  private bump(reason: DropReason): void {
    this.dropped.add(reason);
  }
}
