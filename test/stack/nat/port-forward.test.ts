/**
 * Port forwarding in the engine: host clients become flows towards the guest
 * from N+2, after ARP when the guest never spoke. A real gateway and NAT, a
 * fake host side, a sink recording what reaches the guest.
 */
import { describe, expect, it } from 'vitest';
import type { Frame, FrameSink, Port } from '../../../stack/frame.js';
import type { Gateway } from '../../../stack/gateway.js';
import type { StackOptions } from '../../../stack/stack.js';
import { GW_MAC, makeNat, NET } from './nat-fixture.js';
import { ARP_ATTEMPTS, ARP_RETRY_MS } from '../../../stack/ip/neighbors.js';
import { INBOUND_PORT_FIRST, type TcpFlow, type TcpHostEnv } from '../../../stack/nat/tcp-nat.js';
import type { UdpHostEnv } from '../../../stack/nat/udp-nat.js';
import type { UdpFlow } from '../../../stack/nat/udp-flows.js';
import type { TcpCloseReason } from '../../../stack/tcp/connection.js';
import { ArpRepr, ARP_OP_REPLY, ARP_OP_REQUEST } from '../../../stack/wire/arp.js';
import { pseudoHeaderSum4 } from '../../../stack/wire/checksum.js';
import { emitEthernetHeader, ETHERTYPE_ARP, ETHERTYPE_IPV4 } from '../../../stack/wire/ethernet.js';
import { emitIpv4Header, IP_PROTO_TCP, IP_PROTO_UDP } from '../../../stack/wire/ipv4.js';
import { TCP_ACK, TCP_RST, TCP_SYN, TcpOptions, TcpView, tcpChecksum, writeTcpHeader } from '../../../stack/wire/tcp.js';
import { fillUdpChecksum, writeUdpHeader } from '../../../stack/wire/udp.js';

const GW = NET + 2;
const GUEST = NET + 100;
const GUEST_MAC = 0x0200_0000_0064;
const CLIENT = 0x7f00_0001;

class Capture implements FrameSink {
  sent: Buffer[] = [];
  input(_from: Port, f: Frame): void {
    this.sent.push(Buffer.from(f.buf.subarray(f.off, f.off + f.len)));
  }
}

class FakeTcpHost implements TcpHostEnv {
  established: TcpFlow[] = [];
  closed: [TcpFlow, TcpCloseReason][] = [];
  dial(): void {}
  onReadable(): void {}
  onSendSpace(): void {}
  onClosed(flow: TcpFlow, reason: TcpCloseReason): void {
    this.closed.push([flow, reason]);
  }
  onEstablished(flow: TcpFlow): void {
    this.established.push(flow);
  }
}

class FakeUdpHost implements UdpHostEnv {
  toClient: [number, number, number, string][] = [];
  opened: UdpFlow[] = [];
  open(flow: UdpFlow): void {
    this.opened.push(flow);
  }
  send(): void {}
  close(): void {}
  sendDns(): void {}
  sendToClient(forwardId: number, clientIp: number, clientPort: number, buf: Buffer, off: number, len: number): void {
    this.toClient.push([forwardId, clientIp, clientPort, buf.toString('utf8', off, off + len)]);
  }
}

function setup(over: Partial<StackOptions> = {}) {
  const sink = new Capture();
  const { gw, nat, stack } = makeNat(sink, over);
  const tcpHost = new FakeTcpHost();
  const udpHost = new FakeUdpHost();
  nat.tcp.host = tcpHost;
  nat.udp.host = udpHost;
  return { sink, gw, nat, stack, tcpHost, udpHost };
}

function arpFrame(op: number, senderIp: number, targetIp: number, dstMac: number, targetMac = 0): Frame {
  const buf = Buffer.alloc(14 + 28);
  emitEthernetHeader(buf, 0, dstMac, GUEST_MAC, ETHERTYPE_ARP);
  const a = new ArpRepr();
  a.op = op;
  a.senderMac = GUEST_MAC;
  a.senderIp = senderIp;
  a.targetMac = targetMac;
  a.targetIp = targetIp;
  a.emitInto(buf, 14);
  return { buf, off: 0, len: buf.length, vnet: false };
}

function tcpFrame(o: { srcPort: number; dstPort: number; seq: number; ack: number; flags: number }): Frame {
  const opts = new TcpOptions();
  if (o.flags & TCP_SYN) opts.mss = 1460;
  const buf = Buffer.alloc(14 + 20 + 60);
  emitEthernetHeader(buf, 0, GW_MAC, GUEST_MAC, ETHERTYPE_IPV4);
  const tcpLen = writeTcpHeader(buf, 34, { ...o, window: 64240, urgent: 0 }, opts);
  emitIpv4Header(buf, 14, GUEST, GW, IP_PROTO_TCP, tcpLen, 64, 1, true);
  tcpChecksum(buf, pseudoHeaderSum4(GUEST, GW, IP_PROTO_TCP, tcpLen), 34, tcpLen);
  return { buf, off: 0, len: 34 + tcpLen, vnet: false };
}

