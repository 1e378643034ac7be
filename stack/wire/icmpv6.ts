/**
 * ICMPv6 (RFC 4443): a message view, the checksum over the IPv6
 * pseudo-header, and the error builder the gateway uses on behalf of the
 * outside world (the IPv6 counterpart of stack/ip4/icmp-errors.ts).
 *
 * Errors quote the offending packet from its IPv6 header on, as much as keeps
 * the whole error within the IPv6 minimum MTU (1280, RFC 4443 2.4(c)).
 * `icmpv6ErrorSuppressed` says when RFC 4443 2.4(e) forbids one: about an
 * ICMPv6 error or a redirect, about a packet to a multicast address (IP or
 * link layer) unless it is packet-too-big or a parameter problem about an
 * unknown option, or from a source that names no single node. Everything is
 * written into a buffer the caller gives; nothing allocates.
 */
import { fold, pseudoHeaderSum6, sumBytes } from './checksum.js';
import { emitIpv6Header, IPV6_HEADER_LEN, IPV6_MIN_MTU, IPV6_NH_ICMPV6, Ipv6ExtInfo, Ipv6View, walkExtensionHeaders } from './ipv6.js';
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

// Scratch for the suppression check; module-level so that it allocates nothing per call.
const scratchIp = new Ipv6View();
const scratchExt = new Ipv6ExtInfo();

/**
 * Why no ICMPv6 error of this type/code may be sent about the packet
 * buf[off, off+len), or null when one may. `linkMulticast`: it arrived as a
 * link-layer multicast or broadcast.
 */
export function icmpv6ErrorSuppressed(
  buf: Uint8Array,
  off: number,
  len: number,
  type: number,
  code: number,
  linkMulticast = false,
): DropReason | null {
  const ip = scratchIp;
  if (ip.reset(buf, off, len) !== null) return 'icmpv6-error-malformed';
  const s = ip.srcOffset;
  // The unspecified source and multicast sources name no single node.
  if (buf[s] === 0xff) return 'icmpv6-error-bad-source';
  let zero = true;
  for (let i = 0; i < 16; i++) if (buf[s + i] !== 0) zero = false;
  if (zero) return 'icmpv6-error-bad-source';
  const exempt = type === ICMPV6_PACKET_TOO_BIG || (type === ICMPV6_PARAMETER_PROBLEM && code === ICMPV6_PARAM_UNKNOWN_OPTION);
  if (!exempt) {
    if (linkMulticast) return 'icmpv6-error-link-multicast';
    if (buf[ip.dstOffset] === 0xff) return 'icmpv6-error-multicast';
  }
  const ext = scratchExt;
  // An unwalkable chain gives no way to tell whether it carries an ICMPv6 error: stay silent.
  if (walkExtensionHeaders(ip, ext) !== null) return 'icmpv6-error-malformed';
  if (ext.protocol === IPV6_NH_ICMPV6) {
    if (ext.length < 1) return 'icmpv6-error-about-error';
    if (isIcmpv6Error(buf[ext.offset])) return 'icmpv6-error-about-error';
  }
  return null;
}

/**
 * Writes a complete IPv6 packet carrying an ICMPv6 error about the packet
 * orig[origOff, origOff+origLen) into out[outOff, outOff+outCap), from the
 * address src[srcOff, +16) to the offending packet's source. `param` is the
 * MTU of packet-too-big or the pointer of parameter-problem, zero otherwise.
 * Returns the packet length, or 0 when the original has no sound IPv6
 * header or the buffer cannot hold the header and 8 quoted bytes.
 */
export function writeIcmpv6Error(
  out: Uint8Array,
  outOff: number,
  outCap: number,
  type: number,
  code: number,
  src: Uint8Array,
  srcOff: number,
  orig: Uint8Array,
  origOff: number,
  origLen: number,
  param = 0,
  hopLimit = ICMPV6_ERROR_HOP_LIMIT,
  maxLength = IPV6_MIN_MTU,
): number {
  if (origOff < 0 || origLen < IPV6_HEADER_LEN || origOff + origLen > orig.length) return 0;
  if (outOff < 0 || outCap < 0 || outOff + outCap > out.length) return 0;
  if (orig[origOff] >>> 4 !== 6) return 0;
  const pl = (orig[origOff + 4] << 8) | orig[origOff + 5];
  const available = Math.min(IPV6_HEADER_LEN + pl, origLen);
  const overhead = IPV6_HEADER_LEN + ICMPV6_HEADER_LEN;
  const room = Math.min(outCap, maxLength) - overhead;
  const quote = Math.min(available, room);
  if (quote < Math.min(available, IPV6_HEADER_LEN + 8)) return 0;

  emitIpv6Header(out, outOff, src, srcOff, orig, origOff + 8, IPV6_NH_ICMPV6, ICMPV6_HEADER_LEN + quote, hopLimit);
  const i = outOff + IPV6_HEADER_LEN;
  out[i] = type;
  out[i + 1] = code;
  out[i + 4] = param >>> 24;
  out[i + 5] = (param >>> 16) & 0xff;
  out[i + 6] = (param >>> 8) & 0xff;
  out[i + 7] = param & 0xff;
  const q = i + ICMPV6_HEADER_LEN;
  for (let k = 0; k < quote; k++) out[q + k] = orig[origOff + k];
  fillIcmpv6Checksum(out, i, ICMPV6_HEADER_LEN + quote, out, outOff + 8, outOff + 24);
  return overhead + quote;
}
