/**
 * UDP at the gateway: DHCP (port 67), the DNS forwarder (N+3:53), and NAT of
 * everything else to one host datagram socket per guest flow.
 *
 * How it works
 * - Flows live in UdpFlowTable (bounded, idle timeouts); a new flow asks the
 *   runtime to open its socket (`host.open`), every datagram is handed over
 *   with `host.send` (the runtime copies it), and answers come back through
 *   `fromHost`, addressed from the destination the guest used.
 * - A host socket that learns of an ICMP port unreachable (ECONNREFUSED)
 *   makes us send the guest an ICMP port unreachable about its datagram, as
 *   a router would, so `dig` and friends fail at once instead of timing out.
 *   A blocked destination gets ICMP administratively prohibited, except the
 *   gateway with host loopback off: net unreachable (ICMPv6 no route), as
 *   slirp4netns answers it.
 * - DNS: the forwarder (sans-IO) gets each query with a client key that
 *   encodes the guest's address and port; its answers come back to `dnsReply`.
 * - Inbound (port forwards): each distinct host client (ip, port) of a
 *   forward gets a flow in the same table, keyed (guest endpoint, N+2:P) with
 *   P from the NAT's own range (INBOUND_PORT_FIRST..LAST, free in the table),
 *   so the guest sees the client as N+2:P and its replies find the flow
 *   before any address mapping (they must pass with --disable-host-loopback
 *   too). Such a flow's hostIp/hostPort is the client; `inboundForward[id]`
 *   names its forward (0: an outbound flow). Same idle timeout as outbound.
 * - Bursts: a guest super-frame (USO, VIRTIO_NET_HDR_GSO_UDP_L4) goes to
 *   the flow's socket whole with its segment size (`host.send`'s gsoSize;
 *   the host kernel cuts it), or datagram by datagram to a port forward's
 *   client. A host message that holds a burst (UDP_GRO) comes back through
 *   `fromHost` with its segment size and leaves as one USO frame where the
 *   guests take them (IpOutput.sendUdpBurst).
 * - IPv6 takes the same paths (addresses are handles, ip-addresses.ts): no
 *   DHCP, the checksum is mandatory, errors are ICMPv6, DNS answers come
 *   from prefix::3. A pending IPv6 DNS query holds a reference on the
 *   guest's address until its one reply (answer or SERVFAIL) leaves.
 */
import { DhcpServer } from '../dhcp-server.js';
import { DnsForwarder } from '../dns-forwarder.js';
import type { LocalNames } from '../dns-local-names.js';
import { IP_PROTO_UDP } from '../wire/ipv4.js';
import { ICMP_DEST_UNREACHABLE, ICMP_UNREACH_NET } from '../wire/icmpv4.js';
import { ICMPV6_DEST_UNREACHABLE, ICMPV6_UNREACH_ADMIN_PROHIBITED, ICMPV6_UNREACH_NO_ROUTE, ICMPV6_UNREACH_PORT } from '../wire/icmpv6.js';
import { writeIcmpv6Error } from '../ip6/icmp-errors.js';
import { UdpView, writeUdpHeader } from '../wire/udp.js';
import { VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_HDR_GSO_UDP_L4 } from '../wire/vnet.js';
import { writeIcmpError } from '../ip4/icmp-errors.js';
import { DNS_PORT, type AddressMap } from './address-map.js';
import { endpointKey } from './flow-key.js';
import { guestShareOf } from '../limits.js';
import { INBOUND_PORT_FIRST, INBOUND_PORT_LAST } from './tcp-nat.js';
import type { IpOutput } from '../ip/ip-output.js';
import type { IpPacket } from '../ip/ip-packet.js';
import type { Neighbors } from '../ip/neighbors.js';
import { UdpFlowTable, type UdpFlow } from './udp-flows.js';
import { newDropCounters, type DropCounts } from '../counters.js';
import type { DropReason } from '../drop-reasons.js';

