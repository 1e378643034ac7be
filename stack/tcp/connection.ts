/**
 * One TCP connection facing the guest (RFC 9293), sans-IO.
 *
 * ## API for the owner (the NAT layer)
 *
 * Creation
 * - `TcpConnection.fromSyn(syn, config, env, now, iss?)`: passive open from the
 *   peer's SYN (a parsed TcpView with `parseOptions()` done, or any
 *   `TcpSynIn`): the SYN-ACK leaves at once, 'SYN-RECEIVED'. The engine has
 *   no dial wait: an owner that must connect somewhere before answering (the
 *   NAT's pending open, stack/nat/tcp-nat.ts) keeps the SYN and calls
 *   fromSyn when it may answer.
 * - `TcpConnection.connect(config, env, now, localPort, remotePort, iss?)`:
 *   active open towards the peer (port forwards): SYN, 'SYN-SENT'.
 *   A RST answer gives onClosed('refused').
 *
 * Input
 * - `input(seg, now)`: a segment from the guest for this flow (a TcpView
 *   after `reset` and `parseOptions`, checksum already verified). It updates
 *   state and emits only RSTs by itself; ACKs and data go out on `flush(now)`
 *   or `poll(now)`. Call `flush(now)` once per flow at the end of each input
 *   batch: one ACK per flow per batch, and data freed by the batch's ACKs goes
 *   out as few large (TSO) segments. `flush(now, true)` leaves an ACK that
 *   is only delayed to its timer instead (the NAT: the host's answer carries
 *   it). Returns 'reopen' when a new SYN hit a
 *   connection in TIME-WAIT: this connection is now closed and the owner
 *   should create a new one from the same segment with `fromSyn`.
 *   Exceptions to "input does not emit": RSTs, fast retransmissions and a
 *   SYN-ACK resent for a duplicate SYN go out at once.
 *
 * Container-bound data (from the host socket)
 * - `sendSpace()`: bytes that may be queued now (0: pause host reads).
 * - `sendWritable()` -> {buf, off, len}: contiguous free region to read the
 *   host socket into without a copy; then `sendCommit(n, now)`.
 * - `send(buf, off, len, now)`: copying alternative, returns bytes taken.
 * - `shutdownSend(now)`: host EOF; FIN follows the queued data.
 *
 * Host-bound data (from the guest)
 * - `recvAvailable()`, `recvPeek()` -> {buf, off, len} (no copy), then
 *   `recvConsume(n, now)` when the host socket took n bytes; `recv(dst, off,
 *   len, now)` copies. The advertised window is exactly the free space of
 *   the receive buffer: unconsumed data closes the window (backpressure).
 * - `peerFinished`: the guest's FIN arrived and everything before it is
 *   readable: after draining, end the host socket (half-close).
 *
 * Timers: `pollAt()` (ms, Infinity when idle, 0 when output is pending) and
 * `poll(now)`.
 *
 * Other: `abort(now)` (RST, onClosed('reset')), `releaseMemory()` (free
 * empty buffers of an idle flow), `recycleBuffers()` (a closed
 * connection's rings to the shared pool, once nothing uses them), `state`, `closeReason`, `peerMss` (the MSS
 * the guest announced), `sendMss` (payload bytes per packet with our
 * options: use it as gso_size), `lastActivity`, `counters`.
 *
 * Output and events go through `env` (one TcpEnv per connection, usually the
 * flow object itself):
 * - `emit(seg)`: `seg` is this connection's one reused TcpSegmentOut; write it
 *   with `writeTcpHeader(buf, off, seg, seg.options)` and copy the payload
 *   seg.buf[seg.off, seg.off+seg.len) (it points into the send buffer and is
 *   valid only during the call). No IP header, no checksum here.
 * - `onEstablished()`, `onReadable()` (new in-order data or FIN),
 *   `onSendSpace()` (acknowledged data freed room: resume host reads),
 *   `onClosed(reason)` exactly once ('normal' | 'reset' | 'timeout' |
 *   'refused'), also after the owner's own abort/refuse. After 'normal',
 *   data still in the receive buffer is valid and should be delivered.
 *   Events fire at the end of the call that caused them, never mid-update.
 *
 * ## How it works
 * - Sequence space: SND.UNA <= SND.NXT <= SND.MAX; the send buffer's first byte
 *   is at `sndBufSeq` (SND.UNA, or ISS+1 while the SYN is unacknowledged).
 *   SND.NXT drops back to SND.UNA on a retransmission timeout (go-back-N,
 *   skipping SACKed ranges); SND.MAX remembers the highest sequence sent.
 * - Receive: in-order and out-of-order bytes share one ring (ReceiveBuffer);
 *   out-of-order bytes are bounded by the window and their ranges by
 *   config.oooMaxRanges. An out-of-order FIN is remembered until the hole fills.
 * - Windows: we always offer window scaling (shift so recvBufferMax fits in
 *   16 bits) and use it if the peer offers it too. The right edge we
 *   advertised never moves left because the window is free space.
 * - Timers are deadlines compared in `poll`: RTO (RFC 6298), persist
 *   (zero-window probes, Linux style: an old sequence number that makes the
 *   peer ACK with its window), delayed ACK, TIME-WAIT, FIN-WAIT-2 idleness.
 * - Loss recovery: NewReno (RFC 6582) on three duplicate ACKs, go-back-N on
 *   RTO; SACK blocks from the peer keep SACKed data from being resent.
 * - Steady state allocates nothing: one reused TcpSegmentOut, rings, typed
 *   arrays, no closures.
 */
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TcpOptions, type TcpHeaderFields } from '../wire/tcp.js';
import { NewReno } from './congestion.js';
import type { TcpConfig } from './config.js';
import { ReceiveBuffer } from './receive-buffer.js';
import { RtoEstimator } from './rto.js';
import { SackScoreboard } from './sack-scoreboard.js';
import { SendBuffer, type ByteRegion } from './send-buffer.js';
import { seqAdd, seqDiff, seqGe, seqGt, seqLe, seqLt } from './seq.js';
import type { DropCounters } from '../counters.js';
import type { DropReason } from '../drop-reasons.js';

