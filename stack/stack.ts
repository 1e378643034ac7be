/**
 * The one place that builds the stack and wires it together, bottom up:
 *
 *   Gateway (L2 entry: Ethernet + virtio-net header parsed once, one transmit arena)
 *     ├─ Ipv4Layer (stack/ip4/: ARP, checks, reassembly, echo)  ─┐
 *     └─ Ipv6Layer (stack/ip6/: NDP, RAs, checks, reassembly, echo) ─┤ IpPacket
 *                                                                  ▼
 *   Nat (stack/nat/: the transport demultiplexer; TCP, UDP + DHCP + DNS, ICMP)
 *     └─ IpOutput (stack/ip/: headers, fragments) into the gateway's GuestOutput arena
 *
 * Shared below the NAT: the address table (handles for both families,
 * stack/ip/ip-addresses.ts), the neighbour table (guest address -> MAC,
 * resolution by ARP or neighbour solicitation, stack/ip/neighbors.ts) and a
 * reassembler per family (stack/ip/reassembly.ts). Nothing here handles a
 * packet: it only builds, plugs, polls and reports. Sans-IO like the rest:
 * the runtime adds `gateway` to its bridge (the sink), calls `flush` after
 * every input batch and drives `pollAt`/`poll`.
 */
import { DhcpServer } from './dhcp-server.js';
import type { FrameSink } from './frame.js';
import { Gateway } from './gateway.js';
import type { GuestOutput } from './guest-output.js';
import { IpAddresses, IPV6_MAX_SLOTS } from './ip/ip-addresses.js';
import { IpOutput } from './ip/ip-output.js';
import { Neighbors } from './ip/neighbors.js';
import { IpReassembler } from './ip/reassembly.js';
import { Ipv6Layer } from './ip6/ipv6-layer.js';
import { Nat, type NatOptions } from './nat/nat.js';
import { IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP } from './wire/ipv4.js';
import { IPV6_NH_ICMPV6, IPV6_NH_TCP, IPV6_NH_UDP } from './wire/ipv6.js';
import { parsePrefix, prefixHost } from './wire/ipv6-address.js';

export interface StackOptions extends NatOptions {
  /** The gateway's MAC (48-bit number, unicast). */
  mac: number;
  /** Serve DHCP on the IPv4 network. */
  dhcp: boolean;
  /** IPv6 on the link: the /64 prefix ("fd00::/64"); null or absent for none. Needs mtu >= 1280. */
  ipv6Prefix?: string | null;
  /** Interval of unsolicited router advertisements (RFC 4861 MaxRtrAdvInterval). */
  ipv6RaIntervalMs?: number;
}

export class Stack {
  readonly gateway: Gateway;
  /** The IPv6 layer, or null when IPv6 is off. */
  readonly ip6: Ipv6Layer | null;
  readonly addrs: IpAddresses;
  readonly neighbors = new Neighbors();
  readonly reassembler4: IpReassembler;
  /** IPv6 fragments (addresses are handles; slots hold references). */
  readonly reassembler6: IpReassembler;
  readonly out: GuestOutput;
  readonly ipOutput: IpOutput;
  readonly dhcp: DhcpServer | null;
  readonly nat: Nat;

