import { describe, expect, it } from 'vitest';
import type { Frame, FrameSink, Port } from '../../stack/frame.js';
import { Gateway } from '../../stack/gateway.js';
import { prng } from '../helpers/prng.js';

/**
 * Mutation fuzzing of the gateway: valid seed frames, randomly damaged with a
 * seeded PRNG (so every run is the same), fed with and without a virtio-net
 * header. Nothing may throw, every frame must be answered or counted exactly
 * once, and every frame the gateway emits must be well-formed.
 */

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

const NETWORK = 0x0a000200;
const GW_MAC = 0x52550a000202;

const SEEDS: Buffer[] = [
  // ARP who-has 10.0.2.2 and 10.0.2.3 (captured from Linux)
  hex('ffffffffffff02000000000f0806000108000604000102000000000f0a00020f0000000000000a000202'),
  hex('ffffffffffff02000000000f0806000108000604000102000000000f0a00020f0000000000000a000203'),
  // ICMP echo request to 10.0.2.2 (captured)
  hex('52550a00020202000000000f08004500002c4a2e40004001d8920a00020f0a00020208005c690fa200012a05046b000000004f830e0000000000'),
  // ICMP echo request with the record-route option (captured)
  hex(
    '52550a00020202000000000f08004f00004c4a2f400040019a530a00020f0a000202010727080a00020f' +
      '00'.repeat(32) +
      '0800dc4b0fa300010001020304050607',
  ),
  // TCP SYN to 93.184.216.34:80 (captured, checksum completed)
  hex(
    '52550a00020202000000000f08004500003c587940004006a0590a00020f5db8d822cc420050e40e012000000000a002faf0' +
      '1f880000020405b40402080acf556a83000000000103030a',
  ),
  // UDP to 10.0.2.3:53
  hex('52550a00020202000000000f08004500002112344000401110870a00020f0a0002039c400035000d077b68656c6c6f'),
];

