/**
 * ICMPv4 error messages the gateway sends on behalf of the outside world:
 * destination unreachable (net, host, protocol, port, fragmentation needed
 * with the next-hop MTU of RFC 1191, administratively prohibited) and time
 * exceeded.
 *
 * - The error quotes the offending datagram from its IP header on: at least
 *   the header and 8 bytes of payload (RFC 792), and as much more as keeps
 *   the whole error within 576 bytes (RFC 1812 4.3.2.3), as Linux does. The
 *   quote ends at the datagram's total length, never in link padding.
 * - `icmpErrorSuppressed` says when RFC 1122 3.2.2 forbids an error: about
 *   an ICMP error, about a datagram sent to a broadcast or multicast address
 *   (IP or link layer), about a fragment other than the first, or from a
 *   source that is not one host. Callers ask it before building an error.
 * - Everything is written into a buffer the caller gives; the header fields
 *   are positional arguments, so building an error allocates nothing.
 */
import { checksum } from '../wire/checksum.js';
import {
  ICMP_DEST_UNREACHABLE,
  ICMP_UNREACH_FRAG_NEEDED,
  ICMPV4_HEADER_LEN,
} from '../wire/icmpv4.js';
import { emitIpv4Header, IPV4_HEADER_LEN, IP_PROTO_ICMP } from '../wire/ipv4.js';
import type { DropReason } from '../drop-reasons.js';

/** RFC 1812 4.3.2.3: an ICMP error should not exceed 576 bytes. */
export const ICMP_ERROR_MAX_LENGTH = 576;
/** Internetwork control precedence, which Linux gives its ICMP errors. */
export const ICMP_ERROR_TOS = 0xc0;
export const ICMP_ERROR_TTL = 64;
/** RFC 792: the quote holds the IP header plus the first 64 bits of the data. */
const MIN_QUOTED_PAYLOAD = 8;

/** Types that are errors; Linux also treats every type it does not know (> 18) as one. */
function isIcmpErrorType(type: number): boolean {
  return type === 3 || type === 4 || type === 5 || type === 11 || type === 12 || type > 18;
}

function readU32(buf: Uint8Array, off: number): number {
  return ((buf[off] << 24) | (buf[off + 1] << 16) | (buf[off + 2] << 8) | buf[off + 3]) >>> 0;
}

/**
 * Why no ICMP error may be sent about the IPv4 packet buf[off, off+len), or
 * null when one may. `linkBroadcast`: it arrived as a link-layer broadcast or
 * multicast. `subnetBroadcast`: the directed broadcast address of the
 * network it arrived on.
 */
export function icmpErrorSuppressed(
  buf: Uint8Array,
  off: number,
  len: number,
  linkBroadcast = false,
  subnetBroadcast = 0xffff_ffff,
): DropReason | null {
  if (off < 0 || len < IPV4_HEADER_LEN || off + len > buf.length || buf[off] >>> 4 !== 4) return 'icmp-error-malformed';
  const hl = (buf[off] & 0x0f) * 4;
  if (hl < IPV4_HEADER_LEN || hl > len) return 'icmp-error-malformed';
  if (linkBroadcast) return 'icmp-error-link-broadcast';
  const dst = readU32(buf, off + 16);
  if (dst === 0xffff_ffff || dst === subnetBroadcast >>> 0) return 'icmp-error-broadcast';
  if (dst >>> 28 === 0xe) return 'icmp-error-multicast';
  const src = readU32(buf, off + 12);
  // 0/8, 127/8, 224/4 and 240/4 (which holds 255.255.255.255) name no single host.
  const s8 = src >>> 24;
  if (s8 === 0 || s8 === 127 || s8 >= 224 || src === subnetBroadcast >>> 0) return 'icmp-error-bad-source';
  if ((((buf[off + 6] << 8) | buf[off + 7]) & 0x1fff) !== 0) return 'icmp-error-fragment';
  if (buf[off + 9] === IP_PROTO_ICMP) {
    // Without the type we cannot tell; stay silent rather than risk an error storm.
    const total = Math.min(len, (buf[off + 2] << 8) | buf[off + 3]);
    if (total <= hl) return 'icmp-error-about-error';
    if (isIcmpErrorType(buf[off + hl])) return 'icmp-error-about-error';
  }
  return null;
}

