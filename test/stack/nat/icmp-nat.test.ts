// The ICMP echo NAT through a real Gateway and Nat (IPv6 router included),
// with a fake ping-socket host: ICMPv6 echo out, replies back with the
// guest's identifier and a checksum over the pseudo-header, errors quoting
// the guest's request, and address references released when flows expire.
import { describe, expect, it } from 'vitest';
import type { Frame, FrameSink, Port } from '../../../stack/frame.js';
import type { IcmpHostEnv } from '../../../stack/nat/icmp-nat.js';
import type { IcmpFlow } from '../../../stack/nat/icmp-flows.js';
import type { StackOptions } from '../../../stack/stack.js';
import { GW_MAC, makeNat, NET } from './nat-fixture.js';
import { checksum, fold, sumBytes } from '../../../stack/wire/checksum.js';
import { emitEthernetHeader, ETHERTYPE_IPV4, ETHERTYPE_IPV6 } from '../../../stack/wire/ethernet.js';
import { emitIpv4Header, IP_PROTO_ICMP } from '../../../stack/wire/ipv4.js';
import { emitIpv6Header, IPV6_NH_ICMPV6 } from '../../../stack/wire/ipv6.js';
import { formatIpv6, parseIpv6 } from '../../../stack/wire/ipv6-address.js';
import { fillIcmpv6Checksum, Icmpv6View } from '../../../stack/wire/icmpv6.js';

const GUEST4 = NET + 100;
const GUEST_MAC = 0x0200_0000_0064;
const GUEST = parseIpv6('fd00::100')!;
const FAR = parseIpv6('fd99:1::5')!;
const FAR2 = parseIpv6('fd99:1::6')!;
const ROUTER = parseIpv6('fd99:1::1')!;
const GUEST_ID = 0x1234;
const SOCKET_ID = 0x4242;
/** fd00::2, fd00::3 and ::1 stay interned for the address map's lifetime. */
const PINNED = 3;

class Capture implements FrameSink {
  sent: Buffer[] = [];
  input(_from: Port, f: Frame): void {
    this.sent.push(Buffer.from(f.buf.subarray(f.off, f.off + f.len)));
  }
}

class FakeIcmpHost implements IcmpHostEnv {
  opened: IcmpFlow[] = [];
  closed: IcmpFlow[] = [];
  sent: { flow: IcmpFlow; bytes: Buffer; ttl: number }[] = [];
  open(flow: IcmpFlow): void {
    this.opened.push(flow);
  }
  send(flow: IcmpFlow, buf: Buffer, off: number, len: number, ttl: number): void {
    this.sent.push({ flow, bytes: Buffer.from(buf.subarray(off, off + len)), ttl });
  }
  close(flow: IcmpFlow): void {
    this.closed.push(flow);
  }
}

function setup(over: Partial<StackOptions> = {}) {
  const sink = new Capture();
  const { gw, nat } = makeNat(sink, { ipv6Prefix: 'fd00::/64', ...over });
  const host = new FakeIcmpHost();
  nat.icmp.host = host;
  return { sink, gw, nat, host };
}

/** An ICMPv6 message from the guest in an Ethernet frame; `type` 128 is an echo request. */
function icmp6Frame(o: { src?: Uint8Array; dst?: Uint8Array; hop?: number; type?: number; id?: number; seq?: number; payload?: string; badChecksum?: boolean }): Frame {
  const payload = Buffer.from(o.payload ?? 'usernet ping6');
  const len = 8 + payload.length;
  const buf = Buffer.alloc(14 + 40 + len);
  emitEthernetHeader(buf, 0, GW_MAC, GUEST_MAC, ETHERTYPE_IPV6);
  emitIpv6Header(buf, 14, o.src ?? GUEST, 0, o.dst ?? FAR, 0, IPV6_NH_ICMPV6, len, o.hop ?? 64);
  buf[54] = o.type ?? 128;
  buf.writeUInt16BE(o.id ?? GUEST_ID, 58);
  buf.writeUInt16BE(o.seq ?? 1, 60);
  payload.copy(buf, 62);
  fillIcmpv6Checksum(buf, 54, len, buf, 22, 38);
  if (o.badChecksum) buf[56] ^= 0xff;
  return { buf, off: 0, len: buf.length, vnet: false };
}

