/**
 * The sender's record of SACKed data (RFC 2018): sorted, disjoint sequence
 * ranges [left, right) above SND.UNA that the peer reported holding. The
 * sender skips them when it retransmits, so a loss followed by SACKs costs
 * one retransmitted hole, not everything after it. Capped at `max` ranges;
 * a block that does not fit is forgotten (the data is then retransmitted,
 * which is merely wasteful). SACKs are advisory (RFC 2018 §8: the receiver
 * may renege), so data stays in the send buffer until cumulatively
 * acknowledged, and the connection clears the board after a second RTO in a
 * row in case the peer did renege.
 */
import { seqGe, seqGt, seqLe, seqLt, seqMax, seqMin } from './seq.js';

/** Shared by every board that never saw a block (most connections never do). */
const NONE = new Float64Array(0);

export class SackScoreboard {
  // Allocated on the first block: a connection costs no typed arrays until it sees loss.
  private lefts = NONE;
  private rights = NONE;
  count = 0;

  constructor(readonly max = 16) {}

  left(i: number): number {
    return this.lefts[i];
  }
  right(i: number): number {
    return this.rights[i];
  }

  /** Adds a block, clipped to (una, sndMax]; ignores empty or bogus ones. */
  add(left: number, right: number, una: number, sndMax: number): void {
    let l = seqMax(left, una);
    let r = seqMin(right, sndMax);
    if (!seqLt(l, r)) return;
    if (this.lefts === NONE) {
      this.lefts = new Float64Array(this.max);
      this.rights = new Float64Array(this.max);
    }
    const L = this.lefts;
    const R = this.rights;
    let i = 0;
    while (i < this.count && seqLt(R[i], l)) i++;
    let j = i;
    while (j < this.count && seqLe(L[j], r)) j++;
    if (i === j) {
      if (this.count >= this.max) return;
      for (let k = this.count; k > i; k--) {
        L[k] = L[k - 1];
        R[k] = R[k - 1];
      }
      L[i] = l;
      R[i] = r;
      this.count++;
      return;
    }
    l = seqMin(L[i], l);
    r = seqMax(R[j - 1], r);
    L[i] = l;
    R[i] = r;
    const removed = j - i - 1;
    if (removed > 0) {
      for (let k = i + 1; k + removed < this.count; k++) {
        L[k] = L[k + removed];
        R[k] = R[k + removed];
      }
      this.count -= removed;
    }
  }

  /** Forgets what is now cumulatively acknowledged. */
  advance(una: number): void {
    let drop = 0;
    while (drop < this.count && seqLe(this.rights[drop], una)) drop++;
    if (drop > 0) {
      for (let k = drop; k < this.count; k++) {
        this.lefts[k - drop] = this.lefts[k];
        this.rights[k - drop] = this.rights[k];
      }
      this.count -= drop;
    }
    if (this.count > 0 && seqLt(this.lefts[0], una)) this.lefts[0] = una;
  }

  /** If seq lies in a SACKed range, the end of that range; else seq. */
  skip(seq: number): number {
    for (let k = 0; k < this.count; k++) {
      if (seqGe(seq, this.lefts[k]) && seqLt(seq, this.rights[k])) return this.rights[k];
    }
    return seq;
  }

  /** Bytes from seq up to the next SACKed range (Infinity if none follows). */
  gapAfter(seq: number): number {
    for (let k = 0; k < this.count; k++) {
      if (seqGt(this.lefts[k], seq)) return (this.lefts[k] - seq) >>> 0;
    }
    return Number.POSITIVE_INFINITY;
  }

  /** SACKed bytes below seq (they are not in flight: RFC 6675's pipe leaves them out). */
  bytesBelow(seq: number): number {
    let t = 0;
    for (let k = 0; k < this.count; k++) {
      if (!seqLt(this.lefts[k], seq)) break;
      t += (seqMin(this.rights[k], seq) - this.lefts[k]) >>> 0;
    }
    return t;
  }

  /** SACKed bytes in total. */
  bytes(): number {
    let t = 0;
    for (let k = 0; k < this.count; k++) t += (this.rights[k] - this.lefts[k]) >>> 0;
    return t;
  }

  clear(): void {
    this.count = 0;
  }
}
