/**
 * Completing virtio-net offloads for a port that takes plain frames.
 *
 * How it works
 * - A frame read from a tap opened with IFF_VNET_HDR may leave work undone
 *   (see stack/wire/vnet.ts): a partial L4 checksum (NEEDS_CSUM) and/or a
 *   TCP or UDP super-frame still to be cut into gsoSize-byte segments. When
 *   such a frame must leave through a port without a vnet header, this module
 *   does what the NIC would have done.
 * - All output is built in one preallocated scratch buffer and handed to
 *   `emit` through one reused Frame object. `emit` is synchronous: the
 *   receiver copies or writes the bytes before it returns, and the next
 *   segment overwrites them. The input frame is never modified, because the
 *   same bytes may also be forwarded verbatim to vnet ports.
 * - Segmentation trusts the packet's own header lengths (IHL, TCP data offset)
 *   rather than the header's hdrLen: Linux taps fill hdrLen with the length of
 *   the skb's linear area, which can include payload. hdrLen is only checked
 *   to lie within the frame. The payload runs to the end of the frame, as in
 *   the kernel's GSO (skb->len), not to the IP length field.
 * - Every segment gets a checksum computed from scratch over its own bytes;
 *   nothing is carried over from the partial sum of the super-frame. The
 *   payload is summed while it is copied, 32-bit words at a time through
 *   DataViews: on Node 20 Buffer#copy of a sub-range allocates a view per
 *   call, and the fused loop measured faster than copy + a separate sum pass.
 *   The DataView over the source memory is cached per ArrayBuffer (tap rings
 *   and arenas are long-lived), so steady state allocates nothing.
 * - Malformed input is dropped with a fixed reason string, returned to the
 *   caller and counted in `errors`; nothing here throws on packet contents.
 */
import type { Frame } from './frame.js';
import { checksum, finish, pseudoHeaderSum4, pseudoHeaderSum6, sumBytes } from './wire/checksum.js';
import {
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_ECN,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
  VIRTIO_NET_HDR_GSO_UDP,
  VIRTIO_NET_HDR_GSO_UDP_L4,
  VIRTIO_NET_HDR_LEN,
  VnetHeaderView,
} from './wire/vnet.js';
import { newDropCounters, type DropCounts } from './counters.js';
import type { DropReason } from './drop-reasons.js';

/**
 * The largest frame a tap hands over: an IPv6 packet (40-byte header plus a
 * 16-bit payload length) behind an Ethernet header with one VLAN tag is
 * 65593 bytes; rounded up.
 */
export const OFFLOAD_SCRATCH_LEN = 65_536 + 128;

const ETH_HLEN = 14;
const VLAN_HLEN = 4;
const OFF_ETHERTYPE = 12;
const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_IPV6 = 0x86dd;
const ETHERTYPE_VLAN = 0x8100;

const IPV4_MIN_HLEN = 20;
const IPV4_OFF_TOTAL_LEN = 2;
const IPV4_OFF_ID = 4;
const IPV4_OFF_FRAG = 6;
const IPV4_OFF_PROTOCOL = 9;
const IPV4_OFF_CHECKSUM = 10;
const IPV4_OFF_SRC = 12;
const IPV4_OFF_DST = 16;
/** MF flag plus the 13-bit fragment offset. */
const IPV4_FRAG_MASK = 0x3fff;

const IPV6_HLEN = 40;
const IPV6_OFF_PAYLOAD_LEN = 4;
const IPV6_OFF_NEXT_HEADER = 6;
const IPV6_OFF_SRC = 8;
const IPV6_OFF_DST = 24;

const PROTO_TCP = 6;
const PROTO_UDP = 17;

const TCP_MIN_HLEN = 20;
const TCP_OFF_SEQ = 4;
const TCP_OFF_DATA_OFFSET = 12;
const TCP_OFF_FLAGS = 13;
const TCP_OFF_CHECKSUM = 16;
const TCP_FIN = 0x01;
const TCP_PSH = 0x08;
const TCP_CWR = 0x80;

const UDP_HLEN = 8;
const UDP_OFF_LENGTH = 4;
const UDP_OFF_CHECKSUM = 6;

function be16(buf: Uint8Array, off: number): number {
  return (buf[off] << 8) | buf[off + 1];
}

function be32(buf: Uint8Array, off: number): number {
  return ((buf[off] << 24) | (buf[off + 1] << 16) | (buf[off + 2] << 8) | buf[off + 3]) >>> 0;
}

