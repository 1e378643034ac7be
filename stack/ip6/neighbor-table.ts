/**
 * The IPv6 neighbour table of the gateway (guest IPv6 address -> MAC).
 *
 * How it works: bounded, a chained hash over the 16 address bytes into
 * preallocated typed arrays; when full, the least recently seen entry is
 * evicted (O(capacity), only when a new address appears in a full table).
 * Keys are compared as bytes in place; nothing allocates after construction.
 */
import { ipv6Equal } from '../wire/ipv6-address.js';
import { readMac } from '../wire/mac.js';

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/**
 * Bounded IPv6 -> MAC map: chained hash over preallocated arrays. Keys are
 * compared as bytes in place; nothing allocates after construction.
 */
export class Ipv6NeighborTable {
  private readonly addrs: Uint8Array;
  /** 6 bytes per entry: a MAC kept as a 48-bit double would be boxed on its way in and out. */
  private readonly macs: Uint8Array;
  private readonly seen: Float64Array;
  private readonly next: Int32Array;
  private readonly buckets: Int32Array;
  private readonly mask: number;
  private used = 0;
  private free = -1;
  size = 0;

  constructor(readonly capacity: number) {
    this.addrs = new Uint8Array(capacity * 16);
    this.macs = new Uint8Array(capacity * 6);
    this.seen = new Float64Array(capacity);
    this.next = new Int32Array(capacity).fill(-1);
    let b = 1;
    while (b < capacity * 2) b <<= 1;
    this.buckets = new Int32Array(b).fill(-1);
    this.mask = b - 1;
  }

  private hash(a: Uint8Array, off: number): number {
    let h = FNV_OFFSET;
    for (let i = 0; i < 16; i++) h = Math.imul(h ^ a[off + i], FNV_PRIME);
    return (h >>> 0) & this.mask;
  }

  private find(a: Uint8Array, off: number, bucket: number): number {
    const addrs = this.addrs;
    for (let e = this.buckets[bucket]; e !== -1; e = this.next[e]) {
      if (ipv6Equal(addrs, e * 16, a, off)) return e;
    }
    return -1;
  }

  /** The MAC of a[off, +16) as a 48-bit number, or -1. */
  lookup(a: Uint8Array, off: number): number {
    const e = this.find(a, off, this.hash(a, off));
    return e === -1 ? -1 : readMac(this.macs, e * 6);
  }

  /** Copies the MAC of a[off, +16) to out[outOff, +6); false when unknown. Allocation-free. */
  copyMac(a: Uint8Array, off: number, out: Uint8Array, outOff: number): boolean {
    const e = this.find(a, off, this.hash(a, off));
    if (e === -1) return false;
    const m = this.macs;
    for (let i = 0; i < 6; i++) out[outOff + i] = m[e * 6 + i];
    return true;
  }

  /** Remembers a[off, +16) at the MAC mac[macOff, +6). */
  learn(a: Uint8Array, off: number, mac: Uint8Array, macOff: number, now: number): void {
    const bucket = this.hash(a, off);
    let e = this.find(a, off, bucket);
    if (e !== -1) {
      for (let i = 0; i < 6; i++) this.macs[e * 6 + i] = mac[macOff + i];
      this.seen[e] = now;
      return;
    }
    if (this.free !== -1) {
      e = this.free;
      this.free = this.next[e];
    } else if (this.used < this.capacity) {
      e = this.used++;
    } else {
      // Full: evict the least recently seen. O(capacity), only when a new address appears in a full table.
      let oldest = 0;
      for (let i = 1; i < this.capacity; i++) if (this.seen[i] < this.seen[oldest]) oldest = i;
      this.remove(oldest);
      e = this.free;
      this.free = this.next[e];
    }
    const addrs = this.addrs;
    for (let i = 0; i < 16; i++) addrs[e * 16 + i] = a[off + i];
    for (let i = 0; i < 6; i++) this.macs[e * 6 + i] = mac[macOff + i];
    this.seen[e] = now;
    this.next[e] = this.buckets[bucket];
    this.buckets[bucket] = e;
    this.size++;
  }

  private remove(e: number): void {
    const bucket = this.hash(this.addrs, e * 16);
    let prev = -1;
    for (let i = this.buckets[bucket]; i !== -1; prev = i, i = this.next[i]) {
      if (i !== e) continue;
      if (prev === -1) this.buckets[bucket] = this.next[i];
      else this.next[prev] = this.next[i];
      this.next[e] = this.free;
      this.free = e;
      this.size--;
      return;
    }
  }
}
