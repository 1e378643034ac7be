/**
 * DNS forwarder for queries sent to the gateway's DNS address, sans-IO: the
 * runtime hands it client queries and upstream responses, owns the sockets,
 * and calls `poll` when `pollAt` says so.
 *
 * How it works
 * - Each query takes a slot of a table allocated up front (`maxPending`
 *   slots): the client key (an opaque number the runtime routes replies
 *   with), the client's id, the attempt number, the upstream it went to,
 *   and a private copy of the query carrying a fresh 16-bit id. Ids are
 *   random (from a crypto pool, so that an off-path sender cannot guess
 *   them) and never one already in flight; `idToSlot` maps them back.
 * - A response is accepted only when its id is in flight, it came from the
 *   upstream the query was last sent to, and its question section matches
 *   the query's (ASCII case ignored). Then the client's id goes back in (the
 *   response is rewritten in place) and it goes to the client unchanged,
 *   truncated (TC) answers included: the client retries over TCP, which the
 *   runtime proxies. Upstream SERVFAIL or REFUSED answers pass through too.
 * - Timeouts: every try waits `timeoutMs` (2 s). The waiting slots form a
 *   list in send order; since every try gets the same timeout and `now`
 *   never goes back, the list is sorted by deadline, so `pollAt` is its head
 *   and removal on a response is O(1). On timeout the query goes to the next
 *   upstream; after `attempts` tries (default: each upstream once) the
 *   client gets a SERVFAIL built from its query.
 * - Full table: the oldest waiting query gives up its slot to the new one
 *   and its client gets a SERVFAIL at once ('pending-full'), as unbound
 *   jostles old queries out of a full request list. Refusing the new query
 *   instead would let a guest that floods queries to a slow or dead name
 *   keep the table full and every other guest's query refused; this way
 *   each query keeps its slot for the time maxPending newer ones take to
 *   arrive, which is far longer than a live upstream takes to answer.
 * - No upstream configured: immediate SERVFAIL, counted.
 * - No allocation per query in steady state: slot buffers are allocated on
 *   first use (512 bytes, grown up to `maxQueryLen` for a big query) and
 *   kept. The bytes handed to `env.sendUpstream` stay intact until the query
 *   completes, so the runtime may send them asynchronously.
 * - Never throws on input: every message dropped counts one reason.
 */
import { randomFillSync } from 'node:crypto';
import { buildServfail, DnsHeaderView, DNS_HEADER_LEN, questionSectionEnd } from './wire/dns.js';
import type { LocalNames } from './dns-local-names.js';
import { newDropCounters, withDrops, type DropCounts } from './counters.js';
import type { DropReason } from './drop-reasons.js';
import { limits } from './limits.js';

/** Defaults: stack/limits.ts. */
export const DNS_TIMEOUT_MS: number = limits.dnsTimeoutMs.default;
export const DNS_MAX_PENDING: number = limits.dnsMaxPending.default;
/**
 * Queries are a name and an EDNS record, well under 512 bytes; 4 KiB leaves
 * room for any option a client may add and bounds what a slot can grow to.
 */
export const DNS_MAX_QUERY_LEN = 4096;
/** Slot buffers start at the classic DNS UDP size. */
const SLOT_INITIAL_LEN = 512;
/** Random ids to draw before a linear search; with at most 32768 of 65536 in flight, 16 misses are rare. */
const ID_TRIES = 16;
const ID_POOL_LEN = 256;

export interface DnsUpstream {
  ip: string;
  port: number;
}

export interface DnsForwarderEnv {
  /** Sends buf[off, off+len) over UDP to upstreams[upstreamIndex]. */
  sendUpstream(upstreamIndex: number, buf: Buffer, off: number, len: number): void;
  /** Sends a response to the guest endpoint that clientKey stands for. */
  reply(clientKey: number, buf: Buffer, off: number, len: number): void;
}