function putBe16(buf: Uint8Array, off: number, v: number): void {
  buf[off] = (v >>> 8) & 0xff;
  buf[off + 1] = v & 0xff;
}

function putBe32(buf: Uint8Array, off: number, v: number): void {
  buf[off] = v >>> 24;
  buf[off + 1] = (v >>> 16) & 0xff;
  buf[off + 2] = (v >>> 8) & 0xff;
  buf[off + 3] = v & 0xff;
}

/**
 * Copies n bytes and returns their Internet checksum sum (big-endian 16-bit
 * words counted from `from`, odd last byte padded), folded to at most 17 bits.
 */
function copySum(src: DataView, from: number, dst: DataView, to: number, n: number): number {
  let sum = 0;
  let i = 0;
  for (; i + 7 < n; i += 8) {
    const a = src.getUint32(from + i);
    const b = src.getUint32(from + i + 4);
    dst.setUint32(to + i, a);
    dst.setUint32(to + i + 4, b);
    sum += (a >>> 16) + (a & 0xffff) + (b >>> 16) + (b & 0xffff);
  }
  for (; i < n; i++) {
    const x = src.getUint8(from + i);
    dst.setUint8(to + i, x);
    sum += (i & 1) === 0 ? x << 8 : x;
  }
  // Fold once so the result stays a small integer whatever n is.
  return (sum % 0x10000) + Math.floor(sum / 0x10000);
}

export class OffloadCompleter {
  /** Drops by reason. */
  private readonly failed = newDropCounters();
  /** Drops by reason so far (allocates: for stats and tests). */
  get errors(): DropCounts {
    return this.failed.snapshot();
  }
  /** Frames whose partial checksum was completed (no segmentation). */
  checksumsCompleted = 0;
  /** Super-frames cut into segments, and the segments produced. */
  superFrames = 0;
  segments = 0;

  private readonly scratch: Buffer;
  private readonly scratchView: DataView;
  private readonly hdr = new VnetHeaderView();
  private readonly out: Frame;
  private srcMemory: ArrayBufferLike | null = null;
  private srcView: DataView = new DataView(new ArrayBuffer(0));

  constructor(scratchLen: number = OFFLOAD_SCRATCH_LEN) {
    this.scratch = Buffer.alloc(scratchLen);
    this.scratchView = new DataView(this.scratch.buffer, this.scratch.byteOffset, this.scratch.byteLength);
    this.out = { buf: this.scratch, off: 0, len: 0, vnet: false };
  }

  /** A DataView over all of buf's memory; offsets into it are buf.byteOffset + off. */
  private viewOf(buf: Buffer): DataView {
    if (buf.buffer !== this.srcMemory) {
      this.srcMemory = buf.buffer;
      this.srcView = new DataView(buf.buffer);
    }
    return this.srcView;
  }

  /**
   * Emits `frame` (which has vnet = true) as one or more plain frames.
   * Returns null on success, or the reason it was dropped (nothing emitted).
   */
  complete(frame: Frame, emit: (f: Frame) => void): DropReason | null {
    const buf = frame.buf;
    const off = frame.off;
    const len = frame.len;
    if (off < VIRTIO_NET_HDR_LEN || len < 0 || off + len > buf.length) return this.fail('vnet-bad-frame');
    const h = this.hdr.reset(buf, off - VIRTIO_NET_HDR_LEN);
    const gso = h.gsoType & ~VIRTIO_NET_HDR_GSO_ECN;
    switch (gso) {
      case VIRTIO_NET_HDR_GSO_NONE:
        return this.completeChecksum(buf, off, len, h, emit);
      case VIRTIO_NET_HDR_GSO_TCPV4:
      case VIRTIO_NET_HDR_GSO_TCPV6:
      case VIRTIO_NET_HDR_GSO_UDP_L4:
        return this.segment(buf, off, len, gso, h, emit);
      case VIRTIO_NET_HDR_GSO_UDP:
        // UFO asks for IP fragmentation of one datagram, not segmentation; current kernels do not emit it.
        return this.fail('ufo-unsupported');
      default:
        return this.fail('gso-unknown-type');
    }
  }

  private fail(reason: DropReason): DropReason {
    this.failed.add(reason);
    return reason;
  }

