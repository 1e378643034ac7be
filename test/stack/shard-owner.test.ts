import { describe, expect, it } from 'vitest';
import { BROADCAST, forwardPortKey, frameOwner } from '../../stack/shard-owner.js';

const GUEST = [10, 0, 2, 100];
const REMOTE = [10, 0, 2, 2];

function eth(type: number, payload: number[]): Buffer {
  return Buffer.from([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, type >> 8, type & 0xff, ...payload]);
}

function ipv4(proto: number, src: number[], dst: number[], l4: number[], flags = 0): number[] {
  const total = 20 + l4.length;
  return [0x45, 0, total >> 8, total & 0xff, 0, 1, flags >> 8, flags & 0xff, 64, proto, 0, 0, ...src, ...dst, ...l4];
}

function ports(sport: number, dport: number, rest = 16): number[] {
  return [sport >> 8, sport & 0xff, dport >> 8, dport & 0xff, ...new Array<number>(rest).fill(0)];
}

const tcp4 = (sport: number, dport: number, flags = 0) => eth(0x0800, ipv4(6, GUEST, REMOTE, ports(sport, dport), flags));
const udp4 = (sport: number, dport: number) => eth(0x0800, ipv4(17, GUEST, REMOTE, ports(sport, dport, 4)));
const own = (b: Buffer, shards = 2, fwd: Set<number> | null = null) => frameOwner(b, 0, b.length, shards, fwd);

describe('frameOwner', () => {
  it('gives every frame to shard 0 when there is one shard', () => {
    expect(own(tcp4(40000, 80), 1)).toBe(0);
  });

  it('spreads TCP and UDP flows over the shards, the same for every frame of a flow', () => {
    for (const shards of [2, 3, 4]) {
      const count = new Array<number>(shards).fill(0);
      for (let p = 30000; p < 31000; p++) {
        const o = own(tcp4(p, 443), shards);
        expect(o).toBe(own(tcp4(p, 443), shards));
        count[o]++;
      }
      // A hash, not a round robin: each shard gets a fair share of 1000 flows.
      for (const c of count) expect(c).toBeGreaterThan(1000 / shards / 2);
    }
    const u = new Set<number>();
    for (let p = 30000; p < 30100; p++) u.add(own(udp4(p, 53)));
    expect(u).toEqual(new Set([0, 1]));
  });

  it('sends a flow from a forwarded guest port to shard 0, per protocol', () => {
    const fwd = new Set([forwardPortKey(6, 8000)]);
    const spread = new Set<number>();
    for (let p = 1000; p < 1100; p++) {
      expect(own(tcp4(8000, p), 2, fwd)).toBe(0);
      spread.add(own(udp4(8000, p), 2, fwd));
    }
    expect(spread).toEqual(new Set([0, 1]));
  });

  it('gives DHCP, ARP requests, fragments, unknown types and IPv6 solicitations to shard 0; ARP replies and advertisements to all', () => {
    for (let p = 0; p < 50; p++) {
      expect(own(udp4(68 + p * 0, 67))).toBe(0);
      expect(own(tcp4(30000 + p, 80, 0x2000))).toBe(0); // more fragments
      expect(own(tcp4(30000 + p, 80, 0x0010))).toBe(0); // offset
    }
    const arp = (op: number) => eth(0x0806, [0, 1, 8, 0, 6, 4, 0, op, ...new Array<number>(20).fill(0)]);
    expect(own(arp(1))).toBe(0);
    expect(own(arp(2))).toBe(BROADCAST);
    expect(own(eth(0x88b5, new Array<number>(40).fill(0)))).toBe(0);
    const icmp6 = (type: number) => eth(0x86dd, [0x60, 0, 0, 0, 0, 8, 58, 255, ...new Array<number>(32).fill(1), type, 0, 0, 0, 0, 0, 0, 0]);
    expect(own(icmp6(133))).toBe(0);
    expect(own(icmp6(135))).toBe(0);
    expect(own(icmp6(136))).toBe(BROADCAST);
  });

  it('gives an ICMP error to the owner of the flow it quotes', () => {
    for (let p = 30000; p < 30040; p++) {
      // The guest got a datagram from REMOTE:53 to GUEST:p and answers port unreachable.
      const quoted = ipv4(17, REMOTE, GUEST, ports(53, p, 4));
      const err = eth(0x0800, ipv4(1, GUEST, REMOTE, [3, 3, 0, 0, 0, 0, 0, 0, ...quoted]));
      expect(own(err)).toBe(own(udp4(p, 53)));
    }
  });

  it('never reads past a short frame', () => {
    const full = tcp4(40000, 80);
    for (let n = 0; n < full.length; n++) {
      const o = frameOwner(full, 0, n, 2, null);
      expect(o === 0 || o === 1).toBe(true);
    }
  });
});
