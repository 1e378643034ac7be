import { describe, expect, it } from 'vitest';
import { fold, pseudoHeaderSum4, sumBytes } from '../../../stack/wire/checksum.js';
import {
  TCP_ACK,
  TCP_FIN,
  TCP_PSH,
  TCP_SYN,
  TcpOptions,
  TcpView,
  parseTcpOptions,
  tcpChecksum,
  tcpOptionsLength,
  writeTcpHeader,
} from '../../../stack/wire/tcp.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// The TCP part of a SYN captured from Linux (also used by the checksum tests):
// 10.0.2.15:52290 -> 93.184.216.34:80, MSS 1460, SACK_PERM, TS, NOP, WS 10.
// The checksum field holds the offloaded pseudo-header sum 0x4218; the full
// checksum (as tcpdump computes it) is 0x1f88.
const LINUX_SYN = hex(
  'cc42 0050 e40e0120 00000000 a002 faf0 4218 0000 020405b4 0402080a cf556a83 00000000 0103030a',
);
const SRC = 0x0a00020f;
const DST = 0x5db8d822;

// Built from the RFC 7323 / RFC 2018 layouts the way Linux lays them out:
// ACK|PSH with NOP NOP TS and NOP NOP SACK (2 blocks), 3 payload bytes.
const DATA_ACK = hex(
  '1f90 c350 00000064 000003e8 d018 0100 0000 0000' +
    '0101080a 00000007 00000009' +
    '0101 0512 000003f0 000003f8 00000400 00000410' +
    '616263',
);

describe('TcpView', () => {
  it('reads every field of a captured Linux SYN and its options', () => {
    const v = new TcpView();
    expect(v.reset(LINUX_SYN, 0, LINUX_SYN.length)).toBe(null);
    expect(v.srcPort).toBe(52290);
    expect(v.dstPort).toBe(80);
    expect(v.seq).toBe(0xe40e0120);
    expect(v.ack).toBe(0);
    expect(v.dataOffset).toBe(10);
    expect(v.headerLength).toBe(40);
    expect(v.flags).toBe(TCP_SYN);
    expect(v.window).toBe(64240);
    expect(v.checksum).toBe(0x4218);
    expect(v.urgent).toBe(0);
    expect(v.payloadOffset).toBe(40);
    expect(v.payloadLength).toBe(0);
    expect(v.parseOptions()).toBe(null);
    const o = v.options;
    expect([o.mss, o.windowScale, o.sackPermitted, o.tsPresent, o.tsVal, o.tsEcr, o.sackCount]).toEqual([
      1460, 10, true, true, 0xcf556a83, 0, 0,
    ]);
  });

  it('reads a data segment with timestamps and SACK blocks at an offset', () => {
    const buf = Buffer.concat([hex('eeeeee'), DATA_ACK]);
    const v = new TcpView();
    expect(v.reset(buf, 3, DATA_ACK.length)).toBe(null);
    expect(v.flags).toBe(TCP_ACK | TCP_PSH);
    expect(v.seq).toBe(100);
    expect(v.ack).toBe(1000);
    expect(v.window).toBe(256);
    expect(v.payloadOffset).toBe(3 + 52);
    expect(v.payloadLength).toBe(3);
    expect(buf.subarray(v.payloadOffset, v.payloadOffset + v.payloadLength).toString()).toBe('abc');
    expect(v.parseOptions()).toBe(null);
    expect(v.options.tsPresent).toBe(true);
    expect([v.options.tsVal, v.options.tsEcr]).toEqual([7, 9]);
    expect(v.options.sackCount).toBe(2);
    expect(Array.from(v.options.sack.subarray(0, 4))).toEqual([1008, 1016, 1024, 1040]);
    expect(v.options.mss).toBe(-1);
    expect(v.options.windowScale).toBe(-1);
  });

  it('rejects truncated segments and bad data offsets', () => {
    const v = new TcpView();
    expect(v.reset(LINUX_SYN, 0, 19)).toBe('tcp-truncated');
    expect(v.reset(LINUX_SYN, 0, 30)).toBe('tcp-truncated');
    expect(v.reset(LINUX_SYN, 30, 20)).toBe('tcp-truncated');
    const b = Buffer.from(LINUX_SYN);
    b[12] = 0x40;
    expect(v.reset(b, 0, b.length)).toBe('tcp-bad-data-offset');
  });
});

describe('TCP options walk', () => {
  const o = new TcpOptions();
  const parse = (h: string): string | null => {
    const b = hex(h);
    return parseTcpOptions(b, 0, b.length, o);
  };

  it('clamps the window scale to 14, skips unknown kinds, stops at EOL', () => {
    expect(parse('030310 01 1e04abcd 00 020405b4')).toBe(null);
    expect(o.windowScale).toBe(14);
    // The MSS after EOL is padding, not an option.
    expect(o.mss).toBe(-1);
  });

  it('reports malformed options and never throws', () => {
    expect(parse('0204')).toBe('tcp-bad-options');
    expect(parse('02')).toBe('tcp-bad-options');
    expect(parse('020305')).toBe('tcp-bad-options');
    expect(parse('0201')).toBe('tcp-bad-options');
    expect(parse('1e00')).toBe('tcp-bad-options');
    expect(parse('0303')).toBe('tcp-bad-options');
    expect(parse('0403')).toBe('tcp-bad-options');
    expect(parse('080800000000 0000')).toBe('tcp-bad-options');
    expect(parse('0506 00000001 0000')).toBe('tcp-bad-options');
    expect(parse('050a 00000001 00000002 0000')).toBe(null);
    expect(o.sackCount).toBe(1);
    expect(parse('0502')).toBe('tcp-bad-options');
    expect(parse('050b 00000001 00000002 000000')).toBe('tcp-bad-options');
    expect(parse('0101 0101 0101')).toBe(null);
  });

  it('a view reports bad options through parseOptions', () => {
    const b = Buffer.from(LINUX_SYN);
    // An MSS option claiming 9 bytes is malformed even though 9 bytes are there.
    b[21] = 9;
    const v = new TcpView();
    expect(v.reset(b, 0, b.length)).toBe(null);
    expect(v.parseOptions()).toBe('tcp-bad-options');
  });

  it('survives random option bytes (fuzz)', () => {
    let x = 12345;
    const b = Buffer.alloc(40);
    for (let i = 0; i < 20000; i++) {
      for (let j = 0; j < 40; j++) {
        x = (x * 1103515245 + 12345) >>> 0;
        b[j] = x >>> 24 < 40 ? (x >>> 16) & 7 : x >>> 24;
      }
      const len = i % 41;
      const r = parseTcpOptions(b, 0, len, o);
      expect(r === null || r === 'tcp-bad-options').toBe(true);
      expect(o.sackCount).toBeLessThanOrEqual(4);
      expect(o.windowScale).toBeLessThanOrEqual(14);
    }
  });
});

