import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  PCAP_DEFAULT_SNAPLEN,
  PCAP_GLOBAL_HEADER_LEN,
  PCAP_RECORD_HEADER_LEN,
  captureLength,
  writeGlobalHeader,
  writeRecordHeader,
} from '../../stack/pcap.js';
import { MAC_A, MAC_B, ethernet, ipv4Partial, pattern } from '../helpers/channel-port.js';

describe('pcap encoding', () => {
  it('global header: golden bytes with the default snaplen', () => {
    const b = Buffer.alloc(PCAP_GLOBAL_HEADER_LEN + 4, 0xee);
    expect(writeGlobalHeader(b, 2)).toBe(2 + 24);
    expect(b.subarray(2, 26).toString('hex')).toBe(
      'd4c3b2a1' + '0200' + '0400' + '00000000' + '00000000' + '00000400' + '01000000',
    );
    // Bytes around it are untouched.
    expect(b[0]).toBe(0xee);
    expect(b[1]).toBe(0xee);
    expect(b[26]).toBe(0xee);
    expect(PCAP_DEFAULT_SNAPLEN).toBe(262_144);
  });

  it('global header with an explicit snaplen', () => {
    const b = Buffer.alloc(24);
    writeGlobalHeader(b, 0, 65535);
    expect(b.subarray(16, 20).toString('hex')).toBe('ffff0000');
  });

  it('record header: golden bytes', () => {
    const b = Buffer.alloc(PCAP_RECORD_HEADER_LEN);
    expect(writeRecordHeader(b, 0, 1_700_000_000_123.456, 60, 1514)).toBe(16);
    // sec 1700000000 = 0x6553f100, usec 123456 = 0x0001e240
    expect(b.toString('hex')).toBe('00f15365' + '40e20100' + '3c000000' + 'ea050000');
  });

  it('record header: microseconds never reach one second', () => {
    const b = Buffer.alloc(16);
    writeRecordHeader(b, 0, 999.9999, 1, 1);
    expect(b.readUInt32LE(0)).toBe(1);
    expect(b.readUInt32LE(4)).toBe(0);
    writeRecordHeader(b, 0, 2500.0004, 1, 1);
    expect(b.readUInt32LE(0)).toBe(2);
    expect(b.readUInt32LE(4)).toBe(500_000);
  });

  it('captureLength cuts at snaplen', () => {
    expect(captureLength(100)).toBe(100);
    expect(captureLength(70_000)).toBe(70_000);
    expect(captureLength(300_000)).toBe(262_144);
    expect(captureLength(1514, 96)).toBe(96);
  });

  it.runIf(existsSync('/usr/bin/tcpdump'))('tcpdump reads a file we wrote', () => {
    const frames = [
      ethernet(MAC_B, MAC_A, 0x0800, ipv4Partial({ proto: 'udp', payload: pattern(20) }).bytes),
      ethernet(MAC_A, MAC_B, 0x0800, ipv4Partial({ proto: 'tcp', payload: pattern(70_000 - 54) }).bytes),
    ];
    const parts: Buffer[] = [];
    const g = Buffer.alloc(24);
    writeGlobalHeader(g, 0);
    parts.push(g);
    frames.forEach((f, i) => {
      const r = Buffer.alloc(16);
      writeRecordHeader(r, 0, 1_700_000_000_000 + i * 1.5, captureLength(f.length), f.length);
      parts.push(r, f);
    });
    const dir = mkdtempSync(join(tmpdir(), 'usernet-pcap-'));
    try {
      const file = join(dir, 'x.pcap');
      writeFileSync(file, Buffer.concat(parts));
      const text = execFileSync('tcpdump', ['-r', file, '-nn', '-e', '-tt'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      const lines = text.trim().split('\n');
      expect(lines.length).toBe(2);
      expect(lines[0]).toMatch(/^1700000000\.000000 02:00:00:00:00:0a > 02:00:00:00:00:0b/);
      expect(lines[0]).toContain('10.0.2.15.5353 > 93.184.216.34.53');
      expect(lines[1]).toMatch(/^1700000000\.001500 /);
      expect(lines[1]).toContain('length 70000');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
