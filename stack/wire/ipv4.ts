/**
 * IPv4 header view (RFC 791). The packet ends at totalLength, not at the end
 * of the buffer: short frames carry Ethernet padding after it. Options are
 * exposed as a byte range and never interpreted here.
 */
import { checksum, sumBytes, fold } from './checksum.js';
import { readU16, writeU16, readU32, writeU32 } from './bytes.js';
import type { DropReason } from '../drop-reasons.js';

export const IPV4_HEADER_LEN = 20;
export const IPV4_MAX_HEADER_LEN = 60;

export const IP_PROTO_ICMP = 1;
export const IP_PROTO_TCP = 6;
export const IP_PROTO_UDP = 17;

/** Bits of the 16-bit flags + fragment offset word. */
export const IPV4_FLAG_DF = 0x4000;
export const IPV4_FLAG_MF = 0x2000;
const FRAG_OFFSET_MASK = 0x1fff;

const VER_IHL = 0;
const TOS = 1;
const TOTAL_LENGTH = 2;
const IDENT = 4;
const FLAGS_FRAG = 6;
const TTL = 8;
const PROTOCOL = 9;
const CHECKSUM = 10;
const SRC = 12;
const DST = 16;

const EMPTY = new Uint8Array(0);

/** Reusable; `reset` (parsing) or `wrap` (building) before use. */
export class Ipv4View {
  buf: Uint8Array = EMPTY;
  off = 0;
  /** Bytes available at off (may exceed totalLength by the link layer's padding). */
  len = 0;

