/**
 * ICMPv6 (RFC 4443): a message view and the checksum over the IPv6
 * pseudo-header. The error builder is stack/ip6/icmp-errors.ts.
 */
import { fold, pseudoHeaderSum6, sumBytes } from './checksum.js';
import { IPV6_NH_ICMPV6 } from './ipv6.js';
import type { DropReason } from '../drop-reasons.js';

export const ICMPV6_HEADER_LEN = 8;

export const ICMPV6_DEST_UNREACHABLE = 1;
export const ICMPV6_PACKET_TOO_BIG = 2;
export const ICMPV6_TIME_EXCEEDED = 3;
export const ICMPV6_PARAMETER_PROBLEM = 4;
export const ICMPV6_ECHO_REQUEST = 128;
export const ICMPV6_ECHO_REPLY = 129;
export const ICMPV6_MLD_QUERY = 130;
export const ICMPV6_MLD_REPORT = 131;
export const ICMPV6_MLD_DONE = 132;
export const ICMPV6_ROUTER_SOLICITATION = 133;
export const ICMPV6_ROUTER_ADVERTISEMENT = 134;
export const ICMPV6_NEIGHBOR_SOLICITATION = 135;
export const ICMPV6_NEIGHBOR_ADVERTISEMENT = 136;
export const ICMPV6_REDIRECT = 137;
export const ICMPV6_MLDV2_REPORT = 143;

/** Codes of ICMPV6_DEST_UNREACHABLE. */
export const ICMPV6_UNREACH_NO_ROUTE = 0;
export const ICMPV6_UNREACH_ADMIN_PROHIBITED = 1;
export const ICMPV6_UNREACH_BEYOND_SCOPE = 2;
export const ICMPV6_UNREACH_ADDRESS = 3;
export const ICMPV6_UNREACH_PORT = 4;
export const ICMPV6_UNREACH_POLICY_FAILED = 5;
export const ICMPV6_UNREACH_REJECT_ROUTE = 6;

/** Codes of ICMPV6_TIME_EXCEEDED. */
export const ICMPV6_TIME_EXCEEDED_HOP_LIMIT = 0;
export const ICMPV6_TIME_EXCEEDED_REASSEMBLY = 1;

/** Codes of ICMPV6_PARAMETER_PROBLEM. */
export const ICMPV6_PARAM_BAD_HEADER = 0;
export const ICMPV6_PARAM_UNKNOWN_NEXT_HEADER = 1;
export const ICMPV6_PARAM_UNKNOWN_OPTION = 2;

/** Linux's default hop limit for what the gateway originates. */
export const ICMPV6_ERROR_HOP_LIMIT = 64;

const TYPE = 0;
const CODE = 1;
const CHECKSUM = 2;
const IDENT = 4;
const SEQUENCE = 6;

const EMPTY = new Uint8Array(0);

/** Reusable; `reset` (parsing) or `wrap` (building) before use. Spans the whole message. */
export class Icmpv6View {
  buf: Uint8Array = EMPTY;
  off = 0;
  len = 0;

  reset(buf: Uint8Array, off: number, len: number): DropReason | null {
    // RFC 4443 2.1: type, code, checksum and a 32-bit word that some types use.
    if (off < 0 || len < 4 || off + len > buf.length) return 'icmpv6-truncated';
    this.buf = buf;
    this.off = off;
    this.len = len;
    return null;
  }

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
  /** Echo identifier (needs len >= 8; check before use). */
  get identifier(): number {
    return (this.buf[this.off + IDENT] << 8) | this.buf[this.off + IDENT + 1];
  }
  set identifier(v: number) {
    this.buf[this.off + IDENT] = (v >>> 8) & 0xff;
    this.buf[this.off + IDENT + 1] = v & 0xff;
  }
  get sequence(): number {
    return (this.buf[this.off + SEQUENCE] << 8) | this.buf[this.off + SEQUENCE + 1];
  }
  set sequence(v: number) {
    this.buf[this.off + SEQUENCE] = (v >>> 8) & 0xff;
    this.buf[this.off + SEQUENCE + 1] = v & 0xff;
  }
  /** The 32-bit word after the checksum: MTU of packet-too-big, pointer of parameter-problem. */
  get restOfHeader(): number {
    if (this.len < 8) return 0;
    const b = this.buf;
    const o = this.off + 4;
    return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
  }
  /** Offset of the body after the 4-byte type/code/checksum. */
  get bodyOffset(): number {
    return this.off + 4;
  }
  get bodyLength(): number {
    return this.len - 4;
  }

  /** Verifies the checksum; src and dst are the IPv6 addresses at those offsets of addrBuf. */
  checksumOk(addrBuf: Uint8Array, srcOff: number, dstOff: number): boolean {
    const s = pseudoHeaderSum6(addrBuf, srcOff, dstOff, IPV6_NH_ICMPV6, this.len);
    return fold(sumBytes(this.buf, this.off, this.len, s)) === 0xffff;
  }

  fillChecksum(addrBuf: Uint8Array, srcOff: number, dstOff: number): void {
    fillIcmpv6Checksum(this.buf, this.off, this.len, addrBuf, srcOff, dstOff);
  }
}

/** Computes and stores the checksum of the ICMPv6 message buf[off, off+len). */
export function fillIcmpv6Checksum(
  buf: Uint8Array,
  off: number,
  len: number,
  addrBuf: Uint8Array,
  srcOff: number,
  dstOff: number,
): void {
  buf[off + CHECKSUM] = 0;
  buf[off + CHECKSUM + 1] = 0;
  const s = pseudoHeaderSum6(addrBuf, srcOff, dstOff, IPV6_NH_ICMPV6, len);
  const c = ~fold(sumBytes(buf, off, len, s)) & 0xffff;
  buf[off + CHECKSUM] = c >>> 8;
  buf[off + CHECKSUM + 1] = c & 0xff;
}

/** Types below 128 are errors (RFC 4443 2.1); redirects are treated like them for 2.4(e). */
export function isIcmpv6Error(type: number): boolean {
  return type < 128 || type === ICMPV6_REDIRECT;
}
