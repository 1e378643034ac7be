/**
 * Numeric flow keys, and the index that finds a flow by its key pair.
 *
 * How it works
 * - An address handle and a 16-bit port or echo id make one exact number
 *   (`endpointKey`); a flow's key is a pair of such numbers (guest end,
 *   other end), found through one hash Map with chaining through the flows
 *   themselves (`FlowIndex`). No string keys, nothing allocated per lookup
 *   or insert. The flow table (flow-table.ts) owns one index per protocol.
 */

/** What the index needs of a flow: its key pair and its hash chain (NatFlow has them). */
export interface Keyed {
  keyA: number;
  keyB: number;
  hashNext: Keyed | null;
}

const TWO_16 = 0x10000;

/**
 * An address handle (an IPv4 u32, or an IPv6 handle below 2^37, see
 * ip-addresses.ts) and a 16-bit port or id as one exact number below 2^53.
 * A negative int32 (an IPv4 address out of bit operations) counts as its u32.
 */
export function endpointKey(ip: number, port: number): number {
  return (ip < 0 ? ip >>> 0 : ip) * TWO_16 + (port & 0xffff);
}

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85eb_ca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2_ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Mixes two endpoint keys into one number below 2^30: a Map key, not an
 * identity. Below 2^30 it is a small integer (a Smi) for V8, so a Map lookup
 * with it allocates nothing; a wider hash is a heap number, one allocation
 * per lookup, i.e. per datagram on the UDP path. Collisions only lengthen a
 * chain (FlowIndex tells flows apart by their exact keys).
 */
export function pairHash(a: number, b: number): number {
  const aHi = Math.floor(a / 0x1_0000_0000);
  const bHi = Math.floor(b / 0x1_0000_0000);
  const h1 = fmix32((a ^ Math.imul(bHi, 0x9e37_79b1)) >>> 0);
  const h2 = fmix32((b ^ Math.imul(aHi + 1, 0x85eb_ca6b) ^ h1) >>> 0);
  return h2 & 0x3fff_ffff;
}

/**
 * Flows by their key pair (keyA, keyB). One Map from a 53-bit hash of the
 * pair to the first flow with that hash; flows that share a hash are chained
 * through `hashNext` and told apart by their exact keys. Nothing is allocated
 * per lookup or per insert (a two-level Map would make an inner Map for every
 * new guest port, i.e. for every DNS query).
 */
export class FlowIndex<F extends Keyed> {
  private readonly map = new Map<number, F>();
  private count = 0;

  /** `hash` is replaceable so tests can force collisions. */
  constructor(private readonly hash: (a: number, b: number) => number = pairHash) {}

  get size(): number {
    return this.count;
  }

  get(a: number, b: number): F | null {
    let f = this.map.get(this.hash(a, b)) ?? null;
    while (f !== null && (f.keyA !== a || f.keyB !== b)) f = f.hashNext as F | null;
    return f;
  }

  /** Indexes f under (a, b), which the caller has checked is not present. */
  add(f: F, a: number, b: number): void {
    f.keyA = a;
    f.keyB = b;
    const h = this.hash(a, b);
    f.hashNext = this.map.get(h) ?? null;
    this.map.set(h, f);
    this.count++;
  }

  remove(f: F): boolean {
    const h = this.hash(f.keyA, f.keyB);
    const first = this.map.get(h);
    if (first === undefined) return false;
    if (first === f) {
      if (f.hashNext === null) this.map.delete(h);
      else this.map.set(h, f.hashNext as F);
    } else {
      let p: Keyed = first;
      while (p.hashNext !== null && p.hashNext !== f) p = p.hashNext;
      if (p.hashNext === null) return false;
      p.hashNext = f.hashNext;
    }
    f.hashNext = null;
    this.count--;
    return true;
  }
}
