/**
 * Two TcpConnections wired back to back through a fake link that loses,
 * duplicates and reorders segments (seeded PRNG, fake clock). Segments cross
 * the link as real bytes: writeTcpHeader + checksum on one side, TcpView +
 * checksum check + parseOptions on the other, so the wire module is part of
 * the loop. Each side sends 1-5 MB, reads with random sizes (sometimes not at
 * all, so windows close), then closes; the data must arrive intact and in
 * order and both ends must close normally.
 */
import { describe, expect, it } from 'vitest';
import { fold, pseudoHeaderSum4, sumBytes } from '../../../stack/wire/checksum.js';
import { TCP_SYN, TcpView, tcpChecksum, writeTcpHeader } from '../../../stack/wire/tcp.js';
import { tcpDefaults, type TcpConfig } from '../../../stack/tcp/config.js';
import {
  TcpConnection,
  type TcpCloseReason,
  type TcpEnv,
  type TcpSegmentOut,
} from '../../../stack/tcp/connection.js';
import { prng } from '../../helpers/prng.js';
import { newDropCounters } from '../../../stack/counters.js';

const IP_A = 0x0a00020f;
const IP_B = 0x0a000202;

interface Packet {
  at: number;
  order: number;
  to: Side;
  bytes: Buffer;
}

interface LinkParams {
  loss: number;
  dup: number;
  /** Max extra random delay in ms; segments closer than this reorder. */
  jitter: number;
}

class Side implements TcpEnv {
  readonly tcpDrops = newDropCounters();
  conn: TcpConnection | null = null;
  peer!: Side;
  closed: TcpCloseReason | null = null;
  established = false;
  written = 0;
  readOff = 0;
  received: Buffer;
  shutDown = false;

  constructor(
    readonly name: string,
    readonly net: Net,
    readonly src: number,
    readonly dst: number,
    readonly outgoing: Buffer,
    expectIn: number,
  ) {
    this.received = Buffer.alloc(expectIn);
  }

  emit(s: TcpSegmentOut): void {
    const buf = Buffer.alloc(60 + s.len);
    const hl = writeTcpHeader(buf, 0, s, s.options);
    s.buf.copy(buf, hl, s.off, s.off + s.len);
    const len = hl + s.len;
    tcpChecksum(buf, pseudoHeaderSum4(this.src, this.dst, 6, len), 0, len);
    this.net.transmit(this.peer, buf.subarray(0, len));
  }
  onEstablished(): void {
    this.established = true;
  }
  onReadable(): void {}
  onSendSpace(): void {}
  onClosed(reason: TcpCloseReason): void {
    expect(this.closed).toBe(null);
    this.closed = reason;
  }
}

class Net {
  now = 0;
  private queue: Packet[] = [];
  private order = 0;
  delivered = 0;
  dropped = 0;
  duplicated = 0;
  private readonly view = new TcpView();

  constructor(
    readonly rnd: () => number,
    readonly link: LinkParams,
    readonly cfg: TcpConfig,
  ) {}

  transmit(to: Side, bytes: Buffer): void {
    if (this.rnd() < this.link.loss) {
      this.dropped++;
      return;
    }
    const copies = this.rnd() < this.link.dup ? 2 : 1;
    if (copies === 2) this.duplicated++;
    for (let i = 0; i < copies; i++) {
      this.queue.push({ at: this.now + 0.05 + this.rnd() * this.link.jitter, order: this.order++, to, bytes });
    }
  }

  nextArrival(): number {
    let t = Infinity;
    for (const p of this.queue) if (p.at < t) t = p.at;
    return t;
  }

  /** Delivers everything due, in arrival order, then flushes both sides once (one batch). */
  deliverDue(sides: Side[]): void {
    const due = this.queue.filter((p) => p.at <= this.now).sort((a, b) => a.at - b.at || a.order - b.order);
    if (due.length === 0) return;
    this.queue = this.queue.filter((p) => p.at > this.now);
    for (const p of due) {
      this.delivered++;
      const v = this.view;
      expect(v.reset(p.bytes, 0, p.bytes.length)).toBe(null);
      expect(fold(sumBytes(p.bytes, 0, p.bytes.length, pseudoHeaderSum4(p.to.dst, p.to.src, 6, p.bytes.length)))).toBe(
        0xffff,
      );
      expect(v.parseOptions()).toBe(null);
      const side = p.to;
      if (side.conn === null) {
        // The passive side is created from the first SYN and answers at once.
        if ((v.flags & TCP_SYN) === 0) continue;
        side.conn = TcpConnection.fromSyn(v, this.cfg, side, this.now);
        continue;
      }
      const r = side.conn.input(v, this.now);
      expect(r).toBe(null);
    }
    for (const s of sides) s.conn?.flush(this.now);
  }
}

function pattern(n: number, seed: number): Buffer {
  const r = prng(seed);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i += 4) b.writeUInt32LE((r() * 4294967296) >>> 0, Math.min(i, n - 4));
  return b;
}

interface Scenario {
  seed: number;
  cfg: Partial<TcpConfig>;
  link: LinkParams;
}

