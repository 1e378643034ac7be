/**
 * MAC learning table: which bridge port a source MAC was last seen on.
 *
 * How it works
 * - A fixed pool of `maxEntries` entries lives in parallel typed arrays
 *   (mac, port, lastSeen, static flag, prev/next links), so learning and
 *   looking up never allocate. A slot with port < 0 is free; free slots are
 *   chained through `next`.
 * - Dynamic entries sit on an intrusive doubly linked list ordered by the time
 *   they were last seen as a source: head = most recent, tail = oldest. With a
 *   clock that never goes back, lastSeen falls monotonically from head to
 *   tail, so both eviction (table full) and the sweep touch only the tail.
 * - Static entries are never on that list: that is what keeps them from being
 *   evicted or aged. Learning does not move a static MAC to another port.
 * - An open-addressing hash index (power-of-two capacity, at least twice the
 *   pool, so the load factor stays <= 1/2 and probe runs stay short) maps a
 *   MAC to its slot. Linear probing; removal shifts later members of the probe
 *   run back instead of leaving tombstones, so lookups never slow down as the
 *   table churns and an empty bucket always ends a search.
 * - An entry is expired once now - lastSeen >= agingMs. Lookups treat an
 *   expired entry as absent and remove it on the spot; `sweep` removes the rest
 *   from the tail, so a stale entry never outlives agingMs + one sweep period.
 * - The data path uses learnAt/lookupAt, which read the MAC from frame bytes
 *   and pass it on as two 24-bit integers (see "hash index" below for why);
 *   learn/lookup taking a number are for the control path and tests.
 */

const EMPTY = -1;
const TWO_24 = 0x100_0000;

export interface MacTableEntry {
  mac: number;
  portId: number;
  isStatic: boolean;
  lastSeen: number;
}

export class MacTable {
  readonly maxEntries: number;
  readonly agingMs: number;
  /** Dynamic entries pushed out because the table was full. */
  evictions = 0;
  /** Learn attempts refused because every slot holds a static entry. */
  refused = 0;

  private readonly macs: Float64Array;
  private readonly ports: Int32Array;
  private readonly seen: Float64Array;
  private readonly statics: Uint8Array;
  private readonly prev: Int32Array;
  private readonly next: Int32Array;
  private head = EMPTY;
  private tail = EMPTY;
  private freeHead: number;
  private count = 0;
  private dynamicCount = 0;

  private readonly mask: number;
  private readonly bucketKeys: Float64Array;
  private readonly bucketEntries: Int32Array;

