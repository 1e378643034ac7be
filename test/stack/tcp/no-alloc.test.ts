/**
 * The steady TCP data path allocates nothing per segment: two TcpConnections
 * back to back over an in-memory link (preallocated slots, headers written
 * with writeTcpHeader, payloads copied with copyBytes, segments parsed with
 * one reused TcpView), a fake clock with fractional milliseconds like
 * performance.now(), and initial sequence numbers above 2^30 so every
 * sequence number is one V8 would have to box.
 *
 * Same measurement as the bridge's allocation check: the transfer runs
 * synchronously, so nothing else allocates meanwhile; the GC
 * PerformanceObserver records every collection that starts during it and the
 * heap size around it catches growth that did not trigger one. An allocation
 * of a boxed number per segment over 100,000 segments fills the young
 * generation. A control run with an allocating link proves the
 * check can fail. The window is 256 KiB so ACKs (one per round) are frequent
 * and their code gets optimised during the warm-up.
 */
import { describe, expect, it } from 'vitest';
import { copyBytes } from '../../../stack/tcp/byte-copy.js';
import { deferCopiesFrom, settleDeferredCopies, stopDeferringFrom } from '../../../stack/tcp/receive-buffer.js';
import { tcpDefaults, type TcpConfig } from '../../../stack/tcp/config.js';
import { TcpConnection, type TcpCloseReason, type TcpEnv, type TcpSegmentOut } from '../../../stack/tcp/connection.js';
import { TcpView, writeTcpHeader } from '../../../stack/wire/tcp.js';
import { newDropCounters } from '../../../stack/counters.js';
import { measureAllocation } from '../../helpers/gc-measure.js';

const ISS_A = 0xc000_0000;
const ISS_B = 0xf000_0000;

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
    this.count = Math.ceil((2 * windowBytes) / Math.min(maxPayload, 1448)) + 64;
    this.buf = Buffer.alloc(this.slot * this.count);
    this.lens = new Uint32Array(this.count);
  }
}

