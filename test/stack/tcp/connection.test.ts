import { describe, expect, it } from 'vitest';
import { TcpConnection, windowShiftFor } from '../../../stack/tcp/connection.js';
import type { DropReason } from '../../../stack/drop-reasons.js';
import { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN } from '../../../stack/wire/tcp.js';
import { ringPool } from '../../../stack/tcp/ring-pool.js';
import {
  bytes,
  closeWait,
  closing,
  config,
  established,
  finWait1,
  finWait2,
  Harness,
  passiveOpen,
  lastAck,
  LOCAL_ISS,
  LOCAL_PORT,
  LOCAL_SEQ,
  REMOTE_ISS,
  REMOTE_PORT,
  REMOTE_SEQ,
  seg,
  synReceived,
  synSeg,
  synSent,
  TEST_CONFIG,
  timeWait,
  harnessTcpDrops,
} from '../../helpers/tcp-harness.js';

const ACK = TCP_ACK;
const PA = TCP_PSH | TCP_ACK;
const FA = TCP_FIN | TCP_ACK;
const RA = TCP_RST | TCP_ACK;
const MSS = 1460;
const WND = TEST_CONFIG.recvBufferMax;

function dropCount(reason: DropReason): number {
  return harnessTcpDrops.get(reason);
}

describe('handshake: passive open', () => {
  it('fromSyn sends the SYN-ACK at once, and the ACK establishes', () => {
    const h = passiveOpen();
    h.expectSent({ flags: TCP_SYN | ACK, seq: LOCAL_ISS, ack: REMOTE_SEQ, mss: 1460, windowScale: -1, window: WND });
    expect(h.conn.state).toBe('SYN-RECEIVED');
    h.send(seg());
    h.expectNothing();
    expect(h.conn.state).toBe('ESTABLISHED');
    expect(h.takeEvents()).toEqual(['established']);
    expect(h.conn.localPort).toBe(LOCAL_PORT);
    expect(h.conn.remotePort).toBe(REMOTE_PORT);
  });

  it('retransmits a lost SYN-ACK when the SYN is repeated, and on RTO with backoff', () => {
    const h = synReceived();
    h.send(synSeg());
    h.expectSent({ flags: TCP_SYN | ACK, seq: LOCAL_ISS, ack: REMOTE_SEQ });
    expect(h.conn.pollAt()).toBe(1000);
    expect(h.pollNext()).toBe(1000);
    h.expectSent({ flags: TCP_SYN | ACK, seq: LOCAL_ISS });
    expect(h.pollNext()).toBe(3000);
    h.expectSent({ flags: TCP_SYN | ACK, seq: LOCAL_ISS });
    h.send(seg());
    expect(h.conn.state).toBe('ESTABLISHED');
  });

  it('gives up on an unanswered SYN-ACK after maxSynRetransmits', () => {
    const h = synReceived({ cfg: config({ maxSynRetransmits: 2 }) });
    h.pollNext();
    h.pollNext();
    h.takeSent();
    h.pollNext();
    h.expectSent({ flags: RA });
    expect(h.env.closed).toBe('timeout');
  });

  it('a RST in SYN-RECEIVED closes the connection', () => {
    const h = synReceived();
    h.send(seg({ flags: TCP_RST, ack: 0 }));
    expect(h.env.closed).toBe('reset');
  });

  it('answers an ACK that does not acknowledge our SYN with a RST', () => {
    const h = synReceived();
    h.send(seg({ ack: LOCAL_ISS + 5 }));
    h.expectSent({ flags: TCP_RST, seq: LOCAL_ISS + 5 });
    expect(h.conn.state).toBe('SYN-RECEIVED');
  });
});

describe('handshake: active open', () => {
  it('sends SYN with MSS and window scale, and establishes on SYN-ACK', () => {
    const h = new Harness();
    h.conn = TcpConnection.connect(h.cfg, h.env, h.now, LOCAL_PORT, REMOTE_PORT, LOCAL_ISS);
    h.expectSent({ flags: TCP_SYN, seq: LOCAL_ISS, ack: 0, mss: 1460, windowScale: 0, sackPermitted: false });
    expect(h.conn.state).toBe('SYN-SENT');
    h.advance(3);
    h.send(seg({ flags: TCP_SYN | ACK, seq: REMOTE_ISS, ack: LOCAL_SEQ, mss: 1200, windowScale: 2, window: 1000 }));
    h.expectSent({ flags: ACK, seq: LOCAL_SEQ, ack: REMOTE_SEQ });
    expect(h.conn.state).toBe('ESTABLISHED');
    expect(h.takeEvents()).toEqual(['established']);
    expect(h.conn.peerMss).toBe(1200);
    expect(h.conn.sendMss).toBe(1200);
    // The SYN-ACK's window is not scaled; the handshake gave an RTT sample.
    expect(h.conn.sndWnd).toBe(1000);
    expect(h.conn.srtt).toBe(3);
    expect(h.conn.windowScaling).toEqual({ send: 2, recv: 0 });
  });

  it('sends data queued before the handshake completed right after it', () => {
    const h = synSent();
    expect(h.conn.send(Buffer.from('early'), 0, 5, h.now)).toBe(5);
    h.expectNothing();
    h.send(seg({ flags: TCP_SYN | ACK, seq: REMOTE_ISS, ack: LOCAL_SEQ, mss: 1460 }));
    h.expectSent({ flags: PA, seq: LOCAL_SEQ, ack: REMOTE_SEQ, payload: 'early' });
  });

  it('a RST acknowledging our SYN means refused; a bad ACK draws a RST', () => {
    const h = synSent();
    h.send(seg({ flags: TCP_SYN | ACK, seq: REMOTE_ISS, ack: LOCAL_ISS + 7 }));
    h.expectSent({ flags: TCP_RST, seq: LOCAL_ISS + 7 });
    expect(h.conn.state).toBe('SYN-SENT');
    h.send(seg({ flags: TCP_RST, seq: 0, ack: LOCAL_ISS + 7 }));
    expect(h.conn.state).toBe('SYN-SENT');
    h.send(seg({ flags: TCP_RST | ACK, seq: 0, ack: LOCAL_SEQ }));
    expect(h.env.closed).toBe('refused');
    h.expectNothing();
  });

  it('retransmits the SYN with exponential backoff and gives up', () => {
    const h = synSent({ cfg: config({ maxSynRetransmits: 3 }) });
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      times.push(h.pollNext());
      h.expectSent({ flags: TCP_SYN, seq: LOCAL_ISS });
    }
    expect(times).toEqual([1000, 3000, 7000]);
    expect(h.pollNext()).toBe(15000);
    h.expectNothing();
    expect(h.env.closed).toBe('timeout');
  });

  it('simultaneous open: a bare SYN in SYN-SENT answers SYN-ACK', () => {
    const h = synSent();
    h.send(seg({ flags: TCP_SYN, seq: REMOTE_ISS, ack: 0 }));
    h.expectSent({ flags: TCP_SYN | ACK, seq: LOCAL_ISS, ack: REMOTE_SEQ });
    expect(h.conn.state).toBe('SYN-RECEIVED');
    h.send(seg());
    expect(h.conn.state).toBe('ESTABLISHED');
  });
});

