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
 * - DNS: the forwarder (sans-IO) gets each query with a client key that
 *   encodes the guest's address and port; its answers come back to `dnsReply`.
 * - Inbound (port forwards): each distinct host client (ip, port) of a
 *   forward gets a flow in the same table, keyed (guest endpoint, N+2:P) with
 *   P from the NAT's own range (INBOUND_PORT_FIRST..LAST, free in the table),
 *   so the guest sees the client as N+2:P and its replies find the flow
 *   before any address mapping (they must pass with --disable-host-loopback
 *   too). Such a flow's hostIp/hostPort is the client; `inboundForward[id]`
 *   names its forward (0: an outbound flow). Same idle timeout as outbound.
 */
import type { Ipv4Input } from '../gateway.js';
import { DhcpServer } from '../dhcp-server.js';
import { DnsForwarder } from '../dns-forwarder.js';
import { emitIpv4Header, IPV4_HEADER_LEN, IP_PROTO_UDP } from '../wire/ipv4.js';
import { ICMP_DEST_UNREACHABLE } from '../wire/icmpv4.js';
import { UdpView, writeUdpHeader } from '../wire/udp.js';
import { writeIcmpError } from '../icmp-errors.js';
import { DNS_PORT, type AddressMap } from './address-map.js';
import { endpointKey } from './flow-key.js';
import { INBOUND_PORT_FIRST, INBOUND_PORT_LAST } from './tcp-nat.js';
import type { Ipv4Output } from './ipv4-output.js';
import type { Neighbors } from './neighbors.js';
import { UdpFlowTable, type UdpFlow } from './udp-flows.js';

const DHCP_SERVER_PORT = 67;
const DHCP_CLIENT_PORT = 68;
const ICMP_UNREACH_PORT = 3;
const ICMP_UNREACH_ADMIN = 13;

export interface UdpHostEnv {
  /** Opens the host socket of a new flow (towards flow.hostIp:flow.hostPort). */
  open(flow: UdpFlow): void;
  /** Sends a datagram on the flow's socket; buf is only valid during the call. */
  send(flow: UdpFlow, buf: Buffer, off: number, len: number): void;
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
}

export class UdpNat {
  host!: UdpHostEnv;
  readonly flows: UdpFlowTable;
  readonly dns: DnsForwarder | null;
  private readonly view = new UdpView();
  private readonly dhcpOut = Buffer.alloc(1500);
  private readonly quote = Buffer.alloc(IPV4_HEADER_LEN + 8);
  private readonly icmpScratch = Buffer.alloc(576);
  readonly drops: Record<string, number> = Object.create(null);
  private now = 0;
  dhcpReplies = 0;
  portUnreachables = 0;
  /** Forward id of each inbound flow by flow id; 0 for outbound flows. */
  private readonly inboundForward: number[] = [];
  /** forward id -> (client endpoint key -> flow). */
  private readonly inboundClients = new Map<number, Map<number, UdpFlow>>();
  private inboundFlows = 0;
  private inboundPortNext = INBOUND_PORT_FIRST;
  inboundDatagrams = 0;

  constructor(
    private readonly opts: UdpNatOptions,
    private readonly output: Ipv4Output,
    private readonly neighbors: Neighbors,
  ) {
    this.flows = new UdpFlowTable({
      maxFlows: opts.maxFlows,
      idleTimeoutMs: opts.idleTimeoutMs,
      dnsIdleTimeoutMs: opts.dnsIdleTimeoutMs,
      onClose: (id, flow) => {
        if (!this.forgetInbound(id, flow)) this.host.close(flow);
      },
    });
    this.dns =
      opts.dnsUpstreams.length === 0
        ? null
        : new DnsForwarder(
            { upstreams: opts.dnsUpstreams, timeoutMs: opts.dnsTimeoutMs },
            {
              sendUpstream: (i, buf, off, len) => this.host.sendDns(i, buf, off, len),
              reply: (key, buf, off, len) => this.dnsReply(key, buf, off, len),
            },
          );
  }

