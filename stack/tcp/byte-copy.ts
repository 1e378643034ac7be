/**
 * Copies a byte range between two buffers without allocating in steady state.
 *
 * How it works: `dst.set(src.subarray(a, b), off)`, the obvious copy, makes a
 * new view object per call, and on the TCP data path that was one view per
 * segment: most of the minor GCs of the data-path micro-benchmark. No JS or
 * Node 20 API copies between two buffers at offsets on both sides without a
 * view (`Buffer#copy` makes one internally too), so views are made once per
 * start offset and reused:
 * - A source object that keeps coming back (a tap's receive area, a link
 *   ring, a send ring) gets a table from start offset to two views: `exact`
 *   (the range of the first copy from there) and `tail` (from there to the
 *   end of the source). Same length again: `dst.set(exact, off)`, a plain
 *   memmove. Another length: `Buffer#fill(tail, start, end)`, which copies
 *   end - start bytes from the first byte of `tail` (it only repeats a source
 *   shorter than the range, and `tail` never is). About 40 ns slower than
 *   `set`, still cheaper than a view plus its share of a scavenge.
 * - Sources are told apart by object identity, not by ArrayBuffer: the view
 *   accessors (`buffer`, `byteOffset`) cost ~15 ns each on a Buffer, more
 *   than the whole lookup. A table is made only for a source seen on
 *   STREAK_FOR_TABLE calls in a row, so sources that live for one write
 *   (tests, a host socket's chunk) cost what they did before and leave
 *   nothing behind. Tables live in
 *   a WeakMap keyed by the source: they go with it.
 * - A table holds at most MAX_STARTS offsets and starts over when full: a
 *   tap's receive area has 64 slots and a few header layouts, a ring cut into
 *   MSS-sized segments a few thousand starts.
 * - Short ranges are copied by a loop: cheaper than any call, and they would
 *   only fill tables with starts that never repeat.
 * - Ranges must not overlap: `fill` is a memcpy.
 */

/** At or below this many bytes a loop beats the builtins (measured: ~1 ns per byte vs ~30 ns per call). */
const LOOP_MAX = 24;
/**
 * Starts remembered per source ArrayBuffer. Covers a 4 MiB ring cut into
 * 1448-byte segments (~2,900 starts) with room to spare; each start costs two
 * small views (~200 bytes), so a full table is ~1.6 MiB, and only sources that
 * really have that many distinct starts ever fill it.
 */
const MAX_STARTS = 8192;
/**
 * Consecutive calls with one source before it gets a table. One buffer write
 * makes at most two calls (a ring wraps once), so a source that lives for one
 * write never gets a table; a tap's receive area or a link gets one within
 * its first batch.
 */
const STREAK_FOR_TABLE = 3;
/** First table size (slots, a power of two): a tap's 64 receive slots fit without growing. */
const INITIAL_SLOTS = 256;

const NO_VIEW = new Uint8Array(0);
const fill = Buffer.prototype.fill;

/**
 * Open addressing (linear probing) from start offset to its views, kept at
 * most half full: a lookup is a multiply, a mask and one or two typed-array
 * reads, where a Map costs a call. Grows by doubling up to 2 * MAX_STARTS
 * slots, then empties itself.
 */
class StartTable {
  private keys: Int32Array;
  private exact: Uint8Array[];
  private tail: Uint8Array[];
  private shift = 0;
  private size = 0;

  private readonly ab: ArrayBufferLike;
  private readonly base: number = 0;
  private readonly limit: number = 0;

  constructor(src: Uint8Array) {
    // Read once: the view accessors cost ~15 ns each on a Buffer, more than a lookup.
    this.ab = src.buffer;
    this.base = src.byteOffset;
    this.limit = src.length;
    this.keys = new Int32Array(INITIAL_SLOTS).fill(-1);
    this.exact = new Array<Uint8Array>(INITIAL_SLOTS).fill(NO_VIEW);
    this.tail = new Array<Uint8Array>(INITIAL_SLOTS).fill(NO_VIEW);
    this.shift = 32 - Math.log2(INITIAL_SLOTS);
  }