describe('handshake: option negotiation', () => {
  it('window scaling both ways: our shift fits the buffer, the peer window is scaled', () => {
    const cfg = config({ recvBufferMax: 4 * 1024 * 1024 });
    expect(windowShiftFor(4 * 1024 * 1024)).toBe(7);
    const h = passiveOpen({ cfg, syn: { windowScale: 5 } });
    h.expectSent({ flags: TCP_SYN | ACK, windowScale: 7, window: 65535 });
    h.send(seg({ window: 100 }));
    expect(h.conn.sndWnd).toBe(100 << 5);
    h.send(seg({ payload: 'x' }));
    h.expectSent({ flags: ACK, ack: REMOTE_SEQ + 1, window: ((4 * 1024 * 1024 - 1) >>> 7) });
  });

  it('a peer without window scaling gets none: unscaled windows capped at 65535', () => {
    const cfg = config({ recvBufferMax: 4 * 1024 * 1024 });
    const h = passiveOpen({ cfg });
    h.expectSent({ flags: TCP_SYN | ACK, windowScale: -1, window: 65535 });
    h.send(seg({ window: 40000 }));
    expect(h.conn.sndWnd).toBe(40000);
    expect(h.conn.windowScaling).toEqual({ send: 0, recv: 0 });
    h.send(seg({ payload: 'x' }));
    h.expectSent({ flags: ACK, window: 65535 });
  });

  it('an active open whose SYN-ACK lacks window scale turns scaling off', () => {
    const h = synSent({ cfg: config({ recvBufferMax: 1 << 20 }) });
    h.send(seg({ flags: TCP_SYN | ACK, seq: REMOTE_ISS, ack: LOCAL_SEQ, window: 5000 }));
    expect(h.conn.windowScaling).toEqual({ send: 0, recv: 0 });
    h.expectSent({ flags: ACK, window: 65535 });
  });

  it('timestamps and SACK-permitted are echoed when offered, and timestamps shrink the MSS', () => {
    const cfg = config({ timestamps: true, sack: true });
    const h = passiveOpen({ cfg, syn: { ts: [5000, 0], sackPermitted: true } });
    const synAck = h.expectSent({ flags: TCP_SYN | ACK, tsPresent: true, tsEcr: 5000, sackPermitted: true });
    expect(h.conn.sendMss).toBe(1460 - 12);
    expect(h.conn.timestampsEnabled).toBe(true);
    expect(h.conn.sackEnabled).toBe(true);
    h.advance(7);
    h.send(seg({ ts: [5001, synAck.tsVal] }));
    expect(h.conn.srtt).toBe(7);
    h.send(seg({ payload: 'hi', ts: [5002, synAck.tsVal] }));
    h.expectSent({ flags: ACK, tsPresent: true, tsEcr: 5002 });
  });

  it('does not offer what the config disables, nor echo what the peer did not offer', () => {
    const h = passiveOpen({ syn: { ts: [1, 0], sackPermitted: true } });
    h.expectSent({ flags: TCP_SYN | ACK, tsPresent: false, sackPermitted: false });
    const h2 = passiveOpen({ cfg: config({ timestamps: true, sack: true }) });
    h2.expectSent({ flags: TCP_SYN | ACK, tsPresent: false, sackPermitted: false });
    expect(h2.conn.peerMss).toBe(1460);
  });

  it('assumes MSS 536 when the peer sends none', () => {
    const h = passiveOpen({ syn: { mss: -1 } });
    expect(h.conn.peerMss).toBe(536);
    expect(h.conn.sendMss).toBe(536);
  });
});

