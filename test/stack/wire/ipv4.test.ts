import { describe, expect, it } from 'vitest';
import {
  emitIpv4Header,
  IP_PROTO_ICMP,
  IP_PROTO_TCP,
  IP_PROTO_UDP,
  IPV4_HEADER_LEN,
  Ipv4View,
} from '../../../stack/wire/ipv4.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// Captured from Linux: echo request 10.0.2.15 -> 10.0.2.2, DF, id 0x4a2e, 24 bytes of ICMP.
const ECHO = hex('4500002c4a2e40004001d8920a00020f0a000202 08005c690fa200012a05046b000000004f830e0000000000');
// Captured from Linux: `ping -R` (NOP + record route option, IHL 15).
const ECHO_RR = hex(
  '4f00004c4a2f400040019a530a00020f0a000202' +
    '010727080a00020f' + '00'.repeat(32) +
    '0800dc4b0fa300010001020304050607',
);

describe('Ipv4View', () => {
  it('reads every field of a captured header', () => {
    const ip = new Ipv4View();
    expect(ip.reset(ECHO, 0, ECHO.length)).toBeNull();
    expect(ip.version).toBe(4);
    expect(ip.ihl).toBe(5);
    expect(ip.headerLength).toBe(20);
    expect(ip.tos).toBe(0);
    expect(ip.dscp).toBe(0);
    expect(ip.ecn).toBe(0);
    expect(ip.totalLength).toBe(44);
    expect(ip.identification).toBe(0x4a2e);
    expect(ip.flags).toBe(2);
    expect(ip.dontFragment).toBe(true);
    expect(ip.moreFragments).toBe(false);
    expect(ip.fragmentOffset).toBe(0);
    expect(ip.isFragment).toBe(false);
    expect(ip.ttl).toBe(64);
    expect(ip.protocol).toBe(IP_PROTO_ICMP);
    expect(ip.checksum).toBe(0xd892);
    expect(ip.src).toBe(0x0a00020f);
    expect(ip.dst).toBe(0x0a000202);
    expect(ip.optionsLength).toBe(0);
    expect(ip.payloadOffset).toBe(20);
    expect(ip.payloadLength).toBe(24);
    expect(ip.payload()).toEqual(ECHO.subarray(20));
    expect(ip.checksumOk()).toBe(true);
  });

  it('exposes options of a captured record-route header', () => {
    const ip = new Ipv4View();
    expect(ip.reset(ECHO_RR, 0, ECHO_RR.length)).toBeNull();
    expect(ip.ihl).toBe(15);
    expect(ip.headerLength).toBe(60);
    expect(ip.optionsOffset).toBe(20);
    expect(ip.optionsLength).toBe(40);
    expect(Array.from(ip.options().subarray(0, 4))).toEqual([0x01, 0x07, 0x27, 0x08]);
    expect(ip.payloadOffset).toBe(60);
    expect(ip.payloadLength).toBe(16);
    expect(ip.payload()).toEqual(hex('0800dc4b0fa300010001020304050607'));
    expect(ip.checksumOk()).toBe(true);
  });

  it('ends the payload at totalLength, ignoring Ethernet padding', () => {
    const padded = Buffer.concat([hex('eeee'), ECHO, Buffer.alloc(10)]);
    const ip = new Ipv4View();
    expect(ip.reset(padded, 2, padded.length - 2)).toBeNull();
    expect(ip.payloadLength).toBe(24);
    expect(ip.payload()).toEqual(ECHO.subarray(20));
    expect(ip.payload().buffer).toBe(padded.buffer);
  });

  it('reports malformed headers by reason', () => {
    const ip = new Ipv4View();
    const mut = (at: number, v: number): Buffer => {
      const b = Buffer.from(ECHO);
      b[at] = v;
      return b;
    };
    expect(ip.reset(ECHO, 0, 19)).toBe('ipv4-truncated');
    expect(ip.reset(ECHO, 0, 43)).toBe('ipv4-truncated'); // shorter than totalLength
    expect(ip.reset(ECHO, 30, 20)).toBe('ipv4-truncated'); // outside the buffer
    expect(ip.reset(mut(0, 0x65), 0, 44)).toBe('ipv4-bad-version');
    expect(ip.reset(mut(0, 0x44), 0, 44)).toBe('ipv4-bad-ihl');
    expect(ip.reset(mut(0, 0x4f), 0, 44)).toBe('ipv4-truncated'); // 60-byte header in 44 bytes
    expect(ip.reset(mut(3, 19), 0, 44)).toBe('ipv4-bad-total-length');
    expect(ip.reset(mut(3, 0xff), 0, 44)).toBe('ipv4-truncated');
    const badSum = mut(11, 0x93);
    expect(ip.reset(badSum, 0, 44)).toBeNull();
    expect(ip.checksumOk()).toBe(false);
  });

  it('passes unknown protocols as numbers and decodes fragments', () => {
    const b = Buffer.from(ECHO);
    const ip = new Ipv4View();
    expect(ip.reset(b, 0, b.length)).toBeNull();
    ip.protocol = 253;
    ip.moreFragments = true;
    ip.fragmentOffset = 1480;
    expect(ip.protocol).toBe(253);
    expect(ip.isFragment).toBe(true);
    expect(ip.dontFragment).toBe(true);
    expect(ip.fragmentOffset).toBe(1480);
    expect(b.readUInt16BE(6)).toBe(0x4000 | 0x2000 | 185);
    ip.moreFragments = false;
    expect(ip.isFragment).toBe(true); // last fragment: offset only
    ip.fragmentOffset = 0;
    expect(ip.isFragment).toBe(false);
    ip.dontFragment = false;
    expect(ip.flags).toBe(0);
    ip.flags = 1; // MF is the lowest of the three bits
    expect(b[6] >>> 5).toBe(1);
    expect(ip.moreFragments).toBe(true);
    ip.flags = 4; // the reserved bit passes as a number
    expect(b[6]).toBe(0x80);
    expect(ip.flags).toBe(4);
    expect(ip.isFragment).toBe(false);
  });

  it('setters rebuild the captured header byte for byte', () => {
    const out = Buffer.alloc(44);
    ECHO.copy(out, 20, 20);
    const ip = new Ipv4View().wrap(out, 0, 44);
    ip.version = 4;
    ip.ihl = 5;
    ip.dscp = 0;
    ip.ecn = 0;
    ip.totalLength = 44;
    ip.identification = 0x4a2e;
    ip.dontFragment = true;
    ip.ttl = 64;
    ip.protocol = IP_PROTO_ICMP;
    ip.src = 0x0a00020f;
    ip.dst = 0x0a000202;
    ip.fillChecksum();
    expect(out).toEqual(ECHO);
    ip.tos = 0xb9;
    expect(ip.dscp).toBe(0x2e);
    expect(ip.ecn).toBe(1);
    ip.ecn = 2;
    expect(ip.tos).toBe(0xba);
  });

  it('emitIpv4Header writes a valid header and round-trips through the view', () => {
    const out = Buffer.alloc(IPV4_HEADER_LEN + 2, 0xee);
    expect(emitIpv4Header(out, 1, 0x0a00020f, 0x0a000202, IP_PROTO_ICMP, 24, 64, 0x4a2e, true)).toBe(20);
    expect(out.subarray(1, 21)).toEqual(ECHO.subarray(0, 20));
    expect(out[0]).toBe(0xee);
    expect(out[21]).toBe(0xee);

    const pkt = Buffer.alloc(20 + 8);
    emitIpv4Header(pkt, 0, 0x5db8d822, 0x0a00020f, IP_PROTO_UDP, 8, 255, 0xffff, false, 0x10);
    const ip = new Ipv4View();
    expect(ip.reset(pkt, 0, pkt.length)).toBeNull();
    expect(ip.checksumOk()).toBe(true);
    expect(ip.tos).toBe(0x10);
    expect(ip.ttl).toBe(255);
    expect(ip.identification).toBe(0xffff);
    expect(ip.dontFragment).toBe(false);
    expect(ip.src).toBe(0x5db8d822);
    expect(ip.protocol).toBe(IP_PROTO_UDP);
    expect(ip.payloadLength).toBe(8);
    expect(IP_PROTO_TCP).toBe(6);
  });
});
