/**
 * ICMP echo NAT: a guest's ping to any destination goes out through a host
 * ping socket (one per guest echo flow, opened by the runtime), and the
 * replies come back with the guest's own echo identifier restored.
 * Echo to the gateway and DNS addresses never gets here: the gateway answers
 * those itself. ICMP errors the host socket hears about the guest's requests
 * (unreachable, TTL exceeded) are turned into ICMP errors to the guest, from
 * the router that sent them, quoting the guest's request.
 */
import { checksum } from '../wire/checksum.js';
import { emitIpv4Header, IPV4_HEADER_LEN, IP_PROTO_ICMP } from '../wire/ipv4.js';
import { ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, Icmpv4View } from '../wire/icmpv4.js';
import { writeIcmpError } from '../icmp-errors.js';
import type { AddressMap } from './address-map.js';
import type { IpOutput } from './ip-output.js';
import type { IpPacket } from './ip-packet.js';
import type { Neighbors } from './neighbors.js';
import { IcmpFlowTable, type IcmpFlow } from './icmp-flows.js';

const ICMP_HEADER_LEN = 8;
const IPV4_TTL_OFFSET = 8;

export interface IcmpHostEnv {
  /** Opens a ping socket for a new flow. */
  open(flow: IcmpFlow): void;
  /** Sends an echo request (ICMP header + payload) to flow.hostIp with the given TTL. */
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
  private readonly scratch = Buffer.alloc(65_535);
  private readonly quote = Buffer.alloc(IPV4_HEADER_LEN + 576);
  readonly drops: Record<string, number> = Object.create(null);
  echoesOut = 0;
  repliesIn = 0;
  errorsIn = 0;

  constructor(
    private readonly opts: IcmpNatOptions,
    private readonly output: IpOutput,
    private readonly neighbors: Neighbors,
  ) {
    this.flows = new IcmpFlowTable({
      maxFlows: opts.maxFlows,
      idleTimeoutMs: opts.idleTimeoutMs,
      onClose: (_id, flow) => this.host.close(flow),
    });
  }

  /** One ICMP packet from a guest (IPv4). Returns a drop reason or null. */
  handle(pkt: IpPacket, now: number): string | null {
    const icmp = this.icmp;
    const buf = pkt.frame.buf;
    const bad = icmp.reset(buf, pkt.l4Off, pkt.l4Len);
    if (bad !== null) return bad;
    if (icmp.type !== ICMP_ECHO_REQUEST) return 'icmp-not-echo';
    if (pkt.toBroadcast) return 'icmp-echo-broadcast';
    if (!pkt.l4ChecksumPartial && !pkt.l4ChecksumValid && !icmp.checksumOk()) return 'icmp-bad-checksum';
    const target = this.opts.addressMap.mapOutbound(pkt.dst, 0, IP_PROTO_ICMP);
    if (target.kind !== 'host') return target.reason ?? 'icmp-blocked';
    const ttl = buf[pkt.ipOff + IPV4_TTL_OFFSET];
    if (ttl <= 1) return 'icmp-ttl-expired';
    const flow = this.flows.lookupOrCreate(pkt.src, icmp.identifier, pkt.dst, target.ip, now);
    if (flow === null) return 'icmp-flow-table-full';
    if (flow.packetsOut === 0 && flow.packetsIn === 0) this.host.open(flow);
    this.flows.recordOutbound(flow, pkt.l4Len, now);
    this.echoesOut++;
    // We are a router: the packet leaves with one hop less.
    this.host.send(flow, buf, pkt.l4Off, pkt.l4Len, ttl - 1);
    return null;
  }

  /** An echo reply (ICMP header + payload, as the ping socket gives it) for this flow. */
  reply(flow: IcmpFlow, buf: Buffer, off: number, len: number, now: number): void {
    if (!flow.active) return;
    if (len < ICMP_HEADER_LEN || buf[off] !== ICMP_ECHO_REPLY) return this.bump('icmp-reply-malformed');
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
    const c = checksum(s, 0, len);
    s[2] = c >>> 8;
    s[3] = c & 0xff;
    const bad = this.output.sendRaw(mac, flow.dstIp, flow.guestIp, IP_PROTO_ICMP, s, 0, len, now);
    if (bad !== null) this.bump(bad);
  }

  /**
   * The host heard an ICMP error (type, code) from `offender` about one of
   * this flow's requests, quoted as `buf[off, off+len)` (the echo request).
   */
  error(flow: IcmpFlow, type: number, code: number, offender: number, info: number, buf: Buffer, off: number, len: number, now: number): void {
    if (!flow.active) return;
    const mac = this.neighbors.lookup(flow.guestIp);
    if (mac < 0) return this.bump('icmp-no-neighbor');
    this.errorsIn++;
    // Rebuild the guest's request as it left the guest (its identifier, not the socket's) to quote it.
    const qLen = Math.min(len, this.quote.length - IPV4_HEADER_LEN);
    if (qLen < ICMP_HEADER_LEN) return this.bump('icmp-error-malformed');
    const q = this.quote;
    emitIpv4Header(q, 0, flow.guestIp, flow.dstIp, IP_PROTO_ICMP, qLen, 64, 0, false);
    buf.copy(q, IPV4_HEADER_LEN, off, off + qLen);
    q[IPV4_HEADER_LEN + 4] = flow.guestIdent >>> 8;
    q[IPV4_HEADER_LEN + 5] = flow.guestIdent & 0xff;
    // A destination's own errors come from the address the guest knows it by.
    const from = offender === 0 || offender === flow.hostIp ? flow.dstIp : offender;
    const s = this.scratch;
    const n = writeIcmpError(s, 0, 576, type, code, from, this.output.nextIdent(), q, 0, IPV4_HEADER_LEN + qLen, info);
    if (n === 0) return this.bump('icmp-error-unquotable');
    this.output.sendPacket(mac, s, 0, n, now);
  }

  pollAt(): number {
    return this.flows.pollAt();
  }

  poll(now: number): void {
    this.flows.poll(now);
  }

  private bump(reason: string): void {
    this.drops[reason] = (this.drops[reason] ?? 0) + 1;
  }
}
