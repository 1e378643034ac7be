/**
 * Test harness for TcpConnection in the style of smoltcp's tcp.rs tests: a
 * fake clock, an env that records copies of emitted segments and events,
 * segment templates with overrides (`seg`), builders for connections already
 * in a given state, and `expectSent` / `expectNothing`.
 *
 * Naming: "remote" is the peer, "local" is our stack.
 * The peer's ISS is REMOTE_ISS, ours LOCAL_ISS, so after the handshake
 * the peer's next sequence number is REMOTE_SEQ and ours LOCAL_SEQ.
 */
import { expect } from 'vitest';
import { tcpDefaults, type TcpConfig } from '../../stack/tcp/config.js';
import {
  TcpConnection,
  type TcpCloseReason,
  type TcpEnv,
  type TcpSegmentIn,
  type TcpSegmentOut,
} from '../../stack/tcp/connection.js';
import { TCP_ACK, TCP_FIN, TCP_SYN, TcpOptions } from '../../stack/wire/tcp.js';
import { newDropCounters } from '../../stack/counters.js';

export const LOCAL_PORT = 80;
export const REMOTE_PORT = 49152;
export const LOCAL_ISS = 10_000;
export const REMOTE_ISS = 1_000;
export const LOCAL_SEQ = LOCAL_ISS + 1;
export const REMOTE_SEQ = REMOTE_ISS + 1;

/** Small buffers and no TS/SACK so windows and segment sizes are easy to reason about. */
export const TEST_CONFIG: TcpConfig = {
  ...tcpDefaults,
  mss: 1460,
  maxSegmentLen: 0,
  recvBufferMax: 32 * 1024,
  recvBufferInitial: 4 * 1024,
  sendBufferMax: 64 * 1024,
  sendBufferInitial: 4 * 1024,
  timestamps: false,
  sack: false,
};

export function config(overrides: Partial<TcpConfig> = {}): TcpConfig {
  return { ...TEST_CONFIG, ...overrides };
}

/** A copy of one emitted segment. */
export interface SentSegment {
  flags: number;
  seq: number;
  ack: number;
  window: number;
  srcPort: number;
  dstPort: number;
  mss: number;
  windowScale: number;
  sackPermitted: boolean;
  tsPresent: boolean;
  tsVal: number;
  tsEcr: number;
  sack: Array<[number, number]>;
  payload: Buffer;
}

/** The engine drops of every RecordingEnv: tests compare counts before and after. */
export const harnessTcpDrops = newDropCounters();

export class RecordingEnv implements TcpEnv {
  readonly tcpDrops = harnessTcpDrops;
  sent: SentSegment[] = [];
  events: string[] = [];
  closed: TcpCloseReason | null = null;
  closedCount = 0;

  emit(s: TcpSegmentOut): void {
    const o = s.options;
    const sack: Array<[number, number]> = [];
    for (let i = 0; i < o.sackCount; i++) sack.push([o.sack[2 * i], o.sack[2 * i + 1]]);
    this.sent.push({
      flags: s.flags,
      seq: s.seq,
      ack: s.ack,
      window: s.window,
      srcPort: s.srcPort,
      dstPort: s.dstPort,
      mss: o.mss,
      windowScale: o.windowScale,
      sackPermitted: o.sackPermitted,
      tsPresent: o.tsPresent,
      tsVal: o.tsVal,
      tsEcr: o.tsEcr,
      sack,
      payload: Buffer.from(s.buf.subarray(s.off, s.off + s.len)),
    });
  }
  onEstablished(): void {
    this.events.push('established');
  }
  onReadable(): void {
    this.events.push('readable');
  }
  onSendSpace(): void {
    this.events.push('send-space');
  }
  onClosed(reason: TcpCloseReason): void {
    this.events.push(`closed:${reason}`);
    this.closed = reason;
    this.closedCount++;
  }
}

export interface SegOptions {
  seq?: number;
  ack?: number;
  flags?: number;
  window?: number;
  payload?: Buffer | string;
  mss?: number;
  windowScale?: number;
  sackPermitted?: boolean;
  /** [tsVal, tsEcr] */
  ts?: [number, number];
  sack?: Array<[number, number]>;
  srcPort?: number;
  dstPort?: number;
}

