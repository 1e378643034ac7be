/**
 * The sender's byte ring: data written by the host side and not yet
 * acknowledged by the peer. The first byte of the ring is SND.UNA's data
 * (the connection keeps the mapping); `ack(n)` frees from the front.
 *
 * Memory: nothing is allocated until the first write; the ring starts at
 * `initial` bytes and doubles (copying once, linearised) when it is full,
 * never beyond `max`. `release()` gives the memory back when it is empty.
 * `writable()` exposes the contiguous free region after the tail so a host
 * socket can read straight into it (`commit(n)` then accounts the bytes).
 * That region stays valid until the next writable() call, whatever ack()
 * frees meanwhile: the runtime asks for the next region right after a read
 * and fills it whenever the socket next has data.
 * `chunk(offset)` returns the contiguous stored bytes from an offset, which
 * is how segments reference their payload without copying; a segment never
 * spans the wrap point.
 *
 * Growth beyond SEND_BASE (64 KiB, or `initial` when larger) is reserved
 * from the process's TCP buffer budget (buffer-budget.ts) first; what the
 * budget refuses, the ring does without: it stays full, and the host socket
 * waits, as at `max`. The ring may start smaller than SEND_BASE (small first
 * rings keep idle connections cheap) and grows into it freely, as the
 * receive side's window grows into its BASE_WINDOW.
 */

import { copyBytes } from './byte-copy.js';
import { ringPool } from './ring-pool.js';
import { tcpBufferBudget, type BudgetHold } from './buffer-budget.js';

const EMPTY = Buffer.alloc(0);

/** What every connection's send ring may hold without the budget. */
export const SEND_BASE = 64 * 1024;

/** A contiguous region of a buffer; reused, valid until the next call. */
export interface ByteRegion {
  buf: Buffer;
  off: number;
  len: number;
}

export class SendBuffer {
  buf: Buffer = EMPTY;
  private head = 0;
  /** Bytes stored (unacknowledged + unsent). */
  length = 0;
  private readonly region: ByteRegion = { buf: EMPTY, off: 0, len: 0 };
  /** The budget's bytes this ring holds (none without a budget). */
  private readonly hold: BudgetHold = { bytes: 0, short: false };
  /** Capacity beyond `initial` the budget granted. */
  private granted = 0;

  constructor(
    readonly max: number,
    private readonly initial: number,
  ) {}

  get capacity(): number {
    return this.buf.length;
  }

  /** Bytes that may still be added. */
  space(): number {
    return this.max - this.length;
  }

  /** The contiguous free region after the tail (len 0 when full). Grows the ring when it is full. */
  writable(): ByteRegion {
    const r = this.region;
    if (this.length === this.buf.length && this.buf.length < this.max) this.grow(this.length + 1);
    const cap = this.buf.length;
    r.buf = this.buf;
    if (this.length === 0) {
      this.head = 0;
      r.off = 0;
      r.len = cap;
      return r;
    }
    if (this.length === cap) {
      r.off = this.head;
      r.len = 0;
      return r;
    }
    const tail = this.head + this.length < cap ? this.head + this.length : this.head + this.length - cap;
    r.off = tail;
    r.len = tail >= this.head ? cap - tail : this.head - tail;
    return r;
  }

  /** Accounts n bytes written into the region `writable()` returned. */
  commit(n: number): void {
    this.length += n;
  }

  /** Copies up to len bytes in; returns how many were taken. */
  write(src: Uint8Array, off: number, len: number): number {
    let done = 0;
    while (done < len) {
      const r = this.writable();
      if (r.len === 0) break;
      const n = Math.min(r.len, len - done);
      copyBytes(r.buf, r.off, src, off + done, n);
      this.commit(n);
      done += n;
    }
    return done;
  }

  /** The contiguous stored bytes starting `offset` bytes after the head (len 0 past the end). */
  chunk(offset: number): ByteRegion {
    const r = this.region;
    r.buf = this.buf;
    if (offset >= this.length) {
      r.off = 0;
      r.len = 0;
      return r;
    }
    const cap = this.buf.length;
    let pos = this.head + offset;
    if (pos >= cap) pos -= cap;
    r.off = pos;
    r.len = Math.min(this.length - offset, cap - pos);
    return r;
  }

  /** Frees n bytes from the front (acknowledged data). */
  ack(n: number): void {
    const k = Math.min(n, this.length);
    this.length -= k;
    this.head += k;
    if (this.head >= this.buf.length) this.head -= this.buf.length;
    // The head does not jump back to 0 when the ring empties: a region handed out by
    // writable() (a host socket may be reading into it right now) must stay where the
    // next commit() will look for it. writable() itself rewinds an empty ring.
  }

  /**
   * Gives the storage to the ring pool when empty (an idle flow); the next
   * write takes one again. Only between host reads: a region from writable()
   * must not be in use (the runtime's idle sweep calls it from a timer).
   */
  release(): void {
    if (this.length === 0) this.recycle();
  }

  /**
   * Gives the storage to the ring pool whatever it holds (a closed
   * connection). Only when nothing reads into a region from writable() any
   * more: the pool hands the memory to another connection.
   */
  recycle(): void {
    if (this.buf !== EMPTY) ringPool.give(this.buf);
    this.buf = EMPTY;
    this.head = 0;
    this.length = 0;
    // The reused region must not keep the ring alive once the pool has let it go.
    this.region.buf = EMPTY;
    tcpBufferBudget.returnAll(this.hold);
    this.granted = 0;
  }

  /** recycle(), when nothing is queued (TIME-WAIT: everything was acknowledged). */
  recycleIfEmpty(): void {
    if (this.length === 0) this.recycle();
  }

  private grow(need: number): void {
    let cap = Math.max(this.buf.length * 2, this.initial, 1);
    while (cap < need) cap *= 2;
    cap = Math.min(cap, this.max);
    const base = Math.max(this.initial, SEND_BASE);
    const extra = cap - base - this.granted;
    if (extra > 0) {
      this.granted += tcpBufferBudget.reserve(this, this.hold, extra);
      cap = Math.min(cap, base + this.granted);
      if (cap <= this.buf.length) return;
    }
    const nb = (this.buf.length === 0 ? ringPool.take(cap) : null) ?? Buffer.allocUnsafe(cap);
    const old = this.buf;
    const first = Math.min(this.length, old.length - this.head);
    old.copy(nb, 0, this.head, this.head + first);
    if (first < this.length) old.copy(nb, first, 0, this.length - first);
    this.buf = nb;
    this.head = 0;
  }
}
