import { describe, expect, it } from 'vitest';
import { ARP_LEN, ARP_OP_REPLY, ARP_OP_REQUEST, ArpRepr } from '../../../stack/wire/arp.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// Captured from Linux: ARP payloads (after the Ethernet header).
const REQUEST = hex('0001 0800 06 04 0001 02000000000f 0a00020f 000000000000 0a000202');
const REPLY = hex('0001 0800 06 04 0002 52550a000202 0a000202 02000000000f 0a00020f');

describe('ArpRepr', () => {
  it('parses a captured request', () => {
    const a = new ArpRepr();
    expect(a.parse(REQUEST, 0, REQUEST.length)).toBeNull();
    expect(a.op).toBe(ARP_OP_REQUEST);
    expect(a.senderMac).toBe(0x02000000000f);
    expect(a.senderIp).toBe(0x0a00020f);
    expect(a.targetMac).toBe(0);
    expect(a.targetIp).toBe(0x0a000202);
  });

  it('parses a captured reply at an offset with trailing padding', () => {
    const buf = Buffer.concat([hex('ffff'), REPLY, Buffer.alloc(18)]);
    const a = new ArpRepr();
    expect(a.parse(buf, 2, buf.length - 2)).toBeNull();
    expect(a.op).toBe(ARP_OP_REPLY);
    expect(a.senderMac).toBe(0x52550a000202);
    expect(a.senderIp).toBe(0x0a000202);
    expect(a.targetMac).toBe(0x02000000000f);
    expect(a.targetIp).toBe(0x0a00020f);
  });

  it('emits the golden bytes and round-trips', () => {
    const a = new ArpRepr();
    a.op = ARP_OP_REPLY;
    a.senderMac = 0x52550a000202;
    a.senderIp = 0x0a000202;
    a.targetMac = 0x02000000000f;
    a.targetIp = 0x0a00020f;
    expect(a.bufferLen()).toBe(ARP_LEN);
    const out = Buffer.alloc(30, 0xee);
    expect(a.emitInto(out, 1)).toBe(28);
    expect(out.subarray(1, 29)).toEqual(REPLY);
    expect(out[0]).toBe(0xee);
    expect(out[29]).toBe(0xee);

    const b = new ArpRepr();
    expect(b.parse(REQUEST, 0, 28)).toBeNull();
    const again = Buffer.alloc(28);
    b.emitInto(again, 0);
    expect(again).toEqual(REQUEST);
  });

  it('passes unknown operations as numbers', () => {
    const rarp = Buffer.from(REQUEST);
    rarp.writeUInt16BE(3, 6);
    const a = new ArpRepr();
    expect(a.parse(rarp, 0, 28)).toBeNull();
    expect(a.op).toBe(3);
  });

  it('reports truncation and unsupported combinations', () => {
    const a = new ArpRepr();
    expect(a.parse(REQUEST, 0, 27)).toBe('arp-truncated');
    expect(a.parse(REQUEST, 0, 5)).toBe('arp-truncated');
    expect(a.parse(REQUEST, 10, 28)).toBe('arp-truncated');
    for (const [at, v] of [
      [1, 6], // htype IEEE 802
      [2, 0x86], // ptype IPv6
      [4, 8], // hlen
      [5, 16], // plen
    ] as const) {
      const x = Buffer.from(REQUEST);
      x[at] = v;
      expect(a.parse(x, 0, 28)).toBe('arp-unsupported');
      // Unsupported wins over truncated once the fixed part is there.
      expect(a.parse(x, 0, 10)).toBe('arp-unsupported');
    }
  });
});
