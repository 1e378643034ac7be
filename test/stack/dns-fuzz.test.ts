/** Mutation fuzzing of the DNS reader, SERVFAIL builder and forwarder: nothing throws, drops are counted. */
import { describe, expect, it } from 'vitest';
import { DnsForwarder } from '../../stack/dns-forwarder.js';
import { buildServfail, DnsQuestionReader, questionSectionEnd, servfailLen } from '../../stack/wire/dns.js';
import { prng as rng } from '../helpers/prng.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

const QNAME = '03 777777 07 6578616d706c65 03 636f6d 00';
const SEEDS = [
  hex('1234 0100 0001 0000 0000 0000' + QNAME + '0001 0001'),
  hex('abcd 0110 0002 0000 0000 0001' + QNAME + '0001 0001 c00c 001c 0001 00 0029 04d0 00 00 0000 0000'),
  hex('1234 8180 0001 0001 0000 0000' + QNAME + '0001 0001 c00c 0001 0001 00000e10 0004 5db8d822'),
];

function mutate(r: () => number, seed: Buffer): Buffer {
  let b = Buffer.from(seed);
  const n = 1 + Math.floor(r() * 4);
  for (let k = 0; k < n; k++) {
    const what = r();
    if (what < 0.5) b[Math.floor(r() * b.length)] = r() < 0.3 ? 0xc0 | Math.floor(r() * 64) : Math.floor(r() * 256);
    else if (what < 0.7) b = b.subarray(0, Math.floor(r() * b.length));
    else b = Buffer.concat([b, Buffer.alloc(Math.floor(r() * 20)).map(() => Math.floor(r() * 256))]);
  }
  return b;
}

describe('DNS fuzz', () => {
  it('reads and answers mutated messages without throwing', () => {
    const r = rng(0xd115);
    const q = new DnsQuestionReader();
    const out = Buffer.alloc(600);
    for (let i = 0; i < 10_000; i++) {
      const m = mutate(r, SEEDS[i % SEEDS.length]);
      const bad = q.read(m, 0, m.length, 12, true);
      if (bad === null) expect(q.nameWireLen).toBeLessThanOrEqual(255);
      const end = questionSectionEnd(m, 0, m.length);
      expect(end === -1 || (end >= 12 && end <= m.length)).toBe(true);
      const n = buildServfail(m, 0, m.length, out, 0);
      expect(n).toBe(servfailLen(m, 0, m.length));
      if (n > 0) expect(out[3] & 0xf).toBe(2);
    }
  });

  it('forwards mutated traffic without throwing; the table drains', () => {
    const r = rng(0xf0f0);
    let replies = 0;
    const inFlight: Buffer[] = [];
    const f = new DnsForwarder(
      { upstreams: [{ ip: '192.0.2.1', port: 53 }, { ip: '192.0.2.2', port: 53 }], maxPending: 64 },
      {
        sendUpstream: (_u, buf, off, len) => void inFlight.push(Buffer.from(buf.subarray(off, off + len))),
        reply: () => void replies++,
      },
    );
    let now = 0;
    for (let i = 0; i < 10_000; i++) {
      now += Math.floor(r() * 50);
      const m = mutate(r, SEEDS[i % SEEDS.length]);
      f.query(i, m, 0, m.length, now);
      if (inFlight.length > 0 && r() < 0.7) {
        const sent = inFlight.splice(Math.floor(r() * inFlight.length), 1)[0];
        const resp = r() < 0.5 ? Buffer.from(sent) : mutate(r, sent);
        if (resp.length >= 3) resp[2] |= 0x80;
        f.response(Math.floor(r() * 2), resp, 0, resp.length, now);
      }
      if (f.pollAt() <= now) f.poll(now);
      expect(f.pending).toBeLessThanOrEqual(64);
    }
    f.poll(now + 10_000);
    f.poll(now + 20_000);
    expect(f.pending).toBe(0);
    expect(f.pollAt()).toBe(Infinity);
    expect(replies).toBeGreaterThan(500);
    expect(Object.keys(f.counters.drops).length).toBeGreaterThan(2);
  });
});
