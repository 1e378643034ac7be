/**
 * Deadlines of many flows in one min-heap, so the runtime needs a single
 * timer however many connections are open.
 *
 * How it works: `schedule(id, at)` pushes (at, id) only when `at` is earlier
 * than what the flow already has queued; later deadlines are not pushed at
 * all (a flow whose RTO moves later on every ACK costs nothing). Entries go
 * stale when a flow's deadline moves or the flow is removed; `popDue` skips
 * them by comparing with the flow's current scheduled time. A stale entry
 * leaves the heap at the latest when its own time passes, so the heap holds at
 * most one live entry per flow plus the stale ones of the recent past.
 *
 * Storage is two typed arrays that double when full: no allocation per call.
 */

export class DeadlineQueue {
  private times: Float64Array;
  private ids: Int32Array;
  private n = 0;
  /** Per flow id: the earliest time queued for it (Infinity when none). */
  private scheduled: Float64Array;

  constructor(initialCapacity = 256) {
    this.times = new Float64Array(initialCapacity);
    this.ids = new Int32Array(initialCapacity);
    this.scheduled = new Float64Array(initialCapacity).fill(Infinity);
  }

  get size(): number {
    return this.n;
  }

  /** Earliest queued time (may be stale), Infinity when empty. */
  peekTime(): number {
    return this.n === 0 ? Infinity : this.times[0];
  }

  /** The time queued for `id`, or Infinity. */
  scheduledAt(id: number): number {
    return id < this.scheduled.length ? this.scheduled[id] : Infinity;
  }

  /** Makes sure `id` is popped no later than `at`. */
  schedule(id: number, at: number): void {
    if (at === Infinity || Number.isNaN(at)) return;
    if (id >= this.scheduled.length) this.growScheduled(id + 1);
    if (at >= this.scheduled[id]) return;
    this.scheduled[id] = at;
    this.push(at, id);
  }

  /** Forgets `id` (its heap entries become stale). */
  cancel(id: number): void {
    if (id < this.scheduled.length) this.scheduled[id] = Infinity;
  }

  /**
   * Pops the next flow whose deadline is <= now and returns its id, or -1.
   * The flow is unscheduled: the caller polls it and schedules it again.
   */
  popDue(now: number): number {
    while (this.n > 0 && this.times[0] <= now) {
      const at = this.times[0];
      const id = this.ids[0];
      this.removeTop();
      if (this.scheduled[id] === at) {
        this.scheduled[id] = Infinity;
        return id;
      }
    }
    return -1;
  }

  private push(at: number, id: number): void {
    if (this.n === this.times.length) {
      const t = new Float64Array(this.n * 2);
      t.set(this.times);
      this.times = t;
      const i = new Int32Array(this.n * 2);
      i.set(this.ids);
      this.ids = i;
    }
    let k = this.n++;
    while (k > 0) {
      const parent = (k - 1) >> 1;
      if (this.times[parent] <= at) break;
      this.times[k] = this.times[parent];
      this.ids[k] = this.ids[parent];
      k = parent;
    }
    this.times[k] = at;
    this.ids[k] = id;
  }

  private removeTop(): void {
    const last = --this.n;
    if (last === 0) return;
    const at = this.times[last];
    const id = this.ids[last];
    let k = 0;
    for (;;) {
      let child = 2 * k + 1;
      if (child >= last) break;
      if (child + 1 < last && this.times[child + 1] < this.times[child]) child++;
      if (this.times[child] >= at) break;
      this.times[k] = this.times[child];
      this.ids[k] = this.ids[child];
      k = child;
    }
    this.times[k] = at;
    this.ids[k] = id;
  }

  private growScheduled(min: number): void {
    let cap = this.scheduled.length * 2;
    while (cap < min) cap *= 2;
    const s = new Float64Array(cap).fill(Infinity);
    s.set(this.scheduled);
    this.scheduled = s;
  }
}
