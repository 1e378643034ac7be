/**
 * MAC addresses as plain numbers: 48 bits fit a double exactly, so tables
 * can key on them without strings. The first octet is the most significant.
 */

export const BROADCAST_MAC = 0xffff_ffff_ffff;
const TWO_32 = 0x1_0000_0000;

/** Reads 6 bytes at off as a number. */
export function readMac(buf: Uint8Array, off: number): number {
  return (
    ((buf[off] << 8) | buf[off + 1]) * TWO_32 +
    ((buf[off + 2] << 24) >>> 0) +
    ((buf[off + 3] << 16) | (buf[off + 4] << 8) | buf[off + 5])
  );
}

export function writeMac(buf: Uint8Array, off: number, mac: number): void {
  const hi = Math.floor(mac / TWO_32);
  const lo = mac >>> 0;
  buf[off] = hi >>> 8;
  buf[off + 1] = hi & 0xff;
  buf[off + 2] = lo >>> 24;
  buf[off + 3] = (lo >>> 16) & 0xff;
  buf[off + 4] = (lo >>> 8) & 0xff;
  buf[off + 5] = lo & 0xff;
}

/** Group bit (I/G) of the first octet: multicast, including broadcast. */
export function isMulticastAt(buf: Uint8Array, off: number): boolean {
  return (buf[off] & 1) !== 0;
}

export function isMulticastMac(mac: number): boolean {
  return (Math.floor(mac / 0x100_0000_0000) & 1) !== 0;
}

/** Parses "52:55:0a:00:02:02" (also with '-'); returns -1 when malformed. */
export function parseMac(text: string): number {
  const m = /^([0-9a-fA-F]{2})[:-]([0-9a-fA-F]{2})[:-]([0-9a-fA-F]{2})[:-]([0-9a-fA-F]{2})[:-]([0-9a-fA-F]{2})[:-]([0-9a-fA-F]{2})$/.exec(
    text.trim(),
  );
  if (m === null) return -1;
  let v = 0;
  for (let i = 1; i <= 6; i++) v = v * 256 + parseInt(m[i], 16);
  return v;
}

export function formatMac(mac: number): string {
  const b = new Uint8Array(6);
  writeMac(b, 0, mac);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(':');
}

export function macToBytes(mac: number): Uint8Array {
  const b = new Uint8Array(6);
  writeMac(b, 0, mac);
  return b;
}
