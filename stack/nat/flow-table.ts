import { newDropCounters, type DropCounts } from '../counters.js';
import { DeadlineQueue } from '../deadline-queue.js';
import type { DropReason } from '../drop-reasons.js';
import type { FlowEvents, FlowProto } from './flow-events.js';
import { FlowIndex, pairHash } from './flow-key.js';

/**
 * The NAT's flow table: one class that TCP (tcp-nat.ts), UDP (udp-flows.ts)
 * and ICMP echo (icmp-flows.ts) each instantiate for their flows. It hands
 * out ids, indexes flows by key, enforces the cap and the per-guest share,
 * expires idle flows, evicts to make room, counts, and reports flows to
 * FlowEvents; each protocol adds its fields to `NatFlow` and its rules
 * through the options below.
 *
 * How it works
 * - One table per protocol, not one for all. passt's flow.c keeps every
 *   flow of every protocol in one array with one id space and one hash
 *   table, because there one epoll reference names a flow whatever its type
 *   and a flow can change type. Here each protocol has its own cap (users set
 *   them apart with --limit, and a UDP flood must not take TCP's room), its
 *   own host sockets with their own tokens, and arrays in the runtime indexed
 *   by its flow ids. One shared table would keep per-protocol caps on top of
 *   the shared one, spread a protocol's ids over the sum of the caps (so the
 *   runtime's per-protocol arrays grow to it), compare a protocol number on
 *   every hash chain step and mix three flow classes in one array. The code
 *   is shared, the memory is not; a flow is named by (protocol, id,
 *   generation), as FlowEvents and the runtime already name it.
 * - Ids: 1..maxFlows. `idOrder` 'fifo' (UDP, ICMP): never-used ids first,
 *   then freed ids in the order they were freed, so an id is reused as late
 *   as possible and a late socket event rarely meets a new flow; 'lifo'
 *   (TCP): the id freed last is reused first, so ids stay as dense as the
 *   most flows ever open at once (the engine's deadline queue and the
 *   runtime index by them), and a fresh id is taken only when none is free.
 *   `generation` grows on every reuse of an id so the runtime can tell a late
 *   event for an old flow from the new one.
 * - Flow objects: with `reuse` (UDP, ICMP) they live in an array indexed by
 *   id and are reused with their id, so creating a flow allocates nothing
 *   once the table has warmed up (the host side checks the generation on
 *   every socket event). Without it (TCP) each flow is a new object: the
 *   host side and the NAT's end-of-batch lists may still hold a closed TCP
 *   flow and test its `closed`, and every connection allocates its
 *   TcpConnection anyway.
 * - Keys: a FlowIndex (flow-key.ts) over the pair (guest end, other end).
 * - Classes: every flow is in one class, and each class keeps its flows on an
 *   intrusive list in order of last activity (`touch` moves a flow to the
 *   tail; a flow never touched stays in the order it was created). A class
 *   has a `timeoutMs` (idle expiry: UDP 60 s and DNS 10 s, ICMP 30 s; TCP
 *   Infinity, its idle timeout is a deadline of the engine, below) and an
 *   `evictAfterMs` (how long its head must have been idle before a new flow
 *   may take its place: UDP and ICMP their timeout; TCP's handshake class 0,
 *   any age; TCP's open class Infinity, never). With a clock that never goes
 *   back each list's head is its oldest, so pollAt is O(classes) and poll
 *   and eviction touch only heads.
 * - A flow expires when now - lastActivity >= its class's timeout. Until
 *   poll runs, an expired flow still answers lookups and activity revives
 *   it: the runtime's timer may fire late, and reviving beats closing a
 *   socket only to open a new one.
 * - Caps: at most maxFlows flows; at most `guestShare` (guestShareOf in
 *   stack/limits.ts: 7/8 of the table) per guest address, counted by the
 *   address given to `allocate` (-1: none, e.g. a port forward's flow).
 *   Over the share, `allocate` refuses ('flow-guest-share-full'). When full,
 *   it evicts the least recently active class head that has been idle for
 *   its class's evictAfterMs, through the `evict` option: by default the
 *   flow is released as 'evicted'; TCP resets the oldest flow still in its
 *   handshake (as Linux drops the oldest request of a full SYN queue). With
 *   nothing to evict it refuses ('flow-table-full'). `lastRefusal` says
 *   which, for owners that count their own reasons.
 * - Deadlines (`deadlines: true`, TCP): one DeadlineQueue by id for flows
 *   whose next deadline their owner computes (the engine's timers, the idle
 *   and dial timeouts); `popDue` hands them back one by one, and a released
 *   flow's deadline is cancelled.
 * - Release: `release(flow, reason)` takes a flow out (index, list, share,
 *   deadline) and frees its id; the reason goes to FlowEvents ('idle',
 *   'evicted', 'removed', or TCP's close reason). Expiry and eviction by the
 *   table itself are also reported to `onClose`, after the flow has left the
 *   table, so the runtime closes that flow's socket. Callbacks must not call
 *   back into the table, except `evict`, which must release its flow or
 *   move it out of the evictable class (`setClass`).
 */