  /**
   * `sink` takes every frame the stack sends (the bridge); `drain` makes
   * every port write what it queued (before the guest output arena wraps).
   */
  constructor(opts: StackOptions, sink: FrameSink, drain: (now: number) => void) {
    const prefix6 = opts.ipv6Prefix ?? null;
    if (prefix6 !== null && opts.mtu < 1280) throw new RangeError(`IPv6 needs an MTU of at least 1280, got ${opts.mtu}`);
    // Every flow holds at most three IPv6 addresses, mostly shared (the guest's, ::1); this bounds the table by the flow tables.
    this.addrs = new IpAddresses(Math.min(IPV6_MAX_SLOTS, opts.tcpMaxFlows + opts.udpMaxFlows + opts.icmpMaxFlows + 1024));
    this.reassembler4 = new IpReassembler({ timeoutMs: opts.reassemblyTimeoutMs });
    this.reassembler6 = new IpReassembler({ addrs: this.addrs, timeoutMs: opts.reassemblyTimeoutMs });
    const gateway = new Gateway({ network: opts.network, prefix: opts.prefix, mac: opts.mac, mtu: opts.mtu, addrs: this.addrs }, sink, drain);
    this.gateway = gateway;
    const ip4 = gateway.ip4;
    this.ip6 =
      prefix6 === null
        ? null
        : new Ipv6Layer(
            {
              prefix: prefix6,
              mac: opts.mac,
              mtu: opts.mtu,
              dnsEnabled: opts.dnsUpstreams.length > 0,
              addrs: this.addrs,
              ...(opts.ipv6RaIntervalMs !== undefined ? { maxRtrAdvIntervalMs: opts.ipv6RaIntervalMs } : {}),
            },
            gateway.out,
          );
    this.out = gateway.out;
    this.ipOutput = new IpOutput(this.out, opts.mtu, this.addrs);
    this.dhcp = opts.dhcp
      ? new DhcpServer({ network: opts.network, prefix: opts.prefix, dns: opts.dnsUpstreams.length > 0 ? ip4.dnsAddress : null, mtu: opts.mtu })
      : null;
    const p6 = prefix6 === null ? null : parsePrefix(prefix6).address;
    this.nat = new Nat(opts, {
      addrs: this.addrs,
      neighbors: this.neighbors,
      out: this.out,
      ip: this.ipOutput,
      dhcp: this.dhcp,
      ipv6: p6 === null ? null : { prefix: p6, gateway: prefixHost(p6, 2), dns: prefixHost(p6, 3) },
    });

    // IPv4: fragments are reassembled, TCP/UDP/ICMP go to the NAT, ARP and IP teach guest MACs.
    ip4.setReassembler(this.reassembler4);
    ip4.setHandler(IP_PROTO_TCP, this.nat);
    ip4.setHandler(IP_PROTO_UDP, this.nat);
    ip4.setHandler(IP_PROTO_ICMP, this.nat);
    ip4.neighbors = this.neighbors;
    ip4.arp.neighbors = this.neighbors;
    // Resolution for guests that never spoke: ARP for an IPv4 address, neighbour solicitation for an IPv6 handle.
    const addrs = this.addrs;
    const l6 = this.ip6;
    this.neighbors.requester = {
      sendArpRequest: (ip, now) => {
        if (ip < 0x1_0000_0000) ip4.arp.sendRequest(ip, now);
        else l6?.ndp.sendSolicitation(addrs.bytes, addrs.offsetOf(ip), now);
      },
    };
    if (l6 !== null) {
      l6.setReassembler(this.reassembler6);
      l6.setHandler(IPV6_NH_TCP, this.nat);
      l6.setHandler(IPV6_NH_UDP, this.nat);
      l6.setHandler(IPV6_NH_ICMPV6, this.nat);
      // The IPv6 layer keeps the IPv6 neighbour table; the NAT asks it, and hears from its NDP of every advertisement.
      this.neighbors.lookup6 = (h) => l6.lookup(addrs.bytes, addrs.offsetOf(h));
      l6.ndp.neighborListener = (b, off, macOff, now) => {
        const h = addrs.find(b, off);
        if (h < 0) return;
        let mac = 0;
        for (let i = 0; i < 6; i++) mac = mac * 256 + b[macOff + i];
        this.neighbors.learn(h, mac, now);
      };
      gateway.setIpv6(l6);
    }
  }

  /** The memory every frame the stack sends leaves from (the gateway's one arena): ports that write from stable memory register it. */
  get transmitBuffer(): ArrayBufferLike {
    return this.out.arena.buffer;
  }

  /** End of an input batch (`holdAcks`: see TcpNat.flush). */
  flush(now: number, holdAcks = false): void {
    this.nat.flush(now, holdAcks);
  }

  /** Sends the TCP ACKs the last flush held back. */
  flushHeldAcks(now: number): void {
    this.nat.flushHeldAcks(now);
  }

  pollAt(): number {
    return Math.min(
      this.nat.pollAt(),
      this.reassembler4.pollAt(),
      this.reassembler6.pollAt(),
      this.neighbors.pollAt(),
      this.ip6?.pollAt() ?? Infinity,
    );
  }

  poll(now: number): void {
    this.nat.poll(now);
    this.reassembler4.poll(now);
    this.reassembler6.poll(now);
    this.neighbors.poll(now);
    this.ip6?.poll(now);
  }

  /** The NAT's counters with those of the layers below it (the `nat` object of the runtime's stats). */
  natStats(): object {
    const n = this.nat.stats();
    return {
      tcp: n.tcp,
      udp: n.udp,
      icmp: n.icmp,
      dhcp: this.dhcp?.counters ?? null,
      reassembly: this.reassembler4.stats(),
      reassembly6: this.reassembler6.stats(),
      neighbors: this.neighbors.stats(),
      ipv6: this.ip6 === null ? null : this.ip6.stats(),
      portForward: n.portForward,
      fragmentsOut: this.ipOutput.fragmentsOut,
      guestFrames: this.out.framesOut,
      guestBytes: this.out.bytesOut,
    };
  }
}
