/**
 * The TCP NAT with a real gateway and TCP, a fake host side and a sink that
 * records what reaches the guest: dial before SYN-ACK and what each dial
 * outcome tells the guest.
 */
import { describe, expect, it } from 'vitest';
import type { Frame, FrameSink, Port } from '../../../stack/frame.js';
import type { StackOptions } from '../../../stack/stack.js';
import { GW_MAC, makeNat, NET } from './nat-fixture.js';
import { TIMER_BATCH, type TcpFlow, type TcpHostEnv } from '../../../stack/nat/tcp-nat.js';
import type { TcpStream } from '../../../stack/nat/tcp-stream.js';
import { checksum, pseudoHeaderSum4 } from '../../../stack/wire/checksum.js';
import { emitEthernetHeader, ETHERTYPE_IPV4 } from '../../../stack/wire/ethernet.js';
import { emitIpv4Header, IP_PROTO_TCP } from '../../../stack/wire/ipv4.js';
import { TCP_ACK, TCP_RST, TCP_SYN, TcpOptions, TcpView, tcpChecksum, writeTcpHeader } from '../../../stack/wire/tcp.js';
import { VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_LEN } from '../../../stack/wire/vnet.js';
import type { TcpCloseReason } from '../../../stack/tcp/connection.js';

const GW = NET + 2;
const GUEST = NET + 100;
const GUEST_MAC = 0x0200_0000_0064;

interface Sent {
  bytes: Buffer;
  vnet: Buffer | null;
}

class Capture implements FrameSink {
  sent: Sent[] = [];
  input(_from: Port, f: Frame): void {
    this.sent.push({
      bytes: Buffer.from(f.buf.subarray(f.off, f.off + f.len)),
      vnet: f.vnet ? Buffer.from(f.buf.subarray(f.off - VIRTIO_NET_HDR_LEN, f.off)) : null,
    });
  }
}

class FakeHost implements TcpHostEnv {
  dials: TcpFlow[] = [];
  closed: [TcpFlow, TcpCloseReason][] = [];
  dial(flow: TcpFlow): void {
    this.dials.push(flow);
  }
  onReadable(): void {}
  onSendSpace(): void {}
  onClosed(flow: TcpFlow, reason: TcpCloseReason): void {
    this.closed.push([flow, reason]);
  }
}

function setup(over: Partial<StackOptions> = {}) {
  const sink = new Capture();
  const { gw, nat } = makeNat(sink, over);
  const host = new FakeHost();
  nat.tcp.host = host;
  return { sink, gw, nat, host };
}

/** A guest TCP segment as a frame with full checksums. */
function segment(o: { src?: number; dst?: number; srcPort?: number; dstPort?: number; seq?: number; ack?: number; flags: number; payload?: number }): Frame {
  const payload = o.payload ?? 0;
  const opts = new TcpOptions();
  if (o.flags & TCP_SYN) {
    opts.mss = 1460;
    opts.windowScale = 7;
    opts.sackPermitted = true;
  }
  const buf = Buffer.alloc(14 + 20 + 60 + payload);
  emitEthernetHeader(buf, 0, GW_MAC, GUEST_MAC, ETHERTYPE_IPV4);
  const tcpLen = writeTcpHeader(
    buf,
    34,
    { srcPort: o.srcPort ?? 40000, dstPort: o.dstPort ?? 80, seq: o.seq ?? 1000, ack: o.ack ?? 0, flags: o.flags, window: 64240, urgent: 0 },
    opts,
  );
  const dst = o.dst ?? GW;
  const src = o.src ?? GUEST;
  emitIpv4Header(buf, 14, src, dst, IP_PROTO_TCP, tcpLen + payload, 64, 1, true);
  tcpChecksum(buf, pseudoHeaderSum4(src, dst, IP_PROTO_TCP, tcpLen + payload), 34, tcpLen + payload);
  return { buf, off: 0, len: 34 + tcpLen + payload, vnet: false };
}

function tcpOf(s: Sent): TcpView {
  const v = new TcpView();
  const ihl = (s.bytes[14] & 0x0f) * 4;
  expect(v.reset(s.bytes, 14 + ihl, s.bytes.length - 14 - ihl)).toBeNull();
  v.parseOptions();
  return v;
}

/** The guest-facing checksum is partial (offload): complete it the way the kernel would, then verify. */
function tcpChecksumOk(s: Sent): boolean {
  expect(s.vnet).not.toBeNull();
  expect(s.vnet![0] & VIRTIO_NET_HDR_F_NEEDS_CSUM).toBeTruthy();
  return verifyFull(s.bytes, 14 + (s.bytes[14] & 0x0f) * 4);
}

