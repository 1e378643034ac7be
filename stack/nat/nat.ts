/**
 * The NAT above the IPv4 and IPv6 layers: TCP termination, UDP and ICMP
 * NAT (DHCP and the DNS forwarder ride on the UDP path), all sans-IO. Both
 * layers hand it the same IpPacket (`handleIp`), whose addresses are handles
 * (stack/ip/ip-addresses.ts), so the TCP, UDP and ICMP paths are written
 * once for both versions. stack/stack.ts builds it and plugs it in; the
 * runtime plugs host sockets into `tcp.host`, `udp.host` and `icmp.host`,
 * calls `flush` at the end of every input batch, and drives `pollAt`/`poll`.
 */
import type { FlowEvents } from './flow-events.js';
import type { LocalNames } from '../dns-local-names.js';
import type { DhcpServer } from '../dhcp-server.js';
import { IPV6_NH_ICMPV6 } from '../wire/ipv6.js';
import { IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP } from '../wire/ipv4.js';
import { tcpDefaults, type TcpConfig } from '../tcp/config.js';
import { AddressMap } from './address-map.js';
import type { GuestOutput } from '../guest-output.js';
import { IcmpNat } from './icmp-nat.js';
import type { IpAddresses } from '../ip/ip-addresses.js';
import type { IpOutput } from '../ip/ip-output.js';
import type { IpHandler, IpPacket } from '../ip/ip-packet.js';
import type { Neighbors } from '../ip/neighbors.js';
import { InboundForwarder } from './port-forward.js';
import { TcpNat } from './tcp-nat.js';
import { UdpNat } from './udp-nat.js';
import type { DropReason } from '../drop-reasons.js';

export interface NatOptions {
  network: number;
  prefix: number;
  mtu: number;
  hostLoopback: boolean;
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
}

/** IPv4 header + TCP header without options. */
const TCP_IP_OVERHEAD = 40;

/** What the NAT sits on, built by stack/stack.ts. */
export interface NatLinks {
  addrs: IpAddresses;
  neighbors: Neighbors;
  /** Frames to guests (the gateway's transmit arena). */
  out: GuestOutput;
  /** IP headers, fragmentation and ICMP errors towards guests. */
  ip: IpOutput;
  dhcp: DhcpServer | null;
  /** The IPv6 /64 prefix's bytes, its gateway and DNS addresses; null when IPv6 is off. */
  ipv6: { prefix: Uint8Array; gateway: Uint8Array; dns: Uint8Array } | null;
}

export class Nat implements IpHandler {
  readonly addressMap: AddressMap;
  readonly addrs: IpAddresses;
  readonly out: GuestOutput;
  readonly ipv4: IpOutput;
  /** IPv6 is on (the IPv6 layer hands the NAT packets). */
  readonly ipv6Enabled: boolean;
  readonly neighbors: Neighbors;
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

  constructor(opts: NatOptions, links: NatLinks) {
    this.addrs = links.addrs;
    this.neighbors = links.neighbors;
    this.out = links.out;
    this.ipv4 = links.ip;
    this.dhcp = links.dhcp;
    const v6 = links.ipv6;
    this.ipv6Enabled = v6 !== null;
    this.addressMap = new AddressMap({
      network: opts.network,
      prefix: opts.prefix,
      hostLoopback: opts.hostLoopback,
      ...(v6 !== null ? { ipv6: { addrs: this.addrs, prefix: v6.prefix, gateway: v6.gateway, dns: v6.dns } } : {}),
    });
    const tcpConfig: TcpConfig = Object.freeze({ ...tcpDefaults, ...opts.tcp, mss: Math.min(65_495, opts.mtu - TCP_IP_OVERHEAD) });
    this.tcp = new TcpNat(
      { addressMap: this.addressMap, addrs: this.addrs, tcp: tcpConfig, maxFlows: opts.tcpMaxFlows, idleTimeoutMs: opts.tcpIdleTimeoutMs },
      this.out,
    );
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
  }

  /** The transport demultiplexer: one packet of either version, by protocol. */
  handleIp(p: IpPacket, now: number): DropReason | null {
    switch (p.protocol) {
      case IP_PROTO_TCP:
        return this.tcp.handle(p, now);
      case IP_PROTO_UDP:
        return this.udp.handle(p, now);
      case IP_PROTO_ICMP:
      case IPV6_NH_ICMPV6:
        return this.icmp.handle(p, now);
      default:
        return 'unhandled-ip-proto';
    }
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
    return Math.min(this.tcp.pollAt(), this.udp.pollAt(), this.icmp.pollAt());
  }

  poll(now: number): void {
    this.tcp.poll(now);
    this.udp.poll(now);
    this.icmp.poll(now);
  }

  stats(): { tcp: object; udp: object; icmp: object; portForward: object } {
    return {
      tcp: this.tcp.stats(),
      udp: { ...this.udp.flows.stats(), dhcpReplies: this.udp.dhcpReplies, portUnreachables: this.udp.portUnreachables, drops: this.udp.drops, dns: this.udp.dns?.counters },
      icmp: { ...this.icmp.flows.stats(), echoesOut: this.icmp.echoesOut, repliesIn: this.icmp.repliesIn, errorsIn: this.icmp.errorsIn, drops: this.icmp.drops },
      portForward: this.inbound.stats(),
    };
  }
}
