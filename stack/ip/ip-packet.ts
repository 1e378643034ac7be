/**
 * One guest packet as the transport layer sees it, whichever the IP
 * version: the addresses as handles (ip-addresses.ts), where the upper layer
 * sits, and what the virtio-net header said about its checksum and
 * segmentation. The IPv4 layer (stack/ip4/ipv4-layer.ts) and the IPv6 layer
 * (stack/ip6/ipv6-layer.ts) each fill one reused instance after their checks
 * and reassembly and hand it to the `IpHandler` plugged in for its protocol
 * (the NAT), so the TCP, UDP and ICMP paths above them are written once.
 */
import type { Frame } from '../frame.js';
import { checksum } from '../wire/checksum.js';
import { ETHERTYPE_IPV4, ETHERTYPE_IPV6 } from '../wire/ethernet.js';
import { VIRTIO_NET_HDR_GSO_NONE } from '../wire/vnet.js';
import type { IpAddresses } from './ip-addresses.js';
import type { DropReason } from '../drop-reasons.js';

export class IpPacket {
  frame!: Frame;
  /** The guest's MAC (Ethernet source). */
  srcMac = 0;
  v6 = false;
  /** Address handles; valid (and referenced by the Nat) while the packet is handled. */
  src = 0;
  dst = 0;
  /** Upper-layer protocol number. */
  protocol = 0;
  /** The IP packet (header included) in frame.buf, for ICMP error quotes. */
  ipOff = 0;
  ipLen = 0;
  /** The upper-layer header and what follows it. */
  l4Off = 0;
  l4Len = 0;
  l4ChecksumPartial = false;
  l4ChecksumValid = false;
  gsoType = VIRTIO_NET_HDR_GSO_NONE;
  gsoSize = 0;
  /** Destination is a gateway or DNS address of either family. */
  toGateway = false;
  /** Destination is a broadcast or multicast address. */
  toBroadcast = false;

  constructor(readonly addrs: IpAddresses) {}

  get etherType(): number {
    return this.v6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4;
  }

  /** Whether the upper-layer checksum must be (and is) right: true when an offload vouches for it or it verifies. */
  l4ChecksumOk(): boolean {
    if (this.l4ChecksumPartial || this.l4ChecksumValid) return true;
    const sum = this.addrs.pseudoSum(this.src, this.dst, this.protocol, this.l4Len);
    return checksum(this.frame.buf, this.l4Off, this.l4Len, sum) === 0;
  }
}

/** The transport demultiplexer's side of the IPv4 and IPv6 layers. */
export interface IpHandler {
  /**
   * Takes one packet. Returns null when it consumed it, or a drop reason
   * that the gateway counts. Must not keep `pkt`: it is reused, and its
   * address handles are only referenced during the call.
   */
  handleIp(pkt: IpPacket, now: number): DropReason | null;
}
