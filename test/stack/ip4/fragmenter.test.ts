import { describe, expect, it } from 'vitest';
import { Ipv4Fragmenter, type Ipv4HeaderTemplate } from '../../../stack/ip4/fragmenter.js';
import { IpReassembler } from '../../../stack/ip/reassembly.js';
import { Ipv4View } from '../../../stack/wire/ipv4.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// Linux (veth, MTU 1500) fragmenting a 3080-byte UDP datagram from
// 10.0.2.15:40000 to 10.0.2.2:5353, IP id 0x3b23: these are its three headers.
// The payload is the UDP header 9c4014e90c081ba7 then bytes 0..255 twelve times.
const KERNEL_HEADERS = [
  '450005dc3b232000401101de0a00020f0a000202',
  '450005dc3b2320b9401101250a00020f0a000202',
  '4500008c3b230172401125bc0a00020f0a000202',
];
const PAYLOAD = Buffer.concat([hex('9c4014e90c081ba7'), Buffer.from(Array.from({ length: 3072 }, (_, i) => i & 0xff))]);

function template(over: Partial<Ipv4HeaderTemplate> = {}): Ipv4HeaderTemplate {
  return { src: 0x0a00020f, dst: 0x0a000202, protocol: 17, id: 0x3b23, ttl: 64, tos: 0, dontFragment: false, ...over };
}

function collect(): { out: Buffer[]; sink: (b: Buffer, o: number, l: number) => void } {
  const out: Buffer[] = [];
  return { out, sink: (b, o, l) => out.push(Buffer.from(b.subarray(o, o + l))) };
}

describe('Ipv4Fragmenter', () => {
  it('reproduces Linux fragments byte for byte', () => {
    const f = new Ipv4Fragmenter(1500);
    const { out, sink } = collect();
    const padded = Buffer.concat([hex('eeee'), PAYLOAD]);
    expect(f.fragment(template(), padded, 2, PAYLOAD.length, sink)).toBeNull();
    expect(out.length).toBe(3);
    const bounds = [0, 1480, 2960, 3080];
    for (let i = 0; i < 3; i++) {
      expect(out[i].subarray(0, 20).toString('hex')).toBe(KERNEL_HEADERS[i]);
      expect(out[i].subarray(20).equals(PAYLOAD.subarray(bounds[i], bounds[i + 1]))).toBe(true);
    }
    expect(f.fragmented).toBe(1);
    expect(f.packets).toBe(3);
  });

  it('sends a datagram that fits as one packet, DF as asked', () => {
    const f = new Ipv4Fragmenter(1500);
    const { out, sink } = collect();
    expect(f.fragment(template({ dontFragment: true, tos: 0x10 }), PAYLOAD, 0, 1480, sink)).toBeNull();
    expect(out.length).toBe(1);
    const v = new Ipv4View();
    expect(v.reset(out[0], 0, out[0].length)).toBeNull();
    expect(v.totalLength).toBe(1500);
    expect(v.dontFragment).toBe(true);
    expect(v.isFragment).toBe(false);
    expect(v.tos).toBe(0x10);
    expect(v.checksumOk()).toBe(true);
    expect(f.fragmented).toBe(0);
  });

  it('refuses to fragment with DF set, and bad ranges, without throwing', () => {
    const f = new Ipv4Fragmenter(1500);
    const { out, sink } = collect();
    expect(f.fragment(template({ dontFragment: true }), PAYLOAD, 0, PAYLOAD.length, sink)).toBe('frag-df-set');
    expect(f.fragment(template(), PAYLOAD, 10, PAYLOAD.length, sink)).toBe('frag-truncated');
    expect(f.fragment(template(), Buffer.alloc(70000), 0, 65516, sink)).toBe('frag-too-big');
    expect(out.length).toBe(0);
    expect(f.drops).toMatchObject({ 'frag-df-set': 1, 'frag-truncated': 1, 'frag-too-big': 1 });
  });

  it('round-trips through the reassembler at odd MTUs, payloads multiple of 8 but the last', () => {
    const data = Buffer.alloc(65515);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31) & 0xff;
    const v = new Ipv4View();
    for (const mtu of [68, 576, 1280, 1500, 1501, 9000, 65535]) {
      const f = new Ipv4Fragmenter(mtu);
      const r = new IpReassembler();
      for (const len of [0, 1, 48, 1473, 8000, 65515]) {
        let result: Buffer | null = null;
        let count = 0;
        const sink = (b: Buffer, o: number, l: number): void => {
          expect(l).toBeLessThanOrEqual(mtu);
          expect(v.reset(b, o, l)).toBeNull();
          expect(v.checksumOk()).toBe(true);
          if (v.moreFragments) expect(v.payloadLength % 8).toBe(0);
          count++;
          const d = r.input(v.src, v.dst, v.protocol, v.identification, v.fragmentOffset, v.moreFragments, b, o + 20, l - 20, 0);
          if (d !== null) result = Buffer.from(d.buf.subarray(d.off, d.off + d.len));
        };
        expect(f.fragment(template({ id: len }), data, 0, len, sink)).toBeNull();
        expect(count).toBe(len + 20 <= mtu ? 1 : Math.ceil(len / ((mtu - 20) & ~7)));
        expect(result).not.toBeNull();
        expect(result!.equals(data.subarray(0, len))).toBe(true);
      }
    }
  });

  it('checks the MTU it is configured with', () => {
    expect(() => new Ipv4Fragmenter(67)).toThrow(RangeError);
    expect(() => new Ipv4Fragmenter(65536)).toThrow(RangeError);
  });
});
