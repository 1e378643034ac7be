/**
 * One TCP connection (RFC 9293), sans-IO: the engine. It knows only its
 * peer (the other end; for the NAT, the guest) and its owner (whoever holds
 * it and its TcpEnv; for the NAT, the flow and, behind it, a host socket).
 * It does no dialing, addressing or IP: what the NAT needs around it lives in
 * stack/nat/tcp-nat.ts.
 *
 * ## API for the owner
 *
 * Creation
 * - `TcpConnection.fromSyn(syn, config, env, now, iss?)`: passive open from the
 *   peer's SYN (a parsed TcpView with `parseOptions()` done, or any
 *   `TcpSynIn`): the SYN-ACK leaves at once, 'SYN-RECEIVED'. An owner that
 *   must connect somewhere before answering (the NAT's pending open) keeps
 *   the SYN and calls fromSyn when it may answer.
 * - `TcpConnection.connect(config, env, now, localPort, remotePort, iss?)`:
 *   active open towards the peer (port forwards): SYN, 'SYN-SENT'.
 *   A RST answer gives onClosed('refused').
 *
 * Input
 * - `input(seg, now)`: a segment from the peer for this connection (a TcpView
 *   after `reset` and `parseOptions`, checksum already verified). It updates
 *   state and emits only RSTs by itself; ACKs and data go out on `flush(now)`
 *   or `poll(now)`. Call `flush(now)` once per connection at the end of each
 *   input batch: one ACK per connection per batch, and data freed by the
 *   batch's ACKs goes out as few large (TSO) segments. `flush(now, true)`
 *   leaves an ACK that is only delayed to its timer instead (the NAT: the
 *   host's answer carries it). Returns 'reopen' when a new SYN hit a
 *   connection in TIME-WAIT: this connection is now closed and the owner
 *   should create a new one from the same segment with `fromSyn`.
 *   Exceptions to "input does not emit": RSTs, fast retransmissions and a
 *   SYN-ACK resent for a duplicate SYN go out at once.
 *
 * Data to the peer (for the NAT: read from the host socket)
 * - `sendSpace()`: bytes that may be queued now (0: pause host reads).
 * - `sendWritable()` -> {buf, off, len}: contiguous free region to read the
 *   host socket into without a copy; then `sendCommit(n, now)`.
 * - `send(buf, off, len, now)`: copying alternative, returns bytes taken.
 * - `shutdownSend(now)`: the owner's EOF; FIN follows the queued data.
 *
 * Data from the peer (for the NAT: written to the host socket)
 * - `recvAvailable()`, `recvPeek()` -> {buf, off, len} (no copy), then
 *   `recvConsume(n, now)` when the owner took n bytes; `recv(dst, off,
 *   len, now)` copies. The advertised window is exactly the free space of
 *   the receive buffer: unconsumed data closes the window (backpressure).
 * - `peerFinished`: the peer's FIN arrived and everything before it is
 *   readable: after draining, end the host socket (half-close).
 *
 * Timers: `pollAt()` (ms, Infinity when idle, 0 when output is pending) and
 * `poll(now)`.
 *
 * Other: `abort(now)` (RST, onClosed('reset')), `releaseMemory()` (free
 * empty buffers of an idle connection), `recycleBuffers()` (a closed
 * connection's rings to the shared pool, once nothing uses them), `state`,
 * `closeReason`, `peerMss` (the MSS the peer announced), `sendMss` (payload
 * bytes per packet with our options: use it as gso_size), `lastActivity`,
 * `counters`, and read-only views for diagnostics (`cwnd`, `srtt`,
 * `recvWindow`...).
 *
 * Output and events go through `env` (one TcpEnv per connection, usually the
 * owner's flow object itself):
 * - `emit(seg)`: `seg` is this connection's one reused TcpSegmentOut; write it
 *   with `writeTcpHeader(buf, off, seg, seg.options)` and copy the payload
 *   seg.buf[seg.off, seg.off+seg.len) (it points into the send buffer and is
 *   valid only during the call). No IP header, no checksum here.
 * - `tcpDrops`: where discarded segments are counted by reason (one set per
 *   owner; the NAT reports it as nat.tcp.engineDrops).
 * - `onEstablished()`, `onReadable()` (new in-order data or FIN),
 *   `onSendSpace()` (acknowledged data freed room: resume host reads),
 *   `onClosed(reason)` exactly once ('normal' | 'reset' | 'timeout' |
 *   'refused'), also after the owner's own abort. After 'normal',
 *   data still in the receive buffer is valid and should be delivered.
 *   Events fire at the end of the call that caused them, never mid-update.
 *
 * ## How it works
 * - One connection object over five modules, one per concern, as one class
 *   chain (details and why in connection-core.ts): connection-core.ts (every
 *   field, events, close), connection-output.ts (building and sending
 *   segments, windows we advertise), connection-timers.ts (timers, RTT, loss
 *   recovery), connection-input.ts (segment arrival, RFC 9293 §3.10.7), and
 *   this module (the owner's API). All fields live in the core, so every
 *   connection has one V8 hidden class.
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
import type { TcpConfig } from './config.js';
import type { ByteRegion } from './send-buffer.js';
import { seqAdd, seqDiff } from './seq.js';
import { INF, randomU32, type TcpEnv, type TcpSynIn } from './connection-core.js';
import { TcpConnectionInput } from './connection-input.js';

export {
  TcpCounters,
  windowShiftFor,
  type TcpCloseReason,
  type TcpEnv,
  type TcpSegmentIn,
  type TcpSegmentOut,
  type TcpState,
  type TcpSynIn,
} from './connection-core.js';

export class TcpConnection extends TcpConnectionInput {
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

  /** Active open towards the peer: sends the SYN now. */
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
}
