/**
 * Guest address -> MAC, and ARP (or neighbour discovery) resolution for
 * guests that have not spoken yet.
 *
 * How it works
 * - `learn` records the MAC a guest address uses. The IPv4 layer calls it for every
 *   packet it hands the NAT and its ARP for every ARP packet it
 *   sees (requests, replies and gratuitous announcements alike), so answers
 *   not triggered by a frame in hand (DNS, UDP from the host, port-forwarded
 *   connections) can be addressed.
 * - Bounded: beyond `capacity` the oldest learned entry is dropped (a Map
 *   keeps insertion order, and a MAC change re-inserts). Entries never age:
 *   a guest that moved re-announces itself with its next frame.
 * - `resolve(ip, waiter, now)` is for a sender that needs a MAC nobody has
 *   told us yet (the first connection of a port forward to a silent guest):
 *   the waiter is queued under the address, `requester` sends an ARP
 *   request at once, and again every ARP_RETRY_MS up to ARP_ATTEMPTS times.
 *   The first `learn` of that address wakes every waiter with the MAC; after
 *   the last attempt they all hear `failed`. Queues are bounded: at most
 *   ARP_MAX_PENDING addresses and ARP_MAX_WAITERS waiters per address; a
 *   waiter beyond either is refused (resolve returns false, counted).
 * - IPv6 addresses (handles, see ip-addresses.ts) are not stored here: the
 *   IPv6 layer (stack/ip6/) keeps that table and answers `lookup` through `lookup6`;
 *   resolution works the same, with a neighbour solicitation for a request,
 *   and the layer reports each neighbour advertisement with `learn`.
 * - Sans-IO: retries happen in `poll(now)` at `pollAt()`. Waiters run inside
 *   learn/poll; they may send frames but must not call resolve for the same
 *   address re-entrantly (they would be queued behind a finished lookup).
 */
import { limits } from '../limits.js';

/** Learned entries kept at most (defaults and reasons: stack/limits.ts). */
export const NEIGHBOR_CAPACITY: number = limits.neighborCapacity.default;
/** ARP requests per resolution. */
export const ARP_ATTEMPTS: number = limits.arpAttempts.default;
/** Between requests. */
export const ARP_RETRY_MS: number = limits.arpRetryMs.default;
/** Addresses being resolved at once. */
export const ARP_MAX_PENDING: number = limits.arpMaxPending.default;
/** What may wait for one address: connections or datagrams arriving while ARP runs. */
export const ARP_MAX_WAITERS: number = limits.arpMaxWaiters.default;

export interface NeighborWaiter {
  resolved(mac: number, now: number): void;
  failed(now: number): void;
}

export interface ArpRequester {
  /** Broadcasts "who-has ip tell <gateway>" (IPv4) or sends a neighbour solicitation (an IPv6 handle). */
  sendArpRequest(ip: number, now: number): void;
}

const IPV6_HANDLE_BASE = 0x1_0000_0000;

interface Pending {
  waiters: NeighborWaiter[];
  attempts: number;
  nextAt: number;
}

export interface NeighborStats {
  entries: number;
  pending: number;
  arpRequests: number;
  resolved: number;
  failed: number;
  refused: number;
}

export class Neighbors {
  requester: ArpRequester | null = null;
  /** MAC of an IPv6 handle, or -1 (the IPv6 layer's table). */
  lookup6: ((ip: number) => number) | null = null;
  private readonly map = new Map<number, number>();
  private readonly pending = new Map<number, Pending>();
  private arpRequests = 0;
  private resolvedCount = 0;
  private failedCount = 0;
  private refused = 0;

  constructor(private readonly capacity = NEIGHBOR_CAPACITY) {}

  learn(ip: number, mac: number, now = 0): void {
    if (ip >= IPV6_HANDLE_BASE) return this.wake(ip, mac, now);
    const cur = this.map.get(ip);
    if (cur !== mac) {
      if (cur !== undefined) this.map.delete(ip);
      else if (this.map.size >= this.capacity) {
        const oldest = this.map.keys().next().value as number;
        this.map.delete(oldest);
      }
      this.map.set(ip, mac);
    }
    this.wake(ip, mac, now);
  }

  private wake(ip: number, mac: number, now: number): void {
    if (this.pending.size === 0) return;
    const p = this.pending.get(ip);
    if (p === undefined) return;
    this.pending.delete(ip);
    this.resolvedCount++;
    for (const w of p.waiters) w.resolved(mac, now);
  }

  /** The MAC of ip, or -1 when unknown. */
  lookup(ip: number): number {
    if (ip >= IPV6_HANDLE_BASE) return this.lookup6 === null ? -1 : this.lookup6(ip);
    return this.map.get(ip) ?? -1;
  }

  /**
   * Calls waiter.resolved(mac) once ip's MAC is known (at once if it already
   * is) or waiter.failed() when ARP gives up. False when the queue is full:
   * the waiter is then never called.
   */
  resolve(ip: number, waiter: NeighborWaiter, now: number): boolean {
    const mac = this.lookup(ip);
    if (mac >= 0) {
      waiter.resolved(mac, now);
      return true;
    }
    let p = this.pending.get(ip);
    if (p === undefined) {
      if (this.pending.size >= ARP_MAX_PENDING || this.requester === null) {
        this.refused++;
        return false;
      }
      p = { waiters: [], attempts: 0, nextAt: now };
      this.pending.set(ip, p);
    }
    if (p.waiters.length >= ARP_MAX_WAITERS) {
      this.refused++;
      return false;
    }
    p.waiters.push(waiter);
    if (p.attempts === 0) this.ask(ip, p, now);
    return true;
  }

  pollAt(): number {
    let t = Infinity;
    for (const p of this.pending.values()) if (p.nextAt < t) t = p.nextAt;
    return t;
  }

  poll(now: number): void {
    if (this.pending.size === 0) return;
    for (const [ip, p] of this.pending) {
      if (now < p.nextAt) continue;
      if (p.attempts < ARP_ATTEMPTS) {
        this.ask(ip, p, now);
        continue;
      }
      this.pending.delete(ip);
      this.failedCount++;
      for (const w of p.waiters) w.failed(now);
    }
  }

  get size(): number {
    return this.map.size;
  }

  stats(): NeighborStats {
    return {
      entries: this.map.size,
      pending: this.pending.size,
      arpRequests: this.arpRequests,
      resolved: this.resolvedCount,
      failed: this.failedCount,
      refused: this.refused,
    };
  }

  private ask(ip: number, p: Pending, now: number): void {
    p.attempts++;
    p.nextAt = now + ARP_RETRY_MS;
    this.arpRequests++;
    this.requester?.sendArpRequest(ip, now);
  }
}
