import { describe, expect, it } from 'vitest';
import { DnsForwarder } from '../../stack/dns-forwarder.js';
import { isValidHostName, LocalNames, LOCAL_NAME_TTL_S } from '../../stack/dns-local-names.js';
import { parseIpv4 } from '../../stack/wire/ipv4-address.js';
import { parseIpv6 } from '../../stack/wire/ipv6-address.js';

/** A query with one question (RD set, as stub resolvers send it). */
function query(id: number, name: string, qtype: number, opts: { qdcount?: number; qclass?: number; flags?: number } = {}): Buffer {
  const labels = name.split('.').filter((l) => l !== '');
  const qname = Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'ascii')])), Buffer.from([0])]);
  const h = Buffer.alloc(12);
  h.writeUInt16BE(id, 0);
  h.writeUInt16BE(opts.flags ?? 0x0100, 2);
  h.writeUInt16BE(opts.qdcount ?? 1, 4);
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(qtype, 0);
  tail.writeUInt16BE(opts.qclass ?? 1, 2);
  return Buffer.concat([h, qname, tail]);
}

const v4 = (s: string) => {
  const n = parseIpv4(s)!;
  return Uint8Array.from([n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);
};

function names(): LocalNames {
  const t = new LocalNames();
  expect(t.set('web', v4('10.0.2.101'), parseIpv6('fd00::5054:ff:fe00:1'))).toBe(true);
  expect(t.set('db.', v4('10.0.2.102'), null)).toBe(true);
  return t;
}

describe('LocalNames', () => {
  it('answers A and AAAA for a local name with AA set, the question echoed and a pointer to it', () => {
    const t = names();
    const out = Buffer.alloc(512);
    const q = query(0x1234, 'WEB', 1);
    const n = t.answer(q, 0, q.length, out, 0);
    expect(n).toBe(q.length + 16);
    expect(out.readUInt16BE(0)).toBe(0x1234);
    expect(out.readUInt16BE(2)).toBe(0x8580); // QR AA RD RA, NOERROR
    expect([out.readUInt16BE(4), out.readUInt16BE(6), out.readUInt16BE(8), out.readUInt16BE(10)]).toEqual([1, 1, 0, 0]);
    expect(out.subarray(12, q.length)).toEqual(q.subarray(12));
    const rr = out.subarray(q.length, n);
    expect(rr.readUInt16BE(0)).toBe(0xc00c);
    expect(rr.readUInt16BE(2)).toBe(1);
    expect(rr.readUInt16BE(4)).toBe(1);
    expect(rr.readUInt32BE(6)).toBe(LOCAL_NAME_TTL_S);
    expect(rr.readUInt16BE(10)).toBe(4);
    expect([...rr.subarray(12)]).toEqual([10, 0, 2, 101]);
    const q6 = query(7, 'web', 28);
    const n6 = t.answer(q6, 0, q6.length, out, 0);
    expect(n6).toBe(q6.length + 28);
    expect(Buffer.from(out.subarray(n6 - 16, n6)).toString('hex')).toBe('fd00000000000000505400fffe000001');
  });

  it('answers NODATA for a type the name lacks, and 0 (forward it) for other names and odd queries', () => {
    const t = names();
    const out = Buffer.alloc(512);
    const q = query(1, 'db', 28);
    expect(t.answer(q, 0, q.length, out, 0)).toBe(q.length);
    expect(out.readUInt16BE(6)).toBe(0);
    for (const other of [query(2, 'example.com', 1), query(3, 'web', 1, { qclass: 3 }), query(4, 'web', 1, { qdcount: 2 }), query(5, 'web', 1, { flags: 0x8100 }), query(6, 'web', 1, { flags: 0x2900 })]) {
      expect(t.answer(other, 0, other.length, out, 0)).toBe(0);
    }
    expect(t.answer(q, 0, q.length, Buffer.alloc(q.length - 1), 0)).toBe(0);
    expect(t.answer(q.subarray(0, 14), 0, 14, out, 0)).toBe(0);
  });

  it('validates names, bounds the table, forgets deleted names', () => {
    expect(isValidHostName('my-app.internal')).toBe(true);
    for (const bad of ['', '-x', 'a_b', 'a..b', 'x'.repeat(64)]) expect(isValidHostName(bad)).toBe(false);
    const t = new LocalNames(2);
    expect(t.set('a', v4('10.0.0.1'), null)).toBe(true);
    expect(t.set('b', v4('10.0.0.2'), null)).toBe(true);
    expect(t.set('c', v4('10.0.0.3'), null)).toBe(false);
    expect(t.set('A', v4('10.0.0.9'), null)).toBe(true);
    t.delete('a');
    expect(t.has('a')).toBe(false);
    expect(t.size).toBe(1);
  });

  it('is consulted by the forwarder before any upstream', () => {
    const replies: Buffer[] = [];
    const sent: number[] = [];
    const f = new DnsForwarder(
      { upstreams: [{ ip: '127.0.0.1', port: 53 }], localNames: names() },
      { sendUpstream: (i) => sent.push(i), reply: (_k, buf, off, len) => replies.push(Buffer.from(buf.subarray(off, off + len))) },
    );
    const local = query(9, 'web', 1);
    expect(f.query(1, local, 0, local.length, 0)).toBeNull();
    expect(replies.length).toBe(1);
    expect(sent).toEqual([]);
    const other = query(10, 'example.com', 1);
    expect(f.query(1, other, 0, other.length, 0)).toBeNull();
    expect(sent).toEqual([0]);
  });
});
