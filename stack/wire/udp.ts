/**
 * UDP header view (RFC 768) with the IPv4 pseudo-header checksum.
 *
 * The datagram ends at the UDP length field, not at the end of the IP
 * payload: like Linux we accept an IP payload longer than the UDP length and
 * ignore the excess, but never a UDP length beyond the bytes we have.
 *
 * On IPv4 a checksum field of 0 means "no checksum"; a computed checksum of
 * 0 is therefore sent as 0xffff (both are zero in one's complement).
 */
import { fold, pseudoHeaderSum4, sumBytes } from './checksum.js';
import { readU16, writeU16 } from './bytes.js';

export const UDP_HEADER_LEN = 8;
/** IP protocol number, repeated here so UDP users need not import ipv4.ts. */
const PROTO_UDP = 17;

const SRC_PORT = 0;
const DST_PORT = 2;
const LENGTH = 4;
const CHECKSUM = 6;

const EMPTY = new Uint8Array(0);

/** Reusable; `reset` (parsing) or `wrap` (building) before use. */
export class UdpView {
  buf: Uint8Array = EMPTY;
  off = 0;
  /** Bytes available at off (the IP payload length); may exceed `length`. */
  len = 0;

  /**
   * Binds to buf[off, off+len) and checks the length field against len.
   * Returns a drop reason or null; every getter is safe after null.
   */
  reset(buf: Uint8Array, off: number, len: number): 'udp-truncated' | 'udp-bad-length' | null {
    if (off < 0 || len < UDP_HEADER_LEN || off + len > buf.length) return 'udp-truncated';
    const l = readU16(buf, off + LENGTH);
    if (l < UDP_HEADER_LEN) return 'udp-bad-length';
    if (l > len) return 'udp-truncated';
    this.buf = buf;
    this.off = off;
    this.len = len;
    return null;
  }

  /** Binds without checks, for writing a datagram the caller has made room for. */
  wrap(buf: Uint8Array, off: number, len: number): this {
    this.buf = buf;
    this.off = off;
    this.len = len;
    return this;
  }

  get srcPort(): number {
    return readU16(this.buf, this.off + SRC_PORT);
  }
  set srcPort(v: number) {
    writeU16(this.buf, this.off + SRC_PORT, v);
  }
  get dstPort(): number {
    return readU16(this.buf, this.off + DST_PORT);
  }
  set dstPort(v: number) {
    writeU16(this.buf, this.off + DST_PORT, v);
  }
  /** Header plus payload, from the length field. */
  get length(): number {
    return readU16(this.buf, this.off + LENGTH);
  }
  set length(v: number) {
    writeU16(this.buf, this.off + LENGTH, v);
  }
  get checksum(): number {
    return readU16(this.buf, this.off + CHECKSUM);
  }
  set checksum(v: number) {
    writeU16(this.buf, this.off + CHECKSUM, v);
  }
  get payloadOffset(): number {
    return this.off + UDP_HEADER_LEN;
  }
  get payloadLength(): number {
    return this.length - UDP_HEADER_LEN;
  }
  /** Window onto the payload (no copy; allocates a view object, so not for the hot path). */
  payload(): Uint8Array {
    return this.buf.subarray(this.off + UDP_HEADER_LEN, this.off + this.length);
  }

  /** True when the checksum is absent (0) or verifies against the pseudo-header. */
  checksumOk(srcIp: number, dstIp: number): boolean {
    if (this.checksum === 0) return true;
    const l = this.length;
    return fold(sumBytes(this.buf, this.off, l, pseudoHeaderSum4(srcIp, dstIp, PROTO_UDP, l))) === 0xffff;
  }

  /** Computes and stores the full checksum over header and payload. */
  fillChecksum(srcIp: number, dstIp: number): void {
    fillUdpChecksum(this.buf, this.off, this.length, srcIp, dstIp);
  }
}

/**
 * Writes an 8-byte header with a zero checksum (fill it afterwards with
 * `fillUdpChecksum`, or leave it 0 for "none"); returns UDP_HEADER_LEN.
 * Positional arguments so that building a header allocates nothing.
 */
export function writeUdpHeader(buf: Uint8Array, off: number, srcPort: number, dstPort: number, payloadLength: number): number {
  writeU16(buf, off + SRC_PORT, srcPort);
  writeU16(buf, off + DST_PORT, dstPort);
  writeU16(buf, off + LENGTH, UDP_HEADER_LEN + payloadLength);
  writeU16(buf, off + CHECKSUM, 0);
  return UDP_HEADER_LEN;
}

/** Stores the checksum of the datagram buf[off, off+length); a computed 0 goes out as 0xffff. */
export function fillUdpChecksum(buf: Uint8Array, off: number, length: number, srcIp: number, dstIp: number): void {
  writeU16(buf, off + CHECKSUM, 0);
  const c = ~fold(sumBytes(buf, off, length, pseudoHeaderSum4(srcIp, dstIp, PROTO_UDP, length))) & 0xffff;
  writeU16(buf, off + CHECKSUM, c === 0 ? 0xffff : c);
}

/**
 * Stores only the folded pseudo-header sum, as a virtio-net NEEDS_CSUM frame
 * wants it (csum_start at the UDP header, csum_offset 6): the receiver adds
 * the header and payload itself.
 */
export function fillUdpPseudoChecksum(buf: Uint8Array, off: number, length: number, srcIp: number, dstIp: number): void {
  writeU16(buf, off + CHECKSUM, fold(pseudoHeaderSum4(srcIp, dstIp, PROTO_UDP, length)));
}
