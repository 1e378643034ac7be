/**
 * NewReno congestion control (RFC 5681 with RFC 6582 fast recovery), in
 * bytes. The connection reports events; this module owns cwnd, ssthresh and
 * the recovery point. SMSS is the peer's effective MSS, whatever the size of
 * the (TSO) segments we emit.
 *
 * Slow start grows cwnd by the bytes acknowledged (no RFC 3465 L limit: the
 * peer is a local kernel, not an ACK-splitting attacker, and its ACKs often
 * cover a whole 64 KiB GSO segment). Congestion avoidance adds one SMSS per
 * cwnd of acknowledged bytes, which is stretch-ACK proof.
 */
import { seqGe } from './seq.js';

export class NewReno {
  /** Starts as a small integer (not undefined) so V8 keeps the field a number that is updated in place. */
  cwnd = 0;
  ssthresh = Number.POSITIVE_INFINITY;
  inRecovery = false;
  /** SND.MAX when recovery started (RFC 6582 "recover"). */
  recover = 0;
  private acc = 0;

  constructor(
    public smss: number,
    private readonly initialSegments: number,
  ) {
    this.cwnd = initialSegments * smss;
  }

  /** Re-bases on the negotiated MSS (before any data was sent). */
  setMss(smss: number): void {
    this.smss = smss;
    this.cwnd = this.initialSegments * smss;
  }

  /** New data acknowledged outside recovery. */
  onAck(acked: number): void {
    if (this.cwnd < this.ssthresh) {
      this.cwnd = Math.min(this.cwnd + acked, Math.max(this.ssthresh, this.cwnd));
      return;
    }
    this.acc += acked;
    if (this.acc >= this.cwnd) {
      this.acc -= this.cwnd;
      this.cwnd += this.smss;
    }
  }

  /** Third duplicate ACK: RFC 6582 §3.2 step 2. flight = SND.MAX - SND.UNA. */
  enterRecovery(flight: number, sndMax: number): void {
    this.ssthresh = Math.max(Math.floor(flight / 2), 2 * this.smss);
    this.cwnd = this.ssthresh + 3 * this.smss;
    this.inRecovery = true;
    this.recover = sndMax;
    this.acc = 0;
  }

  /** Further duplicate ACKs inflate the window (step 3). */
  onDupAckInRecovery(): void {
    this.cwnd += this.smss;
  }

  /**
   * An ACK during recovery. Returns true for a partial ACK (the caller
   * retransmits the next hole), false when it covers `recover` (recovery ends).
   */
  onAckInRecovery(ack: number, acked: number, flight: number): boolean {
    if (seqGe(ack, this.recover)) {
      // Full acknowledgment (step 5, option 1 of RFC 6582 §3.2).
      this.cwnd = Math.min(this.ssthresh, Math.max(flight, this.smss) + this.smss);
      this.inRecovery = false;
      return false;
    }
    // Partial acknowledgment: deflate by the amount acked, add back one SMSS.
    this.cwnd = Math.max(this.smss, this.cwnd - acked + this.smss);
    return true;
  }

  /** Retransmission timeout (RFC 5681 §3.1 eq. 4, loss window of one segment). */
  onTimeout(flight: number): void {
    this.ssthresh = Math.max(Math.floor(flight / 2), 2 * this.smss);
    this.cwnd = this.smss;
    this.inRecovery = false;
    this.acc = 0;
  }
}
