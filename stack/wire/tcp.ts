/**
 * TCP header view (RFC 9293 §3.1) and header writer.
 *
 * `reset` checks that the fixed header and the data offset fit in the bytes
 * given; after that every getter is safe. Options are not parsed by `reset`:
 * `parseOptions` walks them (bounded by the 40 option bytes, never throws)
 * into a reused `TcpOptions` struct, so a caller that only needs ports (the
 * NAT's flow lookup) pays nothing for them.
 *
 * The writer lays options out the way Linux does (tcp_options_write), so our
 * SYNs look like a kernel's to middleboxes and to golden-byte tests:
 *   SYN:  MSS, [SACK_PERM+TS | NOP NOP TS], NOP WS, [NOP NOP SACK_PERM]
 *   data: [NOP NOP TS], [NOP NOP SACK blocks]
 */
import { finish, sumBytes } from './checksum.js';
import { readU16, writeU16, readU32, writeU32 } from './bytes.js';
import type { DropReason } from '../drop-reasons.js';

export const TCP_HEADER_LEN = 20;
export const TCP_MAX_HEADER_LEN = 60;
export const TCP_MAX_OPTIONS_LEN = 40;

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
export const TCP_URG = 0x20;
export const TCP_ECE = 0x40;
export const TCP_CWR = 0x80;

export const TCPOPT_EOL = 0;
export const TCPOPT_NOP = 1;
export const TCPOPT_MSS = 2;
export const TCPOPT_WSCALE = 3;
export const TCPOPT_SACK_PERM = 4;
export const TCPOPT_SACK = 5;
export const TCPOPT_TIMESTAMP = 8;

/** RFC 7323 §2.3: a larger shift would let the window exceed 2^30. */
export const TCP_MAX_WINDOW_SCALE = 14;
/** Without timestamps four SACK blocks fit in 40 option bytes; with them, three. */
export const TCP_MAX_SACK_BLOCKS = 4;

const SRC_PORT = 0;
const DST_PORT = 2;
const SEQ = 4;
const ACK = 8;
const DATA_OFFSET = 12;
const FLAGS = 13;
const WINDOW = 14;
const CHECKSUM = 16;
/** Offset of the checksum in the TCP header (a virtio-net header's csum_offset for TCP). */
export const TCP_CHECKSUM_OFFSET = CHECKSUM;
const URGENT = 18;

const EMPTY = new Uint8Array(0);

/**
 * The options we understand, parsed or to be written. One instance is reused
 * per view (parsing) or per connection (writing); `clear` resets it.
 */
export class TcpOptions {
  /** Maximum segment size, or -1 when absent. */
  mss = -1;
  /** Window scale shift (clamped to 14), or -1 when absent. */
  windowScale = -1;
  sackPermitted = false;
  tsPresent = false;
  tsVal = 0;
  tsEcr = 0;
  /** Number of valid SACK blocks in `sack` (0..4). */
  sackCount = 0;
  /** SACK blocks as [left0, right0, left1, right1, ...] sequence numbers. */
  readonly sack = new Uint32Array(2 * TCP_MAX_SACK_BLOCKS);

  clear(): this {
    this.mss = -1;
    this.windowScale = -1;
    this.sackPermitted = false;
    this.tsPresent = false;
    this.tsVal = 0;
    this.tsEcr = 0;
    this.sackCount = 0;
    return this;
  }
}

/** The header fields `writeTcpHeader` needs. A connection's TcpSegmentOut satisfies it. */
export interface TcpHeaderFields {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  /** The 16-bit on-wire value (already scaled down). */
  window: number;
  urgent: number;
}

/** Reusable; `reset` before use. */
export class TcpView {
  buf: Uint8Array = EMPTY;
  off = 0;
  /** Bytes of the segment: header, options and payload. */
  len = 0;
  /** Filled by `parseOptions`. */
  readonly options = new TcpOptions();

  /** Binds to buf[off, off+len). Returns a drop reason or null. */
  reset(buf: Uint8Array, off: number, len: number): DropReason | null {
    if (off < 0 || len < TCP_HEADER_LEN || off + len > buf.length) return 'tcp-truncated';
    const hl = (buf[off + DATA_OFFSET] >>> 4) * 4;
    if (hl < TCP_HEADER_LEN) return 'tcp-bad-data-offset';
    if (hl > len) return 'tcp-truncated';
    this.buf = buf;
    this.off = off;
    this.len = len;
    return null;
  }

