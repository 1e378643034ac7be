import type { DropReason } from '../../stack/drop-reasons.js';
import { describe, expect, it } from 'vitest';
import type { Frame } from '../../stack/frame.js';
import { OffloadCompleter } from '../../stack/offload.js';
import {
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_ECN,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
  VIRTIO_NET_HDR_GSO_UDP,
  VIRTIO_NET_HDR_GSO_UDP_L4,
} from '../../stack/wire/vnet.js';
import {
  MAC_A,
  MAC_B,
  checksumsValid,
  ethernet,
  ipv4Partial,
  ipv6Partial,
  pattern,
  rd16,
  rd32,
  vnetHeader,
  type VnetFields,
} from '../helpers/channel-port.js';

const FIN = 0x01;
const PSH = 0x08;
const ACK = 0x10;
const CWR = 0x80;

/** Puts header + frame into one buffer the way a tap read slot holds them. */
function vnetFrame(header: Buffer, eth: Buffer): Frame {
  const buf = Buffer.concat([header, eth]);
  return { buf, off: 10, len: eth.length, vnet: true };
}

function run(c: OffloadCompleter, f: Frame): { reason: string | null; out: Buffer[]; frames: Frame[]; bufs: Buffer[] } {
  const out: Buffer[] = [];
  const frames: Frame[] = [];
  const bufs: Buffer[] = [];
  const reason = c.complete(f, (s) => {
    expect(s.vnet).toBe(false);
    out.push(Buffer.from(s.buf.subarray(s.off, s.off + s.len)));
    frames.push(s);
    bufs.push(s.buf);
  });
  return { reason, out, frames, bufs };
}

