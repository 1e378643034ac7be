/**
 * Mutation fuzzing of the DHCP parser and server: seeded, so a failure
 * reproduces. Nothing may throw; every message is either answered with a
 * reply that parses back, or counted, or is a DECLINE/RELEASE (never answered).
 */
import { describe, expect, it } from 'vitest';
import { DhcpServer } from '../../stack/dhcp-server.js';
import { DHCP_DECLINE, DHCP_OPTIONS_OFFSET, DHCP_RELEASE, DhcpRepr } from '../../stack/wire/dhcp.js';
import { prng as rng } from '../helpers/prng.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

const FIXED = (xid: string, ciaddr: string, mac: string): string =>
  '01 01 06 00' + xid + '0000 0000' + ciaddr + '00000000 00000000 00000000' + mac + '00'.repeat(10 + 192) + '63825363';

const SEEDS = [
  // The captured udhcpc DISCOVER.
  hex(
    FIXED('d96e4e46', '00000000', '02000000000f') +
      '3501013902024037070103060c0f1c2a0c03626f783c0c756468637020312e33352e303d070102000000000fff' +
      '00'.repeat(15),
  ),
  // REQUEST (SELECTING) for 10.0.2.15 from 10.0.2.2.
  hex(FIXED('00000001', '00000000', '02000000000f') + '350103 32040a00020f 36040a000202 3d0701 02000000000f ff'),
  // RENEWING.
  hex(FIXED('00000002', '0a00020f', '02000000000f') + '350103 ff'),
  // DECLINE, RELEASE, INFORM.
  hex(FIXED('00000003', '00000000', '020000000010') + '350104 32040a000210 36040a000202 ff'),
  hex(FIXED('00000004', '0a000210', '020000000010') + '350107 36040a000202 ff'),
  hex(FIXED('00000005', '0a000264', '020000000011') + '350108 370401030f06 ff'),
];

function mutate(r: () => number, seed: Buffer): Buffer {
  let b = Buffer.from(seed);
  const n = 1 + Math.floor(r() * 6);
  for (let k = 0; k < n; k++) {
    const what = r();
    if (what < 0.4) {
      // Flip a byte, biased towards the options and the fields the server reads.
      const at = r() < 0.6 ? DHCP_OPTIONS_OFFSET + Math.floor(r() * Math.max(1, b.length - DHCP_OPTIONS_OFFSET)) : Math.floor(r() * b.length);
      if (at < b.length) b[at] = Math.floor(r() * 256);
    } else if (what < 0.55) {
      b = b.subarray(0, Math.floor(r() * b.length));
    } else if (what < 0.75) {
      // Insert a random option (possibly lying about its length) after the cookie.
      const code = Math.floor(r() * 256);
      const len = Math.floor(r() * 12);
      const body = Buffer.alloc(Math.floor(r() * 12)).map(() => Math.floor(r() * 256));
      b = Buffer.concat([b.subarray(0, DHCP_OPTIONS_OFFSET), Buffer.from([code, len]), body, b.subarray(DHCP_OPTIONS_OFFSET)]);
    } else if (what < 0.85) {
      // A plausible message type in the first option.
      if (b.length > DHCP_OPTIONS_OFFSET + 2 && b[DHCP_OPTIONS_OFFSET] === 53) b[DHCP_OPTIONS_OFFSET + 2] = Math.floor(r() * 10);
    } else if (what < 0.93) {
      // Another client: chaddr's last byte.
      if (b.length > 33) b[33] = Math.floor(r() * 40);
    } else {
      b = Buffer.concat([b, Buffer.alloc(Math.floor(r() * 40)).map(() => Math.floor(r() * 256))]);
    }
  }
  return b;
}

function dropTotal(s: DhcpServer): number {
  let n = 0;
  for (const c of Object.values(s.counters.drops)) n += c;
  return n;
}

describe('DHCP fuzz', () => {
  it('parses mutated messages without throwing, and round-trips what parses', () => {
    const r = rng(0xd4c9);
    const repr = new DhcpRepr();
    const back = new DhcpRepr();
    let parsed = 0;
    let refused = 0;
    for (let i = 0; i < 10_000; i++) {
      const m = mutate(r, SEEDS[i % SEEDS.length]);
      const off = Math.floor(r() * 4);
      const framed = Buffer.concat([Buffer.alloc(off, 0xaa), m]);
      const bad = repr.parse(framed, off, m.length);
      if (bad !== null) {
        expect(bad).toMatch(/^dhcp-/);
        refused++;
        continue;
      }
      parsed++;
      const out = Buffer.alloc(repr.bufferLen());
      expect(repr.emitInto(out, 0)).toBe(out.length);
      expect(back.parse(out, 0, out.length)).toBeNull();
      expect(back.messageType).toBe(repr.messageType);
      expect(back.xid).toBe(repr.xid);
      expect(back.chaddr).toBe(repr.chaddr);
      expect(back.requestedIp).toBe(repr.requestedIp);
      expect(back.serverId).toBe(repr.serverId);
    }
    expect(parsed).toBeGreaterThan(1000);
    expect(refused).toBeGreaterThan(1000);
  });

  it('serves mutated traffic without throwing; every message is answered or counted', () => {
    const r = rng(0x5eed);
    const s = new DhcpServer({ network: 0x0a000200, prefix: 24, rangeCount: 8 });
    const reply = new DhcpRepr();
    const probe = new DhcpRepr();
    let now = 0;
    let answered = 0;
    for (let i = 0; i < 10_000; i++) {
      now += Math.floor(r() * 30_000_000);
      const m = mutate(r, SEEDS[i % SEEDS.length]);
      const before = dropTotal(s);
      const res = s.handlePayload(m, 0, m.length, now);
      const dropped = dropTotal(s) - before;
      if (res !== null) {
        answered++;
        expect(dropped).toBe(0);
        const out = Buffer.alloc(res.reply.bufferLen());
        res.reply.emitInto(out, 0);
        expect(out.length).toBeGreaterThanOrEqual(300);
        expect(reply.parse(out, 0, out.length)).toBeNull();
        if (reply.yiaddr !== 0) {
          expect(reply.yiaddr).toBeGreaterThanOrEqual(s.rangeStart);
          expect(reply.yiaddr).toBeLessThan(s.rangeStart + s.rangeCount);
        }
        expect(res.broadcast ? res.dstIp === 0xffffffff : res.dstIp !== 0).toBe(true);
      } else if (dropped === 0) {
        probe.parse(m, 0, m.length);
        expect([DHCP_DECLINE, DHCP_RELEASE]).toContain(probe.messageType);
      } else {
        expect(dropped).toBe(1);
      }
      expect(s.leases(now).length).toBeLessThanOrEqual(s.rangeCount);
    }
    expect(answered).toBeGreaterThan(500);
    expect(Object.keys(s.counters.drops).length).toBeGreaterThan(5);
  });
});