export type TcpState =
  | 'SYN-SENT'
  | 'SYN-RECEIVED'
  | 'ESTABLISHED'
  | 'FIN-WAIT-1'
  | 'FIN-WAIT-2'
  | 'CLOSE-WAIT'
  | 'CLOSING'
  | 'LAST-ACK'
  | 'TIME-WAIT'
  | 'CLOSED';

export type TcpCloseReason = 'normal' | 'reset' | 'timeout' | 'refused';

/** What `input` reads from a segment; TcpView satisfies it. */
export interface TcpSegmentIn {
  readonly srcPort: number;
  readonly dstPort: number;
  readonly seq: number;
  readonly ack: number;
  readonly flags: number;
  readonly window: number;
  readonly buf: Uint8Array;
  readonly payloadOffset: number;
  readonly payloadLength: number;
  readonly options: TcpOptions;
}

/** What a passive open reads from the peer's SYN; TcpView satisfies it. */
export interface TcpSynIn {
  readonly srcPort: number;
  readonly dstPort: number;
  readonly seq: number;
  /** The SYN's window field (never scaled, RFC 7323 §2.2). */
  readonly window: number;
  readonly options: TcpOptions;
}

/** One per connection, reused for every emitted segment. */
export interface TcpSegmentOut extends TcpHeaderFields {
  /** Options to write (MSS, WS, SACK-permitted only matter on SYNs). */
  options: TcpOptions;
  /** Payload: buf[off, off+len), valid only during env.emit. */
  buf: Buffer;
  off: number;
  len: number;
}

export interface TcpEnv {
  /**
   * Where the connection counts the segments it discards (RFC 9293 checks:
   * 'bad-seq', 'rst-out-of-window'...): one set shared by every connection
   * of an owner, which reports it (the NAT: stats nat.tcp.engineDrops).
   */
  readonly tcpDrops: DropCounters;
  emit(seg: TcpSegmentOut): void;
  onEstablished(): void;
  onReadable(): void;
  onSendSpace(): void;
  onClosed(reason: TcpCloseReason): void;
}

