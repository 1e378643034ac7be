import { newDropCounters, type DropCounts } from '../counters.js';
import type { DropReason } from '../drop-reasons.js';
import type { FlowEvents, FlowProto } from './flow-events.js';

/**
 * Numeric flow keys and the bookkeeping the NAT flow tables (UDP, ICMP echo)
 * share.
 *
 * How it works
 * - Keys: an address handle and a 16-bit port or echo id make one exact
 *   number (`endpointKey`); a flow's key is a pair of such numbers,
 *   found through a hash Map with chaining through the flows themselves
 *   (`FlowIndex`). No string keys, nothing allocated per lookup or insert.
 * - Ids: flows get small integer ids 1..maxFlows. Never-used ids go first,
 *   then freed ids in the order they were freed, so an id is reused as late
 *   as possible; `generation` grows on every reuse so
 *   the runtime can tell a late event for an old flow from the new one.
 * - Flow objects live in an array indexed by id and are reused with their
 *   id, so creating a flow allocates nothing once the table has warmed up.
 * - Each timeout class (e.g. DNS 10 s, other UDP 60 s) keeps its active flows
 *   on an intrusive list in order of last activity: activity moves a flow to
 *   the tail. With a clock that never goes back the head of each list is its
 *   next expiry, so pollAt is O(classes) and poll and eviction touch only
 *   heads.
 * - A flow expires when now - lastActivity >= its class's timeout. Until poll
 *   runs, an expired flow still answers lookups and activity revives it:
 *   the runtime's timer may fire late, and reviving beats closing a socket
 *   only to open a new one.
 * - When the table is full, creating a flow evicts the least recently active
 *   flow that is past its timeout; if none is, creation is refused.
 * - Expiry and eviction are reported through the table's callback, after the
 *   flow has left the table, so the runtime closes that flow's socket. The
 *   callback must not call back into the table.
 */

const TWO_16 = 0x10000;

/**
 * An address handle (an IPv4 u32, or an IPv6 handle below 2^37, see
 * ip-addresses.ts) and a 16-bit port or id as one exact number below 2^53.
 * A negative int32 (an IPv4 address out of bit operations) counts as its u32.
 */
export function endpointKey(ip: number, port: number): number {
  return (ip < 0 ? ip >>> 0 : ip) * TWO_16 + (port & 0xffff);
}

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85eb_ca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2_ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Mixes two endpoint keys into one number below 2^30: a Map key, not an
 * identity. Below 2^30 it is a small integer (a Smi) for V8, so a Map lookup
 * with it allocates nothing; a wider hash is a heap number, one allocation
 * per lookup, i.e. per datagram on the UDP path. Collisions only lengthen a
 * chain (FlowIndex tells flows apart by their exact keys).
 */
export function pairHash(a: number, b: number): number {
  const aHi = Math.floor(a / 0x1_0000_0000);
  const bHi = Math.floor(b / 0x1_0000_0000);
  const h1 = fmix32((a ^ Math.imul(bHi, 0x9e37_79b1)) >>> 0);
  const h2 = fmix32((b ^ Math.imul(aHi + 1, 0x85eb_ca6b) ^ h1) >>> 0);
  return h2 & 0x3fff_ffff;
}

/**
 * Flows by their key pair (keyA, keyB). One Map from a 53-bit hash of the
 * pair to the first flow with that hash; flows that share a hash are chained
 * through `hashNext` and told apart by their exact keys. Nothing is allocated
 * per lookup or per insert (a two-level Map would make an inner Map for every
 * new guest port, i.e. for every DNS query).
 */
export class FlowIndex<F extends NatFlow> {
  private readonly map = new Map<number, F>();
  private count = 0;

  /** `hash` is replaceable so tests can force collisions. */
  constructor(private readonly hash: (a: number, b: number) => number = pairHash) {}

  get size(): number {
    return this.count;
  }

  get(a: number, b: number): F | null {
    let f = this.map.get(this.hash(a, b)) ?? null;
    while (f !== null && (f.keyA !== a || f.keyB !== b)) f = f.hashNext as F | null;
    return f;
  }

  /** Indexes f under (a, b), which the caller has checked is not present. */
  add(f: F, a: number, b: number): void {
    f.keyA = a;
    f.keyB = b;
    const h = this.hash(a, b);
    f.hashNext = this.map.get(h) ?? null;
    this.map.set(h, f);
    this.count++;
  }

