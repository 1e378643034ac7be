/**
 * ICMPv6 errors (RFC 4443) the gateway sends on behalf of the outside world:
 * the IPv6 counterpart of stack/ip4/icmp-errors.ts.
 *
 * Errors quote the offending packet from its IPv6 header on, as much as keeps
 * the whole error within the IPv6 minimum MTU (1280, RFC 4443 2.4(c)).
 * `icmpv6ErrorSuppressed` says when RFC 4443 2.4(e) forbids one: about an
 * ICMPv6 error or a redirect, about a packet to a multicast address (IP or
 * link layer) unless it is packet-too-big or a parameter problem about an
 * unknown option, or from a source that names no single node. Everything is
 * written into a buffer the caller gives; nothing allocates.
 */
import type { DropReason } from '../drop-reasons.js';
import {
  fillIcmpv6Checksum,
  ICMPV6_ERROR_HOP_LIMIT,
  ICMPV6_HEADER_LEN,
  ICMPV6_PACKET_TOO_BIG,
  ICMPV6_PARAM_UNKNOWN_OPTION,
  ICMPV6_PARAMETER_PROBLEM,
  isIcmpv6Error,
} from '../wire/icmpv6.js';
import { emitIpv6Header, IPV6_HEADER_LEN, IPV6_MIN_MTU, IPV6_NH_ICMPV6, Ipv6ExtInfo, Ipv6View, walkExtensionHeaders } from '../wire/ipv6.js';
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