/** What the kernel would give back for a request: the same message as a reply, with the socket's id and its own checksum. */
function kernelReply(request: Buffer): Buffer {
  const r = Buffer.from(request);
  r[0] = 129;
  r.writeUInt16BE(SOCKET_ID, 4);
  r.writeUInt16BE(0xdead, 2);
  return r;
}

/** The request as the kernel sent it and quotes it back in an error: the socket's id. */
function kernelQuote(request: Buffer): Buffer {
  const q = Buffer.from(request);
  q.writeUInt16BE(SOCKET_ID, 4);
  q.writeUInt16BE(0xbeef, 2);
  return q;
}

/** Independent oracle: the ICMPv6 checksum over the pseudo-header, summed by hand. */
function icmp6ChecksumOk(pkt: Buffer, ipOff: number): boolean {
  const len = pkt.readUInt16BE(ipOff + 4);
  let sum = 0;
  for (let i = 8; i < 40; i += 2) sum += pkt.readUInt16BE(ipOff + i);
  sum += len + IPV6_NH_ICMPV6;
  return fold(sumBytes(pkt, ipOff + 40, len, sum)) === 0xffff;
}

function echoOut(env: ReturnType<typeof setup>, o: Parameters<typeof icmp6Frame>[0] = {}, now = 0) {
  env.gw.deliver(icmp6Frame(o), now);
  return env.host.sent[env.host.sent.length - 1];
}

