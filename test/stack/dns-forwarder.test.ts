import { describe, expect, it } from 'vitest';
import { DnsForwarder, type DnsForwarderEnv, type DnsForwarderOptions } from '../../stack/dns-forwarder.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

const QNAME = '03 777777 07 6578616d706c65 03 636f6d 00';
/** "www.example.com" A IN, RD, with the given id. */
function query(id: number, name = QNAME): Buffer {
  const b = hex('0000 0100 0001 0000 0000 0000' + name + '0001 0001');
  b.writeUInt16BE(id, 0);
  return b;
}

/** An upstream's answer to `q` (as sent upstream, with its id). */
function answer(q: Buffer, flags = 0x8180): Buffer {
  const b = Buffer.concat([q, hex('c00c 0001 0001 00000e10 0004 5db8d822')]);
  b.writeUInt16BE(flags, 2);
  b.writeUInt16BE(1, 6);
  return b;
}

interface Sent {
  upstream: number;
  bytes: Buffer;
}
interface Replied {
  client: number;
  bytes: Buffer;
}

/** A fake runtime: records what the forwarder sends, copying the bytes as a socket would. */
class FakeEnv implements DnsForwarderEnv {
  sent: Sent[] = [];
  replies: Replied[] = [];
  sendUpstream(upstream: number, buf: Buffer, off: number, len: number): void {
    this.sent.push({ upstream, bytes: Buffer.from(buf.subarray(off, off + len)) });
  }
  reply(client: number, buf: Buffer, off: number, len: number): void {
    this.replies.push({ client, bytes: Buffer.from(buf.subarray(off, off + len)) });
  }
  lastSent(): Sent {
    return this.sent[this.sent.length - 1];
  }
}

const UPSTREAMS = [
  { ip: '192.0.2.1', port: 53 },
  { ip: '2001:db8::1', port: 5353 },
];

function setup(opts: Partial<DnsForwarderOptions> = {}): { f: DnsForwarder; env: FakeEnv } {
  const env = new FakeEnv();
  const f = new DnsForwarder({ upstreams: UPSTREAMS, ...opts }, env);
  return { f, env };
}

function sequence(...ids: number[]): () => number {
  let i = 0;
  return () => ids[Math.min(i++, ids.length - 1)];
}

