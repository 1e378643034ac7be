import { createSocket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { describe, expect, it } from 'vitest';
import { answerQuery, startDnsResponder, type DnsAnswers } from '../../../src/check/dns-responder.js';

const answers: DnsAnswers = { name: 'probe.usernet.test', a: Uint8Array.from([198, 51, 100, 7]), aaaa: Uint8Array.from([0x20, 1, 0xd, 0xb8, ...new Array<number>(11).fill(0), 7]) };

/** A query for name/type with id 0x1234 and RD set. */
function query(name: string, type: number): Buffer {
  const labels = name.split('.').flatMap((l) => [l.length, ...Buffer.from(l)]);
  return Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, ...labels, 0, type >> 8, type & 255, 0, 1]);
}

describe('the check DNS responder', () => {
  it('answers A with golden bytes: header, the question, one record by pointer', () => {
    const q = query('probe.usernet.test', 1);
    const r = answerQuery(q, answers)!;
    expect(r.subarray(0, 12).toString('hex')).toBe('1234858000010001' + '00000000');
    expect(r.subarray(12, q.length).equals(q.subarray(12))).toBe(true);
    expect(r.subarray(q.length).toString('hex')).toBe('c00c' + '0001' + '0001' + '0000003c' + '0004' + 'c6336407');
  });

  it('answers NXDOMAIN for other names, FORMERR for a cut name, nothing for responses or short datagrams', () => {
    const nx = answerQuery(query('other.test', 1), answers)!;
    expect(nx.readUInt16BE(2) & 0xf).toBe(3);
    expect(nx.readUInt16BE(6)).toBe(0);
    const cut = answerQuery(query('probe.usernet.test', 1).subarray(0, 20), answers)!;
    expect(cut.readUInt16BE(2) & 0xf).toBe(1);
    expect(cut.length).toBe(12);
    const response = query('x', 1);
    response[2] |= 0x80;
    expect(answerQuery(response, answers)).toBeNull();
    expect(answerQuery(Buffer.alloc(5), answers)).toBeNull();
  });

  it("is understood by Node's resolver (c-ares) on loopback, names case-insensitively", async () => {
    const server = await startDnsResponder(answers);
    try {
      const r = new Resolver({ timeout: 1000, tries: 2 });
      r.setServers([`127.0.0.1:${server.port}`]);
      expect(await r.resolve4('Probe.Usernet.Test')).toEqual(['198.51.100.7']);
      expect(await r.resolve6('probe.usernet.test')).toEqual(['2001:db8::7']);
      await expect(r.resolve4('nothing.test')).rejects.toMatchObject({ code: 'ENOTFOUND' });
    } finally {
      server.close();
    }
  });

  it('ignores garbage without dying', async () => {
    const server = await startDnsResponder(answers);
    const s = createSocket('udp4');
    try {
      await new Promise<void>((res) => s.send(Buffer.from([1, 2, 3]), server.port, '127.0.0.1', () => res()));
      const r = new Resolver({ timeout: 1000, tries: 2 });
      r.setServers([`127.0.0.1:${server.port}`]);
      expect(await r.resolve4('probe.usernet.test')).toEqual(['198.51.100.7']);
    } finally {
      s.close();
      server.close();
    }
  });
});