function verifyFull(b: Buffer, start: number): boolean {
  const copy = Buffer.from(b);
  const src = copy.readUInt32BE(26);
  const dst = copy.readUInt32BE(30);
  const len = copy.length - start;
  // The field holds the folded pseudo-header sum; summing the segment with it gives the final checksum.
  const full = checksum(copy, start, len);
  copy.writeUInt16BE(full, start + 16);
  return checksum(copy, start, len, pseudoHeaderSum4(src, dst, IP_PROTO_TCP, len)) === 0;
}

describe('TcpNat: dial before SYN-ACK', () => {
  it('answers the SYN only after the host connect succeeds, and dials once for repeated SYNs', () => {
    const { sink, gw, nat, host } = setup();
    gw.deliver(segment({ flags: TCP_SYN }), 0);
    gw.deliver(segment({ flags: TCP_SYN }), 5);
    nat.flush(5);
    expect(host.dials).toHaveLength(1);
    expect(host.dials[0].hostIp).toBe(0x7f00_0001);
    expect(host.dials[0].hostPort).toBe(80);
    expect(sink.sent).toHaveLength(0);

    nat.tcp.dialSucceeded(host.dials[0], 10);
    nat.flush(10);
    expect(sink.sent).toHaveLength(1);
    const synAck = tcpOf(sink.sent[0]);
    expect(synAck.flags).toBe(TCP_SYN | TCP_ACK);
    expect(synAck.ack).toBe(1001);
    expect(synAck.srcPort).toBe(80);
    expect(synAck.options.mss).toBe(1460);
    expect(synAck.options.windowScale).toBeGreaterThanOrEqual(0);
    expect(sink.sent[0].bytes.readUInt32BE(26)).toBe(GW); // from the address the guest dialled
    expect(tcpChecksumOk(sink.sent[0])).toBe(true);
    expect(nat.tcp.flowCount).toBe(1);
  });

  it('turns a refused connect into a RST', () => {
    const { sink, gw, nat, host } = setup();
    gw.deliver(segment({ flags: TCP_SYN }), 0);
    nat.tcp.dialFailed(host.dials[0], 'ECONNREFUSED', 1);
    nat.flush(1);
    expect(sink.sent).toHaveLength(1);
    const rst = tcpOf(sink.sent[0]);
    expect(rst.flags & TCP_RST).toBeTruthy();
    expect(rst.ack).toBe(1001);
    expect(host.closed.map(([, r]) => r)).toEqual(['refused']);
    expect(nat.tcp.flowCount).toBe(0);
  });

  it('turns an unreachable host into ICMP host unreachable quoting the SYN, without a RST', () => {
    const { sink, gw, nat, host } = setup();
    gw.deliver(segment({ dst: 0xc633_6405, flags: TCP_SYN }), 0); // 198.51.100.5
    expect(host.dials[0].hostIp).toBe(0xc633_6405);
    nat.tcp.dialFailed(host.dials[0], 'EHOSTUNREACH', 1);
    nat.flush(1);
    expect(sink.sent).toHaveLength(1);
    const b = sink.sent[0].bytes;
    expect(b[14 + 9]).toBe(1); // ICMP
    expect(b[34]).toBe(3); // destination unreachable
    expect(b[35]).toBe(1); // host
    expect(b.readUInt32BE(34 + 8 + 16)).toBe(0xc633_6405); // quoted destination
    expect(checksum(b, 34, b.length - 34)).toBe(0);
    expect(host.closed).toHaveLength(1);
    expect(nat.tcp.flowCount).toBe(0);
  });

  it('refuses the gateway address at once when host loopback is disabled: ICMP net unreachable quoting the SYN, as slirp4netns', () => {
    const { sink, gw, host } = setup({ hostLoopback: false });
    const syn = segment({ flags: TCP_SYN });
    const synIp = Buffer.from(syn.buf.subarray(syn.off + 14, syn.off + syn.len));
    gw.deliver(syn, 0);
    expect(host.dials).toHaveLength(0);
    expect(sink.sent).toHaveLength(1);
    const b = sink.sent[0].bytes;
    expect(b.readUInt16BE(12)).toBe(ETHERTYPE_IPV4);
    expect(b[14 + 9]).toBe(1); // ICMP
    expect(b.readUInt32BE(14 + 12)).toBe(GW);
    expect(b.readUInt32BE(14 + 16)).toBe(GUEST);
    expect([b[34], b[35]]).toEqual([3, 0]); // destination unreachable, net unreachable
    expect(checksum(b, 34, b.length - 34)).toBe(0);
    expect(b.subarray(42)).toEqual(synIp);
  });

  it('resets a segment that belongs to no connection (RFC 9293: seq = its ack)', () => {
    const { sink, gw } = setup();
    gw.deliver(segment({ flags: TCP_ACK, seq: 5, ack: 777_777 }), 0);
    expect(sink.sent).toHaveLength(1);
    const rst = tcpOf(sink.sent[0]);
    expect(rst.flags).toBe(TCP_RST);
    expect(rst.seq).toBe(777_777);
  });

  it("bounds one guest address's share of the flow table: a SYN beyond it gets a RST and no dial", () => {
    // 16 flows: one address may hold 16 - floor(16 / 8) = 14; the rest stays for other guests.
    const { sink, gw, nat, host } = setup({ tcpMaxFlows: 16 });
    for (let p = 0; p < 15; p++) gw.deliver(segment({ flags: TCP_SYN, srcPort: 40000 + p }), 0);
    expect(host.dials).toHaveLength(14);
    expect(nat.tcp.flowCount).toBe(14);
    expect(sink.sent).toHaveLength(1);
    expect(tcpOf(sink.sent[0]).flags & TCP_RST).toBeTruthy();
    expect(gw.counters.drops['tcp-guest-share-full']).toBe(1);
  });

  it('makes room in a full table by resetting the oldest flow still in its handshake (SYN flood)', () => {
    const { sink, gw, nat, host } = setup({ tcpMaxFlows: 16 });
    // 16 half-open flows from 16 addresses (no one address reaches its share): dialed, SYN-ACKed, never ACKed.
    for (let i = 0; i < 16; i++) gw.deliver(segment({ flags: TCP_SYN, src: GUEST + 1 + i, srcPort: 40000 + i }), 0);
    expect(host.dials).toHaveLength(16);
    for (let i = 1; i < 16; i++) nat.tcp.dialSucceeded(host.dials[i], 1); // the first stays a pending open
    nat.flush(1);
    sink.sent.length = 0;
    gw.deliver(segment({ flags: TCP_SYN, srcPort: 50000 }), 2);
    expect(host.dials).toHaveLength(17);
    expect(nat.tcp.flowCount).toBe(16);
    expect(nat.tcp.stats().drops['tcp-handshake-evicted']).toBe(1);
    expect(host.closed).toEqual([[host.dials[0], 'reset']]);
    // The next SYN takes the place of the oldest SYN-RECEIVED flow.
    gw.deliver(segment({ flags: TCP_SYN, srcPort: 50001 }), 3);
    expect(nat.tcp.flowCount).toBe(16);
    expect(host.closed.map(([f]) => f)).toEqual([host.dials[0], host.dials[1]]);
    expect(nat.tcp.stats().drops['tcp-handshake-evicted']).toBe(2);
  });

  it('never evicts an established flow: only the handshakes among them, else the SYN gets a RST', () => {
    const { sink, gw, nat, host } = setup({ tcpMaxFlows: 16 });
    // 16 flows from 16 addresses; all but the 9th complete their handshake.
    for (let i = 0; i < 16; i++) {
      gw.deliver(segment({ flags: TCP_SYN, src: GUEST + 1 + i, srcPort: 40000 + i }), i);
      nat.tcp.dialSucceeded(host.dials[i], i);
      nat.flush(i);
      if (i === 8) continue;
      const iss = tcpOf(sink.sent[sink.sent.length - 1]).seq;
      gw.deliver(segment({ flags: TCP_ACK, src: GUEST + 1 + i, srcPort: 40000 + i, seq: 1001, ack: (iss + 1) >>> 0 }), i);
      nat.flush(i);
    }
    expect(nat.tcp.flowCount).toBe(16);
    sink.sent.length = 0;
    // The oldest flows are established: the one still in SYN-RECEIVED makes room.
    gw.deliver(segment({ flags: TCP_SYN, srcPort: 50000 }), 20);
    expect(host.closed.map(([f]) => f)).toEqual([host.dials[8]]);
    expect(nat.tcp.stats().drops['tcp-handshake-evicted']).toBe(1);
    nat.tcp.dialSucceeded(host.dials[16], 21);
    const iss = tcpOf(sink.sent[sink.sent.length - 1]).seq;
    gw.deliver(segment({ flags: TCP_ACK, srcPort: 50000, seq: 1001, ack: (iss + 1) >>> 0 }), 21);
    nat.flush(21);
    sink.sent.length = 0;
    // Now every flow is established: a new SYN is refused with a RST and no dial.
    gw.deliver(segment({ flags: TCP_SYN, srcPort: 50001 }), 22);
    expect(host.dials).toHaveLength(17);
    expect(nat.tcp.flowCount).toBe(16);
    expect(sink.sent).toHaveLength(1);
    expect(tcpOf(sink.sent[0]).flags & TCP_RST).toBeTruthy();
    expect(gw.counters.drops['tcp-flow-table-full']).toBe(1);
    expect(nat.tcp.stats().drops['tcp-handshake-evicted']).toBe(1);
  });

  it('keeps working through connection churn that trims the handshake queue', () => {
    const { gw, nat, host } = setup({ tcpMaxFlows: 16 });
    for (let i = 0; i < 300; i++) {
      gw.deliver(segment({ flags: TCP_SYN, srcPort: 20000 + i }), i);
      nat.tcp.dialFailed(host.dials[i], 'ECONNREFUSED', i);
    }
    expect(host.dials).toHaveLength(300);
    expect(nat.tcp.flowCount).toBe(0);
    // The table fills again and still evicts the oldest handshake.
    for (let i = 0; i < 17; i++) gw.deliver(segment({ flags: TCP_SYN, src: GUEST + 1 + i, srcPort: 30000 + i }), 400);
    expect(nat.tcp.flowCount).toBe(16);
    expect(nat.tcp.stats().drops['tcp-handshake-evicted']).toBe(1);
  });

  it('drops a segment with a bad checksum and counts it', () => {
    const { sink, gw, host } = setup();
    const f = segment({ flags: TCP_SYN });
    f.buf[34 + 16] ^= 0xff;
    gw.deliver(f, 0);
    expect(host.dials).toHaveLength(0);
    expect(sink.sent).toHaveLength(0);
    expect(gw.counters.drops['tcp-bad-checksum']).toBe(1);
  });

  it('closes the flow when the dial succeeds but the guest resets, and reports it to the host side', () => {
    const { gw, nat, host } = setup();
    gw.deliver(segment({ flags: TCP_SYN }), 0);
    nat.tcp.dialSucceeded(host.dials[0], 1);
    gw.deliver(segment({ flags: TCP_RST, seq: 1001 }), 2);
    nat.flush(2);
    expect(host.closed.map(([, r]) => r)).toEqual(['reset']);
    expect(nat.tcp.flowCount).toBe(0);
  });
});

