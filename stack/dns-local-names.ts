/**
 * Names the DNS forwarder answers itself: the guests attached to a usernet
 * daemon under a name (a container's name), as Docker's embedded DNS answers
 * the containers of a user-defined network. Everything else goes upstream.
 *
 * How it works
 * - A table of at most `maxNames` entries, name (lower case, no final dot) ->
 *   IPv4 and IPv6 address (either may be absent).
 * - `answer` looks at a query: one question, opcode QUERY, class IN, a name
 *   in the table. It then writes the whole response (AA set, the question
 *   echoed, one A or AAAA record pointing back at the question's name, or no
 *   record at all for another type: NODATA, so a resolver asking for AAAA
 *   does not wait for an upstream). Otherwise it returns 0 and the query is
 *   forwarded.
 * - A query for a local name reads the name as text, an allocation per such
 *   query; queries are not on the data path, and the table is consulted only
 *   when it has entries.
 */
import { DnsQuestionReader, DNS_HEADER_LEN, DNS_OPCODE_QUERY } from './wire/dns.js';

/** The record lifetime: short, since a guest may detach and another take its name. */
export const LOCAL_NAME_TTL_S = 10;
export const LOCAL_NAMES_MAX = 4096;
const TYPE_A = 1;
const TYPE_AAAA = 28;
const CLASS_IN = 1;
const FLAG_QR = 0x8000;
const FLAG_AA = 0x0400;
const FLAG_RD = 0x0100;
const FLAG_RA = 0x0080;
/** A compression pointer to the question's name, which always starts right after the header. */
const NAME_POINTER = 0xc000 | DNS_HEADER_LEN;

interface Entry {
  v4: Uint8Array | null;
  v6: Uint8Array | null;
}

/** RFC 1123 host names: letters, digits and hyphens in labels of 1..63, 253 in all. */
export function isValidHostName(name: string): boolean {
  if (name.length === 0 || name.length > 253) return false;
  return name.split('.').every((l) => /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i.test(l));
}

export class LocalNames {
  private readonly byName = new Map<string, Entry>();
  private readonly question = new DnsQuestionReader();
  answered = 0;

  constructor(private readonly maxNames = LOCAL_NAMES_MAX) {}

  get size(): number {
    return this.byName.size;
  }

  /** Adds or replaces a name; false when the name is invalid or the table is full. */
  set(name: string, v4: Uint8Array | null, v6: Uint8Array | null): boolean {
    const key = normalize(name);
    if (!isValidHostName(key)) return false;
    if (!this.byName.has(key) && this.byName.size >= this.maxNames) return false;
    this.byName.set(key, { v4: v4 === null ? null : v4.slice(0, 4), v6: v6 === null ? null : v6.slice(0, 16) });
    return true;
  }

  delete(name: string): void {
    this.byName.delete(normalize(name));
  }

  has(name: string): boolean {
    return this.byName.has(normalize(name));
  }

  /**
   * When the query in buf[off, off+len) asks for a local name, writes the
   * response at out[outOff..] and returns its length; else returns 0.
   */
  answer(buf: Uint8Array, off: number, len: number, out: Uint8Array, outOff: number): number {
    if (this.byName.size === 0 || len < DNS_HEADER_LEN) return 0;
    const flags = (buf[off + 2] << 8) | buf[off + 3];
    const qdcount = (buf[off + 4] << 8) | buf[off + 5];
    if ((flags & FLAG_QR) !== 0 || ((flags >>> 11) & 0xf) !== DNS_OPCODE_QUERY || qdcount !== 1) return 0;
    const q = this.question;
    if (q.read(buf, off, len, DNS_HEADER_LEN, true) !== null || q.qclass !== CLASS_IN) return 0;
    const entry = this.byName.get(normalize(q.name));
    if (entry === undefined) return 0;
    const rdata = q.qtype === TYPE_A ? entry.v4 : q.qtype === TYPE_AAAA ? entry.v6 : null;
    const qEnd = q.end;
    const n = qEnd + (rdata === null ? 0 : 12 + rdata.length);
    if (outOff < 0 || outOff + n > out.length) return 0;
    out.set(buf.subarray(off, off + qEnd), outOff);
    const rflags = FLAG_QR | FLAG_AA | (flags & FLAG_RD) | FLAG_RA;
    out[outOff + 2] = rflags >>> 8;
    out[outOff + 3] = rflags & 0xff;
    // One question, the answer (or none), no authority or additional records (an OPT record in the query is not echoed).
    out[outOff + 6] = 0;
    out[outOff + 7] = rdata === null ? 0 : 1;
    for (let i = 8; i < DNS_HEADER_LEN; i++) out[outOff + i] = 0;
    if (rdata !== null) {
      let p = outOff + qEnd;
      out[p++] = NAME_POINTER >>> 8;
      out[p++] = NAME_POINTER & 0xff;
      out[p++] = q.qtype >>> 8;
      out[p++] = q.qtype & 0xff;
      out[p++] = 0;
      out[p++] = CLASS_IN;
      out[p++] = 0;
      out[p++] = 0;
      out[p++] = 0;
      out[p++] = LOCAL_NAME_TTL_S;
      out[p++] = 0;
      out[p++] = rdata.length;
      out.set(rdata, p);
    }
    this.answered++;
    return n;
  }
}

function normalize(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}
