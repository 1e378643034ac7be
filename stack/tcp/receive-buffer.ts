/**
 * The receiver's byte ring: in-order data waiting for the host socket
 * (`readable` bytes from `head`), followed by room for out-of-order data
 * placed at its offset and tracked by an Assembler. The advertised window is
 * exactly `free()` = max - readable, so anything the peer may send fits, and
 * out-of-order bytes cost no extra memory or copy when the hole fills.
 *
 * Memory: allocated on the first write at `initial` bytes, doubled (one
 * linearising copy) when a write reaches past the end, never beyond `max`.
 * `release()` returns it when nothing is stored.
 *
 * Under a TCP buffer budget (buffer-budget.ts; without one the window is
 * `max` from the start) the window is `limit - readable`, and `limit` starts
 * at BASE_WINDOW and doubles, up to `max`, each time the peer has sent half
 * of it since the last doubling (a sender that uses its window gets a bigger
 * one within a few round trips, as Linux's receive-buffer autotuning does;
 * an idle or slow connection keeps a small one). What a doubling adds beyond
 * BASE_WINDOW is reserved from the budget first; refused, the window stays.
 * A grant is kept while the connection lives (an advertised window is never
 * taken back) and returned by `recycle()`.
 *
 * Deferred copies (the guest -> host fast path): a big in-order segment whose
 * bytes sit in memory that stays unchanged until `settleDeferredCopies()`
 * (a tap's receive slots: `deferCopiesFrom`) is not copied into the ring.
 * Its room in the ring is reserved and a reference kept; `peek()` hands the
 * owner those bytes where they are, so a host write that takes them all
 * (the usual case: the pump writes at the end of the same batch) leaves them
 * never copied. Whatever is still unread when the source's owner calls
 * `settleDeferredCopies()` (before it reuses the memory) is copied into its
 * reserved room then. The references always cover the end of the readable
 * run: any other write settles them first.
 */

/**
 * The window every connection gets without the budget: 64 KiB, what the
 * SYN-ACK's unscaled window field can say anyway. The ring itself starts at
 * `initial` and grows into it.
 */
const BASE_WINDOW = 64 * 1024;
import { Assembler } from './assembler.js';
import { copyBytes } from './byte-copy.js';
import { ringPool } from './ring-pool.js';
import type { ByteRegion } from './send-buffer.js';
import { tcpBufferBudget, type BudgetHold } from './buffer-budget.js';

const EMPTY = Buffer.alloc(0);
const NO_REFS: Buffer[] = [];

/**
 * Smallest segment whose copy is deferred. A deferred segment costs the owner
 * a write of its own (one system call) unless it is settled; the copy saved is
 * worth more than that from a few KiB on. GSO super-frames from a guest with
 * TSO (up to 64 KiB at any MTU) are what this is for; MSS-sized segments of a
 * plain tap are copied as before, and one write carries a batch of them.
 */
const DEFER_MIN = 8 * 1024;
/**
 * References one ring keeps at most; past them, segments are copied. Settled
 * at least once per tap batch, so a flow has at most a batch of frames (64)
 * outstanding.
 */
const MAX_REFS = 64;

/** Memory whose bytes stay unchanged until settleDeferredCopies(): tap receive areas. */
const deferSources = new Set<Uint8Array>();
/** Rings holding references, to settle. */
const unsettled: (ReceiveBuffer | null)[] = [];
let unsettledCount = 0;

/**
 * Lets in-order segments from `src` be written to the host from where they are: its owner
 * promises to call settleDeferredCopies() before it changes any byte of it.
 */
export function deferCopiesFrom(src: Uint8Array): void {
  deferSources.add(src);
}

/** The owner of `src` stops keeping that promise (a port closed): what refers to it is copied now. */
export function stopDeferringFrom(src: Uint8Array): void {
  settleDeferredCopies();
  deferSources.delete(src);
}

/** Copies every deferred segment still unread into its ring: call before reusing a deferCopiesFrom source. */
export function settleDeferredCopies(): void {
  const n = unsettledCount;
  if (n === 0) return;
  unsettledCount = 0;
  for (let i = 0; i < n; i++) {
    const b = unsettled[i] as ReceiveBuffer;
    unsettled[i] = null;
    b.settleListed();
  }
}

