/**
 * Out-of-order bookkeeping for the receiver: a sorted list of disjoint,
 * non-adjacent byte ranges [start, end), as offsets from the first byte not
 * yet received in order (RCV.NXT). The bytes themselves live in the receive
 * ring at those offsets; this only remembers which are there.
 *
 * The byte total is bounded by the window (the caller only adds in-window
 * ranges); the number of ranges is capped at `maxRanges` so a peer sending
 * many tiny disjoint pieces cannot make the bookkeeping expensive. In-order
 * data (offset 0) is always accepted, even at the cap.
 */
/** Shared by every assembler that never held a range out of order (most never do). */
const NONE = new Float64Array(0);

export class Assembler {
  // Allocated on the first out-of-order range: in-order data needs no bookkeeping.
  private starts = NONE;
  private ends = NONE;
  count = 0;
  /** Start and end of the range touched by the latest add (for the first SACK block), -1 if none. */
  lastStart = -1;
  lastEnd = -1;

  constructor(readonly maxRanges: number) {}

  start(i: number): number {
    return this.starts[i];
  }
  end(i: number): number {
    return this.ends[i];
  }

  /** Records [start, start+len). Returns false (and changes nothing) when it would need a range beyond the cap. */
  add(start: number, len: number): boolean {
    const end = start + len;
    if (this.starts === NONE) {
      this.starts = new Float64Array(this.maxRanges + 1);
      this.ends = new Float64Array(this.maxRanges + 1);
    }
    const s = this.starts;
    const e = this.ends;
    let i = 0;
    while (i < this.count && e[i] < start) i++;
    let j = i;
    while (j < this.count && s[j] <= end) j++;
    if (i === j) {
      const limit = start === 0 ? this.maxRanges + 1 : this.maxRanges;
      if (this.count >= limit) return false;
      for (let k = this.count; k > i; k--) {
        s[k] = s[k - 1];
        e[k] = e[k - 1];
      }
      s[i] = start;
      e[i] = end;
      this.count++;
    } else {
      const ns = Math.min(s[i], start);
      const ne = Math.max(e[j - 1], end);
      s[i] = ns;
      e[i] = ne;
      const removed = j - i - 1;
      if (removed > 0) {
        for (let k = i + 1; k + removed < this.count; k++) {
          s[k] = s[k + removed];
          e[k] = e[k + removed];
        }
        this.count -= removed;
      }
    }
    this.lastStart = s[i];
    this.lastEnd = e[i];
    return true;
  }

  /**
   * If a range starts at offset 0, removes it, shifts the others down by its
   * length and returns that length (bytes now in order); else 0.
   */
  takeFront(): number {
    if (this.count === 0 || this.starts[0] !== 0) return 0;
    const n = this.ends[0];
    for (let k = 1; k < this.count; k++) {
      this.starts[k - 1] = this.starts[k] - n;
      this.ends[k - 1] = this.ends[k] - n;
    }
    this.count--;
    if (this.lastStart >= 0) {
      this.lastStart -= n;
      this.lastEnd -= n;
      if (this.lastEnd <= 0) this.lastStart = this.lastEnd = -1;
    }
    return n;
  }

  /** Bytes held out of order. */
  bytes(): number {
    let t = 0;
    for (let k = 0; k < this.count; k++) t += this.ends[k] - this.starts[k];
    return t;
  }

  clear(): void {
    this.count = 0;
    this.lastStart = this.lastEnd = -1;
  }
}
