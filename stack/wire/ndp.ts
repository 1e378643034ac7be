/**
 * Neighbor Discovery (RFC 4861) message views and emitters: router
 * solicitation (133), router advertisement (134), neighbor solicitation
 * (135) and advertisement (136), and their options: source/target
 * link-layer address (1, 2), prefix information (3), MTU (5) and recursive
 * DNS server (25, RFC 8106).
 *
 * Views span the whole ICMPv6 message. The option walker never reads past
 * the message: an option whose length byte is zero or runs past the end is
 * malformed (RFC 4861 4.6: the whole packet must be discarded), and the walk
 * reports a drop reason instead. Emitters take positional arguments and
 * write into the caller's buffer; the ICMPv6 checksum is filled by the caller
 * once the IPv6 addresses are known (fillIcmpv6Checksum).
 */
import { readMac, writeMac } from './mac.js';
import {
  ICMPV6_NEIGHBOR_ADVERTISEMENT,
  ICMPV6_NEIGHBOR_SOLICITATION,
  ICMPV6_ROUTER_ADVERTISEMENT,
  ICMPV6_ROUTER_SOLICITATION,
} from './icmpv6.js';
import type { DropReason } from '../drop-reasons.js';

export const NDP_RS_LEN = 8;
export const NDP_RA_LEN = 16;
export const NDP_NS_LEN = 24;
export const NDP_NA_LEN = 24;

/** RFC 4861 6.1/7.1: NDP packets must arrive with hop limit 255 (proof they were not routed). */
export const NDP_HOP_LIMIT = 255;

export const NDP_OPT_SOURCE_LLA = 1;
export const NDP_OPT_TARGET_LLA = 2;
export const NDP_OPT_PREFIX_INFO = 3;
export const NDP_OPT_REDIRECTED_HEADER = 4;
export const NDP_OPT_MTU = 5;
export const NDP_OPT_RDNSS = 25;
export const NDP_OPT_DNSSL = 31;

export const NDP_LLA_OPT_LEN = 8;
export const NDP_PREFIX_OPT_LEN = 32;
export const NDP_MTU_OPT_LEN = 8;

/** RA flags byte. */
export const RA_FLAG_MANAGED = 0x80;
export const RA_FLAG_OTHER = 0x40;
/** NA flags (first byte after the checksum). */
export const NA_FLAG_ROUTER = 0x80;
export const NA_FLAG_SOLICITED = 0x40;
export const NA_FLAG_OVERRIDE = 0x20;
/** Prefix information flags. */
export const PREFIX_FLAG_ON_LINK = 0x80;
export const PREFIX_FLAG_AUTONOMOUS = 0x40;

/** A lifetime of all ones means infinity (RFC 4861 4.6.2). */
export const NDP_INFINITE_LIFETIME = 0xffff_ffff;

const EMPTY = new Uint8Array(0);

function readU16(b: Uint8Array, o: number): number {
  return (b[o] << 8) | b[o + 1];
}
function readU32(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}
function writeU16(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 8) & 0xff;
  b[o + 1] = v & 0xff;
}
function writeU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
}

/** Fixed-part length of an NDP message type, or 0 when the type is not one of the four handled here. */
export function ndpHeaderLength(type: number): number {
  switch (type) {
    case ICMPV6_ROUTER_SOLICITATION:
      return NDP_RS_LEN;
    case ICMPV6_ROUTER_ADVERTISEMENT:
      return NDP_RA_LEN;
    case ICMPV6_NEIGHBOR_SOLICITATION:
      return NDP_NS_LEN;
    case ICMPV6_NEIGHBOR_ADVERTISEMENT:
      return NDP_NA_LEN;
    default:
      return 0;
  }
}

/**
 * One view for RS, RA, NS and NA: the type decides which getters mean
 * something. Reusable; `reset` checks the type, code 0 and the fixed length.
 * Checksum and hop limit are the caller's (they need the IPv6 header).
 */
export class NdpMessageView {
  buf: Uint8Array = EMPTY;
  off = 0;
  len = 0;
  private hdrLen = 0;

  reset(buf: Uint8Array, off: number, len: number): DropReason | null {
    if (off < 0 || len < 4 || off + len > buf.length) return 'ndp-truncated';
    const h = ndpHeaderLength(buf[off]);
    if (h === 0) return 'ndp-not-ndp';
    if (buf[off + 1] !== 0) return 'ndp-bad-code';
    if (len < h) return 'ndp-truncated';
    this.buf = buf;
    this.off = off;
    this.len = len;
    this.hdrLen = h;
    return null;
  }