export class TcpCounters {
  segmentsIn = 0;
  segmentsOut = 0;
  /** Payload bytes from the guest accepted in order. */
  bytesIn = 0;
  /** Payload bytes to the guest sent for the first time. */
  bytesOut = 0;
  /** Segments carrying retransmitted data, SYN or FIN. */
  retransmits = 0;
  fastRetransmits = 0;
  rtoExpiries = 0;
  dupAcks = 0;
  oooSegments = 0;
  challengeAcks = 0;
  windowProbes = 0;
  windowUpdates = 0;
}


const EV_ESTABLISHED = 1;
const EV_READABLE = 2;
const EV_SEND_SPACE = 4;
const EV_CLOSED = 8;

/** RFC 9293 §3.7.1: the MSS to assume when the peer sends none (IPv4). */
const DEFAULT_PEER_MSS = 536;
const TS_OPTION_LEN = 12;
/**
 * A window update is sent at once only when the window the peer may still
 * use is below this many segments; above it the update waits for the next
 * segment or the delayed-ACK timer (at 1460 bytes: ~23 KiB, some 20 µs of
 * sending at 10 Gbit/s, far more than the 1 ms timer would ever block a
 * sender that is already flowing, since its data draws ACKs every batch).
 */
const LAZY_WINDOW_UPDATE_SEGMENTS = 16;
const INF = Number.POSITIVE_INFINITY;
const EMPTY = Buffer.alloc(0);
/**
 * Random words for ISS and the timestamp offset, drawn from the CSPRNG 256 at
 * a time: two per connection, and one getRandomValues call costs ~15 µs with
 * its getpid() (OpenSSL's fork check), which at thousands of connections per
 * second showed in the profile. Batching does not make ISS more predictable
 * (RFC 6528 only needs them unguessable).
 */
const random32 = new Uint32Array(256);
let randomLeft = 0;

function randomU32(): number {
  if (randomLeft === 0) {
    crypto.getRandomValues(random32);
    randomLeft = random32.length;
  }
  return random32[--randomLeft];
}

/** Smallest shift that makes `bytes` fit the 16-bit window field (RFC 7323, at most 14). */
export function windowShiftFor(bytes: number): number {
  let s = 0;
  while (s < 14 && bytes / (1 << s) > 0xffff) s++;
  return s;
}

export class TcpConnection {
  // Every numeric field starts as 0 even when the constructor sets it: with
  // ES2022 class fields a bare declaration starts as undefined, V8 then gives
  // the field a tagged representation, and every later store of a sequence
  // number above 2^30 (not a small integer) allocates a heap number. Starting
  // from a small integer gives a double field that is updated in place.
  state: TcpState;
  closeReason: TcpCloseReason | null = null;
  readonly counters = new TcpCounters();
  /** Time of the last segment from the peer or call from the owner. */
  lastActivity = 0;
  /** The guest's FIN arrived; all data before it is in the receive buffer. */
  peerFinished = false;
  /** MSS announced by the peer (536 if it sent none). */
  peerMss = DEFAULT_PEER_MSS;
  /** Payload bytes per packet we send: min(peerMss, our mss) minus timestamp option bytes. Use as gso_size. */
  sendMss = 0;

  readonly localPort: number = 0;
  readonly remotePort: number = 0;

  // Send sequence space.
  readonly iss: number = 0;
  sndUna = 0;
  sndNxt = 0;
  sndMax = 0;
  /** Peer's window in bytes (scaled). */
  sndWnd = 0;
  private sndWl1 = 0;
  private sndWl2 = 0;
  private maxSndWnd = 0;
  private sndBufSeq = 0;
  /** Shift applied to the peer's window field; ours applied to our field. */
  private sndShift = 0;
  private rcvShift = 0;

  // Receive sequence space.
  irs = 0;
  rcvNxt = 0;
  private oooFin = false;
  private oooFinSeq = 0;
  private lastAdvEdge = 0;
  private lastAckSent = 0;

