/**
 * IPv6 addresses as 16-byte Uint8Arrays. Inside the engine an address is
 * always a (buffer, offset) pair so that packets are compared in place;
 * text appears only at the edges (configuration, logs). Parsing follows
 * RFC 4291 2.2 (hex groups, one "::", a trailing dotted quad), formatting
 * follows RFC 5952 (lower case, no leading zeros, the longest run of two or
 * more zero groups compressed, the first one on a tie).
 */
import { parseIpv4 } from './ipv4-address.js';

export const IPV6_ADDRESS_LEN = 16;

/** ::, the unspecified address (DAD probes come from it). */
export const IPV6_UNSPECIFIED = new Uint8Array(16);
/** ff02::1, all nodes on the link. */
export const IPV6_ALL_NODES = Uint8Array.of(0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1);
/** ff02::2, all routers on the link. */
export const IPV6_ALL_ROUTERS = Uint8Array.of(0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2);

/**
 * Parses any RFC 4291 text form ("fd00::2", "::ffff:10.0.2.15", full form).
 * Returns null when malformed; a zone ("%eth0") is malformed here.
 */
export function parseIpv6(text: string): Uint8Array | null {
  if (typeof text !== 'string' || text.length < 2 || text.length > 45) return null;
  const out = new Uint8Array(16);
  const dbl = text.indexOf('::');
  if (dbl !== -1 && text.indexOf('::', dbl + 1) !== -1) return null;
  const head = dbl === -1 ? text : text.slice(0, dbl);
  const tail = dbl === -1 ? '' : text.slice(dbl + 2);
  const headWords = head === '' ? [] : head.split(':');
  const tailWords = tail === '' ? [] : tail.split(':');
  if (dbl === -1 && headWords.length === 0) return null;
  const words: number[] = [];
  const parseList = (list: string[], isLast: boolean): number[] | null => {
    const res: number[] = [];
    for (let i = 0; i < list.length; i++) {
      const w = list[i];
      if (isLast && i === list.length - 1 && w.includes('.')) {
        const v4 = parseIpv4(w);
        if (v4 < 0) return null;
        res.push(v4 >>> 16, v4 & 0xffff);
        continue;
      }
      if (!/^[0-9a-fA-F]{1,4}$/.test(w)) return null;
      res.push(parseInt(w, 16));
    }
    return res;
  };
  // The dotted quad may only close the address: in the tail when "::" exists, else in the head.
  const h = parseList(headWords, dbl === -1);
  const t = parseList(tailWords, true);
  if (h === null || t === null) return null;
  if (dbl === -1) {
    if (h.length !== 8) return null;
    words.push(...h);
  } else {
    // "::" stands for at least one zero group (RFC 5952 4.2.2 forbids it for one, but RFC 4291 accepts it).
    if (h.length + t.length > 7) return null;
    words.push(...h);
    for (let i = h.length + t.length; i < 8; i++) words.push(0);
    words.push(...t);
  }
  for (let i = 0; i < 8; i++) {
    out[i * 2] = words[i] >>> 8;
    out[i * 2 + 1] = words[i] & 0xff;
  }
  return out;
}

/** RFC 5952 canonical text of buf[off, off+16). */
export function formatIpv6(buf: Uint8Array, off = 0): string {
  const w: number[] = [];
  for (let i = 0; i < 8; i++) w.push((buf[off + i * 2] << 8) | buf[off + i * 2 + 1]);
  // ::ffff:a.b.c.d keeps its dotted form (RFC 5952 5).
  if (w[0] === 0 && w[1] === 0 && w[2] === 0 && w[3] === 0 && w[4] === 0 && w[5] === 0xffff) {
    return `::ffff:${w[6] >>> 8}.${w[6] & 0xff}.${w[7] >>> 8}.${w[7] & 0xff}`;
  }
  let bestStart = -1;
  let bestLen = 1; // a single zero group is never compressed
  for (let i = 0; i < 8; ) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestStart === -1) return w.map((x) => x.toString(16)).join(':');
  const left = w.slice(0, bestStart).map((x) => x.toString(16)).join(':');
  const right = w.slice(bestStart + bestLen).map((x) => x.toString(16)).join(':');
  return `${left}::${right}`;
}

export function ipv6Equal(a: Uint8Array, aOff: number, b: Uint8Array, bOff: number): boolean {
  for (let i = 0; i < 16; i++) if (a[aOff + i] !== b[bOff + i]) return false;
  return true;
}

/** The first prefixLen bits of a and b agree. */
export function ipv6PrefixMatch(a: Uint8Array, aOff: number, b: Uint8Array, bOff: number, prefixLen: number): boolean {
  const full = prefixLen >>> 3;
  for (let i = 0; i < full; i++) if (a[aOff + i] !== b[bOff + i]) return false;
  const rest = prefixLen & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (a[aOff + full] & mask) === (b[bOff + full] & mask);
}

export function ipv6IsUnspecified(buf: Uint8Array, off: number): boolean {
  for (let i = 0; i < 16; i++) if (buf[off + i] !== 0) return false;
  return true;
}

/** ff00::/8. */
export function ipv6IsMulticast(buf: Uint8Array, off: number): boolean {
  return buf[off] === 0xff;
}

