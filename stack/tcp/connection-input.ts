/**
 * Segment arrival for a TCP connection: the RFC 9293 §3.10.7 checks in their
 * order, one arm per check, and the state transitions they cause. Methods of
 * the connection object (see connection-core.ts for the class chain).
 *
 * How it works
 * - `input` reads SEG.SEQ and SEG.ACK once into fields (segSeq, segAck) and
 *   dispatches on the state: CLOSED drops, SYN-SENT completes an active open
 *   (§3.10.7.3), every other state is synchronized (§3.10.7.4).
 * - Sequence acceptability first, then RST (exact match only, else a
 *   challenge ACK, RFC 5961), SYN (challenge ACK), ACK (the handshake's, new
 *   data acknowledged, duplicates for fast retransmit, window updates guarded
 *   by SND.WL1/WL2), then text and FIN.
 * - Receive: in-order and out-of-order bytes share one ring (ReceiveBuffer);
 *   out-of-order bytes are bounded by the window and their ranges by
 *   config.oooMaxRanges. An out-of-order FIN is remembered until the hole
 *   fills. Every second full segment, a filled hole and anything out of order
 *   are ACKed at once; otherwise the ACK waits for the flush or the
 *   delayed-ACK timer.
 * - input emits only RSTs, fast retransmissions and a SYN-ACK resent for a
 *   repeated SYN; ACKs and data leave on the owner's flush.
 */
import { TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN } from '../wire/tcp.js';
import { seqAdd, seqDiff, seqGe, seqGt, seqLe, seqLt } from './seq.js';
import { EV_ESTABLISHED, EV_READABLE, INF, type TcpSegmentIn } from './connection-core.js';
import { TcpConnectionTimers } from './connection-timers.js';

export abstract class TcpConnectionInput extends TcpConnectionTimers {
  /** A segment from the peer. See the API summary in connection.ts. */
  input(seg: TcpSegmentIn, now: number): 'reopen' | null {
    this.counters.segmentsIn++;
    this.segSeq = seg.seq >>> 0;
    this.segAck = seg.ack >>> 0;
    let result: 'reopen' | null = null;
    switch (this.state) {
      case 'CLOSED':
        this.drop('closed');
        break;
      case 'SYN-SENT':
        this.lastActivity = this.lastPeerSegment = now;
        this.inputSynSent(seg, now);
        break;
      default:
        this.lastActivity = this.lastPeerSegment = now;
        result = this.inputSynchronized(seg, now);
        break;
    }
    this.fire();
    return result;
  }

  /** RFC 9293 §3.10.7.3. */
  protected inputSynSent(seg: TcpSegmentIn, now: number): void {
    const f = seg.flags;
    const hasAck = (f & TCP_ACK) !== 0;
    // First: an ACK must acknowledge our SYN and nothing beyond it.
    if (hasAck && (seqLe(seg.ack, this.iss) || seqGt(seg.ack, this.sndNxt))) {
      if ((f & TCP_RST) === 0) this.emitRst(seg.ack, 0, false);
      this.drop('bad-ack');
      return;
    }
    // Second: a RST is believed only with an acceptable ACK; it refuses our open.
    if ((f & TCP_RST) !== 0) {
      if (hasAck) this.close('refused');
      else this.drop('rst-without-ack');
      return;
    }
    // Fourth: the SYN (third, security, does not apply).
    if ((f & TCP_SYN) === 0) {
      this.drop('syn-sent-no-syn');
      return;
    }
    this.irs = seg.seq >>> 0;
    this.rcvNxt = seqAdd(this.irs, 1);
    this.negotiate(seg.options);
    if (hasAck) {
      // SYN-ACK: the handshake completes; our ACK (and any queued data) goes out on flush.
      this.updateTsRecent(seg);
      if (this.tsOk && seg.options.tsPresent && seg.options.tsEcr !== 0) this.rttFromTs(seg.options, now);
      else if (this.retries === 0) this.rto.sample(now - this.synSentAt);
      this.sndUna = seg.ack;
      this.sndWnd = seg.window;
      this.maxSndWnd = this.sndWnd;
      this.sndWl1 = seg.seq;
      this.sndWl2 = seg.ack;
      this.retries = 0;
      this.rtoAt = INF;
      this.state = 'ESTABLISHED';
      this.events |= EV_ESTABLISHED;
      if (this.finQueued) this.state = 'FIN-WAIT-1';
      this.ackNow = true;
      this.outputPending = true;
      return;
    }
    // Simultaneous open: answer with SYN-ACK and wait for the ACK.
    this.sndWnd = seg.window;
    this.sndWl1 = seg.seq;
    this.state = 'SYN-RECEIVED';
    this.sendSyn(now, true);
  }

