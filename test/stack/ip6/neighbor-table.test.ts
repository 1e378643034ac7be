import { describe, expect, it } from 'vitest';
import { Ipv6NeighborTable } from '../../../stack/ip6/neighbor-table.js';
import { parseIpv6 } from '../../../stack/wire/ipv6-address.js';
import { formatMac, macToBytes, readMac } from '../../../stack/wire/mac.js';

describe('Ipv6NeighborTable', () => {
  it('is bounded and evicts the least recently seen', () => {
    const t = new Ipv6NeighborTable(4);
    const a = (n: number) => parseIpv6(`fd00::${n.toString(16)}`)!;
    const mac = (n: number) => macToBytes(0x0200_0000_0000 + n);
    for (let i = 1; i <= 4; i++) t.learn(a(i), 0, mac(i), 0, i);
    expect(t.size).toBe(4);
    t.learn(a(1), 0, mac(11), 0, 10); // refresh 1
    t.learn(a(5), 0, mac(5), 0, 11); // evicts 2 (oldest)
    expect(t.size).toBe(4);
    expect(t.lookup(a(2), 0)).toBe(-1);
    expect(t.lookup(a(1), 0)).toBe(0x0200_0000_0000 + 11);
    expect(t.lookup(a(5), 0)).toBe(0x0200_0000_0000 + 5);
    for (let i = 100; i < 200; i++) t.learn(a(i), 0, mac(i), 0, 100 + i);
    expect(t.size).toBe(4);
    for (let i = 196; i < 200; i++) expect(t.lookup(a(i), 0)).toBe(0x0200_0000_0000 + i);
    const out = new Uint8Array(8);
    expect(t.copyMac(a(199), 0, out, 1)).toBe(true);
    expect(formatMac(readMac(out, 1))).toBe('02:00:00:00:00:c7');
    expect(t.copyMac(a(1), 0, out, 1)).toBe(false);
  });
});
