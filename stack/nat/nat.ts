/**
 * The NAT behind the gateway: TCP termination, UDP and ICMP NAT, DHCP, the
 * DNS forwarder, fragment reassembly, all sans-IO. The runtime plugs host
 * sockets into `tcp.host`, `udp.host` and `icmp.host`, calls `flush` at the
 * end of every input batch, and drives `pollAt`/`poll`.
 *
 * It learns which MAC each guest address uses from the frames guests send,
 * so that answers not triggered by a frame in hand (DNS, UDP from the host)
 * can be addressed.
 *
 * IPv6: with `ipv6` set it builds the IPv6 router (neighbour discovery,
 * router advertisements with the prefix, MTU and RDNSS) and plugs it into
 * the gateway. Both versions reach the same TCP and UDP NAT as an IpPacket
 * whose addresses are handles (ip-addresses.ts); for IPv6 the Nat holds a
 * reference on both addresses while the packet is handled.
 */
import type { FlowEvents } from './flow-events.js';
import type { LocalNames } from '../dns-local-names.js';
import type { FrameSink } from '../frame.js';
import type { Frame } from '../frame.js';
import type { Gateway, Ipv4Handler, Ipv4Input, Ipv6Handler } from '../gateway.js';
import { Ipv6Router } from '../ipv6-router.js';
import { IPV6_HEADER_LEN, IPV6_NH_ICMPV6, IPV6_NH_TCP, IPV6_NH_UDP } from '../wire/ipv6.js';
import { VIRTIO_NET_HDR_GSO_NONE } from '../wire/vnet.js';
import { ICMPV6_ECHO_REQUEST } from '../wire/icmpv6.js';
import { parsePrefix, prefixHost } from '../wire/ipv6-address.js';
import { DhcpServer } from '../dhcp-server.js';
import { Ipv4Reassembler } from '../ipv4-reassembly.js';
import { IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP } from '../wire/ipv4.js';
import { tcpDefaults, type TcpConfig } from '../tcp/config.js';
import { AddressMap } from './address-map.js';
import { GuestOutput } from './guest-output.js';
import { IcmpNat } from './icmp-nat.js';
import { IpAddresses, IPV6_MAX_SLOTS } from './ip-addresses.js';
import { IpOutput } from './ip-output.js';
import { IpPacket } from './ip-packet.js';
import { Neighbors } from './neighbors.js';
import { InboundForwarder } from './port-forward.js';
import { TcpNat } from './tcp-nat.js';
import { UdpNat } from './udp-nat.js';
import type { DropReason } from '../drop-reasons.js';

export interface NatOptions {
  network: number;
  prefix: number;
  mtu: number;
  hostLoopback: boolean;
  dhcp: boolean;
  /** Upstream resolvers for N+3; empty disables DNS. */
  dnsUpstreams: { ip: string; port: number }[];
  dnsTimeoutMs: number;
  /** Names the DNS forwarder answers itself (a daemon's attached guests). */
  localNames?: LocalNames | null;
  tcpMaxFlows: number;
  tcpIdleTimeoutMs: number;
  udpMaxFlows: number;
  udpIdleTimeoutMs: number;
  udpDnsIdleTimeoutMs: number;
  icmpMaxFlows: number;
  icmpIdleTimeoutMs: number;
  /** How long an incomplete IPv4 or IPv6 datagram waits for its missing fragments; default REASSEMBLY_TIMEOUT_MS. */
  reassemblyTimeoutMs?: number;
  /** TCP engine settings beyond the MSS (which follows the MTU). */
  tcp?: Partial<TcpConfig>;
  /** IPv6 on the link: the /64 prefix ("fd00::/64"); null or absent for none. Needs mtu >= 1280. */
  ipv6Prefix?: string | null;
  /** Interval of unsolicited router advertisements (RFC 4861 MaxRtrAdvInterval). */
  ipv6RaIntervalMs?: number;
}

/** IPv4 header + TCP header without options. */
const TCP_IP_OVERHEAD = 40;