function udpFrame(srcPort: number, dstPort: number, text: string): Frame {
  const payload = Buffer.from(text);
  const buf = Buffer.alloc(14 + 20 + 8 + payload.length);
  emitEthernetHeader(buf, 0, GW_MAC, GUEST_MAC, ETHERTYPE_IPV4);
  emitIpv4Header(buf, 14, GUEST, GW, IP_PROTO_UDP, 8 + payload.length, 64, 1, false);
  writeUdpHeader(buf, 34, srcPort, dstPort, payload.length);
  payload.copy(buf, 42);
  fillUdpChecksum(buf, 34, 8 + payload.length, GUEST, GW);
  return { buf, off: 0, len: buf.length, vnet: false };
}

function tcpOf(b: Buffer): TcpView {
  const v = new TcpView();
  expect(v.reset(b, 34, b.length - 34)).toBeNull();
  return v;
}

/** The guest says something first, so its MAC is known. */
function introduce(gw: Gateway): void {
  gw.deliver(arpFrame(ARP_OP_REQUEST, GUEST, GW, 0xffff_ffff_ffff), 0);
}

describe('inbound TCP (port forwards)', () => {
  it('ARPs for a silent guest, then sends the SYN from N+2 and reports the handshake', () => {
    const { sink, gw, nat, tcpHost } = setup();
    const results: (TcpFlow | null)[] = [];
    nat.inbound.connectTcp(GUEST, 80, null, (flow) => results.push(flow), 0);
    expect(results).toHaveLength(0);
    expect(sink.sent).toHaveLength(1);
    const arp = sink.sent[0];
    expect(arp.readUInt16BE(12)).toBe(ETHERTYPE_ARP);
    expect(arp.subarray(0, 6).equals(Buffer.alloc(6, 0xff))).toBe(true);
    const req = new ArpRepr();
    expect(req.parse(arp, 14, 28)).toBeNull();
    expect(req.op).toBe(ARP_OP_REQUEST);
    expect(req.senderIp).toBe(GW);
    expect(req.targetIp).toBe(GUEST);

    gw.deliver(arpFrame(ARP_OP_REPLY, GUEST, GW, GW_MAC, GW_MAC), 5);
    expect(results).toHaveLength(1);
    const flow = results[0]!;
    expect(flow.inbound).toBe(true);
    expect(sink.sent).toHaveLength(2);
    const syn = sink.sent[1];
    expect(syn.readUIntBE(0, 6)).toBe(GUEST_MAC);
    expect(syn.readUInt32BE(26)).toBe(GW);
    expect(syn.readUInt32BE(30)).toBe(GUEST);
    const t = tcpOf(syn);
    expect(t.flags & (TCP_SYN | TCP_ACK)).toBe(TCP_SYN);
    expect(t.srcPort).toBe(INBOUND_PORT_FIRST);
    expect(t.dstPort).toBe(80);

    gw.deliver(tcpFrame({ srcPort: 80, dstPort: t.srcPort, seq: 5000, ack: (t.seq + 1) >>> 0, flags: TCP_SYN | TCP_ACK }), 6);
    nat.flush(6);
    expect(tcpHost.established).toEqual([flow]);
    expect(flow.conn.state).toBe('ESTABLISHED');
    // The handshake's last ACK went to the guest.
    expect(tcpOf(sink.sent[sink.sent.length - 1]).flags & TCP_ACK).toBe(TCP_ACK);
  });

  it('a guest RST refuses the connection; the host hears onClosed(refused)', () => {
    const { sink, gw, nat, tcpHost } = setup();
    introduce(gw);
    let flow: TcpFlow | null = null;
    nat.inbound.connectTcp(GUEST, 81, null, (f) => (flow = f), 0);
    expect(flow).not.toBeNull();
    const t = tcpOf(sink.sent[sink.sent.length - 1]);
    gw.deliver(tcpFrame({ srcPort: 81, dstPort: t.srcPort, seq: 0, ack: (t.seq + 1) >>> 0, flags: TCP_RST | TCP_ACK }), 1);
    expect(tcpHost.closed).toEqual([[flow, 'refused']]);
    expect(nat.tcp.flowCount).toBe(0);
  });

  it('gives up after ARP_ATTEMPTS unanswered requests', () => {
    const { sink, nat, stack } = setup();
    const reasons: (string | null)[] = [];
    nat.inbound.connectTcp(GUEST, 80, null, (_f, r) => reasons.push(r), 0);
    for (let i = 1; i <= ARP_ATTEMPTS; i++) stack.poll(i * ARP_RETRY_MS);
    expect(sink.sent).toHaveLength(ARP_ATTEMPTS);
    expect(reasons).toEqual(['arp-failed']);
    expect(nat.inbound.stats().drops['arp-failed']).toBe(1);
  });

  it('never reuses the 4-tuple of a guest-initiated flow', () => {
    const { sink, gw, nat } = setup();
    // The guest dials N+2:49152 from its port 80: that 4-tuple is taken.
    gw.deliver(tcpFrame({ srcPort: 80, dstPort: INBOUND_PORT_FIRST, seq: 1, ack: 0, flags: TCP_SYN }), 0);
    nat.inbound.connectTcp(GUEST, 80, null, () => undefined, 1);
    expect(tcpOf(sink.sent[sink.sent.length - 1]).srcPort).toBe(INBOUND_PORT_FIRST + 1);
    nat.inbound.connectTcp(GUEST, 80, null, () => undefined, 2);
    expect(tcpOf(sink.sent[sink.sent.length - 1]).srcPort).toBe(INBOUND_PORT_FIRST + 2);
  });

  it('learns guests from gratuitous ARP', () => {
    const { gw, nat } = setup();
    gw.deliver(arpFrame(ARP_OP_REQUEST, GUEST, GUEST, 0xffff_ffff_ffff), 0);
    expect(nat.neighbors.lookup(GUEST)).toBe(GUEST_MAC);
  });
});

