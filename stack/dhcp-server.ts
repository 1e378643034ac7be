/**
 * The gateway's DHCP server (RFC 2131), sans-IO: the gateway hands it the
 * UDP payloads sent to port 67 and wraps the reply it returns in
 * UDP/IPv4/Ethernet, addressed as the result says.
 *
 * How it works
 * - The pool is a fixed range (slirp's: network+15, 16 addresses). The lease
 *   table is one slot per address of the range, allocated up front, so it
 *   can never grow; lookups scan it, which is fine for DHCP's message rate.
 * - A slot is FREE (never used), OFFERED (held for `offerHoldMs` for the
 *   client it was offered to), BOUND (until the lease ends), RELEASED, or
 *   DECLINED (a client found the address in use: nobody gets it for
 *   `declineHoldMs`). Time only moves through `now`: an OFFERED or BOUND
 *   slot whose time is up is expired but still remembers its client, so
 *   that client gets the same address back while nobody else has taken it.
 *   New clients get a FREE slot first, then the slot that expired (or was
 *   released) longest ago; with none left the DISCOVER goes unanswered and
 *   'pool-exhausted' is counted.
 * - Clients are told apart by their client identifier (option 61) when both
 *   sides have one, by chaddr otherwise (RFC 2131 4.2).
 * - usernet is the only DHCP server on its bridge, so it answers with
 *   authority: a REQUEST (INIT-REBOOT, RENEWING, REBINDING) for an address it
 *   cannot confirm gets a NAK, and one for a free address of the range is
 *   granted, so that guests keep their address across a usernet restart
 *   (the table lives in memory only).
 * - Relayed messages (giaddr set) are dropped: the network is one segment.
 * - Reply destination (RFC 2131 4.1): NAKs, and replies to clients that set
 *   the broadcast bit or have no address yet (ciaddr 0), go to
 *   255.255.255.255 and the broadcast MAC; the others are unicast to ciaddr
 *   and chaddr. Source is always the server id, ports 67 -> 68.
 * - `handle` never throws on input; every message it does not answer counts
 *   exactly one reason in `counters.drops`. The reply repr and the result
 *   object are reused: valid until the next call. The reply's clientId
 *   points into the request's buffer, so emit it before reusing that.
 */
import {
  BOOTP_HTYPE_ETHERNET,
  BOOTP_REPLY,
  BOOTP_REQUEST,
  DHCP_ACK,
  DHCP_DECLINE,
  DHCP_DISCOVER,
  DHCP_INFORM,
  DHCP_NAK,
  DHCP_OFFER,
  DHCP_RELEASE,
  DHCP_REQUEST,
  DhcpRepr,
  messageTypeName,
} from './wire/dhcp.js';
import { inSubnet, prefixToMask, subnetBroadcast, subnetHost } from './wire/ipv4-address.js';
import { BROADCAST_MAC, isMulticastMac } from './wire/mac.js';
import { newDropCounters, withDrops, type DropCounts } from './counters.js';
import type { DropReason } from './drop-reasons.js';

/** Offset of the first pool address in the network (slirp's 10.0.2.15). */
export const DHCP_RANGE_OFFSET = 15;
/** Pool size (slirp's NB_BOOTP_CLIENTS). */
export const DHCP_RANGE_COUNT = 16;
/** 24 hours, as slirp. */
export const DHCP_LEASE_TIME_S = 86_400;
/** How long an offered address waits for the client's REQUEST; clients answer within seconds. */
export const DHCP_OFFER_HOLD_MS = 60_000;
/** How long a declined address (somebody else answered ARP for it) stays out of the pool. */
export const DHCP_DECLINE_HOLD_MS = 600_000;
/** Longest hostname kept per lease, for listings (a DNS label's limit). */
const HOSTNAME_MAX = 63;

export interface DhcpServerOptions {
  /** Network address (host bits zero) as a u32. */
  network: number;
  prefix: number;
  /** Router handed out and, unless serverId is set, the server id. Default network+2. */
  gateway?: number;
  /** DNS server handed out; null when DNS is disabled. Default network+3. */
  dns?: number | null;
  /** First pool address. Default network+15 (network+4 on networks too small for that). */
  rangeStart?: number;
  rangeCount?: number;
  leaseTimeS?: number;
  mtu?: number;
  serverId?: number;
  offerHoldMs?: number;
  declineHoldMs?: number;
}