/** What a flow table keeps for every flow; each protocol adds its fields. */
export class NatFlow {
  /** 1..maxFlows while active. */
  id = 0;
  /** Bumped each time this id is handed to a new flow. */
  generation = 0;
  active = false;
  createdAt = 0;
  lastActivity = 0;
  /** Guest to host (payload bytes for TCP, filled in when it closes). */
  packetsOut = 0;
  bytesOut = 0;
  /** Host to guest. */
  packetsIn = 0;
  bytesIn = 0;
  /** Index of the flow's class (timeouts, eviction). */
  timeoutClass = 0;
  /** The guest address whose share of the table this flow counts against (FlowTable.allocate), -1 for none. */
  shareKey = -1;
  /** The flow's key as FlowIndex holds it, and its hash chain. */
  keyA = 0;
  keyB = 0;
  hashNext: NatFlow | null = null;
  prev: NatFlow | null = null;
  next: NatFlow | null = null;
}

/** Why a UDP or ICMP flow left its table: expiry, eviction, or its owner's removal. */
export type FlowCloseReason = 'idle' | 'evicted';

export interface FlowTableStats {
  active: number;
  created: number;
  expired: number;
  evicted: number;
  removed: number;
  drops: DropCounts;
}

/** One class of flows: its idle timeout and how long its oldest must have been idle to be evicted (Infinity: never). */
export interface FlowClass {
  timeoutMs: number;
  evictAfterMs: number;
}

export interface FlowTableOptions<F extends NatFlow> {
  proto: FlowProto;
  maxFlows: number;
  classes: readonly FlowClass[];
  /** A new flow object (once per id with `reuse`, else once per flow). */
  make: () => F;
  /** Reuse flow objects with their id (no allocation once warm); default true. */
  reuse?: boolean;
  /** Which freed id comes back first; default 'fifo' (see "Ids" above). */
  idOrder?: 'fifo' | 'lifo';
  /** Flows one guest address may hold; default no limit but maxFlows. */
  guestShare?: number;
  /** A flow left by expiry or eviction (after it left the table). */
  onClose?: ((id: number, flow: F, reason: FlowCloseReason) => void) | null;
  /**
   * Ends `victim` to make room for a new flow; true if it left the table.
   * Returning false, it must have moved the flow out of the evictable class
   * (setClass), so the next candidate is looked at. Default: release it as
   * 'evicted' (reported to onClose).
   */
  evict?: ((victim: F, now: number) => boolean) | null;
  /** Keep per-flow deadlines (schedule/popDue). */
  deadlines?: boolean;
  /** Key hash; replaceable so tests can force collisions. */
  hash?: (a: number, b: number) => number;
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

export class FlowTable<F extends NatFlow> {
  readonly proto: FlowProto;
  readonly maxFlows: number;
  readonly guestShare: number;
  readonly classes: readonly FlowClass[];
  created = 0;
  expired = 0;
  evicted = 0;
  removed = 0;
  /** Why the last `allocate` returned null. */
  lastRefusal: DropReason = 'flow-table-full';
  /** Told of every flow's start (`opened`, called by the owner once it filled the flow in) and end; null: nobody asked. */
  events: FlowEvents | null = null;
  private readonly dropped = newDropCounters();
  /**
   * Flows by key. Lookups go straight to it (`table.index.get(a, b)`, kept
   * in a field of the owner): on the per-packet path one call less lets V8
   * inline the lookup and its hash, and the 48-bit keys stay unboxed.
   */
  readonly index: FlowIndex<F>;
  private readonly make: () => F;
  private readonly reuse: boolean;
  private readonly lifo: boolean;
  private readonly onClose: ((id: number, flow: F, reason: FlowCloseReason) => void) | null;
  private readonly evictHook: ((victim: F, now: number) => boolean) | null;
  private readonly deadlineQueue: DeadlineQueue | null;
  private readonly flows: (F | undefined)[] = [];
  /** Generation of each id (its last flow's). */
  private readonly generations: number[] = [];
  private readonly lists: FlowList[];
  /** Freed ids: a FIFO ring, or a stack (lifo) from index 0. */
  private readonly freeIds: Int32Array;
  private freeHead = 0;
  private freeCount = 0;
  /** Ids above this were never handed out. */
  private fresh = 0;
  private activeCount = 0;
  /** Flows per guest address (shareKey). */
  private readonly perGuest = new Map<number, number>();