/** A segment from the peer; defaults: ACK at REMOTE_SEQ acknowledging LOCAL_SEQ, window 32768, no data. */
export function seg(o: SegOptions = {}): TcpSegmentIn {
  const payload = typeof o.payload === 'string' ? Buffer.from(o.payload) : (o.payload ?? Buffer.alloc(0));
  const options = new TcpOptions();
  if (o.mss !== undefined) options.mss = o.mss;
  if (o.windowScale !== undefined) options.windowScale = o.windowScale;
  if (o.sackPermitted) options.sackPermitted = true;
  if (o.ts) {
    options.tsPresent = true;
    options.tsVal = o.ts[0] >>> 0;
    options.tsEcr = o.ts[1] >>> 0;
  }
  if (o.sack) {
    options.sackCount = o.sack.length;
    o.sack.forEach(([l, r], i) => {
      options.sack[2 * i] = l >>> 0;
      options.sack[2 * i + 1] = r >>> 0;
    });
  }
  // A few bytes of junk before the payload check that offsets are honoured.
  const buf = Buffer.concat([Buffer.from([0xee, 0xee, 0xee]), payload]);
  return {
    srcPort: o.srcPort ?? REMOTE_PORT,
    dstPort: o.dstPort ?? LOCAL_PORT,
    seq: (o.seq ?? REMOTE_SEQ) >>> 0,
    ack: (o.ack ?? LOCAL_SEQ) >>> 0,
    flags: o.flags ?? TCP_ACK,
    window: o.window ?? 32768,
    buf,
    payloadOffset: 3,
    payloadLength: payload.length,
    options,
  };
}

/** The peer's SYN (defaults: MSS 1460, no other options). */
export function synSeg(o: SegOptions = {}): TcpSegmentIn {
  return seg({ seq: REMOTE_ISS, ack: 0, flags: TCP_SYN, mss: 1460, ...o });
}

