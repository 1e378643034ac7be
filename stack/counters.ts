/**
 * Typed counter sets.
 *
 * How it works
 * - A set is built over a const list of names (`new Counters(DROP_REASONS)`)
 *   and counts in a Float64Array, one slot per name: exact up to 2^53, never
 *   a new object key, no allocation when counting. `add` takes a name of the
 *   list's union type, so an undeclared name does not compile; the name finds
 *   its slot in a Map shared by every set over the same list.
 * - Names are attached only when stats are read: `snapshot()` returns the
 *   non-zero counts by name (allocates; the stats path only).
 * - One set per module instance (each port, the bridge, each NAT table, the
 *   TCP engine of a NAT): a set belongs to whoever reports it in stats.
 */
import { DROP_REASONS, type DropReason } from './drop-reasons.js';

export class Counters<N extends string> {
  private readonly slots: ReadonlyMap<string, number>;
  private readonly counts: Float64Array;

  constructor(readonly names: readonly N[]) {
    this.slots = slotsFor(names);
    this.counts = new Float64Array(names.length);
  }

  add(name: N, n = 1): void {
    const i = this.slots.get(name);
    if (i !== undefined) this.counts[i] += n;
  }

  get(name: N): number {
    const i = this.slots.get(name);
    return i === undefined ? 0 : this.counts[i];
  }

  /** Sum over every name. */
  total(): number {
    let t = 0;
    for (let i = 0; i < this.counts.length; i++) t += this.counts[i];
    return t;
  }

  /** The non-zero counts by name, in list order (allocates). */
  snapshot(): Partial<Record<N, number>> {
    const out: Partial<Record<N, number>> = {};
    for (let i = 0; i < this.counts.length; i++) if (this.counts[i] !== 0) out[this.names[i]] = this.counts[i];
    return out;
  }
}

const slotTables = new WeakMap<readonly string[], ReadonlyMap<string, number>>();

function slotsFor(names: readonly string[]): ReadonlyMap<string, number> {
  let m = slotTables.get(names);
  if (m !== undefined) return m;
  const built = new Map<string, number>();
  for (let i = 0; i < names.length; i++) {
    if (built.has(names[i])) throw new RangeError(`counter name "${names[i]}" is listed twice`);
    built.set(names[i], i);
  }
  m = built;
  slotTables.set(names, m);
  return m;
}

/** A module's drops by reason (stack/drop-reasons.ts). */
export type DropCounters = Counters<DropReason>;
/** A drop snapshot as stats report it: the reasons counted so far. */
export type DropCounts = Partial<Record<DropReason, number>>;
/** Drops of a module that also counts host errors by errno (ErrnoCounts). */
export type DropAndErrnoCounts = DropCounts & Record<string, number>;

export function newDropCounters(): DropCounters {
  return new Counters(DROP_REASONS);
}

/**
 * Host-side failures counted by errno, reported among the drops as
 * `${prefix}${name}` ('dial-etimedout', 'udp-EMSGSIZE'). The errno names are
 * the kernel's, so they cannot be listed in DROP_REASONS; the key is built
 * only when stats are read. Rare by nature (a failed dial or send).
 */
export class ErrnoCounts {
  private readonly counts = new Map<string | number, number>();

  constructor(
    private readonly prefix: string,
    private readonly format: (errno: string | number) => string = String,
  ) {}

  add(errno: string | number): void {
    this.counts.set(errno, (this.counts.get(errno) ?? 0) + 1);
  }

  /** Adds `${prefix}${name}: count` to `into` (allocates) and returns it. */
  addTo<T extends Record<string, number>>(into: T): T & Record<string, number> {
    const out: Record<string, number> = into;
    for (const [errno, n] of this.counts) out[`${this.prefix}${this.format(errno)}`] = n;
    return into;
  }
}

/**
 * Gives a plain counters object (numeric fields bumped in place) a `drops`
 * property that reads the set's snapshot, so the object still prints and
 * serializes whole.
 */
export function withDrops<T extends object>(fields: T, set: DropCounters): T & { readonly drops: DropCounts } {
  return Object.defineProperty(fields, 'drops', { get: () => set.snapshot(), enumerable: true }) as T & { readonly drops: DropCounts };
}