  remove(f: F): boolean {
    const h = this.hash(f.keyA, f.keyB);
    const first = this.map.get(h);
    if (first === undefined) return false;
    if (first === f) {
      if (f.hashNext === null) this.map.delete(h);
      else this.map.set(h, f.hashNext as F);
    } else {
      let p: NatFlow = first;
      while (p.hashNext !== null && p.hashNext !== f) p = p.hashNext;
      if (p.hashNext === null) return false;
      p.hashNext = f.hashNext;
    }
    f.hashNext = null;
    this.count--;
    return true;
  }
}

/** What a flow table keeps for every flow; the tables add their key fields. */
export class NatFlow {
  /** 1..maxFlows while active. */
  id = 0;
  /** Bumped each time this id is handed to a new flow. */
  generation = 0;
  active = false;
  createdAt = 0;
  lastActivity = 0;
  /** Guest to host. */
  packetsOut = 0;
  bytesOut = 0;
  /** Host to guest. */
  packetsIn = 0;
  bytesIn = 0;
  /** Index of the flow's timeout class. */
  timeoutClass = 0;
  /** The guest address whose share of the table this flow counts against (FlowTableCore.allocate), -1 for none. */
  shareKey = -1;
  /** The flow's key as FlowIndex holds it, and its hash chain. */
  keyA = 0;
  keyB = 0;
  hashNext: NatFlow | null = null;
  prev: NatFlow | null = null;
  next: NatFlow | null = null;
}

export type FlowCloseReason = 'idle' | 'evicted';

export interface FlowTableStats {
  active: number;
  created: number;
  expired: number;
  evicted: number;
  removed: number;
  drops: DropCounts;
}

/** An ordered list of flows, linked through the flows themselves. */
class FlowList {
  head: NatFlow | null = null;
  tail: NatFlow | null = null;

  push(f: NatFlow): void {
    f.next = null;
    f.prev = this.tail;
    if (this.tail !== null) this.tail.next = f;
    else this.head = f;
    this.tail = f;
  }

  unlink(f: NatFlow): void {
    if (f.prev !== null) f.prev.next = f.next;
    else this.head = f.next;
    if (f.next !== null) f.next.prev = f.prev;
    else this.tail = f.prev;
    f.prev = f.next = null;
  }
}

/**
 * Ids, flow objects, activity order, expiry and counters for one flow table.
 * The table owning it keeps the key index and removes entries from it in
 * `unindex`.
 */
/** The flows one guest address may hold in a table of maxFlows: all but the last eighth, which stays for the other guests. */
export function guestShareOf(maxFlows: number): number {
  return maxFlows - Math.floor(maxFlows / 8);
}

export class FlowTableCore<F extends NatFlow> {
  readonly maxFlows: number;
  readonly timeouts: readonly number[];
  created = 0;
  expired = 0;
  evicted = 0;
  removed = 0;
  /** Told of every flow's start (`opened`, called by the table that owns this core) and end; null: nobody asked. */
  events: FlowEvents | null = null;
  private readonly dropped = newDropCounters();
  /** Drops by reason so far (allocates: for stats and tests). */
  get drops(): DropCounts {
    return this.dropped.snapshot();
  }

  private readonly flows: (F | undefined)[] = [];
  private readonly lists: FlowList[];
  /** FIFO ring of freed ids. */
  private readonly freeIds: Int32Array;
  private freeHead = 0;
  private freeCount = 0;
  /** Ids above this were never handed out. */
  private fresh = 0;
  private activeCount = 0;
  /**
   * Flows per guest address. One address may hold at most `guestShare`
   * (the NATs give guestShareOf(maxFlows): the last eighth of the table
   * stays for the other guests, so one guest's flood of fresh flows, which
   * expiry cannot reclaim before its timeout, does not refuse every other
   * guest's).
   */
  private readonly perGuest = new Map<number, number>();

  constructor(
    maxFlows: number,
    timeouts: readonly number[],
    private readonly make: () => F,
    private readonly unindex: (flow: F) => void,
    private readonly onClose: ((id: number, flow: F, reason: FlowCloseReason) => void) | null,
    /** The protocol named in `events` calls. */
    private readonly proto: FlowProto = 'udp',
    /** Flows one guest address may hold; default no limit but the table's. */
    readonly guestShare = Infinity,
  ) {
    this.maxFlows = Math.max(1, Math.floor(maxFlows));
    this.timeouts = timeouts;
    this.lists = timeouts.map(() => new FlowList());
    this.freeIds = new Int32Array(this.maxFlows);
  }

  get size(): number {
    return this.activeCount;
  }

  drop(reason: DropReason): null {
    this.dropped.add(reason);
    return null;
  }