describe('OffloadCompleter: TCP segmentation', () => {
  // Timestamps option (NOP NOP TS) makes the TCP header 32 bytes.
  const tsOpt = Uint8Array.from([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]);

  it('cuts a TCPv4 super-frame into MSS segments with correct headers and checksums', () => {
    const payload = pattern(5000, 7);
    const seq0 = 0xffff_fc00; // wraps during the burst
    const { bytes: ip, l4Off } = ipv4Partial(
      { proto: 'tcp', payload, seq: seq0, flags: ACK | PSH | FIN | CWR, tcpOptions: tsOpt },
      { id: 0xfffe, ipOptions: Uint8Array.from([1, 1, 1, 0]) },
    );
    const eth = ethernet(MAC_B, MAC_A, 0x0800, ip);
    const hdrLen = 14 + l4Off + 32;
    const f = vnetFrame(
      vnetHeader({
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gsoType: VIRTIO_NET_HDR_GSO_TCPV4,
        hdrLen,
        gsoSize: 1448,
        csumStart: 14 + l4Off,
        csumOffset: 16,
      }),
      eth,
    );
    const before = Buffer.from(f.buf);
    const c = new OffloadCompleter();
    const { reason, out, frames } = run(c, f);
    expect(reason).toBeNull();
    expect(f.buf.equals(before)).toBe(true);
    expect(out.length).toBe(4);
    // One reused Frame object and one reused scratch buffer.
    expect(new Set(frames).size).toBe(1);

    const sizes = [1448, 1448, 1448, 5000 - 3 * 1448];
    const chunks: Buffer[] = [];
    out.forEach((seg, i) => {
      expect(seg.length).toBe(hdrLen + sizes[i]);
      // Everything before the IP header is unchanged.
      expect(seg.subarray(0, 14).equals(eth.subarray(0, 14))).toBe(true);
      expect(rd16(seg, 14 + 2)).toBe(seg.length - 14);
      expect(rd16(seg, 14 + 4)).toBe((0xfffe + i) & 0xffff);
      const tcp = 14 + l4Off;
      expect(rd32(seg, tcp + 4)).toBe((seq0 + i * 1448) >>> 0);
      const fl = seg[tcp + 13];
      expect((fl & ACK) !== 0).toBe(true);
      expect((fl & FIN) !== 0).toBe(i === 3);
      expect((fl & PSH) !== 0).toBe(i === 3);
      expect((fl & CWR) !== 0).toBe(i === 0);
      // The TCP options are copied into every segment.
      expect(seg.subarray(tcp + 20, tcp + 32).equals(Buffer.from(tsOpt))).toBe(true);
      expect(checksumsValid(seg)).toEqual({ ip: true, l4: true });
      chunks.push(seg.subarray(hdrLen));
    });
    expect(Buffer.concat(chunks).equals(payload)).toBe(true);
    expect(c.superFrames).toBe(1);
    expect(c.segments).toBe(4);
  });

  it('cuts a TCPv6 super-frame (ECN bit set) and fixes the payload length', () => {
    const payload = pattern(4000, 3);
    const { bytes: ip } = ipv6Partial({ proto: 'tcp', payload, seq: 77, flags: ACK | PSH });
    const eth = ethernet(MAC_B, MAC_A, 0x86dd, ip);
    const hdrLen = 14 + 40 + 20;
    const f = vnetFrame(
      vnetHeader({
        flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
        gsoType: VIRTIO_NET_HDR_GSO_TCPV6 | VIRTIO_NET_HDR_GSO_ECN,
        // Linux reports the skb's linear length: larger than the real headers.
        hdrLen: hdrLen + 100,
        gsoSize: 1000,
        csumStart: 54,
        csumOffset: 16,
      }),
      eth,
    );
    const { reason, out } = run(new OffloadCompleter(), f);
    expect(reason).toBeNull();
    expect(out.length).toBe(4);
    const chunks: Buffer[] = [];
    out.forEach((seg, i) => {
      expect(seg.length).toBe(hdrLen + 1000);
      expect(rd16(seg, 14 + 4)).toBe(1020);
      expect(rd32(seg, 54 + 4)).toBe(77 + i * 1000);
      expect((seg[54 + 13] & PSH) !== 0).toBe(i === 3);
      expect(checksumsValid(seg)).toEqual({ ip: true, l4: true });
      chunks.push(seg.subarray(hdrLen));
    });
    expect(Buffer.concat(chunks).equals(payload)).toBe(true);
  });

  it('handles a VLAN tag, a payload smaller than gsoSize, and an empty payload', () => {
    const { bytes: ip } = ipv4Partial({ proto: 'tcp', payload: pattern(100) });
    const tagged = Buffer.concat([Buffer.from([...MAC_B, ...MAC_A, 0x81, 0x00, 0x00, 0x05, 0x08, 0x00]), ip]);
    const hdr = vnetHeader({ flags: 1, gsoType: VIRTIO_NET_HDR_GSO_TCPV4, hdrLen: 58, gsoSize: 1448, csumStart: 38, csumOffset: 16 });
    const one = run(new OffloadCompleter(), vnetFrame(hdr, tagged));
    expect(one.reason).toBeNull();
    expect(one.out.length).toBe(1);
    expect(one.out[0].length).toBe(tagged.length);
    expect(checksumsValid(one.out[0])).toEqual({ ip: true, l4: true });

    const { bytes: ack } = ipv4Partial({ proto: 'tcp', payload: new Uint8Array(0), flags: ACK });
    const empty = run(
      new OffloadCompleter(),
      vnetFrame(vnetHeader({ flags: 1, gsoType: VIRTIO_NET_HDR_GSO_TCPV4, hdrLen: 54, gsoSize: 1448 }), ethernet(MAC_B, MAC_A, 0x0800, ack)),
    );
    expect(empty.reason).toBeNull();
    expect(empty.out.length).toBe(1);
    expect(checksumsValid(empty.out[0])).toEqual({ ip: true, l4: true });
  });

  it('an exact multiple of gsoSize gives full segments only', () => {
    const payload = pattern(3000);
    const { bytes: ip } = ipv4Partial({ proto: 'tcp', payload, flags: ACK | FIN });
    const f = vnetFrame(
      vnetHeader({ flags: 1, gsoType: VIRTIO_NET_HDR_GSO_TCPV4, hdrLen: 54, gsoSize: 1000, csumStart: 34, csumOffset: 16 }),
      ethernet(MAC_B, MAC_A, 0x0800, ip),
    );
    const { out } = run(new OffloadCompleter(), f);
    expect(out.map((s) => s.length)).toEqual([1054, 1054, 1054]);
    expect(out.map((s) => s[34 + 13] & FIN)).toEqual([0, 0, FIN]);
  });
});

