/**
 * The virtual gateway: the bridge port that plays the router of the
 * guest network, as slirp does (gateway = network+2, DNS = network+3), and
 * the one entry point of the layers above the link.
 *
 * How it works
 * - `deliver` parses the Ethernet header and the virtio-net header once
 *   (LinkInput, stack/link.ts), drops frames for other MACs and from
 *   multicast sources, and dispatches by EtherType: ARP and IPv4 to the IPv4
 *   layer (stack/ip4/), IPv6 to the IPv6 layer (stack/ip6/) when one is
 *   plugged in. Those layers answer what is the gateway's own business and
 *   hand the rest as one IpPacket to the handler of its protocol (the NAT).
 *   Every early return counts exactly one reason in `counters.drops`;
 *   nothing throws on input, however malformed.
 * - Traffic nobody takes (no layer or handler for it) is also counted by
 *   reason in `unhandled`; a GSO super-frame nobody takes is 'unhandled-gso'.
 * - One transmit arena (`out`, stack/guest-output.ts) for every frame the
 *   stack sends: the layers' own (ARP, echo, NDP, RAs) and the NAT's. It is
 *   registered once with every port that writes from stable memory.
 * - No per-packet allocation: the link views and the transmit frame are
 *   fields.
 */
import { newDropCounters, type DropCounts } from './counters.js';
import type { DropReason } from './drop-reasons.js';
import { PortCounters, type Frame, type FrameSink, type Port } from './frame.js';
import type { IpAddresses } from './ip/ip-addresses.js';
import type { IpHandler } from './ip/ip-packet.js';
import type { IpReassembler } from './ip/reassembly.js';
import { Ipv4Layer } from './ip4/ipv4-layer.js';
import type { Ipv6Layer } from './ip6/ipv6-layer.js';
import { LinkInput } from './link.js';
import { GuestOutput, GUEST_OUTPUT_ARENA } from './guest-output.js';
import { ETH_HEADER_LEN, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6 } from './wire/ethernet.js';
import { isMulticastMac } from './wire/mac.js';
import { VIRTIO_NET_HDR_GSO_NONE } from './wire/vnet.js';

export { GATEWAY_TTL } from './ip4/ipv4-layer.js';

export interface GatewayOptions {
  /** Network address (host bits zero) as a u32. */
  network: number;
  /** Prefix length, at most 29 so that the gateway and DNS addresses are hosts. */
  prefix: number;
  /** The gateway's MAC (48-bit number, unicast). */
  mac: number;
  /** Largest IP packet the gateway sends. */
  mtu: number;
  name?: string;
  /** Size of the transmit arena (at least two 64 KiB frames). */
  txArenaBytes?: number;
  /** The address table of the packets handed on (shared with the NAT). */
  addrs?: IpAddresses;
}

export interface GatewayStats {
  arpReplies: number;
  /** Requests the gateway sent to find a guest's MAC (port forwards). */
  arpRequestsSent: number;
  /** ARP packets parsed fine but not answered (other targets, replies, other operations). */
  arpIgnored: number;
  echoReplies: number;
  notForUs: number;
  /** Frames addressed to the gateway that no handler takes yet, by reason. */
  unhandled: DropCounts;
}

export class Gateway implements Port {
  id = -1;
  readonly name: string;
  /** Accepts frames with a virtio-net header; frames it emits never carry one. */
  readonly vnet = true;
  readonly counters = new PortCounters();

  readonly mac: number;
  readonly mtu: number;
  /** The IPv4 layer (ARP included): always there. */
  readonly ip4: Ipv4Layer;
  /** The transmit arena everything the stack sends is built in: register `out.arena` with native I/O to write without a copy. */
  readonly out: GuestOutput;

  private ip6Layer: Ipv6Layer | null = null;
  private readonly link = new LinkInput();
  private notForUs = 0;
  private readonly unhandled = newDropCounters();