  /** Copies len bytes from offset `start` of the source to dst[dstOff]. */
  copy(dst: Uint8Array, dstOff: number, start: number, len: number): void {
    const keys = this.keys;
    const mask = keys.length - 1;
    let i = Math.imul(start, 0x9e3779b1) >>> this.shift;
    for (;;) {
      const k = keys[i];
      if (k === start) {
        const e = this.exact[i];
        if (e.length === len) dst.set(e, dstOff);
        else fill.call(dst, this.tail[i], dstOff, dstOff + len);
        return;
      }
      if (k === -1) break;
      i = (i + 1) & mask;
    }
    // A new start: make its views once.
    const exact = new Uint8Array(this.ab, this.base + start, len);
    dst.set(exact, dstOff);
    if (2 * (this.size + 1) > keys.length) {
      if (keys.length >= 2 * MAX_STARTS) this.reset(keys.length);
      else this.reset(keys.length * 2);
      flushed += keys.length >= 2 * MAX_STARTS ? 1 : 0;
      i = Math.imul(start, 0x9e3779b1) >>> this.shift;
      while (this.keys[i] !== -1) i = (i + 1) & (this.keys.length - 1);
    }
    this.keys[i] = start;
    this.exact[i] = exact;
    this.tail[i] = new Uint8Array(this.ab, this.base + start, this.limit - start);
    this.size++;
  }

  /** Re-sizes to `slots`, keeping the entries unless the table is at its cap (then it starts empty). */
  private reset(slots: number): void {
    const oldKeys = this.keys;
    const oldExact = this.exact;
    const oldTail = this.tail;
    const keep = slots > oldKeys.length;
    this.keys = new Int32Array(slots).fill(-1);
    this.exact = new Array<Uint8Array>(slots).fill(NO_VIEW);
    this.tail = new Array<Uint8Array>(slots).fill(NO_VIEW);
    this.shift = 32 - Math.log2(slots);
    this.size = 0;
    if (!keep) return;
    const mask = slots - 1;
    for (let j = 0; j < oldKeys.length; j++) {
      const k = oldKeys[j];
      if (k === -1) continue;
      let i = Math.imul(k, 0x9e3779b1) >>> this.shift;
      while (this.keys[i] !== -1) i = (i + 1) & mask;
      this.keys[i] = k;
      this.exact[i] = oldExact[j];
      this.tail[i] = oldTail[j];
      this.size++;
    }
  }
}

let created = 0;
let flushed = 0;

class ViewTables {
  private readonly tables = new WeakMap<Uint8Array, StartTable>();
  /** The source of the previous call and its table (null: not cached yet). */
  private lastSrc: Uint8Array | null = null;
  private lastTable: StartTable | null = null;
  /** Consecutive calls with lastSrc. */
  private streak = 0;

  copy(dst: Uint8Array, dstOff: number, src: Uint8Array, srcOff: number, len: number): void {
    let table = this.lastTable;
    if (src !== this.lastSrc) {
      this.lastSrc = src;
      this.streak = 1;
      table = this.lastTable = this.tables.get(src) ?? null;
    } else if (table === null && ++this.streak >= STREAK_FOR_TABLE) {
      table = this.lastTable = new StartTable(src);
      this.tables.set(src, table);
      created++;
    }
    if (table === null) {
      dst.set(src.subarray(srcOff, srcOff + len), dstOff);
      return;
    }
    table.copy(dst, dstOff, srcOff, len);
  }
}

const shared = new ViewTables();

/**
 * dst[dstOff, dstOff+len) = src[srcOff, srcOff+len). The caller guarantees
 * both ranges are in bounds and do not overlap (the TCP buffers never copy
 * within one ring). Allocation-free once a source is known (see the
 * comment at the top).
 */
export function copyBytes(dst: Uint8Array, dstOff: number, src: Uint8Array, srcOff: number, len: number): void {
  if (len <= LOOP_MAX) {
    if (len <= 0) return;
    for (let i = 0; i < len; i++) dst[dstOff + i] = src[srcOff + i];
    return;
  }
  shared.copy(dst, dstOff, src, srcOff, len);
}

/** How many per-source tables exist and how often one was emptied (diagnostics). */
export function byteCopyStats(): { tables: number; flushed: number } {
  return { tables: created, flushed };
}
