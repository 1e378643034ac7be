/**
 * Retransmission timeout estimator (RFC 6298). SRTT and RTTVAR follow §2;
 * the connection feeds only samples that are unambiguous (Karn: never from a
 * retransmitted segment unless timestamps identify the transmission). Each
 * expiry doubles the timeout (§5.5) up to `max`; a new sample resets the
 * backoff. The floor is Linux's 200 ms rather than RFC 6298's 1 s (see
 * config.ts rtoMinMs for why).
 */

/** Clock granularity G of RFC 6298 §2: `now` is in milliseconds. */
const GRANULARITY_MS = 1;

export class RtoEstimator {
  /** Smoothed RTT in ms, -1 before the first sample. */
  srtt = -1;
  rttvar = 0;
  /** Timeout before backoff. */
  base = 0;
  /** Expiries since the last sample (exponent of the backoff). */
  backoff = 0;
  /**
   * The timeout to arm now (what current() returns), kept up to date so the
   * connection reads a field per segment instead of calling for a fractional
   * number, which V8 would box.
   */
  timeout = 0;

  constructor(
    private readonly initialMs: number,
    private readonly minMs: number,
    private readonly maxMs: number,
  ) {
    this.base = initialMs;
    this.timeout = this.compute();
  }

  /** Feeds one RTT measurement (ms). */
  sample(rtt: number): void {
    const r = Math.max(0, rtt);
    if (this.srtt < 0) {
      this.srtt = r;
      this.rttvar = r / 2;
    } else {
      // beta = 1/4 and alpha = 1/8, RTTVAR first since it uses the old SRTT.
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - r);
      this.srtt = 0.875 * this.srtt + 0.125 * r;
    }
    this.base = Math.min(this.maxMs, Math.max(this.minMs, this.srtt + Math.max(GRANULARITY_MS, 4 * this.rttvar)));
    this.backoff = 0;
    this.timeout = this.compute();
  }

  /** The timeout to arm now, backoff included. */
  current(): number {
    return this.timeout;
  }

  /** An expiry: the next timeout doubles (capped at max). */
  expired(): void {
    if (this.base * (1 << this.backoff) < this.maxMs) this.backoff++;
    this.timeout = this.compute();
  }

  reset(): void {
    this.srtt = -1;
    this.rttvar = 0;
    this.base = this.initialMs;
    this.backoff = 0;
    this.timeout = this.compute();
  }

  private compute(): number {
    return Math.min(this.maxMs, this.base * (1 << this.backoff));
  }
}
