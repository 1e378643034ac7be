/**
 * Timers and loss recovery of a TCP connection: `pollAt`/`poll`, the
 * retransmission timeout (RFC 6298), zero-window probes, TIME-WAIT and
 * FIN-WAIT-2 expiry, RTT samples, and what an ACK does to the sender
 * (NewReno fast retransmit and recovery, RFC 6582; SACK, RFC 2018). Methods
 * of the connection object (see connection-core.ts for the class chain).
 *
 * How it works
 * - Timers are deadlines (absolute ms, Infinity when off) compared in
 *   `poll`; `pollAt` is the earliest of them (0 when output is pending).
 * - RTO: go-back-N from SND.UNA with cwnd cut to one segment; a second
 *   expiry in a row forgets the peer's SACKs (it may have reneged). SYN and
 *   SYN-ACK have their own retry limit. Giving up resets the peer.
 * - Persist: Linux-style probes with an already acknowledged sequence number,
 *   so the peer answers with its window; backed off like the RTO.
 * - RTT: timestamps when negotiated, else one timed segment at a time that
 *   was never retransmitted (Karn).
 * - Three duplicate ACKs enter recovery and resend the first hole; a partial
 *   ACK resends the next one.
 */
import { TCP_ACK, type TcpOptions } from '../wire/tcp.js';
import { seqAdd, seqDiff, seqGe, seqLt } from './seq.js';
import { EV_SEND_SPACE, INF, type TcpSegmentIn } from './connection-core.js';
import { TcpConnectionOutput } from './connection-output.js';

export abstract class TcpConnectionTimers extends TcpConnectionOutput {
  pollAt(): number {
    if (this.state === 'CLOSED') return INF;
    if (this.outputPending || this.ackNow) return 0;
    let t = this.rtoAt;
    if (this.persistAt < t) t = this.persistAt;
    if (this.ackAt < t) t = this.ackAt;
    if (this.timeWaitAt < t) t = this.timeWaitAt;
    if (this.state === 'FIN-WAIT-2') {
      const f = this.lastPeerSegment + this.config.finWait2Ms;
      if (f < t) t = f;
    }
    return t;
  }

  poll(now: number): void {
    if (this.state === 'CLOSED') return;
    if (now >= this.timeWaitAt) {
      this.close('normal');
      this.fire();
      return;
    }
    if (this.state === 'FIN-WAIT-2' && now >= this.lastPeerSegment + this.config.finWait2Ms) {
      // The peer never closed its side: give up on it (slirp leaks these).
      this.emitRst(this.sndNxt, this.rcvNxt, true);
      this.close('timeout');
      this.fire();
      return;
    }
    if (now >= this.rtoAt) this.onRetransmitTimeout(now);
    if (!this.isClosed() && now >= this.persistAt) this.onPersistTimeout(now);
    if (!this.isClosed() && now >= this.ackAt) this.ackNow = true;
    if (!this.isClosed() && (this.outputPending || this.ackNow)) this.output(now);
    this.fire();
  }

  /** SEG.ACK advanced SND.UNA. */
  protected onNewAck(seg: TcpSegmentIn, now: number): void {
    // SEG.ACK from its field at each use, not a local (see inputSynchronized).
    const acked = seqDiff(this.segAck, this.sndUna);
    const dataAcked = Math.max(0, Math.min(seqDiff(this.segAck, this.sndBufSeq), this.sendBuf.length));
    if (dataAcked > 0) {
      this.sendBuf.ack(dataAcked);
      this.sndBufSeq = seqAdd(this.sndBufSeq, dataAcked);
      this.events |= EV_SEND_SPACE;
    }
    const flightBefore = seqDiff(this.sndMax, this.sndUna);
    this.sndUna = this.segAck;
    if (seqLt(this.sndNxt, this.segAck)) this.sndNxt = this.segAck;
    if (this.sacked.count > 0) this.sacked.advance(this.segAck);
    // RTT: timestamps echo the transmission that is acknowledged; otherwise
    // only the one timed, never-retransmitted segment counts (Karn).
    if (this.tsOk && seg.options.tsPresent && seg.options.tsEcr !== 0) this.rttFromTs(seg.options, now);
    else if (this.rttTime >= 0 && seqGe(this.segAck, this.rttSeq)) {
      this.rto.sample(now - this.rttTime);
      this.rttTime = -1;
    }
    this.retries = 0;
    this.dupAcks = 0;
    if (this.cc.inRecovery) {
      if (this.cc.onAckInRecovery(this.segAck, acked, seqDiff(this.sndMax, this.segAck))) {
        // Partial ACK: the next hole is lost too; resend it now (RFC 6582 §3.2 step 5).
        this.retransmitFirst(now);
      }
    } else {
      this.cc.onAck(Math.min(acked, flightBefore));
    }
    // RFC 6298 §5.2/5.3: stop the timer when all is acknowledged, else restart it.
    this.rtoAt = this.sndUna === this.sndMax ? INF : now + this.rto.timeout;
    this.outputPending = true;
  }

  protected onDupAck(now: number): void {
    this.dupAcks++;
    this.counters.dupAcks++;
    if (this.cc.inRecovery) {
      this.cc.onDupAckInRecovery();
      this.outputPending = true;
    } else if (this.dupAcks === 3) {
      this.cc.enterRecovery(seqDiff(this.sndMax, this.sndUna), this.sndMax);
      this.counters.fastRetransmits++;
      this.rttTime = -1;
      this.retransmitFirst(now);
    }
  }

  /** Takes the options, not TSecr itself: a uint32 argument would be boxed. */
  protected rttFromTs(o: TcpOptions, now: number): void {
    const rtt = ((this.tsClock(now) - o.tsEcr) | 0);
    if (rtt >= 0 && rtt < this.config.rtoMaxMs * 4) this.rto.sample(rtt);
  }

  protected onRetransmitTimeout(now: number): void {
    const synPhase = this.state === 'SYN-SENT' || this.state === 'SYN-RECEIVED';
    const limit = synPhase ? this.config.maxSynRetransmits : this.config.maxRetransmits;
    if (this.retries >= limit) {
      this.giveUp();
      return;
    }
    this.retries++;
    this.counters.rtoExpiries++;
    this.rto.expired();
    this.rttTime = -1;
    if (synPhase) {
      this.counters.retransmits++;
      this.sendSyn(now, this.state === 'SYN-RECEIVED', true);
      return;
    }
    this.cc.onTimeout(seqDiff(this.sndMax, this.sndUna));
    this.dupAcks = 0;
    // A second expiry in a row may mean the peer reneged on its SACKs (RFC 2018 §8): resend everything.
    if (this.retries > 1) this.sacked.clear();
    // Go back to SND.UNA; output() resends as the (now one-segment) cwnd allows.
    this.sndNxt = this.sndUna;
    this.rtoAt = now + this.rto.timeout;
    this.outputPending = true;
  }

  protected onPersistTimeout(now: number): void {
    if (this.persistUnanswered >= this.config.maxRetransmits) {
      this.giveUp();
      return;
    }
    this.persistUnanswered++;
    this.counters.windowProbes++;
    // An already acknowledged sequence number: the peer must answer with an ACK carrying its window.
    this.out.seq = seqAdd(this.sndUna, -1);
    this.emitSegment(TCP_ACK, null, 0, now);
    this.persistBackoff++;
    this.persistAt = now + this.persistInterval();
  }

  protected giveUp(): void {
    if (this.state !== 'SYN-SENT') this.emitRst(this.sndNxt, this.rcvNxt, true);
    this.close('timeout');
  }
}
