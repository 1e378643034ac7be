import { describe, expect, it } from 'vitest';
import { randomLocalMac, standInForZeroSource } from '../../stack/zero-source-mac.js';
import { formatMac, parseMac } from '../../stack/wire/mac.js';

const STAND_IN = parseMac('02:11:22:33:44:55');

/** An ARP who-has 10.0.2.2 from 10.0.2.100, as gVisor's tap sends it: every hardware address zero. */
function gvisorArpRequest(): Buffer {
  return Buffer.from(
    'ffffffffffff' + '000000000000' + '0806' + '0001' + '0800' + '06' + '04' + '0001' + '000000000000' + '0a000264' + '000000000000' + '0a000202',
    'hex',
  );
}

describe('standInForZeroSource', () => {
  it('gives an all-zero Ethernet source and ARP sender the stand-in MAC', () => {
    const f = gvisorArpRequest();
    expect(standInForZeroSource(f, 0, f.length, STAND_IN)).toBe(true);
    expect(f.subarray(6, 12).toString('hex')).toBe('021122334455');
    expect(f.subarray(22, 28).toString('hex')).toBe('021122334455');
    // The target hardware address of a request stays zero, and nothing else moves.
    expect(f.subarray(32, 38).toString('hex')).toBe('000000000000');
    expect(f.subarray(0, 6).toString('hex')).toBe('ffffffffffff');
    expect(f.subarray(38, 42).toString('hex')).toBe('0a000202');
  });

  it('works at an offset inside a larger buffer', () => {
    const f = gvisorArpRequest();
    const buf = Buffer.concat([Buffer.alloc(10, 0xee), f, Buffer.alloc(4, 0xee)]);
    expect(standInForZeroSource(buf, 10, f.length, STAND_IN)).toBe(true);
    expect(buf.subarray(16, 22).toString('hex')).toBe('021122334455');
    expect(buf.subarray(32, 38).toString('hex')).toBe('021122334455');
    expect(buf.subarray(0, 10).every((b) => b === 0xee)).toBe(true);
  });

  it('rewrites only the Ethernet source of an IPv4 frame', () => {
    const f = Buffer.alloc(14 + 20);
    f.write('020000000002', 0, 'hex');
    f.writeUInt16BE(0x0800, 12);
    f[14] = 0x45;
    const payload = Buffer.from(f.subarray(14));
    expect(standInForZeroSource(f, 0, f.length, STAND_IN)).toBe(true);
    expect(f.subarray(6, 12).toString('hex')).toBe('021122334455');
    expect(f.subarray(14).equals(payload)).toBe(true);
  });

  it('leaves a frame with a real source alone', () => {
    const f = gvisorArpRequest();
    f.write('020000000064', 6, 'hex');
    const before = Buffer.from(f);
    expect(standInForZeroSource(f, 0, f.length, STAND_IN)).toBe(false);
    expect(f.equals(before)).toBe(true);
  });

  it('leaves runts and truncated ARP payloads past their end alone', () => {
    const runt = Buffer.alloc(13);
    expect(standInForZeroSource(runt, 0, runt.length, STAND_IN)).toBe(false);
    expect(runt.every((b) => b === 0)).toBe(true);
    const short = gvisorArpRequest().subarray(0, 20);
    expect(standInForZeroSource(short, 0, short.length, STAND_IN)).toBe(true);
    expect(short.subarray(14, 20).toString('hex')).toBe('000108000604');
  });
});

describe('randomLocalMac', () => {
  it('is a locally administered unicast address', () => {
    expect(formatMac(randomLocalMac(Uint8Array.of(0xff, 1, 2, 3, 4, 5)))).toBe('fe:01:02:03:04:05');
    expect(formatMac(randomLocalMac(Uint8Array.of(0x00, 0, 0, 0, 0, 0)))).toBe('02:00:00:00:00:00');
  });
});
