import type { DropReason } from '../drop-reasons.js';

/**
 * IPv6 header view (RFC 8200) and a bounded extension-header walker.
 *
 * The packet ends at 40 + payloadLength, not at the end of the buffer
 * (Ethernet padding). Jumbograms (payload length 0 with a hop-by-hop jumbo
 * option) are not supported and read as an empty payload.
 *
 * The walker follows hop-by-hop (0), routing (43), fragment (44) and
 * destination options (60) headers; anything else is the upper layer. It
 * stops after IPV6_MAX_EXT_HEADERS headers and never reads past the packet,
 * so hostile length bytes cost at most a few iterations and a drop reason.
 */

export const IPV6_HEADER_LEN = 40;

export const IPV6_NH_HOP_BY_HOP = 0;
export const IPV6_NH_TCP = 6;
export const IPV6_NH_UDP = 17;
export const IPV6_NH_ROUTING = 43;
export const IPV6_NH_FRAGMENT = 44;
export const IPV6_NH_ESP = 50;
export const IPV6_NH_AH = 51;
export const IPV6_NH_ICMPV6 = 58;
export const IPV6_NH_NONE = 59;
export const IPV6_NH_DEST_OPTS = 60;

/** RFC 8200 5: every link carries at least this much. */
export const IPV6_MIN_MTU = 1280;

/**
 * More extension headers than this is either an attack or a test of one;
 * RFC 8200 4.1 recommends at most one of each kind plus a second
 * destination-options header, which makes 5 (6 with AH): 8 leaves room.
 */
export const IPV6_MAX_EXT_HEADERS = 8;

const PAYLOAD_LENGTH = 4;
const NEXT_HEADER = 6;
const HOP_LIMIT = 7;
const SRC = 8;
const DST = 24;

const EMPTY = new Uint8Array(0);

/** Reusable; `reset` (parsing) or `wrap` (building) before use. */
export class Ipv6View {
  buf: Uint8Array = EMPTY;
  off = 0;
  /** Bytes available at off (may exceed 40 + payloadLength by link padding). */
  len = 0;

  /** Binds to buf[off, off+len); returns a drop reason or null when every getter is safe. */
  reset(buf: Uint8Array, off: number, len: number): DropReason | null {
    if (off < 0 || len < IPV6_HEADER_LEN || off + len > buf.length) return 'ipv6-truncated';
    if (buf[off] >>> 4 !== 6) return 'ipv6-bad-version';
    const pl = (buf[off + PAYLOAD_LENGTH] << 8) | buf[off + PAYLOAD_LENGTH + 1];
    if (IPV6_HEADER_LEN + pl > len) return 'ipv6-bad-payload-length';
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
    return this.buf[this.off] >>> 4;
  }
  get trafficClass(): number {
    return ((this.buf[this.off] & 0x0f) << 4) | (this.buf[this.off + 1] >>> 4);
  }
  set trafficClass(v: number) {
    const b = this.buf;
    const o = this.off;
    b[o] = (b[o] & 0xf0) | ((v >>> 4) & 0x0f);
    b[o + 1] = ((v & 0x0f) << 4) | (b[o + 1] & 0x0f);
  }
  get flowLabel(): number {
    const b = this.buf;
    const o = this.off;
    return ((b[o + 1] & 0x0f) << 16) | (b[o + 2] << 8) | b[o + 3];
  }
  set flowLabel(v: number) {
    const b = this.buf;
    const o = this.off;
    b[o + 1] = (b[o + 1] & 0xf0) | ((v >>> 16) & 0x0f);
    b[o + 2] = (v >>> 8) & 0xff;
    b[o + 3] = v & 0xff;
  }
  get payloadLength(): number {
    return (this.buf[this.off + PAYLOAD_LENGTH] << 8) | this.buf[this.off + PAYLOAD_LENGTH + 1];
  }
  set payloadLength(v: number) {
    this.buf[this.off + PAYLOAD_LENGTH] = (v >>> 8) & 0xff;
    this.buf[this.off + PAYLOAD_LENGTH + 1] = v & 0xff;
  }
  get nextHeader(): number {
    return this.buf[this.off + NEXT_HEADER];
  }
  set nextHeader(v: number) {
    this.buf[this.off + NEXT_HEADER] = v;
  }
  get hopLimit(): number {
    return this.buf[this.off + HOP_LIMIT];
  }
  set hopLimit(v: number) {
    this.buf[this.off + HOP_LIMIT] = v;
  }
  /** Offset in buf of the 16-byte source address. */
  get srcOffset(): number {
    return this.off + SRC;
  }
  /** Offset in buf of the 16-byte destination address. */
  get dstOffset(): number {
    return this.off + DST;
  }
  get payloadOffset(): number {
    return this.off + IPV6_HEADER_LEN;
  }
  /** 40 + payloadLength: where the packet really ends. */
  get packetLength(): number {
    return IPV6_HEADER_LEN + this.payloadLength;
  }
}