describe('ICMPv6 echo NAT', () => {
  it('sends a guest echo request to another address out through a ping socket with one hop less', () => {
    const env = setup();
    const frame = icmp6Frame({ seq: 7 });
    env.gw.deliver(frame, 0);
    expect(env.gw.counters.drops).toEqual({});
    expect(env.host.opened).toHaveLength(1);
    const flow = env.host.opened[0];
    expect(env.nat.addrs.format(flow.guestIp)).toBe('fd00::100');
    expect(env.nat.addrs.format(flow.dstIp)).toBe('fd99:1::5');
    expect(env.nat.addrs.format(flow.hostIp)).toBe('fd99:1::5');
    expect(flow.guestIdent).toBe(GUEST_ID);
    expect(env.host.sent).toHaveLength(1);
    expect(env.host.sent[0].ttl).toBe(63);
    expect(env.host.sent[0].bytes).toEqual(frame.buf.subarray(54));
    expect(env.nat.icmp.echoesOut).toBe(1);
    // A second echo of the same flow reuses it: no new socket.
    echoOut(env, { seq: 8 }, 10);
    expect(env.host.opened).toHaveLength(1);
    expect(env.host.sent).toHaveLength(2);
    expect(env.nat.icmp.flows.size).toBe(1);
    // The guest and the destination are interned (one reference each, held by the flow).
    expect(env.nat.addrs.size).toBe(PINNED + 2);
  });

  it('gives a reply back with the guest identifier and a checksum over the pseudo-header', () => {
    const env = setup();
    const out = echoOut(env, { seq: 9, payload: 'reply me' });
    env.sink.sent.length = 0;
    const reply = kernelReply(out.bytes);
    env.nat.icmp.reply(out.flow, reply, 0, reply.length, 5);
    expect(env.sink.sent).toHaveLength(1);
    const f = env.sink.sent[0];
    expect(f.readUInt16BE(12)).toBe(ETHERTYPE_IPV6);
    expect(f.readUIntBE(0, 6)).toBe(GUEST_MAC);
    expect(f[20]).toBe(IPV6_NH_ICMPV6);
    expect(formatIpv6(f, 22)).toBe('fd99:1::5');
    expect(formatIpv6(f, 38)).toBe('fd00::100');
    const v = new Icmpv6View();
    expect(v.reset(f, 54, f.length - 54)).toBeNull();
    expect(v.type).toBe(129);
    expect(v.identifier).toBe(GUEST_ID);
    expect(v.sequence).toBe(9);
    expect(f.toString('utf8', 62)).toBe('reply me');
    expect(v.checksumOk(f, 22, 38)).toBe(true);
    expect(icmp6ChecksumOk(f, 14)).toBe(true);
    // Without the pseudo-header it would not verify: the checksum really covers it.
    expect(checksum(f, 54, f.length - 54)).not.toBe(0);
    expect(env.nat.icmp.repliesIn).toBe(1);
  });

  it('answers a guest that still uses its link-local source (global address tentative)', () => {
    const env = setup();
    const out = echoOut(env, { src: parseIpv6('fe80::1')! });
    expect(env.nat.addrs.format(out.flow.guestIp)).toBe('fe80::1');
    env.sink.sent.length = 0;
    const reply = kernelReply(out.bytes);
    env.nat.icmp.reply(out.flow, reply, 0, reply.length, 1);
    expect(env.sink.sent).toHaveLength(1);
    expect(formatIpv6(env.sink.sent[0], 38)).toBe('fe80::1');
    expect(icmp6ChecksumOk(env.sink.sent[0], 14)).toBe(true);
  });

  it('drops what it must not forward, each with its reason', () => {
    const env = setup();
    env.gw.deliver(icmp6Frame({ hop: 1 }), 0);
    env.gw.deliver(icmp6Frame({ badChecksum: true }), 0);
    // Destination unreachable, and an unknown informational type, from the guest: nowhere to go.
    env.gw.deliver(icmp6Frame({ type: 1 }), 0);
    env.gw.deliver(icmp6Frame({ type: 200 }), 0);
    env.gw.deliver(icmp6Frame({ dst: parseIpv6('fe80::99')! }), 0);
    env.gw.deliver(icmp6Frame({ dst: parseIpv6('fd00::77')! }), 0);
    env.gw.deliver(icmp6Frame({ dst: parseIpv6('::1')! }), 0);
    expect(env.gw.counters.drops).toEqual({
      'icmp-ttl-expired': 1,
      'icmp-bad-checksum': 1,
      'icmpv6-not-echo': 2,
      'blocked-local': 2,
      'blocked-loopback': 1,
    });
    expect(env.host.opened).toHaveLength(0);
    expect(env.host.sent).toHaveLength(0);
    // Nothing dropped keeps an address.
    expect(env.nat.addrs.size).toBe(PINNED);
  });

  it('drops a malformed or foreign reply without sending anything', () => {
    const env = setup();
    const out = echoOut(env);
    env.sink.sent.length = 0;
    const notReply = kernelQuote(out.bytes);
    env.nat.icmp.reply(out.flow, notReply, 0, notReply.length, 1);
    env.nat.icmp.reply(out.flow, notReply, 0, 4, 1);
    expect(env.sink.sent).toHaveLength(0);
    expect(env.nat.icmp.drops).toEqual({ 'icmp-reply-malformed': 2 });
  });

  it('turns a hop limit exceeded from a router into an ICMPv6 error quoting the guest request', () => {
    const env = setup();
    const frame = icmp6Frame({ seq: 3, payload: 'traceroute probe' });
    env.gw.deliver(frame, 0);
    const out = env.host.sent[0];
    env.sink.sent.length = 0;
    const router = env.nat.addrs.acquire(ROUTER, 0);
    const quote = kernelQuote(out.bytes);
    env.nat.icmp.error(out.flow, 3, 0, router, 0, quote, 0, quote.length, 1);
    env.nat.addrs.release(router);
    expect(env.sink.sent).toHaveLength(1);
    const f = env.sink.sent[0];
    expect(f.readUInt16BE(12)).toBe(ETHERTYPE_IPV6);
    expect(formatIpv6(f, 22)).toBe('fd99:1::1');
    expect(formatIpv6(f, 38)).toBe('fd00::100');
    expect([f[54], f[55]]).toEqual([3, 0]);
    expect(icmp6ChecksumOk(f, 14)).toBe(true);
    // The quote is the guest's packet from its IPv6 header on: its addresses, its identifier, its checksum.
    const q = f.subarray(62);
    expect(q[0] >>> 4).toBe(6);
    expect(q[6]).toBe(IPV6_NH_ICMPV6);
    expect(q.readUInt16BE(4)).toBe(out.bytes.length);
    expect(formatIpv6(q, 8)).toBe('fd00::100');
    expect(formatIpv6(q, 24)).toBe('fd99:1::5');
    expect(q.subarray(40)).toEqual(frame.buf.subarray(54));
    expect(env.nat.icmp.errorsIn).toBe(1);
    expect(env.nat.addrs.size).toBe(PINNED + 2);
  });

  it('sends the destination own errors from the address the guest used, with packet-too-big MTU', () => {
    const env = setup();
    const out = echoOut(env, { payload: 'x'.repeat(1400) });
    env.sink.sent.length = 0;
    const quote = kernelQuote(out.bytes);
    // Offender unknown (0), then the destination itself.
    env.nat.icmp.error(out.flow, 1, 4, 0, 0, quote, 0, quote.length, 1);
    env.nat.icmp.error(out.flow, 2, 0, out.flow.hostIp, 1280, quote, 0, quote.length, 1);
    expect(env.sink.sent).toHaveLength(2);
    for (const f of env.sink.sent) {
      expect(formatIpv6(f, 22)).toBe('fd99:1::5');
      expect(icmp6ChecksumOk(f, 14)).toBe(true);
      // Cut to the IPv6 minimum MTU.
      expect(f.length - 14).toBe(1280);
    }
    expect([env.sink.sent[0][54], env.sink.sent[0][55]]).toEqual([1, 4]);
    expect(env.sink.sent[1][54]).toBe(2);
    expect(env.sink.sent[1].readUInt32BE(58)).toBe(1280);
    // The cut quote still carries the guest's identifier.
    expect(env.sink.sent[1].readUInt16BE(62 + 40 + 4)).toBe(GUEST_ID);
  });

  it('releases every address reference when flows expire', () => {
    const env = setup();
    echoOut(env, { dst: FAR }, 0);
    echoOut(env, { dst: FAR2 }, 0);
    echoOut(env, { dst: FAR2, id: 0x99 }, 0);
    expect(env.nat.icmp.flows.size).toBe(3);
    expect(env.nat.addrs.size).toBe(PINNED + 3);
    expect(env.nat.pollAt()).toBeLessThanOrEqual(30_000);
    env.nat.poll(30_000);
    expect(env.nat.icmp.flows.size).toBe(0);
    expect(env.host.closed).toHaveLength(3);
    expect(env.nat.addrs.size).toBe(PINNED);
    // A flow removed by the runtime itself releases its addresses too.
    const out = echoOut(env, { dst: FAR }, 40_000);
    expect(env.nat.addrs.size).toBe(PINNED + 2);
    expect(env.nat.icmp.flows.remove(out.flow.id)).toBe(true);
    expect(env.nat.addrs.size).toBe(PINNED);
  });
});