class Side implements TcpEnv {
  readonly tcpDrops = newDropCounters();
  conn: TcpConnection | null = null;
  closed: TcpCloseReason | null = null;
  /** The control: copy each payload through a fresh view, as the code did before. */
  allocate = false;
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
    if (this.allocate) l.buf.set(s.buf.subarray(s.off, s.off + s.len), off + hl);
    else copyBytes(l.buf, off + hl, s.buf, s.off, s.len);
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

interface Pair {
  a: Side;
  b: Side;
  ab: Link;
  ba: Link;
  view: TcpView;
  src: Buffer;
  clock: { now: number };
  cfg: TcpConfig;
  segments: number;
  bytes: number;
}

/** `now` is a parameter so it stays one boxed number: a double loaded from a field and passed on in a loop is boxed per call. */
function deliver(p: Pair, l: Link, to: Side, now: number): void {
  while (l.size > 0) {
    const off = l.head * l.slot;
    const len = l.lens[l.head];
    l.head = l.head + 1 === l.count ? 0 : l.head + 1;
    l.size--;
    if (p.view.reset(l.buf, off, len) !== null || p.view.parseOptions() !== null) throw new Error('bad segment on the link');
    if (to.conn === null) {
      to.conn = TcpConnection.fromSyn(p.view, p.cfg, to, now, ISS_B);
      continue;
    }
    to.conn.input(p.view, now);
    if (p.view.payloadLength > 0) p.segments++;
  }
}

function connect(maxSegmentLen: number): Pair {
  const cfg: TcpConfig = { ...tcpDefaults, maxSegmentLen, recvBufferMax: 256 * 1024, sendBufferMax: 256 * 1024 };
  const ab = new Link(Math.max(maxSegmentLen, 1448), cfg.recvBufferMax);
  const ba = new Link(64, 64 * 1024);
  const p: Pair = {
    a: new Side(ab),
    b: new Side(ba),
    ab,
    ba,
    view: new TcpView(),
    src: Buffer.alloc(256 * 1024, 0x5a),
    clock: { now: 1000.25 },
    cfg,
    segments: 0,
    bytes: 0,
  };
  p.a.conn = TcpConnection.connect(cfg, p.a, p.clock.now, 40_000, 80, ISS_A);
  deliver(p, ab, p.b, p.clock.now);
  deliver(p, ba, p.a, p.clock.now);
  p.a.conn.flush(p.clock.now);
  deliver(p, ab, p.b, p.clock.now);
  expect(p.a.conn.state).toBe('ESTABLISHED');
  expect(p.b.conn?.state).toBe('ESTABLISHED');
  return p;
}

/** Host data in at A (both the copying send() and the zero-copy sendWritable/sendCommit), out at B. */
function transfer(p: Pair, segments: number): void {
  const A = p.a.conn!;
  const B = p.b.conn!;
  const until = p.segments + segments;
  let round = 0;
  while (p.segments < until) {
    // Fractional milliseconds, as performance.now() gives: a boxed number if anything passes it on badly.
    p.clock.now += 0.137;
    const now = p.clock.now;
    if ((round++ & 1) === 0) {
      let space = A.sendSpace();
      while (space > 0) {
        const n = A.send(p.src, 0, space < p.src.length ? space : p.src.length, now);
        if (n === 0) break;
        space -= n;
      }
    } else {
      for (;;) {
        const w = A.sendWritable();
        if (w.len === 0) break;
        // As a host socket reading into the ring would: fill the region, then commit.
        w.buf.fill(0x33, w.off, w.off + w.len);
        A.sendCommit(w.len, now);
      }
    }
    A.flush(now);
    deliver(p, p.ab, p.b, now);
    // The host side takes the data without a copy.
    for (;;) {
      const r = B.recvPeek();
      if (r.len === 0) break;
      p.bytes += r.len;
      B.recvConsume(r.len, now);
    }
    // The end of a tap batch: the link's slots may be reused after this (deferred copies).
    settleDeferredCopies();
    B.flush(now);
    deliver(p, p.ba, p.a, now);
    A.flush(now);
  }
  if (p.ab.overflow > 0 || p.ba.overflow > 0) throw new Error('link overflow');
}

const measure = measureAllocation;

/**
 * Warms until steady: the optimising compiler runs on background threads, and
 * on a loaded machine its code for the once-per-ACK paths can arrive after
 * the fixed warm-up, leaving their boxing for the measured run. Warm-up
 * continues in chunks, with a pause for those threads, until a chunk runs
 * without a collection and within `perSegment` bytes of growth per segment
 * (at most maxChunks; a path that allocates per segment never gets there, and
 * the measured run then fails as it should).
 */
async function warmUntilSteady(p: Pair, chunkSegments: number, perSegment: number, maxChunks = 10): Promise<void> {
  for (let i = 0; i < maxChunks; i++) {
    await new Promise((r) => setTimeout(r, 50));
    const r = await measure(() => transfer(p, chunkSegments));
    if (r.gcs === 0 && r.grew / chunkSegments < perSegment) return;
  }
}

const SEGMENTS = 100_000;

describe('TCP data path: no allocation per segment', () => {
  it('the measurement detects a link that allocates one view per segment', async () => {
    const p = connect(0);
    transfer(p, 50_000);
    p.a.allocate = true;
    const r = await measure(() => transfer(p, SEGMENTS));
    expect(r.gcs > 0 || r.grew / SEGMENTS > 64).toBe(true);
  });

  it('MSS segments (send, receive, ACKs, congestion control, RTT) allocate nothing: the growth per added segment', async () => {
    const p = connect(0);
    // Warm-up: JIT, ring growth, copy tables, cwnd opening to the full window.
    transfer(p, 100_000);
    await warmUntilSteady(p, 50_000, 4);
    const bytes0 = p.bytes;
    // Two runs, SEGMENTS and 3 x SEGMENTS: what a run allocates once (code
    // the JIT installs, feedback, the harness's timers) is in both and cancels
    // out; what is left is per segment. With the test workers' young
    // generation (vitest.config.ts: 16 MiB) neither run is interrupted by a
    // collection, so the growth is what was allocated. A view per segment is
    // ~100 bytes, one boxed sequence number 12-16; what is left (~2 bytes per
    // segment here) is per round trip: once-per-ACK code (RTT sample, window
    // update) and the harness's own clock.
    const short = await measure(() => transfer(p, SEGMENTS));
    const long = await measure(() => transfer(p, 3 * SEGMENTS));
    expect(short.gcs + long.gcs).toBe(0);
    expect((long.grew - short.grew) / (2 * SEGMENTS)).toBeLessThan(4);
    expect(p.bytes - bytes0).toBeGreaterThan(4 * SEGMENTS * 1400);
    expect(p.a.conn!.counters.retransmits).toBe(0);
    expect(p.a.conn!.state).toBe('ESTABLISHED');
  });

  it('64 KiB TSO segments allocate nothing either', async () => {
    const p = connect(65_535 - 20 - 60);
    // A longer warm-up: 64 KiB segments make fewer calls per byte, so the JIT takes longer to settle.
    transfer(p, 60_000);
    await warmUntilSteady(p, 10_000, 64);
    const r = await measure(() => transfer(p, 40_000));
    expect(r.gcs).toBe(0);
    // Four segments per round trip here, so the per-ACK remainder shows more per segment.
    expect(r.grew / 40_000).toBeLessThan(64);
  });

  it('64 KiB segments handed to the host from the link they came on (deferred copies) allocate nothing', async () => {
    const p = connect(65_535 - 20 - 60);
    // As a tap's receive area: big in-order segments stay there until read or settled.
    deferCopiesFrom(p.ab.buf);
    try {
      transfer(p, 60_000);
      // The receiver hands out the link's own bytes (checked once, outside the measurement).
      const now = (p.clock.now += 0.137);
      p.a.conn!.send(p.src, 0, 100_000, now);
      p.a.conn!.flush(now);
      deliver(p, p.ab, p.b, now);
      expect(p.b.conn!.recvPeek().buf).toBe(p.ab.buf);
      await warmUntilSteady(p, 10_000, 64);
      const r = await measure(() => transfer(p, 40_000));
      expect(r.gcs).toBe(0);
      expect(r.grew / 40_000).toBeLessThan(64);
    } finally {
      stopDeferringFrom(p.ab.buf);
    }
  });
});