  constructor(maxEntries: number, agingMs: number) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1) {
      throw new RangeError(`MAC table size must be a positive integer, got ${maxEntries}`);
    }
    this.maxEntries = maxEntries;
    this.agingMs = agingMs;
    this.macs = new Float64Array(maxEntries);
    this.ports = new Int32Array(maxEntries).fill(EMPTY);
    this.seen = new Float64Array(maxEntries);
    this.statics = new Uint8Array(maxEntries);
    this.prev = new Int32Array(maxEntries).fill(EMPTY);
    this.next = new Int32Array(maxEntries);
    for (let i = 0; i < maxEntries; i++) this.next[i] = i + 1 < maxEntries ? i + 1 : EMPTY;
    this.freeHead = 0;

    let buckets = 2;
    while (buckets < 2 * maxEntries) buckets *= 2;
    this.mask = buckets - 1;
    this.bucketKeys = new Float64Array(buckets);
    this.bucketEntries = new Int32Array(buckets).fill(EMPTY);
  }

  get size(): number {
    return this.count;
  }

  /** Entries that can age (not static). */
  get dynamicSize(): number {
    return this.dynamicCount;
  }

  /** When the oldest dynamic entry expires; Infinity when there is none. */
  nextExpiry(): number {
    return this.tail === EMPTY ? Infinity : this.seen[this.tail] + this.agingMs;
  }

  /** Records that `mac` was seen as a source on `portId` at `now`. */
  learn(mac: number, portId: number, now: number): void {
    const hi = Math.floor(mac / TWO_24);
    this.learnParts(hi, mac - hi * TWO_24, portId, now);
  }

  /** learn() for the MAC stored at buf[off, off+6): the data path's entry point. */
  learnAt(buf: Uint8Array, off: number, portId: number, now: number): void {
    this.learnParts(
      (buf[off] << 16) | (buf[off + 1] << 8) | buf[off + 2],
      (buf[off + 3] << 16) | (buf[off + 4] << 8) | buf[off + 5],
      portId,
      now,
    );
  }

  /** The port `mac` lives on, or -1 when unknown or expired. */
  lookup(mac: number, now: number): number {
    const hi = Math.floor(mac / TWO_24);
    return this.lookupParts(hi, mac - hi * TWO_24, now);
  }

  /** lookup() for the MAC stored at buf[off, off+6). */
  lookupAt(buf: Uint8Array, off: number, now: number): number {
    return this.lookupParts(
      (buf[off] << 16) | (buf[off + 1] << 8) | buf[off + 2],
      (buf[off + 3] << 16) | (buf[off + 4] << 8) | buf[off + 5],
      now,
    );
  }

  private learnParts(hi: number, lo: number, portId: number, now: number): void {
    const e = this.find(hi, lo);
    if (e !== EMPTY) {
      if (this.statics[e] === 1) return;
      this.ports[e] = portId;
      this.seen[e] = now;
      if (this.head !== e) {
        this.unlink(e);
        this.pushHead(e);
      }
      return;
    }
    const slot = this.allocate();
    if (slot === EMPTY) {
      this.refused++;
      return;
    }
    this.macs[slot] = hi * TWO_24 + lo;
    this.ports[slot] = portId;
    this.seen[slot] = now;
    this.statics[slot] = 0;
    this.pushHead(slot);
    this.dynamicCount++;
    this.insertIndex(hi, lo, slot);
  }

  private lookupParts(hi: number, lo: number, now: number): number {
    const e = this.find(hi, lo);
    if (e === EMPTY) return -1;
    if (this.statics[e] === 0 && now - this.seen[e] >= this.agingMs) {
      this.remove(e);
      return -1;
    }
    return this.ports[e];
  }

  /**
   * Pins `mac` to `portId`: never aged, never evicted. Returns false only when
   * the table is full of static entries.
   */
  addStatic(mac: number, portId: number): boolean {
    const hi = Math.floor(mac / TWO_24);
    const lo = mac - hi * TWO_24;
    let e = this.find(hi, lo);
    if (e === EMPTY) {
      e = this.allocate();
      if (e === EMPTY) return false;
      this.macs[e] = mac;
      this.insertIndex(hi, lo, e);
    } else if (this.statics[e] === 0) {
      this.unlink(e);
      this.dynamicCount--;
    }
    this.ports[e] = portId;
    this.statics[e] = 1;
    this.seen[e] = 0;
    this.prev[e] = EMPTY;
    this.next[e] = EMPTY;
    return true;
  }

  /** Forgets `mac` whatever its kind; returns whether it was present. */
  delete(mac: number): boolean {
    const hi = Math.floor(mac / TWO_24);
    const e = this.find(hi, mac - hi * TWO_24);
    if (e === EMPTY) return false;
    this.remove(e);
    return true;
  }

  /** Forgets every MAC (static ones too) behind a port that is going away. */
  removePort(portId: number): number {
    let removed = 0;
    for (let e = 0; e < this.maxEntries; e++) {
      if (this.ports[e] === portId) {
        this.remove(e);
        removed++;
      }
    }
    return removed;
  }

  /** Removes expired dynamic entries, oldest first; returns how many. */
  sweep(now: number): number {
    let removed = 0;
    while (this.tail !== EMPTY && now - this.seen[this.tail] >= this.agingMs) {
      this.remove(this.tail);
      removed++;
    }
    return removed;
  }

  /** Snapshot for stats and debugging; allocates, keep it off the data path. */
  entries(): MacTableEntry[] {
    const out: MacTableEntry[] = [];
    for (let e = 0; e < this.maxEntries; e++) {
      if (this.ports[e] === EMPTY) continue;
      out.push({
        mac: this.macs[e],
        portId: this.ports[e],
        isStatic: this.statics[e] === 1,
        lastSeen: this.seen[e],
      });
    }
    return out;
  }

  clear(): void {
    for (let e = 0; e < this.maxEntries; e++) if (this.ports[e] !== EMPTY) this.remove(e);
  }

  // --- pool and LRU list ---

  /** A free slot, evicting the least recently seen dynamic entry if needed. */
  private allocate(): number {
    if (this.freeHead === EMPTY) {
      if (this.tail === EMPTY) return EMPTY;
      this.remove(this.tail);
      this.evictions++;
    }
    const slot = this.freeHead;
    this.freeHead = this.next[slot];
    this.count++;
    return slot;
  }

  private remove(e: number): void {
    const mac = this.macs[e];
    const hi = Math.floor(mac / TWO_24);
    this.removeIndex(hi, mac - hi * TWO_24);
    if (this.statics[e] === 0) {
      this.unlink(e);
      this.dynamicCount--;
    }
    this.ports[e] = EMPTY;
    this.statics[e] = 0;
    this.prev[e] = EMPTY;
    this.next[e] = this.freeHead;
    this.freeHead = e;
    this.count--;
  }

  private pushHead(e: number): void {
    this.prev[e] = EMPTY;
    this.next[e] = this.head;
    if (this.head !== EMPTY) this.prev[this.head] = e;
    this.head = e;
    if (this.tail === EMPTY) this.tail = e;
  }

  private unlink(e: number): void {
    const p = this.prev[e];
    const n = this.next[e];
    if (p !== EMPTY) this.next[p] = n;
    else this.head = n;
    if (n !== EMPTY) this.prev[n] = p;
    else this.tail = p;
    this.prev[e] = EMPTY;
    this.next[e] = EMPTY;
  }

  // --- hash index ---
  //
  // MACs travel between methods as two 24-bit halves. Small integers pass as
  // Smis, whereas a 48-bit double handed to a function V8 does not inline is
  // boxed in a fresh HeapNumber: an allocation per frame. Keys are stored
  // whole in a Float64Array.

  /** Mixes both halves: vendor prefixes repeat, the low bytes vary. */
  private home(hi: number, lo: number): number {
    let h = Math.imul(lo ^ Math.imul(hi, 0x9e3779b1), 0x85ebca6b);
    h ^= h >>> 15;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 13;
    return h & this.mask;
  }

  private find(hi: number, lo: number): number {
    const key = hi * TWO_24 + lo;
    let i = this.home(hi, lo);
    // The load factor keeps empty buckets around; the bound only guards the invariant.
    for (let n = 0; n <= this.mask; n++) {
      const e = this.bucketEntries[i];
      if (e === EMPTY) return EMPTY;
      if (this.bucketKeys[i] === key) return e;
      i = (i + 1) & this.mask;
    }
    return EMPTY;
  }

  private insertIndex(hi: number, lo: number, e: number): void {
    let i = this.home(hi, lo);
    for (let n = 0; this.bucketEntries[i] !== EMPTY && n <= this.mask; n++) i = (i + 1) & this.mask;
    this.bucketKeys[i] = hi * TWO_24 + lo;
    this.bucketEntries[i] = e;
  }

  private removeIndex(hi: number, lo: number): void {
    const mask = this.mask;
    const key = hi * TWO_24 + lo;
    let i = this.home(hi, lo);
    for (let n = 0; this.bucketKeys[i] !== key || this.bucketEntries[i] === EMPTY; n++) {
      if (this.bucketEntries[i] === EMPTY || n > mask) return;
      i = (i + 1) & mask;
    }
    // Backward shift: walk the rest of the run and pull back every member
    // whose home is not strictly between the hole and its current bucket
    // (cyclically), since a search for it would otherwise stop at the hole.
    let j = i;
    for (let n = 0; n < mask; n++) {
      j = (j + 1) & mask;
      const e = this.bucketEntries[j];
      if (e === EMPTY) break;
      const kj = this.bucketKeys[j];
      const khi = Math.floor(kj / TWO_24);
      const k = this.home(khi, kj - khi * TWO_24);
      const stays = i <= j ? i < k && k <= j : i < k || k <= j;
      if (stays) continue;
      this.bucketKeys[i] = kj;
      this.bucketEntries[i] = e;
      i = j;
    }
    this.bucketEntries[i] = EMPTY;
  }
}
