import { describe, expect, it } from 'vitest';
import {
  emitEthernetHeader,
  ETH_HEADER_LEN,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  ETHERTYPE_VLAN,
  EthernetView,
} from '../../../stack/wire/ethernet.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// ARP request captured from Linux: who-has 10.0.2.2 tell 10.0.2.15 (broadcast).
const ARP_REQUEST = hex('ffffffffffff 02000000000f 0806 0001080006040001 02000000000f 0a00020f 000000000000 0a000202');

describe('EthernetView', () => {
  it('reads a captured frame', () => {
    const e = new EthernetView();
    expect(e.reset(ARP_REQUEST, 0, ARP_REQUEST.length)).toBeNull();
    expect(e.dst).toBe(0xffffffffffff);
    expect(e.src).toBe(0x02000000000f);
    expect(e.dstIsMulticast).toBe(true);
    expect(e.srcIsMulticast).toBe(false);
    expect(e.etherType).toBe(ETHERTYPE_ARP);
    expect(e.payloadOffset).toBe(ETH_HEADER_LEN);
    expect(e.payloadLength).toBe(28);
    expect(e.payload()).toEqual(ARP_REQUEST.subarray(14));
    // payload is a window, not a copy
    expect(e.payload().buffer).toBe(ARP_REQUEST.buffer);
  });

  it('compares the destination and copies the source without 48-bit numbers', () => {
    const e = new EthernetView();
    const frame = hex('52550a000202 82000000000f 0800');
    expect(e.reset(frame, 0, frame.length)).toBeNull();
    expect(e.dstIs(0x52550a000202)).toBe(true);
    expect(e.dstIs(0x52550a000203)).toBe(false);
    expect(e.dstIs(0x53550a000202)).toBe(false);
    expect(e.dstIs(0xffffffffffff)).toBe(false);
    expect(e.reset(ARP_REQUEST, 0, ARP_REQUEST.length)).toBeNull();
    expect(e.dstIs(0xffffffffffff)).toBe(true);
    const out = Buffer.alloc(8, 0xee);
    e.reset(frame, 0, frame.length);
    e.copySrcTo(out, 1);
    expect(out.toString('hex')).toBe('ee82000000000fee');
  });

  it('works at an offset and bounds payload by len', () => {
    const buf = Buffer.concat([hex('aabbcc'), ARP_REQUEST, hex('dddd')]);
    const e = new EthernetView();
    expect(e.reset(buf, 3, ARP_REQUEST.length)).toBeNull();
    expect(e.src).toBe(0x02000000000f);
    expect(e.payloadOffset).toBe(17);
    expect(e.payload()).toEqual(ARP_REQUEST.subarray(14));
  });

  it('refuses short frames and ranges outside the buffer', () => {
    const e = new EthernetView();
    expect(e.reset(ARP_REQUEST, 0, 13)).toBe('eth-truncated');
    expect(e.reset(ARP_REQUEST, 0, 0)).toBe('eth-truncated');
    expect(e.reset(ARP_REQUEST, 30, 14)).toBe('eth-truncated');
    expect(e.reset(ARP_REQUEST, -1, 20)).toBe('eth-truncated');
    expect(e.reset(ARP_REQUEST, 0, 14)).toBeNull();
    expect(e.payloadLength).toBe(0);
  });

  it('exposes 802.1Q and unknown ethertypes as plain numbers', () => {
    const tagged = hex('52550a000202 02000000000f 8100 0002 0800 4500');
    const e = new EthernetView();
    expect(e.reset(tagged, 0, tagged.length)).toBeNull();
    expect(e.etherType).toBe(ETHERTYPE_VLAN);
    expect(e.payloadOffset).toBe(14);
    const odd = hex('52550a000202 02000000000f 88b5');
    expect(e.reset(odd, 0, odd.length)).toBeNull();
    expect(e.etherType).toBe(0x88b5);
    expect(ETHERTYPE_IPV6).toBe(0x86dd);
    expect(ETHERTYPE_IPV4).toBe(0x0800);
  });

  it('setters and emitEthernetHeader produce the golden bytes', () => {
    const out = Buffer.alloc(14);
    const e = new EthernetView().wrap(out, 0, 14);
    e.dst = 0xffffffffffff;
    e.src = 0x02000000000f;
    e.etherType = ETHERTYPE_ARP;
    expect(out).toEqual(ARP_REQUEST.subarray(0, 14));
    const out2 = Buffer.alloc(16, 0xee);
    expect(emitEthernetHeader(out2, 1, 0xffffffffffff, 0x02000000000f, ETHERTYPE_ARP)).toBe(14);
    expect(out2.subarray(1, 15)).toEqual(ARP_REQUEST.subarray(0, 14));
    expect(out2[0]).toBe(0xee);
    expect(out2[15]).toBe(0xee);
  });
});