describe('inbound UDP (port forwards)', () => {
  it('maps each host client to its own N+2 port and routes replies back, even without host loopback', () => {
    const { sink, gw, nat, udpHost } = setup({ hostLoopback: false });
    introduce(gw);
    const before = sink.sent.length;
    const data = Buffer.from('hello');
    nat.inbound.sendUdp(1, CLIENT, 40000, GUEST, 9000, data, 0, data.length, 0);
    nat.inbound.sendUdp(1, CLIENT, 40001, GUEST, 9000, data, 0, data.length, 0);
    nat.inbound.sendUdp(1, CLIENT, 40000, GUEST, 9000, data, 0, data.length, 0);
    const out = sink.sent.slice(before);
    expect(out).toHaveLength(3);
    const srcPort = (b: Buffer) => b.readUInt16BE(34);
    expect(out[0].readUInt32BE(26)).toBe(GW);
    expect(out[0].readUInt16BE(36)).toBe(9000);
    expect(out[0].toString('utf8', 42)).toBe('hello');
    expect(srcPort(out[0])).toBe(INBOUND_PORT_FIRST);
    expect(srcPort(out[1])).toBe(INBOUND_PORT_FIRST + 1);
    expect(srcPort(out[2])).toBe(INBOUND_PORT_FIRST);

    gw.deliver(udpFrame(9000, INBOUND_PORT_FIRST + 1, 'pong'), 1);
    expect(udpHost.toClient).toEqual([[1, CLIENT, 40001, 'pong']]);
    expect(udpHost.opened).toHaveLength(0);

    // Once the forward is gone its flows are too: a reply is an ordinary (blocked) datagram to N+2.
    nat.udp.forwardRemoved(1);
    gw.deliver(udpFrame(9000, INBOUND_PORT_FIRST, 'late'), 2);
    expect(udpHost.toClient).toHaveLength(1);
  });

  it('answers a datagram to N+2 with host loopback off with ICMP net unreachable quoting it, as slirp4netns', () => {
    const { sink, gw, udpHost } = setup({ hostLoopback: false });
    introduce(gw);
    const before = sink.sent.length;
    const f = udpFrame(5555, 9999, 'x');
    const ip = Buffer.from(f.buf.subarray(14, f.len));
    gw.deliver(f, 0);
    const out = sink.sent.slice(before);
    expect(out).toHaveLength(1);
    expect(udpHost.opened).toHaveLength(0);
    const b = out[0];
    expect(b[14 + 9]).toBe(1);
    expect(b.readUInt32BE(26)).toBe(GW);
    expect([b[34], b[35]]).toEqual([3, 0]);
    expect(b.subarray(42)).toEqual(ip);
  });

  it('queues datagrams for a silent guest until ARP answers', () => {
    const { sink, gw, nat } = setup();
    const data = Buffer.from('x');
    nat.inbound.sendUdp(2, CLIENT, 5000, GUEST, 7, data, 0, 1, 0);
    nat.inbound.sendUdp(2, CLIENT, 5000, GUEST, 7, data, 0, 1, 0);
    expect(sink.sent.map((b) => b.readUInt16BE(12))).toEqual([ETHERTYPE_ARP]);
    gw.deliver(arpFrame(ARP_OP_REPLY, GUEST, GW, GW_MAC, GW_MAC), 1);
    expect(sink.sent.slice(1).map((b) => b.readUInt16BE(12))).toEqual([ETHERTYPE_IPV4, ETHERTYPE_IPV4]);
  });

  it('idle inbound flows expire like outbound ones', () => {
    const { gw, nat } = setup({ udpIdleTimeoutMs: 1000 });
    introduce(gw);
    const data = Buffer.from('x');
    nat.inbound.sendUdp(3, CLIENT, 6000, GUEST, 7, data, 0, 1, 0);
    expect(nat.udp.flows.size).toBe(1);
    nat.poll(1000);
    expect(nat.udp.flows.size).toBe(0);
  });
});
