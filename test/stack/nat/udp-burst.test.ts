/**
 * UDP bursts through the NAT: a guest USO super-frame goes to the host
 * socket whole with its segment size; a host GRO message goes to the guest
 * as one USO frame (when guests take USO) that segments back into the very
 * datagrams, or as separate datagrams when they do not.
 */
import { describe, expect, it } from 'vitest';
import type { Frame, FrameSink, Port } from '../../../stack/frame.js';
import type { UdpHostEnv } from '../../../stack/nat/udp-nat.js';
import type { UdpFlow } from '../../../stack/nat/udp-flows.js';
import { OffloadCompleter } from '../../../stack/offload.js';
import { checksum, pseudoHeaderSum4 } from '../../../stack/wire/checksum.js';
import { emitEthernetHeader, ETHERTYPE_IPV4 } from '../../../stack/wire/ethernet.js';
import { emitIpv4Header, IP_PROTO_UDP } from '../../../stack/wire/ipv4.js';
import { writeUdpHeader } from '../../../stack/wire/udp.js';
import {
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_UDP_L4,
  VIRTIO_NET_HDR_LEN,
  VnetHeaderView,
} from '../../../stack/wire/vnet.js';
import { GW_MAC, makeNat, NET } from './nat-fixture.js';

const GW = NET + 2;
const GUEST = NET + 100;
const GUEST_MAC = 0x0200_0000_0064;

class Capture implements FrameSink {
  frames: { bytes: Buffer; vnet: Buffer | null }[] = [];
  input(_from: Port, f: Frame): void {
    this.frames.push({
      bytes: Buffer.from(f.buf.subarray(f.off, f.off + f.len)),
      vnet: f.vnet ? Buffer.from(f.buf.subarray(f.off - VIRTIO_NET_HDR_LEN, f.off)) : null,
    });
  }
}

class FakeUdpHost implements UdpHostEnv {
  opened: UdpFlow[] = [];
  sent: { data: Buffer; gso: number }[] = [];
  open(flow: UdpFlow): void {
    this.opened.push(flow);
  }
  send(_flow: UdpFlow, buf: Buffer, off: number, len: number, gsoSize = 0): void {
    this.sent.push({ data: Buffer.from(buf.subarray(off, off + len)), gso: gsoSize });
  }
  close(): void {}
  sendDns(): void {}
  sendToClient(): void {}
}

function setup() {
  const sink = new Capture();
  const { gw, nat } = makeNat(sink);
  const host = new FakeUdpHost();
  nat.udp.host = host;
  return { sink, gw, nat, host };
}

/** `count` datagrams' payloads: datagram i is `size` bytes of i (the last one `last` bytes). */
function burst(count: number, size: number, last = size): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < count; i++) parts.push(Buffer.alloc(i === count - 1 ? last : size, i + 1));
  return Buffer.concat(parts);
}

/** A guest USO frame (as a tap with TUN_F_USO4 hands it over) to 10.0.2.2:dstPort. */
function usoFrame(payload: Buffer, seg: number, dstPort: number, dst = GW): Frame {
  const buf = Buffer.alloc(VIRTIO_NET_HDR_LEN + 14 + 20 + 8 + payload.length);
  const v = new VnetHeaderView().reset(buf, 0);
  v.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  v.gsoType = VIRTIO_NET_HDR_GSO_UDP_L4;
  v.gsoSize = seg;
  v.hdrLen = 14 + 20 + 8;
  v.csumStart = 14 + 20;
  v.csumOffset = 6;
  const e = VIRTIO_NET_HDR_LEN;
  emitEthernetHeader(buf, e, GW_MAC, GUEST_MAC, ETHERTYPE_IPV4);
  emitIpv4Header(buf, e + 14, GUEST, dst, IP_PROTO_UDP, 8 + payload.length, 64, 1, false);
  writeUdpHeader(buf, e + 34, 40000, dstPort, payload.length);
  payload.copy(buf, e + 42);
  return { buf, off: e, len: buf.length - e, vnet: true };
}