  /**
   * `sink` takes every frame the stack sends (the bridge); `drain` makes
   * every port write what it queued, before the transmit arena wraps.
   */
  constructor(opts: GatewayOptions, sink: FrameSink, drain: (now: number) => void = () => undefined) {
    const { mac, mtu } = opts;
    if (!Number.isInteger(mac) || mac < 0 || mac > 0xffff_ffff_ffff || isMulticastMac(mac)) {
      throw new RangeError(`gateway MAC must be a unicast 48-bit number, got ${mac}`);
    }
    this.name = opts.name ?? 'gateway';
    this.mac = mac;
    this.mtu = mtu;
    this.out = new GuestOutput(sink, this, mac, drain, opts.txArenaBytes ?? GUEST_OUTPUT_ARENA, mtu + ETH_HEADER_LEN);
    this.ip4 = new Ipv4Layer(
      { network: opts.network, prefix: opts.prefix, mac, mtu, ...(opts.addrs !== undefined ? { addrs: opts.addrs } : {}) },
      this.out,
      this.unhandled,
    );
  }

  get network(): number {
    return this.ip4.network;
  }
  get prefix(): number {
    return this.ip4.prefix;
  }
  get mask(): number {
    return this.ip4.mask;
  }
  get broadcast(): number {
    return this.ip4.broadcast;
  }
  /** network+2. */
  get address(): number {
    return this.ip4.address;
  }
  /** network+3. */
  get dnsAddress(): number {
    return this.ip4.dnsAddress;
  }

  /** Plugs (or with null, unplugs) the IPv4 handler for one IP protocol number. */
  setIpv4Handler(protocol: number, handler: IpHandler | null): void {
    this.ip4.setHandler(protocol, handler);
  }

  /** IPv4 fragments go through this reassembler (the owner polls it); without one they are dropped. */
  setReassembler(r: IpReassembler | null): void {
    this.ip4.setReassembler(r);
  }

  /** Plugs in the IPv6 layer; null turns IPv6 off. */
  setIpv6(layer: Ipv6Layer | null): void {
    this.ip6Layer = layer;
  }

  get ip6(): Ipv6Layer | null {
    return this.ip6Layer;
  }

  /** The gateway or the DNS address. */
  isLocalAddress(ip: number): boolean {
    return this.ip4.isLocalAddress(ip);
  }

  /** Asks who has a guest's IPv4 address (ARP). */
  sendArpRequest(ip: number, now: number): void {
    this.ip4.arp.sendRequest(ip, now);
  }

  deliver(frame: Frame, now: number): void {
    this.counters.rxFrames++;
    this.counters.rxBytes += frame.len;
    const link = this.link;
    let bad = link.parseEthernet(frame);
    if (bad !== null) return this.drop(bad);
    const eth = link.eth;
    if (!eth.dstIsMulticast && !eth.dstIs(this.mac)) {
      // Flooded unknown unicast for somebody else: normal on a bridge.
      this.notForUs++;
      return this.drop('not-for-us');
    }
    if (eth.srcIsMulticast) return this.drop('eth-src-multicast');
    bad = link.parseVnet();
    if (bad !== null) return this.drop(bad);

    switch (eth.etherType) {
      case ETHERTYPE_IPV4:
        bad = this.ip4.input(link, now);
        break;
      case ETHERTYPE_ARP:
        if (link.gsoType !== VIRTIO_NET_HDR_GSO_NONE) return this.unhandle('unhandled-gso');
        bad = this.ip4.arp.input(link, now);
        break;
      case ETHERTYPE_IPV6: {
        const l6 = this.ip6Layer;
        if (l6 === null) return this.unhandle('unhandled-ipv6');
        bad = l6.input(link, now);
        break;
      }
      default:
        return this.unhandle('unhandled-ethertype');
    }
    if (bad !== null) this.drop(bad);
  }

  flush(_now: number): void {}

  stats(): GatewayStats {
    const arp = this.ip4.arp;
    return {
      arpReplies: arp.replies,
      arpRequestsSent: arp.requestsSent,
      arpIgnored: arp.ignored,
      echoReplies: this.ip4.echoReplies,
      notForUs: this.notForUs,
      unhandled: this.unhandled.snapshot(),
    };
  }

  private drop(reason: DropReason): void {
    this.counters.drop(reason);
  }

  private unhandle(reason: DropReason): void {
    this.unhandled.add(reason);
    this.counters.drop(reason);
  }
}
