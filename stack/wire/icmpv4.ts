/**
 * ICMPv4 message view (RFC 792). The view spans the whole message: the
 * checksum covers header and data. Echo fields (identifier, sequence) and the
 * "next-hop MTU" of fragmentation-needed share the second 32-bit word; which
 * one applies depends on the type, so all of them are always readable.
 */
import { checksum, fold, sumBytes } from './checksum.js';
import type { DropReason } from '../drop-reasons.js';

export const ICMPV4_HEADER_LEN = 8;

export const ICMP_ECHO_REPLY = 0;
export const ICMP_DEST_UNREACHABLE = 3;
export const ICMP_ECHO_REQUEST = 8;
export const ICMP_TIME_EXCEEDED = 11;

/** Codes of ICMP_DEST_UNREACHABLE. */
export const ICMP_UNREACH_NET = 0;
export const ICMP_UNREACH_HOST = 1;
export const ICMP_UNREACH_PROTOCOL = 2;
export const ICMP_UNREACH_PORT = 3;
export const ICMP_UNREACH_FRAG_NEEDED = 4;
export const ICMP_UNREACH_SOURCE_ROUTE_FAILED = 5;
export const ICMP_UNREACH_NET_UNKNOWN = 6;
export const ICMP_UNREACH_HOST_UNKNOWN = 7;
export const ICMP_UNREACH_NET_PROHIBITED = 9;
export const ICMP_UNREACH_HOST_PROHIBITED = 10;
export const ICMP_UNREACH_ADMIN_PROHIBITED = 13;

/** Codes of ICMP_TIME_EXCEEDED. */
export const ICMP_TIME_EXCEEDED_TTL = 0;
export const ICMP_TIME_EXCEEDED_REASSEMBLY = 1;

const TYPE = 0;
const CODE = 1;
const CHECKSUM = 2;
const IDENT = 4;
const SEQUENCE = 6;
const NEXT_HOP_MTU = 6;

const EMPTY = new Uint8Array(0);

/** Reusable; `reset` (parsing) or `wrap` (building) before use. */
export class Icmpv4View {
  buf: Uint8Array = EMPTY;
  off = 0;
  /** Length of the whole ICMP message. */
  len = 0;

  /** Binds to the message buf[off, off+len); returns a drop reason or null. */
  reset(buf: Uint8Array, off: number, len: number): DropReason | null {
    if (off < 0 || len < ICMPV4_HEADER_LEN || off + len > buf.length) return 'icmp-truncated';
    this.buf = buf;
    this.off = off;
    this.len = len;
    return null;
  }

  /** Binds without checks, for building a message the caller has made room for. */
  wrap(buf: Uint8Array, off: number, len: number): this {
    this.buf = buf;
    this.off = off;
    this.len = len;
    return this;
  }

  get type(): number {
    return this.buf[this.off + TYPE];
  }
  set type(v: number) {
    this.buf[this.off + TYPE] = v;
  }
  get code(): number {
    return this.buf[this.off + CODE];
  }
  set code(v: number) {
    this.buf[this.off + CODE] = v;
  }
  get checksum(): number {
    return (this.buf[this.off + CHECKSUM] << 8) | this.buf[this.off + CHECKSUM + 1];
  }
  set checksum(v: number) {
    this.buf[this.off + CHECKSUM] = (v >>> 8) & 0xff;
    this.buf[this.off + CHECKSUM + 1] = v & 0xff;
  }
  /** Echo request/reply identifier. */
  get identifier(): number {
    return (this.buf[this.off + IDENT] << 8) | this.buf[this.off + IDENT + 1];
  }
  set identifier(v: number) {
    this.buf[this.off + IDENT] = (v >>> 8) & 0xff;
    this.buf[this.off + IDENT + 1] = v & 0xff;
  }
  /** Echo request/reply sequence number. */
  get sequence(): number {
    return (this.buf[this.off + SEQUENCE] << 8) | this.buf[this.off + SEQUENCE + 1];
  }
  set sequence(v: number) {
    this.buf[this.off + SEQUENCE] = (v >>> 8) & 0xff;
    this.buf[this.off + SEQUENCE + 1] = v & 0xff;
  }
  /** Fragmentation-needed (RFC 1191): MTU of the next hop. */
  get nextHopMtu(): number {
    return (this.buf[this.off + NEXT_HOP_MTU] << 8) | this.buf[this.off + NEXT_HOP_MTU + 1];
  }
  set nextHopMtu(v: number) {
    this.buf[this.off + NEXT_HOP_MTU] = (v >>> 8) & 0xff;
    this.buf[this.off + NEXT_HOP_MTU + 1] = v & 0xff;
  }
  /** The second 32-bit word, whatever the type makes of it. */
  get restOfHeader(): number {
    const b = this.buf;
    const o = this.off + IDENT;
    return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
  }
  set restOfHeader(v: number) {
    const b = this.buf;
    const o = this.off + IDENT;
    b[o] = v >>> 24;
    b[o + 1] = (v >>> 16) & 0xff;
    b[o + 2] = (v >>> 8) & 0xff;
    b[o + 3] = v & 0xff;
  }
  /** Echo data, or for errors the invoking packet's IP header and first bytes. */
  get payloadOffset(): number {
    return this.off + ICMPV4_HEADER_LEN;
  }
  get payloadLength(): number {
    return this.len - ICMPV4_HEADER_LEN;
  }
  /** Window onto the payload (no copy; allocates a view object). */
  payload(): Uint8Array {
    return this.buf.subarray(this.off + ICMPV4_HEADER_LEN, this.off + this.len);
  }

  checksumOk(): boolean {
    return fold(sumBytes(this.buf, this.off, this.len)) === 0xffff;
  }

  fillChecksum(): void {
    this.buf[this.off + CHECKSUM] = 0;
    this.buf[this.off + CHECKSUM + 1] = 0;
    this.checksum = checksum(this.buf, this.off, this.len);
  }
}
