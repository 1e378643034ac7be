/**
 * A bridge port over a tap fd.
 *
 * How it works:
 * - Receive: the addon reads up to RX_SLOTS frames per wake-up into one
 *   ArrayBuffer allocated here once, and calls onBatch(count). Each frame goes
 *   through the bridge via one reused Frame object; then the bridge flushes
 *   every port, so frames queued for other taps are written while the slots
 *   they point into are still intact.
 * - Transmit: deliver() only queues writev descriptors; flush() hands the whole
 *   batch to the addon in one call. Frames in memory that stays valid until
 *   flush (registered with registerStable: tap receive areas, the gateway's
 *   arena) are written from where they are. Anything else is copied into this
 *   port's own transmit area first.
 * - A vnet tap gets a virtio-net header on every frame: the frame's own when it
 *   has one (verbatim crossing between vnet taps), else ten zero bytes.
 * - A guest without a MAC (gVisor's tap sends from 00:00:00:00:00:00) gets a
 *   stand-in MAC chosen here: see stack/zero-source-mac.ts.
 */
import { newFrame, PortCounters, type Frame, type Port } from '../stack/frame.js';
import { VIRTIO_NET_HDR_LEN } from '../stack/wire/vnet.js';
import type { FrameIo, TapHandle } from './native/types.js';
import { native } from './native/addon.js';
import { randomBytes } from 'node:crypto';
import { randomLocalMac, standInForZeroSource } from '../stack/zero-source-mac.js';
import { deferCopiesFrom, settleDeferredCopies, stopDeferringFrom } from '../stack/tcp/receive-buffer.js';

/**
 * Frames per receive batch. 64 amortises the JS<->native crossing (about a
 * microsecond) over many frames while keeping one batch's work, and the latency
 * it adds to the last frame, short; with 64 KiB super-frames it is 4 MiB of
 * slots per tap.
 */
export const RX_SLOTS = 64;
/** A GSO super-frame: 64 KiB IP packet + Ethernet + virtio header, rounded up to a cache line. */
const SUPER_FRAME_SLOT = 65_600;
/** Descriptors per flush: at most two per frame (header + frame). */
const TX_DESCRIPTORS = 512;
/** Copy area for frames whose memory does not live until flush (offload segments, test buffers). */
const TX_COPY_BYTES = 1 << 20;
const EAGAIN = 11;
/**
 * The addon registers at most 64 buffers per tap: this port's receive area,
 * copy area and zero header take three; the rest serve registerStable (the
 * gateway's and NAT's arenas, other taps' receive areas). Past this, frames
 * from further taps are copied instead of written in place.
 */
const MAX_STABLE_EXTRA = 60;
const EMSGSIZE = 90;

export interface TapPortOptions {
  mtu: number;
  onError: (port: TapPort, err: Error) => void;
  /**
   * Called once, when the tap first refuses a frame as too big (EMSGSIZE, with its length):
   * gVisor's tap compares the whole frame, Ethernet header included, with its MTU.
   */
  onTooBig?: (port: TapPort, frameLen: number) => void;
  /** Called once, on the first frame whose all-zero source MAC was replaced by `standInMac`. */
  onZeroSource?: (port: TapPort) => void;
}

export interface BatchSink {
  input(from: Port, frame: Frame, now: number): void;
  flush(now: number): void;
}

export class TapPort implements Port {
  id = -1;
  readonly name: string;
  readonly vnet: boolean;
  readonly counters = new PortCounters();
  readonly handle: TapHandle;

  private readonly io: FrameIo;
  private readonly rx: Buffer;
  private readonly lengths = new Uint32Array(RX_SLOTS);
  private readonly slotSize: number;
  private readonly frame = newFrame();
  private readonly desc = new Uint32Array(TX_DESCRIPTORS * 4);
  private descWords = 0;
  private pendingFrames = 0;
  private readonly txCopy: Buffer;
  private txCopyIndex: number;
  private txCopyUsed = 0;
  private readonly zeroHeaderIndex: number;
  private readonly stable = new Map<ArrayBufferLike, number>();
  /** Areas registered with registerStable beyond the port's own. */
  private stableExtra = 0;
  private closed = false;
  /** The MAC given to a guest that sends from 00:00:00:00:00:00 (gVisor's tap). */
  readonly standInMac = randomLocalMac(randomBytes(6));
  /** Frames whose all-zero source was replaced by standInMac. */
  zeroSourceFrames = 0;
  private readonly onZeroSource: ((port: TapPort) => void) | undefined;
  private readonly onTooBig: ((port: TapPort, frameLen: number) => void) | undefined;
  private tooBigReported = false;

  constructor(
    handle: TapHandle,
    private readonly sink: BatchSink,
    private readonly clock: () => number,
    opts: TapPortOptions,
  ) {
    this.handle = handle;
    this.name = handle.name;
    this.vnet = handle.vnetHdr;
    // Plain taps never hand us more than MTU + Ethernet + a VLAN tag; vnet taps
    // with TSO can hand over 64 KiB whatever the MTU.
    const plain = Math.ceil((opts.mtu + 14 + 4 + VIRTIO_NET_HDR_LEN) / 64) * 64;
    this.slotSize = this.vnet ? Math.max(SUPER_FRAME_SLOT, plain) : plain;
    const rxArea = new ArrayBuffer(this.slotSize * RX_SLOTS);
    this.rx = Buffer.from(rxArea);
    this.txCopy = Buffer.alloc(TX_COPY_BYTES);
    this.io = native.createFrameIo({
      fd: handle.fd,
      rx: rxArea,
      slotSize: this.slotSize,
      slotCount: RX_SLOTS,
      lengths: this.lengths,
      onBatch: (count) => this.onBatch(count),
      onError: (err) => opts.onError(this, err),
    });
    this.txCopyIndex = this.io.registerBuffer(this.txCopy.buffer as ArrayBuffer);
    this.zeroHeaderIndex = this.io.registerBuffer(new ArrayBuffer(VIRTIO_NET_HDR_LEN));
    this.stable.set(rxArea, 0);
    // TCP may leave big segments in the slots until the end of the batch (written to the host
    // from here): settleDeferredCopies() runs before every read into them.
    deferCopiesFrom(this.rx);
    this.onZeroSource = opts.onZeroSource;
    this.onTooBig = opts.onTooBig;
  }