  get srcPort(): number {
    return readU16(this.buf, this.off + SRC_PORT);
  }
  get dstPort(): number {
    return readU16(this.buf, this.off + DST_PORT);
  }
  get seq(): number {
    return readU32(this.buf, this.off + SEQ);
  }
  get ack(): number {
    return readU32(this.buf, this.off + ACK);
  }
  /** Header length in 32-bit words. */
  get dataOffset(): number {
    return this.buf[this.off + DATA_OFFSET] >>> 4;
  }
  get headerLength(): number {
    return (this.buf[this.off + DATA_OFFSET] >>> 4) * 4;
  }
  /** The eight flag bits (TCP_FIN ... TCP_CWR). */
  get flags(): number {
    return this.buf[this.off + FLAGS];
  }
  get window(): number {
    return readU16(this.buf, this.off + WINDOW);
  }
  get checksum(): number {
    return readU16(this.buf, this.off + CHECKSUM);
  }
  set checksum(v: number) {
    writeU16(this.buf, this.off + CHECKSUM, v);
  }
  get urgent(): number {
    return readU16(this.buf, this.off + URGENT);
  }
  get payloadOffset(): number {
    return this.off + this.headerLength;
  }
  get payloadLength(): number {
    return this.len - this.headerLength;
  }

  /** Walks the options into `out` (default: this.options). Returns 'tcp-bad-options' or null. */
  parseOptions(out: TcpOptions = this.options): DropReason | null {
    const start = this.off + TCP_HEADER_LEN;
    return parseTcpOptions(this.buf, start, this.headerLength - TCP_HEADER_LEN, out);
  }
}

/**
 * Parses len option bytes at buf[off]. Unknown kinds are skipped by their
 * length byte; a length that is < 2 or runs past the end, or a known kind
 * with the wrong length, is malformed. `out` is cleared first; on error it
 * holds what was parsed before the bad option.
 */
export function parseTcpOptions(buf: Uint8Array, off: number, len: number, out: TcpOptions): DropReason | null {
  out.clear();
  const end = off + len;
  let i = off;
  while (i < end) {
    const kind = buf[i];
    if (kind === TCPOPT_EOL) break;
    if (kind === TCPOPT_NOP) {
      i++;
      continue;
    }
    if (i + 1 >= end) return 'tcp-bad-options';
    const olen = buf[i + 1];
    if (olen < 2 || i + olen > end) return 'tcp-bad-options';
    switch (kind) {
      case TCPOPT_MSS:
        if (olen !== 4) return 'tcp-bad-options';
        out.mss = readU16(buf, i + 2);
        break;
      case TCPOPT_WSCALE:
        if (olen !== 3) return 'tcp-bad-options';
        out.windowScale = Math.min(buf[i + 2], TCP_MAX_WINDOW_SCALE);
        break;
      case TCPOPT_SACK_PERM:
        if (olen !== 2) return 'tcp-bad-options';
        out.sackPermitted = true;
        break;
      case TCPOPT_TIMESTAMP:
        if (olen !== 10) return 'tcp-bad-options';
        out.tsPresent = true;
        out.tsVal = readU32(buf, i + 2);
        out.tsEcr = readU32(buf, i + 6);
        break;
      case TCPOPT_SACK: {
        const n = (olen - 2) >>> 3;
        if (n < 1 || n > TCP_MAX_SACK_BLOCKS || olen !== 2 + 8 * n) return 'tcp-bad-options';
        for (let b = 0; b < n; b++) {
          out.sack[2 * b] = readU32(buf, i + 2 + 8 * b);
          out.sack[2 * b + 1] = readU32(buf, i + 6 + 8 * b);
        }
        out.sackCount = n;
        break;
      }
      default:
        break;
    }
    i += olen;
  }
  return null;
}

/** How many SACK blocks fit next to the other options (at most 40 bytes in all). */
function sackBlocksToWrite(opts: TcpOptions, syn: boolean): number {
  if (syn || opts.sackCount <= 0) return 0;
  return Math.min(opts.sackCount, opts.tsPresent ? 3 : TCP_MAX_SACK_BLOCKS);
}

/**
 * Bytes of options `writeTcpHeader` will write (a multiple of 4). MSS, window
 * scale and SACK-permitted are only written on SYN segments.
 */