export function bytes(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  let x = seed * 2654435761;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

export interface Expected {
  flags?: number;
  seq?: number;
  ack?: number;
  window?: number;
  payload?: Buffer | string;
  len?: number;
  mss?: number;
  windowScale?: number;
  sackPermitted?: boolean;
  tsPresent?: boolean;
  tsEcr?: number;
  sack?: Array<[number, number]>;
}

export class Harness {
  now = 0;
  readonly env = new RecordingEnv();
  conn!: TcpConnection;

  constructor(readonly cfg: TcpConfig = TEST_CONFIG) {}

  advance(ms: number): void {
    this.now += ms;
  }

  /** Input a segment, then flush like the owner does at the end of a batch. */
  send(s: TcpSegmentIn): 'reopen' | null {
    const r = this.conn.input(s, this.now);
    this.conn.flush(this.now);
    return r;
  }

  /** Input without the end-of-batch flush. */
  inputOnly(s: TcpSegmentIn): 'reopen' | null {
    return this.conn.input(s, this.now);
  }

  /** Moves the clock to the connection's next deadline (must be finite) and polls. */
  pollNext(): number {
    const t = this.conn.pollAt();
    expect(t).toBeLessThan(Number.POSITIVE_INFINITY);
    if (t > this.now) this.now = t;
    this.conn.poll(this.now);
    return this.now;
  }

  /** Polls at every deadline up to `until`. */
  pollUntil(until: number): void {
    for (let i = 0; i < 10_000; i++) {
      const t = this.conn.pollAt();
      if (t > until) break;
      if (t > this.now) this.now = t;
      this.conn.poll(this.now);
      if (this.conn.state === 'CLOSED') break;
    }
    if (this.now < until) this.now = until;
  }

  /** Takes all recorded segments. */
  takeSent(): SentSegment[] {
    const s = this.env.sent;
    this.env.sent = [];
    return s;
  }

  /** Asserts that exactly one segment was emitted and that it matches; returns it. */
  expectSent(e: Expected): SentSegment {
    const sent = this.takeSent();
    expect(sent.length, `segments sent: ${JSON.stringify(sent.map(describe))}`).toBe(1);
    matches(sent[0], e);
    return sent[0];
  }

  expectNothing(): void {
    const sent = this.takeSent();
    expect(sent.map(describe)).toEqual([]);
  }

  takeEvents(): string[] {
    const e = this.env.events;
    this.env.events = [];
    return e;
  }

  /** Reads and consumes everything readable. */
  drain(): Buffer {
    const out: Buffer[] = [];
    while (this.conn.recvAvailable() > 0) {
      const r = this.conn.recvPeek();
      out.push(Buffer.from(r.buf.subarray(r.off, r.off + r.len)));
      this.conn.recvConsume(r.len, this.now);
    }
    return Buffer.concat(out);
  }
}

export function matches(s: SentSegment, e: Expected): void {
  const got: Record<string, unknown> = {};
  const want: Record<string, unknown> = {};
  for (const k of Object.keys(e) as Array<keyof Expected>) {
    if (k === 'payload') {
      got.payload = s.payload.toString('hex');
      want.payload = (typeof e.payload === 'string' ? Buffer.from(e.payload) : e.payload!).toString('hex');
    } else if (k === 'len') {
      got.len = s.payload.length;
      want.len = e.len;
    } else {
      got[k] = s[k as keyof SentSegment];
      want[k] = e[k];
    }
  }
  expect(got).toEqual(want);
}

export function describe(s: SentSegment): string {
  const f = ['FIN', 'SYN', 'RST', 'PSH', 'ACK'].filter((_, i) => (s.flags & (1 << i)) !== 0).join('|');
  return `${f} seq=${s.seq} ack=${s.ack} win=${s.window} len=${s.payload.length}`;
}

export interface BuildOptions {
  cfg?: TcpConfig;
  /** Extra options on the peer's SYN. */
  syn?: SegOptions;
}

/** Passive open from the peer's SYN: SYN-RECEIVED, the SYN-ACK sent and not yet taken. */
export function passiveOpen(o: BuildOptions = {}): Harness {
  const h = new Harness(o.cfg ?? TEST_CONFIG);
  h.conn = TcpConnection.fromSyn(synSeg(o.syn), h.cfg, h.env, h.now, LOCAL_ISS);
  return h;
}

/** SYN-RECEIVED: SYN-ACK sent (and taken). */
export function synReceived(o: BuildOptions = {}): Harness {
  const h = passiveOpen(o);
  h.takeSent();
  return h;
}

/** ESTABLISHED via the passive path; sent segments and events cleared. */
export function established(o: BuildOptions = {}): Harness {
  const h = synReceived(o);
  const ts = o.syn?.ts ? { ts: [o.syn.ts[0] + 1, 0] as [number, number] } : {};
  h.send(seg(ts));
  h.takeSent();
  h.takeEvents();
  expect(h.conn.state).toBe('ESTABLISHED');
  return h;
}

/** SYN-SENT: active open, SYN taken. */
export function synSent(o: BuildOptions = {}): Harness {
  const h = new Harness(o.cfg ?? TEST_CONFIG);
  h.conn = TcpConnection.connect(h.cfg, h.env, h.now, LOCAL_PORT, REMOTE_PORT, LOCAL_ISS);
  h.takeSent();
  return h;
}

/** FIN-WAIT-1: established, then host EOF: our FIN (seq LOCAL_SEQ) sent. */
export function finWait1(o: BuildOptions = {}): Harness {
  const h = established(o);
  h.conn.shutdownSend(h.now);
  h.expectSent({ flags: TCP_FIN | TCP_ACK, seq: LOCAL_SEQ });
  expect(h.conn.state).toBe('FIN-WAIT-1');
  return h;
}

/** FIN-WAIT-2: our FIN acknowledged. */
export function finWait2(o: BuildOptions = {}): Harness {
  const h = finWait1(o);
  h.send(seg({ ack: LOCAL_SEQ + 1 }));
  h.expectNothing();
  expect(h.conn.state).toBe('FIN-WAIT-2');
  h.takeEvents();
  return h;
}

/** CLOSE-WAIT: the peer's FIN (seq REMOTE_SEQ) received and ACKed. */
export function closeWait(o: BuildOptions = {}): Harness {
  const h = established(o);
  h.send(seg({ flags: TCP_FIN | TCP_ACK }));
  h.expectSent({ flags: TCP_ACK, ack: REMOTE_SEQ + 1 });
  expect(h.conn.state).toBe('CLOSE-WAIT');
  h.takeEvents();
  return h;
}

/** LAST-ACK: CLOSE-WAIT then host EOF. */
export function lastAck(o: BuildOptions = {}): Harness {
  const h = closeWait(o);
  h.conn.shutdownSend(h.now);
  h.expectSent({ flags: TCP_FIN | TCP_ACK, seq: LOCAL_SEQ, ack: REMOTE_SEQ + 1 });
  expect(h.conn.state).toBe('LAST-ACK');
  return h;
}

/** CLOSING: both FINs crossed, ours not yet acknowledged. */
export function closing(o: BuildOptions = {}): Harness {
  const h = finWait1(o);
  h.send(seg({ flags: TCP_FIN | TCP_ACK, ack: LOCAL_SEQ }));
  h.expectSent({ flags: TCP_ACK, seq: LOCAL_SEQ + 1, ack: REMOTE_SEQ + 1 });
  expect(h.conn.state).toBe('CLOSING');
  h.takeEvents();
  return h;
}

/** TIME-WAIT: we closed first, the peer acknowledged and closed too. */
export function timeWait(o: BuildOptions = {}): Harness {
  const h = finWait2(o);
  h.send(seg({ flags: TCP_FIN | TCP_ACK, ack: LOCAL_SEQ + 1 }));
  h.expectSent({ flags: TCP_ACK, seq: LOCAL_SEQ + 1, ack: REMOTE_SEQ + 1 });
  expect(h.conn.state).toBe('TIME-WAIT');
  h.takeEvents();
  return h;
}
