/**
 * IP fragment reassembly (RFC 791 section 3.2, RFC 8200 4.5, with the
 * stricter rules modern stacks apply against overlap attacks: RFC 5722
 * forbids overlapping IPv6 fragments outright).
 *
 * How it works
 * - A datagram in progress is a Slot keyed by (src, dst, protocol, id). The
 *   index is a Map from the exact number src * 2^16 + id to the first slot
 *   with that pair; slots sharing it (different dst or protocol) are chained
 *   through `sameKey`. No string keys.
 * - Each fragment's bytes are copied straight to their place in the slot's
 *   buffer. A bitmap with one bit per 8-byte block records what has arrived.
 *   Since every non-last fragment is a multiple of 8 long and every offset is
 *   a multiple of 8, the bitmap is exact, overlap detection is a bit test and
 *   completion is "received bytes === total length".
 * - Rules: a fragment that touches bytes we already hold kills the whole
 *   datagram ('frag-overlap'), unless it repeats them byte for byte (an exact
 *   retransmission, dropped as 'frag-duplicate'). The last fragment (MF=0)
 *   fixes the total length; data beyond it or a second, different last
 *   fragment kills the datagram. Non-last fragments whose length is not a
 *   multiple of 8 are refused. A payload beyond 65535 - 20 bytes (the largest
 *   datagram with a minimal header) kills the datagram.
 * - Limits: at most `maxDatagrams` in progress (the oldest is evicted to make
 *   room) and at most `maxBytes` of fragment payload held in total (the oldest
 *   other datagrams are evicted until the new fragment fits). A datagram that
 *   is not complete `timeoutMs` after its first fragment is dropped; the
 *   runtime calls `poll(now)` at `pollAt()`, and input also discards an
 *   expired datagram before reusing its key.
 * - Slots sit on an intrusive list in creation order, so the oldest is the
 *   head: eviction and expiry are O(1) each.
 *
 * Allocation: slot objects and their buffers are created on first use and
 * then reused forever (a slot's buffer grows by doubling up to 64 KiB and is
 * kept), so steady-state reassembly allocates nothing. Buffer capacity is
 * therefore bounded by maxDatagrams * 64 KiB (4 MiB with the defaults), and
 * the bytes actually held by maxBytes.
 *
 * A completed datagram is returned as a window onto the slot's buffer; it
 * stays valid until the next `input` call.
 *
 * One class for both families. IPv6: a second instance whose addresses are handles
 * (stack/ip/ip-addresses.ts) and ids 32 bits; given `addrs`, a slot holds a
 * reference on its two addresses until it is released, so a handle cannot be
 * reused for another address while fragments wait.
 */
import type { IpAddresses } from './ip-addresses.js';
import { newDropCounters, type DropCounts } from '../counters.js';
import type { DropReason } from '../drop-reasons.js';
import { limits } from '../limits.js';

/** Defaults and reasons: stack/limits.ts. */
export const REASSEMBLY_MAX_DATAGRAMS: number = limits.reassemblyMaxDatagrams.default;
export const REASSEMBLY_MAX_BYTES: number = limits.reassemblyMaxBytes.default;
export const REASSEMBLY_TIMEOUT_MS: number = limits.reassemblyTimeoutMs.default;
/** Total length is 16 bits and includes at least a 20-byte header. */
export const MAX_REASSEMBLED_PAYLOAD = 65535 - 20;
/** The fragment offset field is 13 bits of 8-byte units. */
const MAX_FRAG_OFFSET = 0x1fff * 8;
const BLOCKS = Math.ceil(MAX_REASSEMBLED_PAYLOAD / 8);
const BITMAP_BYTES = Math.ceil(BLOCKS / 8);
const MIN_BUFFER = 2048;
const MAX_BUFFER = 65536;

export interface IpReassemblerOptions {
  maxDatagrams?: number;
  maxBytes?: number;
  timeoutMs?: number;
  /** Addresses are handles of this table (IPv6); slots keep a reference on theirs. */
  addrs?: IpAddresses;
}

/** A completed datagram's payload; reused, valid until the next input call. */
export interface ReassembledDatagram {
  buf: Buffer;
  off: number;
  len: number;
}

export interface IpReassemblerStats {
  inProgress: number;
  bufferedBytes: number;
  reassembled: number;
  timeouts: number;
  evictions: number;
  drops: DropCounts;
}

class Slot {
  inUse = false;
  src = 0;
  dst = 0;
  protocol = 0;
  id = 0;
  createdAt = 0;
  buf: Buffer = Buffer.alloc(0);
  readonly bitmap = new Uint8Array(BITMAP_BYTES);
  /** Unique payload bytes received. */
  received = 0;
  /** Payload length once the last fragment is in, else -1. */
  total = -1;
  /** Highest fragment end seen. */
  maxEnd = 0;
  prev: Slot | null = null;
  next: Slot | null = null;
  sameKey: Slot | null = null;
}

