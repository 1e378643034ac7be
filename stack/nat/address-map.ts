/**
 * The guest-facing address plan and where each guest destination goes on
 * the host.
 *
 * Plan (slirp's): in network N/prefix the gateway is N+2, the DNS forwarder
 * N+3, and the guest's default address N+100.
 *
 * Outbound mapping, first match wins:
 * - 0/8, 127/8, 224/4 (multicast) and 240/4 (reserved, with
 *   255.255.255.255) are never forwarded. 127/8 matters most: the guest's own
 *   loopback must never become the host's, which would bypass `hostLoopback`.
 * - N+2 is the host itself: forwarded to 127.0.0.1 on the same port when
 *   host loopback is allowed, blocked otherwise.
 * - N+3 port 53 (UDP or TCP) goes to the DNS forwarder; anything else there
 *   is blocked. (Echo requests to N+2 and N+3 are answered by the gateway
 *   before they get here.)
 * - The network and broadcast addresses, and every other address of the
 *   subnet, are blocked: other guests are reached over the bridge, never
 *   through the gateway, and nothing stands behind those addresses.
 * - Port 0 is blocked for UDP and TCP. Everything else goes to the same
 *   address and port on the host's network.
 *
 * IPv6 (when a plan is given; addresses are handles, see ip-addresses.ts),
 * first match wins:
 * - ::, ::1, multicast (ff00::/8), link-local (fe80::/10) and IPv4-mapped
 *   (::ffff:0:0/96) destinations are never forwarded: the last would reach
 *   the host's 127.0.0.1 behind `hostLoopback`'s back.
 * - prefix::2 is the host: ::1 on the same port when host loopback is
 *   allowed, blocked otherwise; prefix::3 port 53 is the DNS forwarder;
 *   every other address of the prefix is blocked (guests meet on the
 *   bridge). Everything else goes out as it is.
 *
 * Inbound: a reply or forwarded connection from the host's loopback appears
 * to come from N+2 (prefix::2), the address the guest used.
 *
 * Allocation: mapOutbound fills one result object owned by the map and
 * returns it (valid until the next call), so per-packet mapping allocates
 * nothing; kinds and reasons are string literals.
 */
import { IP_PROTO_TCP, IP_PROTO_UDP } from '../wire/ipv4.js';
import { ipv6PrefixMatch } from '../wire/ipv6-address.js';
import { IPV6_HANDLE_BASE, type IpAddresses } from '../ip/ip-addresses.js';

export const GATEWAY_HOST_NUMBER = 2;
export const DNS_HOST_NUMBER = 3;
export const GUEST_HOST_NUMBER = 100;
export const DNS_PORT = 53;
/** 127.0.0.1 */
export const HOST_LOOPBACK_IP = 0x7f00_0001;
/** The smallest network that holds N+100 and its broadcast address. */
const MAX_PREFIX = 25;

export interface AddressPlanConfig {
  /** Network address as a u32 (host bits are cleared). */
  network: number;
  prefix: number;
  /** Whether the guest may reach the host's 127.0.0.1 through the gateway address. */
  hostLoopback: boolean;
  /** The IPv6 plan; absent when IPv6 is off. */
  ipv6?: Ipv6PlanConfig;
}

export interface Ipv6PlanConfig {
  addrs: IpAddresses;
  /** The /64 prefix (16 bytes, host bits clear). */
  prefix: Uint8Array;
  /** prefix::2 and prefix::3. */
  gateway: Uint8Array;
  dns: Uint8Array;
}

export type OutboundKind = 'host' | 'dns' | 'blocked';

export type BlockReason =
  | 'blocked-reserved'
  | 'blocked-loopback'
  | 'blocked-multicast'
  | 'blocked-broadcast'
  | 'blocked-host-loopback'
  | 'blocked-dns-port'
  | 'blocked-local'
  | 'blocked-port-zero';

/** Reused by AddressMap; valid until its next mapOutbound call. */
export interface OutboundTarget {
  kind: OutboundKind;
  /** Host destination when kind is 'host'. */
  ip: number;
  port: number;
  /** Why, when kind is 'blocked'; else null. */
  reason: BlockReason | null;
}

export class AddressMap {
  readonly network: number;
  readonly prefix: number;
  readonly mask: number;
  readonly broadcast: number;
  readonly gateway: number;
  readonly dns: number;
  readonly guest: number;
  readonly hostLoopback: boolean;
  /** Pinned handles of prefix::2, prefix::3 and ::1; -1 without IPv6. */
  readonly gateway6: number = -1;
  readonly dns6: number = -1;
  readonly hostLoopback6: number = -1;
  readonly ipv6: Ipv6PlanConfig | null;
  private readonly target: OutboundTarget = { kind: 'blocked', ip: 0, port: 0, reason: null };

  /** Throws on a plan that cannot hold its addresses: this checks configuration, not packets. */
  constructor(cfg: AddressPlanConfig) {
    if (!Number.isInteger(cfg.prefix) || cfg.prefix < 1 || cfg.prefix > MAX_PREFIX) {
      throw new RangeError(`network prefix must be from 1 to ${MAX_PREFIX} to hold the guest address .${GUEST_HOST_NUMBER}, got /${cfg.prefix}`);
    }
    this.prefix = cfg.prefix;
    this.mask = (0xffff_ffff << (32 - cfg.prefix)) >>> 0;
    this.network = (cfg.network & this.mask) >>> 0;
    this.broadcast = (this.network | ~this.mask) >>> 0;
    this.gateway = (this.network + GATEWAY_HOST_NUMBER) >>> 0;
    this.dns = (this.network + DNS_HOST_NUMBER) >>> 0;
    this.guest = (this.network + GUEST_HOST_NUMBER) >>> 0;
    this.hostLoopback = cfg.hostLoopback;
    this.ipv6 = cfg.ipv6 ?? null;
    if (this.ipv6 !== null) {
      const a = this.ipv6.addrs;
      this.gateway6 = a.acquire(this.ipv6.gateway, 0);
      this.dns6 = a.acquire(this.ipv6.dns, 0);
      this.hostLoopback6 = a.parse('::1');
    }
  }