  /** RFC 9293 §3.10.7.4, in its order; one arm per check. */
  protected inputSynchronized(seg: TcpSegmentIn, now: number): 'reopen' | null {
    const f = seg.flags;
    // SEG.SEQ and SEG.ACK are read from their fields at each use, never held in
    // locals: a local that reaches a call TurboFan did not inline (a cold
    // branch without feedback is enough) gets boxed where it is defined, i.e.
    // on every segment, once it lies above 2^30.
    let dataOff = seg.payloadOffset;
    let dataLen = seg.payloadLength;
    const segLen = dataLen + ((f & TCP_SYN) !== 0 ? 1 : 0) + ((f & TCP_FIN) !== 0 ? 1 : 0);
    const wnd = this.recvBuf.free();

    // TIME-WAIT and a new SYN beyond everything of this incarnation: the 4-tuple is reused (RFC 9293 §3.6.1).
    if (this.state === 'TIME-WAIT' && (f & (TCP_SYN | TCP_ACK | TCP_RST)) === TCP_SYN && seqGt(this.segSeq, this.rcvNxt)) {
      this.close('normal');
      return 'reopen';
    }
    // SYN-RECEIVED and the peer retransmits its SYN: our SYN-ACK was lost.
    if (this.state === 'SYN-RECEIVED' && (f & (TCP_SYN | TCP_ACK | TCP_RST)) === TCP_SYN && this.segSeq === this.irs) {
      this.counters.retransmits++;
      this.sendSyn(now, true, true);
      return null;
    }

    // First: sequence acceptability. Anything overlapping the window is
    // acceptable, and so is a segment exactly at RCV.NXT when the window is
    // zero: its ACK, window and RST are valid even though its data is not.
    let acceptable: boolean;
    if (segLen === 0) acceptable = wnd === 0 ? this.segSeq === this.rcvNxt : this.inWindow(this.segSeq, wnd);
    else if (wnd === 0) acceptable = this.segSeq === this.rcvNxt;
    else acceptable = this.inWindow(this.segSeq, wnd) || this.inWindow(seqAdd(this.segSeq, segLen - 1), wnd);
    if (!acceptable) {
      if ((f & TCP_RST) !== 0) {
        this.drop('rst-out-of-window');
        return null;
      }
      // Old duplicate or beyond the window: re-ACK (this is the duplicate ACK
      // that drives the peer's fast retransmit, and re-ACKs a FIN in TIME-WAIT).
      if (this.state === 'TIME-WAIT' && (f & TCP_FIN) !== 0) this.timeWaitAt = now + this.config.timeWaitMs;
      this.drop('bad-seq');
      this.ackNow = true;
      return null;
    }

    // Second: RST. Only an exact match resets (RFC 5961 §3.2); an in-window
    // one gets a challenge ACK so a blind attacker must guess RCV.NXT.
    if ((f & TCP_RST) !== 0) {
      if (this.segSeq !== this.rcvNxt) {
        this.counters.challengeAcks++;
        this.drop('rst-challenged');
        this.ackNow = true;
        return null;
      }
      this.close(this.state === 'TIME-WAIT' ? 'normal' : 'reset');
      return null;
    }

    // Fourth: a SYN in a synchronized state is answered with a challenge ACK (RFC 5961 §4.2).
    if ((f & TCP_SYN) !== 0) {
      this.counters.challengeAcks++;
      this.drop('syn-challenged');
      this.ackNow = true;
      return null;
    }

    // Fifth: ACK. Segments without one are dropped.
    if ((f & TCP_ACK) === 0) {
      this.drop('no-ack');
      return null;
    }
    this.persistUnanswered = 0;
    this.updateTsRecent(seg);
    if (this.state === 'SYN-RECEIVED') {
      // The ACK of our SYN-ACK completes the passive open.
      if (seqLe(this.segAck, this.sndUna) || seqGt(this.segAck, this.sndNxt)) {
        this.emitRst(this.segAck, 0, false);
        this.drop('bad-ack');
        return null;
      }
      if (this.tsOk && seg.options.tsPresent && seg.options.tsEcr !== 0) this.rttFromTs(seg.options, now);
      else if (this.retries === 0) this.rto.sample(now - this.synSentAt);
      this.sndUna = seqAdd(this.iss, 1);
      this.retries = 0;
      this.rtoAt = INF;
      this.sndWnd = seg.window << this.sndShift;
      this.maxSndWnd = Math.max(this.maxSndWnd, this.sndWnd);
      this.sndWl1 = this.segSeq;
      this.sndWl2 = this.segAck;
      this.state = this.finQueued ? 'FIN-WAIT-1' : 'ESTABLISHED';
      this.events |= EV_ESTABLISHED;
      this.outputPending = true;
    }
    if (seqGt(this.segAck, this.sndMax)) {
      // Acknowledges something never sent: ACK back and drop.
      this.drop('bad-ack');
      this.ackNow = true;
      return null;
    }
    if (this.sackOk && seg.options.sackCount > 0) {
      const o = seg.options;
      for (let i = 0; i < o.sackCount; i++) this.sacked.add(o.sack[2 * i], o.sack[2 * i + 1], this.sndUna, this.sndMax);
    }
    const wndField = seg.window << this.sndShift;
    if (seqGt(this.segAck, this.sndUna)) {
      this.onNewAck(seg, now);
    } else if (
      this.segAck === this.sndUna &&
      dataLen === 0 &&
      (f & TCP_FIN) === 0 &&
      this.sndMax !== this.sndUna &&
      wndField === this.sndWnd
    ) {
      this.onDupAck(now);
    }
    // Window update, guarded by SND.WL1/WL2 so an old segment cannot shrink it.
    if (
      seqGe(this.segAck, this.sndUna) &&
      (seqLt(this.sndWl1, this.segSeq) || (this.sndWl1 === this.segSeq && seqLe(this.sndWl2, this.segAck)))
    ) {
      if (wndField !== this.sndWnd) {
        if (wndField > this.sndWnd) this.outputPending = true;
        this.sndWnd = wndField;
        if (wndField > this.maxSndWnd) this.maxSndWnd = wndField;
      }
      this.sndWl1 = this.segSeq;
      this.sndWl2 = this.segAck;
      if (this.sndWnd > 0 && this.persistAt !== INF) {
        this.persistAt = INF;
        this.persistBackoff = 0;
        this.outputPending = true;
      }
    }
    // Our FIN acknowledged: per-state transitions.
    const finAcked = this.finQueued && seqGt(this.sndUna, this.finSeq());
    switch (this.state) {
      case 'FIN-WAIT-1':
        if (finAcked) this.state = 'FIN-WAIT-2';
        break;
      case 'CLOSING':
        if (finAcked) this.enterTimeWait(now);
        break;
      case 'LAST-ACK':
        if (finAcked) {
          this.close('normal');
          return null;
        }
        break;
      default:
        break;
    }

    // Sixth: URG is ignored (RFC 6093: nobody uses it; the bytes are delivered inline).

    // Seventh: segment text, only while the peer has not finished.
    const finFlag = (f & TCP_FIN) !== 0;
    let finOk = finFlag;
    if (!this.peerFinished && (this.state === 'ESTABLISHED' || this.state === 'FIN-WAIT-1' || this.state === 'FIN-WAIT-2')) {
      let start = this.segSeq;
      if (seqLt(start, this.rcvNxt)) {
        const cut = Math.min(seqDiff(this.rcvNxt, start), dataLen);
        dataOff += cut;
        dataLen -= cut;
        start = seqAdd(start, cut);
      }
      const offset = seqDiff(start, this.rcvNxt);
      if (offset + dataLen > wnd) {
        // Past the window: keep what fits; a FIN after dropped bytes is not ours yet.
        dataLen = Math.max(0, wnd - offset);
        finOk = false;
        this.drop('beyond-window');
      }
      if (dataLen > 0) {
        const n = this.recvBuf.write(offset, seg.buf, dataOff, dataLen);
        if (n < 0) {
          this.drop('ooo-full');
          finOk = false;
          this.ackNow = true;
        } else {
          if (offset > 0) {
            // Out of order: ACK at once (a duplicate ACK with SACK blocks).
            this.counters.oooSegments++;
            this.ackNow = true;
          }
          if (n > 0) this.deliver(n, n > dataLen, now);
        }
      } else if (segLen > 0 && offset === 0 && !finFlag) {
        // A zero-window probe or trimmed retransmission: the ACK tells the window.
        this.ackNow = true;
      }
      if (finOk && offset > 0 && !seqLe(seqAdd(this.segSeq, seg.payloadLength), this.rcvNxt)) {
        // A FIN beyond a hole: remember it until the hole fills.
        this.oooFin = true;
        this.oooFinSeq = seqAdd(this.segSeq, seg.payloadLength);
        finOk = false;
      }
    }

    // Eighth: FIN, once everything before it has arrived.
    if (finOk && seqAdd(this.segSeq, seg.payloadLength) === this.rcvNxt) this.receiveFin(now);
    else if (finOk && this.peerFinished && seqAdd(this.segSeq, seg.payloadLength + 1) === this.rcvNxt) {
      // A retransmitted FIN we already have: re-ACK it.
      this.ackNow = true;
      if (this.state === 'TIME-WAIT') this.timeWaitAt = now + this.config.timeWaitMs;
    }
    return null;
  }