describe('DnsForwarder', () => {
  it('forwards a query with a fresh id and returns the answer with the original one', () => {
    const { f, env } = setup({ random16: sequence(0x4242) });
    const q = query(0x1234);
    expect(f.query(7, q, 0, q.length, 1000)).toBeNull();
    expect(env.sent.length).toBe(1);
    const up = env.lastSent();
    expect(up.upstream).toBe(0);
    expect(up.bytes.readUInt16BE(0)).toBe(0x4242);
    expect(up.bytes.subarray(2)).toEqual(q.subarray(2));
    // The client's buffer is left alone.
    expect(q.readUInt16BE(0)).toBe(0x1234);
    expect(f.pending).toBe(1);
    expect(f.pollAt()).toBe(3000);

    const a = answer(up.bytes);
    const framed = Buffer.concat([hex('eeee'), a]);
    expect(f.response(0, framed, 2, a.length, 1010)).toBeNull();
    expect(env.replies.length).toBe(1);
    expect(env.replies[0].client).toBe(7);
    expect(env.replies[0].bytes.readUInt16BE(0)).toBe(0x1234);
    expect(env.replies[0].bytes.subarray(2)).toEqual(a.subarray(2));
    expect(f.pending).toBe(0);
    expect(f.pollAt()).toBe(Infinity);
    expect(f.counters.answered).toBe(1);
    expect(f.counters.queries).toBe(1);
    expect(f.counters.sent).toBe(1);
    // A duplicate of the same answer is late now.
    expect(f.response(0, answer(up.bytes), 0, a.length, 1020)).toBe('unknown-id');
    expect(f.counters.drops['unknown-id']).toBe(1);
  });

  it('fails over to the next upstream on timeout, with the same id', () => {
    const { f, env } = setup({ random16: sequence(9) });
    const q = query(1);
    f.query(3, q, 0, q.length, 0);
    f.poll(1999);
    expect(env.sent.length).toBe(1);
    f.poll(2000);
    expect(env.sent.length).toBe(2);
    expect(env.sent[1].upstream).toBe(1);
    expect(env.sent[1].bytes).toEqual(env.sent[0].bytes);
    expect(f.counters.failovers).toBe(1);
    expect(f.pollAt()).toBe(4000);
    // The first upstream answers late: not where the query is now.
    expect(f.response(0, answer(env.sent[0].bytes), 0, answer(env.sent[0].bytes).length, 2100)).toBe('wrong-upstream');
    expect(env.replies.length).toBe(0);
    const a = answer(env.sent[1].bytes);
    expect(f.response(1, a, 0, a.length, 2200)).toBeNull();
    expect(env.replies[0].client).toBe(3);
    expect(env.replies[0].bytes.readUInt16BE(0)).toBe(1);
  });

  it('answers SERVFAIL when every upstream timed out', () => {
    const { f, env } = setup();
    const q = query(0xabcd);
    f.query(11, q, 0, q.length, 0);
    f.poll(2000);
    f.poll(3999);
    expect(env.replies.length).toBe(0);
    f.poll(4000);
    expect(env.sent.length).toBe(2);
    expect(env.replies.length).toBe(1);
    expect(env.replies[0].client).toBe(11);
    expect(env.replies[0].bytes).toEqual(hex('abcd 8182 0001 0000 0000 0000' + QNAME + '0001 0001'));
    expect(f.counters.servfail.timeout).toBe(1);
    expect(f.pending).toBe(0);
    expect(f.pollAt()).toBe(Infinity);
    const late = answer(env.sent[1].bytes);
    expect(f.response(1, late, 0, late.length, 4500)).toBe('unknown-id');
  });

  it('tries as many times as configured, cycling through the upstreams', () => {
    const { f, env } = setup({ attempts: 3, timeoutMs: 100 });
    const q = query(5);
    f.query(1, q, 0, q.length, 0);
    f.poll(100);
    f.poll(200);
    f.poll(300);
    expect(env.sent.map((s) => s.upstream)).toEqual([0, 1, 0]);
    expect(env.replies.length).toBe(1);
  });

  it('never hands out an id that is in flight', () => {
    const { f, env } = setup({ random16: sequence(5, 5, 5, 7) });
    f.query(1, query(100), 0, 33, 0);
    f.query(2, query(100), 0, 33, 0);
    expect(env.sent.map((s) => s.bytes.readUInt16BE(0))).toEqual([5, 7]);
    // Only 7 left in the sequence, and it is taken: the search walks on from it.
    f.query(3, query(100), 0, 33, 0);
    expect(env.sent[2].bytes.readUInt16BE(0)).toBe(8);
    // Answers go to the right clients.
    for (const [i, client] of [
      [1, 2],
      [0, 1],
      [2, 3],
    ]) {
      const a = answer(env.sent[i].bytes);
      expect(f.response(0, a, 0, a.length, 10)).toBeNull();
      expect(env.replies[env.replies.length - 1].client).toBe(client);
    }
  });

  it('draws random, distinct ids by default', () => {
    const { f, env } = setup({ maxPending: 512 });
    for (let i = 0; i < 512; i++) f.query(i, query(1), 0, 33, 0);
    const ids = env.sent.map((s) => s.bytes.readUInt16BE(0));
    expect(new Set(ids).size).toBe(512);
    let sequential = 0;
    for (let i = 1; i < ids.length; i++) if (ids[i] === ids[i - 1] + 1) sequential++;
    expect(sequential).toBeLessThan(10);
  });

  it('ignores a response from an upstream the query was not sent to', () => {
    const { f, env } = setup();
    f.query(1, query(42), 0, 33, 0);
    const a = answer(env.sent[0].bytes);
    expect(f.response(1, a, 0, a.length, 5)).toBe('wrong-upstream');
    expect(f.pending).toBe(1);
    expect(f.response(0, a, 0, a.length, 6)).toBeNull();
    expect(env.replies.length).toBe(1);
  });

  it('ignores a response whose question differs, but not one that only changes case', () => {
    const { f, env } = setup();
    f.query(1, query(42), 0, 33, 0);
    const spoof = answer(env.sent[0].bytes);
    spoof[13] = 0x78; // www -> xww
    expect(f.response(0, spoof, 0, spoof.length, 1)).toBe('question-mismatch');
    const shortOne = answer(env.sent[0].bytes).subarray(0, 20);
    expect(f.response(0, shortOne, 0, shortOne.length, 1)).toBe('question-mismatch');
    const upper = answer(env.sent[0].bytes);
    upper[13] = 0x57; // WWW, as a 0x20-randomising upstream may send it
    expect(f.response(0, upper, 0, upper.length, 2)).toBeNull();
    // A FORMERR without a question section is taken as it is.
    f.query(1, query(43), 0, 33, 3);
    const formerr = Buffer.from(env.lastSent().bytes.subarray(0, 12));
    formerr.writeUInt16BE(0x8181, 2);
    formerr.writeUInt16BE(0, 4);
    expect(f.response(0, formerr, 0, 12, 4)).toBeNull();
    expect(env.replies[1].bytes.readUInt16BE(0)).toBe(43);
  });

  it('passes truncated answers through untouched', () => {
    const { f, env } = setup();
    f.query(1, query(42), 0, 33, 0);
    const tc = answer(env.sent[0].bytes, 0x8380);
    expect(f.response(0, tc, 0, tc.length, 1)).toBeNull();
    expect(env.replies[0].bytes.readUInt16BE(2)).toBe(0x8380);
    expect(env.replies[0].bytes.subarray(2)).toEqual(tc.subarray(2));
  });

  it('makes room in a full table: the oldest query gets SERVFAIL at once, the new one goes upstream', () => {
    const { f, env } = setup({ maxPending: 2 });
    f.query(1, query(1), 0, 33, 0);
    f.query(2, query(2), 0, 33, 0);
    expect(f.query(3, query(3), 0, 33, 0)).toBeNull();
    expect(env.sent.length).toBe(3);
    expect(f.pending).toBe(2);
    expect(env.replies.length).toBe(1);
    expect(env.replies[0].client).toBe(1);
    expect(env.replies[0].bytes.readUInt16BE(0)).toBe(1);
    expect(env.replies[0].bytes.readUInt16BE(2)).toBe(0x8182);
    expect(f.counters.servfail['pending-full']).toBe(1);
    // The jostled query's late answer is refused; the new query's answer reaches its client.
    const late = answer(env.sent[0].bytes);
    expect(f.response(0, late, 0, late.length, 1)).not.toBeNull();
    const a = answer(env.sent[2].bytes);
    expect(f.response(0, a, 0, a.length, 1)).toBeNull();
    expect(env.replies[1].client).toBe(3);
    expect(f.query(4, query(4), 0, 33, 2)).toBeNull();
    expect(env.sent.length).toBe(4);
  });

  it('answers SERVFAIL when there is no upstream', () => {
    const env = new FakeEnv();
    const f = new DnsForwarder({ upstreams: [] }, env);
    expect(f.query(1, query(9), 0, 33, 0)).toBeNull();
    expect(env.replies[0].bytes.readUInt16BE(2)).toBe(0x8182);
    expect(f.counters.servfail['no-upstream']).toBe(1);
    expect(f.pollAt()).toBe(Infinity);
  });

  it('drops what is not a query, one reason each', () => {
    const { f, env } = setup({ maxQueryLen: 100 });
    expect(f.query(1, query(1), 0, 11, 0)).toBe('dns-truncated');
    const resp = answer(query(1));
    expect(f.query(1, resp, 0, resp.length, 0)).toBe('dns-not-query');
    const big = Buffer.concat([query(1), Buffer.alloc(100)]);
    expect(f.query(1, big, 0, big.length, 0)).toBe('dns-query-too-big');
    expect(f.response(0, query(1), 0, 33, 0)).toBe('dns-not-response');
    expect(f.response(0, query(1), 0, 5, 0)).toBe('dns-truncated');
    expect(f.counters.drops).toEqual({
      'dns-truncated': 2,
      'dns-not-query': 1,
      'dns-query-too-big': 1,
      'dns-not-response': 1,
    });
    expect(env.sent.length).toBe(0);
    expect(env.replies.length).toBe(0);
    expect(f.counters.queries).toBe(0);
  });

  it('keeps deadlines in order across queries and retries', () => {
    const { f, env } = setup({ timeoutMs: 1000 });
    f.query(1, query(1), 0, 33, 0);
    f.query(2, query(2), 0, 33, 300);
    f.query(3, query(3), 0, 33, 600);
    expect(f.pollAt()).toBe(1000);
    // The middle one is answered: it leaves the list.
    const a = answer(env.sent[1].bytes);
    f.response(0, a, 0, a.length, 700);
    f.poll(1000);
    expect(env.sent[3].upstream).toBe(1);
    expect(f.pollAt()).toBe(1600);
    f.poll(1600);
    expect(f.pollAt()).toBe(2000);
    f.poll(2600);
    expect(env.replies.map((r) => r.client)).toEqual([2, 1, 3]);
    expect(f.pending).toBe(0);
  });

  it('reuses slots without leaking through many queries and big ones', () => {
    // Unanswered queries live 2 x 2 ms, so with one in seven left unanswered four slots are plenty.
    const { f, env } = setup({ maxPending: 4, timeoutMs: 2, random16: () => Math.floor(Math.random() * 65536) });
    for (let i = 0; i < 5000; i++) {
      f.poll(i);
      const sentBefore = env.sent.length;
      const q = i % 100 === 0 ? Buffer.concat([query(i & 0xffff), Buffer.alloc(900)]) : query(i & 0xffff);
      if (i % 100 === 0) q.writeUInt16BE(1, 10); // the padding is an additional record, as far as we care
      expect(f.query(i, q, 0, q.length, i)).toBeNull();
      expect(env.sent.length).toBe(sentBefore + 1);
      const up = env.lastSent().bytes;
      expect(up.length).toBe(q.length);
      if (i % 7 === 0) continue; // left to time out
      const a = answer(up.subarray(0, 33));
      expect(f.response(0, a, 0, a.length, i)).toBeNull();
    }
    f.poll(1e9);
    f.poll(1e9 + 2);
    expect(f.pending).toBe(0);
    expect(env.replies.length).toBe(5000);
    expect(f.counters.servfail.timeout).toBe(Math.ceil(5000 / 7));
    expect(f.counters.servfail['pending-full']).toBeUndefined();
  });

  it('refuses bad configuration', () => {
    const env = new FakeEnv();
    expect(() => new DnsForwarder({ upstreams: [{ ip: '1.1.1.1', port: 0 }] }, env)).toThrow(RangeError);
    expect(() => new DnsForwarder({ upstreams: UPSTREAMS, maxPending: 40000 }, env)).toThrow(RangeError);
    expect(() => new DnsForwarder({ upstreams: UPSTREAMS, timeoutMs: 0 }, env)).toThrow(RangeError);
    expect(() => new DnsForwarder({ upstreams: UPSTREAMS, attempts: 0 }, env)).toThrow(RangeError);
  });
});
