/**
 * The gateway's one transmit arena: every frame the stack sends towards
 * guests is built here, whoever builds it — the NAT's TCP segments and UDP
 * and ICMP packets (`begin`/`send`), and what the IPv4 and IPv6 layers
 * originate: ARP, echo replies, NDP, router advertisements
 * (`allocTx`/`transmit`, the LinkTx of stack/link.ts). It is registered once
 * with every port that writes from stable memory.
 *
 * How it works: frames are laid out one after another in one arena that tap
 * ports may write straight from. Every frame leaves room for a virtio-net
 * header in front, so a TCP segment of up to 64 KiB can go to a vnet tap as
 * one GSO frame with a partial checksum (`begin`/`send`, vnet=true), and the
 * bridge completes or segments it for ports without offloads; the layers'
 * own frames leave without one (vnet=false). The arena is a ring: before it
 * wraps, `drain` makes the ports write what they queued, so no queued frame
 * is ever overwritten. One Frame object is reused for every frame: the sink
 * must be done with it when `input` returns (and must not re-enter the
 * gateway synchronously). Nothing is allocated per frame.
 */
import type { Frame, FrameSink, Port } from './frame.js';
import type { LinkTx } from './link.js';
import { emitEthernetHeader, ETH_HEADER_LEN, ETHERTYPE_IPV4 } from './wire/ethernet.js';
import { VIRTIO_NET_HDR_LEN, VnetHeaderView } from './wire/vnet.js';

/**
 * 512 KiB: 7 maximal GSO frames, or ~340 full 1500-byte frames, before a wrap
 * makes the ports write what they queued. Small on purpose: a TCP segment's
 * payload is copied in here and the tap write copies it out again moments
 * later, so a small arena is still in the core's L2 cache (1 MiB here) when
 * the kernel reads it, where a 4 MiB one cycled through L3. A wrap costs one
 * early flush (a native call per port with frames queued). Host->ns at MTU
 * 65520, 4 MiB vs 512 KiB, three alternating A/Bs (bench/PROFILE.md §12):
 * 4.14 / 4.33 / 4.64 vs 4.73 / 4.69 / 5.46 Gbit/s, CPU 1.47 / 1.61 / 1.43 vs
 * 1.31 / 1.56 / 1.39 s per GB.
 */
export const GUEST_OUTPUT_ARENA = 512 * 1024;
/** Largest frame: vnet header + Ethernet + a 64 KiB IP packet. */
const MAX_FRAME = VIRTIO_NET_HDR_LEN + ETH_HEADER_LEN + 65_535;

export class GuestOutput implements LinkTx {
  readonly arena: Buffer;
  private used = 0;
  private readonly frame: Frame;
  private readonly vnet = new VnetHeaderView();
  /** Offset of the vnet header of the frame being built. */
  private start = 0;
  /** Where `used` stood after the last allocTx (its slot may be given back in part). */
  private slotEnd = -1;
  /** Frames and bytes sent with `send` (the NAT's). */
  framesOut = 0;
  bytesOut = 0;

  constructor(
    private readonly sink: FrameSink,
    /** The gateway port: the `from` of every frame; `transmit` counts in its counters. */
    private readonly from: Port,
    private readonly gatewayMac: number,
    /** Makes every port write what it has queued (the runtime's flush of the taps). */
    private readonly drain: (now: number) => void,
    arenaBytes = GUEST_OUTPUT_ARENA,
    /** Room `allocTx` reserves: the largest frame the layers originate (mtu + Ethernet header). */
    private readonly slotSize = 1500 + ETH_HEADER_LEN,
  ) {
    if (!Number.isInteger(arenaBytes) || arenaBytes < 1) throw new RangeError(`transmit arena size must be a positive integer, got ${arenaBytes}`);
    this.arena = Buffer.alloc(Math.max(arenaBytes, MAX_FRAME * 2));
    this.frame = { buf: this.arena, off: 0, len: 0, vnet: true };
  }

  get txBuffer(): Buffer {
    return this.arena;
  }

  /** Makes room for `need` bytes, draining the ports first when the arena would wrap. */
  private reserve(need: number, now: number): void {
    if (this.used + need > this.arena.length) {
      this.drain(now);
      this.used = 0;
    }
  }

  /**
   * Starts a frame to `guestMac` whose IP packet will be `ipLen` bytes, and
   * returns the offset in `arena` where the IP header goes.
   */
  begin(guestMac: number, ipLen: number, now: number, etherType = ETHERTYPE_IPV4): number {
    this.reserve(VIRTIO_NET_HDR_LEN + ETH_HEADER_LEN + ipLen, now);
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

  /** Reserves room for one frame of up to slotSize bytes (Ethernet header included) and returns its offset. */
  allocTx(now = 0): number {
    this.reserve(VIRTIO_NET_HDR_LEN + this.slotSize, now);
    const off = this.used + VIRTIO_NET_HDR_LEN;
    this.used = (off + this.slotSize + 7) & ~7;
    this.slotEnd = this.used;
    return off;
  }

  /** Hands arena[off, off+len) to the sink as a frame without virtio-net header. */
  transmit(off: number, len: number, now: number): void {
    // The slot allocated last gives back what the frame did not use.
    if (this.used === this.slotEnd && off + len <= this.used) this.used = (off + len + 7) & ~7;
    this.slotEnd = -1;
    const f = this.frame;
    f.buf = this.arena;
    f.off = off;
    f.len = len;
    f.vnet = false;
    this.from.counters.txFrames++;
    this.from.counters.txBytes += len;
    this.sink.input(this.from, f, now);
  }
}