describe('data transfer', () => {
  it('receives in-order data, ACKs it at flush and shrinks the window', () => {
    const h = established();
    h.send(seg({ payload: 'hello' }));
    h.expectSent({ flags: ACK, seq: LOCAL_SEQ, ack: REMOTE_SEQ + 5, window: WND - 5 });
    expect(h.takeEvents()).toEqual(['readable']);
    expect(h.conn.recvAvailable()).toBe(5);
    expect(h.drain().toString()).toBe('hello');
    expect(h.conn.counters.bytesIn).toBe(5);
  });

  it('without flush: one small segment waits for the delayed-ACK timer, two full ones are ACKed at once', () => {
    const h = established();
    h.inputOnly(seg({ payload: 'a' }));
    h.expectNothing();
    expect(h.conn.pollAt()).toBe(TEST_CONFIG.delayedAckMs);
    h.pollNext();
    h.expectSent({ flags: ACK, ack: REMOTE_SEQ + 1 });
    h.inputOnly(seg({ seq: REMOTE_SEQ + 1, payload: bytes(MSS) }));
    h.inputOnly(seg({ seq: REMOTE_SEQ + 1 + MSS, payload: bytes(MSS) }));
    expect(h.conn.pollAt()).toBe(0);
    h.conn.poll(h.now);
    h.expectSent({ flags: ACK, ack: REMOTE_SEQ + 1 + 2 * MSS });
  });

  it('one ACK per batch: many segments then flush give a single ACK', () => {
    const h = established();
    for (let i = 0; i < 5; i++) h.inputOnly(seg({ seq: REMOTE_SEQ + i * 100, payload: bytes(100, i) }));
    h.conn.flush(h.now);
    h.expectSent({ flags: ACK, ack: REMOTE_SEQ + 500 });
  });

  it('accepts a GSO-sized 64 KiB segment in one piece', () => {
    const cfg = config({ recvBufferMax: 4 * 1024 * 1024 });
    const h = established({ cfg, syn: { windowScale: 7 } });
    const data = bytes(65536, 9);
    h.send(seg({ payload: data }));
    h.expectSent({ flags: ACK, ack: REMOTE_SEQ + 65536, window: (4 * 1024 * 1024 - 65536) >>> 7 });
    expect(h.drain().equals(data)).toBe(true);
  });

  it('sends data immediately with PSH, and frees it when ACKed', () => {
    const h = established();
    expect(h.conn.send(Buffer.from('hello'), 0, 5, h.now)).toBe(5);
    h.expectSent({ flags: PA, seq: LOCAL_SEQ, ack: REMOTE_SEQ, payload: 'hello', window: WND });
    expect(h.conn.sendQueued).toBe(5);
    h.send(seg({ ack: LOCAL_SEQ + 5 }));
    h.expectNothing();
    expect(h.takeEvents()).toEqual(['send-space']);
    expect(h.conn.sendQueued).toBe(0);
    expect(h.conn.counters.bytesOut).toBe(5);
  });

  it('zero-copy path: sendWritable then sendCommit', () => {
    const h = established();
    const r = h.conn.sendWritable();
    expect(r.len).toBeGreaterThan(0);
    r.buf.write('zero-copy', r.off);
    h.conn.sendCommit(9, h.now);
    h.expectSent({ flags: PA, payload: 'zero-copy' });
  });

  it('bounds the send buffer at sendBufferMax, growing from the initial size', () => {
    const h = established({ cfg: config({ sendBufferMax: 16384, sendBufferInitial: 4096 }) });
    h.send(seg({ window: 0 }));
    expect(h.conn.send(bytes(20000), 0, 20000, h.now)).toBe(16384);
    expect(h.conn.sendSpace()).toBe(0);
    expect(h.conn.sendWritable().len).toBe(0);
    expect(h.conn.sendBufferCapacity).toBe(16384);
  });

  it('segments are cut at the peer MSS and limited by cwnd (initial window 10 segments)', () => {
    const h = established({ cfg: config({ sendBufferMax: 1 << 20 }) });
    h.send(seg({ window: 65535 }));
    const data = bytes(30000);
    h.conn.send(data, 0, data.length, h.now);
    const sent = h.takeSent();
    expect(sent.map((s) => s.payload.length)).toEqual(Array(10).fill(MSS));
    expect(Buffer.concat(sent.map((s) => s.payload)).equals(data.subarray(0, 10 * MSS))).toBe(true);
    expect(sent.every((s, i) => s.seq === LOCAL_SEQ + i * MSS)).toBe(true);
    // ACKing everything doubles cwnd in slow start: the rest (15400 bytes) fits.
    h.send(seg({ ack: LOCAL_SEQ + 10 * MSS, window: 65535 }));
    const more = h.takeSent();
    expect(more.reduce((n, s) => n + s.payload.length, 0)).toBe(30000 - 10 * MSS);
    expect(h.conn.cwnd).toBe(20 * MSS);
  });

  it('with TSO (maxSegmentLen ~64 KiB) emits whole-MSS multiples up to the cwnd', () => {
    const cfg = config({ maxSegmentLen: 65_455, sendBufferMax: 1 << 20, recvBufferMax: 1 << 20 });
    const h = established({ cfg, syn: { windowScale: 7 } });
    h.send(seg({ window: 65535 }));
    h.conn.send(bytes(200_000), 0, 200_000, h.now);
    h.expectSent({ flags: ACK, len: 10 * MSS });
    h.send(seg({ ack: LOCAL_SEQ + 10 * MSS, window: 65535 }));
    const s = h.takeSent();
    expect(s.map((x) => x.payload.length)).toEqual([20 * MSS]);
    h.send(seg({ ack: LOCAL_SEQ + 30 * MSS, window: 65535 }));
    // cwnd 40 MSS allows 58400 bytes; one segment of at most 44 whole MSS (64240).
    expect(h.takeSent().map((x) => x.payload.length)).toEqual([40 * MSS]);
    expect(h.conn.peerMss).toBe(1460);
  });

  it('respects the peer window and avoids silly small segments while data is in flight', () => {
    const h = established();
    h.send(seg({ window: 2000 }));
    h.conn.send(bytes(5000), 0, 5000, h.now);
    h.expectSent({ flags: ACK, seq: LOCAL_SEQ, len: MSS });
    // 540 bytes of window left: too small while a segment is in flight.
    h.send(seg({ ack: LOCAL_SEQ + 100, window: 1900 }));
    h.expectNothing();
    h.send(seg({ ack: LOCAL_SEQ + MSS, window: 2000 }));
    h.expectSent({ seq: LOCAL_SEQ + MSS, len: MSS });
  });
});

