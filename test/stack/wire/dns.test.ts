import { describe, expect, it } from 'vitest';
import {
  buildServfail,
  DnsHeaderView,
  DnsQuestionReader,
  DNS_MAX_POINTERS,
  questionSectionEnd,
  servfailLen,
} from '../../../stack/wire/dns.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// Built by hand from RFC 1035 4.1: "www.example.com" A IN, RD set, id 0x1234.
const QNAME = '03 777777 07 6578616d706c65 03 636f6d 00';
const QUERY = hex('1234 0100 0001 0000 0000 0000' + QNAME + '0001 0001');
// The same with an EDNS OPT record (RFC 6891), 1232-byte UDP size, DO clear, CD set.
const QUERY_EDNS = hex('abcd 0110 0001 0000 0000 0001' + QNAME + '0001 0001' + '00 0029 04d0 00 00 0000 0000');
// A response: QR RD RA, one A record whose owner is a pointer to offset 12.
const RESPONSE = hex(
  '1234 8180 0001 0001 0000 0000' + QNAME + '0001 0001' + 'c00c 0001 0001 00000e10 0004 5db8d822',
);

describe('DnsHeaderView', () => {
  it('reads a query and a response header', () => {
    const h = new DnsHeaderView();
    expect(h.reset(QUERY, 0, QUERY.length)).toBeNull();
    expect(h.id).toBe(0x1234);
    expect(h.qr).toBe(false);
    expect(h.opcode).toBe(0);
    expect(h.rd).toBe(true);
    expect(h.ra).toBe(false);
    expect(h.aa).toBe(false);
    expect(h.tc).toBe(false);
    expect(h.rcode).toBe(0);
    expect(h.qdcount).toBe(1);
    expect(h.ancount).toBe(0);

    expect(h.reset(RESPONSE, 0, RESPONSE.length)).toBeNull();
    expect(h.qr).toBe(true);
    expect(h.ra).toBe(true);
    expect(h.flags).toBe(0x8180);
    expect(h.ancount).toBe(1);
    expect(h.nscount).toBe(0);
    expect(h.arcount).toBe(0);

    const odd = hex('0000 ae83 0000 0000 0000 0000'); // QR, opcode 5, AA, TC, RD, rcode 3
    expect(h.reset(odd, 0, 12)).toBeNull();
    expect([h.qr, h.opcode, h.aa, h.tc, h.rd, h.ra, h.rcode]).toEqual([true, 5, true, true, false, true, 3]);
  });

  it('writes the id in place', () => {
    const b = Buffer.from(QUERY);
    const h = new DnsHeaderView();
    h.reset(b, 0, b.length);
    h.id = 0xbeef;
    expect(b.subarray(0, 2)).toEqual(hex('beef'));
    expect(h.id).toBe(0xbeef);
  });

  it('refuses fewer than 12 bytes', () => {
    const h = new DnsHeaderView();
    expect(h.reset(QUERY, 0, 11)).toBe('dns-truncated');
    expect(h.reset(QUERY, QUERY.length - 5, 12)).toBe('dns-truncated');
  });
});

describe('DnsQuestionReader', () => {
  it('reads the question of a query', () => {
    const q = new DnsQuestionReader();
    expect(q.read(QUERY, 0, QUERY.length, 12, true)).toBeNull();
    expect(q.name).toBe('www.example.com');
    expect(q.nameWireLen).toBe(17);
    expect(q.qtype).toBe(1);
    expect(q.qclass).toBe(1);
    expect(q.end).toBe(QUERY.length);
    // Without text, no name string.
    expect(q.read(QUERY, 0, QUERY.length, 12)).toBeNull();
    expect(q.name).toBe('');
  });

  it('follows a compression pointer, at an offset in the buffer', () => {
    const buf = Buffer.concat([hex('ffffff'), RESPONSE]);
    const q = new DnsQuestionReader();
    const answerAt = 12 + 17 + 4;
    expect(q.read(buf, 3, RESPONSE.length, answerAt, true)).toBeNull();
    expect(q.name).toBe('www.example.com');
    // The record continues right after the 2-byte pointer: type, class.
    expect(q.end).toBe(answerAt + 2 + 4);
    expect(q.qtype).toBe(1);
  });

  it('reads the root name and escapes odd bytes', () => {
    const root = hex('0000 0000 0001 0000 0000 0000 00 0002 0001');
    const q = new DnsQuestionReader();
    expect(q.read(root, 0, root.length, 12, true)).toBeNull();
    expect(q.name).toBe('.');
    expect(q.qtype).toBe(2);
    const odd = hex('0000 0000 0001 0000 0000 0000 04 612e0a5c 00 0001 0001');
    expect(q.read(odd, 0, odd.length, 12, true)).toBeNull();
    expect(q.name).toBe('a\\.\\010\\\\');
  });

  it('refuses loops, forward pointers and pointer chains', () => {
    const q = new DnsQuestionReader();
    const self = hex('0000 0000 0001 0000 0000 0000 c00c 0001 0001');
    expect(q.read(self, 0, self.length, 12)).toBe('dns-bad-pointer');
    const forward = hex('0000 0000 0001 0000 0000 0000 c00e 00 0001 0001');
    expect(q.read(forward, 0, forward.length, 12)).toBe('dns-bad-pointer');
    // Two pointers pointing at each other: the backward rule stops it at once.
    const pair = hex('0000 0000 0001 0000 0000 0000 c00e c00c');
    expect(q.read(pair, 0, pair.length, 14)).toBe('dns-bad-pointer');
    // A long chain of backward pointers: each points at the one before.
    const parts = ['0000 0000 0001 0000 0000 0000', '00'];
    for (let i = 0; i <= DNS_MAX_POINTERS; i++) {
      const target = 12 + (i === 0 ? 0 : 1 + 2 * (i - 1));
      parts.push('c0' + target.toString(16).padStart(2, '0'));
    }
    const chain = hex(parts.join('') + '0001 0001');
    const lastPointer = 12 + 1 + 2 * DNS_MAX_POINTERS;
    expect(q.read(chain, 0, chain.length, lastPointer)).toBe('dns-bad-pointer');
    // One pointer fewer is fine.
    expect(q.read(chain, 0, chain.length, lastPointer - 2, true)).toBeNull();
    expect(q.name).toBe('.');
  });

  it('enforces the name and label limits', () => {
    const q = new DnsQuestionReader();
    const label63 = '3f' + '61'.repeat(63);
    // 4 labels of 63 plus lengths: 256 bytes with the root: one too many.
    const long = hex('0000 0000 0001 0000 0000 0000' + label63.repeat(3) + '3e' + '61'.repeat(62) + '00 0001 0001');
    expect(q.read(long, 0, long.length, 12)).toBe('dns-name-too-long');
    const fits = hex('0000 0000 0001 0000 0000 0000' + label63.repeat(3) + '3d' + '61'.repeat(61) + '00 0001 0001');
    expect(q.read(fits, 0, fits.length, 12)).toBeNull();
    expect(q.nameWireLen).toBe(255);
    const ext = hex('0000 0000 0001 0000 0000 0000 41 00 0001 0001');
    expect(q.read(ext, 0, ext.length, 12)).toBe('dns-bad-label');
    const ext2 = hex('0000 0000 0001 0000 0000 0000 80 00 0001 0001');
    expect(q.read(ext2, 0, ext2.length, 12)).toBe('dns-bad-label');
  });

  it('reports truncation', () => {
    const q = new DnsQuestionReader();
    expect(q.read(QUERY, 0, 20, 12)).toBe('dns-truncated-name');
    expect(q.read(QUERY, 0, QUERY.length - 1, 12)).toBe('dns-truncated-question');
    expect(q.read(QUERY, 0, QUERY.length, QUERY.length)).toBe('dns-truncated-name');
    const halfPointer = hex('0000 0000 0001 0000 0000 0000 c0');
    expect(q.read(halfPointer, 0, halfPointer.length, 12)).toBe('dns-truncated-name');
    expect(q.read(QUERY, 0, QUERY.length + 1, 12)).toBe('dns-truncated');
  });
});