const DHCP_SERVER_PORT = 67;
const DHCP_CLIENT_PORT = 68;
const ICMP_UNREACH_PORT = 3;
const ICMP_UNREACH_ADMIN = 13;
/** Which unreachable to send; the code depends on the IP version. */
const UNREACH_PORT = 0;
const UNREACH_ADMIN = 1;
/** The gateway with host loopback off: net unreachable (ICMPv6 no route), as slirp4netns answers. */
const UNREACH_NET = 2;
/** Slots of the recent-flow cache (a power of two): a few busy flows rarely share one. */
const RECENT_FLOW_SLOTS = 64;

export interface UdpHostEnv {
  /** Opens the host socket of a new flow (towards flow.hostIp:flow.hostPort; handles, see UdpNat.output.addrs). */
  open(flow: UdpFlow): void;
  /**
   * Sends a datagram on the flow's socket; buf is only valid during the call.
   * gsoSize > 0: a burst of gsoSize-byte datagrams (a guest USO frame), the last one maybe shorter.
   */
  send(flow: UdpFlow, buf: Buffer, off: number, len: number, gsoSize?: number): void;
  /** The flow left the table (idle or evicted): close its socket. */
  close(flow: UdpFlow): void;
  /** Sends a DNS query to upstream i (the forwarder's env). */
  sendDns(upstreamIndex: number, buf: Buffer, off: number, len: number): void;
  /** A guest reply on an inbound flow: send it from forward `forwardId`'s socket to the client clientIp:clientPort. */
  sendToClient(forwardId: number, clientIp: number, clientPort: number, buf: Buffer, off: number, len: number): void;
}

export interface UdpNatOptions {
  addressMap: AddressMap;
  maxFlows: number;
  idleTimeoutMs: number;
  dnsIdleTimeoutMs: number;
  dhcp: DhcpServer | null;
  dnsUpstreams: { ip: string; port: number }[];
  dnsTimeoutMs: number;
  localNames?: LocalNames | null;
}

export class UdpNat {
  host!: UdpHostEnv;
  readonly flows: UdpFlowTable;
  readonly dns: DnsForwarder | null;
  private readonly view = new UdpView();
  private readonly dhcpOut = Buffer.alloc(1500);
  /** An IPv4 or IPv6 header and a UDP header, rebuilt for an ICMP quote. */
  private readonly quote = Buffer.alloc(40 + 8);
  private readonly icmpScratch = Buffer.alloc(1280);
  private readonly dropped = newDropCounters();
  /** Drops by reason so far (allocates: for stats and tests). */
  get drops(): DropCounts {
    return this.dropped.snapshot();
  }
  private now = 0;
  dhcpReplies = 0;
  portUnreachables = 0;
  /** Forward id of each inbound flow by flow id; 0 for outbound flows. */
  private readonly inboundForward: number[] = [];
  /** Recently used outbound flows (flowFor). */
  private readonly recentFlows: (UdpFlow | null)[] = new Array<UdpFlow | null>(RECENT_FLOW_SLOTS).fill(null);
  /** forward id -> (client endpoint key -> flow). */
  private readonly inboundClients = new Map<number, Map<number, UdpFlow>>();
  private inboundFlows = 0;
  private inboundPortNext = INBOUND_PORT_FIRST;
  inboundDatagrams = 0;

  constructor(
    private readonly opts: UdpNatOptions,
    readonly output: IpOutput,
    private readonly neighbors: Neighbors,
  ) {
    this.flows = new UdpFlowTable({
      addrs: output.addrs,
      maxFlows: opts.maxFlows,
      idleTimeoutMs: opts.idleTimeoutMs,
      dnsIdleTimeoutMs: opts.dnsIdleTimeoutMs,
      guestShare: guestShareOf(opts.maxFlows),
      onClose: (id, flow) => {
        if (!this.forgetInbound(id, flow)) this.host.close(flow);
      },
    });
    this.dns =
      opts.dnsUpstreams.length === 0
        ? null
        : new DnsForwarder(
            { upstreams: opts.dnsUpstreams, timeoutMs: opts.dnsTimeoutMs, localNames: opts.localNames ?? null },
            {
              sendUpstream: (i, buf, off, len) => this.host.sendDns(i, buf, off, len),
              reply: (key, buf, off, len) => this.dnsReply(key, buf, off, len),
            },
          );
  }

