/**
 * A bridge port over one stream connection carrying length-prefixed frames:
 * a QEMU VM on `-netdev stream` (or anything speaking passt's framing: a
 * 32-bit big-endian length before each plain Ethernet frame).
 *
 * How it works
 * - Receive: native/socket_io.cc (StreamIo) reads into one ring allocated
 *   here once and parses complete frames in place; onBatch gets [offset,
 *   length] pairs and hands each frame to the bridge through one reused
 *   Frame, then flushes every port: frames queued elsewhere that point into
 *   the ring are written before the ring moves on.
 * - Frames are plain (no virtio-net header): the bridge completes offloads
 *   (checksums, segmentation of GSO super-frames) before delivering to us.
 * - Transmit: deliver() copies the frame behind its length prefix into the
 *   transmit area; flush() sends the whole batch with one send(). A peer that
 *   does not keep up fills the native backlog; past its cap whole batches are
 *   dropped and counted ("tx-backlog-full"), never half a frame.
 * - A zero-length or runt frame is counted and skipped; a length beyond
 *   maxFrame (MTU + Ethernet header + a VLAN tag) cannot be skipped safely
 *   (the stream has no resync point), so the connection ends with a log line
 *   and only this port goes away.
 */
import { newFrame, PortCounters, type Frame, type Port } from '../stack/frame.js';
import type { BatchSink } from './tap-port.js';
import { socketIo, STREAM_BAD_LENGTH, STREAM_EOF, STREAM_ERRNO, STREAM_TRUNCATED, type StreamIo } from './native/socket-io.js';
import { errnoName } from './errors.js';

/**
 * Receive ring: 256 KiB is what one read can take from a socket buffer in a
 * burst (about 170 full frames), and it must also hold one largest frame.
 */
const RING_BYTES = 256 * 1024;
/** Transmit area per batch: 64 full frames with prefixes fit; a fuller batch is sent in pieces. */
const TX_BYTES = 128 * 1024;
/** Frames per onBatch call; matches the tap ports' batch. */
const ENTRY_PAIRS = 64;
const ETH_HLEN = 14;
const PREFIX = 4;

export interface StreamPortOptions {
  /** Largest frame accepted and sent (MTU + Ethernet header + VLAN tag). */
  maxFrame: number;
  /** The connection ended (reason for the log: null for a clean EOF); the owner removes the port. */
  onEnd: (port: StreamPort, reason: string | null) => void;
}

export class StreamPort implements Port {
  id = -1;
  readonly vnet = false;
  readonly counters = new PortCounters();
  private readonly io: StreamIo;
  private readonly rx: Buffer;
  private readonly tx: Buffer;
  private readonly entries = new Uint32Array(ENTRY_PAIRS * 2);
  private readonly frame = newFrame();
  private readonly maxFrame: number;
  private txUsed = 0;
  private txFrames = 0;
  private closed = false;

  constructor(
    fd: number,
    readonly name: string,
    private readonly sink: BatchSink,
    private readonly clock: () => number,
    opts: StreamPortOptions,
  ) {
    this.maxFrame = opts.maxFrame;
    const rxArea = new ArrayBuffer(Math.max(RING_BYTES, opts.maxFrame + PREFIX));
    const txArea = new ArrayBuffer(Math.max(TX_BYTES, opts.maxFrame + PREFIX));
    this.rx = Buffer.from(rxArea);
    this.tx = Buffer.from(txArea);
    this.io = socketIo.createStreamIo({
      fd,
      rx: rxArea,
      tx: txArea,
      maxFrame: opts.maxFrame,
      entries: this.entries,
      onBatch: (count) => this.onBatch(count),
      onClose: (kind, value) => opts.onEnd(this, this.endReason(kind, value)),
    });
  }

  start(): void {
    this.io.start();
  }

  private endReason(kind: number, value: number): string | null {
    switch (kind) {
      case STREAM_EOF:
        return null;
      case STREAM_BAD_LENGTH:
        this.counters.drop('bad-length');
        return `bad frame length ${value} (at most ${this.maxFrame}): closing the connection`;
      case STREAM_TRUNCATED:
        this.counters.drop('truncated');
        return `peer closed inside a frame (${value} bytes of it left unparsed)`;
      case STREAM_ERRNO:
      default:
        return `socket error ${errnoName(value)}`;
    }
  }

  private onBatch(count: number): void {
    const now = this.clock();
    const frame = this.frame;
    const e = this.entries;
    for (let i = 0; i < count; i++) {
      const len = e[2 * i + 1];
      if (len < ETH_HLEN) {
        this.counters.drop(len === 0 ? 'zero-length' : 'runt');
        continue;
      }
      frame.buf = this.rx;
      frame.off = e[2 * i];
      frame.len = len;
      frame.vnet = false;
      this.sink.input(this, frame, now);
    }
    this.sink.flush(now);
  }

  deliver(frame: Frame, now: number): void {
    if (this.closed) return;
    if (frame.vnet) {
      this.counters.drop('vnet-to-plain');
      return;
    }
    const len = frame.len;
    if (len > this.maxFrame) {
      this.counters.drop('too-big');
      return;
    }
    if (this.txUsed + PREFIX + len > this.tx.length) this.flush(now);
    const tx = this.tx;
    let o = this.txUsed;
    tx[o] = len >>> 24;
    tx[o + 1] = (len >>> 16) & 0xff;
    tx[o + 2] = (len >>> 8) & 0xff;
    tx[o + 3] = len & 0xff;
    o += PREFIX;
    frame.buf.copy(tx, o, frame.off, frame.off + len);
    this.txUsed = o + len;
    this.txFrames++;
  }

  flush(_now: number): void {
    const used = this.txUsed;
    if (used === 0) return;
    const frames = this.txFrames;
    this.txUsed = 0;
    this.txFrames = 0;
    if (this.closed) return;
    const r = this.io.send(used);
    if (r < 0) {
      const reason = r === -105 /* ENOBUFS */ ? 'tx-backlog-full' : 'tx-error';
      for (let i = 0; i < frames; i++) this.counters.drop(reason);
    }
  }

  /** Bytes waiting in the native backlog (a slow reader). */
  get backlog(): number {
    return this.closed ? 0 : this.io.backlog;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.io.close();
  }
}