export interface DnsForwarderOptions {
  /** Resolved by the runtime; index in this list identifies an upstream. */
  upstreams: DnsUpstream[];
  /** Wait per try. */
  timeoutMs?: number;
  /** Tries per query in all; default one per upstream. */
  attempts?: number;
  maxPending?: number;
  maxQueryLen?: number;
  /** Source of ids, for tests; default crypto-random. Only the low 16 bits are used. */
  random16?: () => number;
  /** Names answered here instead of upstream (a daemon's attached guests). */
  localNames?: LocalNames | null;
}

export interface DnsForwarderCounters {
  queries: number;
  /** Datagrams sent upstream, retries included. */
  sent: number;
  /** Retries sent to another upstream after a timeout. */
  failovers: number;
  /** Responses handed to clients. */
  answered: number;
  /** SERVFAILs produced here, by cause: 'timeout', 'pending-full', 'no-upstream'. */
  servfail: Record<string, number>;
  /** Messages dropped, by reason. */
  readonly drops: DropCounts;
}

function bump(table: Record<string, number>, key: string): void {
  table[key] = (table[key] ?? 0) + 1;
}

function lowerAscii(c: number): number {
  return c >= 0x41 && c <= 0x5a ? c | 0x20 : c;
}

export class DnsForwarder {
  readonly upstreams: readonly DnsUpstream[];
  readonly timeoutMs: number;
  readonly attempts: number;
  readonly maxPending: number;
  readonly maxQueryLen: number;
  private readonly dropped = newDropCounters();
  readonly counters: DnsForwarderCounters = withDrops({ queries: 0, sent: 0, failovers: 0, answered: 0, servfail: Object.create(null) }, this.dropped);

  readonly local: LocalNames | null;
  private readonly env: DnsForwarderEnv;
  private readonly random16: (() => number) | null;
  private readonly idPool = new Uint16Array(ID_POOL_LEN);
  private idPoolNext = ID_POOL_LEN;

  /** Upstream id -> slot, -1 when the id is not in flight. */
  private readonly idToSlot = new Int32Array(65536).fill(-1);
  private readonly slotId: Int32Array;
  private readonly clientKey: Float64Array;
  private readonly clientId: Uint16Array;
  private readonly attempt: Uint16Array;
  private readonly upstream: Int32Array;
  private readonly deadline: Float64Array;
  private readonly queryLen: Int32Array;
  /** End of the question section in the query, -1 when it did not parse (then no matching). */
  private readonly questionEnd: Int32Array;
  private readonly bufs: (Buffer | null)[];
  // Waiting slots, oldest deadline first.
  private readonly prev: Int32Array;
  private readonly next: Int32Array;
  private head = -1;
  private tail = -1;
  private readonly freeSlots: Int32Array;
  private freeTop: number;

  private readonly header = new DnsHeaderView();
  private readonly scratch: Buffer;

  constructor(opts: DnsForwarderOptions, env: DnsForwarderEnv) {
    this.env = env;
    this.upstreams = opts.upstreams.slice();
    this.timeoutMs = opts.timeoutMs ?? DNS_TIMEOUT_MS;
    this.attempts = opts.attempts ?? Math.max(1, this.upstreams.length);
    this.maxPending = opts.maxPending ?? DNS_MAX_PENDING;
    this.maxQueryLen = opts.maxQueryLen ?? DNS_MAX_QUERY_LEN;
    this.random16 = opts.random16 ?? null;
    this.local = opts.localNames ?? null;
    for (const u of this.upstreams) {
      if (!Number.isInteger(u.port) || u.port < 1 || u.port > 65535) {
        throw new RangeError(`DNS upstream ${u.ip} has an invalid port ${u.port}`);
      }
    }
    if (!(this.timeoutMs > 0)) throw new RangeError(`DNS timeout must be positive, got ${this.timeoutMs}`);
    if (!Number.isInteger(this.attempts) || this.attempts < 1 || this.attempts > 0xffff) {
      throw new RangeError(`DNS attempts must be 1..65535, got ${this.attempts}`);
    }
    // At most half the id space in flight keeps random id draws cheap.
    if (!Number.isInteger(this.maxPending) || this.maxPending < 1 || this.maxPending > 32768) {
      throw new RangeError(`DNS maxPending must be 1..32768, got ${this.maxPending}`);
    }
    if (!Number.isInteger(this.maxQueryLen) || this.maxQueryLen < DNS_HEADER_LEN || this.maxQueryLen > 65535) {
      throw new RangeError(`DNS maxQueryLen must be 12..65535, got ${this.maxQueryLen}`);
    }
    const n = this.maxPending;
    this.slotId = new Int32Array(n).fill(-1);
    this.clientKey = new Float64Array(n);
    this.clientId = new Uint16Array(n);
    this.attempt = new Uint16Array(n);
    this.upstream = new Int32Array(n);
    this.deadline = new Float64Array(n);
    this.queryLen = new Int32Array(n);
    this.questionEnd = new Int32Array(n);
    this.bufs = new Array<Buffer | null>(n).fill(null);
    this.prev = new Int32Array(n).fill(-1);
    this.next = new Int32Array(n).fill(-1);
    this.freeSlots = new Int32Array(n);
    for (let i = 0; i < n; i++) this.freeSlots[i] = n - 1 - i;
    this.freeTop = n;
    this.scratch = Buffer.alloc(this.maxQueryLen);
  }