describe('TcpNat: the pending open (the guest SYN held while dialing)', () => {
  it('absorbs repeated SYNs and counts them; one with another sequence number is also a drop', () => {
    const { sink, gw, nat, host } = setup();
    gw.deliver(segment({ flags: TCP_SYN }), 0);
    gw.deliver(segment({ flags: TCP_SYN }), 1);
    gw.deliver(segment({ flags: TCP_SYN, seq: 5000 }), 2);
    nat.flush(2);
    expect(sink.sent).toHaveLength(0);
    expect(host.dials).toHaveLength(1);
    const st = nat.tcp.stats();
    expect(st.dupSynsWhileDialing).toBe(2);
    expect(st.drops['syn-while-dialing']).toBe(1);
    expect(st.engineDrops['syn-while-dialing'] ?? 0).toBe(0);
    nat.tcp.dialSucceeded(host.dials[0], 3);
    nat.flush(3);
    expect(sink.sent).toHaveLength(1);
    const synAck = tcpOf(sink.sent[0]);
    expect(synAck.flags).toBe(TCP_SYN | TCP_ACK);
    expect(synAck.ack).toBe(1001); // the first SYN's
  });

  it('answers from the held SYN: its options and window, not a later segment', () => {
    const { sink, gw, nat, host } = setup();
    gw.deliver(segment({ flags: TCP_SYN }), 0);
    gw.deliver(segment({ flags: TCP_ACK, seq: 1001, ack: 1 }), 1);
    nat.tcp.dialSucceeded(host.dials[0], 2);
    nat.flush(2);
    expect(sink.sent).toHaveLength(1);
    const synAck = tcpOf(sink.sent[0]);
    expect(synAck.options.mss).toBe(1460);
    expect(synAck.options.windowScale).toBeGreaterThanOrEqual(0); // the guest offered scaling (7)
    expect(synAck.options.sackPermitted).toBe(true);
    const flow = host.dials[0];
    expect(flow.conn.state).toBe('SYN-RECEIVED');
    expect(flow.conn.windowScaling.send).toBe(7);
    expect(flow.conn.sndWnd).toBe(64240);
  });

  it('drops a non-SYN segment while dialing, unanswered', () => {
    const { sink, gw, nat } = setup();
    gw.deliver(segment({ flags: TCP_SYN }), 0);
    gw.deliver(segment({ flags: TCP_ACK, seq: 1001, ack: 1, payload: 10 }), 1);
    nat.flush(1);
    expect(sink.sent).toHaveLength(0);
    expect(nat.tcp.stats().drops['dialing']).toBe(1);
    expect(nat.tcp.flowCount).toBe(1);
  });

  it('a RST from the guest at its SYN + 1 closes the flow as reset (the host side cancels the dial); another is dropped', () => {
    const { sink, gw, nat, host } = setup();
    gw.deliver(segment({ flags: TCP_SYN }), 0);
    gw.deliver(segment({ flags: TCP_RST, seq: 4242 }), 1);
    expect(nat.tcp.stats().drops['rst-out-of-window']).toBe(1);
    expect(host.closed).toHaveLength(0);
    gw.deliver(segment({ flags: TCP_RST, seq: 1001 }), 2);
    nat.flush(2);
    expect(sink.sent).toHaveLength(0);
    expect(host.closed.map(([, r]) => r)).toEqual(['reset']);
    expect(nat.tcp.flowCount).toBe(0);
    expect(nat.tcp.stats().closed.reset).toBe(1);
    // The dial ending later changes nothing.
    nat.tcp.dialSucceeded(host.dials[0], 3);
    nat.tcp.dialFailed(host.dials[0], 'ECONNREFUSED', 3);
    nat.flush(3);
    expect(sink.sent).toHaveLength(0);
  });

  it('a refused dial answers RST|ACK with seq 0 acknowledging the SYN, and nothing follows', () => {
    const { sink, gw, nat, host } = setup();
    gw.deliver(segment({ flags: TCP_SYN }), 0);
    nat.tcp.dialFailed(host.dials[0], 'ECONNREFUSED', 1);
    nat.tcp.dialSucceeded(host.dials[0], 1);
    nat.flush(1);
    expect(sink.sent).toHaveLength(1);
    const rst = tcpOf(sink.sent[0]);
    expect(rst.flags).toBe(TCP_RST | TCP_ACK);
    expect(rst.seq).toBe(0);
    expect(rst.ack).toBe(1001);
    expect(rst.srcPort).toBe(80);
    expect(rst.dstPort).toBe(40000);
    expect(tcpChecksumOk(sink.sent[0])).toBe(true);
    const st = nat.tcp.stats();
    expect(st.closed.refused).toBe(1);
    expect(st.dialFailures).toBe(1);
    expect(st.drops['dial-econnrefused']).toBe(1);
  });

  it('shutdown resets a pending open with RST|ACK', () => {
    const { sink, gw, nat, host } = setup();
    gw.deliver(segment({ flags: TCP_SYN }), 0);
    nat.tcp.abortAll(1);
    nat.flush(1);
    expect(sink.sent).toHaveLength(1);
    expect(tcpOf(sink.sent[0]).flags).toBe(TCP_RST | TCP_ACK);
    expect(host.closed.map(([, r]) => r)).toEqual(['reset']);
  });

  it("the runtime's idle-ring sweep passes over a pending open (it has no connection yet) and still frees an open one's rings", () => {
    const { gw, nat, host } = setup();
    gw.deliver(segment({ flags: TCP_SYN }), 0);
    gw.deliver(segment({ flags: TCP_SYN, srcPort: 40001 }), 0);
    nat.tcp.dialSucceeded(host.dials[1], 1);
    const flows = [...nat.tcp.liveFlows()];
    expect(flows.map((f) => f.syn !== null)).toEqual([true, false]);
    for (const f of flows) f.releaseIdleMemory(Infinity);
    expect(flows[1].conn.state).toBe('SYN-RECEIVED');
  });
});

