import { describe, expect, it } from 'vitest';
import { checksum, finish, fold, pseudoHeaderSum4, pseudoHeaderSum6, sumBytes } from '../../../stack/wire/checksum.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// Captured from Linux (veth): TCP SYN 10.0.2.15:52290 -> 93.184.216.34:80 with an
// offloaded (partial) checksum 0x4218; tcpdump computes the full one as 0x1f88.
const TCP_SYN_IP = hex(
  '4500003c587940004006a0590a00020f5db8d822cc420050e40e012000000000a002faf042180000020405b40402080acf556a83000000000103030a',
);

describe('Internet checksum (RFC 1071)', () => {
  it('matches the worked example of RFC 1071 section 3', () => {
    const b = hex('0001f203f4f5f6f7');
    expect(fold(sumBytes(b, 0, b.length))).toBe(0xddf2);
    expect(checksum(b, 0, b.length)).toBe(0x220d);
  });

  it('pads an odd last byte with zero', () => {
    expect(sumBytes(hex('01'), 0, 1)).toBe(0x0100);
    expect(sumBytes(hex('0102ab'), 0, 3)).toBe(0x0102 + 0xab00);
    // Same sum as the even-length buffer with an explicit zero pad.
    const odd = hex('0001f203f4f5f6');
    expect(checksum(odd, 0, odd.length)).toBe(checksum(hex('0001f203f4f5f600'), 0, 8));
  });

  it('honours offset and length, and sums split at even boundaries combine', () => {
    const b = hex('ffff0001f203f4f5f6f7ffff');
    expect(checksum(b, 2, 8)).toBe(0x220d);
    const whole = sumBytes(b, 0, b.length);
    expect(fold(sumBytes(b, 6, 6, sumBytes(b, 0, 6)))).toBe(fold(whole));
    // Lengths 0..3 around the 4-byte loop.
    expect(sumBytes(b, 0, 0)).toBe(0);
    expect(sumBytes(b, 2, 3)).toBe(0x0001 + 0xf200);
  });

  it('folds with end-around carry and finishes as one complement', () => {
    expect(fold(0x1fffe)).toBe(0xffff);
    expect(fold(0x2_0000_0001)).toBe(0x0003);
    expect(finish(0xffff)).toBe(0);
    expect(finish(0)).toBe(0xffff);
    // A long run of 0xff bytes keeps an exact sum.
    const big = Buffer.alloc(65536, 0xff);
    expect(fold(sumBytes(big, 0, big.length))).toBe(0xffff);
  });

  it('verifies a captured IPv4 header: the sum including the checksum is 0xffff', () => {
    expect(fold(sumBytes(TCP_SYN_IP, 0, 20))).toBe(0xffff);
    const h = Buffer.from(TCP_SYN_IP.subarray(0, 20));
    h.writeUInt16BE(0, 10);
    expect(checksum(h, 0, 20)).toBe(0xa059);
  });

  it('pseudo-header sum matches the partial checksum Linux leaves for offload, and completes to the real one', () => {
    const src = TCP_SYN_IP.readUInt32BE(12);
    const dst = TCP_SYN_IP.readUInt32BE(16);
    const segLen = TCP_SYN_IP.length - 20;
    const ph = pseudoHeaderSum4(src, dst, 6, segLen);
    expect(fold(ph)).toBe(0x4218);
    const seg = Buffer.from(TCP_SYN_IP.subarray(20));
    seg.writeUInt16BE(0, 16);
    expect(checksum(seg, 0, seg.length, ph)).toBe(0x1f88);
  });

  it('IPv6 pseudo-header sum adds both addresses, the 32-bit length and next header', () => {
    const b = hex('fe800000000000000000000000000001' + 'fe80000000000000aabbccddeeff0011');
    let words = 0;
    for (let i = 0; i < 32; i += 2) words += b.readUInt16BE(i);
    expect(pseudoHeaderSum6(b, 0, 16, 17, 0x12345)).toBe(words + 0x1 + 0x2345 + 17);
    expect(fold(pseudoHeaderSum6(b, 0, 16, 6, 20))).toBe(fold(words + 6 + 20));
  });
});