  /** One guest datagram (either IP version). Returns a drop reason or null. */
  handle(pkt: IpPacket, now: number): DropReason | null {
    this.now = now;
    if (pkt.gsoType !== VIRTIO_NET_HDR_GSO_NONE) return this.handleBurst(pkt, now);
    const udp = this.view;
    const bad = udp.reset(pkt.frame.buf, pkt.l4Off, pkt.l4Len);
    if (bad !== null) return bad;
    // RFC 8200 8.1: a zero checksum is invalid over IPv6.
    if (pkt.v6 && udp.checksum === 0 && !pkt.l4ChecksumPartial && !pkt.l4ChecksumValid) return 'udp6-zero-checksum';
    if (udp.checksum !== 0 && !pkt.l4ChecksumOk()) return 'udp-bad-checksum';
    const dstPort = udp.dstPort;
    if (!pkt.v6 && dstPort === DHCP_SERVER_PORT && (pkt.toBroadcast || pkt.toGateway)) return this.dhcp(pkt.frame.buf, now);
    if (pkt.toBroadcast) return 'udp-broadcast';
    const src = pkt.src;
    const dst = pkt.dst;
    if (this.inboundFlows > 0 && dst === this.opts.addressMap.gatewayFor(dst)) {
      const f = this.flows.lookup(src, udp.srcPort, dst, dstPort);
      if (f !== null && this.inboundForward[f.id] > 0) {
        this.flows.recordOutbound(f, udp.payloadLength, now);
        this.host.sendToClient(this.inboundForward[f.id], f.hostIp, f.hostPort, pkt.frame.buf, udp.payloadOffset, udp.payloadLength);
        return null;
      }
    }
    const target = this.opts.addressMap.mapOutbound(dst, dstPort, IP_PROTO_UDP);
    if (target.kind === 'blocked') {
      const kind = target.reason === 'blocked-host-loopback' ? UNREACH_NET : UNREACH_ADMIN;
      this.sendUnreachable(pkt.srcMac, pkt.frame.buf, pkt.ipOff, pkt.ipLen, kind, now);
      return target.reason ?? 'blocked';
    }
    if (target.kind === 'dns') {
      if (this.dns === null) {
        this.sendUnreachable(pkt.srcMac, pkt.frame.buf, pkt.ipOff, pkt.ipLen, UNREACH_PORT, now);
        return 'dns-disabled';
      }
      // The reply finds the guest by this key: keep its IPv6 address interned until then.
      this.output.addrs.retain(src);
      const r = this.dns.query(endpointKey(src, udp.srcPort), pkt.frame.buf, udp.payloadOffset, udp.payloadLength, now);
      if (r !== null) this.output.addrs.release(src);
      return r;
    }
    const flow = this.flowFor(src, udp.srcPort, dst, dstPort, target.ip, target.port, now);
    if (flow === null) return 'udp-flow-table-full';
    if (flow.packetsOut === 0 && flow.packetsIn === 0) this.host.open(flow);
    this.flows.recordOutbound(flow, udp.payloadLength, now);
    this.host.send(flow, pkt.frame.buf, udp.payloadOffset, udp.payloadLength);
    return null;
  }