export class ReceiveBuffer {
  buf: Buffer = EMPTY;
  private head = 0;
  /** In-order bytes ready for the owner. */
  readable = 0;
  readonly ooo: Assembler;
  private readonly region: ByteRegion = { buf: EMPTY, off: 0, len: 0 };
  /** The budget's bytes this ring holds (none without a budget). */
  private readonly hold: BudgetHold = { bytes: 0, short: false };
  /** What the window may cover: min(max, BASE_WINDOW) plus the budget's grant. */
  private limit: number;
  /** Bytes received since limit last grew. */
  private sinceGrow = 0;
  /** The last `deferred` readable bytes are not in the ring yet but at refs [refFirst, refEnd). */
  private deferred = 0;
  private refBuf: Buffer[] = NO_REFS;
  private readonly refOff: number[] = [];
  private readonly refLen: number[] = [];
  private refFirst = 0;
  private refEnd = 0;
  /** In the `unsettled` list. */
  private listed = false;

  constructor(
    readonly max: number,
    private readonly initial: number,
    maxRanges: number,
  ) {
    this.ooo = new Assembler(maxRanges);
    this.limit = Math.min(max, Math.max(initial, BASE_WINDOW));
  }

  get capacity(): number {
    return this.buf.length;
  }

  /** Room for new data: the receive window (reserving it from the budget first, up to max). */
  free(): number {
    if (this.limit < this.max) {
      if (tcpBufferBudget.limit === Infinity) this.limit = this.max;
      else if (this.sinceGrow >= this.limit >>> 1 && tcpBufferBudget.available > 0) {
        this.limit += tcpBufferBudget.reserve(this, this.hold, Math.min(this.limit, this.max - this.limit));
        this.sinceGrow = 0;
      }
    }
    return this.limit - this.readable;
  }

  /**
   * Stores len bytes that belong `offset` bytes after the in-order data.
   * The caller guarantees offset + len <= free(). Returns the number of bytes
   * that became readable (0 for a segment that stays out of order), or -1
   * when the out-of-order range cap refused it (nothing stored).
   */
  write(offset: number, src: Uint8Array, srcOff: number, len: number): number {
    if (len <= 0) return 0;
    this.sinceGrow += len;
    // In order with nothing held out of order: no bookkeeping (what add + takeFront would leave).
    const inOrder = offset === 0 && this.ooo.count === 0;
    if (inOrder) {
      this.ooo.clear();
      if (len >= DEFER_MIN && this.refEnd < MAX_REFS && deferSources.has(src)) return this.defer(src as Buffer, srcOff, len);
    } else if (!this.ooo.add(offset, len)) return -1;
    // References cover the end of the readable run: bytes copied behind them would not be.
    if (this.deferred > 0) this.settle();
    const need = this.readable + offset + len;
    if (need > this.buf.length) this.grow(need);
    const cap = this.buf.length;
    let pos = this.head + this.readable + offset;
    if (pos >= cap) pos -= cap;
    const first = Math.min(len, cap - pos);
    copyBytes(this.buf, pos, src, srcOff, first);
    if (first < len) copyBytes(this.buf, 0, src, srcOff + first, len - first);
    const n = inOrder ? len : this.ooo.takeFront();
    this.readable += n;
    return n;
  }

  /** Reserves the ring's room for an in-order segment and keeps where its bytes are. */
  private defer(src: Buffer, srcOff: number, len: number): number {
    const need = this.readable + len;
    if (need > this.buf.length) this.grow(need);
    if (this.refBuf === NO_REFS) this.refBuf = new Array<Buffer>(MAX_REFS).fill(EMPTY);
    const i = this.refEnd++;
    this.refBuf[i] = src;
    this.refOff[i] = srcOff;
    this.refLen[i] = len;
    this.deferred += len;
    this.readable += len;
    if (!this.listed) {
      this.listed = true;
      unsettled[unsettledCount++] = this;
    }
    return len;
  }

  /** settle(), for settleDeferredCopies: the ring has left its list. */
  settleListed(): void {
    this.listed = false;
    this.settle();
  }

  /** Copies the deferred bytes still unread into their room in the ring. */
  private settle(): void {
    if (this.deferred > 0) {
      const cap = this.buf.length;
      let pos = this.head + this.readable - this.deferred;
      if (pos >= cap) pos -= cap;
      for (let i = this.refFirst; i < this.refEnd; i++) {
        const len = this.refLen[i];
        const first = Math.min(len, cap - pos);
        copyBytes(this.buf, pos, this.refBuf[i], this.refOff[i], first);
        if (first < len) copyBytes(this.buf, 0, this.refBuf[i], this.refOff[i] + first, len - first);
        pos += len;
        if (pos >= cap) pos -= cap;
      }
    }
    this.dropRefs();
  }

