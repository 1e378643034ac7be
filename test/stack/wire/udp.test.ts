import { describe, expect, it } from 'vitest';
import {
  fillUdpChecksum,
  fillUdpPseudoChecksum,
  UDP_HEADER_LEN,
  UdpView,
  writeUdpHeader,
} from '../../../stack/wire/udp.js';
import { fold, pseudoHeaderSum4, sumBytes } from '../../../stack/wire/checksum.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const SRC = 0x0a00020f; // 10.0.2.15
const DST = 0x0a000202; // 10.0.2.2

// Captured on a Linux veth: 10.0.2.15:40000 -> 10.0.2.2:5353 "hello usernet\n".
// The capture carried an offloaded partial checksum (0x1838); tcpdump computed
// the full one as 0x3540, which is what is stored here.
const HELLO = hex('9c4014e90016 3540 68656c6c6f20757365726e65740a');
// A 3080-byte datagram Linux sent in software (it had to fragment it), so its
// checksum 0x1ba7 is the kernel's own: header, then bytes 0..255 twelve times.
const BIG_PAYLOAD = Buffer.from(Array.from({ length: 3072 }, (_, i) => i & 0xff));
const BIG = Buffer.concat([hex('9c4014e90c081ba7'), BIG_PAYLOAD]);

describe('UdpView', () => {
  it('parses the golden datagram', () => {
    const v = new UdpView();
    expect(v.reset(HELLO, 0, HELLO.length)).toBeNull();
    expect(v.srcPort).toBe(40000);
    expect(v.dstPort).toBe(5353);
    expect(v.length).toBe(22);
    expect(v.checksum).toBe(0x3540);
    expect(v.payloadOffset).toBe(8);
    expect(v.payloadLength).toBe(14);
    expect(Buffer.from(v.payload()).toString()).toBe('hello usernet\n');
    expect(v.checksumOk(SRC, DST)).toBe(true);
    // The pseudo-header matters: the wrong destination fails.
    expect(v.checksumOk(SRC, DST + 1)).toBe(false);
  });

  it('verifies the kernel-computed checksum of a large datagram', () => {
    const v = new UdpView();
    expect(v.reset(BIG, 0, BIG.length)).toBeNull();
    expect(v.length).toBe(3080);
    expect(v.checksumOk(SRC, DST)).toBe(true);
    BIG[100] ^= 1;
    expect(v.checksumOk(SRC, DST)).toBe(false);
    BIG[100] ^= 1;
  });

  it('honours the offset and ignores bytes after the UDP length (link padding)', () => {
    const b = Buffer.concat([hex('aabbcc'), HELLO, hex('00000000')]);
    const v = new UdpView();
    expect(v.reset(b, 3, HELLO.length + 4)).toBeNull();
    expect(v.payloadLength).toBe(14);
    expect(v.checksumOk(SRC, DST)).toBe(true);
  });

  it('reports truncated and bad lengths without throwing', () => {
    const v = new UdpView();
    expect(v.reset(HELLO, 0, 7)).toBe('udp-truncated');
    expect(v.reset(HELLO, 0, 21)).toBe('udp-truncated'); // length field says 22
    expect(v.reset(HELLO, 20, 8)).toBe('udp-truncated'); // beyond the buffer
    expect(v.reset(HELLO, -1, 8)).toBe('udp-truncated');
    const bad = Buffer.from(HELLO);
    bad.writeUInt16BE(7, 4);
    expect(v.reset(bad, 0, bad.length)).toBe('udp-bad-length');
    bad.writeUInt16BE(8, 4);
    expect(v.reset(bad, 0, bad.length)).toBeNull(); // empty payload is legal
    expect(v.payloadLength).toBe(0);
  });

  it('treats checksum 0 as absent', () => {
    const b = Buffer.from(HELLO);
    b.writeUInt16BE(0, 6);
    const v = new UdpView();
    expect(v.reset(b, 0, b.length)).toBeNull();
    expect(v.checksumOk(SRC, DST)).toBe(true);
  });
});

describe('writing UDP', () => {
  it('writeUdpHeader + fillUdpChecksum reproduce the golden bytes', () => {
    const b = Buffer.alloc(HELLO.length);
    HELLO.copy(b, 8, 8);
    expect(writeUdpHeader(b, 0, 40000, 5353, 14)).toBe(UDP_HEADER_LEN);
    expect(b.readUInt16BE(6)).toBe(0);
    fillUdpChecksum(b, 0, 22, SRC, DST);
    expect(b.equals(HELLO)).toBe(true);

    const big = Buffer.alloc(BIG.length + 4, 0xee);
    BIG_PAYLOAD.copy(big, 12);
    writeUdpHeader(big, 4, 40000, 5353, BIG_PAYLOAD.length);
    new UdpView().wrap(big, 4, BIG.length).fillChecksum(SRC, DST);
    expect(big.subarray(4).equals(BIG)).toBe(true);
  });

  it('sends a computed checksum of 0 as 0xffff', () => {
    // Pick the two payload bytes that make the one's complement sum 0xffff.
    const b = Buffer.alloc(10);
    writeUdpHeader(b, 0, 1, 2, 2);
    const partial = fold(sumBytes(b, 0, 10, pseudoHeaderSum4(SRC, DST, 17, 10)));
    b.writeUInt16BE(0xffff - partial, 8);
    fillUdpChecksum(b, 0, 10, SRC, DST);
    expect(b.readUInt16BE(6)).toBe(0xffff);
    const v = new UdpView();
    expect(v.reset(b, 0, 10)).toBeNull();
    expect(v.checksumOk(SRC, DST)).toBe(true);
  });

  it('fillUdpPseudoChecksum stores the folded pseudo-header sum for offload', () => {
    const b = Buffer.from(HELLO);
    fillUdpPseudoChecksum(b, 0, 22, SRC, DST);
    expect(b.readUInt16BE(6)).toBe(fold(pseudoHeaderSum4(SRC, DST, 17, 22)));
    // Finishing it the way a NIC does (sum from csum_start, complement) gives the full checksum.
    expect(~fold(sumBytes(b, 0, 22)) & 0xffff).toBe(0x3540);
  });
});
