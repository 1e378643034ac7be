/**
 * Output of a TCP connection: building and sending segments (data, SYN,
 * SYN-ACK, ACK, RST), the sender's segment size and silly-window avoidance,
 * and the receiver's window updates. Methods of the connection object (see
 * connection-core.ts for the class chain); the caller sets `out.seq` before
 * emitSegment, as a uint32 argument would be boxed per segment.
 *
 * How it works
 * - Every segment goes out through the one reused TcpSegmentOut (`out`) and
 *   TcpEnv.emit; payload points into the send ring, never copied here.
 * - `output(now)` sends what the windows allow (min of the peer's window and
 *   cwnd, in segments of up to `segmentCap()`, TSO-sized when
 *   config.maxSegmentLen allows), resending from SND.NXT when it dropped back
 *   after a timeout and skipping SACKed ranges, then any ACK still owed. A
 *   segment that carries data carries the ACK too.
 * - Zero window with data waiting and nothing in flight arms the persist
 *   timer (its probes are the timers' concern).
 * - The window we advertise is the free space of the receive ring, scaled;
 *   the right edge never moves left. After the owner consumed data, a window
 *   update leaves at once only when the peer is close to blocked
 *   (LAZY_WINDOW_UPDATE_SEGMENTS).
 */
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, type TcpOptions } from '../wire/tcp.js';
import type { ByteRegion } from './send-buffer.js';
import { seqAdd, seqDiff, seqGt, seqLt } from './seq.js';
import { DEFAULT_PEER_MSS, EMPTY, INF, TcpConnectionCore } from './connection-core.js';

/**
 * A window update is sent at once only when the window the peer may still
 * use is below this many segments; above it the update waits for the next
 * segment or the delayed-ACK timer (at 1460 bytes: ~23 KiB, some 20 µs of
 * sending at 10 Gbit/s, far more than the 1 ms timer would ever block a
 * sender that is already flowing, since its data draws ACKs every batch).
 */
const LAZY_WINDOW_UPDATE_SEGMENTS = 16;

export abstract class TcpConnectionOutput extends TcpConnectionCore {
  /**
   * The segment size the sender aims for: the MSS, but at most half the
   * largest window the peer has offered (as Linux's tcp_bound_to_half_wnd).
   * With a 64 KiB MSS (MTU 65520) and a young receive window of ~90 KiB, a
   * full MSS would leave one segment in flight, which the peer acknowledges
   * only after its delayed-ACK timer: two segments per window keep ACKs
   * immediate.
   */
  protected effectiveMss(): number {
    if (this.maxSndWnd <= 2 * DEFAULT_PEER_MSS) return this.sendMss;
    return Math.min(this.sendMss, Math.max(DEFAULT_PEER_MSS, this.maxSndWnd >>> 1));
  }

  protected segmentCap(): number {
    const mss = this.effectiveMss();
    const m = this.config.maxSegmentLen;
    if (m <= 0) return mss;
    if (m <= mss) return m;
    return Math.floor(m / mss) * mss;
  }

  protected persistInterval(): number {
    return Math.min(this.config.rtoMaxMs, this.rto.timeout * (1 << Math.min(this.persistBackoff, 30)));
  }

  /**
   * Sends new or retransmitted data and FIN as the windows allow, then any ACK still owed
   * (`lazyAck`: only one that may no longer wait; see flush).
   */
  protected output(now: number, lazyAck = false): void {
    this.outputPending = false;
    let sent = false;
    const st = this.state;
    if (st === 'ESTABLISHED' || st === 'CLOSE-WAIT' || st === 'FIN-WAIT-1' || st === 'CLOSING' || st === 'LAST-ACK') {
      sent = this.sendData(now);
    }
    if (st === 'SYN-SENT' || st === 'SYN-RECEIVED' || st === 'CLOSED') {
      this.ackNow = false;
      this.ackAt = INF;
      return;
    }
    if (!sent && (this.ackNow || (!lazyAck && this.ackAt !== INF))) {
      this.out.seq = this.sndNxt;
      this.emitSegment(TCP_ACK, null, 0, now);
    }
  }