  // Options negotiated.
  private wsOk = false;
  private sackOk = false;
  private tsOk = false;
  private tsRecent = 0;
  private readonly tsOffset: number = 0;

  // Close.
  private finQueued = false;

  // Timers (absolute ms; Infinity when off).
  private rtoAt = INF;
  private persistAt = INF;
  private ackAt = INF;
  private timeWaitAt = INF;
  private lastPeerSegment = 0;

  private retries = 0;
  private persistBackoff = 0;
  private persistUnanswered = 0;
  private dupAcks = 0;
  private rttSeq = 0;
  private rttTime = -1;
  private synSentAt = 0;
  private ackNow = false;
  private outputPending = false;
  private unackedBytes = 0;
  private events = 0;
  /**
   * SEG.SEQ and SEG.ACK of the segment being processed. Sequence numbers are
   * uint32: above 2^30 they are not small integers, and V8 boxes such a
   * number (a heap allocation) whenever it crosses a call that is not inlined
   * or comes back from a getter that is not. Read once in input() and kept in
   * fields (updated in place), they cost nothing per segment.
   */
  private segSeq = 0;
  private segAck = 0;

  private readonly sendBuf: SendBuffer;
  private readonly recvBuf: ReceiveBuffer;
  private readonly rto: RtoEstimator;
  private readonly cc: NewReno;
  private readonly sacked = new SackScoreboard();
  private readonly out: TcpSegmentOut;

  private constructor(
    readonly config: TcpConfig,
    private readonly env: TcpEnv,
    now: number,
    state: TcpState,
    localPort: number,
    remotePort: number,
    iss: number,
  ) {
    this.state = state;
    this.localPort = localPort;
    this.remotePort = remotePort;
    this.iss = iss >>> 0;
    this.sndUna = this.iss;
    this.sndNxt = this.iss;
    this.sndMax = this.iss;
    this.sndBufSeq = seqAdd(this.iss, 1);
    this.lastActivity = now;
    this.lastPeerSegment = now;
    this.tsOffset = randomU32();
    this.rcvShift = windowShiftFor(config.recvBufferMax);
    this.sendBuf = new SendBuffer(config.sendBufferMax, config.sendBufferInitial);
    this.recvBuf = new ReceiveBuffer(config.recvBufferMax, config.recvBufferInitial, config.oooMaxRanges);
    this.rto = new RtoEstimator(config.rtoInitialMs, config.rtoMinMs, config.rtoMaxMs);
    this.sendMss = Math.min(config.mss, DEFAULT_PEER_MSS);
    this.cc = new NewReno(this.sendMss, config.initialCwndSegments);
    this.out = {
      srcPort: localPort,
      dstPort: remotePort,
      seq: 0,
      ack: 0,
      flags: 0,
      window: 0,
      urgent: 0,
      options: new TcpOptions(),
      buf: EMPTY,
      off: 0,
      len: 0,
    };
  }

  /** Passive open from the peer's SYN: sends the SYN-ACK now. */
  static fromSyn(syn: TcpSynIn, config: TcpConfig, env: TcpEnv, now: number, iss = randomU32()): TcpConnection {
    const c = new TcpConnection(config, env, now, 'SYN-RECEIVED', syn.dstPort, syn.srcPort, iss);
    c.irs = syn.seq >>> 0;
    c.rcvNxt = seqAdd(c.irs, 1);
    c.lastAckSent = c.rcvNxt;
    c.lastAdvEdge = c.rcvNxt;
    c.negotiate(syn.options);
    // The SYN's window is never scaled (RFC 7323 §2.2).
    c.sndWnd = syn.window;
    c.maxSndWnd = c.sndWnd;
    c.sndWl1 = c.irs;
    c.sndWl2 = c.iss;
    c.counters.segmentsIn++;
    c.sendSyn(now, true);
    c.fire();
    return c;
  }