  /** Queries waiting for an answer. */
  get pending(): number {
    return this.maxPending - this.freeTop;
  }

  /**
   * A query from a guest. Returns null when it was forwarded or answered
   * with a SERVFAIL, else the drop reason (also counted).
   */
  query(clientKey: number, buf: Buffer, off: number, len: number, now: number): DropReason | null {
    const h = this.header;
    const bad = h.reset(buf, off, len);
    if (bad !== null) return this.drop(bad);
    if (h.qr) return this.drop('dns-not-query');
    if (len > this.maxQueryLen) return this.drop('dns-query-too-big');
    this.counters.queries++;
    if (this.local !== null) {
      const n = this.local.answer(buf, off, len, this.scratch, 0);
      if (n > 0) {
        this.counters.answered++;
        this.env.reply(clientKey, this.scratch, 0, n);
        return null;
      }
    }
    if (this.upstreams.length === 0) return this.servfailNow(clientKey, buf, off, len, 'no-upstream');
    // Every slot in use is in the waiting list, so a full table has a head.
    if (this.freeTop === 0) this.fail(this.head, 'pending-full');

    const slot = this.freeSlots[--this.freeTop];
    let sb = this.bufs[slot];
    if (sb === null || sb.length < len) {
      sb = Buffer.alloc(Math.max(SLOT_INITIAL_LEN, len));
      this.bufs[slot] = sb;
    }
    buf.copy(sb, 0, off, off + len);
    const id = this.pickId();
    sb[0] = id >>> 8;
    sb[1] = id & 0xff;
    this.idToSlot[id] = slot;
    this.slotId[slot] = id;
    this.clientKey[slot] = clientKey;
    this.clientId[slot] = h.id;
    this.attempt[slot] = 0;
    this.queryLen[slot] = len;
    this.questionEnd[slot] = questionSectionEnd(sb, 0, len);
    this.send(slot, 0, now);
    return null;
  }

  /**
   * A datagram from upstreams[upstreamIndex]. Returns null when it went to
   * the client, else the drop reason (also counted). On success the id in
   * buf is rewritten in place.
   */
  response(upstreamIndex: number, buf: Buffer, off: number, len: number, now: number): DropReason | null {
    const h = this.header;
    const bad = h.reset(buf, off, len);
    if (bad !== null) return this.drop(bad);
    if (!h.qr) return this.drop('dns-not-response');
    const slot = this.idToSlot[h.id];
    // Unknown ids include answers that come after the query timed out for good.
    if (slot < 0) return this.drop('unknown-id');
    if (this.upstream[slot] !== upstreamIndex) return this.drop('wrong-upstream');
    if (!this.questionMatches(slot, buf, off, len)) return this.drop('question-mismatch');
    const key = this.clientKey[slot];
    h.id = this.clientId[slot];
    this.release(slot);
    this.counters.answered++;
    this.env.reply(key, buf, off, len);
    return null;
  }

  /** When poll must run next (ms on the caller's clock), Infinity when nothing waits. */
  pollAt(): number {
    return this.head < 0 ? Infinity : this.deadline[this.head];
  }