  get type(): number {
    return this.buf[this.off];
  }
  /** NS/NA: offset in buf of the 16-byte target address. */
  get targetOffset(): number {
    return this.off + 8;
  }
  /** RA: current hop limit advertised (0: unspecified). */
  get curHopLimit(): number {
    return this.buf[this.off + 4];
  }
  /** RA: M/O flags byte. NA: R/S/O flags byte. */
  get flags(): number {
    return this.buf[this.off + 4 + (this.type === ICMPV6_ROUTER_ADVERTISEMENT ? 1 : 0)];
  }
  /** RA: seconds; 0 means "not a default router". */
  get routerLifetime(): number {
    return readU16(this.buf, this.off + 6);
  }
  /** RA: milliseconds. */
  get reachableTime(): number {
    return readU32(this.buf, this.off + 8);
  }
  /** RA: milliseconds. */
  get retransTimer(): number {
    return readU32(this.buf, this.off + 12);
  }
  get optionsOffset(): number {
    return this.off + this.hdrLen;
  }
  get optionsLength(): number {
    return this.len - this.hdrLen;
  }
}

/**
 * Walks NDP options without allocating: `reset` over the options range, then
 * `next()` until it returns false; `error` is then null (clean end) or a
 * drop reason. After a true `next()`, `type`, `offset` (of the option's type
 * byte) and `length` (bytes, a multiple of 8) describe the current option.
 */
export class NdpOptionWalker {
  buf: Uint8Array = EMPTY;
  type = 0;
  offset = 0;
  length = 0;
  error: DropReason | null = null;
  private pos = 0;
  private end = 0;

  reset(buf: Uint8Array, off: number, len: number): this {
    this.buf = buf;
    this.pos = off;
    this.end = off + len;
    this.error = off < 0 || len < 0 || off + len > buf.length ? 'ndp-opt-truncated' : null;
    this.type = 0;
    this.offset = 0;
    this.length = 0;
    return this;
  }

  next(): boolean {
    if (this.error !== null || this.pos >= this.end) return false;
    const b = this.buf;
    const p = this.pos;
    if (p + 2 > this.end) {
      this.error = 'ndp-opt-truncated';
      return false;
    }
    const units = b[p + 1];
    if (units === 0) {
      this.error = 'ndp-opt-zero-length';
      return false;
    }
    const l = units * 8;
    if (p + l > this.end) {
      this.error = 'ndp-opt-truncated';
      return false;
    }
    this.type = b[p];
    this.offset = p;
    this.length = l;
    this.pos = p + l;
    return true;
  }

  /** Source/target link-layer option: the MAC (Ethernet: 6 bytes after type and length). */
  get linkLayerAddress(): number {
    return readMac(this.buf, this.offset + 2);
  }
  get prefixLength(): number {
    return this.buf[this.offset + 2];
  }
  get prefixFlags(): number {
    return this.buf[this.offset + 3];
  }
  get validLifetime(): number {
    return readU32(this.buf, this.offset + 4);
  }
  get preferredLifetime(): number {
    return readU32(this.buf, this.offset + 8);
  }
  /** Offset in buf of the 16-byte prefix of a prefix-information option. */
  get prefixOffset(): number {
    return this.offset + 16;
  }
  get mtu(): number {
    return readU32(this.buf, this.offset + 4);
  }
  /** RDNSS lifetime in seconds. */
  get rdnssLifetime(): number {
    return readU32(this.buf, this.offset + 4);
  }
  /** RDNSS addresses: (length - 8) / 16 of them from rdnssAddressOffset. */
  get rdnssCount(): number {
    return (this.length - 8) >>> 4;
  }
  get rdnssAddressOffset(): number {
    return this.offset + 8;
  }
}

/**
 * Checks that an option of a known type has the size its RFC gives it;
 * returns a drop reason or null. Unknown types pass (RFC 4861 4.6: ignore).
 */
export function checkNdpOption(w: NdpOptionWalker): DropReason | null {
  switch (w.type) {
    case NDP_OPT_SOURCE_LLA:
    case NDP_OPT_TARGET_LLA:
      // Ethernet addresses fit in one 8-byte unit (RFC 2464 8).
      return w.length === NDP_LLA_OPT_LEN ? null : 'ndp-opt-bad-lla';
    case NDP_OPT_PREFIX_INFO:
      return w.length === NDP_PREFIX_OPT_LEN && w.prefixLength <= 128 ? null : 'ndp-opt-bad-prefix';
    case NDP_OPT_MTU:
      return w.length === NDP_MTU_OPT_LEN ? null : 'ndp-opt-bad-mtu';
    case NDP_OPT_RDNSS:
      // RFC 8106 5.1: length 3 or more, odd.
      return w.length >= 24 && ((w.length >>> 3) & 1) === 1 ? null : 'ndp-opt-bad-rdnss';
    default:
      return null;
  }
}