  private completeChecksum(buf: Buffer, off: number, len: number, h: VnetHeaderView, emit: (f: Frame) => void): DropReason | null {
    const out = this.out;
    if ((h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) === 0) {
      // Nothing left to do: pass the bytes on without a copy.
      out.buf = buf;
      out.off = off;
      out.len = len;
      emit(out);
      out.buf = this.scratch;
      return null;
    }
    const start = h.csumStart;
    const field = start + h.csumOffset;
    if (field + 2 > len) return this.fail('csum-offset-beyond-frame');
    if (len > this.scratch.length) return this.fail('frame-too-long');
    const s = this.scratch;
    const src = this.viewOf(buf);
    const base = buf.byteOffset + off;
    const dst = this.scratchView;
    copySum(src, base, dst, 0, start);
    let end = this.ipEnd(buf, off, len);
    if (end < field + 2) end = len;
    // The field already holds the pseudo-header sum, so summing across it folds that in.
    let c = finish(copySum(src, base + start, dst, start, end - start));
    if (end < len) copySum(src, base + end, dst, end, len - end);
    // A zero result is sent as 0xffff (equal in one's complement): for UDP, zero means "no checksum".
    if (c === 0) c = 0xffff;
    putBe16(s, field, c);
    out.buf = s;
    out.off = 0;
    out.len = len;
    this.checksumsCompleted++;
    emit(out);
    return null;
  }

  /**
   * End of the IP packet inside the Ethernet frame at b[off], so that
   * Ethernet padding stays out of the checksum; the frame length when the
   * frame is not IP or its length field does not fit.
   */
  private ipEnd(b: Uint8Array, off: number, len: number): number {
    if (len < ETH_HLEN) return len;
    let l3 = ETH_HLEN;
    let et = be16(b, off + OFF_ETHERTYPE);
    if (et === ETHERTYPE_VLAN && len >= ETH_HLEN + VLAN_HLEN) {
      et = be16(b, off + OFF_ETHERTYPE + VLAN_HLEN);
      l3 += VLAN_HLEN;
    }
    let end = len;
    if (et === ETHERTYPE_IPV4 && len >= l3 + IPV4_MIN_HLEN && b[off + l3] >> 4 === 4) {
      end = l3 + be16(b, off + l3 + IPV4_OFF_TOTAL_LEN);
    } else if (et === ETHERTYPE_IPV6 && len >= l3 + IPV6_HLEN && b[off + l3] >> 4 === 6) {
      end = l3 + IPV6_HLEN + be16(b, off + l3 + IPV6_OFF_PAYLOAD_LEN);
    }
    return end <= len && end > l3 ? end : len;
  }

