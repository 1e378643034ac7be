import { describe, expect, it } from 'vitest';
import {
  enhancedPacketLength,
  interfaceBlockLength,
  sectionHeaderLength,
  writeEnhancedPacketHeader,
  writeEnhancedPacketTrailer,
  writeInterfaceBlock,
  writeSectionHeader,
} from '../../stack/pcapng.js';

describe('pcapng encoding', () => {
  it('section header block: golden bytes (version 1.0, unknown length, shb_userappl)', () => {
    const b = Buffer.alloc(2 + 44 + 1, 0xee);
    expect(sectionHeaderLength('usernet')).toBe(44);
    expect(writeSectionHeader(b, 2, 'usernet')).toBe(2 + 44);
    expect(b.subarray(2, 46).toString('hex')).toBe(
      '0a0d0d0a' + '2c000000' + '4d3c2b1a' + '0100' + '0000' + 'ffffffff' + 'ffffffff' +
        // shb_userappl (4), 7 bytes, "usernet" padded to 8
        '0400' + '0700' + '7573' + '6572' + '6e65' + '7400' +
        // opt_endofopt, then the length again
        '00000000' + '2c000000',
    );
    expect(b[0]).toBe(0xee);
    expect(b[1]).toBe(0xee);
    expect(b[46]).toBe(0xee);
  });

  it('interface description block: golden bytes (Ethernet, snaplen, if_name)', () => {
    const b = Buffer.alloc(32);
    expect(interfaceBlockLength('tap0')).toBe(32);
    expect(writeInterfaceBlock(b, 0, 'tap0', 262_144)).toBe(32);
    expect(b.toString('hex')).toBe(
      '01000000' + '20000000' + '0100' + '0000' + '00000400' + '0200' + '0400' + '74617030' + '00000000' + '20000000',
    );
  });

  it('interface description block: a name that needs padding', () => {
    const b = Buffer.alloc(36, 0xff);
    expect(interfaceBlockLength('gateway')).toBe(36);
    expect(writeInterfaceBlock(b, 0, 'gateway', 65535)).toBe(36);
    expect(b.toString('hex')).toBe(
      '01000000' + '24000000' + '0100' + '0000' + 'ffff0000' + '0200' + '0700' + '67617465776179' + '00' + '00000000' + '24000000',
    );
  });

  it('enhanced packet block: golden bytes (interface id, 64-bit microseconds, padding)', () => {
    const b = Buffer.alloc(40, 0xee);
    expect(enhancedPacketLength(5)).toBe(40);
    const data = writeEnhancedPacketHeader(b, 0, 1, 1_700_000_000_123.456, 5, 5);
    expect(data).toBe(28);
    b.write('hello', data, 'latin1');
    expect(writeEnhancedPacketTrailer(b, data, 5)).toBe(40);
    // 1700000000123456 us = 0x00060a24_18202240
    expect(b.toString('hex')).toBe(
      '06000000' + '28000000' + '01000000' + '240a0600' + '40222018' + '05000000' + '05000000' + '68656c6c6f' + '000000' + '28000000',
    );
  });

  it('enhanced packet block: a length that is a multiple of 4 has no padding; microseconds round once', () => {
    const b = Buffer.alloc(36);
    expect(enhancedPacketLength(4)).toBe(36);
    const data = writeEnhancedPacketHeader(b, 0, 0, 2500.0004, 4, 1514);
    expect(b.readUInt32LE(12)).toBe(0);
    expect(b.readUInt32LE(16)).toBe(2_500_000);
    expect(b.readUInt32LE(20)).toBe(4);
    expect(b.readUInt32LE(24)).toBe(1514);
    expect(writeEnhancedPacketTrailer(b, data, 4)).toBe(36);
    expect(b.readUInt32LE(32)).toBe(36);
  });
});