/** fe80::/10. */
export function ipv6IsLinkLocal(buf: Uint8Array, off: number): boolean {
  return buf[off] === 0xfe && (buf[off + 1] & 0xc0) === 0x80;
}

/** ::1. */
export function ipv6IsLoopback(buf: Uint8Array, off: number): boolean {
  for (let i = 0; i < 15; i++) if (buf[off + i] !== 0) return false;
  return buf[off + 15] === 1;
}

/**
 * Writes the modified EUI-64 interface identifier of a MAC (RFC 4291
 * appendix A: ff:fe in the middle, universal/local bit flipped) to out[off, off+8).
 */
export function writeEui64(out: Uint8Array, off: number, mac: Uint8Array, macOff = 0): void {
  out[off] = mac[macOff] ^ 0x02;
  out[off + 1] = mac[macOff + 1];
  out[off + 2] = mac[macOff + 2];
  out[off + 3] = 0xff;
  out[off + 4] = 0xfe;
  out[off + 5] = mac[macOff + 3];
  out[off + 6] = mac[macOff + 4];
  out[off + 7] = mac[macOff + 5];
}

/** fe80::/64 with the EUI-64 identifier of the 6-byte MAC. */
export function linkLocalFromMac(mac: Uint8Array, macOff = 0): Uint8Array {
  const a = new Uint8Array(16);
  a[0] = 0xfe;
  a[1] = 0x80;
  writeEui64(a, 8, mac, macOff);
  return a;
}

/** ff02::1:ffXX:XXXX for the low 24 bits of addr (RFC 4291 2.7.1), written to out[outOff, +16). */
export function writeSolicitedNode(out: Uint8Array, outOff: number, addr: Uint8Array, addrOff: number): void {
  out[outOff] = 0xff;
  out[outOff + 1] = 0x02;
  for (let i = 2; i < 11; i++) out[outOff + i] = 0;
  out[outOff + 11] = 1;
  out[outOff + 12] = 0xff;
  out[outOff + 13] = addr[addrOff + 13];
  out[outOff + 14] = addr[addrOff + 14];
  out[outOff + 15] = addr[addrOff + 15];
}

export function solicitedNodeAddress(addr: Uint8Array, off = 0): Uint8Array {
  const a = new Uint8Array(16);
  writeSolicitedNode(a, 0, addr, off);
  return a;
}

/** buf[off, +16) is the solicited-node group of target[tOff, +16). */
export function isSolicitedNodeOf(buf: Uint8Array, off: number, target: Uint8Array, tOff: number): boolean {
  if (buf[off] !== 0xff || buf[off + 1] !== 0x02) return false;
  for (let i = 2; i < 11; i++) if (buf[off + i] !== 0) return false;
  return (
    buf[off + 11] === 1 &&
    buf[off + 12] === 0xff &&
    buf[off + 13] === target[tOff + 13] &&
    buf[off + 14] === target[tOff + 14] &&
    buf[off + 15] === target[tOff + 15]
  );
}

/** The Ethernet group MAC of an IPv6 multicast address: 33:33 and its last 32 bits (RFC 2464 7), as a 48-bit number. */
export function multicastMac(addr: Uint8Array, off = 0): number {
  return 0x3333 * 0x1_0000_0000 + (((addr[off + 12] << 24) | (addr[off + 13] << 16) | (addr[off + 14] << 8) | addr[off + 15]) >>> 0);
}

/** The MAC of the solicited-node group of addr: 33:33:ff and addr's last 24 bits. */
export function solicitedNodeMac(addr: Uint8Array, off = 0): number {
  return 0x3333 * 0x1_0000_0000 + ((0xff000000 | (addr[off + 13] << 16) | (addr[off + 14] << 8) | addr[off + 15]) >>> 0);
}

/** A parsed "prefix/len" with the host bits cleared. */
export interface Ipv6Prefix {
  address: Uint8Array;
  length: number;
}

/** Parses "fd00::/64". Throws a RangeError naming what is wrong (configuration input, not packets). */
export function parsePrefix(text: string): Ipv6Prefix {
  if (typeof text !== 'string') throw new RangeError('IPv6 prefix must be a string like "fd00::/64"');
  const slash = text.indexOf('/');
  if (slash === -1) throw new RangeError(`IPv6 prefix "${text}" has no "/length" (expected e.g. "fd00::/64")`);
  const addrText = text.slice(0, slash);
  const lenText = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(lenText)) throw new RangeError(`IPv6 prefix "${text}": length "${lenText}" is not a number 0..128`);
  const length = Number(lenText);
  if (length > 128) throw new RangeError(`IPv6 prefix "${text}": length ${length} is above 128`);
  const address = parseIpv6(addrText);
  if (address === null) throw new RangeError(`IPv6 prefix "${text}": "${addrText}" is not an IPv6 address`);
  for (let bit = length; bit < 128; bit++) address[bit >>> 3] &= ~(0x80 >>> (bit & 7));
  return { address, length };
}

/** prefix with the low 64 bits replaced by n (small n: the last bytes); for prefix::2, prefix::3. */
export function prefixHost(prefix: Uint8Array, n: number): Uint8Array {
  const a = prefix.slice(0, 16);
  let v = n;
  for (let i = 15; i >= 8; i--) {
    a[i] = v & 0xff;
    v = Math.floor(v / 256);
  }
  return a;
}
