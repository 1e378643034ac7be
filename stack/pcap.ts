/**
 * Classic pcap encoding (the libpcap file format, not pcapng): a 24-byte file
 * header, then per frame a 16-byte record header followed by the captured
 * bytes. Everything is written little-endian; readers detect the byte order
 * from the magic number. Pure functions over caller-owned buffers, so the
 * runtime can fill a preallocated write buffer without allocating per frame.
 *
 * Frames that carry a virtio-net header are recorded without it (the runtime
 * passes buf[off, off+len)), and since GSO super-frames exceed 65535 bytes the
 * default snap length is 262144, the value tcpdump uses nowadays.
 */

export const PCAP_GLOBAL_HEADER_LEN = 24;
export const PCAP_RECORD_HEADER_LEN = 16;
/** Microsecond timestamps. */
export const PCAP_MAGIC = 0xa1b2c3d4;
export const PCAP_VERSION_MAJOR = 2;
export const PCAP_VERSION_MINOR = 4;
export const PCAP_LINKTYPE_ETHERNET = 1;
export const PCAP_DEFAULT_SNAPLEN = 262_144;

/** Writes the file header at off; returns the offset just after it. */
export function writeGlobalHeader(buf: Buffer, off: number, snaplen: number = PCAP_DEFAULT_SNAPLEN): number {
  buf.writeUInt32LE(PCAP_MAGIC, off);
  buf.writeUInt16LE(PCAP_VERSION_MAJOR, off + 4);
  buf.writeUInt16LE(PCAP_VERSION_MINOR, off + 6);
  // thiszone and sigfigs: always zero in practice (timestamps are UTC).
  buf.writeInt32LE(0, off + 8);
  buf.writeUInt32LE(0, off + 12);
  buf.writeUInt32LE(snaplen >>> 0, off + 16);
  buf.writeUInt32LE(PCAP_LINKTYPE_ETHERNET, off + 20);
  return off + PCAP_GLOBAL_HEADER_LEN;
}

/**
 * Writes a record header for a frame captured at `timeMs` (milliseconds since
 * the Unix epoch, fractions allowed) of which `capLen` of `origLen` bytes
 * follow. Returns the offset where the captured bytes go.
 */
export function writeRecordHeader(buf: Buffer, off: number, timeMs: number, capLen: number, origLen: number): number {
  // Round once in microseconds so that usec never reaches 1e6.
  const totalUs = Math.round(timeMs * 1000);
  const sec = Math.floor(totalUs / 1_000_000);
  const usec = totalUs - sec * 1_000_000;
  buf.writeUInt32LE(sec >>> 0, off);
  buf.writeUInt32LE(usec, off + 4);
  buf.writeUInt32LE(capLen >>> 0, off + 8);
  buf.writeUInt32LE(origLen >>> 0, off + 12);
  return off + PCAP_RECORD_HEADER_LEN;
}

/** Bytes of a frame that go into the file under `snaplen`. */
export function captureLength(frameLen: number, snaplen: number = PCAP_DEFAULT_SNAPLEN): number {
  return frameLen < snaplen ? frameLen : snaplen;
}