describe('TcpNat: flow events', () => {
  it('reports a flow once when opened and once when closed, with its addresses and reason; nothing without events', () => {
    const { gw, nat, host } = setup();
    const seen: unknown[] = [];
    nat.setFlowEvents({
      opened: (proto, flow, inbound, gIp, gPort, rIp, rPort) => seen.push(['opened', proto, flow.id, inbound, nat.addrs.format(gIp), gPort, nat.addrs.format(rIp), rPort]),
      closed: (proto, flow, reason, fromGuest, toGuest) => seen.push(['closed', proto, flow.id, reason, fromGuest, toGuest]),
    });
    gw.deliver(segment({ flags: TCP_SYN }), 0);
    gw.deliver(segment({ flags: TCP_SYN }), 0);
    expect(seen).toHaveLength(1);
    const id = host.dials[0].id;
    expect(seen[0]).toEqual(['opened', 'tcp', id, false, '10.0.2.100', expect.any(Number), expect.any(String), expect.any(Number)]);
    nat.tcp.dialSucceeded(host.dials[0], 1);
    gw.deliver(segment({ flags: TCP_RST, seq: 1001 }), 2);
    nat.flush(2);
    expect(seen[1]).toEqual(['closed', 'tcp', id, 'reset', 0, 0]);
    nat.setFlowEvents(null);
    gw.deliver(segment({ flags: TCP_SYN, srcPort: 40001 }), 3);
    expect(seen).toHaveLength(2);
  });
});