describe('questionSectionEnd', () => {
  it('finds the end of one or more questions', () => {
    expect(questionSectionEnd(QUERY, 0, QUERY.length)).toBe(QUERY.length);
    expect(questionSectionEnd(QUERY_EDNS, 0, QUERY_EDNS.length)).toBe(33);
    const two = hex('0000 0000 0002 0000 0000 0000' + QNAME + '0001 0001 c00c 001c 0001');
    expect(questionSectionEnd(two, 0, two.length)).toBe(two.length);
    expect(questionSectionEnd(QUERY, 0, QUERY.length - 1)).toBe(-1);
    expect(questionSectionEnd(QUERY, 0, 5)).toBe(-1);
  });
});

describe('buildServfail', () => {
  it('turns a query into a SERVFAIL with the question kept', () => {
    const out = Buffer.alloc(64, 0xee);
    const n = buildServfail(QUERY, 0, QUERY.length, out, 1);
    expect(n).toBe(QUERY.length);
    expect(out.subarray(1, 1 + n)).toEqual(hex('1234 8182 0001 0000 0000 0000' + QNAME + '0001 0001'));
    expect(out[0]).toBe(0xee);
    expect(out[1 + n]).toBe(0xee);
  });

  it('drops the EDNS record and keeps CD', () => {
    const out = Buffer.alloc(64);
    expect(servfailLen(QUERY_EDNS, 0, QUERY_EDNS.length)).toBe(33);
    const n = buildServfail(QUERY_EDNS, 0, QUERY_EDNS.length, out, 0);
    expect(out.subarray(0, n)).toEqual(hex('abcd 8192 0001 0000 0000 0000' + QNAME + '0001 0001'));
  });

  it('keeps the opcode, clears AA/TC, works in place', () => {
    // Opcode 5, AA, TC, RD, Z, AD, CD: AA, TC, Z and AD go, CD stays.
    const q = hex('0101 2f70 0001 0005 0006 0007' + QNAME + '0001 0001');
    const n = buildServfail(q, 0, q.length, q, 0);
    expect(n).toBe(q.length);
    expect(q.subarray(0, 12)).toEqual(hex('0101 a992 0001 0000 0000 0000'));
  });

  it('copies within one buffer at another offset', () => {
    const b = Buffer.concat([QUERY, Buffer.alloc(40)]);
    const n = buildServfail(b, 0, QUERY.length, b, 6);
    expect(b.subarray(6, 6 + n)).toEqual(hex('1234 8182 0001 0000 0000 0000' + QNAME + '0001 0001'));
  });

  it('answers with the header alone when the question is broken', () => {
    const broken = hex('7777 0100 0001 0000 0000 0000 c0ff');
    const out = Buffer.alloc(32);
    expect(buildServfail(broken, 0, broken.length, out, 0)).toBe(12);
    expect(out.subarray(0, 12)).toEqual(hex('7777 8182 0000 0000 0000 0000'));
  });

  it('returns 0 when it cannot build anything', () => {
    expect(buildServfail(QUERY, 0, 11, Buffer.alloc(64), 0)).toBe(0);
    expect(buildServfail(QUERY, 0, QUERY.length, Buffer.alloc(20), 0)).toBe(0);
    expect(buildServfail(QUERY, 0, QUERY.length, Buffer.alloc(64), -1)).toBe(0);
  });
});
