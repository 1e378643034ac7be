/**
 * Datagrams (UDP, ICMP) from the gateway to guests, over GuestOutput, for
 * either IP version (addresses are handles, see ip-addresses.ts).
 *
 * A datagram that fits the MTU leaves as one frame with a partial UDP
 * checksum for the tap (or the bridge) to complete. A larger IPv4 one is
 * built once in a scratch buffer and cut into fragments (IPv4 lets routers
 * fragment UDP and ICMP; a 60 KB UDP answer at MTU 1500 needs it). IPv6
 * routers never fragment, but the gateway is the source of what it sends
 * the guest (the host's datagram arrived on a socket), and sources may: a
 * larger IPv6 datagram leaves as fragments with a Fragment header (RFC 8200
 * 4.5), each but the last carrying a multiple of 8 bytes.
 *
 * A burst of equal-size datagrams (a host socket's GRO message) leaves as one
 * UDP segmentation offload frame (VIRTIO_NET_HDR_GSO_UDP_L4, gso_size = the
 * datagram size) when `uso` is set, that is when every vnet port takes USO
 * (TUN_F_USO4/USO6, Linux 6.2); the tap's kernel cuts it. Otherwise, or when
 * a datagram of the burst would not fit the MTU, it leaves as datagrams.
 */
import { IP_PROTO_UDP } from '../wire/ipv4.js';
import { IPV6_HEADER_LEN, IPV6_NH_FRAGMENT } from '../wire/ipv6.js';

/** RFC 8200 4.5: next header, reserved, offset and M flag, identification. */
const IPV6_FRAG_HEADER_LEN = 8;
import { ETH_HEADER_LEN, ETHERTYPE_IPV4, ETHERTYPE_IPV6 } from '../wire/ethernet.js';
import { fold, sumBytes } from '../wire/checksum.js';
import { VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_UDP_L4 } from '../wire/vnet.js';
import { copyBytes } from '../tcp/byte-copy.js';
import { writeUdpHeader } from '../wire/udp.js';
import { Ipv4Fragmenter, type Ipv4HeaderTemplate } from '../ip4/fragmenter.js';
import type { GuestOutput } from '../guest-output.js';
import { IPV6_HANDLE_BASE, type IpAddresses } from './ip-addresses.js';
import type { DropReason } from '../drop-reasons.js';

const UDP_HEADER_LEN = 8;
const MAX_DATAGRAM = 65_535;

export class IpOutput {
  private ident = 1;
  private readonly scratch = Buffer.alloc(MAX_DATAGRAM);
  private readonly fragmenter: Ipv4Fragmenter;
  private readonly template: Ipv4HeaderTemplate = { src: 0, dst: 0, protocol: 0, id: 0, ttl: 64, tos: 0, dontFragment: false };
  private mac = 0;
  private now = 0;
  private readonly emitFragment = (buf: Buffer, off: number, len: number): void => {
    const ipOff = this.out.begin(this.mac, len, this.now);
    buf.copy(this.out.arena, ipOff, off, off + len);
    this.out.send(len, this.now);
  };
  /** Datagrams sent as fragments (either version). */
  fragmentsOut = 0;
  /** Guests take UDP segmentation offload frames (set by the runtime from its ports). */
  uso = false;
  /** Bursts sent as one USO frame, and the datagrams they held. */
  usoFrames = 0;
  usoDatagrams = 0;
  private fragId6 = 0;
  /** The USO frame between beginUdpBurst and commitUdpBurst. */
  private burstIpLen = 0;
  private burstDatagrams = 0;

  constructor(
    readonly out: GuestOutput,
    readonly mtu: number,
    readonly addrs: IpAddresses,
  ) {
    this.fragmenter = new Ipv4Fragmenter(mtu);
  }

  nextIdent(): number {
    this.ident = (this.ident + 1) & 0xffff;
    return this.ident;
  }