describe('TcpNat: transactions', () => {
  /** A flow past the handshake: SYN at 0, dial done at 1, the guest's ACK at 2. Returns our ISS. */
  function established(over: Partial<StackOptions> = {}) {
    const s = setup(over);
    s.gw.deliver(segment({ flags: TCP_SYN }), 0);
    const flow = s.host.dials[0];
    s.nat.tcp.dialSucceeded(flow, 1);
    s.nat.flush(1);
    const iss = tcpOf(s.sink.sent[0]).seq;
    s.gw.deliver(segment({ flags: TCP_ACK, seq: 1001, ack: (iss + 1) >>> 0 }), 2);
    s.nat.flush(2);
    s.sink.sent.length = 0;
    return { ...s, flow, iss };
  }

  it('gives up a dial at dialTimeoutMs from the shared deadline queue: ICMP host unreachable, flow closed', () => {
    const { sink, gw, nat, host } = setup();
    nat.tcp.dialTimeoutMs = 500;
    gw.deliver(segment({ flags: TCP_SYN }), 0);
    expect(nat.tcp.pollAt()).toBe(500);
    nat.tcp.poll(499);
    expect(sink.sent).toHaveLength(0);
    nat.tcp.poll(500);
    expect(sink.sent).toHaveLength(1);
    expect(sink.sent[0].bytes[34]).toBe(3); // ICMP destination unreachable
    expect(sink.sent[0].bytes[35]).toBe(1); // host
    expect(host.closed.map(([, r]) => r)).toEqual(['reset']);
    expect(nat.tcp.flowCount).toBe(0);
    expect(nat.tcp.stats().drops['dial-etimedout']).toBe(1);
  });

  it('one poll handles at most TIMER_BATCH due flows and leaves the rest due, so the ports are read in between', () => {
    const { sink, gw, nat } = setup({ tcpMaxFlows: 1024 });
    nat.tcp.dialTimeoutMs = 500;
    const n = TIMER_BATCH + 44;
    for (let i = 0; i < n; i++) gw.deliver(segment({ flags: TCP_SYN, srcPort: 20_000 + i }), 0);
    expect(nat.tcp.flowCount).toBe(n);
    nat.tcp.poll(500);
    expect(sink.sent).toHaveLength(TIMER_BATCH);
    expect(nat.tcp.pollAt()).toBeLessThanOrEqual(500);
    nat.tcp.poll(501);
    expect(sink.sent).toHaveLength(n);
    expect(nat.tcp.flowCount).toBe(0);
    expect(nat.tcp.pollAt()).toBe(Infinity);
  });

  it('a dial that succeeds in time leaves no dial deadline behind', () => {
    const { nat, flow } = established();
    nat.tcp.dialTimeoutMs = 500;
    nat.tcp.poll(10_000);
    expect(flow.closed).toBe(false);
  });

  it('a small request is ACKed at the end of its batch (eager: see TcpNat.flush), the reply follows', () => {
    const { sink, gw, nat, flow, iss } = established();
    gw.deliver(segment({ flags: TCP_ACK, seq: 1001, ack: (iss + 1) >>> 0, payload: 100 }), 3);
    nat.flush(3);
    expect(sink.sent).toHaveLength(1);
    const ack = tcpOf(sink.sent[0]);
    expect(ack.ack).toBe(1101);
    expect(ack.payloadLength).toBe(0);
    expect(flow.conn.recvAvailable()).toBe(100);
    flow.conn.send(Buffer.alloc(100, 7), 0, 100, 4);
    nat.tcp.hostActivity(flow, 4);
    expect(sink.sent).toHaveLength(2);
    const reply = tcpOf(sink.sent[1]);
    expect(reply.ack).toBe(1101);
    expect(reply.payloadLength).toBe(100);
  });

  it('with ACKs held (busy polling), the reply carries the ACK of the request: one segment', () => {
    const { sink, gw, nat, flow, iss } = established();
    gw.deliver(segment({ flags: TCP_ACK, seq: 1001, ack: (iss + 1) >>> 0, payload: 100 }), 3);
    nat.flush(3, true);
    expect(sink.sent).toHaveLength(0);
    flow.conn.send(Buffer.alloc(100, 7), 0, 100, 3.02);
    nat.tcp.hostActivity(flow, 3.02);
    expect(sink.sent).toHaveLength(1);
    const reply = tcpOf(sink.sent[0]);
    expect(reply.ack).toBe(1101);
    expect(reply.payloadLength).toBe(100);
    // Nothing is left to send: neither at the end of the poll nor at the next flush.
    nat.flushHeldAcks(3.05);
    nat.flush(3.1);
    nat.tcp.poll(10);
    expect(sink.sent).toHaveLength(1);
  });

  it('a held ACK leaves when the busy poll ends with nothing, or with the next flush', () => {
    const { sink, gw, nat, iss } = established();
    gw.deliver(segment({ flags: TCP_ACK, seq: 1001, ack: (iss + 1) >>> 0, payload: 100 }), 3);
    nat.flush(3, true);
    expect(sink.sent).toHaveLength(0);
    nat.flushHeldAcks(3.05);
    expect(sink.sent).toHaveLength(1);
    expect(tcpOf(sink.sent[0]).ack).toBe(1101);
    expect(tcpOf(sink.sent[0]).payloadLength).toBe(0);

    // Held again; another event's flush (this flow untouched) sends it.
    gw.deliver(segment({ flags: TCP_ACK, seq: 1101, ack: (iss + 1) >>> 0, payload: 100 }), 4);
    nat.flush(4, true);
    expect(sink.sent).toHaveLength(1);
    nat.flush(4.01, true);
    expect(sink.sent).toHaveLength(2);
    expect(tcpOf(sink.sent[1]).ack).toBe(1201);
  });

  it('a bulk batch (two full segments) is ACKed at once even when ACKs are held', () => {
    const { sink, gw, nat, iss } = established();
    gw.deliver(segment({ flags: TCP_ACK, seq: 1001, ack: (iss + 1) >>> 0, payload: 1460 }), 3);
    gw.deliver(segment({ flags: TCP_ACK, seq: 2461, ack: (iss + 1) >>> 0, payload: 1460 }), 3);
    nat.flush(3, true);
    expect(sink.sent).toHaveLength(1);
    expect(tcpOf(sink.sent[0]).ack).toBe(1001 + 2 * 1460);
  });

  /** The guest's FIN at 3, its batch flushed (with ACKs held: and the busy poll over). */
  function guestFin(s: ReturnType<typeof established>, hold: boolean): void {
    s.gw.deliver(segment({ flags: TCP_ACK | 0x01, seq: 1001, ack: (s.iss + 1) >>> 0 }), 3);
    s.nat.flush(3, hold);
    if (hold) s.nat.flushHeldAcks(3.05);
    expect(s.flow.conn.state).toBe('CLOSE-WAIT');
  }

  /** The host closes at `at`: our FIN, acknowledging the guest's, is frame `index`. */
  function hostCloses(s: ReturnType<typeof established>, at: number, index: number): void {
    s.flow.conn.shutdownSend(at);
    s.nat.tcp.hostActivity(s.flow, at);
    expect(s.sink.sent).toHaveLength(index + 1);
    const fin = tcpOf(s.sink.sent[index]);
    expect(fin.flags & 0x01).toBeTruthy();
    expect(fin.ack).toBe(1002);
  }

  it("with ACKs held, the guest's FIN is ACKed by our FIN when the host closes, or by its timer", () => {
    const a = established();
    guestFin(a, true);
    expect(a.sink.sent).toHaveLength(0);
    hostCloses(a, 3.2, 0);

    // A host that does not close: the ACK leaves at the delayed-ACK deadline.
    const b = established();
    guestFin(b, true);
    expect(b.sink.sent).toHaveLength(0);
    const at = b.nat.tcp.pollAt();
    expect(at).toBeGreaterThan(3);
    expect(at).toBeLessThanOrEqual(3 + 1);
    b.nat.tcp.poll(at);
    expect(b.sink.sent).toHaveLength(1);
    expect(tcpOf(b.sink.sent[0]).ack).toBe(1002);
    expect(tcpOf(b.sink.sent[0]).flags & 0x01).toBe(0);
  });

  it('data the host side took is answered by the end-of-batch flush (hostTookData), not at once', () => {
    const { sink, gw, nat, flow, iss } = established();
    gw.deliver(segment({ flags: TCP_ACK, seq: 1001, ack: (iss + 1) >>> 0, payload: 100 }), 3);
    const r = flow.conn.recvPeek();
    expect(r.len).toBe(100);
    flow.conn.recvConsume(100, 3);
    nat.tcp.hostTookData(flow);
    expect(sink.sent).toHaveLength(0);
    nat.flush(3);
    expect(sink.sent).toHaveLength(1);
    expect(tcpOf(sink.sent[0]).ack).toBe(1101);
  });

  it("the guest's FIN is ACKed at the end of its batch, and our FIN follows when the host closes", () => {
    const s = established();
    const { sink, gw, nat, flow, iss } = s;
    guestFin(s, false);
    expect(sink.sent).toHaveLength(1);
    expect(tcpOf(sink.sent[0]).ack).toBe(1002);
    hostCloses(s, 4, 1);
    gw.deliver(segment({ flags: TCP_ACK, seq: 1002, ack: (iss + 2) >>> 0 }), 5);
    nat.flush(5);
    expect(flow.closed).toBe(true);
  });

  describe('the flow as a TcpStream (all the host side sees of it)', () => {
    it('guest -> host: readable bytes in place; consume opens the window, ACKed by the end-of-batch flush', () => {
      const { sink, gw, nat, flow, iss } = established();
      const stream: TcpStream = flow;
      gw.deliver(segment({ flags: TCP_ACK, seq: 1001, ack: (iss + 1) >>> 0, payload: 100 }), 3);
      expect(stream.readable()).toBe(100);
      const r = stream.peek();
      expect(r.len).toBe(100);
      stream.consume(60, 3);
      expect(stream.readable()).toBe(40);
      stream.consume(40, 3);
      expect(stream.readable()).toBe(0);
      expect(sink.sent).toHaveLength(0);
      nat.flush(3);
      expect(sink.sent).toHaveLength(1);
      expect(tcpOf(sink.sent[0]).ack).toBe(1101);
      expect(stream.guestFinished).toBe(false);
    });

    it('host -> guest: bytes committed into the writable region leave as one segment once pushed', () => {
      const { sink, flow, iss } = established();
      const stream: TcpStream = flow;
      const w = stream.writable();
      expect(w.len).toBeGreaterThanOrEqual(100);
      w.buf.fill(7, w.off, w.off + 100);
      stream.commit(100, 3);
      stream.pushed(3);
      expect(sink.sent).toHaveLength(1);
      const seg = tcpOf(sink.sent[0]);
      expect(seg.seq).toBe((iss + 1) >>> 0);
      expect(seg.payloadLength).toBe(100);
    });

    it("the guest's FIN shows as guestFinished; end() is the host's EOF: our FIN", () => {
      const s = established();
      const stream: TcpStream = s.flow;
      s.gw.deliver(segment({ flags: TCP_ACK | 0x01, seq: 1001, ack: (s.iss + 1) >>> 0 }), 3);
      s.nat.flush(3);
      expect(stream.guestFinished).toBe(true);
      expect(stream.readable()).toBe(0);
      s.sink.sent.length = 0;
      stream.end(4);
      expect(s.sink.sent).toHaveLength(1);
      expect(tcpOf(s.sink.sent[0]).flags & 0x01).toBeTruthy();
    });

    it('abort() resets the guest and closes the flow; later calls change nothing', () => {
      const { sink, flow, host } = established();
      const stream: TcpStream = flow;
      stream.abort(3);
      expect(stream.closed).toBe(true);
      expect(sink.sent).toHaveLength(1);
      expect(tcpOf(sink.sent[0]).flags & TCP_RST).toBeTruthy();
      expect(host.closed.map(([, r]) => r)).toEqual(['reset']);
      stream.end(4);
      stream.abort(4);
      stream.release();
      expect(sink.sent).toHaveLength(1);
    });
  });
});
