/**
 * Ethernet II header view. 802.1Q tags are not interpreted: a tagged frame
 * shows etherType 0x8100 and its payload starts at the tag.
 */
import { isMulticastAt, readMac, writeMac } from './mac.js';
import type { DropReason } from '../drop-reasons.js';

export const ETH_HEADER_LEN = 14;

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const ETHERTYPE_VLAN = 0x8100;
export const ETHERTYPE_IPV6 = 0x86dd;

const DST = 0;
const SRC = 6;
const ETHERTYPE = 12;

const EMPTY = new Uint8Array(0);
const TWO_32 = 0x1_0000_0000;

/** Reusable; `reset` (parsing) or `wrap` (building) before use. */
export class EthernetView {
  buf: Uint8Array = EMPTY;
  off = 0;
  len = 0;

  /** Binds to buf[off, off+len); returns a drop reason or null when every getter is safe. */
  reset(buf: Uint8Array, off: number, len: number): DropReason | null {
    if (off < 0 || len < ETH_HEADER_LEN || off + len > buf.length) return 'eth-truncated';
    this.buf = buf;
    this.off = off;
    this.len = len;
    return null;
  }

  /** Binds without checks, for writing a header the caller has made room for. */
  wrap(buf: Uint8Array, off: number, len: number): this {
    this.buf = buf;
    this.off = off;
    this.len = len;
    return this;
  }

  get dst(): number {
    return readMac(this.buf, this.off + DST);
  }
  set dst(mac: number) {
    writeMac(this.buf, this.off + DST, mac);
  }
  get src(): number {
    return readMac(this.buf, this.off + SRC);
  }
  set src(mac: number) {
    writeMac(this.buf, this.off + SRC, mac);
  }
  /**
   * dst === mac without materialising the 48-bit destination: a double that
   * escapes an unoptimised getter is a heap allocation, and this runs for
   * every frame.
   */
  dstIs(mac: number): boolean {
    const hi = Math.floor(mac / TWO_32);
    const lo = mac - hi * TWO_32;
    const b = this.buf;
    const o = this.off + DST;
    return (
      ((b[o] << 8) | b[o + 1]) === hi &&
      (((b[o + 2] << 24) | (b[o + 3] << 16) | (b[o + 4] << 8) | b[o + 5]) >>> 0) === lo
    );
  }
  /** Copies the source MAC bytes to buf[off] (answering the sender without a 48-bit number). */
  copySrcTo(buf: Uint8Array, off: number): void {
    const b = this.buf;
    const o = this.off + SRC;
    for (let i = 0; i < 6; i++) buf[off + i] = b[o + i];
  }
  /** Group bit of the destination: multicast or broadcast. */
  get dstIsMulticast(): boolean {
    return isMulticastAt(this.buf, this.off + DST);
  }
  get srcIsMulticast(): boolean {
    return isMulticastAt(this.buf, this.off + SRC);
  }
  get etherType(): number {
    return (this.buf[this.off + ETHERTYPE] << 8) | this.buf[this.off + ETHERTYPE + 1];
  }
  set etherType(v: number) {
    this.buf[this.off + ETHERTYPE] = (v >>> 8) & 0xff;
    this.buf[this.off + ETHERTYPE + 1] = v & 0xff;
  }
  get payloadOffset(): number {
    return this.off + ETH_HEADER_LEN;
  }
  get payloadLength(): number {
    return this.len - ETH_HEADER_LEN;
  }
  /** A window onto the payload (no copy). Allocates a view object: not for the hot path. */
  payload(): Uint8Array {
    return this.buf.subarray(this.off + ETH_HEADER_LEN, this.off + this.len);
  }
}

/** Writes a 14-byte header at off; returns ETH_HEADER_LEN. */
export function emitEthernetHeader(buf: Uint8Array, off: number, dst: number, src: number, etherType: number): number {
  writeMac(buf, off + DST, dst);
  writeMac(buf, off + SRC, src);
  buf[off + ETHERTYPE] = (etherType >>> 8) & 0xff;
  buf[off + ETHERTYPE + 1] = etherType & 0xff;
  return ETH_HEADER_LEN;
}