describe('writeTcpHeader', () => {
  it('reproduces the Linux SYN byte for byte, and its checksum', () => {
    const opts = new TcpOptions();
    opts.mss = 1460;
    opts.sackPermitted = true;
    opts.tsPresent = true;
    opts.tsVal = 0xcf556a83;
    opts.tsEcr = 0;
    opts.windowScale = 10;
    const h = { srcPort: 52290, dstPort: 80, seq: 0xe40e0120, ack: 0, flags: TCP_SYN, window: 64240, urgent: 0 };
    expect(tcpOptionsLength(opts, TCP_SYN)).toBe(20);
    const buf = Buffer.alloc(40, 0xaa);
    expect(writeTcpHeader(buf, 0, h, opts)).toBe(40);
    const want = Buffer.from(LINUX_SYN);
    want.writeUInt16BE(0, 16);
    expect(buf.toString('hex')).toBe(want.toString('hex'));
    const ph = pseudoHeaderSum4(SRC, DST, 6, 40);
    expect(tcpChecksum(buf, ph, 0, 40)).toBe(0x1f88);
    expect(fold(sumBytes(buf, 0, 40, ph))).toBe(0xffff);
    // A stale value in the field does not change the result.
    expect(tcpChecksum(buf, ph, 0, 40)).toBe(0x1f88);
  });

  it('reproduces a data ACK with timestamps and SACK blocks', () => {
    const opts = new TcpOptions();
    opts.tsPresent = true;
    opts.tsVal = 7;
    opts.tsEcr = 9;
    opts.sackCount = 2;
    opts.sack.set([1008, 1016, 1024, 1040]);
    // MSS/WS set on a non-SYN segment are not written.
    opts.mss = 1460;
    opts.windowScale = 7;
    const h = { srcPort: 8080, dstPort: 50000, seq: 100, ack: 1000, flags: TCP_ACK | TCP_PSH, window: 256, urgent: 0 };
    const buf = Buffer.alloc(DATA_ACK.length);
    const hl = writeTcpHeader(buf, 0, h, opts);
    expect(hl).toBe(52);
    buf.write('abc', hl);
    expect(buf.toString('hex')).toBe(DATA_ACK.toString('hex'));
  });

  it('lays out SACK_PERM without timestamps as NOP NOP SACK_PERM, and caps SACK blocks to fit', () => {
    const opts = new TcpOptions();
    opts.mss = 1460;
    opts.sackPermitted = true;
    opts.windowScale = 7;
    const buf = Buffer.alloc(60);
    const h = { srcPort: 1, dstPort: 2, seq: 3, ack: 0, flags: TCP_SYN, window: 65535, urgent: 0 };
    expect(writeTcpHeader(buf, 0, h, opts)).toBe(32);
    expect(buf.subarray(20, 32).toString('hex')).toBe('020405b4' + '01030307' + '01010402');
    const d = new TcpOptions();
    d.sackCount = 4;
    d.tsPresent = true;
    const f = { ...h, flags: TCP_ACK | TCP_FIN };
    // With timestamps only 3 blocks fit: 20 + 12 + 4 + 24 = 60.
    expect(writeTcpHeader(buf, 0, f, d)).toBe(60);
    const v = new TcpView();
    expect(v.reset(buf, 0, 60)).toBe(null);
    expect(v.parseOptions()).toBe(null);
    expect(v.options.sackCount).toBe(3);
    d.tsPresent = false;
    expect(writeTcpHeader(buf, 0, f, d)).toBe(56);
    expect(writeTcpHeader(buf, 0, f, null)).toBe(20);
  });

  it('round-trips through TcpView', () => {
    const opts = new TcpOptions();
    opts.tsPresent = true;
    opts.tsVal = 0xffffffff;
    opts.tsEcr = 1;
    const buf = Buffer.alloc(40);
    const h = { srcPort: 65535, dstPort: 1, seq: 0xfffffffe, ack: 0x80000000, flags: 0xff, window: 0xffff, urgent: 0x1234 };
    const hl = writeTcpHeader(buf, 4, h, opts);
    const v = new TcpView();
    expect(v.reset(buf, 4, hl)).toBe(null);
    expect([v.srcPort, v.dstPort, v.seq, v.ack, v.flags, v.window, v.urgent]).toEqual([
      65535, 1, 0xfffffffe, 0x80000000, 0xff, 0xffff, 0x1234,
    ]);
    expect(v.parseOptions()).toBe(null);
    expect([v.options.tsVal, v.options.tsEcr]).toEqual([0xffffffff, 1]);
  });
});