  private dropRefs(): void {
    for (let i = this.refFirst; i < this.refEnd; i++) this.refBuf[i] = EMPTY;
    this.deferred = 0;
    this.refFirst = 0;
    this.refEnd = 0;
  }

  /**
   * The first contiguous chunk of readable data (no copy: in the ring, or where a deferred
   * segment still is); valid until the next call.
   */
  peek(): ByteRegion {
    const r = this.region;
    const inRing = this.readable - this.deferred;
    if (inRing === 0 && this.deferred > 0) {
      const i = this.refFirst;
      r.buf = this.refBuf[i];
      r.off = this.refOff[i];
      r.len = this.refLen[i];
      return r;
    }
    r.buf = this.buf;
    r.off = this.head;
    r.len = Math.min(inRing, this.buf.length - this.head);
    return r;
  }

  /** Copies up to len readable bytes to dst and consumes them; returns the count. */
  read(dst: Uint8Array, off: number, len: number): number {
    let done = 0;
    while (done < len && this.readable > 0) {
      const r = this.peek();
      const n = Math.min(r.len, len - done);
      // Not copyBytes: read() starts anywhere in the ring, so views would not repeat.
      dst.set(r.buf.subarray(r.off, r.off + n), off + done);
      this.consume(n);
      done += n;
    }
    return done;
  }

  consume(n: number): void {
    const k = Math.min(n, this.readable);
    // Past the bytes in the ring, the deferred segments are taken in order.
    let fromRefs = k - (this.readable - this.deferred);
    if (fromRefs > 0) {
      this.deferred -= fromRefs;
      while (fromRefs > 0) {
        const i = this.refFirst;
        const len = this.refLen[i];
        if (fromRefs < len) {
          this.refOff[i] += fromRefs;
          this.refLen[i] = len - fromRefs;
          break;
        }
        fromRefs -= len;
        this.refBuf[i] = EMPTY;
        this.refFirst++;
      }
      if (this.deferred === 0) this.dropRefs();
    }
    this.readable -= k;
    this.head += k;
    if (this.head >= this.buf.length) this.head -= this.buf.length;
    // Rewinding keeps the next chunk contiguous; out-of-order bytes pin the head.
    if (this.readable === 0 && this.ooo.count === 0) this.head = 0;
  }

  /**
   * Gives an empty ring to the pool (an idle flow); the next byte takes one
   * again. The window stays as offered (and its grant with it): a peer may
   * send up to the right edge it was told, whenever it likes.
   */
  release(): void {
    if (this.readable === 0 && this.ooo.count === 0) this.freeRing();
  }

  /** Gives the storage to the ring pool whatever it holds, and the budget's grant back (a closed connection whose data was taken). */
  recycle(): void {
    this.freeRing();
    tcpBufferBudget.returnAll(this.hold);
    this.limit = Math.min(this.max, Math.max(this.initial, BASE_WINDOW));
    this.sinceGrow = 0;
  }

  private freeRing(): void {
    if (this.buf !== EMPTY) ringPool.give(this.buf);
    this.buf = EMPTY;
    this.head = 0;
    this.readable = 0;
    this.dropRefs();
    // The reused region must not keep the ring alive once the pool has let it go.
    this.region.buf = EMPTY;
    this.ooo.clear();
  }

  /** recycle(), when the owner has taken every byte (TIME-WAIT: nothing more arrives). */
  recycleIfEmpty(): void {
    if (this.readable === 0 && this.ooo.count === 0) this.recycle();
  }

  private grow(need: number): void {
    let cap = Math.max(this.buf.length * 2, this.initial, 1);
    while (cap < need) cap *= 2;
    cap = Math.min(cap, this.max);
    // Under a budget, no bigger than the window offered (need is within it): the doubling stops at the grant.
    if (tcpBufferBudget.limit !== Infinity) cap = Math.min(cap, Math.max(this.limit, need));
    const nb = (this.buf.length === 0 ? ringPool.take(cap) : null) ?? Buffer.allocUnsafe(cap);
    const old = this.buf;
    // Everything from head to the end of the old ring (readable and out-of-order parts).
    old.copy(nb, 0, this.head, old.length);
    old.copy(nb, old.length - this.head, 0, this.head);
    this.buf = nb;
    this.head = 0;
  }
}
