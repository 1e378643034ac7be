import type { DropReason } from '../drop-reasons.js';

/**
 * ARP for Ethernet and IPv4 (RFC 826): the only combination the gateway
 * speaks. Other hardware or protocol types parse as 'arp-unsupported'.
 */

export const ARP_HTYPE_ETHERNET = 1;
export const ARP_PTYPE_IPV4 = 0x0800;
export const ARP_OP_REQUEST = 1;
export const ARP_OP_REPLY = 2;

/** Length of an Ethernet/IPv4 ARP packet. */
export const ARP_LEN = 28;

const TWO_32 = 0x1_0000_0000;

const HTYPE = 0;
const PTYPE = 2;
const HLEN = 4;
const PLEN = 5;
const OP = 6;
const SHA = 8;
/** Offset of the sender hardware address, for callers that copy it byte for byte. */
export const ARP_SHA_OFFSET = SHA;
const SPA = 14;
const THA = 18;
const TPA = 24;
/** htype, ptype, hlen, plen: enough to tell whether this is a combination we support. */
const FIXED_LEN = 6;

/** Reusable representation: `parse` overwrites every field. */
export class ArpRepr {
  /** Any value passes; the caller decides what to do with unknown operations. */
  op = 0;
  senderMac = 0;
  senderIp = 0;
  targetMac = 0;
  targetIp = 0;

  /** Fills the fields from buf[off, off+len); returns a drop reason or null. Bytes past ARP_LEN (Ethernet padding) are ignored. */
  parse(buf: Uint8Array, off: number, len: number): DropReason | null {
    if (off < 0 || off + len > buf.length || len < FIXED_LEN) return 'arp-truncated';
    if (
      ((buf[off + HTYPE] << 8) | buf[off + HTYPE + 1]) !== ARP_HTYPE_ETHERNET ||
      ((buf[off + PTYPE] << 8) | buf[off + PTYPE + 1]) !== ARP_PTYPE_IPV4 ||
      buf[off + HLEN] !== 6 ||
      buf[off + PLEN] !== 4
    ) {
      return 'arp-unsupported';
    }
    if (len < ARP_LEN) return 'arp-truncated';
    this.op = (buf[off + OP] << 8) | buf[off + OP + 1];
    // Assembled inline for the same reason emitInto writes inline (no boxed numbers).
    let o = off + SHA;
    this.senderMac =
      ((buf[o] << 8) | buf[o + 1]) * TWO_32 + (((buf[o + 2] << 24) | (buf[o + 3] << 16) | (buf[o + 4] << 8) | buf[o + 5]) >>> 0);
    o = off + SPA;
    this.senderIp = ((buf[o] << 24) | (buf[o + 1] << 16) | (buf[o + 2] << 8) | buf[o + 3]) >>> 0;
    o = off + THA;
    this.targetMac =
      ((buf[o] << 8) | buf[o + 1]) * TWO_32 + (((buf[o + 2] << 24) | (buf[o + 3] << 16) | (buf[o + 4] << 8) | buf[o + 5]) >>> 0);
    o = off + TPA;
    this.targetIp = ((buf[o] << 24) | (buf[o + 1] << 16) | (buf[o + 2] << 8) | buf[o + 3]) >>> 0;
    return null;
  }

  bufferLen(): number {
    return ARP_LEN;
  }

  /** Writes ARP_LEN bytes at off; returns ARP_LEN. */
  emitInto(buf: Uint8Array, off: number): number {
    buf[off + HTYPE] = 0;
    buf[off + HTYPE + 1] = ARP_HTYPE_ETHERNET;
    buf[off + PTYPE] = ARP_PTYPE_IPV4 >>> 8;
    buf[off + PTYPE + 1] = ARP_PTYPE_IPV4 & 0xff;
    buf[off + HLEN] = 6;
    buf[off + PLEN] = 4;
    buf[off + OP] = (this.op >>> 8) & 0xff;
    buf[off + OP + 1] = this.op & 0xff;
    // Written inline: a 48-bit MAC (or a u32 above 2^30) passed to a helper
    // that the JIT did not inline is boxed on the heap, once per call.
    let hi = Math.floor(this.senderMac / TWO_32);
    let lo = this.senderMac - hi * TWO_32;
    buf[off + SHA] = hi >>> 8;
    buf[off + SHA + 1] = hi & 0xff;
    buf[off + SHA + 2] = lo >>> 24;
    buf[off + SHA + 3] = (lo >>> 16) & 0xff;
    buf[off + SHA + 4] = (lo >>> 8) & 0xff;
    buf[off + SHA + 5] = lo & 0xff;
    let ip = this.senderIp;
    buf[off + SPA] = ip >>> 24;
    buf[off + SPA + 1] = (ip >>> 16) & 0xff;
    buf[off + SPA + 2] = (ip >>> 8) & 0xff;
    buf[off + SPA + 3] = ip & 0xff;
    hi = Math.floor(this.targetMac / TWO_32);
    lo = this.targetMac - hi * TWO_32;
    buf[off + THA] = hi >>> 8;
    buf[off + THA + 1] = hi & 0xff;
    buf[off + THA + 2] = lo >>> 24;
    buf[off + THA + 3] = (lo >>> 16) & 0xff;
    buf[off + THA + 4] = (lo >>> 8) & 0xff;
    buf[off + THA + 5] = lo & 0xff;
    ip = this.targetIp;
    buf[off + TPA] = ip >>> 24;
    buf[off + TPA + 1] = (ip >>> 16) & 0xff;
    buf[off + TPA + 2] = (ip >>> 8) & 0xff;
    buf[off + TPA + 3] = ip & 0xff;
    return ARP_LEN;
  }
}