  /**
   * Sends a UDP datagram to a guest. Returns a drop reason or null. The
   * payload is copied; the caller keeps its buffer.
   */
  sendUdp(
    mac: number,
    src: number,
    srcPort: number,
    dst: number,
    dstPort: number,
    payload: Uint8Array,
    off: number,
    len: number,
    now: number,
  ): DropReason | null {
    const a = this.addrs;
    const v6 = src >= IPV6_HANDLE_BASE;
    const hl = a.headerLength(src);
    const udpLen = UDP_HEADER_LEN + len;
    const ipLen = hl + udpLen;
    if (udpLen > MAX_DATAGRAM || (!v6 && ipLen > MAX_DATAGRAM)) return 'udp-too-big';
    if (ipLen <= this.mtu) {
      const ipOff = this.out.begin(mac, ipLen, now, v6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4);
      const buf = this.out.arena;
      a.emitHeader(buf, ipOff, src, dst, IP_PROTO_UDP, udpLen, this.nextIdent(), false);
      const u = ipOff + hl;
      writeUdpHeader(buf, u, srcPort, dstPort, len);
      copyBytes(buf, u + UDP_HEADER_LEN, payload, off, len);
      // Checksum offload: the field holds the pseudo-header sum; the tap (or the bridge) adds the rest.
      const partial = fold(a.pseudoSum(src, dst, IP_PROTO_UDP, udpLen));
      buf[u + 6] = partial >>> 8;
      buf[u + 7] = partial & 0xff;
      const v = this.out.header();
      v.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
      v.csumStart = ETH_HEADER_LEN + hl;
      v.csumOffset = 6;
      this.out.send(ipLen, now);
      return null;
    }
    // Fragments cannot carry a partial checksum: compute it in full.
    const s = this.scratch;
    writeUdpHeader(s, 0, srcPort, dstPort, len);
    s.set(payload.subarray(off, off + len), UDP_HEADER_LEN);
    const c = ~fold(sumBytes(s, 0, udpLen, a.pseudoSum(src, dst, IP_PROTO_UDP, udpLen))) & 0xffff;
    s[6] = c === 0 ? 0xff : c >>> 8;
    s[7] = c === 0 ? 0xff : c & 0xff;
    if (v6) return this.sendFragmented6(mac, src, dst, IP_PROTO_UDP, s, 0, udpLen, now);
    return this.sendFragmented(mac, src, dst, IP_PROTO_UDP, s, 0, udpLen, now);
  }

  /**
   * Sends payload[off, off+len) as datagrams of `seg` bytes (the last one may
   * be shorter) from src:srcPort to dst:dstPort: one USO frame when the
   * guests take them, else one datagram at a time. Returns the first drop
   * reason or null.
   */
  sendUdpBurst(
    mac: number,
    src: number,
    srcPort: number,
    dst: number,
    dstPort: number,
    payload: Uint8Array,
    off: number,
    len: number,
    seg: number,
    now: number,
  ): DropReason | null {
    if (seg <= 0 || seg >= len) return this.sendUdp(mac, src, srcPort, dst, dstPort, payload, off, len, now);
    const start = this.beginUdpBurst(mac, src, srcPort, dst, dstPort, len, seg, now);
    if (start >= 0) {
      copyBytes(this.out.arena, start, payload, off, len);
      this.commitUdpBurst(now);
      return null;
    }
    let first: DropReason | null = null;
    for (let at = 0; at < len; at += seg) {
      const n = len - at < seg ? len - at : seg;
      const bad = this.sendUdp(mac, src, srcPort, dst, dstPort, payload, off + at, n, now);
      if (bad !== null && first === null) first = bad;
    }
    return first;
  }

  /**
   * The first half of sendUdpBurst's USO frame, for a caller that gathers the
   * payload itself (UdpProxy's software GRO copies datagrams straight from its
   * receive slots, with no staging copy): writes the headers of a burst of
   * `len` bytes in `seg`-byte datagrams and returns where in `out.arena` the
   * payload goes. The caller copies it there and calls commitUdpBurst before
   * anything else is sent. -1 when one USO frame cannot carry it (guests
   * without USO, a segment above the MTU, a burst above 64 KiB, or seg not
   * below len): nothing was started.
   */
  beginUdpBurst(mac: number, src: number, srcPort: number, dst: number, dstPort: number, len: number, seg: number, now: number): number {
    if (!this.uso || seg <= 0 || seg >= len) return -1;
    const a = this.addrs;
    const hl = a.headerLength(src);
    const udpLen = UDP_HEADER_LEN + len;
    const ipLen = hl + udpLen;
    if (hl + UDP_HEADER_LEN + seg > this.mtu || ipLen > MAX_DATAGRAM) return -1;
    const v6 = src >= IPV6_HANDLE_BASE;
    const ipOff = this.out.begin(mac, ipLen, now, v6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4);
    const buf = this.out.arena;
    a.emitHeader(buf, ipOff, src, dst, IP_PROTO_UDP, udpLen, this.nextIdent(), false);
    const u = ipOff + hl;
    // The super-frame's length and pseudo-header sum cover the whole burst: the
    // kernel's segmentation adjusts both per datagram from these.
    writeUdpHeader(buf, u, srcPort, dstPort, len);
    const partial = fold(a.pseudoSum(src, dst, IP_PROTO_UDP, udpLen));
    buf[u + 6] = partial >>> 8;
    buf[u + 7] = partial & 0xff;
    const v = this.out.header();
    v.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    v.csumStart = ETH_HEADER_LEN + hl;
    v.csumOffset = 6;
    v.gsoType = VIRTIO_NET_HDR_GSO_UDP_L4;
    v.gsoSize = seg;
    v.hdrLen = ETH_HEADER_LEN + hl + UDP_HEADER_LEN;
    this.burstIpLen = ipLen;
    this.burstDatagrams = Math.ceil(len / seg);
    return u + UDP_HEADER_LEN;
  }