export class Nat implements Ipv4Handler, Ipv6Handler {
  readonly addressMap: AddressMap;
  readonly addrs: IpAddresses;
  readonly out: GuestOutput;
  readonly ipv4: IpOutput;
  /** The IPv6 half of the gateway, or null when IPv6 is off. */
  readonly router6: Ipv6Router | null;
  private readonly pkt: IpPacket;
  /** IPv6 packets dropped because the address table was full. */
  private ipv6AddressFull = 0;
  readonly neighbors = new Neighbors();
  readonly reassembler: Ipv4Reassembler;
  /** IPv6 fragments (addresses are handles; slots hold references). */
  readonly reassembler6: Ipv4Reassembler;
  /** A reassembled IPv6 datagram, rebuilt: header + payload (the payload of an IPv6 packet is at most 65535 bytes). */
  private readonly reassembled6 = Buffer.alloc(IPV6_HEADER_LEN + 65_535);
  private readonly reassembledFrame6: Frame = { buf: this.reassembled6, off: 0, len: 0, vnet: false };
  readonly tcp: TcpNat;
  readonly udp: UdpNat;
  readonly icmp: IcmpNat;
  readonly dhcp: DhcpServer | null;
  /** Port forwards' way in: host clients -> guest flows (MAC resolution included). */
  readonly inbound: InboundForwarder;

  /** Reports every TCP, UDP and ICMP flow's start and end to `events` (null: stop); see stack/nat/flow-events.ts. */
  setFlowEvents(events: FlowEvents | null): void {
    this.tcp.events = events;
    this.udp.flows.events = events;
    this.icmp.flows.events = events;
  }

  constructor(opts: NatOptions, gateway: Gateway, sink: FrameSink, drain: (now: number) => void) {
    // Every flow holds at most three IPv6 addresses, mostly shared (the guest's, ::1); this bounds the table by the flow tables.
    this.addrs = new IpAddresses(Math.min(IPV6_MAX_SLOTS, opts.tcpMaxFlows + opts.udpMaxFlows + opts.icmpMaxFlows + 1024));
    this.pkt = new IpPacket(this.addrs);
    this.reassembler = new Ipv4Reassembler({ timeoutMs: opts.reassemblyTimeoutMs });
    this.reassembler6 = new Ipv4Reassembler({ addrs: this.addrs, timeoutMs: opts.reassemblyTimeoutMs });
    const prefix6 = opts.ipv6Prefix ?? null;
    if (prefix6 !== null && opts.mtu < 1280) throw new RangeError(`IPv6 needs an MTU of at least 1280, got ${opts.mtu}`);
    this.router6 =
      prefix6 === null
        ? null
        : new Ipv6Router(
            {
              prefix: prefix6,
              mac: gateway.mac,
              mtu: opts.mtu,
              dnsEnabled: opts.dnsUpstreams.length > 0,
              ...(opts.ipv6RaIntervalMs !== undefined ? { maxRtrAdvIntervalMs: opts.ipv6RaIntervalMs } : {}),
            },
            sink,
            gateway,
          );
    const p6 = prefix6 === null ? null : parsePrefix(prefix6).address;
    this.addressMap = new AddressMap({
      network: opts.network,
      prefix: opts.prefix,
      hostLoopback: opts.hostLoopback,
      ...(p6 !== null ? { ipv6: { addrs: this.addrs, prefix: p6, gateway: prefixHost(p6, 2), dns: prefixHost(p6, 3) } } : {}),
    });
    this.out = new GuestOutput(sink, gateway, gateway.mac, drain);
    this.ipv4 = new IpOutput(this.out, opts.mtu, this.addrs);
    const tcpConfig: TcpConfig = Object.freeze({ ...tcpDefaults, ...opts.tcp, mss: Math.min(65_495, opts.mtu - TCP_IP_OVERHEAD) });
    this.tcp = new TcpNat(
      { addressMap: this.addressMap, addrs: this.addrs, tcp: tcpConfig, maxFlows: opts.tcpMaxFlows, idleTimeoutMs: opts.tcpIdleTimeoutMs },
      this.out,
    );
    this.dhcp = opts.dhcp
      ? new DhcpServer({
          network: opts.network,
          prefix: opts.prefix,
          dns: opts.dnsUpstreams.length > 0 ? this.addressMap.dns : null,
          mtu: opts.mtu,
        })
      : null;
    this.udp = new UdpNat(
      {
        addressMap: this.addressMap,
        maxFlows: opts.udpMaxFlows,
        idleTimeoutMs: opts.udpIdleTimeoutMs,
        dnsIdleTimeoutMs: opts.udpDnsIdleTimeoutMs,
        dhcp: this.dhcp,
        dnsUpstreams: opts.dnsUpstreams,
        dnsTimeoutMs: opts.dnsTimeoutMs,
        localNames: opts.localNames ?? null,
      },
      this.ipv4,
      this.neighbors,
    );
    this.icmp = new IcmpNat(
      { addressMap: this.addressMap, maxFlows: opts.icmpMaxFlows, idleTimeoutMs: opts.icmpIdleTimeoutMs },
      this.ipv4,
      this.neighbors,
    );
    this.inbound = new InboundForwarder(this.neighbors, this.tcp, this.udp);
    // ARP: the gateway asks for guests that never spoke, and every ARP packet a guest sends teaches us its MAC.
    this.neighbors.requester = { sendArpRequest: (ip, now) => this.solicit(ip, now, gateway) };
    gateway.arpListener = (ip, mac, now) => {
      if (this.addressMap.inSubnet(ip)) this.neighbors.learn(ip, mac, now);
    };
    gateway.setReassembler(this.reassembler);
    gateway.setIpv4Handler(IP_PROTO_TCP, this);
    gateway.setIpv4Handler(IP_PROTO_UDP, this);
    gateway.setIpv4Handler(IP_PROTO_ICMP, this);
    const r6 = this.router6;
    if (r6 !== null) {
      const addrs = this.addrs;
      this.neighbors.lookup6 = (h) => r6.lookup(addrs.bytes, addrs.offsetOf(h));
      r6.neighborListener = (b, off, macOff, now) => {
        const h = addrs.find(b, off);
        if (h < 0) return;
        let mac = 0;
        for (let i = 0; i < 6; i++) mac = mac * 256 + b[macOff + i];
        this.neighbors.learn(h, mac, now);
      };
      gateway.setIpv6(r6, this);
    }
  }

