import { beforeEach, describe, expect, it } from 'vitest';
import type { Frame, FrameSink, Port } from '../../stack/frame.js';
import type { DropReason } from '../../stack/drop-reasons.js';
import { Gateway } from '../../stack/gateway.js';
import { GUEST_OUTPUT_ARENA } from '../../stack/guest-output.js';
import type { IpHandler, IpPacket } from '../../stack/ip/ip-packet.js';
import { emitEthernetHeader, ETHERTYPE_IPV4 } from '../../stack/wire/ethernet.js';
import { emitIpv4Header, IP_PROTO_UDP } from '../../stack/wire/ipv4.js';
import { VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4 } from '../../stack/wire/vnet.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

const NETWORK = 0x0a000200; // 10.0.2.0/24
const GW_MAC = 0x52550a000202;
const CLIENT_MAC = 0x02000000000f;

// Frames captured from Linux on a veth pair: client 10.0.2.15 (02:00:00:00:00:0f),
// a Linux host at 10.0.2.2 with the gateway's MAC answering them.
const ARP_REQ_GW = hex('ffffffffffff02000000000f0806000108000604000102000000000f0a00020f0000000000000a000202');
const ARP_REPLY_GW_LINUX = hex('02000000000f52550a0002020806000108000604000252550a0002020a00020202000000000f0a00020f');
const ARP_REQ_DNS = hex('ffffffffffff02000000000f0806000108000604000102000000000f0a00020f0000000000000a000203');
const ECHO_REQ = hex(
  '52550a00020202000000000f08004500002c4a2e40004001d8920a00020f0a00020208005c690fa200012a05046b000000004f830e0000000000',
);
const ECHO_REQ_RR = hex(
  '52550a00020202000000000f08004f00004c4a2f400040019a530a00020f0a000202010727080a00020f' +
    '00'.repeat(32) +
    '0800dc4b0fa300010001020304050607',
);
const TCP_SYN = hex(
  '52550a00020202000000000f08004500003c587940004006a0590a00020f5db8d822cc420050e40e012000000000a002faf0' +
    '1f880000020405b40402080acf556a83000000000103030a',
);
// Hand-built (checksums computed independently): UDP 10.0.2.15:40000 -> 10.0.2.3:53 "hello".
const UDP_DNS = hex('52550a00020202000000000f08004500002112344000401110870a00020f0a0002039c400035000d077b68656c6c6f');

// Expected replies, computed independently: Linux's reply with the gateway's IP id (1),
// no options copied back, TTL 64, DF clear.
const ECHO_REPLY_1 = hex(
  '02000000000f52550a00020208004500002c00010000400162c00a0002020a00020f000064690fa200012a05046b000000004f830e0000000000',
);
const ECHO_REPLY_RR_1 = hex('02000000000f52550a00020208004500002400010000400162c80a0002020a00020f0000e44b0fa300010001020304050607');

interface Sent {
  from: Port;
  bytes: Buffer;
  vnet: boolean;
  frame: Frame;
}

/** A channel-style sink: records a copy of every frame the gateway emits. */
class Channel implements FrameSink {
  sent: Sent[] = [];
  input(from: Port, frame: Frame, _now: number): void {
    this.sent.push({ from, bytes: Buffer.from(frame.buf.subarray(frame.off, frame.off + frame.len)), vnet: frame.vnet, frame });
  }
  take(): Buffer[] {
    const out = this.sent.map((s) => s.bytes);
    this.sent = [];
    return out;
  }
}

function plain(bytes: Buffer, lead = 0): Frame {
  const buf = Buffer.alloc(lead + bytes.length + 7, 0xa5); // junk around the frame
  bytes.copy(buf, lead);
  return { buf, off: lead, len: bytes.length, vnet: false };
}

