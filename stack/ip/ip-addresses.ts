/**
 * Address handles: one number type for IPv4 and IPv6 addresses, so that the
 * NAT tables, flow keys and the TCP/UDP paths are one implementation for
 * both families.
 *
 * How it works
 * - An IPv4 address is its own handle: the u32, below 2^32.
 * - An IPv6 address is interned: its 16 bytes get a slot in a table
 *   allocated up front, and its handle is 2^32 + slot. `endpointKey(handle,
 *   port)` stays an exact number below 2^53 (slots are below 2^20), so flow
 *   keys need no change and never mix families.
 * - Slots are reference counted: a flow `acquire`s the addresses it keeps
 *   and `release`s them when it goes; `find` looks an address up without
 *   taking a reference (the per-packet path). A slot whose count drops to
 *   zero is free for reuse, so a stale handle can never be looked up by a
 *   packet again; whoever holds a handle holds a reference.
 * - The table is bounded (`capacity` slots); `acquire` returns -1 when it is
 *   full, and the caller refuses the flow and counts it.
 * - Lookup is a chained hash over the 16 bytes in typed arrays; nothing is
 *   allocated per lookup, acquire or release.
 * - The slot bytes live in one Uint8Array (`bytes`, address at
 *   `offsetOf(handle)`), so headers and pseudo-header sums read them in place.
 */
import { pseudoHeaderSum4, pseudoHeaderSum6 } from '../wire/checksum.js';
import { emitIpv4Header, IPV4_HEADER_LEN } from '../wire/ipv4.js';
import { formatIpv4, parseIpv4 } from '../wire/ipv4-address.js';
import { emitIpv6Header, IPV6_HEADER_LEN } from '../wire/ipv6.js';
import { formatIpv6, parseIpv6 } from '../wire/ipv6-address.js';

/** Handles at or above this are IPv6. */
export const IPV6_HANDLE_BASE = 0x1_0000_0000;
/** Slots at most: keeps endpoint keys below 2^53. */
export const IPV6_MAX_SLOTS = 1 << 20;
/** Default slots: two per flow of the default tables is far more than needed; 16 B + 16 B of index each. */
export const IPV6_DEFAULT_SLOTS = 32_768;

export function isIpv6Handle(h: number): boolean {
  return h >= IPV6_HANDLE_BASE;
}

/** Hop limit / TTL of what the NAT originates. */
const HOP_LIMIT = 64;

export class IpAddresses {
  readonly capacity: number;
  /** Slot i holds its address at bytes[i*16, i*16+16). */
  readonly bytes: Uint8Array;
  private readonly refs: Int32Array;
  private readonly nextInChain: Int32Array;
  private readonly heads: Int32Array;
  private readonly mask: number;
  private readonly freeList: Int32Array;
  private freeTop: number;
  private used = 0;
  /** acquire refused because the table was full. */
  refusedFull = 0;