  protected sendData(now: number): boolean {
    let sent = false;
    const cap = this.segmentCap();
    const fullSegment = Math.min(cap, this.effectiveMss());
    const dataEnd = this.finSeq();
    for (;;) {
      const retransmitting = seqLt(this.sndNxt, this.sndMax);
      if (retransmitting && this.sacked.count > 0) {
        const s = this.sacked.skip(this.sndNxt);
        if (s !== this.sndNxt) {
          this.sndNxt = s;
          continue;
        }
      }
      const avail = Math.max(0, seqDiff(dataEnd, this.sndNxt));
      let inFlight = seqDiff(this.sndNxt, this.sndUna);
      if (this.sacked.count > 0) inFlight -= this.sacked.bytesBelow(this.sndNxt);
      const usable = Math.min(this.sndWnd, this.cc.cwnd) - inFlight;
      let len = Math.min(avail, Math.max(0, usable), cap);
      if (retransmitting && this.sacked.count > 0) len = Math.min(len, this.sacked.gapAfter(this.sndNxt));
      let chunk: ByteRegion | null = null;
      if (len > 0) {
        chunk = this.sendBuf.chunk(seqDiff(this.sndNxt, this.sndBufSeq));
        len = Math.min(len, chunk.len);
      }
      // Sender SWS avoidance (RFC 9293 §3.8.6.2.1): no small segment while
      // data is in flight unless it is all we have (Nagle stays off).
      // A "full" segment is the largest we may emit: at MTU 65520 the cap is below the MSS.
      if (len > 0 && len < fullSegment && len < avail && inFlight > 0 && len < this.maxSndWnd / 2) len = 0;
      const fin = this.finQueued && seqAdd(this.sndNxt, len) === dataEnd;
      if (len === 0 && !fin) break;
      let flags = TCP_ACK;
      if (fin) flags |= TCP_FIN;
      if (len > 0 && seqAdd(this.sndNxt, len) === dataEnd) flags |= TCP_PSH;
      if (retransmitting) this.counters.retransmits++;
      else {
        this.counters.bytesOut += len;
        if (this.rttTime < 0 && !this.tsOk) {
          this.rttSeq = seqAdd(this.sndNxt, len);
          this.rttTime = now;
        }
      }
      this.out.seq = this.sndNxt;
      this.emitSegment(flags, chunk, len, now);
      this.sndNxt = seqAdd(this.sndNxt, len + (fin ? 1 : 0));
      if (seqGt(this.sndNxt, this.sndMax)) this.sndMax = this.sndNxt;
      if (this.rtoAt === INF) this.rtoAt = now + this.rto.timeout;
      sent = true;
      if (fin) break;
    }
    // Zero window with data waiting and nothing in flight: only probes can learn when it opens.
    if (this.sndWnd === 0 && this.sndUna === this.sndMax && seqGt(dataEnd, this.sndNxt)) {
      if (this.persistAt === INF) this.persistAt = now + this.persistInterval();
    } else if (this.sndWnd > 0 && this.persistAt !== INF) {
      this.persistAt = INF;
      this.persistBackoff = 0;
    }
    return sent;
  }

  /** Resends the first unacknowledged segment (fast retransmit, partial ACK). */
  protected retransmitFirst(now: number): void {
    const dataEnd = this.finSeq();
    const avail = Math.max(0, seqDiff(dataEnd, this.sndUna));
    let len = Math.min(avail, this.sendMss, this.sacked.count > 0 ? this.sacked.gapAfter(this.sndUna) : INF);
    let chunk: ByteRegion | null = null;
    if (len > 0) {
      chunk = this.sendBuf.chunk(seqDiff(this.sndUna, this.sndBufSeq));
      len = Math.min(len, chunk.len);
    }
    const fin = this.finQueued && seqAdd(this.sndUna, len) === dataEnd && seqGt(this.sndMax, dataEnd);
    if (len === 0 && !fin) return;
    this.counters.retransmits++;
    this.out.seq = this.sndUna;
    this.emitSegment(TCP_ACK | (fin ? TCP_FIN : 0), chunk, len, now);
    this.rtoAt = now + this.rto.timeout;
  }

  /** SYN (active) or SYN-ACK (passive); retransmit marks a resend. */
  protected sendSyn(now: number, withAck: boolean, retransmit = false): void {
    const o = this.out.options;
    o.clear();
    o.mss = this.config.mss;
    const passive = withAck;
    // Passive: echo only what the peer offered. Active: offer everything.
    if (!passive || this.wsOk) o.windowScale = this.rcvShift;
    o.sackPermitted = this.config.sack && (!passive || this.sackOk);
    if (this.config.timestamps && (!passive || this.tsOk)) {
      o.tsPresent = true;
      o.tsVal = this.tsClock(now);
      o.tsEcr = passive ? this.tsRecent : 0;
    }
    if (!retransmit) this.synSentAt = now;
    const out = this.out;
    out.flags = withAck ? TCP_SYN | TCP_ACK : TCP_SYN;
    out.seq = this.iss;
    out.ack = withAck ? this.rcvNxt : 0;
    out.window = Math.min(this.recvBuf.free(), 0xffff);
    out.buf = EMPTY;
    out.off = 0;
    out.len = 0;
    this.sndNxt = seqAdd(this.iss, 1);
    this.sndMax = this.sndNxt;
    this.rtoAt = now + this.rto.timeout;
    if (withAck) {
      this.lastAckSent = this.rcvNxt;
      this.lastAdvEdge = seqAdd(this.rcvNxt, out.window);
    }
    this.counters.segmentsOut++;
    this.env.emit(out);
  }