  protected inWindow(s: number, wnd: number): boolean {
    const d = seqDiff(s, this.rcvNxt);
    return d >= 0 && d < wnd;
  }

  /** n more bytes became readable (filledHole: they closed a gap). */
  protected deliver(n: number, filledHole: boolean, now: number): void {
    this.rcvNxt = seqAdd(this.rcvNxt, n);
    this.counters.bytesIn += n;
    this.events |= EV_READABLE;
    this.unackedBytes += n;
    // ACK every second full segment at once (RFC 5681 §4.2), and a filled hole immediately.
    if (filledHole || this.unackedBytes >= 2 * this.config.mss) this.ackNow = true;
    else if (this.ackAt === INF) this.ackAt = now + this.config.delayedAckMs;
    if (this.oooFin && this.oooFinSeq === this.rcvNxt) {
      this.oooFin = false;
      this.receiveFin(now);
    }
  }

  protected receiveFin(now: number): void {
    if (this.peerFinished) return;
    this.rcvNxt = seqAdd(this.rcvNxt, 1);
    this.peerFinished = true;
    this.oooFin = false;
    this.events |= EV_READABLE;
    switch (this.state) {
      case 'SYN-RECEIVED':
      case 'ESTABLISHED':
        // The peer closed first; our side usually follows within microseconds (the host
        // socket's EOF), so the ACK is only delayed and our FIN can carry it (Linux does the
        // same: tcp_fin enters pingpong mode). An eager flush still ACKs at once.
        this.state = 'CLOSE-WAIT';
        if (this.ackAt === INF) this.ackAt = now + this.config.delayedAckMs;
        break;
      case 'FIN-WAIT-1':
        // Our FIN not yet acknowledged (else we would be in FIN-WAIT-2): simultaneous close.
        this.ackNow = true;
        this.state = 'CLOSING';
        break;
      case 'FIN-WAIT-2':
        this.ackNow = true;
        this.enterTimeWait(now);
        break;
      default:
        this.ackNow = true;
        break;
    }
  }

  protected enterTimeWait(now: number): void {
    this.state = 'TIME-WAIT';
    this.timeWaitAt = now + this.config.timeWaitMs;
    this.rtoAt = INF;
    this.persistAt = INF;
    // Our FIN is acknowledged and the peer's received: nothing more is sent or accepted. The
    // rings go back to the pool now rather than after timeWaitMs, or a client that opens a
    // connection per request has every one of them hold its rings (80 KiB) for that long and
    // each new connection allocates fresh ones. Received bytes the owner has not taken yet
    // keep theirs until recycleBuffers().
    this.sendBuf.recycleIfEmpty();
    this.recvBuf.recycleIfEmpty();
  }

  /** RFC 7323 §4.3: remember the newest TSval of a segment at the left edge. */
  protected updateTsRecent(seg: TcpSegmentIn): void {
    const o = seg.options;
    if (!this.tsOk || !o.tsPresent) return;
    if (seqLe(this.segSeq, this.lastAckSent) && seqGe(o.tsVal, this.tsRecent)) this.tsRecent = o.tsVal;
  }
}
