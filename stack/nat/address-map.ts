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
 * Inbound: a reply or forwarded connection from the host's loopback appears
 * to come from N+2, the address the guest used.
 *
 * Allocation: mapOutbound fills one result object owned by the map and
 * returns it (valid until the next call), so per-packet mapping allocates
 * nothing; kinds and reasons are string literals.
 */
import { IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP } from '../wire/ipv4.js';

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
  }

  inSubnet(ip: number): boolean {
    return ((ip & this.mask) >>> 0) === this.network;
  }

  /** Where a guest packet to dstIp:dstPort (protocol number proto) goes. */
  mapOutbound(dstIp: number, dstPort: number, proto: number): OutboundTarget {
    const ip = dstIp >>> 0;
    const top = ip >>> 24;
    if (top === 0) return this.block('blocked-reserved');
    if (top === 127) return this.block('blocked-loopback');
    if (top >= 224) return this.block(top < 240 ? 'blocked-multicast' : ip === 0xffff_ffff ? 'blocked-broadcast' : 'blocked-reserved');
    const ported = proto === IP_PROTO_UDP || proto === IP_PROTO_TCP;
    if (((ip & this.mask) >>> 0) === this.network) {
      if (ip === this.gateway) {
        if (!this.hostLoopback) return this.block('blocked-host-loopback');
        if (ported && dstPort === 0) return this.block('blocked-port-zero');
        return this.host(HOST_LOOPBACK_IP, proto === IP_PROTO_ICMP ? 0 : dstPort);
      }
      if (ip === this.dns) {
        if (ported && dstPort === DNS_PORT) {
          const t = this.target;
          t.kind = 'dns';
          t.ip = 0;
          t.port = DNS_PORT;
          t.reason = null;
          return t;
        }
        return this.block('blocked-dns-port');
      }
      if (ip === this.network || ip === this.broadcast) return this.block('blocked-broadcast');
      return this.block('blocked-local');
    }
    if (ported && dstPort === 0) return this.block('blocked-port-zero');
    return this.host(ip, proto === IP_PROTO_ICMP ? 0 : dstPort);
  }

  /** The address the guest sees for a packet from hostIp. */
  mapInboundSource(hostIp: number): number {
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
