/**
 * Builds the frames the NAT sends to guests and hands them to the bridge.
 *
 * How it works: frames are laid out one after another in one arena that tap
 * ports may write straight from (registered as stable memory). Every frame
 * starts with a virtio-net header, so a TCP segment of up to 64 KiB can go to
 * a vnet tap as one GSO frame with a partial checksum, and the bridge completes
 * or segments it for ports without offloads. The arena is a ring: before it
 * wraps, `drain` makes the ports write what they queued, so no queued frame is
 * ever overwritten. Nothing is allocated per frame.
 */
import type { Frame, FrameSink, Port } from '../frame.js';
import { emitEthernetHeader, ETH_HEADER_LEN, ETHERTYPE_IPV4 } from '../wire/ethernet.js';
import { VIRTIO_NET_HDR_LEN, VnetHeaderView } from '../wire/vnet.js';

/**
 * 4 MiB holds 60 maximal GSO frames: more than one flush of a busy batch
 * produces, so wrapping (and the early drain it forces) is rare.
 */
export const GUEST_OUTPUT_ARENA = 4 * 1024 * 1024;
/** Largest frame: vnet header + Ethernet + a 64 KiB IP packet. */
const MAX_FRAME = VIRTIO_NET_HDR_LEN + ETH_HEADER_LEN + 65_535;

export class GuestOutput {
  readonly arena: Buffer;
  private used = 0;
  private readonly frame: Frame;
  private readonly vnet = new VnetHeaderView();
  /** Offset of the vnet header of the frame being built. */
  private start = 0;
  framesOut = 0;
  bytesOut = 0;

  constructor(
    private readonly sink: FrameSink,
    private readonly from: Port,
    private readonly gatewayMac: number,
    /** Makes every port write what it has queued (the runtime's flush of the taps). */
    private readonly drain: (now: number) => void,
    arenaBytes = GUEST_OUTPUT_ARENA,
  ) {
    this.arena = Buffer.alloc(Math.max(arenaBytes, MAX_FRAME * 2));
    this.frame = { buf: this.arena, off: 0, len: 0, vnet: true };
  }

  /**
   * Starts a frame to `guestMac` whose IP packet will be `ipLen` bytes, and
   * returns the offset in `arena` where the IP header goes.
   */
  begin(guestMac: number, ipLen: number, now: number, etherType = ETHERTYPE_IPV4): number {
    const need = VIRTIO_NET_HDR_LEN + ETH_HEADER_LEN + ipLen;
    if (this.used + need > this.arena.length) {
      this.drain(now);
      this.used = 0;
    }
    this.start = this.used;
    this.vnet.reset(this.arena, this.start).clear();
    emitEthernetHeader(this.arena, this.start + VIRTIO_NET_HDR_LEN, guestMac, this.gatewayMac, etherType);
    return this.start + VIRTIO_NET_HDR_LEN + ETH_HEADER_LEN;
  }

  /** The virtio-net header of the frame being built (all zero after begin). */
  header(): VnetHeaderView {
    return this.vnet;
  }

  /** Sends the frame begun last, whose IP packet is `ipLen` bytes. */
  send(ipLen: number, now: number): void {
    const len = ETH_HEADER_LEN + ipLen;
    this.used = this.start + VIRTIO_NET_HDR_LEN + len;
    // Keep frames 8-byte aligned for cheaper copies in the kernel.
    this.used = (this.used + 7) & ~7;
    const f = this.frame;
    f.buf = this.arena;
    f.off = this.start + VIRTIO_NET_HDR_LEN;
    f.len = len;
    f.vnet = true;
    this.framesOut++;
    this.bytesOut += len;
    this.sink.input(this.from, f, now);
  }
}