  /**
   * A guest super-frame (USO): UDP datagrams of pkt.gsoSize bytes after one
   * header. The checksum is partial (the guest's kernel offloaded it), the
   * UDP length field covers the burst, and the payload runs to the end of
   * the IP packet.
   */
  private handleBurst(pkt: IpPacket, now: number): DropReason | null {
    if (pkt.gsoType !== VIRTIO_NET_HDR_GSO_UDP_L4 || pkt.gsoSize === 0) return 'udp-gso-bad-type';
    if (pkt.l4Len < 8) return 'udp-truncated';
    if (pkt.toBroadcast) return 'udp-broadcast';
    const buf = pkt.frame.buf;
    const l4 = pkt.l4Off;
    const srcPort = (buf[l4] << 8) | buf[l4 + 1];
    const dstPort = (buf[l4 + 2] << 8) | buf[l4 + 3];
    const payOff = l4 + 8;
    const payLen = pkt.l4Len - 8;
    const seg = pkt.gsoSize;
    const src = pkt.src;
    const dst = pkt.dst;
    if (this.inboundFlows > 0 && dst === this.opts.addressMap.gatewayFor(dst)) {
      const f = this.flows.lookup(src, srcPort, dst, dstPort);
      if (f !== null && this.inboundForward[f.id] > 0) {
        this.flows.recordOutbound(f, payLen, now);
        for (let at = 0; at < payLen; at += seg) {
          const n = payLen - at < seg ? payLen - at : seg;
          this.host.sendToClient(this.inboundForward[f.id], f.hostIp, f.hostPort, buf, payOff + at, n);
        }
        return null;
      }
    }
    const target = this.opts.addressMap.mapOutbound(dst, dstPort, IP_PROTO_UDP);
    if (target.kind === 'blocked') {
      const kind = target.reason === 'blocked-host-loopback' ? UNREACH_NET : UNREACH_ADMIN;
      this.sendUnreachable(pkt.srcMac, buf, pkt.ipOff, Math.min(pkt.ipLen, pkt.l4Off - pkt.ipOff + 8 + seg), kind, now);
      return target.reason ?? 'blocked';
    }
    if (target.kind === 'dns') return 'udp-gso-dns';
    const flow = this.flowFor(src, srcPort, dst, dstPort, target.ip, target.port, now);
    if (flow === null) return 'udp-flow-table-full';
    if (flow.packetsOut === 0 && flow.packetsIn === 0) this.host.open(flow);
    this.flows.recordOutbound(flow, payLen, now);
    flow.packetsOut += Math.ceil(payLen / seg) - 1;
    this.host.send(flow, buf, payOff, payLen, seg);
    return null;
  }

  /**
   * The outbound flow of a guest datagram, created if there is none
   * (UdpFlowTable.lookupOrCreate). Recently used flows are found first in a
   * small direct-mapped cache hashed from the four key parts: a hit compares
   * fields and allocates nothing, where the table's index takes two 48-bit
   * endpoint keys, which V8 boxes (one heap number each, per datagram) when
   * they cross a call it does not inline. A cached flow that left the table
   * is inactive, or reused for another key, and fails the comparison.
   */
  private flowFor(src: number, srcPort: number, dst: number, dstPort: number, hostIp: number, hostPort: number, now: number): UdpFlow | null {
    const slot = (src ^ dst ^ srcPort ^ (dstPort << 7)) & (RECENT_FLOW_SLOTS - 1);
    const cached = this.recentFlows[slot];
    if (cached !== null && cached.active && cached.guestPort === srcPort && cached.dstPort === dstPort && cached.guestIp === src && cached.dstIp === dst) {
      return cached;
    }
    const flow = this.flows.lookupOrCreate(src, srcPort, dst, dstPort, hostIp, hostPort, now);
    if (flow !== null) this.recentFlows[slot] = flow;
    return flow;
  }

  /**
   * A message arrived on a flow's host socket: one datagram, or (seg > 0 and
   * below len) a burst of seg-byte datagrams the kernel coalesced (UDP_GRO).
   */
  fromHost(flow: UdpFlow, buf: Buffer, off: number, len: number, now: number, seg = 0): void {
    this.now = now;
    if (!flow.active) return;
    const mac = this.neighbors.lookup(flow.guestIp);
    if (mac < 0) return this.bump('udp-no-neighbor');
    this.flows.recordInbound(flow, len, now);
    if (seg > 0 && seg < len) flow.packetsIn += Math.ceil(len / seg) - 1;
    const bad = this.output.sendUdpBurst(mac, flow.dstIp, flow.dstPort, flow.guestIp, flow.guestPort, buf, off, len, seg, now);
    if (bad !== null) this.bump(bad);
  }