describe('retransmission', () => {
  it('retransmits on RTO with exponential backoff', () => {
    const h = established();
    h.conn.send(Buffer.from('abc'), 0, 3, h.now);
    h.takeSent();
    // The handshake measured an RTT of 0: the RTO sits at its 200 ms floor.
    expect(h.conn.pollAt()).toBe(200);
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      times.push(h.pollNext());
      h.expectSent({ flags: PA, seq: LOCAL_SEQ, payload: 'abc' });
    }
    expect(times).toEqual([200, 600, 1400]);
    expect(h.conn.counters.rtoExpiries).toBe(3);
    expect(h.conn.counters.retransmits).toBe(3);
    // An ACK of retransmitted data gives no sample and keeps the backoff (Karn), but stops the timer.
    h.advance(10);
    h.send(seg({ ack: LOCAL_SEQ + 3 }));
    expect(h.conn.srtt).toBe(0);
    expect(h.conn.rtoMs).toBe(1600);
    expect(h.conn.pollAt()).toBe(Infinity);
    // The next fresh segment's ACK is a valid sample and resets the backoff.
    h.conn.send(Buffer.from('d'), 0, 1, h.now);
    h.advance(20);
    h.send(seg({ ack: LOCAL_SEQ + 4 }));
    expect(h.conn.srtt).toBe(2.5);
    expect(h.conn.rtoMs).toBe(200);
  });

  it('estimates RTT (RFC 6298) and applies the 200 ms floor', () => {
    const h = established();
    h.conn.send(Buffer.from('a'), 0, 1, h.now);
    // The handshake's sample (0 ms) initialised SRTT = 0, RTTVAR = 0.
    expect(h.conn.srtt).toBe(0);
    h.advance(50);
    h.send(seg({ ack: LOCAL_SEQ + 1 }));
    // RTTVAR = 3/4 * 0 + 1/4 * |0 - 50|; SRTT = 7/8 * 0 + 1/8 * 50.
    expect(h.conn.rttvar).toBe(12.5);
    expect(h.conn.srtt).toBe(6.25);
    expect(h.conn.rtoMs).toBe(200);
    h.conn.send(Buffer.from('b'), 0, 1, h.now);
    h.advance(100);
    h.send(seg({ ack: LOCAL_SEQ + 2 }));
    expect(h.conn.rttvar).toBeCloseTo(0.75 * 12.5 + 0.25 * 93.75);
    expect(h.conn.srtt).toBeCloseTo(0.875 * 6.25 + 12.5);
    expect(h.conn.rtoMs).toBe(200);
  });

  it('without the floor the RTO is SRTT + 4 RTTVAR', () => {
    const h = established({ cfg: config({ rtoMinMs: 1 }) });
    h.conn.send(Buffer.from('a'), 0, 1, h.now);
    h.advance(50);
    h.send(seg({ ack: LOCAL_SEQ + 1 }));
    expect(h.conn.rtoMs).toBe(6.25 + 4 * 12.5);
    h.conn.send(Buffer.from('b'), 0, 1, h.now);
    h.takeSent();
    expect(h.conn.pollAt()).toBe(h.now + 56.25);
  });

  it('goes back to SND.UNA after an RTO and resends the rest as cwnd grows', () => {
    const h = established();
    h.send(seg({ window: 65535 }));
    h.conn.send(bytes(4 * MSS), 0, 4 * MSS, h.now);
    expect(h.takeSent().length).toBe(4);
    h.pollNext();
    h.expectSent({ seq: LOCAL_SEQ, len: MSS });
    expect(h.conn.cwnd).toBe(MSS);
    h.send(seg({ ack: LOCAL_SEQ + MSS, window: 65535 }));
    expect(h.takeSent().map((s) => s.seq)).toEqual([LOCAL_SEQ + MSS, LOCAL_SEQ + 2 * MSS]);
  });

  it('gives up after maxRetransmits: RST and closed with timeout', () => {
    const h = established({ cfg: config({ maxRetransmits: 3 }) });
    h.conn.send(Buffer.from('abc'), 0, 3, h.now);
    h.takeSent();
    for (let i = 0; i < 3; i++) {
      h.pollNext();
      h.expectSent({ payload: 'abc' });
    }
    h.pollNext();
    h.expectSent({ flags: RA, seq: LOCAL_SEQ + 3, ack: REMOTE_SEQ });
    expect(h.conn.state).toBe('CLOSED');
    expect(h.takeEvents()).toEqual(['closed:timeout']);
  });

  it('fast retransmit after three duplicate ACKs, NewReno partial and full ACKs', () => {
    const h = established();
    h.send(seg({ window: 65535 }));
    h.conn.send(bytes(5 * MSS), 0, 5 * MSS, h.now);
    expect(h.takeSent().length).toBe(5);
    h.send(seg({ ack: LOCAL_SEQ, window: 65535 }));
    h.send(seg({ ack: LOCAL_SEQ, window: 65535 }));
    h.expectNothing();
    h.send(seg({ ack: LOCAL_SEQ, window: 65535 }));
    h.expectSent({ seq: LOCAL_SEQ, len: MSS });
    expect(h.conn.counters.dupAcks).toBe(3);
    expect(h.conn.counters.fastRetransmits).toBe(1);
    expect(h.conn.inRecovery).toBe(true);
    expect(h.conn.ssthresh).toBe((5 * MSS) / 2);
    expect(h.conn.cwnd).toBe((5 * MSS) / 2 + 3 * MSS);
    // Partial ACK: the next hole is resent at once.
    h.send(seg({ ack: LOCAL_SEQ + 2 * MSS, window: 65535 }));
    h.expectSent({ seq: LOCAL_SEQ + 2 * MSS, len: MSS });
    expect(h.conn.inRecovery).toBe(true);
    // Full ACK ends recovery.
    h.send(seg({ ack: LOCAL_SEQ + 5 * MSS, window: 65535 }));
    expect(h.conn.inRecovery).toBe(false);
    expect(h.conn.cwnd).toBeLessThanOrEqual((5 * MSS) / 2);
    h.expectNothing();
  });

  it('a window change or data makes an ACK not a duplicate', () => {
    const h = established();
    h.conn.send(bytes(3 * MSS), 0, 3 * MSS, h.now);
    h.takeSent();
    h.send(seg({ ack: LOCAL_SEQ, window: 30000 }));
    h.send(seg({ ack: LOCAL_SEQ, window: 30001 }));
    h.send(seg({ ack: LOCAL_SEQ, window: 30001, payload: 'x' }));
    h.takeSent();
    expect(h.conn.counters.dupAcks).toBe(0);
  });

  it('SACK: fast retransmit sends only the hole, and after an RTO SACKed data is skipped', () => {
    const cfg = config({ sack: true });
    const h = established({ cfg, syn: { sackPermitted: true } });
    h.send(seg({ window: 65535 }));
    h.conn.send(bytes(5 * MSS), 0, 5 * MSS, h.now);
    h.takeSent();
    const third: [number, number] = [LOCAL_SEQ + 2 * MSS, LOCAL_SEQ + 3 * MSS];
    h.pollNext();
    h.expectSent({ seq: LOCAL_SEQ, len: MSS });
    // The peer holds the third segment; after the first hole is filled cwnd is
    // two segments: the second and the fourth go out, never the third.
    h.send(seg({ ack: LOCAL_SEQ + MSS, window: 65535, sack: [third] }));
    expect(h.takeSent().map((s) => s.seq)).toEqual([LOCAL_SEQ + MSS, LOCAL_SEQ + 3 * MSS]);
  });

  it('SACK blocks limit a fast retransmission to the hole before them', () => {
    const cfg = config({ sack: true });
    const h = established({ cfg, syn: { sackPermitted: true } });
    h.send(seg({ window: 65535 }));
    h.conn.send(bytes(5 * MSS), 0, 5 * MSS, h.now);
    h.takeSent();
    const blk: [number, number] = [LOCAL_SEQ + 1000, LOCAL_SEQ + 5 * MSS];
    for (let i = 0; i < 3; i++) h.send(seg({ ack: LOCAL_SEQ, window: 65535, sack: [blk] }));
    h.expectSent({ seq: LOCAL_SEQ, len: 1000 });
  });
});