  /**
   * Binds to buf[off, off+len) and checks version, header length and total
   * length against len. Returns a drop reason or null. The header checksum
   * is a separate call (`checksumOk`) so callers can skip it when they must.
   */
  reset(buf: Uint8Array, off: number, len: number): DropReason | null {
    if (off < 0 || len < IPV4_HEADER_LEN || off + len > buf.length) return 'ipv4-truncated';
    const vi = buf[off + VER_IHL];
    if (vi >>> 4 !== 4) return 'ipv4-bad-version';
    const hl = (vi & 0x0f) * 4;
    if (hl < IPV4_HEADER_LEN) return 'ipv4-bad-ihl';
    if (hl > len) return 'ipv4-truncated';
    const total = readU16(buf, off + TOTAL_LENGTH);
    if (total < hl) return 'ipv4-bad-total-length';
    if (total > len) return 'ipv4-truncated';
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

  get version(): number {
    return this.buf[this.off + VER_IHL] >>> 4;
  }
  set version(v: number) {
    this.buf[this.off + VER_IHL] = ((v & 0x0f) << 4) | (this.buf[this.off + VER_IHL] & 0x0f);
  }
  /** Header length in 32-bit words. */
  get ihl(): number {
    return this.buf[this.off + VER_IHL] & 0x0f;
  }
  set ihl(v: number) {
    this.buf[this.off + VER_IHL] = (this.buf[this.off + VER_IHL] & 0xf0) | (v & 0x0f);
  }
  /** Header length in bytes, options included. */
  get headerLength(): number {
    return (this.buf[this.off + VER_IHL] & 0x0f) * 4;
  }
  /** The whole second byte (DSCP and ECN). */
  get tos(): number {
    return this.buf[this.off + TOS];
  }
  set tos(v: number) {
    this.buf[this.off + TOS] = v;
  }
  get dscp(): number {
    return this.buf[this.off + TOS] >>> 2;
  }
  set dscp(v: number) {
    this.buf[this.off + TOS] = ((v & 0x3f) << 2) | (this.buf[this.off + TOS] & 3);
  }
  get ecn(): number {
    return this.buf[this.off + TOS] & 3;
  }
  set ecn(v: number) {
    this.buf[this.off + TOS] = (this.buf[this.off + TOS] & 0xfc) | (v & 3);
  }
  get totalLength(): number {
    return readU16(this.buf, this.off + TOTAL_LENGTH);
  }
  set totalLength(v: number) {
    writeU16(this.buf, this.off + TOTAL_LENGTH, v);
  }
  get identification(): number {
    return readU16(this.buf, this.off + IDENT);
  }
  set identification(v: number) {
    writeU16(this.buf, this.off + IDENT, v);
  }
  /** The 3 flag bits (reserved, DF, MF) as a number 0..7. */
  get flags(): number {
    return this.buf[this.off + FLAGS_FRAG] >>> 5;
  }
  set flags(v: number) {
    this.buf[this.off + FLAGS_FRAG] = ((v & 7) << 5) | (this.buf[this.off + FLAGS_FRAG] & 0x1f);
  }
  get dontFragment(): boolean {
    return (this.buf[this.off + FLAGS_FRAG] & 0x40) !== 0;
  }
  set dontFragment(v: boolean) {
    this.buf[this.off + FLAGS_FRAG] = v ? this.buf[this.off + FLAGS_FRAG] | 0x40 : this.buf[this.off + FLAGS_FRAG] & ~0x40;
  }
  get moreFragments(): boolean {
    return (this.buf[this.off + FLAGS_FRAG] & 0x20) !== 0;
  }
  set moreFragments(v: boolean) {
    this.buf[this.off + FLAGS_FRAG] = v ? this.buf[this.off + FLAGS_FRAG] | 0x20 : this.buf[this.off + FLAGS_FRAG] & ~0x20;
  }
  /** Fragment offset in bytes (the field counts 8-byte units). */
  get fragmentOffset(): number {
    return (readU16(this.buf, this.off + FLAGS_FRAG) & FRAG_OFFSET_MASK) * 8;
  }
  /** Takes bytes; the low 3 bits are dropped because the field counts 8-byte units. */
  set fragmentOffset(bytes: number) {
    const w = readU16(this.buf, this.off + FLAGS_FRAG);
    writeU16(this.buf, this.off + FLAGS_FRAG, (w & ~FRAG_OFFSET_MASK) | ((bytes >>> 3) & FRAG_OFFSET_MASK));
  }
  /** Part of a fragmented datagram: MF set or a non-zero offset. */
  get isFragment(): boolean {
    return (readU16(this.buf, this.off + FLAGS_FRAG) & (IPV4_FLAG_MF | FRAG_OFFSET_MASK)) !== 0;
  }
  get ttl(): number {
    return this.buf[this.off + TTL];
  }
  set ttl(v: number) {
    this.buf[this.off + TTL] = v;
  }
  get protocol(): number {
    return this.buf[this.off + PROTOCOL];
  }
  set protocol(v: number) {
    this.buf[this.off + PROTOCOL] = v;
  }
  get checksum(): number {
    return readU16(this.buf, this.off + CHECKSUM);
  }
  set checksum(v: number) {
    writeU16(this.buf, this.off + CHECKSUM, v);
  }
  get src(): number {
    return readU32(this.buf, this.off + SRC);
  }
  set src(ip: number) {
    writeU32(this.buf, this.off + SRC, ip);
  }
  get dst(): number {
    return readU32(this.buf, this.off + DST);
  }
  set dst(ip: number) {
    writeU32(this.buf, this.off + DST, ip);
  }
  get optionsOffset(): number {
    return this.off + IPV4_HEADER_LEN;
  }
  get optionsLength(): number {
    return this.headerLength - IPV4_HEADER_LEN;
  }
  /** Window onto the options (no copy; allocates a view object). */
  options(): Uint8Array {
    return this.buf.subarray(this.off + IPV4_HEADER_LEN, this.off + this.headerLength);
  }
  get payloadOffset(): number {
    return this.off + this.headerLength;
  }
  /** Up to totalLength: trailing link-layer padding is not payload. */
  get payloadLength(): number {
    return this.totalLength - this.headerLength;
  }
  /** Window onto the payload (no copy; allocates a view object). */
  payload(): Uint8Array {
    return this.buf.subarray(this.off + this.headerLength, this.off + this.totalLength);
  }

  /** The header sums to 0xffff with its checksum field included. */
  checksumOk(): boolean {
    return fold(sumBytes(this.buf, this.off, this.headerLength)) === 0xffff;
  }

  fillChecksum(): void {
    writeU16(this.buf, this.off + CHECKSUM, 0);
    writeU16(this.buf, this.off + CHECKSUM, checksum(this.buf, this.off, this.headerLength));
  }
}

/**
 * Writes a 20-byte header without options and with a valid checksum; returns
 * IPV4_HEADER_LEN. Positional arguments so that building a header allocates
 * nothing.
 */
export function emitIpv4Header(
  buf: Uint8Array,
  off: number,
  src: number,
  dst: number,
  protocol: number,
  payloadLength: number,
  ttl: number,
  identification: number,
  dontFragment: boolean,
  tos = 0,
): number {
  buf[off + VER_IHL] = 0x45;
  buf[off + TOS] = tos;
  writeU16(buf, off + TOTAL_LENGTH, IPV4_HEADER_LEN + payloadLength);
  writeU16(buf, off + IDENT, identification);
  writeU16(buf, off + FLAGS_FRAG, dontFragment ? IPV4_FLAG_DF : 0);
  buf[off + TTL] = ttl;
  buf[off + PROTOCOL] = protocol;
  writeU16(buf, off + CHECKSUM, 0);
  writeU32(buf, off + SRC, src);
  writeU32(buf, off + DST, dst);
  writeU16(buf, off + CHECKSUM, checksum(buf, off, IPV4_HEADER_LEN));
  return IPV4_HEADER_LEN;
}