  /**
   * fromHost for a burst of `len` bytes in `seg`-byte datagrams whose payload
   * the caller gathers itself (UdpProxy's software GRO): where in
   * `output.out.arena` the payload goes, then `hostBurstEnd`. -1: not as one
   * USO frame (guests without USO, no neighbour, an inactive flow); the
   * caller then stages a contiguous copy and calls fromHost, which also
   * counts what it drops. Counted as fromHost counts.
   */
  hostBurstStart(flow: UdpFlow, len: number, seg: number, now: number): number {
    this.now = now;
    if (!flow.active) return -1;
    const mac = this.neighbors.lookup(flow.guestIp);
    if (mac < 0) return -1;
    const at = this.output.beginUdpBurst(mac, flow.dstIp, flow.dstPort, flow.guestIp, flow.guestPort, len, seg, now);
    if (at < 0) return -1;
    this.flows.recordInbound(flow, len, now);
    flow.packetsIn += Math.ceil(len / seg) - 1;
    return at;
  }

  /** Sends the burst hostBurstStart began, its payload copied in. */
  hostBurstEnd(now: number): void {
    this.output.commitUdpBurst(now);
  }

  /**
   * A datagram from host client clientIp:clientPort of UDP forward
   * `forwardId` for guestIp:guestPort, whose MAC is guestMac (addresses are
   * handles of one IP version). Returns a drop reason or null.
   */
  fromForward(
    forwardId: number,
    clientIp: number,
    clientPort: number,
    guestIp: number,
    guestPort: number,
    guestMac: number,
    buf: Buffer,
    off: number,
    len: number,
    now: number,
  ): DropReason | null {
    this.now = now;
    let clients = this.inboundClients.get(forwardId);
    if (clients === undefined) {
      clients = new Map();
      this.inboundClients.set(forwardId, clients);
    }
    const clientKey = endpointKey(clientIp, clientPort);
    let flow = clients.get(clientKey) ?? null;
    if (flow !== null && (!flow.active || this.inboundForward[flow.id] !== forwardId)) flow = null;
    if (flow === null) {
      const gw = this.opts.addressMap.gatewayFor(guestIp);
      if (gw < 0) return 'udp-inbound-no-ipv6';
      const port = this.pickInboundPort(guestIp, guestPort, gw);
      if (port < 0) return 'udp-inbound-no-port';
      flow = this.flows.lookupOrCreate(guestIp, guestPort, gw, port, clientIp, clientPort, now, true);
      if (flow === null) return 'udp-flow-table-full';
      this.inboundForward[flow.id] = forwardId;
      this.inboundFlows++;
      clients.set(clientKey, flow);
    }
    this.flows.recordInbound(flow, len, now);
    this.inboundDatagrams++;
    return this.output.sendUdp(guestMac, flow.dstIp, flow.dstPort, guestIp, guestPort, buf, off, len, now);
  }

  /** A forward was removed: its flows go (their socket is gone with it). */
  forwardRemoved(forwardId: number): void {
    const clients = this.inboundClients.get(forwardId);
    if (clients === undefined) return;
    this.inboundClients.delete(forwardId);
    for (const flow of clients.values()) {
      if (!flow.active || this.inboundForward[flow.id] !== forwardId) continue;
      this.inboundForward[flow.id] = 0;
      this.inboundFlows--;
      this.flows.remove(flow.id);
    }
  }

  /** Called for every flow leaving the table: true if it was inbound (no socket of its own to close). */
  private forgetInbound(id: number, flow: UdpFlow): boolean {
    const fw = this.inboundForward[id] ?? 0;
    if (fw === 0) return false;
    this.inboundForward[id] = 0;
    this.inboundFlows--;
    this.inboundClients.get(fw)?.delete(endpointKey(flow.hostIp, flow.hostPort));
    return true;
  }

  private pickInboundPort(guestIp: number, guestPort: number, gw: number): number {
    const span = INBOUND_PORT_LAST - INBOUND_PORT_FIRST + 1;
    for (let i = 0; i < span; i++) {
      const p = this.inboundPortNext;
      this.inboundPortNext = p === INBOUND_PORT_LAST ? INBOUND_PORT_FIRST : p + 1;
      if (this.flows.lookup(guestIp, guestPort, gw, p) === null) return p;
    }
    return -1;
  }