describe('out-of-order reassembly', () => {
  it('holds a segment after a hole, sends a duplicate ACK, and merges when the hole fills', () => {
    const h = established();
    h.send(seg({ seq: REMOTE_SEQ + 3, payload: 'def' }));
    h.expectSent({ flags: ACK, ack: REMOTE_SEQ });
    expect(h.conn.recvAvailable()).toBe(0);
    expect(h.conn.counters.oooSegments).toBe(1);
    expect(h.conn.oooBytes).toBe(3);
    h.send(seg({ payload: 'abc' }));
    h.expectSent({ flags: ACK, ack: REMOTE_SEQ + 6 });
    expect(h.drain().toString()).toBe('abcdef');
  });

  it('handles overlapping and duplicate segments', () => {
    const h = established();
    h.send(seg({ seq: REMOTE_SEQ + 2, payload: 'cdefgh' }));
    h.send(seg({ seq: REMOTE_SEQ + 6, payload: 'ghij' }));
    h.send(seg({ seq: REMOTE_SEQ + 4, payload: 'ef' }));
    h.send(seg({ seq: REMOTE_SEQ, payload: 'abcd' }));
    h.takeSent();
    expect(h.drain().toString()).toBe('abcdefghij');
    // A retransmission overlapping the left edge contributes only its new tail.
    h.send(seg({ seq: REMOTE_SEQ + 8, payload: 'ijkl' }));
    h.expectSent({ flags: ACK, ack: REMOTE_SEQ + 12 });
    expect(h.drain().toString()).toBe('kl');
    // Entirely old data: re-ACK, nothing delivered.
    h.send(seg({ seq: REMOTE_SEQ, payload: 'abcd' }));
    h.expectSent({ flags: ACK, ack: REMOTE_SEQ + 12 });
    expect(h.conn.recvAvailable()).toBe(0);
  });

  it('generates SACK blocks for the out-of-order queue, most recent first', () => {
    const cfg = config({ sack: true });
    const h = established({ cfg, syn: { sackPermitted: true } });
    h.send(seg({ seq: REMOTE_SEQ + 10, payload: 'xx' }));
    h.expectSent({ ack: REMOTE_SEQ, sack: [[REMOTE_SEQ + 10, REMOTE_SEQ + 12]] });
    h.send(seg({ seq: REMOTE_SEQ + 20, payload: 'yy' }));
    h.expectSent({ ack: REMOTE_SEQ, sack: [[REMOTE_SEQ + 20, REMOTE_SEQ + 22], [REMOTE_SEQ + 10, REMOTE_SEQ + 12]] });
    h.send(seg({ payload: bytes(10) }));
    h.expectSent({ ack: REMOTE_SEQ + 12, sack: [[REMOTE_SEQ + 20, REMOTE_SEQ + 22]] });
  });

  it('caps the out-of-order queue: bytes by the window, ranges by oooMaxRanges', () => {
    const h = established({ cfg: config({ oooMaxRanges: 2 }) });
    const before = dropCount('ooo-full');
    h.send(seg({ seq: REMOTE_SEQ + 10, payload: 'a' }));
    h.send(seg({ seq: REMOTE_SEQ + 20, payload: 'b' }));
    h.send(seg({ seq: REMOTE_SEQ + 30, payload: 'c' }));
    expect(dropCount('ooo-full')).toBe(before + 1);
    // Merging with an existing range is still allowed at the cap.
    h.send(seg({ seq: REMOTE_SEQ + 11, payload: 'a' }));
    expect(h.conn.oooBytes).toBe(3);
    // Data beyond the window is cut at the window's edge.
    const beyond = dropCount('beyond-window');
    h.send(seg({ seq: REMOTE_SEQ + WND - 5, payload: bytes(20) }));
    expect(dropCount('beyond-window')).toBe(beyond + 1);
    expect(h.conn.oooBytes).toBe(3);
    h.takeSent();
    h.send(seg({ payload: bytes(10) }));
    h.expectSent({ ack: REMOTE_SEQ + 12 });
  });
});