/** Where the gateway sends the reply: from serverId:67 to dstIp:68, Ethernet destination dstMac. */
export interface DhcpResult {
  reply: DhcpRepr;
  srcIp: number;
  dstIp: number;
  dstMac: number;
  broadcast: boolean;
}

export interface DhcpLeaseInfo {
  ip: number;
  mac: number;
  state: 'offered' | 'bound' | 'declined' | 'released' | 'expired';
  /** ms on the caller's clock. */
  expiresAt: number;
  hostname: string | null;
}

export interface DhcpServerCounters {
  /** Messages handled (parsed fine), by type name. */
  rx: Record<string, number>;
  /** Replies produced, by type name. */
  tx: Record<string, number>;
  /** NAKs by reason. */
  naks: Record<string, number>;
  /** Messages not answered, by reason. */
  readonly drops: DropCounts;
}

const FREE = 0;
const OFFERED = 1;
const BOUND = 2;
const RELEASED = 3;
const DECLINED = 4;

function bump(table: Record<string, number>, key: string): void {
  table[key] = (table[key] ?? 0) + 1;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Printable ASCII only: the name comes from an untrusted guest and ends up in logs. */
function cleanHostname(raw: Uint8Array | null): string | null {
  if (raw === null) return null;
  let s = '';
  const n = Math.min(raw.length, HOSTNAME_MAX);
  for (let i = 0; i < n; i++) {
    const c = raw[i];
    if (c === 0) break;
    s += c >= 0x21 && c <= 0x7e ? String.fromCharCode(c) : '?';
  }
  return s.length > 0 ? s : null;
}

export class DhcpServer {
  readonly network: number;
  readonly prefix: number;
  readonly mask: number;
  readonly broadcastAddress: number;
  readonly gateway: number;
  readonly dns: number | null;
  readonly serverId: number;
  readonly rangeStart: number;
  readonly rangeCount: number;
  readonly leaseTimeS: number;
  readonly mtu: number;
  readonly offerHoldMs: number;
  readonly declineHoldMs: number;

  private readonly dropped = newDropCounters();
  readonly counters: DhcpServerCounters = withDrops({ rx: Object.create(null), tx: Object.create(null), naks: Object.create(null) }, this.dropped);

  // The lease table: one slot per pool address, index = ip - rangeStart.
  private readonly state: Uint8Array;
  private readonly mac: Float64Array;
  private readonly clientId: (Uint8Array | null)[];
  private readonly expiresAt: Float64Array;
  private readonly hostname: (string | null)[];

  private readonly request = new DhcpRepr();
  private readonly reply = new DhcpRepr();
  private readonly result: DhcpResult;

  constructor(opts: DhcpServerOptions) {
    const { network, prefix } = opts;
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > 29) {
      throw new RangeError(`DHCP prefix must be 0..29, got ${prefix}`);
    }
    const mask = prefixToMask(prefix);
    if (!Number.isInteger(network) || network < 0 || network > 0xffff_ffff || ((network & mask) >>> 0) !== network) {
      throw new RangeError(`DHCP network must be a u32 network address with host bits clear, got ${network}`);
    }
    this.network = network;
    this.prefix = prefix;
    this.mask = mask;
    this.broadcastAddress = subnetBroadcast(network, mask);
    this.gateway = opts.gateway ?? subnetHost(network, 2);
    this.dns = opts.dns === undefined ? subnetHost(network, 3) : opts.dns;
    this.serverId = opts.serverId ?? this.gateway;
    const size = 2 ** (32 - prefix);
    // network+15 .. network+30 needs a /27 at least; smaller networks start after the DNS address.
    const defaultStart = size >= DHCP_RANGE_OFFSET + DHCP_RANGE_COUNT + 1 ? DHCP_RANGE_OFFSET : 4;
    this.rangeStart = opts.rangeStart ?? subnetHost(network, defaultStart);
    const roomLeft = this.broadcastAddress - this.rangeStart;
    this.rangeCount = opts.rangeCount ?? Math.min(DHCP_RANGE_COUNT, roomLeft);
    this.leaseTimeS = opts.leaseTimeS ?? DHCP_LEASE_TIME_S;
    this.mtu = opts.mtu ?? 1500;
    this.offerHoldMs = opts.offerHoldMs ?? DHCP_OFFER_HOLD_MS;
    this.declineHoldMs = opts.declineHoldMs ?? DHCP_DECLINE_HOLD_MS;

    if (!inSubnet(this.gateway, network, mask)) throw new RangeError('DHCP gateway must be inside the network');
    if (this.dns !== null && !inSubnet(this.dns, network, mask)) throw new RangeError('DHCP DNS address must be inside the network');
    if (!Number.isInteger(this.rangeCount) || this.rangeCount < 1) {
      throw new RangeError(`DHCP range must hold at least one address, got ${this.rangeCount}`);
    }
    const first = this.rangeStart;
    const last = first + this.rangeCount - 1;
    if (!inSubnet(first, network, mask) || first <= network || last >= this.broadcastAddress) {
      throw new RangeError('DHCP range must lie strictly between the network and broadcast addresses');
    }
    for (const reserved of [this.gateway, this.dns, this.serverId]) {
      if (reserved !== null && reserved >= first && reserved <= last) {
        throw new RangeError('DHCP range must not contain the gateway, DNS or server address');
      }
    }
    if (!Number.isInteger(this.leaseTimeS) || this.leaseTimeS < 60 || this.leaseTimeS > 0xffff_fffe) {
      throw new RangeError(`DHCP lease time must be 60..4294967294 s, got ${this.leaseTimeS}`);
    }
    if (!Number.isInteger(this.mtu) || this.mtu < 68 || this.mtu > 65535) {
      throw new RangeError(`DHCP MTU must be 68..65535, got ${this.mtu}`);
    }

    this.state = new Uint8Array(this.rangeCount);
    this.mac = new Float64Array(this.rangeCount);
    this.clientId = new Array<Uint8Array | null>(this.rangeCount).fill(null);
    this.expiresAt = new Float64Array(this.rangeCount);
    this.hostname = new Array<string | null>(this.rangeCount).fill(null);
    this.result = { reply: this.reply, srcIp: this.serverId, dstIp: 0, dstMac: 0, broadcast: true };
  }

  /** Parses a UDP payload sent to port 67 and handles it. Parse failures count a drop reason. */
  handlePayload(buf: Uint8Array, off: number, len: number, now: number): DhcpResult | null {
    const bad = this.request.parse(buf, off, len);
    if (bad !== null) {
      this.dropped.add(bad);
      return null;
    }
    return this.handle(this.request, now);
  }

  /** Answers one client message, or returns null (counted) when there is nothing to send. */
  handle(req: DhcpRepr, now: number): DhcpResult | null {
    if (req.op !== BOOTP_REQUEST) return this.drop('dhcp-not-request');
    if (req.htype !== BOOTP_HTYPE_ETHERNET || req.hlen !== 6) return this.drop('dhcp-not-ethernet');
    if (req.chaddr === 0 || isMulticastMac(req.chaddr)) return this.drop('dhcp-bad-chaddr');
    if (req.messageType === null) return this.drop('bootp-unsupported');
    if (req.giaddr !== 0) return this.drop('dhcp-relayed');
    bump(this.counters.rx, messageTypeName(req.messageType));
    switch (req.messageType) {
      case DHCP_DISCOVER:
        return this.discover(req, now);
      case DHCP_REQUEST:
        return this.requestMsg(req, now);
      case DHCP_DECLINE:
        return this.decline(req, now);
      case DHCP_RELEASE:
        return this.release(req, now);
      case DHCP_INFORM:
        return this.inform(req);
      default:
        // OFFER/ACK/NAK from another server, or a type this server does not serve.
        return this.drop('dhcp-unexpected-type');
    }
  }

  /** The lease table, for listings and tests. Allocates: not for the data path. */
  leases(now: number): DhcpLeaseInfo[] {
    const out: DhcpLeaseInfo[] = [];
    for (let i = 0; i < this.rangeCount; i++) {
      const st = this.state[i];
      if (st === FREE) continue;
      let name: DhcpLeaseInfo['state'];
      if (st === DECLINED) {
        if (this.expiresAt[i] <= now) continue;
        name = 'declined';
      } else if (st === RELEASED) name = 'released';
      else if (this.expiresAt[i] <= now) name = 'expired';
      else name = st === BOUND ? 'bound' : 'offered';
      out.push({
        ip: this.rangeStart + i,
        mac: this.mac[i],
        state: name,
        expiresAt: this.expiresAt[i],
        hostname: this.hostname[i],
      });
    }
    return out;
  }

  private drop(reason: DropReason): null {
    this.dropped.add(reason);
    return null;
  }

  private indexOf(ip: number): number {
    const i = ip - this.rangeStart;
    return i >= 0 && i < this.rangeCount ? i : -1;
  }

  private owns(i: number, req: DhcpRepr): boolean {
    const st = this.state[i];
    if (st === FREE || st === DECLINED) return false;
    const id = this.clientId[i];
    if (id !== null && req.clientId !== null) return sameBytes(id, req.clientId);
    return this.mac[i] === req.chaddr;
  }

  /** The slot this client holds or held last (expired and released included), or -1. */
  private findClient(req: DhcpRepr): number {
    for (let i = 0; i < this.rangeCount; i++) if (this.owns(i, req)) return i;
    return -1;
  }

  /** Nobody holds the slot at `now`: free, released, or its offer, lease or decline hold ran out. */
  private available(i: number, now: number): boolean {
    const st = this.state[i];
    return st === FREE || st === RELEASED || this.expiresAt[i] <= now;
  }

  /** A slot for a client without one: a never-used slot first, then the one free for longest. */
  private pickFree(now: number): number {
    let best = -1;
    for (let i = 0; i < this.rangeCount; i++) {
      if (this.state[i] === FREE) return i;
      if (this.available(i, now) && (best < 0 || this.expiresAt[i] < this.expiresAt[best])) best = i;
    }
    return best;
  }

  private claim(i: number, req: DhcpRepr, st: number, until: number): void {
    // Clients often send their hostname in some messages only: keep the last one seen.
    const name = cleanHostname(req.hostname);
    this.hostname[i] = name ?? (this.owns(i, req) ? this.hostname[i] : null);
    this.state[i] = st;
    this.mac[i] = req.chaddr;
    // Copied: req.clientId points into the caller's receive buffer.
    this.clientId[i] = req.clientId === null ? null : Uint8Array.from(req.clientId);
    this.expiresAt[i] = until;
  }

  /**
   * Gives slot i back: RELEASED (free since `until`) or DECLINED (out of the
   * pool until `until`). `forget` also drops the client's identity, so that a
   * client never holds two slots.
   */
  private vacate(i: number, st: number, until: number, forget: boolean): void {
    this.state[i] = st;
    this.expiresAt[i] = until;
    if (forget || st === DECLINED) {
      this.mac[i] = 0;
      this.clientId[i] = null;
      this.hostname[i] = null;
    }
  }

  private discover(req: DhcpRepr, now: number): DhcpResult | null {
    // RFC 2131 4.3.1: the current or previous binding first, then the requested address, then any.
    let i = this.findClient(req);
    if (i < 0 && req.requestedIp !== null) {
      const r = this.indexOf(req.requestedIp);
      if (r >= 0 && this.available(r, now)) i = r;
    }
    if (i < 0) i = this.pickFree(now);
    if (i < 0) return this.drop('pool-exhausted');
    const stillBound = this.state[i] === BOUND && this.expiresAt[i] > now && this.owns(i, req);
    if (!stillBound) this.claim(i, req, OFFERED, now + this.offerHoldMs);
    return this.answer(req, DHCP_OFFER, this.rangeStart + i);
  }

  private requestMsg(req: DhcpRepr, now: number): DhcpResult | null {
    if (req.serverId !== null) {
      // SELECTING: the client picked an offer.
      if (req.serverId !== this.serverId) {
        // It chose another server; our offer to it can go back to the pool.
        const mine = this.findClient(req);
        if (mine >= 0 && this.state[mine] === OFFERED) this.vacate(mine, RELEASED, now, false);
        return this.drop('request-other-server');
      }
      const ip = req.requestedIp ?? req.ciaddr;
      if (ip === 0) return this.drop('request-no-address');
      return this.commit(req, ip, now);
    }
    // INIT-REBOOT names the address in option 50; RENEWING and REBINDING in ciaddr.
    if (req.requestedIp !== null && req.ciaddr === 0) return this.commit(req, req.requestedIp, now);
    if (req.ciaddr !== 0) return this.commit(req, req.ciaddr, now);
    return this.drop('request-no-address');
  }

  /** Binds ip to the client (ACK) or refuses it (NAK). */
  private commit(req: DhcpRepr, ip: number, now: number): DhcpResult {
    if (!inSubnet(ip, this.network, this.mask)) return this.nak(req, 'wrong-network');
    const i = this.indexOf(ip);
    if (i < 0) return this.nak(req, 'outside-range');
    if (!this.owns(i, req)) {
      if (!this.available(i, now)) return this.nak(req, 'address-taken');
      // The client moves to another address (or comes back after a restart): its old one is free.
      const old = this.findClient(req);
      if (old >= 0) this.vacate(old, RELEASED, now, true);
    }
    this.claim(i, req, BOUND, now + this.leaseTimeS * 1000);
    return this.answer(req, DHCP_ACK, ip);
  }

  private decline(req: DhcpRepr, now: number): null {
    if (req.serverId !== null && req.serverId !== this.serverId) return this.drop('decline-other-server');
    const i = req.requestedIp === null ? -1 : this.indexOf(req.requestedIp);
    if (i < 0 || !this.owns(i, req)) return this.drop('decline-not-owner');
    this.vacate(i, DECLINED, now + this.declineHoldMs, true);
    return null;
  }

  private release(req: DhcpRepr, now: number): null {
    if (req.serverId !== null && req.serverId !== this.serverId) return this.drop('release-other-server');
    const i = this.indexOf(req.ciaddr);
    if (i < 0 || !this.owns(i, req)) return this.drop('release-not-owner');
    this.vacate(i, RELEASED, now, false);
    return null;
  }

  private inform(req: DhcpRepr): DhcpResult | null {
    // RFC 2131 4.3.5: configuration only, for a client that set its address itself.
    if (req.ciaddr === 0) return this.drop('inform-no-ciaddr');
    return this.answer(req, DHCP_INFORM, 0);
  }

  private nak(req: DhcpRepr, reason: string): DhcpResult {
    bump(this.counters.naks, reason);
    return this.answer(req, DHCP_NAK, 0);
  }

  /**
   * Fills the reply repr and the destination. `type` DHCP_INFORM means the
   * ACK to an INFORM: no yiaddr, no lease times (RFC 2131 table 3).
   */
  private answer(req: DhcpRepr, type: number, yiaddr: number): DhcpResult {
    const r = this.reply;
    r.clear();
    const wireType = type === DHCP_INFORM ? DHCP_ACK : type;
    r.op = BOOTP_REPLY;
    r.htype = req.htype;
    r.hlen = req.hlen;
    r.xid = req.xid;
    r.flags = req.flags;
    r.giaddr = req.giaddr;
    r.chaddr = req.chaddr;
    r.messageType = wireType;
    r.serverId = this.serverId;
    // RFC 6842: the client identifier comes back unaltered.
    r.clientId = req.clientId;
    if (type === DHCP_ACK || type === DHCP_INFORM) r.ciaddr = req.ciaddr;
    if (type !== DHCP_NAK) {
      r.yiaddr = yiaddr;
      if (type !== DHCP_INFORM) {
        r.leaseTime = this.leaseTimeS;
        // RFC 2131 4.4.5 defaults: T1 = 0.5, T2 = 0.875 of the lease.
        r.renewalTime = Math.floor(this.leaseTimeS / 2);
        r.rebindingTime = Math.floor((this.leaseTimeS * 7) / 8);
      }
      r.subnetMask = this.mask;
      r.router = this.gateway;
      if (this.dns !== null) r.dnsServers.push(this.dns);
      r.broadcastAddress = this.broadcastAddress;
      r.mtu = this.mtu;
    }
    bump(this.counters.tx, messageTypeName(wireType));

    const res = this.result;
    // RFC 2131 4.1 with giaddr zero: NAKs always broadcast; otherwise broadcast
    // when asked to or when the client cannot receive unicast yet.
    const broadcast = type === DHCP_NAK || req.broadcast || req.ciaddr === 0;
    res.broadcast = broadcast;
    res.dstIp = broadcast ? 0xffff_ffff : req.ciaddr;
    res.dstMac = broadcast ? BROADCAST_MAC : req.chaddr;
    res.srcIp = this.serverId;
    return res;
  }
}