  /** The flow's host socket reported ECONNREFUSED: tell the guest its port is unreachable. */
  hostRefused(flow: UdpFlow, now: number): void {
    if (!flow.active) return;
    const mac = this.neighbors.lookup(flow.guestIp);
    if (mac < 0) return this.bump('udp-no-neighbor');
    // Rebuild the start of the guest's datagram for the ICMP quote: IP header + UDP header.
    const q = this.quote;
    const hl = this.output.addrs.emitHeader(q, 0, flow.guestIp, flow.dstIp, IP_PROTO_UDP, 8, 0, false);
    writeUdpHeader(q, hl, flow.guestPort, flow.dstPort, 0);
    this.sendUnreachable(mac, q, 0, hl + 8, UNREACH_PORT, now);
  }

  /** A DNS answer from upstream i. */
  dnsResponse(upstreamIndex: number, buf: Buffer, off: number, len: number, now: number): void {
    this.now = now;
    if (this.dns === null) return;
    const bad = this.dns.response(upstreamIndex, buf, off, len, now);
    if (bad !== null) this.bump(bad);
  }

  pollAt(): number {
    return Math.min(this.flows.pollAt(), this.dns?.pollAt() ?? Infinity);
  }

  poll(now: number): void {
    this.now = now;
    this.flows.poll(now);
    this.dns?.poll(now);
  }

  private dnsReply(clientKey: number, buf: Buffer, off: number, len: number): void {
    const guestIp = Math.floor(clientKey / 0x10000);
    const guestPort = clientKey % 0x10000;
    const mac = this.neighbors.lookup(guestIp);
    if (mac < 0) this.bump('dns-no-neighbor');
    else {
      const bad = this.output.sendUdp(mac, this.opts.addressMap.dnsFor(guestIp), DNS_PORT, guestIp, guestPort, buf, off, len, this.now);
      if (bad !== null) this.bump(bad);
    }
    this.output.addrs.release(guestIp);
  }

  private dhcp(buf: Buffer, now: number): DropReason | null {
    const server = this.opts.dhcp;
    if (server === null) return 'dhcp-disabled';
    const udp = this.view;
    const r = server.handlePayload(buf, udp.payloadOffset, udp.payloadLength, now);
    if (r === null) return null;
    const len = r.reply.emitInto(this.dhcpOut, 0);
    const dstMac = r.broadcast ? 0xffff_ffff_ffff : r.dstMac;
    this.dhcpReplies++;
    return this.output.sendUdp(dstMac, r.srcIp, DHCP_SERVER_PORT, r.dstIp, DHCP_CLIENT_PORT, this.dhcpOut, 0, len, now);
  }

  /** ICMP(v6) destination unreachable about the guest packet orig[off, off+len); `kind` is UNREACH_PORT, UNREACH_ADMIN or UNREACH_NET. */
  private sendUnreachable(mac: number, orig: Uint8Array, off: number, len: number, kind: number, now: number): void {
    const s = this.icmpScratch;
    let n: number;
    if (orig[off] >>> 4 === 6) {
      const a = this.output.addrs;
      const code = kind === UNREACH_PORT ? ICMPV6_UNREACH_PORT : kind === UNREACH_NET ? ICMPV6_UNREACH_NO_ROUTE : ICMPV6_UNREACH_ADMIN_PROHIBITED;
      n = writeIcmpv6Error(s, 0, s.length, ICMPV6_DEST_UNREACHABLE, code, a.bytes, a.offsetOf(this.opts.addressMap.gateway6), orig, off, len);
    } else {
      const code = kind === UNREACH_PORT ? ICMP_UNREACH_PORT : kind === UNREACH_NET ? ICMP_UNREACH_NET : ICMP_UNREACH_ADMIN;
      n = writeIcmpError(s, 0, s.length, ICMP_DEST_UNREACHABLE, code, this.opts.addressMap.gateway, this.output.nextIdent(), orig, off, len);
    }
    if (n === 0) return;
    this.portUnreachables++;
    this.output.sendPacket(mac, s, 0, n, now);
  }

  private bump(reason: DropReason): void {
    this.dropped.add(reason);
  }
}
