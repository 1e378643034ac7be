import type { DropReason } from '../drop-reasons.js';

/**
 * DNS messages (RFC 1035 4.1), only as much as a forwarder needs: the
 * header, a question reader for logs and for matching answers to queries,
 * and a SERVFAIL builder. Nothing here throws; bad input gives a reason.
 *
 * Names are read with hard limits, so that a hostile message costs bounded
 * work: at most DNS_MAX_POINTERS compression pointers, each pointing
 * strictly backwards (a loop is impossible, the count is a second fence),
 * labels of at most 63 bytes, at most 255 bytes of name on the wire.
 * Offsets are relative to the start of the message, as pointers are.
 */

export const DNS_PORT = 53;
export const DNS_HEADER_LEN = 12;
export const DNS_MAX_NAME_LEN = 255;
export const DNS_MAX_LABEL_LEN = 63;
/** A real name has at most 127 labels; more than a few pointers means somebody is playing games. */
export const DNS_MAX_POINTERS = 16;

export const DNS_OPCODE_QUERY = 0;
export const DNS_RCODE_NOERROR = 0;
export const DNS_RCODE_FORMERR = 1;
export const DNS_RCODE_SERVFAIL = 2;

const ID = 0;
const FLAGS = 2;
const QDCOUNT = 4;
const ANCOUNT = 6;
const NSCOUNT = 8;
const ARCOUNT = 10;

const QR = 0x8000;
const AA = 0x0400;
const TC = 0x0200;
const RD = 0x0100;
const RA = 0x0080;

/** View over a DNS header; `reset` checks the length so every getter is safe. */
export class DnsHeaderView {
  buf: Uint8Array = new Uint8Array(0);
  off = 0;
  len = 0;

  /** Returns null, or 'dns-truncated' when fewer than 12 bytes are there. */
  reset(buf: Uint8Array, off: number, len: number): DropReason | null {
    if (off < 0 || len < DNS_HEADER_LEN || off + len > buf.length) return 'dns-truncated';
    this.buf = buf;
    this.off = off;
    this.len = len;
    return null;
  }

  private u16(at: number): number {
    return (this.buf[this.off + at] << 8) | this.buf[this.off + at + 1];
  }

  get id(): number {
    return this.u16(ID);
  }

  set id(v: number) {
    this.buf[this.off + ID] = (v >>> 8) & 0xff;
    this.buf[this.off + ID + 1] = v & 0xff;
  }

  /** The raw 16-bit flags word. */
  get flags(): number {
    return this.u16(FLAGS);
  }

  get qr(): boolean {
    return (this.flags & QR) !== 0;
  }

  get opcode(): number {
    return (this.flags >>> 11) & 0xf;
  }

  get aa(): boolean {
    return (this.flags & AA) !== 0;
  }

  get tc(): boolean {
    return (this.flags & TC) !== 0;
  }

  get rd(): boolean {
    return (this.flags & RD) !== 0;
  }

  get ra(): boolean {
    return (this.flags & RA) !== 0;
  }

  get rcode(): number {
    return this.flags & 0xf;
  }

  get qdcount(): number {
    return this.u16(QDCOUNT);
  }

  get ancount(): number {
    return this.u16(ANCOUNT);
  }

  get nscount(): number {
    return this.u16(NSCOUNT);
  }

  get arcount(): number {
    return this.u16(ARCOUNT);
  }
}

/** Bytes a name reader escapes in text form, as dig prints them. */
function labelText(buf: Uint8Array, from: number, n: number): string {
  let s = '';
  for (let i = from; i < from + n; i++) {
    const c = buf[i];
    if (c === 0x2e || c === 0x5c) s += '\\' + String.fromCharCode(c);
    else if (c > 0x20 && c < 0x7f) s += String.fromCharCode(c);
    else s += '\\' + c.toString().padStart(3, '0');
  }
  return s;
}

/**
 * Reads one question (name, type, class). Reusable: `read` overwrites every
 * field. The text form is built only when asked for, since it allocates.
 */
export class DnsQuestionReader {
  /** Dotted name ('.' for the root); '' unless read with wantText. */
  name = '';
  /** Bytes of the name in uncompressed wire form, final zero included (at most 255). */
  nameWireLen = 0;
  qtype = 0;
  qclass = 0;
  /** Offset (from the message start) just past this question. */
  end = 0;