describe('ICMP echo NAT over IPv4 on the same code', () => {
  function icmp4Frame(dst: number, ttl: number): Frame {
    const payload = Buffer.from('usernet ping');
    const len = 8 + payload.length;
    const buf = Buffer.alloc(14 + 20 + len);
    emitEthernetHeader(buf, 0, GW_MAC, GUEST_MAC, ETHERTYPE_IPV4);
    emitIpv4Header(buf, 14, GUEST4, dst, IP_PROTO_ICMP, len, ttl, 1, false);
    buf[34] = 8;
    buf.writeUInt16BE(GUEST_ID, 38);
    buf.writeUInt16BE(1, 40);
    payload.copy(buf, 42);
    const c = checksum(buf, 34, len);
    buf.writeUInt16BE(c, 36);
    return { buf, off: 0, len: buf.length, vnet: false };
  }

  it('sends, replies with the guest id and a valid checksum, and quotes errors', () => {
    const env = setup();
    const far = 0xc612_0005;
    env.gw.deliver(icmp4Frame(far, 64), 0);
    expect(env.host.sent).toHaveLength(1);
    const out = env.host.sent[0];
    expect(out.ttl).toBe(63);
    expect(out.flow.hostIp).toBe(far);
    env.sink.sent.length = 0;
    const reply = Buffer.from(out.bytes);
    reply[0] = 0;
    reply.writeUInt16BE(SOCKET_ID, 4);
    env.nat.icmp.reply(out.flow, reply, 0, reply.length, 1);
    const f = env.sink.sent[0];
    expect(f.readUInt16BE(12)).toBe(ETHERTYPE_IPV4);
    expect(f.readUInt32BE(26)).toBe(far);
    expect(f.readUInt16BE(38)).toBe(GUEST_ID);
    expect(checksum(f, 34, f.length - 34)).toBe(0);
    env.nat.icmp.error(out.flow, 11, 0, 0xc612_0001, 0, kernelQuote(out.bytes), 0, out.bytes.length, 2);
    const e = env.sink.sent[1];
    expect(e.readUInt32BE(26)).toBe(0xc612_0001);
    expect([e[34], e[35]]).toEqual([11, 0]);
    expect(e.readUInt16BE(42 + 20 + 4)).toBe(GUEST_ID);
    env.gw.deliver(icmp4Frame(far, 1), 0);
    expect(env.gw.counters.drops).toEqual({ 'icmp-ttl-expired': 1 });
  });
});