  /** The gateway address of the handle's family (the source guests see for the host). */
  gatewayFor(h: number): number {
    return h >= IPV6_HANDLE_BASE ? this.gateway6 : this.gateway;
  }

  /** The DNS address of the handle's family. */
  dnsFor(h: number): number {
    return h >= IPV6_HANDLE_BASE ? this.dns6 : this.dns;
  }

  /** A guest-side address: in the IPv4 subnet, or in the IPv6 prefix. */
  isGuestSide(h: number): boolean {
    if (h < IPV6_HANDLE_BASE) return this.inSubnet(h);
    const v6 = this.ipv6;
    return v6 !== null && ipv6PrefixMatch(v6.addrs.bytes, v6.addrs.offsetOf(h), v6.prefix, 0, 64);
  }

  inSubnet(ip: number): boolean {
    return ((ip & this.mask) >>> 0) === this.network;
  }

  /** Where a guest packet to dstIp:dstPort (protocol number proto) goes. */
  mapOutbound(dstIp: number, dstPort: number, proto: number): OutboundTarget {
    if (dstIp >= IPV6_HANDLE_BASE) return this.mapOutbound6(dstIp, dstPort, proto);
    const ip = dstIp >>> 0;
    const top = ip >>> 24;
    if (top === 0) return this.block('blocked-reserved');
    if (top === 127) return this.block('blocked-loopback');
    if (top >= 224) return this.block(top < 240 ? 'blocked-multicast' : ip === 0xffff_ffff ? 'blocked-broadcast' : 'blocked-reserved');
    if (((ip & this.mask) >>> 0) === this.network) {
      const service = this.mapService(ip, this.gateway, this.dns, HOST_LOOPBACK_IP, dstPort, proto);
      if (service !== null) return service;
      if (ip === this.network || ip === this.broadcast) return this.block('blocked-broadcast');
      return this.block('blocked-local');
    }
    return this.mapRemote(ip, dstPort, proto);
  }

  /** The gateway (host loopback) and DNS addresses of one family; null for any other address. */
  private mapService(dst: number, gateway: number, dns: number, loopback: number, dstPort: number, proto: number): OutboundTarget | null {
    const ported = proto === IP_PROTO_UDP || proto === IP_PROTO_TCP;
    if (dst === gateway) {
      if (!this.hostLoopback) return this.block('blocked-host-loopback');
      if (ported && dstPort === 0) return this.block('blocked-port-zero');
      return this.host(loopback, ported ? dstPort : 0);
    }
    if (dst !== dns) return null;
    if (!ported || dstPort !== DNS_PORT) return this.block('blocked-dns-port');
    const t = this.target;
    t.kind = 'dns';
    t.ip = 0;
    t.port = DNS_PORT;
    t.reason = null;
    return t;
  }

  /** A destination beyond the guest network: out as it is (echo has no port). */
  private mapRemote(dst: number, dstPort: number, proto: number): OutboundTarget {
    const ported = proto === IP_PROTO_UDP || proto === IP_PROTO_TCP;
    if (ported && dstPort === 0) return this.block('blocked-port-zero');
    return this.host(dst, ported ? dstPort : 0);
  }

  private mapOutbound6(h: number, dstPort: number, proto: number): OutboundTarget {
    const v6 = this.ipv6;
    if (v6 === null) return this.block('blocked-reserved');
    const b = v6.addrs.bytes;
    const o = v6.addrs.offsetOf(h);
    if (b[o] === 0xff) return this.block('blocked-multicast');
    if (b[o] === 0xfe && (b[o + 1] & 0xc0) === 0x80) return this.block('blocked-local');
    let zeros = 0;
    while (zeros < 10 && b[o + zeros] === 0) zeros++;
    if (zeros === 10) {
      // ::/96 holds :: and ::1; ::ffff:0:0/96 holds IPv4-mapped addresses.
      if (b[o + 10] === 0 && b[o + 11] === 0) {
        let low = 0;
        for (let i = 12; i < 16; i++) low = low * 256 + b[o + i];
        if (low === 1) return this.block('blocked-loopback');
        return this.block('blocked-reserved');
      }
      if (b[o + 10] === 0xff && b[o + 11] === 0xff) return this.block('blocked-reserved');
    }
    if (ipv6PrefixMatch(b, o, v6.prefix, 0, 64)) {
      return this.mapService(h, this.gateway6, this.dns6, this.hostLoopback6, dstPort, proto) ?? this.block('blocked-local');
    }
    return this.mapRemote(h, dstPort, proto);
  }

  /** The address the guest sees for a packet from hostIp (either family). */
  mapInboundSource(hostIp: number): number {
    if (hostIp >= IPV6_HANDLE_BASE) return hostIp === this.hostLoopback6 ? this.gateway6 : hostIp;
    return hostIp >>> 24 === 127 ? this.gateway : hostIp >>> 0;
  }

  private host(ip: number, port: number): OutboundTarget {
    const t = this.target;
    t.kind = 'host';
    t.ip = ip;
    t.port = port;
    t.reason = null;
    return t;
  }

  private block(reason: BlockReason): OutboundTarget {
    const t = this.target;
    t.kind = 'blocked';
    t.ip = 0;
    t.port = 0;
    t.reason = reason;
    return t;
  }
}