/**
 * Result of walking the extension headers; reused by the caller (no
 * allocation per packet). Valid after `walkExtensionHeaders` returned null.
 */
export class Ipv6ExtInfo {
  /** Upper-layer protocol (or IPV6_NH_NONE / ESP / an unknown number). */
  protocol = 0;
  /** Offset in buf of the upper-layer header. */
  offset = 0;
  /** Bytes from offset to the end of the packet. */
  length = 0;
  /** Extension headers walked. */
  count = 0;
  hasFragment = false;
  /** Fragment offset in bytes (the field counts 8-byte units). */
  fragmentOffset = 0;
  moreFragments = false;
  fragmentId = 0;
  /** Offset in buf of the byte naming the upper-layer protocol (IPv6 next header, or the last extension's). */
  nextHeaderFieldOffset = 0;
}

/**
 * Walks the extension headers of the packet under `ip` (already reset).
 * Fills `out` and returns null, or returns a drop reason. A hop-by-hop
 * header anywhere but first is malformed (RFC 8200 4.1).
 */
export function walkExtensionHeaders(ip: Ipv6View, out: Ipv6ExtInfo): DropReason | null {
  const buf = ip.buf;
  const end = ip.off + IPV6_HEADER_LEN + ip.payloadLength;
  let nh = ip.nextHeader;
  let nhField = ip.off + NEXT_HEADER;
  let p = ip.off + IPV6_HEADER_LEN;
  let count = 0;
  out.hasFragment = false;
  out.fragmentOffset = 0;
  out.moreFragments = false;
  out.fragmentId = 0;
  for (;;) {
    if (nh !== IPV6_NH_HOP_BY_HOP && nh !== IPV6_NH_ROUTING && nh !== IPV6_NH_FRAGMENT && nh !== IPV6_NH_DEST_OPTS) break;
    if (nh === IPV6_NH_HOP_BY_HOP && count !== 0) return 'ipv6-hbh-not-first';
    if (count === IPV6_MAX_EXT_HEADERS) return 'ipv6-ext-too-many';
    if (p + 8 > end) return 'ipv6-ext-truncated';
    let hlen: number;
    if (nh === IPV6_NH_FRAGMENT) {
      // Fixed 8 bytes; its second byte is reserved, not a length.
      if (out.hasFragment) return 'ipv6-ext-two-fragments';
      hlen = 8;
      const w = (buf[p + 2] << 8) | buf[p + 3];
      out.hasFragment = true;
      out.fragmentOffset = w & 0xfff8;
      out.moreFragments = (w & 1) !== 0;
      out.fragmentId = ((buf[p + 4] << 24) | (buf[p + 5] << 16) | (buf[p + 6] << 8) | buf[p + 7]) >>> 0;
    } else {
      hlen = (buf[p + 1] + 1) * 8;
      if (p + hlen > end) return 'ipv6-ext-truncated';
    }
    nhField = p;
    nh = buf[p];
    p += hlen;
    count++;
  }
  out.protocol = nh;
  out.offset = p;
  out.length = end - p;
  out.count = count;
  out.nextHeaderFieldOffset = nhField;
  return null;
}

/**
 * Writes a 40-byte header; returns IPV6_HEADER_LEN. The flow label is zero.
 * Positional arguments so that building a header allocates nothing.
 */
export function emitIpv6Header(
  buf: Uint8Array,
  off: number,
  src: Uint8Array,
  srcOff: number,
  dst: Uint8Array,
  dstOff: number,
  nextHeader: number,
  payloadLen: number,
  hopLimit: number,
  trafficClass = 0,
): number {
  buf[off] = 0x60 | ((trafficClass >>> 4) & 0x0f);
  buf[off + 1] = (trafficClass & 0x0f) << 4;
  buf[off + 2] = 0;
  buf[off + 3] = 0;
  buf[off + PAYLOAD_LENGTH] = (payloadLen >>> 8) & 0xff;
  buf[off + PAYLOAD_LENGTH + 1] = payloadLen & 0xff;
  buf[off + NEXT_HEADER] = nextHeader;
  buf[off + HOP_LIMIT] = hopLimit;
  // Byte loops: set(subarray) would allocate a view per call.
  for (let i = 0; i < 16; i++) buf[off + SRC + i] = src[srcOff + i];
  for (let i = 0; i < 16; i++) buf[off + DST + i] = dst[dstOff + i];
  return IPV6_HEADER_LEN;
}
