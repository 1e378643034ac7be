/**
 * Drives the sans-IO engines' timers. Each engine says when it next needs
 * to run (pollAt, in the runtime's monotonic milliseconds; Infinity for never)
 * and does its timed work in poll(now). One Node timer is armed for the
 * earliest deadline and moved only when a deadline comes earlier, so busy
 * traffic does not create timers.
 */

export interface Pollable {
  pollAt(): number;
  poll(now: number): void;
}

export class Scheduler {
  private readonly engines: Pollable[] = [];
  private timer: NodeJS.Timeout | null = null;
  private armedAt = Infinity;
  private closed = false;

  constructor(
    private readonly clock: () => number,
    /** Runs after every poll round, e.g. to flush the ports the engines wrote to. */
    private readonly afterPoll: (now: number) => void,
  ) {}

  add(engine: Pollable): void {
    this.engines.push(engine);
    this.kick();
  }

  /** Re-reads deadlines; call after input that may have moved them. */
  kick(): void {
    if (this.closed) return;
    let next = Infinity;
    for (const e of this.engines) next = Math.min(next, e.pollAt());
    if (next >= this.armedAt) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.armedAt = next;
    if (next === Infinity) {
      this.timer = null;
      return;
    }
    this.timer = setTimeout(() => this.fire(), Math.max(0, Math.ceil(next - this.clock())));
  }

  private fire(): void {
    this.timer = null;
    this.armedAt = Infinity;
    const now = this.clock();
    for (const e of this.engines) if (e.pollAt() <= now) e.poll(now);
    this.afterPoll(now);
    this.kick();
  }

  close(): void {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}
