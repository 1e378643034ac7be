/**
 * One budget for the TCP buffer memory of every connection of the process
 * beyond each connection's first rings, so that many connections whose
 * peers stop reading (or stop being read) cannot hold their maximum buffers
 * all at once: without it, 2,000 stalled connections hold 2,000 × 4 MiB.
 *
 * How it works
 * - A send ring (send-buffer.ts) reserves what it grows by beyond its
 *   initial size before growing; refused, it stays full, and the host socket
 *   is read no further (backpressure, as when the ring is at its maximum).
 * - A receive ring (receive-buffer.ts) reserves the window it advertises
 *   beyond 64 KiB before advertising it, as the window grows with use: a
 *   window is a promise to store what the peer sends into it, so it is
 *   reserved first, never taken back while the connection lives, and
 *   returned when the ring is recycled (the connection closed and its data
 *   taken). A connection the budget cannot serve keeps the window it has and
 *   works on, slower.
 * - Reservations are returned when a ring gives its memory back (release of
 *   an empty send ring, recycle of either), and, as a safety net, when a
 *   ring is garbage-collected without that (a FinalizationRegistry: a
 *   connection dropped by an owner that never recycled it must not shrink
 *   the budget for good).
 *
 * Bound: the process's TCP ring memory is at most connections × (initial
 * send ring + 64 KiB of receive window) + limit (+ the ring pool's spares).
 * `limit` is Infinity until a runtime sets it (unit tests and library code
 * that never configure it keep the unbudgeted behaviour).
 */

/** What one ring holds of the budget; kept apart from the ring so the finalizer can read it. */
export interface BudgetHold {
  bytes: number;
  /** The last reservation fell short (counted once until one succeeds in full). */
  short: boolean;
}

export class BufferBudget {
  /** Bytes that may be reserved in all; Infinity: no budget. */
  limit = Infinity;
  /** Bytes reserved now. */
  used = 0;
  /** Times a ring was held below what it asked for (once per ring until it gets what it asks). */
  refusals = 0;
  private readonly registry = new FinalizationRegistry<BudgetHold>((hold) => {
    this.used -= hold.bytes;
    hold.bytes = 0;
  });

  /** Whether any byte is left (a cheap test before asking). */
  get available(): number {
    return this.limit - this.used;
  }

  /**
   * Reserves up to `want` bytes for `hold` (owned by `owner`, whose
   * collection returns them); returns how many were granted (0..want).
   */
  reserve(owner: object, hold: BudgetHold, want: number): number {
    if (want <= 0) return 0;
    // No budget: nothing to account, nothing to register.
    if (this.limit === Infinity) return want;
    const n = Math.max(0, Math.min(want, this.limit - this.used));
    if (n < want) {
      if (!hold.short) this.refusals++;
      hold.short = true;
    } else hold.short = false;
    if (n === 0) return 0;
    if (hold.bytes === 0) this.registry.register(owner, hold, hold);
    hold.bytes += n;
    this.used += n;
    return n;
  }

  /** Returns everything `hold` has. */
  returnAll(hold: BudgetHold): void {
    hold.short = false;
    if (hold.bytes === 0) return;
    this.used -= hold.bytes;
    hold.bytes = 0;
    this.registry.unregister(hold);
  }

  stats(): { limitBytes: number; usedBytes: number; refusals: number } {
    return { limitBytes: this.limit === Infinity ? -1 : this.limit, usedBytes: this.used, refusals: this.refusals };
  }
}

/** The process's budget (as ring-pool.ts's pool): the runtime sets its limit. */
export const tcpBufferBudget = new BufferBudget();