describe('windows and flow control', () => {
  it('zero window: data waits, persist probes back off, a window update releases it', () => {
    const h = established();
    h.send(seg({ window: 0 }));
    h.conn.send(Buffer.from('abc'), 0, 3, h.now);
    h.expectNothing();
    expect(h.pollNext()).toBe(200);
    h.expectSent({ flags: ACK, seq: LOCAL_SEQ - 1, len: 0 });
    // The peer answers each probe with its (still zero) window.
    h.send(seg({ window: 0 }));
    expect(h.pollNext()).toBe(600);
    h.expectSent({ seq: LOCAL_SEQ - 1, len: 0 });
    h.send(seg({ window: 0 }));
    expect(h.pollNext()).toBe(1400);
    h.takeSent();
    expect(h.conn.counters.windowProbes).toBe(3);
    h.send(seg({ window: 1000 }));
    h.expectSent({ flags: PA, seq: LOCAL_SEQ, payload: 'abc' });
  });

  it('gives up when zero-window probes go unanswered', () => {
    const h = established({ cfg: config({ maxRetransmits: 2 }) });
    h.send(seg({ window: 0 }));
    h.conn.send(Buffer.from('abc'), 0, 3, h.now);
    h.pollNext();
    h.pollNext();
    h.takeSent();
    h.pollNext();
    h.expectSent({ flags: RA });
    expect(h.env.closed).toBe('timeout');
  });

  it('window updates follow SND.WL1/WL2: an older segment cannot shrink the window', () => {
    const h = established();
    h.send(seg({ seq: REMOTE_SEQ, payload: 'ab', window: 5000 }));
    expect(h.conn.sndWnd).toBe(5000);
    // Reordered older segment with a smaller window.
    h.send(seg({ seq: REMOTE_SEQ, window: 100 }));
    expect(h.conn.sndWnd).toBe(5000);
    h.send(seg({ seq: REMOTE_SEQ + 2, window: 7000 }));
    expect(h.conn.sndWnd).toBe(7000);
  });

  it('receive backpressure: the window shrinks to zero and reopens with an update on consume', () => {
    const h = established();
    const chunk = 4096;
    for (let i = 0; i < WND / chunk; i++) {
      h.send(seg({ seq: REMOTE_SEQ + i * chunk, payload: bytes(chunk, i) }));
      h.expectSent({ ack: REMOTE_SEQ + (i + 1) * chunk, window: WND - (i + 1) * chunk });
    }
    expect(h.conn.recvWindow).toBe(0);
    // More data while the window is zero: not buffered, answered with a zero-window ACK.
    h.send(seg({ seq: REMOTE_SEQ + WND, payload: bytes(100) }));
    h.expectSent({ ack: REMOTE_SEQ + WND, window: 0 });
    expect(h.conn.recvAvailable()).toBe(WND);
    // A small read does not reopen the window (receiver SWS avoidance)...
    h.conn.recvConsume(100, h.now);
    h.expectNothing();
    // ...half the buffer does, at once.
    h.conn.recvConsume(WND / 2 - 100, h.now);
    h.expectSent({ flags: ACK, ack: REMOTE_SEQ + WND, window: WND / 2 });
    expect(h.conn.counters.windowUpdates).toBe(1);
  });

  it('a zero-window probe from the peer is answered with our window', () => {
    const h = established();
    h.send(seg({ payload: bytes(WND) }));
    h.takeSent();
    h.send(seg({ seq: REMOTE_SEQ + WND - 1, ack: LOCAL_SEQ }));
    h.expectSent({ flags: ACK, ack: REMOTE_SEQ + WND, window: 0 });
  });

  it('allocates the receive buffer lazily and grows it only as data arrives', () => {
    const h = established();
    expect(h.conn.recvBufferCapacity).toBe(0);
    expect(h.conn.sendBufferCapacity).toBe(0);
    h.send(seg({ payload: bytes(100) }));
    expect(h.conn.recvBufferCapacity).toBe(TEST_CONFIG.recvBufferInitial);
    h.send(seg({ seq: REMOTE_SEQ + 100, payload: bytes(10000) }));
    expect(h.conn.recvBufferCapacity).toBe(16384);
    h.drain();
    h.conn.releaseMemory();
    expect(h.conn.recvBufferCapacity).toBe(0);
  });
});

