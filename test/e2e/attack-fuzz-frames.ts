/**
 * Frames for the end-to-end fuzz (attack-fuzz.test.ts): well-formed frames
 * of every kind a guest can send usernet (ARP; IPv4 with options, fragments;
 * TCP with random flags, options and windows; UDP; DHCP; DNS; IPv6 with
 * extension headers and fragments; ICMPv6 echo and NDP), each with random
 * fields from a seeded PRNG (test/helpers/prng.ts), and then, for most,
 * mutated (bits flipped, bytes replaced, cut short, extended), with the
 * checksums recomputed after the mutation for half of those so the damage
 * reaches past the checksum checks. Destinations stay inside the test: the
 * gateway and DNS addresses, broadcast and multicast, and HOST_TARGET on the
 * host namespace's loopback.
 */
import { prng } from '../helpers/prng.js';

export interface FuzzAddrs {
  srcMac: Buffer;
  gwMac: Buffer;
  srcIp: Buffer;
  /** Addresses a frame may go to (IPv4). */
  dst4: Buffer[];
  /** Source addresses a frame may claim besides srcIp (never the well-behaved guest's). */
  spoof4: Buffer[];
  dst6: Buffer[];
  src6: Buffer;
  tcpPorts: number[];
  udpPorts: number[];
}

export const KINDS = ['arp', 'ip4opts', 'frag4', 'tcp4', 'udp4', 'dhcp', 'dns', 'ip6ext', 'frag6', 'tcp6', 'icmp6', 'ndp'] as const;
export type Kind = (typeof KINDS)[number];