  constructor(capacity = IPV6_DEFAULT_SLOTS) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > IPV6_MAX_SLOTS) {
      throw new RangeError(`IPv6 address table size must be 1..${IPV6_MAX_SLOTS}, got ${capacity}`);
    }
    this.capacity = capacity;
    this.bytes = new Uint8Array(capacity * 16);
    this.refs = new Int32Array(capacity);
    this.nextInChain = new Int32Array(capacity).fill(-1);
    let buckets = 1;
    while (buckets < capacity * 2) buckets <<= 1;
    this.heads = new Int32Array(buckets).fill(-1);
    this.mask = buckets - 1;
    this.freeList = new Int32Array(capacity);
    for (let i = 0; i < capacity; i++) this.freeList[i] = capacity - 1 - i;
    this.freeTop = capacity;
  }

  /** Interned IPv6 addresses in use. */
  get size(): number {
    return this.used;
  }

  offsetOf(h: number): number {
    return (h - IPV6_HANDLE_BASE) * 16;
  }

  /** Handle of the IPv6 address at a[off, +16) if interned, else -1. No reference taken. */
  find(a: Uint8Array, off: number): number {
    const slot = this.findSlot(a, off, this.bucket(a, off));
    return slot < 0 ? -1 : IPV6_HANDLE_BASE + slot;
  }

  /** Handle of the address at a[off, +16), interning it; one more reference. -1 when the table is full. */
  acquire(a: Uint8Array, off: number): number {
    const b = this.bucket(a, off);
    let slot = this.findSlot(a, off, b);
    if (slot < 0) {
      if (this.freeTop === 0) {
        this.refusedFull++;
        return -1;
      }
      slot = this.freeList[--this.freeTop];
      const o = slot * 16;
      for (let i = 0; i < 16; i++) this.bytes[o + i] = a[off + i];
      this.nextInChain[slot] = this.heads[b];
      this.heads[b] = slot;
      this.used++;
    }
    this.refs[slot]++;
    return IPV6_HANDLE_BASE + slot;
  }

  /** One more reference to a handle already held (IPv4 handles need none). */
  retain(h: number): number {
    if (h >= IPV6_HANDLE_BASE) this.refs[h - IPV6_HANDLE_BASE]++;
    return h;
  }

  /** Drops one reference; IPv4 handles and -1 are ignored. */
  release(h: number): void {
    if (h < IPV6_HANDLE_BASE) return;
    const slot = h - IPV6_HANDLE_BASE;
    if (this.refs[slot] <= 0) return;
    if (--this.refs[slot] > 0) return;
    const o = slot * 16;
    const b = this.bucket(this.bytes, o);
    let p = this.heads[b];
    if (p === slot) this.heads[b] = this.nextInChain[slot];
    else {
      while (p >= 0 && this.nextInChain[p] !== slot) p = this.nextInChain[p];
      if (p >= 0) this.nextInChain[p] = this.nextInChain[slot];
    }
    this.nextInChain[slot] = -1;
    this.freeList[this.freeTop++] = slot;
    this.used--;
  }

  /** Handle for an address in text (either family), with a reference; throws on bad text (configuration). */
  parse(text: string): number {
    const v4 = parseIpv4(text);
    if (v4 >= 0) return v4;
    const v6 = parseIpv6(text);
    if (v6 === null) throw new RangeError(`"${text}" is not an IP address`);
    const h = this.acquire(v6, 0);
    if (h < 0) throw new RangeError('IPv6 address table full');
    return h;
  }

  /** The address as text (allocates: for dials, logs, the API). */
  format(h: number): string {
    return h >= IPV6_HANDLE_BASE ? formatIpv6(this.bytes, this.offsetOf(h)) : formatIpv4(h);
  }

  /** IP header length of the handle's family. */
  headerLength(h: number): number {
    return h >= IPV6_HANDLE_BASE ? IPV6_HEADER_LEN : IPV4_HEADER_LEN;
  }

  /**
   * Writes the IP header of a packet from src to dst (same family) carrying
   * `l4Len` bytes of protocol `proto`; returns its length. `ident` and
   * `dontFragment` apply to IPv4 only.
   */
  emitHeader(buf: Uint8Array, off: number, src: number, dst: number, proto: number, l4Len: number, ident: number, dontFragment: boolean): number {
    if (src >= IPV6_HANDLE_BASE) {
      const b = this.bytes;
      return emitIpv6Header(buf, off, b, this.offsetOf(src), b, this.offsetOf(dst), proto, l4Len, HOP_LIMIT);
    }
    emitIpv4Header(buf as Buffer, off, src, dst, proto, l4Len, HOP_LIMIT, ident, dontFragment);
    return IPV4_HEADER_LEN;
  }

  /** Unfolded pseudo-header sum for an L4 checksum. */
  pseudoSum(src: number, dst: number, proto: number, l4Len: number): number {
    if (src >= IPV6_HANDLE_BASE) return pseudoHeaderSum6(this.bytes, this.offsetOf(src), this.offsetOf(dst), proto, l4Len);
    return pseudoHeaderSum4(src, dst, proto, l4Len);
  }

  private bucket(a: Uint8Array, off: number): number {
    // FNV-1a over the interface half, mixed with the prefix half: guests differ in the low bytes.
    let h = 0x811c_9dc5;
    for (let i = 15; i >= 0; i--) h = Math.imul(h ^ a[off + i], 0x0100_0193);
    return (h ^ (h >>> 15)) & this.mask;
  }

  private findSlot(a: Uint8Array, off: number, b: number): number {
    const bytes = this.bytes;
    for (let s = this.heads[b]; s >= 0; s = this.nextInChain[s]) {
      const o = s * 16;
      let i = 0;
      while (i < 16 && bytes[o + i] === a[off + i]) i++;
      if (i === 16) return s;
    }
    return -1;
  }
}
