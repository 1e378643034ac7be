import { describe, expect, it } from 'vitest';
import {
  ICMP_DEST_UNREACHABLE,
  ICMP_ECHO_REPLY,
  ICMP_ECHO_REQUEST,
  ICMP_TIME_EXCEEDED,
  ICMP_UNREACH_FRAG_NEEDED,
  ICMP_UNREACH_PORT,
  ICMPV4_HEADER_LEN,
  Icmpv4View,
} from '../../../stack/wire/icmpv4.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// Captured from Linux: echo request (id 0x0fa2, seq 1, 16 data bytes) and the kernel's reply.
const REQUEST = hex('0800 5c69 0fa2 0001 2a05046b00000000 4f830e0000000000');
const REPLY = hex('0000 6469 0fa2 0001 2a05046b00000000 4f830e0000000000');

describe('Icmpv4View', () => {
  it('reads a captured echo request', () => {
    const v = new Icmpv4View();
    expect(v.reset(REQUEST, 0, REQUEST.length)).toBeNull();
    expect(v.type).toBe(ICMP_ECHO_REQUEST);
    expect(v.code).toBe(0);
    expect(v.checksum).toBe(0x5c69);
    expect(v.identifier).toBe(0x0fa2);
    expect(v.sequence).toBe(1);
    expect(v.restOfHeader).toBe(0x0fa20001);
    expect(v.payloadOffset).toBe(ICMPV4_HEADER_LEN);
    expect(v.payloadLength).toBe(16);
    expect(v.payload()).toEqual(REQUEST.subarray(8));
    expect(v.payload().buffer).toBe(REQUEST.buffer);
    expect(v.checksumOk()).toBe(true);
  });

  it('turns the request into the kernel reply byte for byte', () => {
    const b = Buffer.concat([hex('ee'), REQUEST]);
    const v = new Icmpv4View();
    expect(v.reset(b, 1, REQUEST.length)).toBeNull();
    v.type = ICMP_ECHO_REPLY;
    v.fillChecksum();
    expect(b.subarray(1)).toEqual(REPLY);
    expect(v.checksumOk()).toBe(true);
  });

  it('setters write the header fields', () => {
    const b = Buffer.alloc(8 + 28);
    const v = new Icmpv4View().wrap(b, 0, b.length);
    v.type = ICMP_DEST_UNREACHABLE;
    v.code = ICMP_UNREACH_FRAG_NEEDED;
    v.restOfHeader = 0;
    v.nextHopMtu = 1400;
    v.fillChecksum();
    expect(b.subarray(0, 8)).toEqual(hex('0304 f783 0000 0578'));
    expect(v.checksumOk()).toBe(true);
    v.identifier = 0xabcd;
    v.sequence = 0x1234;
    v.checksum = 0xbeef;
    expect(b.subarray(0, 8)).toEqual(hex('0304 beef abcd 1234'));
    expect(v.nextHopMtu).toBe(0x1234);
    expect([ICMP_TIME_EXCEEDED, ICMP_UNREACH_PORT]).toEqual([11, 3]);
  });

  it('checks odd-length messages and flags corruption', () => {
    const odd = Buffer.concat([REQUEST.subarray(0, 8), hex('616263')]);
    const v = new Icmpv4View();
    expect(v.reset(odd, 0, odd.length)).toBeNull();
    v.fillChecksum();
    expect(v.checksumOk()).toBe(true);
    odd[10] ^= 1;
    expect(v.checksumOk()).toBe(false);
  });

  it('reports truncation', () => {
    const v = new Icmpv4View();
    expect(v.reset(REQUEST, 0, 7)).toBe('icmp-truncated');
    expect(v.reset(REQUEST, 20, 8)).toBe('icmp-truncated');
    expect(v.reset(REQUEST, 0, 8)).toBeNull();
    expect(v.payloadLength).toBe(0);
  });
});