/** The datagrams a (maybe USO) frame stands for, each checked: IP and UDP lengths, a UDP checksum that verifies. */
function datagramsOf(f: { bytes: Buffer; vnet: Buffer | null }): Buffer[] {
  const out: Buffer[] = [];
  const check = (b: Buffer, partial: boolean) => {
    const udpLen = b.readUInt16BE(14 + 2) - 20;
    expect(b.readUInt16BE(34 + 4)).toBe(udpLen);
    if (!partial) expect(checksum(b, 34, udpLen, pseudoHeaderSum4(b.readUInt32BE(26), b.readUInt32BE(30), IP_PROTO_UDP, udpLen))).toBe(0);
    out.push(Buffer.from(b.subarray(42, 34 + udpLen)));
  };
  const v = f.vnet === null ? null : new VnetHeaderView().reset(f.vnet, 0);
  if (v === null || v.gsoType === VIRTIO_NET_HDR_GSO_NONE) {
    check(f.bytes, v !== null && (v.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0);
    return out;
  }
  // Let the offload completer (the bridge's software segmentation) cut it, as a tap would.
  const buf = Buffer.concat([f.vnet!, f.bytes]);
  const completer = new OffloadCompleter();
  const reason = completer.complete({ buf, off: VIRTIO_NET_HDR_LEN, len: f.bytes.length, vnet: true }, (s) =>
    check(Buffer.from(s.buf.subarray(s.off, s.off + s.len)), false),
  );
  expect(reason).toBeNull();
  return out;
}

describe('UDP bursts in the NAT', () => {
  it('hands a guest USO super-frame to the host socket whole, with its segment size', () => {
    const { gw, nat, host } = setup();
    const payload = burst(5, 1000, 300);
    gw.deliver(usoFrame(payload, 1000, 9000), 1);
    expect(host.opened).toHaveLength(1);
    expect(host.sent).toHaveLength(1);
    expect(host.sent[0].gso).toBe(1000);
    expect(host.sent[0].data.equals(payload)).toBe(true);
    const flow = host.opened[0];
    expect(flow.packetsOut).toBe(5);
    expect(flow.bytesOut).toBe(payload.length);
    expect(nat.udp.drops).toEqual({});
  });

  it('refuses a super-frame to the DNS forwarder, counted', () => {
    const { gw, nat, host } = setup();
    gw.deliver(usoFrame(burst(2, 100), 100, 53, NET + 3), 1);
    expect(host.sent).toHaveLength(0);
    expect(nat.udp.flows.size).toBe(0);
    expect(gw.counters.snapshot().drops).toMatchObject({ 'udp-gso-dns': 1 });
  });

  for (const uso of [true, false]) {
    it(`delivers a host GRO message to the guest ${uso ? 'as one USO frame' : 'datagram by datagram'}, the same datagrams in order`, () => {
      const { gw, nat, host, sink } = setup();
      nat.ipv4.uso = uso;
      gw.deliver(usoFrame(burst(1, 10), 10, 9000), 1); // opens the flow and teaches the NAT the guest's MAC
      const flow = host.opened[0];
      sink.frames.length = 0;
      const payload = burst(7, 1400, 512);
      const area = Buffer.concat([Buffer.alloc(100), payload]);
      nat.udp.fromHost(flow, area, 100, payload.length, 2, 1400);
      expect(sink.frames).toHaveLength(uso ? 1 : 7);
      if (uso) {
        const v = new VnetHeaderView().reset(sink.frames[0].vnet!, 0);
        expect(v.gsoType).toBe(VIRTIO_NET_HDR_GSO_UDP_L4);
        expect(v.gsoSize).toBe(1400);
        expect(v.hdrLen).toBe(14 + 20 + 8);
        expect(nat.ipv4.usoFrames).toBe(1);
      }
      const got = sink.frames.flatMap((f) => datagramsOf(f));
      expect(got).toHaveLength(7);
      for (let i = 0; i < 7; i++) expect(got[i].equals(Buffer.alloc(i === 6 ? 512 : 1400, i + 1))).toBe(true);
      expect(flow.packetsIn).toBe(7);
    });
  }

  it('builds a USO frame from datagrams the caller copies in place (hostBurstStart/End), the same datagrams in order', () => {
    const { gw, nat, host, sink } = setup();
    nat.ipv4.uso = true;
    gw.deliver(usoFrame(burst(1, 10), 10, 9000), 1);
    const flow = host.opened[0];
    sink.frames.length = 0;
    const payload = burst(5, 1000, 300);
    let at = nat.udp.hostBurstStart(flow, payload.length, 1000, 2);
    expect(at).toBeGreaterThanOrEqual(0);
    // Datagram by datagram, as from separate receive slots.
    for (let off = 0; off < payload.length; off += 1000) {
      const n = Math.min(1000, payload.length - off);
      payload.copy(nat.ipv4.out.arena, at, off, off + n);
      at += n;
    }
    nat.udp.hostBurstEnd(2);
    expect(sink.frames).toHaveLength(1);
    const got = datagramsOf(sink.frames[0]);
    expect(got).toHaveLength(5);
    for (let i = 0; i < 5; i++) expect(got[i].equals(Buffer.alloc(i === 4 ? 300 : 1000, i + 1))).toBe(true);
    expect(flow.packetsIn).toBe(5);
    expect(flow.bytesIn).toBe(payload.length);
    expect(nat.ipv4.usoFrames).toBe(1);
  });

  it('hostBurstStart declines (-1, nothing sent) where one USO frame cannot carry the burst', () => {
    const { gw, nat, host, sink } = setup();
    gw.deliver(usoFrame(burst(1, 10), 10, 9000), 1);
    const flow = host.opened[0];
    sink.frames.length = 0;
    nat.ipv4.uso = false;
    expect(nat.udp.hostBurstStart(flow, 3000, 1000, 2)).toBe(-1);
    nat.ipv4.uso = true;
    expect(nat.udp.hostBurstStart(flow, 3000, 1600, 2)).toBe(-1); // a segment above the MTU
    expect(nat.udp.hostBurstStart(flow, 1000, 1000, 2)).toBe(-1); // one datagram
    expect(sink.frames).toHaveLength(0);
    expect(flow.packetsIn).toBe(0);
  });

  it('sends a single datagram as a plain frame even when guests take USO', () => {
    const { gw, nat, host, sink } = setup();
    nat.ipv4.uso = true;
    gw.deliver(usoFrame(burst(1, 10), 10, 9000), 1);
    sink.frames.length = 0;
    const payload = Buffer.alloc(1400, 9);
    nat.udp.fromHost(host.opened[0], payload, 0, 1400, 2, 1400);
    expect(sink.frames).toHaveLength(1);
    expect(new VnetHeaderView().reset(sink.frames[0].vnet!, 0).gsoType).toBe(VIRTIO_NET_HDR_GSO_NONE);
    expect(datagramsOf(sink.frames[0])[0].equals(payload)).toBe(true);
  });
});