/** A frame preceded by a virtio-net header. */
function withVnet(bytes: Buffer, flags = 0, gsoType = 0, csumStart = 0, csumOffset = 0, gsoSize = 0): Frame {
  const buf = Buffer.alloc(10 + bytes.length);
  buf[0] = flags;
  buf[1] = gsoType;
  buf.writeUInt16LE(gsoSize, 4);
  buf.writeUInt16LE(csumStart, 6);
  buf.writeUInt16LE(csumOffset, 8);
  bytes.copy(buf, 10);
  return { buf, off: 10, len: bytes.length, vnet: true };
}

function mutate(bytes: Buffer, at: number, value: number): Buffer {
  const b = Buffer.from(bytes);
  b[at] = value;
  return b;
}

/** Recomputes the IPv4 header checksum of an Ethernet frame (a plain loop, independent of the code under test). */
function refreshIpChecksum(frame: Buffer): Buffer {
  const hl = (frame[14] & 0x0f) * 4;
  frame.writeUInt16BE(0, 24);
  let s = 0;
  for (let i = 14; i < 14 + hl; i += 2) s += frame.readUInt16BE(i);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  frame.writeUInt16BE(~s & 0xffff, 24);
  return frame;
}

/** Every frame in is either answered once or counted once. */
function expectBalanced(gw: Gateway): void {
  const c = gw.counters;
  const drops = Object.values(c.drops).reduce((a, b) => a + b, 0);
  expect(drops + c.txFrames).toBe(c.rxFrames);
}