/** Exact for IPv4 (u32 src, 16-bit id); for IPv6 handles the chain also compares the full 32-bit id. */
function indexKey(src: number, id: number): number {
  return src * 0x10000 + (id & 0xffff);
}

export class IpReassembler {
  readonly maxDatagrams: number;
  readonly maxBytes: number;
  readonly timeoutMs: number;

  reassembled = 0;
  timeouts = 0;
  evictions = 0;
  private readonly dropped = newDropCounters();
  /** Drops by reason so far (allocates: for stats and tests). */
  get drops(): DropCounts {
    return this.dropped.snapshot();
  }

  private readonly index = new Map<number, Slot>();
  private readonly free: Slot[] = [];
  private head: Slot | null = null;
  private tail: Slot | null = null;
  private count = 0;
  private held = 0;
  private readonly result: ReassembledDatagram = { buf: Buffer.alloc(0), off: 0, len: 0 };
  private readonly addrs: IpAddresses | null;

  constructor(opts: IpReassemblerOptions = {}) {
    this.addrs = opts.addrs ?? null;
    this.maxDatagrams = Math.max(1, opts.maxDatagrams ?? REASSEMBLY_MAX_DATAGRAMS);
    this.maxBytes = Math.max(0, opts.maxBytes ?? REASSEMBLY_MAX_BYTES);
    this.timeoutMs = opts.timeoutMs ?? REASSEMBLY_TIMEOUT_MS;
  }

  /** Datagrams in progress. */
  get inProgress(): number {
    return this.count;
  }

  /** Fragment payload bytes currently held (bounded by maxBytes). */
  get bufferedBytes(): number {
    return this.held;
  }

  /** Sum of slot buffer capacities, in use or pooled (bounded by maxDatagrams * 64 KiB). */
  get capacityBytes(): number {
    let n = 0;
    for (const s of this.free) n += s.buf.length;
    for (let s = this.head; s !== null; s = s.next) n += s.buf.length;
    return n;
  }

  /**
   * Takes one fragment's payload buf[off, off+len). Returns the whole
   * datagram's payload when this fragment completes it, else null (waiting,
   * or dropped with a counted reason). An unfragmented packet (offset 0, MF
   * clear) is handed straight back without copying.
   */
  input(
    src: number,
    dst: number,
    protocol: number,
    id: number,
    fragOffsetBytes: number,
    moreFragments: boolean,
    buf: Buffer,
    off: number,
    len: number,
    now: number,
  ): ReassembledDatagram | null {
    if (!(off >= 0 && len >= 0 && off + len <= buf.length)) return this.drop('frag-truncated');
    if (!(fragOffsetBytes >= 0 && fragOffsetBytes <= MAX_FRAG_OFFSET) || (fragOffsetBytes & 7) !== 0) {
      return this.drop('frag-bad-offset');
    }
    if (fragOffsetBytes === 0 && !moreFragments) {
      const r = this.result;
      r.buf = buf;
      r.off = off;
      r.len = len;
      return r;
    }
    if (moreFragments && (len === 0 || (len & 7) !== 0)) return this.drop('frag-bad-length');

    if (src < 0) src >>>= 0;
    if (dst < 0) dst >>>= 0;
    protocol &= 0xff;
    // IPv4 ids are 16 bits, IPv6 ones 32.
    id = this.addrs === null ? id & 0xffff : id >>> 0;
    const end = fragOffsetBytes + len;

    let slot = this.find(src, dst, protocol, id);
    if (slot !== null && now - slot.createdAt >= this.timeoutMs) {
      this.timeouts++;
      this.release(slot);
      slot = null;
    }
    if (end > MAX_REASSEMBLED_PAYLOAD) {
      if (slot !== null) this.release(slot);
      return this.drop('frag-too-big');
    }

    if (slot !== null) {
      // The last fragment fixes the length; everything must agree with it.
      if (!moreFragments) {
        if (slot.total >= 0 && slot.total !== end) return this.kill(slot, 'frag-bad-last');
        if (slot.maxEnd > end) return this.kill(slot, 'frag-beyond-end');
      } else if (slot.total >= 0 && end > slot.total) {
        return this.kill(slot, 'frag-beyond-end');
      }
      const covered = this.coveredBlocks(slot, fragOffsetBytes, end);
      if (covered > 0) {
        const blocks = ((end + 7) >>> 3) - (fragOffsetBytes >>> 3);
        if (covered === blocks && slot.buf.compare(buf, off, off + len, fragOffsetBytes, end) === 0) {
          return this.drop('frag-duplicate');
        }
        return this.kill(slot, 'frag-overlap');
      }
    }

    if (len > this.maxBytes) {
      if (slot !== null) this.release(slot);
      return this.drop('frag-memory');
    }
    // Room for the bytes: push out the oldest other datagrams.
    while (this.held + len > this.maxBytes) {
      let victim = this.head;
      if (victim === slot) victim = victim!.next;
      if (victim === null) break;
      this.evictions++;
      this.release(victim);
    }
    if (slot === null) {
      if (this.count >= this.maxDatagrams) {
        this.evictions++;
        this.release(this.head!);
      }
      slot = this.acquire(src, dst, protocol, id, now);
    }

    if (slot.buf.length < end) this.grow(slot, end);
    buf.copy(slot.buf, fragOffsetBytes, off, off + len);
    this.mark(slot, fragOffsetBytes, end);
    slot.received += len;
    this.held += len;
    if (end > slot.maxEnd) slot.maxEnd = end;
    if (!moreFragments) slot.total = end;

    if (slot.total >= 0 && slot.received === slot.total) {
      const r = this.result;
      r.buf = slot.buf;
      r.off = 0;
      r.len = slot.total;
      this.reassembled++;
      // The buffer stays with the pooled slot, untouched until the next input.
      this.release(slot);
      return r;
    }
    return null;
  }