describe('OffloadCompleter: UDP and checksum-only', () => {
  it('cuts a UDP_L4 super-frame: every datagram gets its own length and checksum', () => {
    const payload = pattern(3000, 9);
    const { bytes: ip } = ipv4Partial({ proto: 'udp', payload }, { id: 10 });
    const f = vnetFrame(
      vnetHeader({ flags: 1, gsoType: VIRTIO_NET_HDR_GSO_UDP_L4, hdrLen: 42, gsoSize: 1200, csumStart: 34, csumOffset: 6 }),
      ethernet(MAC_B, MAC_A, 0x0800, ip),
    );
    const { reason, out } = run(new OffloadCompleter(), f);
    expect(reason).toBeNull();
    expect(out.map((s) => s.length)).toEqual([42 + 1200, 42 + 1200, 42 + 600]);
    const chunks: Buffer[] = [];
    out.forEach((seg, i) => {
      expect(rd16(seg, 34 + 4)).toBe(seg.length - 34);
      expect(rd16(seg, 18)).toBe(10 + i);
      expect(checksumsValid(seg)).toEqual({ ip: true, l4: true });
      chunks.push(seg.subarray(42));
    });
    expect(Buffer.concat(chunks).equals(payload)).toBe(true);
  });

  it('UDP_L4 over IPv6', () => {
    const payload = pattern(2500, 5);
    const { bytes: ip } = ipv6Partial({ proto: 'udp', payload });
    const f = vnetFrame(
      vnetHeader({ flags: 1, gsoType: VIRTIO_NET_HDR_GSO_UDP_L4, hdrLen: 62, gsoSize: 1400, csumStart: 54, csumOffset: 6 }),
      ethernet(MAC_B, MAC_A, 0x86dd, ip),
    );
    const { reason, out } = run(new OffloadCompleter(), f);
    expect(reason).toBeNull();
    expect(out.length).toBe(2);
    for (const seg of out) {
      expect(rd16(seg, 14 + 4)).toBe(seg.length - 54);
      expect(rd16(seg, 54 + 4)).toBe(seg.length - 54);
      expect(checksumsValid(seg).l4).toBe(true);
    }
  });

  it('completes a partial checksum without GSO, leaving the input untouched', () => {
    const { bytes: ip } = ipv4Partial({ proto: 'udp', payload: pattern(333) });
    const eth = ethernet(MAC_B, MAC_A, 0x0800, ip);
    const f = vnetFrame(vnetHeader({ flags: VIRTIO_NET_HDR_F_NEEDS_CSUM, csumStart: 34, csumOffset: 6 }), eth);
    const before = Buffer.from(f.buf);
    const c = new OffloadCompleter();
    const { reason, out, bufs } = run(c, f);
    expect(reason).toBeNull();
    expect(out.length).toBe(1);
    expect(bufs[0]).not.toBe(f.buf);
    expect(out[0].length).toBe(eth.length);
    expect(checksumsValid(out[0])).toEqual({ ip: true, l4: true });
    // Only the checksum field differs.
    expect(out[0].subarray(0, 40).equals(eth.subarray(0, 40))).toBe(true);
    expect(out[0].subarray(42).equals(eth.subarray(42))).toBe(true);
    expect(f.buf.equals(before)).toBe(true);
    expect(c.checksumsCompleted).toBe(1);
  });

  it('keeps Ethernet padding out of the checksum', () => {
    const { bytes: ip } = ipv4Partial({ proto: 'tcp', payload: Uint8Array.from([1, 2]) });
    const padded = Buffer.concat([ethernet(MAC_B, MAC_A, 0x0800, ip), Buffer.from([0xaa, 0xbb, 0xcc])]);
    const { out } = run(new OffloadCompleter(), vnetFrame(vnetHeader({ flags: 1, csumStart: 34, csumOffset: 16 }), padded));
    expect(out[0].length).toBe(padded.length);
    expect(checksumsValid(out[0])).toEqual({ ip: true, l4: true });
  });

  it('passes a frame with nothing to complete through without a copy', () => {
    const eth = ethernet(MAC_B, MAC_A, 0x0806, pattern(28));
    const f = vnetFrame(vnetHeader({ gsoType: VIRTIO_NET_HDR_GSO_NONE }), eth);
    const { reason, out, bufs } = run(new OffloadCompleter(), f);
    expect(reason).toBeNull();
    expect(bufs[0]).toBe(f.buf);
    expect(out[0].equals(eth)).toBe(true);
  });
});