/** RFC 1122 3.2.2 as a yes/no; see icmpErrorSuppressed for the reason. */
export function mayGenerateIcmpError(
  buf: Uint8Array,
  off: number,
  len: number,
  linkBroadcast = false,
  subnetBroadcast = 0xffff_ffff,
): boolean {
  return icmpErrorSuppressed(buf, off, len, linkBroadcast, subnetBroadcast) === null;
}

/**
 * Writes a complete IPv4 packet carrying an ICMP error about the datagram
 * orig[origOff, origOff+origLen) into out[outOff, outOff+outCap). The error
 * goes from `src` to the offending datagram's source. `nextHopMtu` is used
 * for fragmentation-needed only. Returns the packet length, or 0 when the
 * offending datagram has no sound IPv4 header or the buffer cannot hold
 * header + 8 bytes of quote.
 */
export function writeIcmpError(
  out: Uint8Array,
  outOff: number,
  outCap: number,
  type: number,
  code: number,
  src: number,
  ident: number,
  orig: Uint8Array,
  origOff: number,
  origLen: number,
  nextHopMtu = 0,
  ttl = ICMP_ERROR_TTL,
  tos = ICMP_ERROR_TOS,
  maxLength = ICMP_ERROR_MAX_LENGTH,
): number {
  if (origOff < 0 || origLen < IPV4_HEADER_LEN || origOff + origLen > orig.length) return 0;
  if (outOff < 0 || outCap < 0 || outOff + outCap > out.length) return 0;
  if (orig[origOff] >>> 4 !== 4) return 0;
  const hl = (orig[origOff] & 0x0f) * 4;
  const total = (orig[origOff + 2] << 8) | orig[origOff + 3];
  if (hl < IPV4_HEADER_LEN || total < hl || hl > origLen) return 0;
  // What the datagram really holds: up to its total length, within what we were given.
  const available = Math.min(total, origLen);
  const overhead = IPV4_HEADER_LEN + ICMPV4_HEADER_LEN;
  const room = Math.min(outCap, Math.max(maxLength, overhead + hl + MIN_QUOTED_PAYLOAD)) - overhead;
  const quote = Math.min(available, room);
  if (quote < Math.min(available, hl + MIN_QUOTED_PAYLOAD)) return 0;

  const dst = readU32(orig, origOff + 12);
  emitIpv4Header(out, outOff, src, dst, IP_PROTO_ICMP, ICMPV4_HEADER_LEN + quote, ttl, ident, false, tos);
  const i = outOff + IPV4_HEADER_LEN;
  out[i] = type;
  out[i + 1] = code;
  out[i + 2] = 0;
  out[i + 3] = 0;
  // The second word is unused (zero) except for fragmentation-needed's next-hop MTU.
  const mtu = type === ICMP_DEST_UNREACHABLE && code === ICMP_UNREACH_FRAG_NEEDED ? nextHopMtu & 0xffff : 0;
  out[i + 4] = 0;
  out[i + 5] = 0;
  out[i + 6] = mtu >>> 8;
  out[i + 7] = mtu & 0xff;
  // A loop, not set(subarray): a view object per error is avoidable garbage.
  const q = i + ICMPV4_HEADER_LEN;
  for (let k = 0; k < quote; k++) out[q + k] = orig[origOff + k];
  const sum = checksum(out, i, ICMPV4_HEADER_LEN + quote);
  out[i + 2] = sum >>> 8;
  out[i + 3] = sum & 0xff;
  return overhead + quote;
}
