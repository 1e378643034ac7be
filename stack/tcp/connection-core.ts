/**
 * The state of one TCP connection (RFC 9293): every field of the connection
 * object, its constructor, and what every concern shares (events, closing,
 * option negotiation, the timestamp clock). The concerns sit on top of it as
 * one class chain, each in its own module:
 *
 *   TcpConnectionCore (here)   fields, close(), fire(), negotiate()
 *   TcpConnectionOutput        connection-output.ts: building and sending segments
 *   TcpConnectionTimers        connection-timers.ts: timers, RTT and loss recovery
 *   TcpConnectionInput         connection-input.ts: segment arrival (RFC 9293 §3.10.7)
 *   TcpConnection              connection.ts: the owner's API (documented there)
 *
 * How it works
 * - One object, one hidden class. Every field is declared here, with an
 *   initial value, and set in this constructor; the modules above add methods
 *   only (the rule of this chain: no field is declared outside this file).
 *   Every connection therefore gets the same V8 map, its fields stay
 *   in place (numbers as unboxed doubles, see the note on the fields), and a
 *   call from one concern into another is an ordinary monomorphic method call
 *   on the prototype chain, which TurboFan inlines as it did when all of this
 *   was one class. Free functions taking the connection would need the same
 *   fields public; the chain keeps them `protected`, visible to the engine's
 *   modules and not to the owner.
 * - Each layer calls only down the chain (input calls output and recovery,
 *   recovery calls output, everything calls the core), so each module reads
 *   on its own.
 * - "Peer" is the other end of the connection (for the NAT: the guest);
 *   "owner" is whoever holds the connection and its TcpEnv.
 */
import { TcpOptions, type TcpHeaderFields } from '../wire/tcp.js';
import { NewReno } from './congestion.js';
import type { TcpConfig } from './config.js';
import { ReceiveBuffer } from './receive-buffer.js';
import { RtoEstimator } from './rto.js';
import { SackScoreboard } from './sack-scoreboard.js';
import { SendBuffer } from './send-buffer.js';
import { seqAdd } from './seq.js';
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
  /** Payload bytes from the peer accepted in order. */
  bytesIn = 0;
  /** Payload bytes to the peer sent for the first time. */
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

/** Pending events (`events`), delivered by fire() at the end of the call that caused them. */
export const EV_ESTABLISHED = 1;
export const EV_READABLE = 2;
export const EV_SEND_SPACE = 4;
export const EV_CLOSED = 8;

/** RFC 9293 §3.7.1: the MSS to assume when the peer sends none (IPv4). */
export const DEFAULT_PEER_MSS = 536;
/** Bytes the timestamp option takes in every segment once negotiated. */
const TS_OPTION_LEN = 12;
export const INF = Number.POSITIVE_INFINITY;
export const EMPTY = Buffer.alloc(0);
/**
 * Random words for ISS and the timestamp offset, drawn from the CSPRNG 256 at
 * a time: two per connection, and one getRandomValues call costs ~15 µs with
 * its getpid() (OpenSSL's fork check), which at thousands of connections per
 * second showed in the profile. Batching does not make ISS more predictable
 * (RFC 6528 only needs them unguessable).
 */
const random32 = new Uint32Array(256);
let randomLeft = 0;

export function randomU32(): number {
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

export abstract class TcpConnectionCore {
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
  /** The peer's FIN arrived; all data before it is in the receive buffer. */
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
  protected sndWl1 = 0;
  protected sndWl2 = 0;
  protected maxSndWnd = 0;
  protected sndBufSeq = 0;
  /** Shift applied to the peer's window field; ours applied to our field. */
  protected sndShift = 0;
  protected rcvShift = 0;

  // Receive sequence space.
  irs = 0;
  rcvNxt = 0;
  protected oooFin = false;
  protected oooFinSeq = 0;
  protected lastAdvEdge = 0;
  protected lastAckSent = 0;

  // Options negotiated.
  protected wsOk = false;
  protected sackOk = false;
  protected tsOk = false;
  protected tsRecent = 0;
  protected readonly tsOffset: number = 0;

  // Close.
  protected finQueued = false;

  // Timers (absolute ms; Infinity when off).
  protected rtoAt = INF;
  protected persistAt = INF;
  protected ackAt = INF;
  protected timeWaitAt = INF;
  protected lastPeerSegment = 0;

  protected retries = 0;
  protected persistBackoff = 0;
  protected persistUnanswered = 0;
  protected dupAcks = 0;
  protected rttSeq = 0;
  protected rttTime = -1;
  protected synSentAt = 0;
  protected ackNow = false;
  protected outputPending = false;
  protected unackedBytes = 0;
  protected events = 0;
  /**
   * SEG.SEQ and SEG.ACK of the segment being processed. Sequence numbers are
   * uint32: above 2^30 they are not small integers, and V8 boxes such a
   * number (a heap allocation) whenever it crosses a call that is not inlined
   * or comes back from a getter that is not. Read once in input() and kept in
   * fields (updated in place), they cost nothing per segment.
   */
  protected segSeq = 0;
  protected segAck = 0;

  protected readonly sendBuf: SendBuffer;
  protected readonly recvBuf: ReceiveBuffer;
  protected readonly rto: RtoEstimator;
  protected readonly cc: NewReno;
  protected readonly sacked = new SackScoreboard();
  protected readonly out: TcpSegmentOut;

  protected constructor(
    readonly config: TcpConfig,
    protected readonly env: TcpEnv,
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

  /** Counts a discarded segment in the owner's set (TcpEnv.tcpDrops). */
  protected drop(reason: DropReason): void {
    this.env.tcpDrops.add(reason);
  }

  /** Re-reads the state (TypeScript narrows `state` across calls that change it). */
  protected isClosed(): boolean {
    return this.state === 'CLOSED';
  }

  protected tsClock(now: number): number {
    return (Math.floor(now) + this.tsOffset) >>> 0;
  }

  /** Applies the peer's SYN options. */
  protected negotiate(o: TcpOptions): void {
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

  protected finSeq(): number {
    return seqAdd(this.sndBufSeq, this.sendBuf.length);
  }

  protected close(reason: TcpCloseReason): void {
    if (this.state === 'CLOSED') return;
    this.state = 'CLOSED';
    this.closeReason = reason;
    this.rtoAt = this.persistAt = this.ackAt = this.timeWaitAt = INF;
    this.ackNow = false;
    this.outputPending = false;
    this.events |= EV_CLOSED;
  }

  /** Delivers pending events; each bit is cleared before its callback so re-entrant calls are safe. */
  protected fire(): void {
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
