/**
 * Sequence-number arithmetic modulo 2^32 (RFC 9293 §3.4). Numbers are kept as
 * unsigned 32-bit values in plain JS numbers; comparisons look at the signed
 * 32-bit difference, which is correct while the two values are less than
 * 2^31 apart (always true inside one window).
 */

export function seqAdd(a: number, n: number): number {
  return (a + n) >>> 0;
}

/** a - b as a signed 32-bit distance. */
export function seqDiff(a: number, b: number): number {
  return (a - b) | 0;
}

export function seqLt(a: number, b: number): boolean {
  return ((a - b) | 0) < 0;
}

export function seqLe(a: number, b: number): boolean {
  return ((a - b) | 0) <= 0;
}

export function seqGt(a: number, b: number): boolean {
  return ((a - b) | 0) > 0;
}

export function seqGe(a: number, b: number): boolean {
  return ((a - b) | 0) >= 0;
}

export function seqMax(a: number, b: number): number {
  return ((a - b) | 0) >= 0 ? a : b;
}

export function seqMin(a: number, b: number): number {
  return ((a - b) | 0) <= 0 ? a : b;
}

/** lo <= x < hi in sequence space. */
export function seqInRange(x: number, lo: number, hi: number): boolean {
  return ((x - lo) | 0) >= 0 && ((x - hi) | 0) < 0;
}
