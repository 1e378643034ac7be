/**
 * What the gateway learned from a frame's link layer, parsed once: the
 * Ethernet header and what the virtio-net header said about checksums and
 * segmentation. The IPv4 and IPv6 layers (stack/ip4/, stack/ip6/) read it
 * instead of parsing the frame again; one instance is reused for every frame,
 * valid only during the call that received it.
 *
 * Also the transmit side every layer writes through (`LinkTx`): the gateway's
 * one transmit arena (stack/tx-arena.ts).
 */
import type { Frame } from './frame.js';
import type { DropReason } from './drop-reasons.js';
import { EthernetView } from './wire/ethernet.js';
import {
  VIRTIO_NET_HDR_F_DATA_VALID,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_ECN,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_LEN,
  VnetHeaderView,
} from './wire/vnet.js';

export class LinkInput {
  frame: Frame = { buf: Buffer.alloc(0), off: 0, len: 0, vnet: false };
  readonly eth = new EthernetView();
  /** The L4 checksum field holds only the pseudo-header sum (NEEDS_CSUM): complete it, never verify it. */
  l4ChecksumPartial = false;
  /** The sender's kernel vouches for the L4 checksum (DATA_VALID). */
  l4ChecksumValid = false;
  /** VIRTIO_NET_HDR_GSO_* without the ECN bit; NONE for an ordinary frame. */
  gsoType = VIRTIO_NET_HDR_GSO_NONE;
  gsoSize = 0;
  private readonly vnetHdr = new VnetHeaderView();

  /** Parses the Ethernet header; null when sound, else the reason (the offload fields are then stale). */
  parseEthernet(frame: Frame): DropReason | null {
    this.frame = frame;
    return this.eth.reset(frame.buf, frame.off, frame.len);
  }

  /** Reads the virtio-net header in front of a vnet frame (or clears the offload fields). */
  parseVnet(): DropReason | null {
    const frame = this.frame;
    this.l4ChecksumPartial = false;
    this.l4ChecksumValid = false;
    this.gsoType = VIRTIO_NET_HDR_GSO_NONE;
    this.gsoSize = 0;
    if (!frame.vnet) return null;
    if (frame.off < VIRTIO_NET_HDR_LEN) return 'vnet-truncated';
    const v = this.vnetHdr.reset(frame.buf, frame.off - VIRTIO_NET_HDR_LEN);
    const flags = v.flags;
    this.l4ChecksumPartial = (flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0;
    this.l4ChecksumValid = (flags & VIRTIO_NET_HDR_F_DATA_VALID) !== 0;
    this.gsoType = v.gsoType & ~VIRTIO_NET_HDR_GSO_ECN;
    this.gsoSize = v.gsoSize;
    return null;
  }
}

/**
 * Where the L3 layers build and send what they originate (ARP, echo
 * replies, NDP, RAs): `allocTx` reserves room for one frame of up to the
 * MTU plus the Ethernet header in `txBuffer` and returns its offset;
 * `transmit` hands the finished frame (no virtio-net header) to the bridge
 * as coming from the gateway port.
 */
export interface LinkTx {
  readonly txBuffer: Buffer;
  allocTx(now: number): number;
  transmit(off: number, len: number, now: number): void;
}