/** Writes an RS header (options follow at off+8); returns NDP_RS_LEN. */
export function emitRouterSolicitation(buf: Uint8Array, off: number): number {
  buf[off] = ICMPV6_ROUTER_SOLICITATION;
  buf[off + 1] = 0;
  writeU16(buf, off + 2, 0);
  writeU32(buf, off + 4, 0);
  return NDP_RS_LEN;
}

/** Writes an RA header (options follow at off+16); returns NDP_RA_LEN. */
export function emitRouterAdvertisement(
  buf: Uint8Array,
  off: number,
  curHopLimit: number,
  flags: number,
  routerLifetime: number,
  reachableTime: number,
  retransTimer: number,
): number {
  buf[off] = ICMPV6_ROUTER_ADVERTISEMENT;
  buf[off + 1] = 0;
  writeU16(buf, off + 2, 0);
  buf[off + 4] = curHopLimit;
  buf[off + 5] = flags;
  writeU16(buf, off + 6, routerLifetime);
  writeU32(buf, off + 8, reachableTime);
  writeU32(buf, off + 12, retransTimer);
  return NDP_RA_LEN;
}

/** Writes an NS or NA header with the target target[tOff, +16); returns 24. `flags` is NA's R/S/O byte (0 for NS). */
function emitNeighbor(buf: Uint8Array, off: number, type: number, flags: number, target: Uint8Array, tOff: number): number {
  buf[off] = type;
  buf[off + 1] = 0;
  writeU16(buf, off + 2, 0);
  buf[off + 4] = flags;
  buf[off + 5] = 0;
  buf[off + 6] = 0;
  buf[off + 7] = 0;
  for (let i = 0; i < 16; i++) buf[off + 8 + i] = target[tOff + i];
  return NDP_NS_LEN;
}

export function emitNeighborSolicitation(buf: Uint8Array, off: number, target: Uint8Array, tOff: number): number {
  return emitNeighbor(buf, off, ICMPV6_NEIGHBOR_SOLICITATION, 0, target, tOff);
}

export function emitNeighborAdvertisement(buf: Uint8Array, off: number, flags: number, target: Uint8Array, tOff: number): number {
  return emitNeighbor(buf, off, ICMPV6_NEIGHBOR_ADVERTISEMENT, flags, target, tOff);
}

/** Source (1) or target (2) link-layer address option with an Ethernet MAC; returns 8. */
export function emitLinkLayerOption(buf: Uint8Array, off: number, type: number, mac: number): number {
  buf[off] = type;
  buf[off + 1] = 1;
  writeMac(buf, off + 2, mac);
  return NDP_LLA_OPT_LEN;
}

/** Prefix information option (RFC 4861 4.6.2); returns 32. */
export function emitPrefixInfoOption(
  buf: Uint8Array,
  off: number,
  prefix: Uint8Array,
  prefixOff: number,
  prefixLength: number,
  flags: number,
  validLifetime: number,
  preferredLifetime: number,
): number {
  buf[off] = NDP_OPT_PREFIX_INFO;
  buf[off + 1] = 4;
  buf[off + 2] = prefixLength;
  buf[off + 3] = flags;
  writeU32(buf, off + 4, validLifetime);
  writeU32(buf, off + 8, preferredLifetime);
  writeU32(buf, off + 12, 0);
  for (let i = 0; i < 16; i++) buf[off + 16 + i] = prefix[prefixOff + i];
  return NDP_PREFIX_OPT_LEN;
}

/** MTU option (RFC 4861 4.6.4); returns 8. */
export function emitMtuOption(buf: Uint8Array, off: number, mtu: number): number {
  buf[off] = NDP_OPT_MTU;
  buf[off + 1] = 1;
  writeU16(buf, off + 2, 0);
  writeU32(buf, off + 4, mtu);
  return NDP_MTU_OPT_LEN;
}

/** RDNSS option (RFC 8106 5.1) with `count` addresses read consecutively from addrs[addrsOff]; returns 8 + 16*count. */
export function emitRdnssOption(
  buf: Uint8Array,
  off: number,
  lifetime: number,
  addrs: Uint8Array,
  addrsOff: number,
  count: number,
): number {
  buf[off] = NDP_OPT_RDNSS;
  buf[off + 1] = 1 + 2 * count;
  writeU16(buf, off + 2, 0);
  writeU32(buf, off + 4, lifetime);
  const n = 16 * count;
  for (let i = 0; i < n; i++) buf[off + 8 + i] = addrs[addrsOff + i];
  return 8 + n;
}
