/**
 * Guest datagrams on their way to host UDP sockets, gathered for one native
 * send (sendmmsg) at the end of the batch.
 *
 * How it works
 * - Payloads are copied one after another into `tx`, an area allocated once
 *   and registered with the native sockets; `desc` holds one
 *   [fd, offset, length, gsoSize] descriptor per message. The guest's frame
 *   memory is only valid while its batch is handled, hence the copy (a
 *   memcpy per datagram, no allocation: copyBytes reuses its views).
 * - A datagram for the same socket as the message before it, that message
 *   being a run of equal-size datagrams (the last one may be shorter), joins
 *   it: the run goes as one message with UDP_SEGMENT = that size, which the
 *   kernel cuts back into the same datagrams. A run stops at a shorter
 *   datagram, at GSO_MAX_SEGMENTS datagrams or GSO_MAX_BYTES bytes (the
 *   kernel's limits with margin: UDP_MAX_SEGMENTS is 64 on older kernels,
 *   and an IPv4 packet cannot exceed 64 KiB).
 * - A guest super-frame (USO) arrives with its own segment size and is one
 *   message of its own.
 * - `add` returns false when tx or desc is full; the owner sends what is
 *   queued (`clear` afterwards) and adds again.
 */
import { copyBytes } from '../../stack/tcp/byte-copy.js';

/** Datagrams per UDP_SEGMENT message at most. */
export const GSO_MAX_SEGMENTS = 64;
/** Payload bytes per UDP_SEGMENT message at most (IPv4 total length 65535 minus headers, rounded down). */
export const GSO_MAX_BYTES = 65_000;
/** 1 MiB: a few batches of 64 maximal datagrams or super-frames. */
export const UDP_TX_BYTES = 1 << 20;
/** Messages per send; the native side splits them into sendmmsg calls of 64. */
export const UDP_TX_MESSAGES = 1024;

export class UdpSendBatch {
  readonly tx: Buffer;
  readonly desc: Uint32Array;
  /** Messages queued. */
  count = 0;
  /** Datagrams queued (a run counts each of its datagrams). */
  datagrams = 0;
  private used = 0;
  /** Segment size of the last message while it may still grow; 0: it may not. */
  private runSeg = 0;
  private runSegs = 0;

  constructor(txBytes = UDP_TX_BYTES, maxMessages = UDP_TX_MESSAGES) {
    this.tx = Buffer.alloc(txBytes);
    this.desc = new Uint32Array(maxMessages * 4);
  }

  /**
   * Queues buf[off, off+len) for socket fd; gsoSize > 0: it is already a
   * burst of gsoSize-byte datagrams. False when there is no room.
   */
  add(fd: number, buf: Uint8Array, off: number, len: number, gsoSize = 0): boolean {
    const at = this.used;
    if (at + len > this.tx.length) return false;
    const d = this.desc;
    const last = this.count - 1;
    if (
      gsoSize === 0 &&
      this.runSeg > 0 &&
      d[last * 4] === fd &&
      len > 0 &&
      len <= this.runSeg &&
      this.runSegs < GSO_MAX_SEGMENTS &&
      d[last * 4 + 2] + len <= GSO_MAX_BYTES
    ) {
      copyBytes(this.tx, at, buf, off, len);
      this.used = at + len;
      d[last * 4 + 2] += len;
      d[last * 4 + 3] = this.runSeg;
      this.runSegs++;
      this.datagrams++;
      // A shorter datagram ends the run: only the last may be short.
      if (len < this.runSeg) this.runSeg = 0;
      return true;
    }
    if (this.count * 4 >= d.length) return false;
    copyBytes(this.tx, at, buf, off, len);
    this.used = at + len;
    const i = this.count * 4;
    d[i] = fd;
    d[i + 1] = at;
    d[i + 2] = len;
    d[i + 3] = gsoSize;
    this.count++;
    if (gsoSize > 0) {
      this.datagrams += len === 0 ? 1 : Math.ceil(len / gsoSize);
      this.runSeg = 0;
    } else {
      this.datagrams++;
      this.runSeg = len;
      this.runSegs = 1;
    }
    return true;
  }

  clear(): void {
    this.count = 0;
    this.datagrams = 0;
    this.used = 0;
    this.runSeg = 0;
    this.runSegs = 0;
  }
}

/**
 * Host → guest, the other way round: of the received messages described in
 * meta as [token, offset, length, segmentSize] (native UdpSockets), how many
 * from i on (i < n) are single datagrams of message i's socket that can go
 * to the guest as one burst of message i's size: one after another, none
 * longer than the first, only the last shorter, within GSO_MAX_SEGMENTS and
 * GSO_MAX_BYTES. At least 1.
 */
export function mergeableRun(meta: Uint32Array, i: number, n: number): number {
  const token = meta[4 * i];
  const size = meta[4 * i + 2];
  const seg0 = meta[4 * i + 3];
  if (size === 0 || (seg0 !== 0 && seg0 < size)) return 1;
  let total = size;
  let j = i + 1;
  while (j < n && j - i < GSO_MAX_SEGMENTS && meta[4 * j] === token) {
    const l = meta[4 * j + 2];
    const seg = meta[4 * j + 3];
    if (l === 0 || l > size || (seg !== 0 && seg < l) || total + l > GSO_MAX_BYTES) break;
    total += l;
    j++;
    if (l < size) break;
  }
  return j - i;
}