function run(sc: Scenario): { net: Net; a: Side; b: Side; steps: number } {
  const rnd = prng(sc.seed);
  const cfg: TcpConfig = {
    ...tcpDefaults,
    recvBufferMax: 256 * 1024,
    sendBufferMax: 256 * 1024,
    maxSegmentLen: 0,
    ...sc.cfg,
  };
  const net = new Net(rnd, sc.link, cfg);
  const sizeA = 1_000_000 + Math.floor(rnd() * 4_000_000);
  const sizeB = 1_000_000 + Math.floor(rnd() * 4_000_000);
  const dataA = pattern(sizeA, sc.seed * 3 + 1);
  const dataB = pattern(sizeB, sc.seed * 3 + 2);
  const a = new Side('A', net, IP_A, IP_B, dataA, sizeB);
  const b = new Side('B', net, IP_B, IP_A, dataB, sizeA);
  a.peer = b;
  b.peer = a;
  const sides = [a, b];
  a.conn = TcpConnection.connect(cfg, a, net.now, 40000, 8080);

  let nextApp = 0;
  let steps = 0;
  for (; steps < 3_000_000; steps++) {
    if (a.closed !== null && b.closed !== null) break;
    let t = Math.min(net.nextArrival(), nextApp);
    for (const s of sides) if (s.conn !== null) t = Math.min(t, s.conn.pollAt());
    expect(t).toBeLessThan(Infinity);
    if (t > net.now) net.now = t;
    net.deliverDue(sides);
    for (const s of sides) {
      if (s.conn !== null && s.conn.pollAt() <= net.now) s.conn.poll(net.now);
    }
    if (net.now >= nextApp) {
      nextApp = net.now + 0.5;
      for (const s of sides) app(s, rnd, net.now);
    }
  }
  return { net, a, b, steps };
}

/** The host side of one connection: writes its stream, reads with random sizes, closes when done. */
function app(s: Side, rnd: () => number, now: number): void {
  const c = s.conn;
  if (c === null || !s.established) return;
  if (c.state === 'CLOSED') {
    // After a normal close the bytes still in the receive buffer are valid (the API says to
    // deliver them, as the NAT's proxy does): a FIN can be acknowledged before we read them all.
    if (c.closeReason === 'normal') {
      while (c.recvAvailable() > 0) s.readOff += c.recv(s.received, s.readOff, s.received.length - s.readOff, now);
    }
    return;
  }
  // Write: A uses the zero-copy path, B the copying one.
  let budget = Math.floor(rnd() * 200_000);
  while (budget > 0 && s.written < s.outgoing.length && c.sendSpace() > 0) {
    let n: number;
    if (s.name === 'A') {
      const r = c.sendWritable();
      n = Math.min(r.len, budget, s.outgoing.length - s.written);
      if (n === 0) break;
      s.outgoing.copy(r.buf, r.off, s.written, s.written + n);
      c.sendCommit(n, now);
    } else {
      n = c.send(s.outgoing, s.written, Math.min(budget, s.outgoing.length - s.written), now);
      if (n === 0) break;
    }
    s.written += n;
    budget -= n;
  }
  if (s.written === s.outgoing.length && !s.shutDown) {
    s.shutDown = true;
    c.shutdownSend(now);
  }
  // Read: sometimes not at all (the window closes), else a random amount in random pieces.
  if (rnd() < 0.3) return;
  let want = Math.floor(rnd() * 300_000);
  while (want > 0 && c.recvAvailable() > 0) {
    if (rnd() < 0.5) {
      const r = c.recvPeek();
      const n = Math.min(r.len, want, 1 + Math.floor(rnd() * 70_000));
      r.buf.copy(s.received, s.readOff, r.off, r.off + n);
      s.readOff += n;
      c.recvConsume(n, now);
      want -= n;
    } else {
      const n = c.recv(s.received, s.readOff, Math.min(want, s.received.length - s.readOff), now);
      s.readOff += n;
      want -= n;
    }
  }
}

const scenarios: Scenario[] = [
  { seed: 1, cfg: {}, link: { loss: 0.01, dup: 0.01, jitter: 0.3 } },
  { seed: 2, cfg: { sack: false, timestamps: false }, link: { loss: 0.02, dup: 0.02, jitter: 0.5 } },
  { seed: 3, cfg: { maxSegmentLen: 65_455, recvBufferMax: 1 << 20, sendBufferMax: 1 << 20 }, link: { loss: 0.05, dup: 0.02, jitter: 0.2 } },
  { seed: 4, cfg: { recvBufferMax: 40_000, oooMaxRanges: 4 }, link: { loss: 0.03, dup: 0.01, jitter: 1 } },
];

describe('back to back over a lossy, reordering, duplicating link', () => {
  for (const sc of scenarios) {
    it(`seed ${sc.seed}: ${JSON.stringify(sc.cfg)} loss ${sc.link.loss}`, () => {
      const { net, a, b } = run(sc);
      expect(a.readOff).toBe(b.outgoing.length);
      expect(b.readOff).toBe(a.outgoing.length);
      expect(a.received.equals(b.outgoing)).toBe(true);
      expect(b.received.equals(a.outgoing)).toBe(true);
      expect(a.closed).toBe('normal');
      expect(b.closed).toBe('normal');
      expect(a.conn!.peerFinished && b.conn!.peerFinished).toBe(true);
      // The link really misbehaved, and the connections really recovered.
      expect(net.dropped).toBeGreaterThan(0);
      expect(a.conn!.counters.retransmits + b.conn!.counters.retransmits).toBeGreaterThan(0);
    });
  }
});
