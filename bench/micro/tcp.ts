/**
 * ns per TCP segment in the engine's send and receive paths: two
 * TcpConnections back to back over an in-memory link, no sockets, no
 * checksums (offloads spare usernet those on its fast path).
 *
 * How it works: A (the sender) queues data with send() and flush()es; each
 * emitted segment is written as real bytes (writeTcpHeader + payload copy,
 * what the NAT's output does) into a preallocated ring slot. B parses every
 * slot with one reused TcpView, input()s it, consumes what became readable
 * (as if the host socket took it) and flushes one ACK per batch, which A then
 * input()s. Time spent inside A's calls is the send path, inside B's the
 * receive path; both are divided by the data segments carried. Nothing here
 * allocates per segment, so GC counts measured around this loop are the
 * engine's own.
 */
import { tcpDefaults, type TcpConfig } from '../../stack/tcp/config.js';
import { TcpConnection, type TcpCloseReason, type TcpEnv, type TcpSegmentOut } from '../../stack/tcp/connection.js';
import { TcpView, writeTcpHeader } from '../../stack/wire/tcp.js';
import { copyBytes } from '../../stack/tcp/byte-copy.js';
import { yieldNow } from './gc-counter.js';
import { newDropCounters } from '../../stack/counters.js';

/**
 * Fixed initial sequence numbers, both above 2^30: V8 keeps integers below
 * 2^30 as small integers, so with random ones the run allocates or not
 * depending on where the sequence numbers happen to lie (B sends no data, so
 * its sequence number never moves). These are the worst case, every run.
 */
const ISS_A = 0xc000_0000;
const ISS_B = 0xf000_0000;

/** Ring of segments in flight one way. Sized for a full 4 MiB window of the smallest segments. */
class Link {
  readonly slot: number;
  readonly count: number;
  readonly buf: Buffer;
  readonly lens: Uint32Array;
  head = 0;
  size = 0;
  overflow = 0;
  constructor(maxPayload: number, windowBytes: number) {
    this.slot = Math.ceil((maxPayload + 60) / 64) * 64;
    this.count = Math.ceil((2 * windowBytes) / maxPayload) + 64;
    this.buf = Buffer.alloc(this.slot * this.count);
    this.lens = new Uint32Array(this.count);
  }
}

class Side implements TcpEnv {
  readonly tcpDrops = newDropCounters();
  conn: TcpConnection | null = null;
  closed: TcpCloseReason | null = null;
  constructor(readonly out: Link) {}
  emit(s: TcpSegmentOut): void {
    const l = this.out;
    if (l.size === l.count) {
      l.overflow++;
      return;
    }
    const i = (l.head + l.size) % l.count;
    const off = i * l.slot;
    const hl = writeTcpHeader(l.buf, off, s, s.options);
    if (s.len > 0) copyBytes(l.buf, off + hl, s.buf, s.off, s.len);
    l.lens[i] = hl + s.len;
    l.size++;
  }
  onEstablished(): void {}
  onReadable(): void {}
  onSendSpace(): void {}
  onClosed(reason: TcpCloseReason): void {
    this.closed = reason;
  }
}

export interface TcpMicroResult {
  sendNsPerSegment: number;
  recvNsPerSegment: number;
  segments: number;
  bytes: number;
  /** Payload bytes per second through both paths on one core. */
  gbps: number;
  seconds: number;
}

/** `onSteady` runs after the warm-up, right before the timed part. */
export async function tcpSegments(maxSegmentLen: number, seconds: number, onSteady?: () => void): Promise<TcpMicroResult> {
  const cfg: TcpConfig = { ...tcpDefaults, maxSegmentLen, mss: Math.min(1460, maxSegmentLen) };
  const ab = new Link(maxSegmentLen, cfg.recvBufferMax);
  const ba = new Link(64, 64 * 1024);
  const a = new Side(ab);
  const b = new Side(ba);
  const view = new TcpView();
  const now = performance.now();
  const src = Buffer.alloc(256 * 1024, 0x5a);

  /** Delivers everything queued on `l` to `to`; creates B from the first SYN. */
  const deliver = (l: Link, to: Side, now: number): number => {
    let segs = 0;
    while (l.size > 0) {
      const off = l.head * l.slot;
      const len = l.lens[l.head];
      l.head = (l.head + 1) % l.count;
      l.size--;
      if (view.reset(l.buf, off, len) !== null || view.parseOptions() !== null) throw new Error('bad segment on the link');
      if (to.conn === null) {
        to.conn = TcpConnection.fromSyn(view, cfg, to, now, ISS_B);
        continue;
      }
      to.conn.input(view, now);
      if (view.payloadLength > 0) segs++;
    }
    return segs;
  };

  a.conn = TcpConnection.connect(cfg, a, now, 40_000, 80, ISS_A);
  deliver(ab, b, now);
  deliver(ba, a, now);
  a.conn.flush(now);
  deliver(ab, b, now);
  if (a.conn.state !== 'ESTABLISHED' || b.conn?.state !== 'ESTABLISHED') {
    throw new Error(`handshake failed: ${a.conn.state} / ${b.conn?.state}`);
  }
  const A = a.conn;
  const B = b.conn;

  // Sums live in typed storage, not in variables the closure captures: a captured
  // double (or a count beyond 2^30) is a new heap number on every store, which is
  // the harness allocating, not the engine (its GCs would be counted as the engine's).
  const SEND_MS = 0;
  const RECV_MS = 1;
  const SEGMENTS = 2;
  const BYTES = 3;
  const acc = new Float64Array(4);
  const round = (): void => {
    const t0 = performance.now();
    let space = A.sendSpace();
    while (space > 0) {
      const n = A.send(src, 0, space < src.length ? space : src.length, t0);
      if (n === 0) break;
      space -= n;
    }
    A.flush(t0);
    const t1 = performance.now();
    acc[SEGMENTS] += deliver(ab, b, t0);
    const avail = B.recvAvailable();
    acc[BYTES] += avail;
    B.recvConsume(avail, t0);
    B.flush(t0);
    const t2 = performance.now();
    deliver(ba, a, t0);
    A.flush(t0);
    const t3 = performance.now();
    acc[SEND_MS] += t1 - t0 + (t3 - t2);
    acc[RECV_MS] += t2 - t1;
  };
  const warmUntil = performance.now() + 300;
  while (performance.now() < warmUntil) round();
  acc.fill(0);
  onSteady?.();
  const start = performance.now();
  const end = start + seconds * 1000;
  while (performance.now() < end) {
    const slice = Math.min(end, performance.now() + 5);
    while (performance.now() < slice) round();
    await yieldNow();
  }
  const segments = acc[SEGMENTS];
  const bytes = acc[BYTES];
  const sendMs = acc[SEND_MS];
  const recvMs = acc[RECV_MS];
  const el = (performance.now() - start) / 1000;
  if (ab.overflow > 0 || ba.overflow > 0) throw new Error(`link ring overflowed (${ab.overflow}/${ba.overflow})`);
  if (segments === 0) throw new Error('no data segment crossed');
  return {
    sendNsPerSegment: (sendMs * 1e6) / segments,
    recvNsPerSegment: (recvMs * 1e6) / segments,
    segments,
    bytes,
    gbps: (bytes * 8) / el / 1e9,
    seconds: el,
  };
}