describe('Gateway', () => {
  let ch: Channel;
  let gw: Gateway;

  beforeEach(() => {
    ch = new Channel();
    gw = new Gateway({ network: NETWORK, prefix: 24, mac: GW_MAC, mtu: 1500 }, ch);
  });

  it('exposes its addresses and port properties', () => {
    expect(gw.mac).toBe(GW_MAC);
    expect(gw.address).toBe(0x0a000202);
    expect(gw.dnsAddress).toBe(0x0a000203);
    expect(gw.broadcast).toBe(0x0a0002ff);
    expect(gw.vnet).toBe(true);
    expect(gw.name).toBe('gateway');
    expect(gw.out.arena.length).toBe(GUEST_OUTPUT_ARENA);
  });

  describe('ARP', () => {
    it('answers a request for the gateway exactly as Linux does', () => {
      gw.deliver(plain(ARP_REQ_GW, 3), 1);
      const [reply, ...rest] = ch.take();
      expect(rest).toEqual([]);
      expect(reply).toEqual(ARP_REPLY_GW_LINUX);
      expect(gw.stats().arpReplies).toBe(1);
      expectBalanced(gw);
    });

    it('answers a request for the DNS address with the gateway MAC', () => {
      gw.deliver(plain(ARP_REQ_DNS), 1);
      const [reply] = ch.take();
      expect(reply).toEqual(hex('02000000000f52550a0002020806000108000604000252550a0002020a00020302000000000f0a00020f'));
    });

    it('answers requests padded to the Ethernet minimum and unicast refreshes', () => {
      gw.deliver(plain(Buffer.concat([ARP_REQ_GW, Buffer.alloc(18)])), 1);
      const unicast = Buffer.from(ARP_REQ_GW);
      unicast.writeUIntBE(GW_MAC, 0, 6);
      gw.deliver(plain(unicast), 2);
      expect(ch.take()).toEqual([ARP_REPLY_GW_LINUX, ARP_REPLY_GW_LINUX]);
    });

    it('ignores and counts ARP for other addresses and ARP replies', () => {
      gw.deliver(plain(mutate(ARP_REQ_GW, 41, 100)), 1); // who-has 10.0.2.100
      gw.deliver(plain(mutate(ARP_REQ_GW, 21, 2)), 1); // a reply
      expect(ch.take()).toEqual([]);
      expect(gw.stats().arpIgnored).toBe(2);
      expect(gw.counters.drops['arp-other-target']).toBe(1);
      expect(gw.counters.drops['arp-not-request']).toBe(1);
      expectBalanced(gw);
    });

    it('drops malformed ARP by reason', () => {
      gw.deliver(plain(ARP_REQ_GW.subarray(0, 40)), 1);
      gw.deliver(plain(mutate(ARP_REQ_GW, 15, 6)), 1); // htype 6
      gw.deliver(plain(mutate(ARP_REQ_GW, 22, 0xff)), 1); // multicast sender MAC
      expect(ch.take()).toEqual([]);
      expect(gw.counters.drops['arp-truncated']).toBe(1);
      expect(gw.counters.drops['arp-unsupported']).toBe(1);
      expect(gw.counters.drops['arp-bad-sender']).toBe(1);
      expectBalanced(gw);
    });
  });

  describe('ICMP echo', () => {
    it('answers a ping to the gateway with the same id, seq and data', () => {
      gw.deliver(plain(ECHO_REQ, 5), 1);
      expect(ch.take()).toEqual([ECHO_REPLY_1]);
      expect(gw.stats().echoReplies).toBe(1);
      // The IP id advances per datagram.
      gw.deliver(plain(ECHO_REQ), 2);
      const [second] = ch.take();
      expect(second.readUInt16BE(18)).toBe(2);
      expect(second.subarray(34)).toEqual(ECHO_REPLY_1.subarray(34));
      expectBalanced(gw);
    });

    it('answers a ping carrying IP options without copying them back', () => {
      gw.deliver(plain(ECHO_REQ_RR), 1);
      expect(ch.take()).toEqual([ECHO_REPLY_RR_1]);
    });

    it('answers a ping to the DNS address from the DNS address', () => {
      const req = Buffer.from(ECHO_REQ);
      req[33] = 3;
      gw.deliver(plain(refreshIpChecksum(req)), 1);
      const [reply] = ch.take();
      expect(reply.readUInt32BE(26)).toBe(0x0a000203);
      expect(reply.readUInt32BE(30)).toBe(0x0a00020f);
      expect(gw.stats().echoReplies).toBe(1);
    });

    it('ignores Ethernet padding after the datagram', () => {
      gw.deliver(plain(Buffer.concat([ECHO_REQ, Buffer.alloc(6, 0x77)])), 1);
      expect(ch.take()).toEqual([ECHO_REPLY_1]);
    });

    it('copies the TOS of the request', () => {
      const req = Buffer.from(ECHO_REQ);
      req[15] = 0x10;
      req.writeUInt16BE(0xd892 - 0x10, 24);
      gw.deliver(plain(req), 1);
      const [reply] = ch.take();
      expect(reply[15]).toBe(0x10);
      expect(reply.readUInt16BE(24)).toBe(0x62c0 - 0x10);
    });

    it('drops a request with a bad IPv4 header checksum', () => {
      gw.deliver(plain(mutate(ECHO_REQ, 25, 0x93)), 1);
      expect(ch.take()).toEqual([]);
      expect(gw.counters.drops['ipv4-bad-checksum']).toBe(1);
      expectBalanced(gw);
    });

    it('drops a request with a bad ICMP checksum', () => {
      gw.deliver(plain(mutate(ECHO_REQ, 37, 0x6a)), 1);
      // Corrupt data, checksum left as it was.
      gw.deliver(plain(mutate(ECHO_REQ, 50, 0xff)), 1);
      expect(ch.take()).toEqual([]);
      expect(gw.counters.drops['icmp-bad-checksum']).toBe(2);
      expectBalanced(gw);
    });

    it('drops a request too big for the transmit MTU', () => {
      const small = new Gateway({ network: NETWORK, prefix: 24, mac: GW_MAC, mtu: 68 }, ch);
      const data = Buffer.alloc(60, 1);
      const frame = Buffer.alloc(14 + 20 + 8 + data.length);
      emitEthernetHeader(frame, 0, GW_MAC, CLIENT_MAC, ETHERTYPE_IPV4);
      emitIpv4Header(frame, 14, 0x0a00020f, 0x0a000202, 1, 8 + data.length, 64, 7, false);
      frame[34] = 8;
      data.copy(frame, 42);
      frame.writeUInt16BE(0, 36);
      let s = 0;
      for (let i = 34; i < frame.length; i += 2) s += frame.readUInt16BE(i);
      while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
      frame.writeUInt16BE(~s & 0xffff, 36);
      small.deliver(plain(frame), 1);
      expect(ch.take()).toEqual([]);
      expect(small.counters.drops['icmp-echo-too-big']).toBe(1);
      gw.deliver(plain(frame), 1);
      expect(ch.take()).toHaveLength(1);
    });

    it('ignores broadcast and multicast pings (like Linux icmp_echo_ignore_broadcasts)', () => {
      for (const dst of [0x0a0002ff, 0xffffffff, 0xe0000001]) {
        const req = Buffer.from(ECHO_REQ);
        req.writeUIntBE(0xffffffffffff, 0, 6);
        req.writeUInt32BE(dst, 30);
        refreshIpChecksum(req);
        gw.deliver(plain(req), 1);
      }
      expect(ch.take()).toEqual([]);
      expect(gw.counters.drops['icmp-echo-broadcast']).toBe(3);
      expectBalanced(gw);
    });

    it('drops unicast IP inside an Ethernet broadcast', () => {
      gw.deliver(plain(Buffer.concat([hex('ffffffffffff'), ECHO_REQ.subarray(6)])), 1);
      expect(ch.take()).toEqual([]);
      expect(gw.counters.drops['ipv4-unicast-in-l2-multicast']).toBe(1);
    });
  });

  describe('virtio-net frames', () => {
    it('answers a ping whose ICMP checksum is partial (NEEDS_CSUM) without verifying it', () => {
      const req = Buffer.from(ECHO_REQ);
      req.writeUInt16BE(0x1234, 36); // whatever the sender's kernel left there
      gw.deliver(withVnet(req, VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 34, 2), 1);
      expect(ch.take()).toEqual([ECHO_REPLY_1]);
      // Same bytes with a plain header: the checksum is verified and fails.
      gw.deliver(withVnet(req), 2);
      expect(ch.take()).toEqual([]);
      expect(gw.counters.drops['icmp-bad-checksum']).toBe(1);
      // DATA_VALID: the kernel vouches for it.
      gw.deliver(withVnet(req, VIRTIO_NET_HDR_F_DATA_VALID), 3);
      expect(ch.take()).toHaveLength(1);
      expectBalanced(gw);
    });

    it('handles ordinary vnet frames like plain ones and emits plain frames', () => {
      gw.deliver(withVnet(ARP_REQ_GW), 1);
      gw.deliver(withVnet(ECHO_REQ), 2);
      expect(ch.sent.map((s) => s.vnet)).toEqual([false, false]);
      expect(ch.take()).toEqual([ARP_REPLY_GW_LINUX, ECHO_REPLY_1]);
    });

    it('counts GSO super-frames as unhandled', () => {
      const syn = Buffer.from(TCP_SYN);
      syn.writeUInt16BE(0x4218, 50); // partial checksum, as captured
      gw.deliver(withVnet(syn, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, 34, 16, 1448), 1);
      expect(ch.take()).toEqual([]);
      expect(gw.stats().unhandled['unhandled-gso']).toBe(1);
    });

    it('drops a vnet frame with no room for the header', () => {
      gw.deliver({ buf: Buffer.from(ECHO_REQ), off: 0, len: ECHO_REQ.length, vnet: true }, 1);
      expect(gw.counters.drops['vnet-truncated']).toBe(1);
    });
  });

  describe('filtering and unhandled traffic', () => {
    it('silently ignores frames for other MACs', () => {
      gw.deliver(plain(Buffer.concat([hex('02000000000a'), ECHO_REQ.subarray(6)])), 1);
      expect(ch.take()).toEqual([]);
      expect(gw.stats().notForUs).toBe(1);
      expect(gw.counters.drops['not-for-us']).toBe(1);
    });

    it('counts what the NAT will handle, by reason', () => {
      gw.deliver(plain(TCP_SYN), 1);
      gw.deliver(plain(UDP_DNS), 1);
      const ping = Buffer.from(ECHO_REQ);
      ping.writeUInt32BE(0x08080808, 30); // ping 8.8.8.8: ICMP NAT
      refreshIpChecksum(ping);
      gw.deliver(plain(ping), 1);
      const frag = Buffer.from(UDP_DNS);
      frag[20] = 0x20; // MF set, DF cleared
      gw.deliver(plain(refreshIpChecksum(frag)), 1);
      gw.deliver(plain(refreshIpChecksum(mutate(UDP_DNS, 23, 132))), 1); // SCTP
      gw.deliver(plain(Buffer.concat([ECHO_REQ.subarray(0, 12), hex('86dd'), Buffer.alloc(40)])), 1);
      gw.deliver(plain(Buffer.concat([ECHO_REQ.subarray(0, 12), hex('8100 0002 0800'), ECHO_REQ.subarray(14)])), 1);
      expect(ch.take()).toEqual([]);
      expect(gw.stats().unhandled).toEqual({
        'unhandled-tcp': 1,
        'unhandled-udp': 1,
        'unhandled-icmp': 1,
        'unhandled-fragment': 1,
        'unhandled-ip-proto': 1,
        'unhandled-ipv6': 1,
        'unhandled-ethertype': 1,
      });
      expectBalanced(gw);
    });

    it('drops truncated and malformed frames without throwing', () => {
      gw.deliver(plain(ECHO_REQ.subarray(0, 10)), 1);
      gw.deliver(plain(ECHO_REQ.subarray(0, 30)), 1);
      gw.deliver(plain(mutate(ECHO_REQ, 14, 0x65)), 1);
      gw.deliver(plain(mutate(ECHO_REQ, 6, 0x03)), 1); // multicast source MAC
      gw.deliver({ buf: Buffer.from(ECHO_REQ), off: 10, len: ECHO_REQ.length, vnet: false }, 1); // past the end
      const src = Buffer.from(ECHO_REQ);
      src.writeUInt32BE(0xe0000001, 26); // multicast source address
      gw.deliver(plain(src), 1);
      expect(ch.take()).toEqual([]);
      const d = gw.counters.drops;
      expect(d['eth-truncated']).toBe(2);
      expect(d['ipv4-truncated']).toBe(1);
      expect(d['ipv4-bad-version']).toBe(1);
      expect(d['eth-src-multicast']).toBe(1);
      expect(d['ipv4-bad-checksum']).toBe(1); // the source edit broke the header checksum first
      expectBalanced(gw);
    });
  });

  describe('handlers and transmit path', () => {
    it('hands datagrams to a plugged-in handler and counts the reasons it returns', () => {
      const seen: { toGateway: boolean; toBroadcast: boolean; partial: boolean; dst: number; proto: number }[] = [];
      let verdict: DropReason | null = null;
      const udp: IpHandler = {
        handleIp(pkt: IpPacket): DropReason | null {
          seen.push({
            toGateway: pkt.toGateway,
            toBroadcast: pkt.toBroadcast,
            partial: pkt.l4ChecksumPartial,
            dst: pkt.dst,
            proto: pkt.protocol,
          });
          return verdict;
        },
      };
      gw.setIpv4Handler(IP_PROTO_UDP, udp);
      gw.deliver(plain(UDP_DNS), 1);
      verdict = 'udp-flow-table-full';
      gw.deliver(withVnet(UDP_DNS, VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 34, 6), 1);
      expect(seen).toEqual([
        { toGateway: true, toBroadcast: false, partial: false, dst: 0x0a000203, proto: 17 },
        { toGateway: true, toBroadcast: false, partial: true, dst: 0x0a000203, proto: 17 },
      ]);
      expect(gw.counters.drops['udp-flow-table-full']).toBe(1);
      expect(gw.stats().unhandled).toEqual({});
      gw.setIpv4Handler(IP_PROTO_UDP, null);
      gw.deliver(plain(UDP_DNS), 1);
      expect(gw.stats().unhandled['unhandled-udp']).toBe(1);
      expect(() => gw.setIpv4Handler(256, udp)).toThrow(RangeError);
    });

    it('gives GSO frames to a handler when one is plugged in', () => {
      let gso = -1;
      gw.setIpv4Handler(6, {
        handleIp(pkt) {
          gso = pkt.gsoSize;
          return null;
        },
      });
      gw.deliver(withVnet(TCP_SYN, VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_TCPV4, 34, 16, 1448), 1);
      expect(gso).toBe(1448);
    });

    it('reuses one Frame object and one arena, draining the ports before it wraps', () => {
      let drains = 0;
      const offs: number[] = [];
      const sink: FrameSink = {
        input(from, frame, now) {
          offs.push(frame.off);
          ch.input(from, frame, now);
        },
      };
      const ring = new Gateway({ network: NETWORK, prefix: 24, mac: GW_MAC, mtu: 1500, txArenaBytes: 1 }, sink, () => drains++);
      // Each reply reserves vnet header + mtu + 14 bytes and gives back what it did not use; the smallest arena holds two 64 KiB frames.
      let n = 0;
      while (drains === 0) ring.deliver(plain(ARP_REQ_GW), n++);
      const [a, b] = ch.sent;
      const c = ch.sent[ch.sent.length - 1];
      expect(a.frame).toBe(b.frame);
      expect(b.frame).toBe(c.frame);
      expect(a.from).toBe(ring);
      expect(a.frame.buf).toBe(ring.out.arena);
      expect(a.frame.vnet).toBe(false);
      expect(offs[0]).toBe(10); // room for a virtio-net header
      expect(offs[1]).toBeGreaterThanOrEqual(offs[0] + ARP_REPLY_GW_LINUX.length);
      expect(offs[offs.length - 1]).toBe(10); // wrapped, after the drain
      expect(new Set(offs.slice(0, -1)).size).toBe(offs.length - 1); // no slot reused before the wrap
    });

    it('keeps port counters', () => {
      gw.deliver(plain(ARP_REQ_GW), 1);
      gw.deliver(plain(ECHO_REQ), 1);
      gw.deliver(plain(TCP_SYN), 1);
      gw.flush(1);
      const s = gw.counters.snapshot();
      expect(s.rxFrames).toBe(3);
      expect(s.rxBytes).toBe(ARP_REQ_GW.length + ECHO_REQ.length + TCP_SYN.length);
      expect(s.txFrames).toBe(2);
      expect(s.txBytes).toBe(ARP_REPLY_GW_LINUX.length + ECHO_REPLY_1.length);
      expect(s.drops).toEqual({ 'unhandled-tcp': 1 });
    });
  });

  it('refuses impossible configurations', () => {
    const mk = (o: Partial<{ network: number; prefix: number; mac: number; mtu: number; txArenaBytes: number }>) => () =>
      new Gateway({ network: NETWORK, prefix: 24, mac: GW_MAC, mtu: 1500, ...o }, ch);
    expect(mk({ prefix: 30 })).toThrow(/prefix/);
    expect(mk({ network: 0x0a000201 })).toThrow(/host bits/);
    expect(mk({ mac: 0xffffffffffff })).toThrow(/unicast/);
    expect(mk({ mtu: 67 })).toThrow(/MTU/);
    expect(mk({ txArenaBytes: 0 })).toThrow(/arena/);
    expect(mk({ prefix: 29, network: 0x0a0002f8 })).not.toThrow();
  });
});
