/**
 * The check's own DNS server on loopback: answers one name (A and AAAA) and
 * says NXDOMAIN to everything else, so the check can prove usernet's
 * forwarder at N+3 without any resolver of the machine's. UDP only (the
 * forwarder speaks UDP upstream for UDP queries); one datagram in, one out.
 */
import { createSocket, type Socket } from 'node:dgram';

const HEADER_LEN = 12;
const TYPE_A = 1;
const TYPE_AAAA = 28;
const CLASS_IN = 1;
/** QR, opcode 0, AA, RD copied in, RA. */
const FLAGS_ANSWER = 0x8400 | 0x0080;
const RCODE_NXDOMAIN = 3;
const RCODE_FORMERR = 1;
const TTL = 60;
/** A compression pointer to the question's name, which starts right after the header. */
const NAME_POINTER = 0xc000 | HEADER_LEN;

export interface DnsAnswers {
  /** Lower-case, no trailing dot. */
  name: string;
  /** 4 bytes. */
  a: Uint8Array;
  /** 16 bytes. */
  aaaa: Uint8Array;
}

/**
 * The response to one query, or null when the datagram is not a query worth
 * answering (too short, a response itself, no question).
 */
export function answerQuery(query: Uint8Array, answers: DnsAnswers): Buffer | null {
  if (query.length < HEADER_LEN) return null;
  const q = Buffer.from(query.buffer, query.byteOffset, query.length);
  const flags = q.readUInt16BE(2);
  if ((flags & 0x8000) !== 0 || q.readUInt16BE(4) < 1) return null;
  const labels: string[] = [];
  let off = HEADER_LEN;
  for (;;) {
    if (off >= q.length) return reply(q, off, RCODE_FORMERR, null);
    const len = q[off];
    if (len === 0) break;
    if (len > 63 || off + 1 + len > q.length) return reply(q, off, RCODE_FORMERR, null);
    labels.push(q.toString('latin1', off + 1, off + 1 + len).toLowerCase());
    off += 1 + len;
  }
  const end = off + 1 + 4;
  if (end > q.length) return reply(q, off, RCODE_FORMERR, null);
  const qtype = q.readUInt16BE(off + 1);
  const qclass = q.readUInt16BE(off + 3);
  if (labels.join('.') !== answers.name || qclass !== CLASS_IN) return reply(q, end, RCODE_NXDOMAIN, null);
  const rdata = qtype === TYPE_A ? answers.a : qtype === TYPE_AAAA ? answers.aaaa : null;
  return reply(q, end, 0, rdata === null ? null : { type: qtype, rdata });
}

function reply(q: Buffer, questionEnd: number, rcode: number, answer: { type: number; rdata: Uint8Array } | null): Buffer {
  const hasQuestion = rcode !== RCODE_FORMERR;
  const questionLen = hasQuestion ? questionEnd - HEADER_LEN : 0;
  const answerLen = answer === null ? 0 : 12 + answer.rdata.length;
  const r = Buffer.alloc(HEADER_LEN + questionLen + answerLen);
  r.writeUInt16BE(q.readUInt16BE(0), 0);
  r.writeUInt16BE(FLAGS_ANSWER | (q.readUInt16BE(2) & 0x0100) | rcode, 2);
  r.writeUInt16BE(hasQuestion ? 1 : 0, 4);
  r.writeUInt16BE(answer === null ? 0 : 1, 6);
  if (hasQuestion) q.copy(r, HEADER_LEN, HEADER_LEN, questionEnd);
  if (answer !== null) {
    let o = HEADER_LEN + questionLen;
    o = r.writeUInt16BE(NAME_POINTER, o);
    o = r.writeUInt16BE(answer.type, o);
    o = r.writeUInt16BE(CLASS_IN, o);
    o = r.writeUInt32BE(TTL, o);
    o = r.writeUInt16BE(answer.rdata.length, o);
    r.set(answer.rdata, o);
  }
  return r;
}

/** Binds a UDP DNS server on 127.0.0.1 (port chosen by the kernel). */
export async function startDnsResponder(answers: DnsAnswers): Promise<{ port: number; close(): void }> {
  const sock: Socket = createSocket('udp4');
  sock.on('message', (msg, rinfo) => {
    const r = answerQuery(msg, answers);
    if (r !== null) sock.send(r, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(0, '127.0.0.1', () => {
      sock.off('error', reject);
      resolve();
    });
  });
  sock.on('error', () => {});
  return { port: sock.address().port, close: () => sock.close() };
}
