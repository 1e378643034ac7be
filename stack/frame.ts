import { newDropCounters, type DropCounts } from './counters.js';
import type { DropReason } from './drop-reasons.js';

/**
 * The unit that crosses the bridge.
 *
 * A Frame is a window onto memory somebody else owns (a tap port's receive
 * slot, the gateway's transmit arena). It is valid only until the call that
 * handed it over returns, plus the end of the current batch for ports that
 * queue writes (see Port.flush). Anybody who needs the bytes later copies them.
 *
 * When `vnet` is true, the VIRTIO_NET_HDR_LEN bytes just before `off` hold a
 * virtio-net header (GSO and checksum offload metadata) and the frame may be a
 * TCP super-frame of up to 64 KiB. Frame objects are reused, never allocated
 * per packet.
 */
export interface Frame {
  buf: Buffer;
  /** Offset of the Ethernet header in buf. */
  off: number;
  /** Length of the Ethernet frame (without the virtio-net header). */
  len: number;
  /** buf[off - VIRTIO_NET_HDR_LEN, off) holds a virtio-net header. */
  vnet: boolean;
}

export function newFrame(): Frame {
  return { buf: Buffer.alloc(0), off: 0, len: 0, vnet: false };
}

/** Per-port counters, as vde_switch keeps them. Plain numbers: cheap to bump. */
export class PortCounters {
  rxFrames = 0;
  rxBytes = 0;
  txFrames = 0;
  txBytes = 0;
  /** Drops by reason (stack/drop-reasons.ts), whichever layer gave up on the frame. */
  private readonly dropped = newDropCounters();

  drop(reason: DropReason): void {
    this.dropped.add(reason);
  }

  /** The drops so far by reason (allocates: for stats and tests). */
  get drops(): DropCounts {
    return this.dropped.snapshot();
  }

  snapshot(): PortCountersSnapshot {
    return {
      rxFrames: this.rxFrames,
      rxBytes: this.rxBytes,
      txFrames: this.txFrames,
      txBytes: this.txBytes,
      drops: this.dropped.snapshot(),
    };
  }
}

export interface PortCountersSnapshot {
  rxFrames: number;
  rxBytes: number;
  txFrames: number;
  txBytes: number;
  drops: DropCounts;
}

/**
 * A bridge port: a tap, a VM socket later, or the virtual gateway.
 *
 * The bridge calls `deliver` for each frame that leaves through this port and
 * `flush` once at the end of every input batch, so a port may queue writes and
 * hand them to the kernel in one native call.
 */
export interface Port {
  /** Assigned by the bridge when the port is added. */
  id: number;
  readonly name: string;
  /** Frames this port emits carry a virtio-net header, and it accepts them. */
  readonly vnet: boolean;
  readonly counters: PortCounters;
  deliver(frame: Frame, now: number): void;
  flush(now: number): void;
}

/** Something that can take frames into the bridge (the bridge itself, or a test harness). */
export interface FrameSink {
  input(from: Port, frame: Frame, now: number): void;
}
