/**
 * The Internet checksum (RFC 1071), split in two steps so that sums can be
 * combined: `sumBytes` accumulates 16-bit big-endian words into a plain
 * number without folding (safe for any length below 2^37 bytes), `fold`
 * reduces that to 16 bits, and `finish` gives the value to put on the wire.
 */

/** Adds the bytes buf[off, off+len) as big-endian 16-bit words to acc. An odd last byte is padded with zero. */
export function sumBytes(buf: Uint8Array, off: number, len: number, acc = 0): number {
  let s = acc;
  const end = off + len;
  let i = off;
  // Two words per step keeps the loop short; the sum stays exact in a double.
  for (; i + 3 < end; i += 4) {
    s += ((buf[i] << 8) | buf[i + 1]) + ((buf[i + 2] << 8) | buf[i + 3]);
  }
  for (; i + 1 < end; i += 2) s += (buf[i] << 8) | buf[i + 1];
  if (i < end) s += buf[i] << 8;
  return s;
}

/** Folds a sum to 16 bits with end-around carry. */
export function fold(sum: number): number {
  let s = sum;
  while (s > 0xffff) s = (s % 0x10000) + Math.floor(s / 0x10000);
  return s;
}

/** The checksum field value: one's complement of the folded sum. */
export function finish(sum: number): number {
  return ~fold(sum) & 0xffff;
}

/** Checksum of a byte range, ready to store. */
export function checksum(buf: Uint8Array, off: number, len: number, acc = 0): number {
  return finish(sumBytes(buf, off, len, acc));
}

/** Sum of the IPv4 pseudo-header (src, dst as u32 numbers). */
export function pseudoHeaderSum4(src: number, dst: number, protocol: number, length: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + protocol + length;
}

/** Sum of the IPv6 pseudo-header; addresses are 16 bytes at srcOff/dstOff of buf. */
export function pseudoHeaderSum6(
  buf: Uint8Array,
  srcOff: number,
  dstOff: number,
  nextHeader: number,
  length: number,
): number {
  let s = sumBytes(buf, srcOff, 16) + sumBytes(buf, dstOff, 16);
  s += Math.floor(length / 0x10000) + (length & 0xffff) + nextHeader;
  return s;
}