  /** When the oldest datagram times out; Infinity when none is in progress. */
  pollAt(): number {
    return this.head === null ? Infinity : this.head.createdAt + this.timeoutMs;
  }

  /** Drops every datagram whose time is up; returns how many. */
  poll(now: number): number {
    let n = 0;
    while (this.head !== null && now - this.head.createdAt >= this.timeoutMs) {
      this.release(this.head);
      n++;
    }
    this.timeouts += n;
    return n;
  }

  stats(): IpReassemblerStats {
    return {
      inProgress: this.count,
      bufferedBytes: this.held,
      reassembled: this.reassembled,
      timeouts: this.timeouts,
      evictions: this.evictions,
      drops: this.dropped.snapshot(),
    };
  }

  private drop(reason: DropReason): null {
    this.dropped.add(reason);
    return null;
  }

  /** Discards the whole datagram: its fragments can no longer be trusted. */
  private kill(slot: Slot, reason: DropReason): null {
    this.release(slot);
    return this.drop(reason);
  }

  private find(src: number, dst: number, protocol: number, id: number): Slot | null {
    let s = this.index.get(indexKey(src, id)) ?? null;
    while (s !== null && (s.src !== src || s.dst !== dst || s.protocol !== protocol || s.id !== id)) s = s.sameKey;
    return s;
  }

  private acquire(src: number, dst: number, protocol: number, id: number, now: number): Slot {
    let s = this.free.pop();
    if (s === undefined) s = new Slot();
    s.inUse = true;
    s.src = this.addrs === null ? src : this.addrs.retain(src);
    s.dst = this.addrs === null ? dst : this.addrs.retain(dst);
    s.protocol = protocol;
    s.id = id;
    s.createdAt = now;
    s.received = 0;
    s.total = -1;
    s.maxEnd = 0;
    const k = indexKey(src, id);
    s.sameKey = this.index.get(k) ?? null;
    this.index.set(k, s);
    s.next = null;
    s.prev = this.tail;
    if (this.tail !== null) this.tail.next = s;
    else this.head = s;
    this.tail = s;
    this.count++;
    return s;
  }

  private release(s: Slot): void {
    if (!s.inUse) return;
    s.inUse = false;
    const k = indexKey(s.src, s.id);
    const first = this.index.get(k)!;
    if (first === s) {
      if (s.sameKey === null) this.index.delete(k);
      else this.index.set(k, s.sameKey);
    } else {
      let p = first;
      while (p.sameKey !== s) p = p.sameKey!;
      p.sameKey = s.sameKey;
    }
    s.sameKey = null;
    if (s.prev !== null) s.prev.next = s.next;
    else this.head = s.next;
    if (s.next !== null) s.next.prev = s.prev;
    else this.tail = s.prev;
    s.prev = s.next = null;
    // Only the blocks up to maxEnd can be set.
    s.bitmap.fill(0, 0, Math.min(BITMAP_BYTES, (((s.maxEnd + 7) >>> 3) + 7) >>> 3));
    this.held -= s.received;
    this.count--;
    this.free.push(s);
    if (this.addrs !== null) {
      this.addrs.release(s.src);
      this.addrs.release(s.dst);
    }
  }

  private grow(s: Slot, end: number): void {
    let cap = Math.max(MIN_BUFFER, s.buf.length * 2);
    while (cap < end) cap *= 2;
    if (cap > MAX_BUFFER) cap = MAX_BUFFER;
    const b = Buffer.alloc(cap);
    if (s.inUse && s.maxEnd > 0) s.buf.copy(b, 0, 0, s.maxEnd);
    s.buf = b;
  }

  /** How many 8-byte blocks of [start, end) are already present. */
  private coveredBlocks(s: Slot, start: number, end: number): number {
    const bm = s.bitmap;
    let n = 0;
    const last = (end + 7) >>> 3;
    for (let b = start >>> 3; b < last; b++) if ((bm[b >>> 3] & (1 << (b & 7))) !== 0) n++;
    return n;
  }

  private mark(s: Slot, start: number, end: number): void {
    const bm = s.bitmap;
    const last = (end + 7) >>> 3;
    for (let b = start >>> 3; b < last; b++) bm[b >>> 3] |= 1 << (b & 7);
  }
}