  handleIpv4(pkt: Ipv4Input, now: number): string | null {
    this.now = now;
    const ip = pkt.ip;
    const udp = this.view;
    const bad = udp.reset(pkt.frame.buf, ip.payloadOffset, ip.payloadLength);
    if (bad !== null) return bad;
    if (!pkt.l4ChecksumPartial && !pkt.l4ChecksumValid && udp.checksum !== 0 && !udp.checksumOk(ip.src, ip.dst)) {
      return 'udp-bad-checksum';
    }
    const dstPort = udp.dstPort;
    if (dstPort === DHCP_SERVER_PORT && (pkt.toBroadcast || pkt.toGateway)) return this.dhcp(pkt, now);
    if (pkt.toBroadcast) return 'udp-broadcast';
    if (this.inboundFlows > 0 && ip.dst === this.opts.addressMap.gateway) {
      const f = this.flows.lookup(ip.src, udp.srcPort, ip.dst, dstPort);
      if (f !== null && this.inboundForward[f.id] > 0) {
        this.flows.recordOutbound(f, udp.payloadLength, now);
        this.host.sendToClient(this.inboundForward[f.id], f.hostIp, f.hostPort, pkt.frame.buf, udp.payloadOffset, udp.payloadLength);
        return null;
      }
    }
    const target = this.opts.addressMap.mapOutbound(ip.dst, dstPort, IP_PROTO_UDP);
    if (target.kind === 'blocked') {
      this.sendUnreachable(pkt.eth.src, ip.buf, ip.off, ip.totalLength, ICMP_UNREACH_ADMIN, now);
      return target.reason ?? 'blocked';
    }
    if (target.kind === 'dns') {
      if (this.dns === null) {
        this.sendUnreachable(pkt.eth.src, ip.buf, ip.off, ip.totalLength, ICMP_UNREACH_PORT, now);
        return 'dns-disabled';
      }
      return this.dns.query(endpointKey(ip.src, udp.srcPort), pkt.frame.buf, udp.payloadOffset, udp.payloadLength, now);
    }
    const flow = this.flows.lookupOrCreate(ip.src, udp.srcPort, ip.dst, dstPort, target.ip, target.port, now);
    if (flow === null) return 'udp-flow-table-full';
    if (flow.packetsOut === 0 && flow.packetsIn === 0) this.host.open(flow);
    this.flows.recordOutbound(flow, udp.payloadLength, now);
    this.host.send(flow, pkt.frame.buf, udp.payloadOffset, udp.payloadLength);
    return null;
  }

  /** A datagram arrived on a flow's host socket. */
  fromHost(flow: UdpFlow, buf: Buffer, off: number, len: number, now: number): void {
    this.now = now;
    if (!flow.active) return;
    const mac = this.neighbors.lookup(flow.guestIp);
    if (mac < 0) return this.bump('udp-no-neighbor');
    this.flows.recordInbound(flow, len, now);
    const bad = this.output.sendUdp(mac, flow.dstIp, flow.dstPort, flow.guestIp, flow.guestPort, buf, off, len, now);
    if (bad !== null) this.bump(bad);
  }

  /**
   * A datagram from host client clientIp:clientPort of UDP forward
   * `forwardId` for guestIp:guestPort, whose MAC is guestMac. Returns a drop
   * reason or null.
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
  ): string | null {
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
      const gw = this.opts.addressMap.gateway;
      const port = this.pickInboundPort(guestIp, guestPort, gw);
      if (port < 0) return 'udp-inbound-no-port';
      flow = this.flows.lookupOrCreate(guestIp, guestPort, gw, port, clientIp, clientPort, now);
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
    emitIpv4Header(q, 0, flow.guestIp, flow.dstIp, IP_PROTO_UDP, 8, 64, 0, false);
    writeUdpHeader(q, IPV4_HEADER_LEN, flow.guestPort, flow.dstPort, 0);
    this.sendUnreachable(mac, q, 0, q.length, ICMP_UNREACH_PORT, now);
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
    if (mac < 0) return this.bump('dns-no-neighbor');
    const bad = this.output.sendUdp(mac, this.opts.addressMap.dns, DNS_PORT, guestIp, guestPort, buf, off, len, this.now);
    if (bad !== null) this.bump(bad);
  }

  private dhcp(pkt: Ipv4Input, now: number): string | null {
    const server = this.opts.dhcp;
    if (server === null) return 'dhcp-disabled';
    const udp = this.view;
    const r = server.handlePayload(pkt.frame.buf, udp.payloadOffset, udp.payloadLength, now);
    if (r === null) return null;
    const len = r.reply.emitInto(this.dhcpOut, 0);
    const dstMac = r.broadcast ? 0xffff_ffff_ffff : r.dstMac;
    this.dhcpReplies++;
    return this.output.sendUdp(dstMac, r.srcIp, DHCP_SERVER_PORT, r.dstIp, DHCP_CLIENT_PORT, this.dhcpOut, 0, len, now);
  }

  private sendUnreachable(mac: number, orig: Uint8Array, off: number, len: number, code: number, now: number): void {
    const s = this.icmpScratch;
    const n = writeIcmpError(s, 0, s.length, ICMP_DEST_UNREACHABLE, code, this.opts.addressMap.gateway, this.output.nextIdent(), orig, off, len);
    if (n === 0) return;
    this.portUnreachables++;
    this.output.sendPacket(mac, s, 0, n, now);
  }

  private bump(reason: string): void {
    this.drops[reason] = (this.drops[reason] ?? 0) + 1;
  }
}
