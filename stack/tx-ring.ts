/**
 * The gateway's transmit ring: where the IPv4 and IPv6 layers build what
 * they originate (ARP, echo replies, NDP, router advertisements).
 *
 * How it works: a ring of `slots` slots of `slotSize` bytes allocated once.
 * A slot is reused only after the ring wraps, so a port that queues writes
 * until `flush` still reads intact bytes as long as one input batch produces
 * fewer than `slots` frames: every received frame yields at most one reply,
 * so the ring must be at least as long as the biggest receive batch. One
 * Frame object (vnet=false) is reused for every transmit; the sink must be
 * done with it when `input` returns (and must not re-enter the gateway
 * synchronously).
 */
import type { Frame, FrameSink, Port } from './frame.js';
import type { LinkTx } from './link.js';

/**
 * Default length of the transmit ring. It must cover the largest receive
 * batch a port hands the bridge between two flushes (one reply per frame at
 * most); 256 slots of a 1500-byte MTU cost under 400 KiB.
 */
export const GATEWAY_TX_SLOTS = 256;

export class TxRing implements LinkTx {
  readonly txBuffer: Buffer;
  private next = 0;
  private readonly frame: Frame;

  constructor(
    private readonly sink: FrameSink,
    /** The gateway port: the `from` of every frame, whose counters count them. */
    private readonly port: Port,
    readonly slotSize: number,
    readonly slots = GATEWAY_TX_SLOTS,
  ) {
    if (!Number.isInteger(slots) || slots < 1) throw new RangeError(`gateway txSlots must be a positive integer, got ${slots}`);
    this.txBuffer = Buffer.alloc(slots * slotSize);
    this.frame = { buf: this.txBuffer, off: 0, len: 0, vnet: false };
  }

  /** Offset in txBuffer of the next free slot (slotSize bytes). */
  allocTx(_now = 0): number {
    const off = this.next * this.slotSize;
    this.next = this.next + 1 === this.slots ? 0 : this.next + 1;
    return off;
  }

  /** Hands txBuffer[off, off+len) to the sink as a frame without virtio-net header. */
  transmit(off: number, len: number, now: number): void {
    const f = this.frame;
    f.buf = this.txBuffer;
    f.off = off;
    f.len = len;
    f.vnet = false;
    this.port.counters.txFrames++;
    this.port.counters.txBytes += len;
    this.sink.input(this.port, f, now);
  }
}