  byId(id: number): F | null {
    const f = this.flows[id];
    return f !== undefined && f.active ? f : null;
  }

  /**
   * A fresh flow in timeout class `cls`, linked and counted but not yet
   * indexed by key, or null ('flow-table-full') when the table is full and
   * no flow is past its timeout, or ('flow-guest-share-full') when `guest`
   * (a guest address; -1: none, e.g. a port forward's flow) already holds
   * its share.
   */
  allocate(cls: number, now: number, guest = -1): F | null {
    const held = guest < 0 ? 0 : (this.perGuest.get(guest) ?? 0);
    if (held >= this.guestShare) return this.drop('flow-guest-share-full');
    if (this.activeCount >= this.maxFlows && !this.evictOneExpired(now)) return this.drop('flow-table-full');
    let id: number;
    if (this.fresh < this.maxFlows) {
      id = ++this.fresh;
    } else {
      id = this.freeIds[this.freeHead];
      this.freeHead = (this.freeHead + 1) % this.maxFlows;
      this.freeCount--;
    }
    let f = this.flows[id];
    if (f === undefined) {
      f = this.make();
      this.flows[id] = f;
    }
    f.id = id;
    f.generation++;
    f.active = true;
    f.createdAt = now;
    f.lastActivity = now;
    f.packetsOut = f.bytesOut = f.packetsIn = f.bytesIn = 0;
    f.timeoutClass = cls;
    f.shareKey = guest;
    if (guest >= 0) this.perGuest.set(guest, held + 1);
    this.lists[cls].push(f);
    this.activeCount++;
    this.created++;
    return f;
  }

  touch(f: F, now: number): void {
    f.lastActivity = now;
    const list = this.lists[f.timeoutClass];
    if (list.tail !== f) {
      list.unlink(f);
      list.push(f);
    }
  }

  /** Reports a flow the owner has just filled in and indexed (to `events`, if set). */
  opened(f: F, inbound: boolean, guestIp: number, guestPort: number, remoteIp: number, remotePort: number): void {
    if (this.events !== null) this.events.opened(this.proto, f, inbound, guestIp, guestPort, remoteIp, remotePort);
  }

  /** Takes the flow out of the table; reports it when reason is given. */
  release(f: F, reason: FlowCloseReason | null): void {
    if (!f.active) return;
    if (this.events !== null) this.events.closed(this.proto, f, reason ?? 'removed', f.bytesOut, f.bytesIn);
    this.unindex(f);
    this.lists[f.timeoutClass].unlink(f);
    f.active = false;
    this.activeCount--;
    if (f.shareKey >= 0) {
      const n = (this.perGuest.get(f.shareKey) ?? 1) - 1;
      if (n === 0) this.perGuest.delete(f.shareKey);
      else this.perGuest.set(f.shareKey, n);
      f.shareKey = -1;
    }
    this.freeIds[(this.freeHead + this.freeCount) % this.maxFlows] = f.id;
    this.freeCount++;
    if (reason === null) this.removed++;
    else {
      if (reason === 'idle') this.expired++;
      else this.evicted++;
      if (this.onClose !== null) this.onClose(f.id, f, reason);
    }
  }

  deadline(f: NatFlow): number {
    return f.lastActivity + this.timeouts[f.timeoutClass];
  }

  pollAt(): number {
    let t = Infinity;
    for (let i = 0; i < this.lists.length; i++) {
      const h = this.lists[i].head;
      if (h !== null) t = Math.min(t, h.lastActivity + this.timeouts[i]);
    }
    return t;
  }

  poll(now: number): number {
    let n = 0;
    for (let i = 0; i < this.lists.length; i++) {
      const list = this.lists[i];
      const timeout = this.timeouts[i];
      while (list.head !== null && now - list.head.lastActivity >= timeout) {
        this.release(list.head as F, 'idle');
        n++;
      }
    }
    return n;
  }

  stats(): FlowTableStats {
    return {
      active: this.activeCount,
      created: this.created,
      expired: this.expired,
      evicted: this.evicted,
      removed: this.removed,
      drops: this.dropped.snapshot(),
    };
  }

  /** Evicts the least recently active flow that is past its timeout, if any. */
  private evictOneExpired(now: number): boolean {
    let victim: NatFlow | null = null;
    for (let i = 0; i < this.lists.length; i++) {
      const h = this.lists[i].head;
      if (h !== null && now - h.lastActivity >= this.timeouts[i] && (victim === null || h.lastActivity < victim.lastActivity)) {
        victim = h;
      }
    }
    if (victim === null) return false;
    this.release(victim as F, 'evicted');
    return true;
  }
}