const ip4 = (s: string) => Buffer.from(s.split('.').map(Number));
export function ip6(s: string): Buffer {
  const [head, tail] = s.split('::');
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const words = [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const b = Buffer.alloc(16);
  words.forEach((w, i) => b.writeUInt16BE(parseInt(w, 16), i * 2));
  return b;
}
export { ip4 };

function sum(b: Buffer, off: number, len: number, init = 0): number {
  let s = init;
  for (let i = 0; i + 1 < len; i += 2) s += b.readUInt16BE(off + i);
  if (len & 1) s += b[off + len - 1] << 8;
  return s;
}
function fold(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

export class FrameFuzzer {
  private readonly r: () => number;
  constructor(
    seed: number,
    private readonly a: FuzzAddrs,
  ) {
    this.r = prng(seed);
  }
  private n(k: number): number {
    return Math.floor(this.r() * k);
  }
  private pick<T>(xs: readonly T[]): T {
    return xs[this.n(xs.length)];
  }
  private bytes(k: number): Buffer {
    const b = Buffer.alloc(k);
    for (let i = 0; i < k; i++) b[i] = this.n(256);
    return b;
  }

  private eth(type: number, dst = this.a.gwMac): Buffer {
    const e = Buffer.alloc(14);
    dst.copy(e, 0);
    this.a.srcMac.copy(e, 6);
    e.writeUInt16BE(type, 12);
    return e;
  }

  private ipv4(proto: number, payload: Buffer, o: { dst?: Buffer; src?: Buffer; opts?: Buffer; frag?: number; id?: number } = {}): Buffer {
    const opts = o.opts ?? Buffer.alloc(0);
    const hl = 20 + opts.length;
    const h = Buffer.alloc(hl);
    h[0] = 0x40 | (hl / 4);
    h[1] = this.n(4) === 0 ? this.n(256) : 0;
    h.writeUInt16BE(hl + payload.length, 2);
    h.writeUInt16BE(o.id ?? this.n(65536), 4);
    h.writeUInt16BE(o.frag ?? (this.n(2) ? 0x4000 : 0), 6);
    h[8] = this.n(8) === 0 ? this.n(3) : 64;
    h[9] = proto;
    (o.src ?? (this.n(6) === 0 ? this.pick(this.a.spoof4) : this.a.srcIp)).copy(h, 12);
    (o.dst ?? this.pick(this.a.dst4)).copy(h, 16);
    opts.copy(h, 20);
    h.writeUInt16BE(fold(sum(h, 0, hl)), 10);
    return Buffer.concat([h, payload]);
  }

  private l4sum4(ip: Buffer, csumAt: number): void {
    const hl = (ip[0] & 15) * 4;
    const len = ip.length - hl;
    if (csumAt + 2 > len) return;
    ip.writeUInt16BE(0, hl + csumAt);
    const pseudo = sum(ip, 12, 8) + ip[9] + len;
    ip.writeUInt16BE(fold(sum(ip, hl, len, pseudo)), hl + csumAt);
  }

  private ipv6(next: number, payload: Buffer, o: { dst?: Buffer; src?: Buffer; hops?: number } = {}): Buffer {
    const h = Buffer.alloc(40);
    h.writeUInt32BE((6 << 28) | this.n(1 << 20), 0);
    h.writeUInt16BE(payload.length, 4);
    h[6] = next;
    h[7] = o.hops ?? (this.n(8) === 0 ? this.n(3) : 64);
    (o.src ?? this.a.src6).copy(h, 8);
    (o.dst ?? this.pick(this.a.dst6)).copy(h, 24);
    return Buffer.concat([h, payload]);
  }

  /** The transport checksum over the IPv6 pseudo-header, at csumAt of the upper-layer header at `at`. */
  private l4sum6(ip: Buffer, at: number, proto: number, csumAt: number): void {
    const len = ip.length - at;
    if (at + csumAt + 2 > ip.length) return;
    ip.writeUInt16BE(0, at + csumAt);
    const pseudo = sum(ip, 8, 32) + proto + len;
    ip.writeUInt16BE(fold(sum(ip, at, len, pseudo)), at + csumAt);
  }

  private tcpOptions(): Buffer {
    const parts: Buffer[] = [];
    for (let i = this.n(6); i > 0; i--) {
      switch (this.n(8)) {
        case 0: parts.push(Buffer.from([2, 4, this.n(256), this.n(256)])); break;
        case 1: parts.push(Buffer.from([3, 3, this.n(20)])); break;
        case 2: parts.push(Buffer.from([4, 2])); break;
        case 3: parts.push(Buffer.concat([Buffer.from([8, 10]), this.bytes(8)])); break;
        case 4: { const k = this.n(4); parts.push(Buffer.concat([Buffer.from([5, 2 + 8 * k]), this.bytes(8 * k)])); break; }
        case 5: parts.push(Buffer.from([1])); break;
        case 6: parts.push(Buffer.from([0])); break;
        default: { const k = this.n(6); parts.push(Buffer.concat([Buffer.from([this.n(256), this.n(2) ? k + 2 : this.n(256)]), this.bytes(k)])); }
      }
    }
    let o = Buffer.concat(parts);
    if (o.length > 40) o = o.subarray(0, 40);
    const pad = (4 - (o.length % 4)) % 4;
    return Buffer.concat([o, Buffer.alloc(pad, 1)]);
  }

  private tcpSegment(): Buffer {
    const opts = this.tcpOptions();
    const t = Buffer.alloc(20 + opts.length);
    t.writeUInt16BE(this.n(2) ? 40000 + this.n(20) : this.n(65536), 0);
    t.writeUInt16BE(this.pick(this.a.tcpPorts), 2);
    t.writeUInt32BE(this.n(2) ? this.n(2 ** 32) : 1000 + this.n(100), 4);
    t.writeUInt32BE(this.n(2 ** 32), 8);
    t[12] = ((20 + opts.length) / 4) << 4;
    t[13] = this.n(3) === 0 ? 0x02 : this.n(256);
    t.writeUInt16BE(this.pick([0, 1, 65535, this.n(65536)]), 14);
    t.writeUInt16BE(this.n(4) === 0 ? this.n(65536) : 0, 18);
    opts.copy(t, 20);
    return Buffer.concat([t, this.bytes(this.pick([0, 0, 1, 100, 1400]))]);
  }

  private udpDatagram(dport: number, payload: Buffer, sport = 1024 + this.n(60000)): Buffer {
    const u = Buffer.alloc(8);
    u.writeUInt16BE(sport, 0);
    u.writeUInt16BE(dport, 2);
    u.writeUInt16BE(this.n(10) === 0 ? this.n(65536) : 8 + payload.length, 4);
    return Buffer.concat([u, payload]);
  }

  private dnsQuery(): Buffer {
    const h = Buffer.alloc(12);
    h.writeUInt16BE(this.n(65536), 0);
    h.writeUInt16BE(this.n(4) === 0 ? this.n(65536) : 0x0100, 2);
    h.writeUInt16BE(this.n(4) === 0 ? this.n(5) : 1, 4);
    if (this.n(4) === 0) h.writeUInt16BE(this.n(3), 6);
    if (this.n(4) === 0) h.writeUInt16BE(this.n(3), 10);
    const labels: Buffer[] = [];
    for (let i = 1 + this.n(4); i > 0; i--) {
      const k = this.n(5) === 0 ? this.n(70) : 1 + this.n(10);
      labels.push(Buffer.concat([Buffer.from([k]), Buffer.from(this.bytes(k).map((c) => 97 + (c % 26)))]));
    }
    if (this.n(4) === 0) labels.push(Buffer.from([0xc0, this.n(64)]));
    else labels.push(Buffer.from([0]));
    const q = Buffer.alloc(4);
    q.writeUInt16BE(this.pick([1, 28, 255, 16, 12, this.n(65536)]), 0);
    q.writeUInt16BE(this.n(8) === 0 ? this.n(65536) : 1, 2);
    return Buffer.concat([h, ...labels, q]);
  }

  private dhcp(): Buffer {
    const d = Buffer.alloc(240);
    d[0] = 1;
    d[1] = 1;
    d[2] = 6;
    d.writeUInt32BE(this.n(2 ** 32), 4);
    this.a.srcMac.copy(d, 28);
    d.writeUInt32BE(0x63825363, 236);
    const opts: Buffer[] = [Buffer.from([53, 1, this.pick([1, 3, 4, 7, 8, this.n(256)])])];
    for (let i = this.n(6); i > 0; i--) {
      const k = this.n(12);
      opts.push(Buffer.concat([Buffer.from([this.n(256), this.n(6) === 0 ? this.n(256) : k]), this.bytes(k)]));
    }
    if (this.n(2)) opts.push(Buffer.from([50, 4, 10, 0, 2, 100 + this.n(50)]));
    opts.push(Buffer.from([255]));
    return Buffer.concat([d, ...opts]);
  }

  private optHeader(): Buffer {
    const len8 = this.n(3);
    const h = Buffer.alloc(8 + 8 * len8);
    h[1] = len8;
    for (let i = 2; i < h.length; i++) h[i] = this.n(4) === 0 ? this.n(256) : i === 2 ? 1 : 0;
    return h;
  }

  /** Links a chain of extension headers (each 8*(len+1) bytes) to `last`. */
  private link6(kinds: number[], chain: Buffer, last: number): void {
    let off = 0;
    for (let i = 0; i < kinds.length; i++) {
      chain[off] = i + 1 < kinds.length ? kinds[i + 1] : last;
      off += 8 * (chain[off + 1] + 1);
    }
  }

  /** One frame of `kind`, before mutation. */
  build(kind: Kind): Buffer {
    switch (kind) {
      case 'arp': {
        const a = Buffer.alloc(28);
        a.writeUInt16BE(this.n(8) === 0 ? this.n(65536) : 1, 0);
        a.writeUInt16BE(0x0800, 2);
        a[4] = 6;
        a[5] = 4;
        a.writeUInt16BE(this.pick([1, 2, this.n(65536)]), 6);
        this.a.srcMac.copy(a, 8);
        (this.n(3) === 0 ? this.pick(this.a.spoof4) : this.a.srcIp).copy(a, 14);
        if (this.n(2)) this.bytes(6).copy(a, 18);
        this.pick(this.a.dst4).copy(a, 24);
        return Buffer.concat([this.eth(0x0806, this.n(2) ? Buffer.alloc(6, 0xff) : this.a.gwMac), a]);
      }
      case 'ip4opts': {
        const opts = Buffer.concat([this.pick([Buffer.from([7, 11, 4]), Buffer.from([0x44, 12, 5, 0]), Buffer.from([0x83, 7, 4]), Buffer.from([0x94, 4, 0, 0]), Buffer.from([1])]), this.bytes(this.n(24))]);
        const padded = Buffer.concat([opts, Buffer.alloc((4 - (opts.length % 4)) % 4)]).subarray(0, 40);
        if (padded.length > 1) padded[1] = this.n(3) === 0 ? this.n(256) : Math.min(padded[1], padded.length);
        const echo = Buffer.concat([Buffer.from([8, 0, 0, 0]), this.bytes(4 + this.n(60))]);
        echo.writeUInt16BE(fold(sum(echo, 0, echo.length)), 2);
        return Buffer.concat([this.eth(0x0800), this.ipv4(this.pick([1, 6, 17, this.n(256)]), echo, { opts: padded })]);
      }
      case 'frag4': {
        const payload = this.udpDatagram(this.pick(this.a.udpPorts), this.bytes(8 * (1 + this.n(40))));
        const off8 = this.pick([0, 1, 2, 8, 185, 8191, this.n(8192)]);
        return Buffer.concat([this.eth(0x0800), this.ipv4(17, payload.subarray(0, 8 * (1 + this.n(payload.length / 8))), { frag: (this.n(2) ? 0x2000 : 0) | off8, id: 0x4000 + this.n(8) })]);
      }
      case 'tcp4': {
        const ip = this.ipv4(6, this.tcpSegment(), { dst: this.n(3) === 0 ? this.pick(this.a.dst4) : this.a.dst4[0] });
        this.l4sum4(ip, 16);
        return Buffer.concat([this.eth(0x0800), ip]);
      }
      case 'udp4': {
        const ip = this.ipv4(17, this.udpDatagram(this.pick(this.a.udpPorts), this.bytes(this.n(600))));
        this.l4sum4(ip, 6);
        return Buffer.concat([this.eth(0x0800), ip]);
      }
      case 'dhcp': {
        const ip = this.ipv4(17, this.udpDatagram(67, this.dhcp(), 68), { src: Buffer.alloc(4), dst: Buffer.alloc(4, 0xff) });
        this.l4sum4(ip, 6);
        return Buffer.concat([this.eth(0x0800, Buffer.alloc(6, 0xff)), ip]);
      }
      case 'dns': {
        const ip = this.ipv4(17, this.udpDatagram(53, this.dnsQuery()), { dst: this.a.dst4[1] });
        this.l4sum4(ip, 6);
        return Buffer.concat([this.eth(0x0800), ip]);
      }
      case 'ip6ext':
      case 'tcp6': {
        const kinds = Array.from({ length: kind === 'tcp6' ? this.n(2) : 1 + this.n(3) }, () => this.pick([0, 60, 43, 60]));
        const chain = Buffer.concat(kinds.map(() => this.optHeader()));
        const upper = kind === 'tcp6' || this.n(2) ? 6 : this.pick([17, 58, 59, this.n(256)]);
        const body = upper === 6 ? this.tcpSegment() : upper === 17 ? this.udpDatagram(this.pick(this.a.udpPorts), this.bytes(this.n(200))) : Buffer.concat([Buffer.from([128, 0, 0, 0]), this.bytes(8)]);
        this.link6(kinds, chain, upper);
        const ip = this.ipv6(kinds.length > 0 ? kinds[0] : upper, Buffer.concat([chain, body]), { dst: this.n(3) === 0 ? this.pick(this.a.dst6) : this.a.dst6[0] });
        if (upper === 6 || upper === 17 || upper === 58) this.l4sum6(ip, 40 + chain.length, upper, upper === 6 ? 16 : upper === 17 ? 6 : 2);
        return Buffer.concat([this.eth(0x86dd), ip]);
      }
      case 'frag6': {
        const body = this.udpDatagram(this.pick(this.a.udpPorts), this.bytes(8 * (1 + this.n(40))));
        const f = Buffer.alloc(8);
        f[0] = 17;
        f.writeUInt16BE((this.pick([0, 1, 8, 8191, this.n(8192)]) << 3) | (this.n(2) ? 1 : 0), 2);
        f.writeUInt32BE(0x5000 + this.n(8), 4);
        return Buffer.concat([this.eth(0x86dd), this.ipv6(44, Buffer.concat([f, body.subarray(0, 8 * (1 + this.n(body.length / 8)))]))]);
      }
      case 'icmp6': {
        const echo = Buffer.concat([Buffer.from([this.n(4) === 0 ? this.n(256) : 128, 0, 0, 0]), this.bytes(4 + this.n(100))]);
        const ip = this.ipv6(58, echo);
        this.l4sum6(ip, 40, 58, 2);
        return Buffer.concat([this.eth(0x86dd), ip]);
      }
      case 'ndp': {
        const type = this.pick([133, 134, 135, 136, 137]);
        const head = Buffer.alloc(type === 133 ? 8 : type === 134 ? 16 : type === 137 ? 40 : 24);
        head[0] = type;
        head[1] = this.n(8) === 0 ? this.n(256) : 0;
        if (type === 135 || type === 136) this.pick(this.a.dst6).copy(head, 8);
        if (type === 136) head[4] = this.n(256);
        const opts: Buffer[] = [];
        for (let i = this.n(4); i > 0; i--) {
          const len8 = this.n(6) === 0 ? 0 : 1 + this.n(4);
          const o = Buffer.alloc(Math.max(8, 8 * len8));
          o[0] = this.pick([1, 2, 3, 5, 25, 31, this.n(256)]);
          o[1] = len8;
          this.bytes(o.length - 2).copy(o, 2);
          if (o[0] === 1 || o[0] === 2) this.a.srcMac.copy(o, 2);
          opts.push(o);
        }
        const dst = this.pick([ip6('ff02::2'), ip6('ff02::1'), ip6('ff02::1:ff00:2'), ...this.a.dst6]);
        const src = this.n(3) === 0 ? Buffer.alloc(16) : ip6('fe80::5054:ff:fe00:1');
        const ip = this.ipv6(58, Buffer.concat([head, ...opts]), { dst, src, hops: this.n(6) === 0 ? 64 : 255 });
        this.l4sum6(ip, 40, 58, 2);
        const mdst = dst[0] === 0xff ? Buffer.from([0x33, 0x33, dst[12], dst[13], dst[14], dst[15]]) : this.a.gwMac;
        return Buffer.concat([this.eth(0x86dd, mdst), ip]);
      }
    }
  }

  /** Damages f in place or returns a new frame; `fix` recomputes nothing (the caller rebuilds). */
  mutate(f: Buffer): Buffer {
    let out = f;
    for (let i = 1 + this.n(4); i > 0; i--) {
      switch (this.n(6)) {
        case 0: if (out.length > 14) out[14 + this.n(out.length - 14)] ^= 1 << this.n(8); break;
        case 1: if (out.length > 14) out[14 + this.n(out.length - 14)] = this.n(256); break;
        case 2: out = out.subarray(0, 14 + this.n(Math.max(1, out.length - 13))); break;
        case 3: out = Buffer.concat([out, this.bytes(1 + this.n(64))]); break;
        case 4: if (out.length > 18) out.writeUInt16BE(this.n(65536), 14 + 2 * this.n((out.length - 16) >> 1)); break;
        default: if (out.length > 34) out[14 + this.n(40)] = this.pick([0, 0xff, 0x80, 1]);
      }
    }
    return out;
  }

  /** The next frame: its kind, and whether it was mutated. */
  next(): { kind: Kind; frame: Buffer; mutated: boolean } {
    const kind = this.pick(KINDS);
    let frame = this.build(kind);
    const mutated = this.n(10) < 7;
    if (mutated) {
      frame = Buffer.from(this.mutate(Buffer.from(frame)));
      // Half the mutated frames get valid IPv4 header checksums again, so the damage gets past that check.
      if (this.n(2) && frame.length >= 34 && frame.readUInt16BE(12) === 0x0800) {
        const hl = (frame[14] & 15) * 4;
        if (hl >= 20 && 14 + hl <= frame.length) {
          frame.writeUInt16BE(0, 24);
          frame.writeUInt16BE(fold(sum(frame, 14, hl)), 24);
        }
      }
    }
    return { kind, frame, mutated };
  }
}
