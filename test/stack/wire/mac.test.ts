import { describe, expect, it } from 'vitest';
import {
  BROADCAST_MAC,
  formatMac,
  isMulticastAt,
  isMulticastMac,
  macToBytes,
  parseMac,
  readMac,
  writeMac,
} from '../../../stack/wire/mac.js';

describe('MAC helpers', () => {
  it('reads and writes 48-bit numbers, first octet most significant', () => {
    const b = Buffer.from('0052550a000202ff', 'hex');
    expect(readMac(b, 1)).toBe(0x52550a000202);
    expect(readMac(Buffer.from('ffffffffffff', 'hex'), 0)).toBe(BROADCAST_MAC);
    expect(readMac(Buffer.from('fedcba987654', 'hex'), 0)).toBe(0xfedcba987654);
    const out = Buffer.alloc(8);
    writeMac(out, 1, 0xfedcba987654);
    expect(out.toString('hex')).toBe('00fedcba98765400');
    writeMac(out, 0, BROADCAST_MAC);
    expect(out.subarray(0, 6).toString('hex')).toBe('ffffffffffff');
  });

  it('parses colon and dash forms, rejects anything else', () => {
    expect(parseMac('52:55:0a:00:02:02')).toBe(0x52550a000202);
    expect(parseMac('52-55-0A-00-02-02')).toBe(0x52550a000202);
    expect(parseMac(' ff:ff:ff:ff:ff:ff ')).toBe(BROADCAST_MAC);
    for (const bad of ['', '52:55:0a:00:02', '52:55:0a:00:02:02:03', '5:55:0a:00:02:02', 'zz:55:0a:00:02:02', '52550a000202']) {
      expect(parseMac(bad)).toBe(-1);
    }
  });

  it('formats lower-case with leading zeros, and round-trips', () => {
    expect(formatMac(0x52550a000202)).toBe('52:55:0a:00:02:02');
    expect(formatMac(0x000000000001)).toBe('00:00:00:00:00:01');
    expect(parseMac(formatMac(0xfedcba987654))).toBe(0xfedcba987654);
    expect(macToBytes(0x52550a000202)).toEqual(new Uint8Array([0x52, 0x55, 0x0a, 0x00, 0x02, 0x02]));
    expect(Buffer.from(macToBytes(0x02000000000f)).toString('hex')).toBe('02000000000f');
  });

  it('tells multicast (group bit) from unicast', () => {
    expect(isMulticastMac(BROADCAST_MAC)).toBe(true);
    expect(isMulticastMac(0x01005e000001)).toBe(true);
    expect(isMulticastMac(0x333300000001)).toBe(true);
    expect(isMulticastMac(0x52550a000202)).toBe(false);
    expect(isMulticastMac(0x02000000000f)).toBe(false);
    expect(isMulticastAt(Buffer.from('0001005e000001', 'hex'), 1)).toBe(true);
    expect(isMulticastAt(Buffer.from('52550a000202', 'hex'), 0)).toBe(false);
  });
});