  constructor(opts: FlowTableOptions<F>) {
    this.proto = opts.proto;
    this.maxFlows = Math.max(1, Math.floor(opts.maxFlows));
    this.guestShare = opts.guestShare ?? Infinity;
    this.classes = opts.classes;
    this.make = opts.make;
    this.reuse = opts.reuse ?? true;
    this.lifo = opts.idOrder === 'lifo';
    this.onClose = opts.onClose ?? null;
    this.evictHook = opts.evict ?? null;
    this.deadlineQueue = opts.deadlines === true ? new DeadlineQueue() : null;
    this.index = new FlowIndex<F>(opts.hash ?? pairHash);
    this.lists = opts.classes.map(() => new FlowList());
    this.freeIds = new Int32Array(this.maxFlows);
  }

  /** Active flows. */
  get size(): number {
    return this.activeCount;
  }

  /** Drops by reason so far (allocates: for stats and tests). */
  get drops(): DropCounts {
    return this.dropped.snapshot();
  }

  drop(reason: DropReason): null {
    this.dropped.add(reason);
    return null;
  }

  byId(id: number): F | null {
    const f = this.flows[id];
    return f !== undefined && f.active ? f : null;
  }

  /** Every active flow (for shutdown, stats and diagnostics; allocates). */
  liveFlows(): F[] {
    const out: F[] = [];
    for (let id = 1; id <= this.fresh; id++) {
      const f = this.flows[id];
      if (f !== undefined && f.active) out.push(f);
    }
    return out;
  }

  /**
   * A new flow in class `cls` under key (a, b), which the caller has checked
   * is not present: linked, indexed and counted, its fields the owner's to
   * fill in (then `opened`). Null when `guest` (a guest address; -1: none)
   * already holds its share ('flow-guest-share-full'), or when the table is
   * full and nothing may be evicted ('flow-table-full'); see lastRefusal.
   */
  allocate(cls: number, a: number, b: number, now: number, guest = -1): F | null {
    const held = guest < 0 ? 0 : (this.perGuest.get(guest) ?? 0);
    if (held >= this.guestShare) return this.refuse('flow-guest-share-full');
    if (this.activeCount >= this.maxFlows && !this.evictOne(now)) return this.refuse('flow-table-full');
    const id = this.takeId();
    let f = this.flows[id];
    if (f === undefined || !this.reuse) {
      f = this.make();
      this.flows[id] = f;
    }
    const gen = (this.generations[id] ?? 0) + 1;
    this.generations[id] = gen;
    f.id = id;
    f.generation = gen;
    f.active = true;
    f.createdAt = now;
    f.lastActivity = now;
    f.packetsOut = f.bytesOut = f.packetsIn = f.bytesIn = 0;
    f.timeoutClass = cls;
    f.shareKey = guest;
    if (guest >= 0) this.perGuest.set(guest, held + 1);
    this.lists[cls].push(f);
    this.index.add(f, a, b);
    this.activeCount++;
    this.created++;
    return f;
  }

  /** Activity: the flow goes to the tail of its class (the last to expire or be evicted). */
  touch(f: F, now: number): void {
    f.lastActivity = now;
    const list = this.lists[f.timeoutClass];
    if (list.tail !== f) {
      list.unlink(f);
      list.push(f);
    }
  }

  /** Moves an active flow to class `cls` (at its tail). */
  setClass(f: F, cls: number): void {
    if (!f.active || f.timeoutClass === cls) return;
    this.lists[f.timeoutClass].unlink(f);
    f.timeoutClass = cls;
    this.lists[cls].push(f);
  }

  /** Reports a flow the owner has just filled in (to `events`, if set). */
  opened(f: F, inbound: boolean, guestIp: number, guestPort: number, remoteIp: number, remotePort: number): void {
    if (this.events !== null) this.events.opened(this.proto, f, inbound, guestIp, guestPort, remoteIp, remotePort);
  }