  /** The memory frames received on this port live in. */
  get rxArea(): ArrayBufferLike {
    return this.rx.buffer;
  }

  /** Lets deliver() write frames in this memory without a copy: it must stay unchanged until flush(). */
  registerStable(area: ArrayBufferLike): void {
    if (this.stable.has(area)) return;
    if (this.stableExtra >= MAX_STABLE_EXTRA) return;
    this.stable.set(area, this.io.registerBuffer(area as ArrayBuffer));
    this.stableExtra++;
  }

  /** Forgets memory given to registerStable (a port leaving the bridge): its frames are copied from now on. */
  unregisterStable(area: ArrayBufferLike): void {
    const index = this.stable.get(area);
    if (index === undefined || index === 0) return;
    this.stable.delete(area);
    this.stableExtra--;
    if (!this.closed) this.io.unregisterBuffer(index);
  }

  start(): void {
    this.io.start();
  }

  /** Reads and handles a batch now (a busy poll saw the tap readable); false when nothing was there. */
  readNow(): boolean {
    settleDeferredCopies();
    const n = this.io.readNow();
    if (n > 0) this.onBatch(n);
    return n > 0;
  }

  private onBatch(count: number): void {
    const now = this.clock();
    const frame = this.frame;
    const hdr = this.vnet ? VIRTIO_NET_HDR_LEN : 0;
    for (let i = 0; i < count; i++) {
      const len = this.lengths[i];
      if (len < hdr + 14) {
        this.counters.drop('runt');
        continue;
      }
      frame.buf = this.rx;
      frame.off = i * this.slotSize + hdr;
      frame.len = len - hdr;
      frame.vnet = this.vnet;
      if (standInForZeroSource(this.rx, frame.off, frame.len, this.standInMac) && this.zeroSourceFrames++ === 0) {
        this.onZeroSource?.(this);
      }
      this.sink.input(this, frame, now);
    }
    this.sink.flush(now);
    // The slots are read into again after this returns.
    settleDeferredCopies();
  }

  deliver(frame: Frame, now: number): void {
    if (this.closed) return;
    if (frame.vnet && !this.vnet) {
      // The bridge completes offloads before handing frames to plain ports.
      this.counters.drop('vnet-to-plain');
      return;
    }
    if (this.descWords + 8 > this.desc.length) this.flush(now);
    let index = this.stable.get(frame.buf.buffer);
    let off = frame.buf.byteOffset + frame.off;
    let len = frame.len;
    if (frame.vnet) {
      off -= VIRTIO_NET_HDR_LEN;
      len += VIRTIO_NET_HDR_LEN;
    }
    if (index === undefined) {
      if (len > this.txCopy.length) {
        this.counters.drop('too-big');
        return;
      }
      if (this.txCopyUsed + len > this.txCopy.length) this.flush(now);
      frame.buf.copy(this.txCopy, this.txCopyUsed, off - frame.buf.byteOffset, off - frame.buf.byteOffset + len);
      index = this.txCopyIndex;
      off = this.txCopyUsed;
      this.txCopyUsed += len;
    }
    const d = this.desc;
    let w = this.descWords;
    if (this.vnet && !frame.vnet) {
      d[w] = this.zeroHeaderIndex;
      d[w + 1] = 0;
      d[w + 2] = VIRTIO_NET_HDR_LEN;
      d[w + 3] = 1;
      w += 4;
    }
    d[w] = index;
    d[w + 1] = off;
    d[w + 2] = len;
    d[w + 3] = 0;
    this.descWords = w + 4;
    this.pendingFrames++;
  }

  flush(_now: number): void {
    const pending = this.pendingFrames;
    if (pending === 0) return;
    this.pendingFrames = 0;
    this.descWords = 0;
    this.txCopyUsed = 0;
    if (this.closed) return;
    let start = 0;
    let remaining = pending;
    while (remaining > 0) {
      const sent = this.io.send(start === 0 ? this.desc : this.desc.subarray(start), remaining);
      if (sent >= remaining) break;
      // A tap's queue only fills when the guest stops reading: drop the rest, as a NIC does.
      if (this.io.lastError === EAGAIN) {
        for (let i = sent; i < remaining; i++) this.counters.drop('tx-queue-full');
        break;
      }
      // The kernel refused one frame (say, a bad virtio header): drop it, keep the others.
      for (let skip = sent; skip > 0; start += 4) if (this.desc[start + 3] === 0) skip--;
      let refusedLen = 0;
      for (let more = 1; more !== 0; start += 4) {
        refusedLen += this.desc[start + 2];
        more = this.desc[start + 3];
      }
      if (this.io.lastError === EMSGSIZE) {
        this.counters.drop('tx-too-big');
        if (!this.tooBigReported) {
          this.tooBigReported = true;
          this.onTooBig?.(this, refusedLen);
        }
      } else {
        this.counters.drop('tx-error');
      }
      remaining -= sent + 1;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    stopDeferringFrom(this.rx);
    this.io.close();
  }
}