  /** Sends the USO frame beginUdpBurst started, its payload in place. */
  commitUdpBurst(now: number): void {
    this.usoFrames++;
    this.usoDatagrams += this.burstDatagrams;
    this.out.send(this.burstIpLen, now);
  }

  /** IPv6 source fragmentation of payload[off, off+len) (an upper-layer packet with its checksum). */
  private sendFragmented6(mac: number, src: number, dst: number, protocol: number, payload: Uint8Array, off: number, len: number, now: number): DropReason | null {
    const chunk = (this.mtu - IPV6_HEADER_LEN - IPV6_FRAG_HEADER_LEN) & ~7;
    if (chunk < 8) return 'ip6-mtu-too-small';
    this.fragId6 = (this.fragId6 + 1) >>> 0;
    const id = this.fragId6;
    for (let at = 0; at < len; at += chunk) {
      const n = Math.min(chunk, len - at);
      const more = at + n < len;
      const ipLen = IPV6_HEADER_LEN + IPV6_FRAG_HEADER_LEN + n;
      const ipOff = this.out.begin(mac, ipLen, now, ETHERTYPE_IPV6);
      const buf = this.out.arena;
      this.addrs.emitHeader(buf, ipOff, src, dst, IPV6_NH_FRAGMENT, IPV6_FRAG_HEADER_LEN + n, 0, false);
      const f = ipOff + IPV6_HEADER_LEN;
      buf[f] = protocol;
      buf[f + 1] = 0;
      const w = at | (more ? 1 : 0);
      buf[f + 2] = w >>> 8;
      buf[f + 3] = w & 0xff;
      buf[f + 4] = id >>> 24;
      buf[f + 5] = (id >>> 16) & 0xff;
      buf[f + 6] = (id >>> 8) & 0xff;
      buf[f + 7] = id & 0xff;
      buf.set(payload.subarray(off + at, off + at + n), f + IPV6_FRAG_HEADER_LEN);
      this.out.send(ipLen, now);
    }
    this.fragmentsOut++;
    return null;
  }

  /** Sends a complete IP payload (already with its L4 checksum) to a guest, fragmenting IPv4 when needed. */
  sendRaw(mac: number, src: number, dst: number, protocol: number, payload: Uint8Array, off: number, len: number, now: number): DropReason | null {
    const v6 = src >= IPV6_HANDLE_BASE;
    const hl = this.addrs.headerLength(src);
    const ipLen = hl + len;
    if ((v6 ? len : ipLen) > MAX_DATAGRAM) return 'ip-too-big';
    if (ipLen <= this.mtu) {
      const ipOff = this.out.begin(mac, ipLen, now, v6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4);
      this.addrs.emitHeader(this.out.arena, ipOff, src, dst, protocol, len, this.nextIdent(), false);
      this.out.arena.set(payload.subarray(off, off + len), ipOff + hl);
      this.out.send(ipLen, now);
      return null;
    }
    if (v6) return this.sendFragmented6(mac, src, dst, protocol, payload, off, len, now);
    return this.sendFragmented(mac, src, dst, protocol, payload, off, len, now);
  }

  /** Sends a complete IP packet (either version) as it is. */
  sendPacket(mac: number, packet: Uint8Array, off: number, len: number, now: number): void {
    const ipOff = this.out.begin(mac, len, now, packet[off] >>> 4 === 6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4);
    this.out.arena.set(packet.subarray(off, off + len), ipOff);
    this.out.send(len, now);
  }

  private sendFragmented(mac: number, src: number, dst: number, protocol: number, payload: Uint8Array, off: number, len: number, now: number): DropReason | null {
    const t = this.template;
    t.src = src;
    t.dst = dst;
    t.protocol = protocol;
    t.id = this.nextIdent();
    this.mac = mac;
    this.now = now;
    const buf = Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
    const bad = this.fragmenter.fragment(t, buf, off, len, this.emitFragment);
    if (bad === null) this.fragmentsOut++;
    return bad;
  }
}
