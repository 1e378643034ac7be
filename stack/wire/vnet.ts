/**
 * The virtio-net header that a tap opened with IFF_VNET_HDR puts before every
 * frame (struct virtio_net_hdr, linux/virtio_net.h). Multi-byte fields are in
 * the host's byte order, which is little-endian on every platform we build for.
 *
 * A frame with gsoType != NONE is a TCP (or UDP) super-frame of up to 64 KiB:
 * the kernel, or whoever reads it, cuts it into gsoSize-byte segments.
 * NEEDS_CSUM means the L4 checksum field (at csumStart + csumOffset) holds only
 * the pseudo-header sum and the rest is still to be added.
 */

export const VIRTIO_NET_HDR_LEN = 10;

export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
export const VIRTIO_NET_HDR_F_DATA_VALID = 2;

export const VIRTIO_NET_HDR_GSO_NONE = 0;
export const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
export const VIRTIO_NET_HDR_GSO_UDP = 3;
export const VIRTIO_NET_HDR_GSO_TCPV6 = 4;
export const VIRTIO_NET_HDR_GSO_UDP_L4 = 5;
export const VIRTIO_NET_HDR_GSO_ECN = 0x80;

/** Reusable view; `reset` before use. The caller guarantees VIRTIO_NET_HDR_LEN bytes at off. */
export class VnetHeaderView {
  buf: Uint8Array = new Uint8Array(VIRTIO_NET_HDR_LEN);
  off = 0;

  reset(buf: Uint8Array, off: number): this {
    this.buf = buf;
    this.off = off;
    return this;
  }

  get flags(): number {
    return this.buf[this.off];
  }
  set flags(v: number) {
    this.buf[this.off] = v;
  }
  get gsoType(): number {
    return this.buf[this.off + 1];
  }
  set gsoType(v: number) {
    this.buf[this.off + 1] = v;
  }
  get hdrLen(): number {
    return this.buf[this.off + 2] | (this.buf[this.off + 3] << 8);
  }
  set hdrLen(v: number) {
    this.buf[this.off + 2] = v & 0xff;
    this.buf[this.off + 3] = v >>> 8;
  }
  get gsoSize(): number {
    return this.buf[this.off + 4] | (this.buf[this.off + 5] << 8);
  }
  set gsoSize(v: number) {
    this.buf[this.off + 4] = v & 0xff;
    this.buf[this.off + 5] = v >>> 8;
  }
  get csumStart(): number {
    return this.buf[this.off + 6] | (this.buf[this.off + 7] << 8);
  }
  set csumStart(v: number) {
    this.buf[this.off + 6] = v & 0xff;
    this.buf[this.off + 7] = v >>> 8;
  }
  get csumOffset(): number {
    return this.buf[this.off + 8] | (this.buf[this.off + 9] << 8);
  }
  set csumOffset(v: number) {
    this.buf[this.off + 8] = v & 0xff;
    this.buf[this.off + 9] = v >>> 8;
  }

  /** All fields zero: a plain frame with a complete checksum. */
  clear(): void {
    // Ten stores: Buffer#fill's argument handling costs more than the header (per segment).
    const b = this.buf;
    const o = this.off;
    for (let i = 0; i < VIRTIO_NET_HDR_LEN; i++) b[o + i] = 0;
  }
}