  /** Active open towards the guest: sends the SYN now. */
  static connect(
    config: TcpConfig,
    env: TcpEnv,
    now: number,
    localPort: number,
    remotePort: number,
    iss = randomU32(),
  ): TcpConnection {
    const c = new TcpConnection(config, env, now, 'SYN-SENT', localPort, remotePort, iss);
    c.sendSyn(now, false);
    c.fire();
    return c;
  }

  /** Counts a discarded segment in the owner's set (TcpEnv.tcpDrops). */
  private drop(reason: DropReason): void {
    this.env.tcpDrops.add(reason);
  }

  // ---------------------------------------------------------------- owner API

  /** Reset the connection (host socket error). */
  abort(now: number): void {
    if (this.state === 'CLOSED') return;
    this.lastActivity = now;
    if (this.state !== 'SYN-SENT' && this.state !== 'TIME-WAIT') {
      this.emitRst(this.sndNxt, this.rcvNxt, true);
    }
    this.close('reset');
    this.fire();
  }

  sendSpace(): number {
    if (this.finQueued || this.state === 'CLOSED') return 0;
    return this.sendBuf.space();
  }

  /** Contiguous free region of the send buffer (len 0 when nothing fits). */
  sendWritable(): ByteRegion {
    const r = this.sendBuf.writable();
    if (this.finQueued || this.state === 'CLOSED') r.len = 0;
    return r;
  }

  /** Accounts n bytes written into the region from sendWritable() and sends what the windows allow. */
  sendCommit(n: number, now: number): void {
    if (n <= 0 || this.finQueued || this.state === 'CLOSED') return;
    this.sendBuf.commit(n);
    this.lastActivity = now;
    this.output(now);
    this.fire();
  }

  /** Copies up to len bytes into the send buffer; returns how many were taken. */
  send(buf: Uint8Array, off: number, len: number, now: number): number {
    if (this.finQueued || this.state === 'CLOSED') return 0;
    const n = this.sendBuf.write(buf, off, len);
    if (n > 0) {
      this.lastActivity = now;
      this.output(now);
      this.fire();
    }
    return n;
  }

  /** Host EOF: send FIN after the queued data. */
  shutdownSend(now: number): void {
    if (this.finQueued) return;
    this.lastActivity = now;
    switch (this.state) {
      case 'SYN-SENT':
      case 'SYN-RECEIVED':
        // Queued data and the FIN leave once the handshake completes.
        this.finQueued = true;
        return;
      case 'ESTABLISHED':
        this.finQueued = true;
        this.state = 'FIN-WAIT-1';
        break;
      case 'CLOSE-WAIT':
        this.finQueued = true;
        this.state = 'LAST-ACK';
        break;
      default:
        return;
    }
    this.output(now);
    this.fire();
  }

  recvAvailable(): number {
    return this.recvBuf.readable;
  }

  /** The first contiguous chunk of readable data; valid until the next call on this connection. */
  recvPeek(): ByteRegion {
    return this.recvBuf.peek();
  }

  /** The host took n bytes: free them and reopen the window if it grew enough. */
  recvConsume(n: number, now: number): void {
    if (n <= 0) return;
    this.recvBuf.consume(n);
    this.lastActivity = now;
    this.maybeWindowUpdate(now);
    this.fire();
  }

  /** Copies up to len readable bytes into dst and consumes them. */
  recv(dst: Uint8Array, off: number, len: number, now: number): number {
    const n = this.recvBuf.read(dst, off, len);
    if (n > 0) {
      this.lastActivity = now;
      this.maybeWindowUpdate(now);
      this.fire();
    }
    return n;
  }

  /** Frees empty buffers (idle flow); they are reallocated on demand. */
  releaseMemory(): void {
    this.sendBuf.release();
    this.recvBuf.release();
  }

  /**
   * A closed connection's rings go to the shared pool for the next
   * connections. Call once the owner has taken the readable data and nothing
   * (a host socket reading into sendWritable()'s region) can touch them.
   */
  recycleBuffers(): void {
    if (this.state !== 'CLOSED') return;
    this.sendBuf.recycle();
    this.recvBuf.recycle();
  }