  private segment(buf: Buffer, off: number, len: number, gso: number, h: VnetHeaderView, emit: (f: Frame) => void): DropReason | null {
    const gsoSize = h.gsoSize;
    if (gsoSize === 0) return this.fail('gso-size-zero');
    if (h.hdrLen > len) return this.fail('gso-hdr-len-beyond-frame');
    if (len < ETH_HLEN) return this.fail('gso-truncated');

    let l3 = ETH_HLEN;
    let et = be16(buf, off + OFF_ETHERTYPE);
    if (et === ETHERTYPE_VLAN) {
      if (len < ETH_HLEN + VLAN_HLEN) return this.fail('gso-truncated');
      et = be16(buf, off + OFF_ETHERTYPE + VLAN_HLEN);
      l3 += VLAN_HLEN;
    }

    let v4: boolean;
    let ihl = 0;
    let proto: number;
    let l4: number;
    if (et === ETHERTYPE_IPV4) {
      if (gso === VIRTIO_NET_HDR_GSO_TCPV6) return this.fail('gso-bad-ethertype');
      if (len < l3 + IPV4_MIN_HLEN) return this.fail('gso-truncated');
      const vihl = buf[off + l3];
      if (vihl >> 4 !== 4) return this.fail('gso-bad-ip-version');
      ihl = (vihl & 0x0f) * 4;
      if (ihl < IPV4_MIN_HLEN) return this.fail('gso-bad-ihl');
      if ((be16(buf, off + l3 + IPV4_OFF_FRAG) & IPV4_FRAG_MASK) !== 0) return this.fail('gso-fragment');
      proto = buf[off + l3 + IPV4_OFF_PROTOCOL];
      l4 = l3 + ihl;
      v4 = true;
    } else if (et === ETHERTYPE_IPV6) {
      if (gso === VIRTIO_NET_HDR_GSO_TCPV4) return this.fail('gso-bad-ethertype');
      if (len < l3 + IPV6_HLEN) return this.fail('gso-truncated');
      if (buf[off + l3] >> 4 !== 6) return this.fail('gso-bad-ip-version');
      // Extension headers are not walked: Linux puts none before a GSO payload it emits.
      proto = buf[off + l3 + IPV6_OFF_NEXT_HEADER];
      l4 = l3 + IPV6_HLEN;
      v4 = false;
    } else {
      return this.fail('gso-bad-ethertype');
    }

    const tcp = gso !== VIRTIO_NET_HDR_GSO_UDP_L4;
    let hdr: number;
    if (tcp) {
      if (proto !== PROTO_TCP) return this.fail('gso-bad-protocol');
      if (len < l4 + TCP_MIN_HLEN) return this.fail('gso-truncated');
      const doff = (buf[off + l4 + TCP_OFF_DATA_OFFSET] >> 4) * 4;
      if (doff < TCP_MIN_HLEN) return this.fail('gso-bad-tcp-header');
      hdr = l4 + doff;
    } else {
      if (proto !== PROTO_UDP) return this.fail('gso-bad-protocol');
      hdr = l4 + UDP_HLEN;
    }
    if (hdr > len) return this.fail('gso-truncated');

    const payloadLen = len - hdr;
    const firstLen = payloadLen < gsoSize ? payloadLen : gsoSize;
    if (hdr + firstLen > this.scratch.length) return this.fail('gso-segment-too-long');
    const nseg = payloadLen === 0 ? 1 : Math.ceil(payloadLen / gsoSize);

    const s = this.scratch;
    const dst = this.scratchView;
    const src = this.viewOf(buf);
    const base = buf.byteOffset + off;
    const out = this.out;
    const ipId = v4 ? be16(buf, off + l3 + IPV4_OFF_ID) : 0;
    const src4 = v4 ? be32(buf, off + l3 + IPV4_OFF_SRC) : 0;
    const dst4 = v4 ? be32(buf, off + l3 + IPV4_OFF_DST) : 0;
    const seq0 = tcp ? be32(buf, off + l4 + TCP_OFF_SEQ) : 0;
    const flags0 = tcp ? buf[off + l4 + TCP_OFF_FLAGS] : 0;

    this.superFrames++;
    // Position of the next payload byte, relative to the Ethernet header.
    let pos = hdr;
    for (let i = 0; i < nseg; i++) {
      const remaining = len - pos;
      const pay = remaining < gsoSize ? remaining : gsoSize;
      const segLen = hdr + pay;
      copySum(src, base, dst, 0, hdr);
      // hdr - l4 is even (TCP and UDP header lengths are), so the payload's
      // words line up with the L4 checksum's words.
      const paySum = copySum(src, base + pos, dst, hdr, pay);
      pos += pay;

      const l4Len = segLen - l4;
      let pseudo: number;
      if (v4) {
        putBe16(s, l3 + IPV4_OFF_TOTAL_LEN, segLen - l3);
        putBe16(s, l3 + IPV4_OFF_ID, (ipId + i) & 0xffff);
        putBe16(s, l3 + IPV4_OFF_CHECKSUM, 0);
        putBe16(s, l3 + IPV4_OFF_CHECKSUM, checksum(s, l3, ihl));
        pseudo = pseudoHeaderSum4(src4, dst4, proto, l4Len);
      } else {
        putBe16(s, l3 + IPV6_OFF_PAYLOAD_LEN, segLen - l3 - IPV6_HLEN);
        pseudo = pseudoHeaderSum6(s, l3 + IPV6_OFF_SRC, l3 + IPV6_OFF_DST, proto, l4Len);
      }

      if (tcp) {
        putBe32(s, l4 + TCP_OFF_SEQ, (seq0 + i * gsoSize) >>> 0);
        let f = flags0;
        // FIN and PSH belong to the end of the data, CWR to its start.
        if (i < nseg - 1) f &= ~(TCP_FIN | TCP_PSH);
        if (i > 0) f &= ~TCP_CWR;
        s[l4 + TCP_OFF_FLAGS] = f;
        putBe16(s, l4 + TCP_OFF_CHECKSUM, 0);
        putBe16(s, l4 + TCP_OFF_CHECKSUM, finish(sumBytes(s, l4, hdr - l4, pseudo + paySum)));
      } else {
        putBe16(s, l4 + UDP_OFF_LENGTH, l4Len);
        putBe16(s, l4 + UDP_OFF_CHECKSUM, 0);
        let c = finish(sumBytes(s, l4, hdr - l4, pseudo + paySum));
        if (c === 0) c = 0xffff;
        putBe16(s, l4 + UDP_OFF_CHECKSUM, c);
      }

      out.buf = s;
      out.off = 0;
      out.len = segLen;
      this.segments++;
      emit(out);
    }
    return null;
  }
}