  /** The caller sets out.seq first: as an argument the uint32 would be boxed per segment. */
  protected emitSegment(flags: number, chunk: ByteRegion | null, len: number, now: number): void {
    const out = this.out;
    const o = out.options;
    o.clear();
    if (this.tsOk) {
      o.tsPresent = true;
      o.tsVal = this.tsClock(now);
      o.tsEcr = this.tsRecent;
    }
    if (this.sackOk && this.recvBuf.ooo.count > 0) this.fillSackBlocks(o);
    const free = this.recvBuf.free();
    const field = Math.min(free >>> this.rcvShift, 0xffff);
    out.flags = flags;
    out.ack = this.rcvNxt;
    out.window = field;
    if (chunk !== null && len > 0) {
      out.buf = chunk.buf;
      out.off = chunk.off;
      out.len = len;
    } else {
      out.buf = EMPTY;
      out.off = 0;
      out.len = 0;
    }
    this.lastAckSent = this.rcvNxt;
    const edge = seqAdd(this.rcvNxt, field << this.rcvShift);
    if (seqGt(edge, this.lastAdvEdge)) this.lastAdvEdge = edge;
    this.ackNow = false;
    this.ackAt = INF;
    this.unackedBytes = 0;
    this.counters.segmentsOut++;
    this.env.emit(out);
    out.buf = EMPTY;
  }

  /** SACK blocks for our out-of-order ranges: the most recent first (RFC 2018 §4). */
  protected fillSackBlocks(o: TcpOptions): void {
    const a = this.recvBuf.ooo;
    const maxBlocks = this.tsOk ? 3 : 4;
    let n = 0;
    if (a.lastStart >= 0) {
      o.sack[0] = seqAdd(this.rcvNxt, a.lastStart);
      o.sack[1] = seqAdd(this.rcvNxt, a.lastEnd);
      n = 1;
    }
    for (let i = a.count - 1; i >= 0 && n < maxBlocks; i--) {
      if (a.start(i) === a.lastStart) continue;
      o.sack[2 * n] = seqAdd(this.rcvNxt, a.start(i));
      o.sack[2 * n + 1] = seqAdd(this.rcvNxt, a.end(i));
      n++;
    }
    o.sackCount = n;
  }

  /** RST; withAck adds ACK=ack (answering a SYN, or aborting a synchronized connection). */
  protected emitRst(seq: number, ack: number, withAck: boolean): void {
    const out = this.out;
    out.options.clear();
    out.flags = withAck ? TCP_RST | TCP_ACK : TCP_RST;
    out.seq = seq >>> 0;
    out.ack = withAck ? ack >>> 0 : 0;
    out.window = 0;
    out.buf = EMPTY;
    out.off = 0;
    out.len = 0;
    this.counters.segmentsOut++;
    this.env.emit(out);
  }

  /**
   * After the host consumed data: send a window update when the window we
   * advertised has become small (at most half the buffer) and the real one is
   * at least twice as big and at least one MSS (receiver SWS avoidance,
   * RFC 9293 §3.8.6.2.2; Linux's rule in __tcp_cleanup_rbuf).
   */
  protected maybeWindowUpdate(now: number): void {
    const st = this.state;
    if (st !== 'ESTABLISHED' && st !== 'FIN-WAIT-1' && st !== 'FIN-WAIT-2') return;
    if (this.peerFinished) return;
    const advertised = Math.max(0, seqDiff(this.lastAdvEdge, this.rcvNxt));
    const free = this.recvBuf.free();
    const usable = (free >>> this.rcvShift) * (1 << this.rcvShift);
    if (2 * advertised <= this.recvBuf.max && usable >= 2 * advertised && usable >= Math.min(this.config.mss, this.recvBuf.max)) {
      if (advertised >= LAZY_WINDOW_UPDATE_SEGMENTS * this.config.mss) {
        // The peer is far from blocked (typically the first bytes after the unscaled SYN-ACK
        // window of 64 KiB): the update can wait for the next segment we send or the
        // delayed-ACK timer, instead of costing a frame of its own.
        if (this.ackAt === INF && !this.ackNow) {
          this.counters.windowUpdates++;
          this.ackAt = now + this.config.delayedAckMs;
        }
        return;
      }
      this.counters.windowUpdates++;
      this.ackNow = true;
      this.output(now);
    }
  }
}