describe('FIN in each state', () => {
  it('ESTABLISHED: FIN with data -> CLOSE-WAIT, data then EOF readable', () => {
    const h = established();
    h.send(seg({ flags: FA, payload: 'bye' }));
    h.expectSent({ flags: ACK, ack: REMOTE_SEQ + 4 });
    expect(h.conn.state).toBe('CLOSE-WAIT');
    expect(h.conn.peerFinished).toBe(true);
    expect(h.drain().toString()).toBe('bye');
    expect(h.takeEvents()).toEqual(['readable']);
  });

  it('ESTABLISHED: a FIN after a hole waits for the hole', () => {
    const h = established();
    h.send(seg({ seq: REMOTE_SEQ + 3, flags: FA, payload: 'def' }));
    h.expectSent({ ack: REMOTE_SEQ });
    expect(h.conn.peerFinished).toBe(false);
    h.send(seg({ payload: 'abc' }));
    h.expectSent({ ack: REMOTE_SEQ + 7 });
    expect(h.conn.peerFinished).toBe(true);
    expect(h.conn.state).toBe('CLOSE-WAIT');
    expect(h.drain().toString()).toBe('abcdef');
  });

  it('FIN-WAIT-1: FIN that also ACKs our FIN -> TIME-WAIT', () => {
    const h = finWait1();
    h.send(seg({ flags: FA, ack: LOCAL_SEQ + 1 }));
    h.expectSent({ flags: ACK, seq: LOCAL_SEQ + 1, ack: REMOTE_SEQ + 1 });
    expect(h.conn.state).toBe('TIME-WAIT');
  });

  it('FIN-WAIT-1: queued data goes before the FIN, and the FIN is retransmitted on RTO', () => {
    const h = established();
    h.conn.send(Buffer.from('data'), 0, 4, h.now);
    h.takeSent();
    h.conn.shutdownSend(h.now);
    h.expectSent({ flags: FA, seq: LOCAL_SEQ + 4, len: 0 });
    h.send(seg({ ack: LOCAL_SEQ + 4 }));
    expect(h.conn.state).toBe('FIN-WAIT-1');
    h.pollNext();
    h.expectSent({ flags: FA, seq: LOCAL_SEQ + 4 });
    h.send(seg({ ack: LOCAL_SEQ + 5 }));
    expect(h.conn.state).toBe('FIN-WAIT-2');
    expect(h.conn.sendSpace()).toBe(0);
  });

  it('FIN-WAIT-1: FIN without ACK of ours -> CLOSING, then ACK -> TIME-WAIT (simultaneous close)', () => {
    const h = closing();
    h.send(seg({ seq: REMOTE_SEQ + 1, ack: LOCAL_SEQ + 1 }));
    h.expectNothing();
    expect(h.conn.state).toBe('TIME-WAIT');
  });

  it('TIME-WAIT: the rings go back to the pool on entry; unread bytes keep the receive ring', () => {
    const h = finWait2();
    h.send(seg({ ack: LOCAL_SEQ + 1, payload: 'more' }));
    h.takeSent();
    expect(h.conn.recvBufferCapacity).toBeGreaterThan(0);
    const pooled = ringPool.size;
    h.send(seg({ seq: REMOTE_SEQ + 4, ack: LOCAL_SEQ + 1, flags: FA }));
    expect(h.conn.state).toBe('TIME-WAIT');
    // 'more' was not read yet: that ring stays with the connection.
    expect(h.conn.recvBufferCapacity).toBeGreaterThan(0);
    expect(h.drain().toString()).toBe('more');

    const t = established();
    t.conn.send(Buffer.from('data'), 0, 4, t.now);
    t.send(seg({ payload: 'in' }));
    expect(t.drain().toString()).toBe('in');
    t.conn.shutdownSend(t.now);
    t.send(seg({ seq: REMOTE_SEQ + 2, ack: LOCAL_SEQ + 5, flags: FA }));
    expect(t.conn.state).toBe('TIME-WAIT');
    expect(t.conn.sendBufferCapacity).toBe(0);
    expect(t.conn.recvBufferCapacity).toBe(0);
    expect(ringPool.size).toBeGreaterThan(pooled);
  });

  it('FIN-WAIT-2: the peer keeps sending (half-close), then FIN -> TIME-WAIT', () => {
    const h = finWait2();
    h.send(seg({ ack: LOCAL_SEQ + 1, payload: 'more' }));
    h.expectSent({ flags: ACK, seq: LOCAL_SEQ + 1, ack: REMOTE_SEQ + 4 });
    expect(h.drain().toString()).toBe('more');
    h.send(seg({ seq: REMOTE_SEQ + 4, ack: LOCAL_SEQ + 1, flags: FA }));
    h.expectSent({ flags: ACK, ack: REMOTE_SEQ + 5 });
    expect(h.conn.state).toBe('TIME-WAIT');
  });

  it('CLOSE-WAIT: we keep sending (half-close), a retransmitted FIN is re-ACKed', () => {
    const h = closeWait();
    h.conn.send(Buffer.from('reply'), 0, 5, h.now);
    h.expectSent({ flags: PA, seq: LOCAL_SEQ, ack: REMOTE_SEQ + 1, payload: 'reply' });
    h.send(seg({ flags: FA, ack: LOCAL_SEQ + 5 }));
    h.expectSent({ flags: ACK, ack: REMOTE_SEQ + 1 });
    expect(h.conn.state).toBe('CLOSE-WAIT');
    h.conn.shutdownSend(h.now);
    h.expectSent({ flags: FA, seq: LOCAL_SEQ + 5 });
    expect(h.conn.state).toBe('LAST-ACK');
  });

  it('CLOSING: a retransmitted FIN is re-ACKed', () => {
    const h = closing();
    h.send(seg({ flags: FA, ack: LOCAL_SEQ }));
    h.expectSent({ flags: ACK, ack: REMOTE_SEQ + 1 });
    expect(h.conn.state).toBe('CLOSING');
  });

  it('LAST-ACK: a retransmitted FIN is re-ACKed; the ACK of our FIN closes normally', () => {
    const h = lastAck();
    h.send(seg({ flags: FA, ack: LOCAL_SEQ }));
    h.expectSent({ flags: ACK, ack: REMOTE_SEQ + 1 });
    h.send(seg({ seq: REMOTE_SEQ + 1, ack: LOCAL_SEQ + 1 }));
    h.expectNothing();
    expect(h.conn.state).toBe('CLOSED');
    expect(h.takeEvents()).toEqual(['closed:normal']);
  });

  it('LAST-ACK: the FIN is retransmitted on RTO', () => {
    const h = lastAck();
    h.pollNext();
    h.expectSent({ flags: FA, seq: LOCAL_SEQ });
  });

  it('TIME-WAIT: a retransmitted FIN is re-ACKed and restarts the timer; expiry closes normally', () => {
    const h = timeWait();
    expect(h.conn.pollAt()).toBe(TEST_CONFIG.timeWaitMs);
    h.advance(1500);
    h.send(seg({ flags: FA, ack: LOCAL_SEQ + 1 }));
    h.expectSent({ flags: ACK, seq: LOCAL_SEQ + 1, ack: REMOTE_SEQ + 1 });
    expect(h.conn.pollAt()).toBe(1500 + TEST_CONFIG.timeWaitMs);
    h.pollNext();
    expect(h.conn.state).toBe('CLOSED');
    expect(h.takeEvents()).toEqual(['closed:normal']);
    h.expectNothing();
  });

  it('TIME-WAIT: a new SYN reopens the 4-tuple', () => {
    const h = timeWait();
    expect(h.send(synSeg({ seq: REMOTE_SEQ + 100000 }))).toBe('reopen');
    expect(h.env.closed).toBe('normal');
    const h2 = timeWait();
    expect(h2.send(synSeg({ seq: REMOTE_ISS }))).toBe(null);
  });

  it('FIN-WAIT-2 times out when the peer stays silent, but not while it is active', () => {
    const cfg = config({ finWait2Ms: 10_000 });
    const h = finWait2({ cfg });
    h.advance(8000);
    h.send(seg({ ack: LOCAL_SEQ + 1, payload: 'x' }));
    h.takeSent();
    expect(h.conn.pollAt()).toBe(18_000);
    h.pollNext();
    h.expectSent({ flags: RA, seq: LOCAL_SEQ + 1, ack: REMOTE_SEQ + 1 });
    expect(h.env.closed).toBe('timeout');
  });

  it('shutdownSend in SYN-RECEIVED sends the FIN once established', () => {
    const h = synReceived();
    h.conn.shutdownSend(h.now);
    h.expectNothing();
    h.send(seg());
    h.expectSent({ flags: FA, seq: LOCAL_SEQ });
    expect(h.conn.state).toBe('FIN-WAIT-1');
  });
});

