/**
 * pcapng encoding (the PCAP Next Generation capture format, IETF
 * draft-ietf-opsawg-pcapng): a Section Header Block, then Interface
 * Description Blocks and Enhanced Packet Blocks in any order, as long as the
 * interface a packet names was described before it. usernet describes one
 * interface per bridge port (its name in if_name: the tap's name, "gateway",
 * "qemu:...") when the port's first frame is recorded, so ports attached
 * later get theirs then.
 *
 * Every block is: type (u32), total length (u32), body padded to 32 bits,
 * total length again. Written little-endian; readers tell the byte order
 * from the SHB's byte-order magic. Timestamps are microseconds since the
 * epoch (no if_tsresol option: 10^-6 is the default), split into high and
 * low 32 bits. Pure functions over caller-owned buffers, as stack/pcap.ts.
 */

export const PCAPNG_SHB_TYPE = 0x0a0d0d0a;
export const PCAPNG_IDB_TYPE = 0x00000001;
export const PCAPNG_EPB_TYPE = 0x00000006;
export const PCAPNG_BYTE_ORDER_MAGIC = 0x1a2b3c4d;
export const PCAPNG_LINKTYPE_ETHERNET = 1;
/** Options: opt_endofopt, shb_userappl, if_name. */
const OPT_END = 0;
const OPT_SHB_USERAPPL = 4;
const OPT_IF_NAME = 2;
/** Type, length, interface id, timestamp high and low, captured and original lengths. */
export const PCAPNG_EPB_HEADER_LEN = 28;
/** The trailing copy of the total length. */
export const PCAPNG_BLOCK_TRAILER_LEN = 4;

function pad4(n: number): number {
  return (n + 3) & ~3;
}

/** Bytes of one option (code, length, value padded to 32 bits) with a value of `len` bytes. */
function optionLen(len: number): number {
  return 4 + pad4(len);
}

function writeOption(buf: Buffer, off: number, code: number, value: Buffer): number {
  buf.writeUInt16LE(code, off);
  buf.writeUInt16LE(value.length, off + 2);
  value.copy(buf, off + 4);
  const end = off + optionLen(value.length);
  buf.fill(0, off + 4 + value.length, end);
  return end;
}

function writeEndOfOptions(buf: Buffer, off: number): number {
  buf.writeUInt32LE(OPT_END, off);
  return off + 4;
}

/** A string option's value: UTF-8, at most 65535 bytes (cut at a character boundary). */
function optionText(s: string): Buffer {
  let b = Buffer.from(s, 'utf8');
  if (b.length > 0xffff) b = Buffer.from(b.subarray(0, 0xffff).toString('utf8').replace(/\uFFFD$/, ''), 'utf8');
  return b;
}

/** Length of the Section Header Block writeSectionHeader writes for `userAppl`. */
export function sectionHeaderLength(userAppl: string): number {
  return 28 + optionLen(optionText(userAppl).length) + 4;
}

/** Writes a Section Header Block (version 1.0, section length unknown) naming the writing application; returns the offset after it. */
export function writeSectionHeader(buf: Buffer, off: number, userAppl: string): number {
  const appl = optionText(userAppl);
  const len = sectionHeaderLength(userAppl);
  buf.writeUInt32LE(PCAPNG_SHB_TYPE, off);
  buf.writeUInt32LE(len, off + 4);
  buf.writeUInt32LE(PCAPNG_BYTE_ORDER_MAGIC, off + 8);
  buf.writeUInt16LE(1, off + 12);
  buf.writeUInt16LE(0, off + 14);
  // Section length -1: not known while writing.
  buf.writeInt32LE(-1, off + 16);
  buf.writeInt32LE(-1, off + 20);
  let p = writeOption(buf, off + 24, OPT_SHB_USERAPPL, appl);
  p = writeEndOfOptions(buf, p);
  buf.writeUInt32LE(len, p);
  return p + 4;
}

/** Length of the Interface Description Block for an interface named `name`. */
export function interfaceBlockLength(name: string): number {
  return 16 + optionLen(optionText(name).length) + 4 + 4;
}

/** Writes an Interface Description Block (Ethernet) named `name`; returns the offset after it. */
export function writeInterfaceBlock(buf: Buffer, off: number, name: string, snaplen: number): number {
  const len = interfaceBlockLength(name);
  buf.writeUInt32LE(PCAPNG_IDB_TYPE, off);
  buf.writeUInt32LE(len, off + 4);
  buf.writeUInt16LE(PCAPNG_LINKTYPE_ETHERNET, off + 8);
  buf.writeUInt16LE(0, off + 10);
  buf.writeUInt32LE(snaplen >>> 0, off + 12);
  let p = writeOption(buf, off + 16, OPT_IF_NAME, optionText(name));
  p = writeEndOfOptions(buf, p);
  buf.writeUInt32LE(len, p);
  return p + 4;
}

/** Length of an Enhanced Packet Block carrying `capLen` bytes (no options). */
export function enhancedPacketLength(capLen: number): number {
  return PCAPNG_EPB_HEADER_LEN + pad4(capLen) + PCAPNG_BLOCK_TRAILER_LEN;
}

/**
 * Writes an Enhanced Packet Block's header for a packet of `capLen` of
 * `origLen` bytes that entered on interface `ifId` at `timeMs` (milliseconds
 * since the epoch, fractions allowed). Returns the offset where the packet
 * bytes go; finish with writeEnhancedPacketTrailer once they are there.
 */
export function writeEnhancedPacketHeader(buf: Buffer, off: number, ifId: number, timeMs: number, capLen: number, origLen: number): number {
  const totalUs = Math.round(timeMs * 1000);
  const high = Math.floor(totalUs / 0x1_0000_0000);
  buf.writeUInt32LE(PCAPNG_EPB_TYPE, off);
  buf.writeUInt32LE(enhancedPacketLength(capLen), off + 4);
  buf.writeUInt32LE(ifId >>> 0, off + 8);
  buf.writeUInt32LE(high >>> 0, off + 12);
  buf.writeUInt32LE((totalUs - high * 0x1_0000_0000) >>> 0, off + 16);
  buf.writeUInt32LE(capLen >>> 0, off + 20);
  buf.writeUInt32LE(origLen >>> 0, off + 24);
  return off + PCAPNG_EPB_HEADER_LEN;
}

/** Pads the packet bytes written at `dataOff` and closes the block; returns the offset after it. */
export function writeEnhancedPacketTrailer(buf: Buffer, dataOff: number, capLen: number): number {
  const end = dataOff + pad4(capLen);
  buf.fill(0, dataOff + capLen, end);
  buf.writeUInt32LE(enhancedPacketLength(capLen), end);
  return end + PCAPNG_BLOCK_TRAILER_LEN;
}