export function tcpOptionsLength(opts: TcpOptions | null, flags: number): number {
  if (opts === null) return 0;
  const syn = (flags & TCP_SYN) !== 0;
  let n = 0;
  if (syn && opts.mss >= 0) n += 4;
  if (opts.tsPresent) n += 12;
  if (syn && opts.windowScale >= 0) n += 4;
  if (syn && opts.sackPermitted && !opts.tsPresent) n += 4;
  const blocks = sackBlocksToWrite(opts, syn);
  if (blocks > 0) n += 4 + 8 * blocks;
  return n;
}

/**
 * Writes the header with options at buf[off] and returns its length. The
 * checksum field is left 0: the caller adds the pseudo-header sum (offload)
 * or the full checksum (`tcpChecksum`) once the payload is in place.
 */
export function writeTcpHeader(buf: Uint8Array, off: number, h: TcpHeaderFields, opts: TcpOptions | null): number {
  const hl = TCP_HEADER_LEN + tcpOptionsLength(opts, h.flags);
  writeU16(buf, off + SRC_PORT, h.srcPort);
  writeU16(buf, off + DST_PORT, h.dstPort);
  writeU32(buf, off + SEQ, h.seq);
  writeU32(buf, off + ACK, h.ack);
  buf[off + DATA_OFFSET] = (hl >>> 2) << 4;
  buf[off + FLAGS] = h.flags & 0xff;
  writeU16(buf, off + WINDOW, h.window);
  writeU16(buf, off + CHECKSUM, 0);
  writeU16(buf, off + URGENT, h.urgent);
  if (opts === null) return hl;
  const syn = (h.flags & TCP_SYN) !== 0;
  let p = off + TCP_HEADER_LEN;
  if (syn && opts.mss >= 0) {
    buf[p] = TCPOPT_MSS;
    buf[p + 1] = 4;
    writeU16(buf, p + 2, opts.mss);
    p += 4;
  }
  if (opts.tsPresent) {
    // Linux folds SACK-permitted into the two pad bytes before the timestamps.
    if (syn && opts.sackPermitted) {
      buf[p] = TCPOPT_SACK_PERM;
      buf[p + 1] = 2;
    } else {
      buf[p] = TCPOPT_NOP;
      buf[p + 1] = TCPOPT_NOP;
    }
    buf[p + 2] = TCPOPT_TIMESTAMP;
    buf[p + 3] = 10;
    writeU32(buf, p + 4, opts.tsVal);
    writeU32(buf, p + 8, opts.tsEcr);
    p += 12;
  }
  if (syn && opts.windowScale >= 0) {
    buf[p] = TCPOPT_NOP;
    buf[p + 1] = TCPOPT_WSCALE;
    buf[p + 2] = 3;
    buf[p + 3] = Math.min(opts.windowScale, TCP_MAX_WINDOW_SCALE);
    p += 4;
  }
  if (syn && opts.sackPermitted && !opts.tsPresent) {
    buf[p] = TCPOPT_NOP;
    buf[p + 1] = TCPOPT_NOP;
    buf[p + 2] = TCPOPT_SACK_PERM;
    buf[p + 3] = 2;
    p += 4;
  }
  const blocks = sackBlocksToWrite(opts, syn);
  if (blocks > 0) {
    buf[p] = TCPOPT_NOP;
    buf[p + 1] = TCPOPT_NOP;
    buf[p + 2] = TCPOPT_SACK;
    buf[p + 3] = 2 + 8 * blocks;
    p += 4;
    for (let b = 0; b < blocks; b++) {
      writeU32(buf, p, opts.sack[2 * b]);
      writeU32(buf, p + 4, opts.sack[2 * b + 1]);
      p += 8;
    }
  }
  return hl;
}

/**
 * The checksum of a whole segment buf[off, off+len) (header with a zero or
 * stale checksum field is fine: the field is skipped), given the sum of the
 * IP pseudo-header (`pseudoHeaderSum4`/`pseudoHeaderSum6`). Stores it and
 * returns it.
 */
export function tcpChecksum(buf: Uint8Array, ipPseudoSum: number, off: number, len: number): number {
  // Sum around the checksum field instead of zeroing it first.
  let s = sumBytes(buf, off, CHECKSUM, ipPseudoSum);
  s = sumBytes(buf, off + URGENT, len - URGENT, s);
  const c = finish(s);
  writeU16(buf, off + CHECKSUM, c);
  return c;
}
