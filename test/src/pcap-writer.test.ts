import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Frame, Port } from '../../stack/frame.js';
import { openCapture, PcapngWriter } from '../../src/pcap-writer.js';
import { MAC_A, MAC_B, MAC_C, ethernet, ipv4Partial, pattern } from '../helpers/channel-port.js';

const tap0 = { name: 'tap0' } as Port;
const gateway = { name: 'gateway' } as Port;
/** Attached after the first frames, as a daemon guest is. */
const late = { name: 'qemu:unix:/run/vm.sock#1' } as Port;

function frame(bytes: Buffer): Frame {
  // Leading bytes stand where a virtio-net header would be: never recorded.
  const buf = Buffer.concat([Buffer.alloc(12, 0xaa), bytes]);
  return { buf, off: 12, len: bytes.length, vnet: true };
}

const udp = ethernet(MAC_B, MAC_A, 0x0800, ipv4Partial({ proto: 'udp', payload: pattern(21) }).bytes);
const reply = ethernet(MAC_A, MAC_B, 0x0800, ipv4Partial({ proto: 'udp', payload: pattern(22) }).bytes);
const big = ethernet(MAC_A, MAC_C, 0x0800, ipv4Partial({ proto: 'tcp', payload: pattern(70_000 - 54) }).bytes);

let dir = '';
afterEach(() => {
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
  dir = '';
});

/** Writes the three ports' frames: tap0, gateway, tap0, then the late port's. */
function writeSample(format: 'pcapng' | 'pcap'): string {
  dir = mkdtempSync(join(tmpdir(), 'i19o-pcap-'));
  const file = join(dir, `x.${format}`);
  const w = openCapture(file, format);
  w.record(frame(udp), tap0, 1_700_000_000_000);
  w.record(frame(reply), gateway, 1_700_000_000_001.5);
  w.record(frame(udp), tap0, 1_700_000_000_002);
  w.record(frame(big), late, 1_700_000_000_003);
  expect(w.records).toBe(4);
  if (w instanceof PcapngWriter) expect(w.interfaceCount).toBe(3);
  w.close();
  return file;
}

describe('pcapng writer', () => {
  it('one IDB per port before its first frame; EPBs name the interface; the file is whole blocks', () => {
    const file = writeSample('pcapng');
    const b = readFileSync(file);
    const blocks: { type: number; len: number; off: number }[] = [];
    for (let off = 0; off < b.length; ) {
      const len = b.readUInt32LE(off + 4);
      expect(len % 4).toBe(0);
      expect(b.readUInt32LE(off + len - 4)).toBe(len);
      blocks.push({ type: b.readUInt32LE(off), len, off });
      off += len;
    }
    // SHB, IDB tap0, EPB, IDB gateway, EPB, EPB, IDB late, EPB
    expect(blocks.map((k) => k.type)).toEqual([0x0a0d0d0a, 1, 6, 1, 6, 6, 1, 6]);
    const epbIfaces = blocks.filter((k) => k.type === 6).map((k) => b.readUInt32LE(k.off + 8));
    expect(epbIfaces).toEqual([0, 1, 0, 2]);
    const names = blocks.filter((k) => k.type === 1).map((k) => b.toString('utf8', k.off + 20, k.off + 20 + b.readUInt16LE(k.off + 18)));
    expect(names).toEqual(['tap0', 'gateway', 'qemu:unix:/run/vm.sock#1']);
    // The frame bytes, without the virtio-net header in front of them.
    const first = blocks.find((k) => k.type === 6)!;
    expect(b.subarray(first.off + 28, first.off + 28 + udp.length).equals(udp)).toBe(true);
  });

  it.runIf(existsSync('/usr/bin/tcpdump'))('tcpdump reads it', () => {
    const file = writeSample('pcapng');
    const text = execFileSync('tcpdump', ['-r', file, '-nn', '-e', '-tt'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const lines = text.trim().split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/^1700000000\.000000 02:00:00:00:00:0a > 02:00:00:00:00:0b/);
    expect(lines[1]).toMatch(/^1700000000\.001500 02:00:00:00:00:0b > 02:00:00:00:00:0a/);
    expect(lines[3]).toContain('length 70000');
  });

  it.runIf(existsSync('/usr/bin/tshark'))('tshark names the interface each frame came in on', () => {
    const file = writeSample('pcapng');
    const text = execFileSync('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.interface_name', '-e', 'eth.src'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    expect(text.trim().split('\n')).toEqual([
      'tap0\t02:00:00:00:00:0a',
      'gateway\t02:00:00:00:00:0b',
      'tap0\t02:00:00:00:00:0a',
      'qemu:unix:/run/vm.sock#1\t02:00:00:00:00:0c',
    ]);
  });

  it.runIf(existsSync('/usr/bin/tcpdump'))('--pcap-format pcap: the classic format, still', () => {
    const file = writeSample('pcap');
    expect(readFileSync(file).readUInt32LE(0)).toBe(0xa1b2c3d4);
    const text = execFileSync('tcpdump', ['-r', file, '-nn', '-e', '-tt'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    expect(text.trim().split('\n')).toHaveLength(4);
  });

  it('a buffer that fills is written out in between, blocks kept whole', () => {
    dir = mkdtempSync(join(tmpdir(), 'i19o-pcap-'));
    const file = join(dir, 'many.pcapng');
    const w = new PcapngWriter(file);
    // 40 super-frames of 70 kB: more than the 1 MiB buffer.
    for (let i = 0; i < 40; i++) w.record(frame(big), i % 2 === 0 ? tap0 : gateway, 1_700_000_000_000 + i);
    w.close();
    const b = readFileSync(file);
    let off = 0;
    let epbs = 0;
    while (off < b.length) {
      const len = b.readUInt32LE(off + 4);
      if (b.readUInt32LE(off) === 6) epbs++;
      off += len;
    }
    expect(off).toBe(b.length);
    expect(epbs).toBe(40);
  });
});
