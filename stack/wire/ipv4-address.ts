/**
 * IPv4 addresses as unsigned 32-bit numbers (always `>>> 0`), so that tables
 * key on them and arithmetic on them is plain integer arithmetic. Text only
 * appears at the edges (configuration, logs).
 */

/** Parses a strict dotted quad ("10.0.2.15"); returns -1 when malformed. */
export function parseIpv4(text: string): number {
  let value = 0;
  let octets = 0;
  let digits = 0;
  let octet = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 0x2e; // a virtual '.' closes the last octet
    if (c >= 0x30 && c <= 0x39) {
      // Leading zeros are refused: "010" reads as octal in some resolvers and as decimal in others.
      if (digits === 1 && octet === 0) return -1;
      octet = octet * 10 + (c - 0x30);
      digits++;
      if (octet > 255) return -1;
    } else if (c === 0x2e) {
      if (digits === 0 || octets === 4) return -1;
      value = value * 256 + octet;
      octets++;
      digits = 0;
      octet = 0;
    } else {
      return -1;
    }
  }
  return octets === 4 ? value >>> 0 : -1;
}

export function formatIpv4(ip: number): string {
  const v = ip >>> 0;
  return `${v >>> 24}.${(v >>> 16) & 0xff}.${(v >>> 8) & 0xff}.${v & 0xff}`;
}

/** Netmask for a prefix length 0..32. */
export function prefixToMask(prefix: number): number {
  return prefix <= 0 ? 0 : (0xffff_ffff << (32 - prefix)) >>> 0;
}

/** ip & mask === network (all u32). */
export function inSubnet(ip: number, network: number, mask: number): boolean {
  return ((ip & mask) >>> 0) === network >>> 0;
}

/** The n-th address of a network (network + n, wrapping at 2^32). */
export function subnetHost(network: number, n: number): number {
  return (network + n) >>> 0;
}

/** The directed broadcast address of a network. */
export function subnetBroadcast(network: number, mask: number): number {
  return (network | ~mask) >>> 0;
}

/** 224.0.0.0/4. */
export function isMulticastIpv4(ip: number): boolean {
  return ip >>> 28 === 0xe;
}

export const IPV4_ANY = 0;
export const IPV4_BROADCAST = 0xffff_ffff;

/** A parsed "a.b.c.d/n", host bits cleared. */
export class Ipv4Cidr {
  readonly mask: number;

  constructor(
    readonly network: number,
    readonly prefix: number,
  ) {
    this.mask = prefixToMask(prefix);
    this.network = (network & this.mask) >>> 0;
  }

  /** network + n. */
  host(n: number): number {
    return subnetHost(this.network, n);
  }

  get broadcast(): number {
    return subnetBroadcast(this.network, this.mask);
  }

  inSubnet(ip: number): boolean {
    return inSubnet(ip, this.network, this.mask);
  }

  toString(): string {
    return `${formatIpv4(this.network)}/${this.prefix}`;
  }
}

/**
 * Parses "10.0.2.0/24". Host bits are dropped ("10.0.2.15/24" gives
 * 10.0.2.0/24). Throws an Error naming the problem: this parses
 * configuration, never packets.
 */
export function parseCidr(text: string): Ipv4Cidr {
  const example = 'expected an IPv4 network like 10.0.2.0/24';
  const slash = text.indexOf('/');
  if (slash < 0) throw new RangeError(`invalid CIDR "${text}": missing "/prefix" (${example})`);
  const addr = parseIpv4(text.slice(0, slash));
  if (addr < 0) throw new RangeError(`invalid CIDR "${text}": "${text.slice(0, slash)}" is not a dotted-quad IPv4 address (${example})`);
  const p = text.slice(slash + 1);
  if (!/^(?:0|[1-9][0-9]?)$/.test(p) || Number(p) > 32) {
    throw new RangeError(`invalid CIDR "${text}": prefix length "${p}" must be an integer from 0 to 32 (${example})`);
  }
  return new Ipv4Cidr(addr, Number(p));
}