describe('OffloadCompleter: malformed input is dropped with a reason', () => {
  const payload = pattern(3000);
  const tcp4 = ethernet(MAC_B, MAC_A, 0x0800, ipv4Partial({ proto: 'tcp', payload }).bytes);
  const tcp6 = ethernet(MAC_B, MAC_A, 0x86dd, ipv6Partial({ proto: 'tcp', payload }).bytes);
  const gso4: VnetFields = { flags: 1, gsoType: VIRTIO_NET_HDR_GSO_TCPV4, hdrLen: 54, gsoSize: 1448, csumStart: 34, csumOffset: 16 };

  const cases: Array<[string, Frame, string]> = [
    ['gso size 0', vnetFrame(vnetHeader({ ...gso4, gsoSize: 0 }), tcp4), 'gso-size-zero'],
    ['hdrLen beyond frame', vnetFrame(vnetHeader({ ...gso4, hdrLen: 4000 }), tcp4), 'gso-hdr-len-beyond-frame'],
    ['ARP with GSO', vnetFrame(vnetHeader({ ...gso4, hdrLen: 0 }), ethernet(MAC_B, MAC_A, 0x0806, pattern(28))), 'gso-bad-ethertype'],
    ['TCPV4 on an IPv6 frame', vnetFrame(vnetHeader(gso4), tcp6), 'gso-bad-ethertype'],
    ['TCPV6 on an IPv4 frame', vnetFrame(vnetHeader({ ...gso4, gsoType: VIRTIO_NET_HDR_GSO_TCPV6 }), tcp4), 'gso-bad-ethertype'],
    ['UDP_L4 on a TCP packet', vnetFrame(vnetHeader({ ...gso4, gsoType: VIRTIO_NET_HDR_GSO_UDP_L4 }), tcp4), 'gso-bad-protocol'],
    ['truncated in the TCP header', vnetFrame(vnetHeader({ ...gso4, hdrLen: 0 }), tcp4.subarray(0, 44)), 'gso-truncated'],
    ['truncated in the IP header', vnetFrame(vnetHeader({ ...gso4, hdrLen: 0 }), tcp4.subarray(0, 20)), 'gso-truncated'],
    ['shorter than Ethernet', vnetFrame(vnetHeader({ ...gso4, hdrLen: 0 }), tcp4.subarray(0, 9)), 'gso-truncated'],
    ['UFO', vnetFrame(vnetHeader({ ...gso4, gsoType: VIRTIO_NET_HDR_GSO_UDP }), tcp4), 'ufo-unsupported'],
    ['unknown gso type', vnetFrame(vnetHeader({ ...gso4, gsoType: 9 }), tcp4), 'gso-unknown-type'],
    ['checksum field beyond the frame', vnetFrame(vnetHeader({ flags: 1, csumStart: 3040, csumOffset: 16 }), tcp4), 'csum-offset-beyond-frame'],
    ['no room for the header', { buf: Buffer.from(tcp4), off: 0, len: tcp4.length, vnet: true }, 'vnet-bad-frame'],
  ];

  for (const [name, frame, reason] of cases) {
    it(name, () => {
      const c = new OffloadCompleter();
      const r = run(c, frame);
      expect(r.reason).toBe(reason);
      expect(r.out.length).toBe(0);
      expect(c.errors[reason as DropReason]).toBe(1);
    });
  }

  it('bad IHL, bad data offset, IP version mismatch and fragments', () => {
    const c = new OffloadCompleter();
    const badIhl = Buffer.from(tcp4);
    badIhl[14] = 0x44;
    expect(run(c, vnetFrame(vnetHeader(gso4), badIhl)).reason).toBe('gso-bad-ihl');
    const badDoff = Buffer.from(tcp4);
    badDoff[34 + 12] = 0x40;
    expect(run(c, vnetFrame(vnetHeader(gso4), badDoff)).reason).toBe('gso-bad-tcp-header');
    const v6in4 = Buffer.from(tcp4);
    v6in4[14] = 0x65;
    expect(run(c, vnetFrame(vnetHeader(gso4), v6in4)).reason).toBe('gso-bad-ip-version');
    const frag = Buffer.from(tcp4);
    frag[14 + 6] = 0x20; // MF
    expect(run(c, vnetFrame(vnetHeader(gso4), frag)).reason).toBe('gso-fragment');
    const hugeDoff = Buffer.from(tcp4.subarray(0, 60));
    hugeDoff[34 + 12] = 0xf0; // 60-byte TCP header in a 60-byte frame
    expect(run(c, vnetFrame(vnetHeader({ ...gso4, hdrLen: 0 }), hugeDoff)).reason).toBe('gso-truncated');
  });

  it('a segment that does not fit the scratch buffer is dropped', () => {
    const c = new OffloadCompleter(1024);
    expect(run(c, vnetFrame(vnetHeader({ ...gso4, gsoSize: 2000 }), tcp4)).reason).toBe('gso-segment-too-long');
    expect(run(c, vnetFrame(vnetHeader({ flags: 1, csumStart: 34, csumOffset: 16 }), tcp4)).reason).toBe('frame-too-long');
  });
});
