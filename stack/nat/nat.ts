/**
 * The NAT behind the gateway: TCP termination, UDP and ICMP NAT, DHCP, the
 * DNS forwarder, fragment reassembly, all sans-IO. The runtime plugs host
 * sockets into `tcp.host`, `udp.host` and `icmp.host`, calls `flush` at the
 * end of every input batch, and drives `pollAt`/`poll`.
 *
 * It learns which MAC each guest address uses from the frames guests send,
 * so that answers not triggered by a frame in hand (DNS, UDP from the host)
 * can be addressed.
 */
import type { FrameSink } from '../frame.js';
import type { Gateway, Ipv4Handler, Ipv4Input } from '../gateway.js';
import { DhcpServer } from '../dhcp-server.js';
import { Ipv4Reassembler } from '../ipv4-reassembly.js';
import { IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP } from '../wire/ipv4.js';
import { tcpDefaults, type TcpConfig } from '../tcp/config.js';
import { AddressMap } from './address-map.js';
import { GuestOutput } from './guest-output.js';
import { IcmpNat } from './icmp-nat.js';
import { Ipv4Output } from './ipv4-output.js';
import { Neighbors } from './neighbors.js';
import { InboundForwarder } from './port-forward.js';
import { TcpNat } from './tcp-nat.js';
import { UdpNat } from './udp-nat.js';

export interface NatOptions {
  network: number;
  prefix: number;
  mtu: number;
  hostLoopback: boolean;
  dhcp: boolean;
  /** Upstream resolvers for N+3; empty disables DNS. */
  dnsUpstreams: { ip: string; port: number }[];
  dnsTimeoutMs: number;
  tcpMaxFlows: number;
  tcpIdleTimeoutMs: number;
  udpMaxFlows: number;
  udpIdleTimeoutMs: number;
  udpDnsIdleTimeoutMs: number;
  icmpMaxFlows: number;
  icmpIdleTimeoutMs: number;
  /** TCP engine settings beyond the MSS (which follows the MTU). */
  tcp?: Partial<TcpConfig>;
}

/** IPv4 header + TCP header without options. */
const TCP_IP_OVERHEAD = 40;

export class Nat implements Ipv4Handler {
  readonly addressMap: AddressMap;
  readonly out: GuestOutput;
  readonly ipv4: Ipv4Output;
  readonly neighbors = new Neighbors();
  readonly reassembler = new Ipv4Reassembler();
  readonly tcp: TcpNat;
  readonly udp: UdpNat;
  readonly icmp: IcmpNat;
  readonly dhcp: DhcpServer | null;
  /** Port forwards' way in: host clients -> guest flows (MAC resolution included). */
  readonly inbound: InboundForwarder;

  constructor(opts: NatOptions, gateway: Gateway, sink: FrameSink, drain: (now: number) => void) {
    this.addressMap = new AddressMap({ network: opts.network, prefix: opts.prefix, hostLoopback: opts.hostLoopback });
    this.out = new GuestOutput(sink, gateway, gateway.mac, drain);
    this.ipv4 = new Ipv4Output(this.out, opts.mtu);
    const tcpConfig: TcpConfig = Object.freeze({ ...tcpDefaults, ...opts.tcp, mss: Math.min(65_495, opts.mtu - TCP_IP_OVERHEAD) });
    this.tcp = new TcpNat(
      { addressMap: this.addressMap, tcp: tcpConfig, maxFlows: opts.tcpMaxFlows, idleTimeoutMs: opts.tcpIdleTimeoutMs },
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
    this.neighbors.requester = gateway;
    gateway.arpListener = (ip, mac, now) => {
      if (this.addressMap.inSubnet(ip)) this.neighbors.learn(ip, mac, now);
    };
    gateway.setReassembler(this.reassembler);
    gateway.setIpv4Handler(IP_PROTO_TCP, this);
    gateway.setIpv4Handler(IP_PROTO_UDP, this);
    gateway.setIpv4Handler(IP_PROTO_ICMP, this);
  }

  handleIpv4(pkt: Ipv4Input, now: number): string | null {
    const ip = pkt.ip;
    const src = ip.src;
    if (src !== 0 && this.addressMap.inSubnet(src)) this.neighbors.learn(src, pkt.eth.src, now);
    switch (ip.protocol) {
      case IP_PROTO_TCP:
        return this.tcp.handleIpv4(pkt, now);
      case IP_PROTO_UDP:
        return this.udp.handleIpv4(pkt, now);
      case IP_PROTO_ICMP:
        return this.icmp.handleIpv4(pkt, now);
      default:
        return 'unhandled-ip-proto';
    }
  }

  /** End of an input batch. */
  flush(now: number): void {
    this.tcp.flush(now);
  }

  pollAt(): number {
    return Math.min(this.tcp.pollAt(), this.udp.pollAt(), this.icmp.pollAt(), this.reassembler.pollAt(), this.neighbors.pollAt());
  }

  poll(now: number): void {
    this.tcp.poll(now);
    this.udp.poll(now);
    this.icmp.poll(now);
    this.reassembler.poll(now);
    this.neighbors.poll(now);
  }

  stats(): object {
    return {
      tcp: this.tcp.stats(),
      udp: { ...this.udp.flows.stats(), dhcpReplies: this.udp.dhcpReplies, portUnreachables: this.udp.portUnreachables, drops: this.udp.drops, dns: this.udp.dns?.counters },
      icmp: { ...this.icmp.flows.stats(), echoesOut: this.icmp.echoesOut, repliesIn: this.icmp.repliesIn, errorsIn: this.icmp.errorsIn, drops: this.icmp.drops },
      reassembly: this.reassembler.stats(),
      neighbors: this.neighbors.stats(),
      portForward: this.inbound.stats(),
      fragmentsOut: this.ipv4.fragmentsOut,
      guestFrames: this.out.framesOut,
      guestBytes: this.out.bytesOut,
    };
  }
}