  /** Retries or fails every query whose try timed out by `now`. */
  poll(now: number): void {
    while (this.head >= 0 && this.deadline[this.head] <= now) {
      const slot = this.head;
      this.unlink(slot);
      const tried = this.attempt[slot] + 1;
      if (tried < this.attempts) {
        this.attempt[slot] = tried;
        this.counters.failovers++;
        this.send(slot, tried % this.upstreams.length, now);
        continue;
      }
      this.fail(slot, 'timeout');
    }
  }

  /** Ends a waiting query with a SERVFAIL to its client and frees its slot. */
  private fail(slot: number, cause: string): void {
    const sb = this.bufs[slot]!;
    const len = this.queryLen[slot];
    const key = this.clientKey[slot];
    const n = buildServfail(sb, 0, len, this.scratch, 0);
    this.scratch[0] = this.clientId[slot] >>> 8;
    this.scratch[1] = this.clientId[slot] & 0xff;
    this.release(slot);
    bump(this.counters.servfail, cause);
    // n is at least a header: the query passed the length check on the way in.
    this.env.reply(key, this.scratch, 0, n);
  }

  private drop(reason: DropReason): DropReason {
    this.dropped.add(reason);
    return reason;
  }

  private servfailNow(clientKey: number, buf: Buffer, off: number, len: number, cause: string): null {
    const n = buildServfail(buf, off, len, this.scratch, 0);
    bump(this.counters.servfail, cause);
    this.env.reply(clientKey, this.scratch, 0, n);
    return null;
  }

  private send(slot: number, upstreamIndex: number, now: number): void {
    this.upstream[slot] = upstreamIndex;
    this.deadline[slot] = now + this.timeoutMs;
    this.append(slot);
    this.counters.sent++;
    this.env.sendUpstream(upstreamIndex, this.bufs[slot]!, 0, this.queryLen[slot]);
  }

  private questionMatches(slot: number, buf: Buffer, off: number, len: number): boolean {
    const qEnd = this.questionEnd[slot];
    // Some error responses (FORMERR) carry no question; nothing to compare then.
    if (qEnd <= DNS_HEADER_LEN || this.header.qdcount === 0) return true;
    const sb = this.bufs[slot]!;
    if (len < qEnd || this.header.qdcount !== ((sb[4] << 8) | sb[5])) return false;
    for (let i = DNS_HEADER_LEN; i < qEnd; i++) {
      if (lowerAscii(buf[off + i]) !== lowerAscii(sb[i])) return false;
    }
    return true;
  }

  private pickId(): number {
    for (let i = 0; i < ID_TRIES; i++) {
      const id = this.nextRandom();
      if (this.idToSlot[id] < 0) return id;
    }
    // Unlucky draws: walk from a random point; a free id exists since at most half are in use.
    let id = this.nextRandom();
    while (this.idToSlot[id] >= 0) id = (id + 1) & 0xffff;
    return id;
  }

  private nextRandom(): number {
    if (this.random16 !== null) return this.random16() & 0xffff;
    if (this.idPoolNext === ID_POOL_LEN) {
      randomFillSync(this.idPool);
      this.idPoolNext = 0;
    }
    return this.idPool[this.idPoolNext++];
  }

  private release(slot: number): void {
    this.unlink(slot);
    this.idToSlot[this.slotId[slot]] = -1;
    this.slotId[slot] = -1;
    this.freeSlots[this.freeTop++] = slot;
  }

  private append(slot: number): void {
    this.prev[slot] = this.tail;
    this.next[slot] = -1;
    if (this.tail >= 0) this.next[this.tail] = slot;
    else this.head = slot;
    this.tail = slot;
  }

  /** Takes the slot out of the waiting list; harmless when it is not in it. */
  private unlink(slot: number): void {
    const p = this.prev[slot];
    const n = this.next[slot];
    if (p >= 0) this.next[p] = n;
    else if (this.head === slot) this.head = n;
    else return;
    if (n >= 0) this.prev[n] = p;
    else this.tail = p;
    this.prev[slot] = -1;
    this.next[slot] = -1;
  }
}
