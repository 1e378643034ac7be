/**
 * IPv4 fragmentation (RFC 791 section 3.2) of a datagram the gateway builds,
 * e.g. a UDP reply from the host larger than the guest's MTU.
 *
 * How it works
 * - Every fragment but the last carries the largest multiple of 8 bytes of
 *   payload that fits the MTU after a 20-byte header (1480 at MTU 1500, as
 *   Linux does); MF is set on all but the last; the offset field counts
 *   8-byte units. The header has no options, so every fragment's header is
 *   the same size.
 * - Each fragment is assembled in one scratch buffer of MTU bytes, owned by
 *   the fragmenter and allocated once, and handed to the `emit` callback as a
 *   complete IPv4 packet. The callback must send or copy it before it returns:
 *   the next fragment overwrites it. That is how fragmenting allocates
 *   nothing per fragment (pass a callback created once, not a fresh closure).
 * - A datagram with DF set that does not fit is not fragmented: the caller
 *   gets 'frag-df-set' and decides (ICMP frag-needed, or drop).
 */
import { checksum } from '../wire/checksum.js';
import { emitIpv4Header, IPV4_HEADER_LEN } from '../wire/ipv4.js';
import { newDropCounters, type DropCounts } from '../counters.js';

/** RFC 791: every host must accept 68-byte datagrams, so no link MTU is smaller. */
export const IPV4_MIN_MTU = 68;
const MAX_TOTAL_LENGTH = 65535;
const FLAGS_FRAG = 6;
const CHECKSUM = 10;
const MF = 0x2000;

/** The header fields every fragment shares. A caller keeps one and updates it. */
export interface Ipv4HeaderTemplate {
  src: number;
  dst: number;
  protocol: number;
  id: number;
  ttl: number;
  tos: number;
  dontFragment: boolean;
}

/** Receives one complete IPv4 packet in the fragmenter's scratch buffer. */
export type Ipv4PacketSink = (buf: Buffer, off: number, len: number) => void;

export type FragmentError = 'frag-df-set' | 'frag-too-big' | 'frag-truncated';

export class Ipv4Fragmenter {
  readonly mtu: number;
  /** Packets emitted, fragments and whole ones alike. */
  packets = 0;
  /** Datagrams that had to be split. */
  fragmented = 0;
  private readonly dropped = newDropCounters();
  /** Drops by reason so far (allocates: for stats and tests). */
  get drops(): DropCounts {
    return this.dropped.snapshot();
  }
  private readonly scratch: Buffer;
  /** Payload bytes per non-last fragment. */
  private readonly chunk: number;

  constructor(mtu = 1500) {
    if (!Number.isInteger(mtu) || mtu < IPV4_MIN_MTU || mtu > MAX_TOTAL_LENGTH) {
      throw new RangeError(`IPv4 MTU must be an integer from ${IPV4_MIN_MTU} to ${MAX_TOTAL_LENGTH}, got ${mtu}`);
    }
    this.mtu = mtu;
    this.scratch = Buffer.alloc(mtu);
    this.chunk = (mtu - IPV4_HEADER_LEN) & ~7;
  }

  /**
   * Emits the datagram buf[off, off+len) (the IP payload) as one packet if it
   * fits the MTU, else as fragments. Returns null, or why nothing was sent.
   */
  fragment(h: Ipv4HeaderTemplate, buf: Buffer, off: number, len: number, emit: Ipv4PacketSink): FragmentError | null {
    if (!(off >= 0 && len >= 0 && off + len <= buf.length)) return this.drop('frag-truncated');
    if (len + IPV4_HEADER_LEN > MAX_TOTAL_LENGTH) return this.drop('frag-too-big');
    const s = this.scratch;
    if (len + IPV4_HEADER_LEN <= this.mtu) {
      emitIpv4Header(s, 0, h.src, h.dst, h.protocol, len, h.ttl, h.id, h.dontFragment, h.tos);
      buf.copy(s, IPV4_HEADER_LEN, off, off + len);
      this.packets++;
      emit(s, 0, IPV4_HEADER_LEN + len);
      return null;
    }
    if (h.dontFragment) return this.drop('frag-df-set');
    this.fragmented++;
    for (let at = 0; at < len; at += this.chunk) {
      const n = Math.min(this.chunk, len - at);
      const last = at + n === len;
      emitIpv4Header(s, 0, h.src, h.dst, h.protocol, n, h.ttl, h.id, false, h.tos);
      // emitIpv4Header writes flags/offset as zero (DF clear); set them and
      // checksum the 20 bytes again, which costs less than any bookkeeping.
      const word = (last ? 0 : MF) | (at >>> 3);
      s[FLAGS_FRAG] = word >>> 8;
      s[FLAGS_FRAG + 1] = word & 0xff;
      s[CHECKSUM] = 0;
      s[CHECKSUM + 1] = 0;
      const sum = checksum(s, 0, IPV4_HEADER_LEN);
      s[CHECKSUM] = sum >>> 8;
      s[CHECKSUM + 1] = sum & 0xff;
      buf.copy(s, IPV4_HEADER_LEN, off + at, off + at + n);
      this.packets++;
      emit(s, 0, IPV4_HEADER_LEN + n);
    }
    return null;
  }

  private drop(reason: FragmentError): FragmentError {
    this.dropped.add(reason);
    return reason;
  }
}