  /** Neighbour solicitation for an IPv6 handle, ARP for an IPv4 address (Neighbors' requester). */
  private solicit(ip: number, now: number, gateway: Gateway): void {
    if (ip < 0x1_0000_0000) return gateway.sendArpRequest(ip, now);
    this.router6?.sendNeighborSolicitation(this.addrs.bytes, this.addrs.offsetOf(ip), now);
  }

  handleIpv4(input: Ipv4Input, now: number): DropReason | null {
    const ip = input.ip;
    const src = ip.src;
    if (src !== 0 && this.addressMap.inSubnet(src)) this.neighbors.learn(src, input.eth.src, now);
    const p = this.pkt;
    p.frame = input.frame;
    p.srcMac = input.eth.src;
    p.v6 = false;
    p.src = src;
    p.dst = ip.dst;
    p.protocol = ip.protocol;
    p.ipOff = ip.off;
    p.ipLen = ip.totalLength;
    p.l4Off = ip.payloadOffset;
    p.l4Len = ip.payloadLength;
    p.l4ChecksumPartial = input.l4ChecksumPartial;
    p.l4ChecksumValid = input.l4ChecksumValid;
    p.gsoType = input.gsoType;
    p.gsoSize = input.gsoSize;
    p.toGateway = input.toGateway;
    p.toBroadcast = input.toBroadcast;
    switch (ip.protocol) {
      case IP_PROTO_TCP:
        return this.tcp.handle(p, now);
      case IP_PROTO_UDP:
        return this.udp.handle(p, now);
      case IP_PROTO_ICMP:
        return this.icmp.handle(p, now);
      default:
        return 'unhandled-ip-proto';
    }
  }