  /**
   * Emits what is pending: ACKs owed, data the windows allow. Call at the end of an input batch.
   * `lazyAck`: an ACK that is only delayed (less than two segments of new data, a FIN in
   * ESTABLISHED) stays with its timer (`delayedAckMs`) so it can ride on the answer the host
   * is about to send: a request/response costs one segment to the peer instead of two.
   */
  flush(now: number, lazyAck = false): void {
    if (this.outputPending || this.ackNow || (!lazyAck && this.ackAt !== INF)) this.output(now, lazyAck);
    this.fire();
  }

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

  /** Re-reads the state (TypeScript narrows `state` across calls that change it). */
  private isClosed(): boolean {
    return this.state === 'CLOSED';
  }

  /** An ACK is owed but may still wait for its timer (left by `flush(now, true)`). */
  get ackDelayed(): boolean {
    return this.ackAt !== INF && this.state !== 'CLOSED';
  }

  /** Bytes sent and not yet acknowledged (SYN/FIN count one). */
  get bytesInFlight(): number {
    return seqDiff(this.sndNxt, this.sndUna);
  }
  get cwnd(): number {
    return this.cc.cwnd;
  }
  get ssthresh(): number {
    return this.cc.ssthresh;
  }
  get inRecovery(): boolean {
    return this.cc.inRecovery;
  }
  /** Current RTO (backoff included), SRTT and RTTVAR in ms. */
  get rtoMs(): number {
    return this.rto.timeout;
  }
  get srtt(): number {
    return this.rto.srtt;
  }
  get rttvar(): number {
    return this.rto.rttvar;
  }
  /** Our receive window in bytes (free receive buffer). */
  get recvWindow(): number {
    return this.recvBuf.free();
  }
  /** Bytes held out of order. */
  get oooBytes(): number {
    return this.recvBuf.ooo.bytes();
  }
  get sendQueued(): number {
    return this.sendBuf.length;
  }
  get sendBufferCapacity(): number {
    return this.sendBuf.capacity;
  }
  get recvBufferCapacity(): number {
    return this.recvBuf.capacity;
  }
  get windowScaling(): { send: number; recv: number } {
    return { send: this.sndShift, recv: this.rcvShift };
  }
  get sackEnabled(): boolean {
    return this.sackOk;
  }
  get timestampsEnabled(): boolean {
    return this.tsOk;
  }

  // ---------------------------------------------------------------- input