describe('RST and challenge ACKs', () => {
  const builders = { established, finWait1, finWait2, closeWait, closing, lastAck };
  for (const [name, build] of Object.entries(builders)) {
    it(`${name}: an exact RST resets, an in-window one draws a challenge ACK`, () => {
      const h = build();
      const rcvNxt = h.conn.rcvNxt;
      h.send(seg({ flags: TCP_RST, seq: rcvNxt + 100, ack: 0 }));
      h.expectSent({ flags: ACK, ack: rcvNxt });
      expect(h.conn.counters.challengeAcks).toBe(1);
      const state = h.conn.state;
      expect(state).not.toBe('CLOSED');
      h.send(seg({ flags: TCP_RST, seq: rcvNxt, ack: 0 }));
      h.expectNothing();
      expect(h.conn.state).toBe('CLOSED');
      expect(h.takeEvents()).toEqual(['closed:reset']);
    });
  }

  it('TIME-WAIT: an exact RST just ends it', () => {
    const h = timeWait();
    h.send(seg({ flags: TCP_RST, seq: REMOTE_SEQ + 1, ack: 0 }));
    expect(h.env.closed).toBe('normal');
  });

  it('an out-of-window RST is dropped silently', () => {
    const h = established();
    const before = dropCount('rst-out-of-window');
    h.send(seg({ flags: TCP_RST, seq: REMOTE_SEQ + WND + 10, ack: 0 }));
    h.send(seg({ flags: TCP_RST, seq: REMOTE_SEQ - 1, ack: 0 }));
    h.expectNothing();
    expect(h.conn.state).toBe('ESTABLISHED');
    expect(dropCount('rst-out-of-window')).toBe(before + 2);
  });

  it('a SYN on an established connection draws a challenge ACK', () => {
    const h = established();
    h.send(synSeg({ seq: REMOTE_SEQ + 5 }));
    h.expectSent({ flags: ACK, ack: REMOTE_SEQ });
    expect(h.conn.state).toBe('ESTABLISHED');
  });

  it('an ACK for data never sent is answered with an ACK and dropped', () => {
    const h = established();
    const before = dropCount('bad-ack');
    h.send(seg({ ack: LOCAL_SEQ + 1000, payload: 'zz' }));
    h.expectSent({ flags: ACK, ack: REMOTE_SEQ });
    expect(h.conn.recvAvailable()).toBe(0);
    expect(dropCount('bad-ack')).toBe(before + 1);
  });

  it('abort() sends RST|ACK and reports reset once', () => {
    const h = established();
    h.conn.send(Buffer.from('abc'), 0, 3, h.now);
    h.takeSent();
    h.conn.abort(h.now);
    h.expectSent({ flags: RA, seq: LOCAL_SEQ + 3, ack: REMOTE_SEQ });
    h.conn.abort(h.now);
    expect(h.env.closedCount).toBe(1);
    expect(h.conn.pollAt()).toBe(Infinity);
  });
});

describe('sequence numbers wrap around 2^32', () => {
  it('transfers data both ways across the wrap', () => {
    const h = new Harness();
    const rIss = 0xffff_fff0;
    const lIss = 0xffff_fff8;
    h.conn = TcpConnection.fromSyn(synSeg({ seq: rIss }), h.cfg, h.env, h.now, lIss);
    h.expectSent({ flags: TCP_SYN | ACK, seq: lIss, ack: 0xffff_fff1 });
    h.send(seg({ seq: 0xffff_fff1, ack: 0xffff_fff9 }));
    expect(h.conn.state).toBe('ESTABLISHED');
    const inbound = bytes(64, 3);
    h.send(seg({ seq: 0xffff_fff1, ack: 0xffff_fff9, payload: inbound }));
    h.expectSent({ ack: (0xffff_fff1 + 64) >>> 0 });
    expect(h.drain().equals(inbound)).toBe(true);
    const outbound = bytes(3000, 4);
    h.conn.send(outbound, 0, outbound.length, h.now);
    const sent = h.takeSent();
    expect(sent[0].seq).toBe(0xffff_fff9);
    expect(sent[1].seq).toBe((0xffff_fff9 + MSS) >>> 0);
    expect(Buffer.concat(sent.map((s) => s.payload)).equals(outbound)).toBe(true);
    h.send(seg({ seq: 0x31, ack: (0xffff_fff9 + 3000) >>> 0 }));
    expect(h.conn.sendQueued).toBe(0);
    expect(h.conn.pollAt()).toBe(Infinity);
    // Out-of-order data on the far side of the wrap.
    h.send(seg({ seq: 0x31 + 5, ack: 0xbb1, payload: 'world' }));
    h.send(seg({ seq: 0x31, ack: 0xbb1, payload: 'hello' }));
    expect(h.drain().toString()).toBe('helloworld');
  });
});

describe('bookkeeping', () => {
  it('lastActivity follows input and owner calls; pollAt is Infinity when idle', () => {
    const h = established();
    h.advance(500);
    h.send(seg({ payload: 'a' }));
    expect(h.conn.lastActivity).toBe(500);
    h.advance(10);
    h.drain();
    expect(h.conn.lastActivity).toBe(510);
    expect(h.conn.pollAt()).toBe(Infinity);
  });

  it('input on a closed connection is counted as a drop and ignored', () => {
    const h = established();
    h.conn.abort(h.now);
    h.takeSent();
    const before = dropCount('closed');
    h.send(seg({ payload: 'late' }));
    h.expectNothing();
    expect(dropCount('closed')).toBe(before + 1);
  });
});