  handleIpv6(router: Ipv6Router, frame: Frame, now: number): DropReason | null {
    const ext = router.ext;
    const proto = ext.protocol;
    if (proto === IPV6_NH_ICMPV6) {
      // The router answered echo to our own addresses and took NDP; echo to others goes out through ping
      // sockets, and nothing else a guest sends (errors, MLD, unknown types) has anywhere to go.
      if (ext.length < 1 || frame.buf[ext.offset] !== ICMPV6_ECHO_REQUEST) return 'icmpv6-not-echo';
    } else if (proto !== IPV6_NH_TCP && proto !== IPV6_NH_UDP) {
      return 'unhandled-ip-proto';
    }
    const ip = router.ip;
    const b = frame.buf;
    const a = this.addrs;
    const src = a.acquire(b, ip.srcOffset);
    if (src < 0) {
      this.ipv6AddressFull++;
      return 'ipv6-address-table-full';
    }
    const dst = a.acquire(b, ip.dstOffset);
    if (dst < 0) {
      a.release(src);
      this.ipv6AddressFull++;
      return 'ipv6-address-table-full';
    }
    const p = this.pkt;
    p.frame = frame;
    p.ipOff = ip.off;
    p.ipLen = ip.packetLength;
    p.l4Off = ext.offset;
    p.l4Len = ext.length;
    p.l4ChecksumPartial = router.l4ChecksumPartial;
    p.l4ChecksumValid = router.l4ChecksumValid;
    if (ext.hasFragment) {
      const bad = this.reassemble6(router, frame, src, dst, now);
      if (bad !== 'complete') {
        a.release(dst);
        a.release(src);
        return bad;
      }
    }
    p.srcMac = router.eth.src;
    p.v6 = true;
    p.src = src;
    p.dst = dst;
    p.protocol = proto;
    p.gsoType = router.gsoType;
    p.gsoSize = router.gsoSize;
    p.toGateway = dst === this.addressMap.gateway6 || dst === this.addressMap.dns6;
    p.toBroadcast = false;
    const r = proto === IPV6_NH_TCP ? this.tcp.handle(p, now) : proto === IPV6_NH_UDP ? this.udp.handle(p, now) : this.icmp.handle(p, now);
    a.release(dst);
    a.release(src);
    return r;
  }

  /**
   * Feeds an IPv6 fragment to the reassembler. When it completes a
   * datagram, the packet is rebuilt unfragmented (the IPv6 header without
   * extension headers, then the payload) and `this.pkt` is pointed at it:
   * 'complete'. Otherwise null (waiting, or dropped and counted by the
   * reassembler) or a drop reason.
   */
  private reassemble6(router: Ipv6Router, frame: Frame, src: number, dst: number, now: number): DropReason | 'complete' | null {
    const ext = router.ext;
    if (router.gsoType !== VIRTIO_NET_HDR_GSO_NONE) return 'fragment-gso';
    const d = this.reassembler6.input(src, dst, ext.protocol, ext.fragmentId, ext.fragmentOffset, ext.moreFragments, frame.buf, ext.offset, ext.length, now);
    if (d === null) return null;
    const out = this.reassembled6;
    const ipOff = router.ip.off;
    frame.buf.copy(out, 0, ipOff, ipOff + IPV6_HEADER_LEN);
    out[4] = d.len >>> 8;
    out[5] = d.len & 0xff;
    out[6] = ext.protocol;
    d.buf.copy(out, IPV6_HEADER_LEN, d.off, d.off + d.len);
    const f = this.reassembledFrame6;
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

  /** End of an input batch (`holdAcks`: see TcpNat.flush). */
  flush(now: number, holdAcks = false): void {
    this.tcp.flush(now, holdAcks);
  }

  /** Sends the TCP ACKs the last flush held back. */
  flushHeldAcks(now: number): void {
    this.tcp.flushHeldAcks(now);
  }

  pollAt(): number {
    return Math.min(
      this.tcp.pollAt(),
      this.udp.pollAt(),
      this.icmp.pollAt(),
      this.reassembler.pollAt(),
      this.reassembler6.pollAt(),
      this.neighbors.pollAt(),
      this.router6?.pollAt() ?? Infinity,
    );
  }

  poll(now: number): void {
    this.tcp.poll(now);
    this.udp.poll(now);
    this.icmp.poll(now);
    this.reassembler.poll(now);
    this.reassembler6.poll(now);
    this.neighbors.poll(now);
    this.router6?.poll(now);
  }

  stats(): object {
    return {
      tcp: this.tcp.stats(),
      udp: { ...this.udp.flows.stats(), dhcpReplies: this.udp.dhcpReplies, portUnreachables: this.udp.portUnreachables, drops: this.udp.drops, dns: this.udp.dns?.counters },
      icmp: { ...this.icmp.flows.stats(), echoesOut: this.icmp.echoesOut, repliesIn: this.icmp.repliesIn, errorsIn: this.icmp.errorsIn, drops: this.icmp.drops },
      dhcp: this.dhcp?.counters ?? null,
      reassembly: this.reassembler.stats(),
      reassembly6: this.reassembler6.stats(),
      neighbors: this.neighbors.stats(),
      ipv6: this.router6 === null ? null : { ...this.router6.stats(), addresses: this.addrs.size, addressTableFull: this.ipv6AddressFull },
      portForward: this.inbound.stats(),
      fragmentsOut: this.ipv4.fragmentsOut,
      guestFrames: this.out.framesOut,
      guestBytes: this.out.bytesOut,
    };
  }
}