  /**
   * Reads the question at msg offset `pos`, the message being
   * buf[off, off+len). Returns null, or 'dns-truncated-name',
   * 'dns-bad-label' (the reserved 0x40/0x80 label types),
   * 'dns-bad-pointer' (forward or self pointer, or too many),
   * 'dns-name-too-long', 'dns-truncated-question'.
   */
  read(buf: Uint8Array, off: number, len: number, pos: number, wantText = false): DropReason | null {
    this.name = '';
    this.nameWireLen = 0;
    this.qtype = 0;
    this.qclass = 0;
    this.end = 0;
    if (off < 0 || len < 0 || off + len > buf.length) return 'dns-truncated';
    let p = pos;
    let end = -1;
    let pointers = 0;
    let wire = 0;
    let text = '';
    for (;;) {
      if (p < 0 || p >= len) return 'dns-truncated-name';
      const b = buf[off + p];
      if (b === 0) {
        wire += 1;
        if (end < 0) end = p + 1;
        break;
      }
      const kind = b & 0xc0;
      if (kind === 0xc0) {
        if (p + 1 >= len) return 'dns-truncated-name';
        const target = ((b & 0x3f) << 8) | buf[off + p + 1];
        // RFC 1035 4.1.4: a pointer refers to a prior occurrence; anything else could loop.
        if (target >= p || ++pointers > DNS_MAX_POINTERS) return 'dns-bad-pointer';
        if (end < 0) end = p + 2;
        p = target;
        continue;
      }
      if (kind !== 0) return 'dns-bad-label';
      // b <= 63 here: the two top bits are clear.
      if (p + 1 + b > len) return 'dns-truncated-name';
      wire += 1 + b;
      if (wire + 1 > DNS_MAX_NAME_LEN) return 'dns-name-too-long';
      if (wantText) text += labelText(buf, off + p + 1, b) + '.';
      p += 1 + b;
    }
    if (end + 4 > len) return 'dns-truncated-question';
    this.nameWireLen = wire;
    if (wantText) this.name = text.length === 0 ? '.' : text.slice(0, -1);
    this.qtype = (buf[off + end] << 8) | buf[off + end + 1];
    this.qclass = (buf[off + end + 2] << 8) | buf[off + end + 3];
    this.end = end + 4;
    return null;
  }
}

const scratchQuestion = new DnsQuestionReader();

/**
 * Offset (from the message start) just past the question section of the
 * message buf[off, off+len), or -1 when a question does not parse. Reads
 * qdcount questions; each takes at least 5 bytes, so the work is bounded by len.
 */
export function questionSectionEnd(buf: Uint8Array, off: number, len: number): number {
  if (off < 0 || len < DNS_HEADER_LEN || off + len > buf.length) return -1;
  const qd = (buf[off + QDCOUNT] << 8) | buf[off + QDCOUNT + 1];
  let pos = DNS_HEADER_LEN;
  for (let i = 0; i < qd; i++) {
    if (scratchQuestion.read(buf, off, len, pos) !== null) return -1;
    pos = scratchQuestion.end;
  }
  return pos;
}

/** Bytes buildServfail writes for this query (header plus the question section, or the header alone). */
export function servfailLen(query: Uint8Array, off: number, len: number): number {
  if (off < 0 || len < DNS_HEADER_LEN || off + len > query.length) return 0;
  const end = questionSectionEnd(query, off, len);
  return end < 0 ? DNS_HEADER_LEN : end;
}

/**
 * Turns the query at query[off, off+len) into a SERVFAIL response at
 * out[outOff]: same id, opcode, RD and CD, QR=1, RA=1, rcode 2, the
 * question section copied (compression pointers in it stay valid, since
 * the header keeps its size), no answer, authority or additional records.
 * When the questions do not parse, the response carries the header alone
 * (qdcount 0). Returns the length written, or 0 when the query is shorter
 * than a header or `out` has no room. The two ranges may be the same.
 */
export function buildServfail(query: Uint8Array, off: number, len: number, out: Uint8Array, outOff: number): number {
  const n = servfailLen(query, off, len);
  if (n === 0 || outOff < 0 || outOff + n > out.length) return 0;
  const qflags = (query[off + FLAGS] << 8) | query[off + FLAGS + 1];
  const qd = n === DNS_HEADER_LEN ? 0 : (query[off + QDCOUNT] << 8) | query[off + QDCOUNT + 1];
  if (query === out) {
    if (off !== outOff) out.copyWithin(outOff, off, off + n);
  } else {
    out.set(query.subarray(off, off + n), outOff);
  }
  // Opcode and RD are echoed (RFC 1035 4.1.1); CD too (RFC 6840 5.9). AA, TC, AD and Z are clear.
  const flags = QR | (qflags & 0x7800) | (qflags & RD) | RA | (qflags & 0x0010) | DNS_RCODE_SERVFAIL;
  out[outOff + FLAGS] = flags >>> 8;
  out[outOff + FLAGS + 1] = flags & 0xff;
  out[outOff + QDCOUNT] = qd >>> 8;
  out[outOff + QDCOUNT + 1] = qd & 0xff;
  for (let i = ANCOUNT; i < DNS_HEADER_LEN; i++) out[outOff + i] = 0;
  return n;
}