  /** A segment from the guest. See the API summary at the top. */
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
  private inputSynSent(seg: TcpSegmentIn, now: number): void {
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
  private inputSynchronized(seg: TcpSegmentIn, now: number): 'reopen' | null {
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

  private inWindow(s: number, wnd: number): boolean {
    const d = seqDiff(s, this.rcvNxt);
    return d >= 0 && d < wnd;
  }

  /** n more bytes became readable (filledHole: they closed a gap). */
  private deliver(n: number, filledHole: boolean, now: number): void {
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

  private receiveFin(now: number): void {
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

  private enterTimeWait(now: number): void {
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

  /** SEG.ACK advanced SND.UNA. */
  private onNewAck(seg: TcpSegmentIn, now: number): void {
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

  private onDupAck(now: number): void {
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
  private rttFromTs(o: TcpOptions, now: number): void {
    const rtt = ((this.tsClock(now) - o.tsEcr) | 0);
    if (rtt >= 0 && rtt < this.config.rtoMaxMs * 4) this.rto.sample(rtt);
  }

  /** RFC 7323 §4.3: remember the newest TSval of a segment at the left edge. */
  private updateTsRecent(seg: TcpSegmentIn): void {
    const o = seg.options;
    if (!this.tsOk || !o.tsPresent) return;
    if (seqLe(this.segSeq, this.lastAckSent) && seqGe(o.tsVal, this.tsRecent)) this.tsRecent = o.tsVal;
  }

  private tsClock(now: number): number {
    return (Math.floor(now) + this.tsOffset) >>> 0;
  }

  /** Applies the peer's SYN options. */
  private negotiate(o: TcpOptions): void {
    if (o.mss > 0) this.peerMss = o.mss;
    if (o.windowScale >= 0) {
      this.wsOk = true;
      this.sndShift = o.windowScale;
    } else {
      // Without scaling on both sides neither side scales (RFC 7323 §2.2).
      this.wsOk = false;
      this.sndShift = 0;
      this.rcvShift = 0;
    }
    this.sackOk = this.config.sack && o.sackPermitted;
    this.tsOk = this.config.timestamps && o.tsPresent;
    if (this.tsOk) this.tsRecent = o.tsVal;
    this.sendMss = Math.max(64, Math.min(this.peerMss, this.config.mss) - (this.tsOk ? TS_OPTION_LEN : 0));
    this.cc.setMss(this.sendMss);
  }

  // ---------------------------------------------------------------- timers

  private onRetransmitTimeout(now: number): void {
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

  private onPersistTimeout(now: number): void {
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

  private persistInterval(): number {
    return Math.min(this.config.rtoMaxMs, this.rto.timeout * (1 << Math.min(this.persistBackoff, 30)));
  }

  private giveUp(): void {
    if (this.state !== 'SYN-SENT') this.emitRst(this.sndNxt, this.rcvNxt, true);
    this.close('timeout');
  }

  // ---------------------------------------------------------------- output

  private finSeq(): number {
    return seqAdd(this.sndBufSeq, this.sendBuf.length);
  }

  /**
   * The segment size the sender aims for: the MSS, but at most half the
   * largest window the peer has offered (as Linux's tcp_bound_to_half_wnd).
   * With a 64 KiB MSS (MTU 65520) and a young receive window of ~90 KiB, a
   * full MSS would leave one segment in flight, which the peer acknowledges
   * only after its delayed-ACK timer: two segments per window keep ACKs
   * immediate.
   */
  private effectiveMss(): number {
    if (this.maxSndWnd <= 2 * DEFAULT_PEER_MSS) return this.sendMss;
    return Math.min(this.sendMss, Math.max(DEFAULT_PEER_MSS, this.maxSndWnd >>> 1));
  }

  private segmentCap(): number {
    const mss = this.effectiveMss();
    const m = this.config.maxSegmentLen;
    if (m <= 0) return mss;
    if (m <= mss) return m;
    return Math.floor(m / mss) * mss;
  }

  /**
   * Sends new or retransmitted data and FIN as the windows allow, then any ACK still owed
   * (`lazyAck`: only one that may no longer wait; see flush).
   */
  private output(now: number, lazyAck = false): void {
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

  private sendData(now: number): boolean {
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
  private retransmitFirst(now: number): void {
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
  private sendSyn(now: number, withAck: boolean, retransmit = false): void {
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
  private emitSegment(flags: number, chunk: ByteRegion | null, len: number, now: number): void {
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
  private fillSackBlocks(o: TcpOptions): void {
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
  private emitRst(seq: number, ack: number, withAck: boolean): void {
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
  private maybeWindowUpdate(now: number): void {
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

  private close(reason: TcpCloseReason): void {
    if (this.state === 'CLOSED') return;
    this.state = 'CLOSED';
    this.closeReason = reason;
    this.rtoAt = this.persistAt = this.ackAt = this.timeWaitAt = INF;
    this.ackNow = false;
    this.outputPending = false;
    this.events |= EV_CLOSED;
  }

  /** Delivers pending events; each bit is cleared before its callback so re-entrant calls are safe. */
  private fire(): void {
    while (this.events !== 0) {
      const e = this.events;
      if (e & EV_ESTABLISHED) {
        this.events &= ~EV_ESTABLISHED;
        this.env.onEstablished();
      } else if (e & EV_READABLE) {
        this.events &= ~EV_READABLE;
        this.env.onReadable();
      } else if (e & EV_SEND_SPACE) {
        this.events &= ~EV_SEND_SPACE;
        if (this.state !== 'CLOSED') this.env.onSendSpace();
      } else {
        this.events &= ~EV_CLOSED;
        this.env.onClosed(this.closeReason ?? 'normal');
      }
    }
  }
}