  /**
   * Takes the flow out of the table and frees its id. `reason` goes to
   * `events` with the flow's bytesOut and bytesIn; 'idle' and 'evicted'
   * are counted as such and told to onClose, anything else counts as
   * removed by the owner.
   */
  release(f: F, reason: string): void {
    if (!f.active) return;
    if (this.events !== null) this.events.closed(this.proto, f, reason, f.bytesOut, f.bytesIn);
    this.index.remove(f);
    this.lists[f.timeoutClass].unlink(f);
    if (this.deadlineQueue !== null) this.deadlineQueue.cancel(f.id);
    f.active = false;
    this.activeCount--;
    if (f.shareKey >= 0) {
      const n = (this.perGuest.get(f.shareKey) ?? 1) - 1;
      if (n === 0) this.perGuest.delete(f.shareKey);
      else this.perGuest.set(f.shareKey, n);
      f.shareKey = -1;
    }
    // A flow object that is not reused is not kept for its id either.
    if (!this.reuse) this.flows[f.id] = undefined;
    this.freeId(f.id);
    if (reason === 'idle' || reason === 'evicted') {
      if (reason === 'idle') this.expired++;
      else this.evicted++;
      if (this.onClose !== null) this.onClose(f.id, f, reason);
    } else {
      this.removed++;
    }
  }

  /** When the flow's class times it out unless there is more traffic. */
  deadline(f: NatFlow): number {
    return f.lastActivity + this.classes[f.timeoutClass].timeoutMs;
  }

  /** Makes sure `popDue` returns the flow no later than `at` (`deadlines` tables). */
  schedule(f: F, at: number): void {
    (this.deadlineQueue as DeadlineQueue).schedule(f.id, at);
  }

  /** The next active flow whose deadline is <= now, unscheduled (the caller schedules it again), or null. */
  popDue(now: number): F | null {
    const q = this.deadlineQueue as DeadlineQueue;
    for (let id = q.popDue(now); id >= 0; id = q.popDue(now)) {
      const f = this.flows[id];
      if (f !== undefined && f.active) return f;
    }
    return null;
  }

  /** The earliest idle expiry or deadline; Infinity when none. */
  pollAt(): number {
    let t = this.deadlineQueue === null ? Infinity : this.deadlineQueue.peekTime();
    for (let i = 0; i < this.lists.length; i++) {
      const h = this.lists[i].head;
      if (h !== null) t = Math.min(t, h.lastActivity + this.classes[i].timeoutMs);
    }
    return t;
  }

  /** Expires idle flows (reported to onClose); returns how many. Deadlines are the owner's to pop. */
  poll(now: number): number {
    let n = 0;
    for (let i = 0; i < this.lists.length; i++) {
      const list = this.lists[i];
      const timeout = this.classes[i].timeoutMs;
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

  private refuse(reason: DropReason): null {
    this.lastRefusal = reason;
    return this.drop(reason);
  }

  private takeId(): number {
    if (this.lifo) {
      if (this.freeCount > 0) return this.freeIds[--this.freeCount];
      return ++this.fresh;
    }
    if (this.fresh < this.maxFlows) return ++this.fresh;
    const id = this.freeIds[this.freeHead];
    this.freeHead = (this.freeHead + 1) % this.maxFlows;
    this.freeCount--;
    return id;
  }

  private freeId(id: number): void {
    if (this.lifo) this.freeIds[this.freeCount++] = id;
    else {
      this.freeIds[(this.freeHead + this.freeCount) % this.maxFlows] = id;
      this.freeCount++;
    }
  }

  /** Evicts one flow to make room (see "Caps" above); false if none may go. */
  private evictOne(now: number): boolean {
    for (;;) {
      const victim = this.victim(now);
      if (victim === null) return false;
      if (this.evictHook === null) {
        this.release(victim, 'evicted');
        return true;
      }
      if (this.evictHook(victim, now)) return true;
      // The hook moved it out of its class (or failed to end it): look again.
      if (victim.active && this.lists[victim.timeoutClass].head === victim && this.classes[victim.timeoutClass].evictAfterMs <= now - victim.lastActivity) {
        return false;
      }
    }
  }

  /** The least recently active class head that has been idle for its class's evictAfterMs. */
  private victim(now: number): F | null {
    let victim: NatFlow | null = null;
    for (let i = 0; i < this.lists.length; i++) {
      const h = this.lists[i].head;
      if (h !== null && now - h.lastActivity >= this.classes[i].evictAfterMs && (victim === null || h.lastActivity < victim.lastActivity)) {
        victim = h;
      }
    }
    return victim as F | null;
  }
}