/** Independent one's-complement sum (not stack/wire/checksum.ts). */
function onesSum(b: Buffer, off: number, len: number): number {
  let s = 0;
  for (let i = 0; i < len; i += 2) s += (b[off + i] << 8) | (i + 1 < len ? b[off + i + 1] : 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

function fixIpChecksum(f: Buffer): void {
  if (f.length < 34) return;
  const hl = (f[14] & 0x0f) * 4;
  if (hl < 20 || 14 + hl > f.length) return;
  f.writeUInt16BE(0, 24);
  f.writeUInt16BE(~onesSum(f, 14, hl) & 0xffff, 24);
}

function fixIcmpChecksum(f: Buffer): void {
  if (f.length < 34) return;
  const hl = (f[14] & 0x0f) * 4;
  const total = f.readUInt16BE(16);
  const len = Math.min(total - hl, f.length - 14 - hl);
  if (hl < 20 || len < 4) return;
  f.writeUInt16BE(0, 14 + hl + 2);
  f.writeUInt16BE(~onesSum(f, 14 + hl, len) & 0xffff, 14 + hl + 2);
}

function mutateOnce(f: Buffer, rnd: () => number): Buffer {
  const pick = (n: number): number => Math.floor(rnd() * n);
  const at = (): number => pick(Math.max(f.length, 1));
  switch (pick(10)) {
    case 0:
      if (f.length) f[at()] ^= 1 << pick(8);
      return f;
    case 1:
      return f.subarray(0, pick(f.length + 1));
    case 2: {
      const extra = Buffer.alloc(1 + pick(64));
      for (let i = 0; i < extra.length; i++) extra[i] = pick(256);
      return Buffer.concat([f, extra]);
    }
    case 3:
      if (f.length) f[at()] = 0;
      return f;
    case 4:
      if (f.length) f[at()] = 0xff;
      return f;
    case 5: {
      // Length-like fields: IPv4 IHL / total length, UDP length, ARP hlen/plen.
      const fields = [14, 16, 17, 18, 19, 38, 39];
      const i = fields[pick(fields.length)];
      if (i < f.length) f[i] = [0, 0xff, 0x45, 0x4f, f[i] + 1, f[i] - 1, pick(256)][pick(7)] & 0xff;
      return f;
    }
    case 6:
      if (f.length) f[at()] = pick(256);
      return f;
    case 7:
      // Repair the header checksum so that mutations reach the layers behind it.
      fixIpChecksum(f);
      return f;
    case 8:
      fixIcmpChecksum(f);
      return f;
    default: {
      // Retarget: another destination address or ethertype.
      if (f.length >= 34 && rnd() < 0.5) {
        f.writeUInt32BE([0x0a000202, 0x0a000203, 0x0a0002ff, 0xffffffff, 0xe00000fb, 0x08080808, 0][pick(7)], 30);
        fixIpChecksum(f);
      } else if (f.length >= 14) {
        f.writeUInt16BE([0x0800, 0x0806, 0x86dd, 0x8100, pick(65536)][pick(5)], 12);
      }
      return f;
    }
  }
}

interface Check {
  input: Buffer;
  problems: string[];
  replies: number;
}

/** Asserts (by collecting problems) that an emitted frame is well-formed and answers `input`. */
class CheckingSink implements FrameSink {
  constructor(private readonly check: Check) {}
  input(_from: Port, frame: Frame, _now: number): void {
    const c = this.check;
    c.replies++;
    const f = frame.buf.subarray(frame.off, frame.off + frame.len);
    const bad = (why: string): void => {
      if (c.problems.length < 20) c.problems.push(`${why}: in=${c.input.toString('hex')} out=${Buffer.from(f).toString('hex')}`);
    };
    if (frame.vnet) bad('vnet frame emitted');
    if (f.length < 14) return bad('short');
    const b = Buffer.from(f);
    if (b.readUIntBE(6, 6) !== GW_MAC) bad('source MAC');
    const type = b.readUInt16BE(12);
    if (type === 0x0806) {
      // ARP answers the sender hardware address of the request, as Linux does.
      if (b.readUIntBE(0, 6) !== c.input.readUIntBE(22, 6)) bad('ARP not sent back to the asker');
      if (b.length !== 42) return bad('ARP length');
      if (b.readUInt32BE(14) !== 0x00010800 || b.readUInt16BE(18) !== 0x0604 || b.readUInt16BE(20) !== 2) bad('ARP header');
      if (b.readUIntBE(22, 6) !== GW_MAC) bad('ARP sender MAC');
      const spa = b.readUInt32BE(28);
      if (spa !== 0x0a000202 && spa !== 0x0a000203) bad('ARP sender IP');
      if (spa !== c.input.readUInt32BE(38)) bad('ARP answers another target');
      if (b.readUIntBE(32, 6) !== c.input.readUIntBE(22, 6)) bad('ARP target MAC');
      return;
    }
    if (type !== 0x0800) return bad('ethertype');
    if (b.readUIntBE(0, 6) !== c.input.readUIntBE(6, 6)) bad('not sent back to the asker');
    if (b[14] !== 0x45) bad('IP version/IHL');
    const total = b.readUInt16BE(16);
    if (14 + total !== b.length) bad('IP total length');
    if (onesSum(b, 14, 20) !== 0xffff) bad('IP checksum');
    if (b[22] !== 64 || b[23] !== 1) bad('TTL/protocol');
    if ((b.readUInt16BE(20) & 0xbfff) !== 0) bad('fragment bits');
    const src = b.readUInt32BE(26);
    if (src !== 0x0a000202 && src !== 0x0a000203) bad('IP source');
    if (total < 28) return bad('ICMP too short');
    if (onesSum(b, 34, total - 20) !== 0xffff) bad('ICMP checksum');
    if (b[34] !== 0 || b[35] !== 0) bad('not an echo reply');
    // Identifier, sequence and data come back unchanged.
    const ihl = (c.input[14] & 0x0f) * 4;
    const reqIcmp = c.input.subarray(14 + ihl, 14 + c.input.readUInt16BE(16));
    if (!b.subarray(38).equals(reqIcmp.subarray(4))) bad('echo data');
  }
}

function run(vnet: boolean, seed: number, iterations: number) {
  const rnd = prng(seed);
  const check: Check = { input: Buffer.alloc(0), problems: [], replies: 0 };
  const gw = new Gateway({ network: NETWORK, prefix: 24, mac: GW_MAC, mtu: 1500, txArenaBytes: 1 }, new CheckingSink(check));
  let thrown = 0;
  for (let n = 0; n < iterations; n++) {
    let f: Buffer = Buffer.from(SEEDS[Math.floor(rnd() * SEEDS.length)]);
    // One in ten frames stays intact, so the answering paths keep running.
    const rounds = rnd() < 0.1 ? 0 : 1 + Math.floor(rnd() * 4);
    for (let r = 0; r < rounds; r++) f = mutateOnce(f, rnd);
    check.input = f;

    const lead = (vnet ? 10 : 0) + Math.floor(rnd() * 4);
    const buf = Buffer.alloc(lead + f.length + Math.floor(rnd() * 8));
    for (let i = 0; i < buf.length; i++) buf[i] = Math.floor(rnd() * 256);
    f.copy(buf, lead);
    if (vnet) {
      const h = lead - 10;
      if (rnd() < 0.5) buf.fill(0, h, lead);
      else {
        buf[h] = [0, 1, 2, 3, Math.floor(rnd() * 256)][Math.floor(rnd() * 5)];
        buf[h + 1] = [0, 0, 0, 1, 3, 4, 5, 0x81, Math.floor(rnd() * 256)][Math.floor(rnd() * 9)];
      }
    }
    const frame: Frame = { buf, off: lead, len: f.length, vnet };
    try {
      gw.deliver(frame, n);
    } catch (e) {
      thrown++;
      if (check.problems.length < 20) check.problems.push(`threw ${String(e)} on ${f.toString('hex')}`);
    }
  }
  return { gw, check, thrown };
}

describe('gateway fuzz', () => {
  for (const vnet of [false, true]) {
    it(`survives ${vnet ? 'vnet' : 'plain'} mutated frames and emits only well-formed replies`, () => {
      const iterations = 20_000;
      const { gw, check, thrown } = run(vnet, vnet ? 0xc0ffee : 0x5eed, iterations);
      expect(thrown).toBe(0);
      expect(check.problems).toEqual([]);

      const c = gw.counters;
      const drops = Object.values(c.drops).reduce((a, b) => a + b, 0);
      expect(c.rxFrames).toBe(iterations);
      expect(drops).toBeGreaterThan(0);
      expect(c.txFrames).toBe(check.replies);
      // Every frame was answered or counted, exactly once.
      expect(drops + c.txFrames).toBe(iterations);

      const s = gw.stats();
      expect(s.arpReplies).toBeGreaterThan(0);
      expect(s.echoReplies).toBeGreaterThan(0);
      expect(s.arpReplies + s.echoReplies).toBe(c.txFrames);
      // The mutations reach deep paths, not just the first length check.
      for (const reason of ['eth-truncated', 'ipv4-bad-checksum', 'icmp-bad-checksum', 'arp-other-target', 'not-for-us'] as const) {
        expect(c.drops[reason] ?? 0, reason).toBeGreaterThan(0);
      }
    });
  }

  it('is deterministic', () => {
    const a = run(true, 42, 2_000).gw.counters.snapshot();
    const b = run(true, 42, 2_000).gw.counters.snapshot();
    expect(a).toEqual(b);
  });
});
