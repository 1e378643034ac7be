/**
 * IPv4 datagrams (UDP, ICMP) from the gateway to guests, over GuestOutput.
 * A datagram that fits the MTU leaves as one frame; a larger one is built
 * once in a scratch buffer and cut into fragments (IPv4 lets routers
 * fragment UDP and ICMP; a 60 KB UDP answer at MTU 1500 needs it).
 */
import { emitIpv4Header, IPV4_HEADER_LEN, IP_PROTO_UDP } from '../wire/ipv4.js';
import { ETH_HEADER_LEN } from '../wire/ethernet.js';
import { VIRTIO_NET_HDR_F_NEEDS_CSUM } from '../wire/vnet.js';
import { fillUdpChecksum, fillUdpPseudoChecksum, writeUdpHeader } from '../wire/udp.js';
import { Ipv4Fragmenter, type Ipv4HeaderTemplate } from '../ipv4-fragmenter.js';
import type { GuestOutput } from './guest-output.js';

const UDP_HEADER_LEN = 8;
const MAX_DATAGRAM = 65_535;

export class Ipv4Output {
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
  fragmentsOut = 0;

  constructor(
    readonly out: GuestOutput,
    readonly mtu: number,
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
  ): string | null {
    const udpLen = UDP_HEADER_LEN + len;
    const ipLen = IPV4_HEADER_LEN + udpLen;
    if (ipLen > MAX_DATAGRAM) return 'udp-too-big';
    if (ipLen <= this.mtu) {
      const ipOff = this.out.begin(mac, ipLen, now);
      const buf = this.out.arena;
      emitIpv4Header(buf, ipOff, src, dst, IP_PROTO_UDP, udpLen, 64, this.nextIdent(), false);
      const u = ipOff + IPV4_HEADER_LEN;
      writeUdpHeader(buf, u, srcPort, dstPort, len);
      buf.set(payload.subarray(off, off + len), u + UDP_HEADER_LEN);
      // Checksum offload: the field holds the pseudo-header sum; the tap (or the bridge) adds the rest.
      fillUdpPseudoChecksum(buf, u, udpLen, src, dst);
      const v = this.out.header();
      v.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
      v.csumStart = ETH_HEADER_LEN + IPV4_HEADER_LEN;
      v.csumOffset = 6;
      this.out.send(ipLen, now);
      return null;
    }
    // Fragments cannot carry a partial checksum: compute it in full.
    const s = this.scratch;
    writeUdpHeader(s, 0, srcPort, dstPort, len);
    s.set(payload.subarray(off, off + len), UDP_HEADER_LEN);
    fillUdpChecksum(s, 0, udpLen, src, dst);
    return this.sendFragmented(mac, src, dst, IP_PROTO_UDP, s, 0, udpLen, now);
  }

  /** Sends a complete IPv4 payload (already with its L4 checksum) to a guest, fragmenting when needed. */
  sendRaw(mac: number, src: number, dst: number, protocol: number, payload: Uint8Array, off: number, len: number, now: number): string | null {
    const ipLen = IPV4_HEADER_LEN + len;
    if (ipLen > MAX_DATAGRAM) return 'ip-too-big';
    if (ipLen <= this.mtu) {
      const ipOff = this.out.begin(mac, ipLen, now);
      emitIpv4Header(this.out.arena, ipOff, src, dst, protocol, len, 64, this.nextIdent(), false);
      this.out.arena.set(payload.subarray(off, off + len), ipOff + IPV4_HEADER_LEN);
      this.out.send(ipLen, now);
      return null;
    }
    return this.sendFragmented(mac, src, dst, protocol, payload, off, len, now);
  }

  /** Sends a complete IPv4 packet as it is. */
  sendPacket(mac: number, packet: Uint8Array, off: number, len: number, now: number): void {
    const ipOff = this.out.begin(mac, len, now);
    this.out.arena.set(packet.subarray(off, off + len), ipOff);
    this.out.send(len, now);
  }

  private sendFragmented(mac: number, src: number, dst: number, protocol: number, payload: Uint8Array, off: number, len: number, now: number): string | null {
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
