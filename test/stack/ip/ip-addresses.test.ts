import { describe, expect, it } from 'vitest';
import { IpAddresses, IPV6_HANDLE_BASE, isIpv6Handle } from '../../../stack/ip/ip-addresses.js';
import { AddressMap } from '../../../stack/nat/address-map.js';
import { endpointKey } from '../../../stack/nat/flow-key.js';
import { UdpFlowTable } from '../../../stack/nat/udp-flows.js';
import { parseIpv4 } from '../../../stack/wire/ipv4-address.js';
import { parseIpv6, parsePrefix, prefixHost } from '../../../stack/wire/ipv6-address.js';
import { checksum, pseudoHeaderSum6 } from '../../../stack/wire/checksum.js';

const v6 = (t: string) => parseIpv6(t)!;

describe('IpAddresses', () => {
  it('keeps IPv4 addresses as themselves and interns IPv6 ones above 2^32', () => {
    const a = new IpAddresses(8);
    expect(a.parse('10.0.2.15')).toBe(parseIpv4('10.0.2.15'));
    const h = a.parse('fd00::1');
    expect(isIpv6Handle(h)).toBe(true);
    expect(h).toBeGreaterThanOrEqual(IPV6_HANDLE_BASE);
    expect(a.format(h)).toBe('fd00::1');
    expect(a.find(v6('fd00::1'), 0)).toBe(h);
    expect(a.acquire(v6('fd00::1'), 0)).toBe(h);
    expect(a.size).toBe(1);
  });

  it('frees a slot when its last reference goes, and never finds a released address', () => {
    const a = new IpAddresses(2);
    const x = a.acquire(v6('2001:db8::1'), 0);
    a.retain(x);
    a.release(x);
    expect(a.find(v6('2001:db8::1'), 0)).toBe(x);
    a.release(x);
    expect(a.find(v6('2001:db8::1'), 0)).toBe(-1);
    expect(a.size).toBe(0);
    // Extra releases of a freed handle change nothing.
    a.release(x);
    expect(a.size).toBe(0);
  });

  it('refuses new addresses when full, and counts it', () => {
    const a = new IpAddresses(2);
    expect(a.acquire(v6('::a'), 0)).toBeGreaterThan(0);
    expect(a.acquire(v6('::b'), 0)).toBeGreaterThan(0);
    expect(a.acquire(v6('::c'), 0)).toBe(-1);
    expect(a.refusedFull).toBe(1);
    expect(() => a.parse('::d')).toThrow(/full/);
  });

  it('survives many colliding inserts and removals in random order', () => {
    const a = new IpAddresses(512);
    const handles: number[] = [];
    for (let i = 0; i < 500; i++) {
      const b = v6('fd00::');
      b[14] = i >> 8;
      b[15] = i & 0xff;
      handles.push(a.acquire(b, 0));
    }
    expect(new Set(handles).size).toBe(500);
    for (let i = 0; i < 500; i += 2) a.release(handles[i]);
    for (let i = 0; i < 500; i++) {
      const b = v6('fd00::');
      b[14] = i >> 8;
      b[15] = i & 0xff;
      expect(a.find(b, 0)).toBe(i % 2 === 0 ? -1 : handles[i]);
    }
    expect(a.size).toBe(250);
  });

  it('writes IPv6 headers and pseudo-header sums from the interned bytes', () => {
    const a = new IpAddresses(4);
    const s = a.parse('fd00::2');
    const d = a.parse('fd00::5054:ff:fe12:3456');
    const buf = Buffer.alloc(48);
    expect(a.headerLength(s)).toBe(40);
    expect(a.emitHeader(buf, 0, s, d, 17, 8, 0, false)).toBe(40);
    expect(buf[0] >> 4).toBe(6);
    expect(buf[6]).toBe(17);
    expect((buf[4] << 8) | buf[5]).toBe(8);
    expect(a.format(a.find(buf, 8))).toBe('fd00::2');
    expect(a.pseudoSum(s, d, 17, 8)).toBe(pseudoHeaderSum6(buf, 8, 24, 17, 8));
    // A UDP header checksummed with it verifies against the packet's own addresses.
    buf.writeUInt16BE(1000, 40);
    buf.writeUInt16BE(53, 42);
    buf.writeUInt16BE(8, 44);
    const c = checksum(buf, 40, 8, a.pseudoSum(s, d, 17, 8));
    buf.writeUInt16BE(c, 46);
    expect(checksum(buf, 40, 8, pseudoHeaderSum6(buf, 8, 24, 17, 8))).toBe(0);
  });

  it('gives IPv6 endpoint keys that never meet IPv4 ones (a handle is not truncated to 32 bits)', () => {
    const a = new IpAddresses(8);
    const h = a.parse('fd00::3');
    const slot = h - IPV6_HANDLE_BASE;
    expect(endpointKey(h, 53)).not.toBe(endpointKey(slot, 53));
    expect(Number.isSafeInteger(endpointKey(IPV6_HANDLE_BASE + (1 << 20) - 1, 65535))).toBe(true);
    const t = new UdpFlowTable({ addrs: a });
    const f4 = t.lookupOrCreate(slot, 1000, parseIpv4('1.2.3.4'), 53, parseIpv4('1.2.3.4'), 53, 0)!;
    const d = a.parse('2001:db8::1');
    const f6 = t.lookupOrCreate(h, 1000, d, 53, d, 53, 0)!;
    expect(f6).not.toBe(f4);
    expect(t.lookup(h, 1000, d, 53)).toBe(f6);
    expect(t.lookup(slot, 1000, parseIpv4('1.2.3.4'), 53)).toBe(f4);
  });

  it('lets UDP flows hold their addresses until they leave the table', () => {
    const a = new IpAddresses(8);
    const t = new UdpFlowTable({ addrs: a, idleTimeoutMs: 1000 });
    const g = a.acquire(v6('fd00::100'), 0);
    const d = a.acquire(v6('2001:db8::9'), 0);
    t.lookupOrCreate(g, 5000, d, 9, d, 9, 0);
    a.release(g);
    a.release(d);
    expect(a.size).toBe(2);
    t.poll(2000);
    expect(t.size).toBe(0);
    expect(a.size).toBe(0);
  });
});

describe('AddressMap over IPv6', () => {
  const addrs = new IpAddresses(64);
  const p = parsePrefix('fd00::/64').address;
  const map = (hostLoopback: boolean) =>
    new AddressMap({ network: parseIpv4('10.0.2.0'), prefix: 24, hostLoopback, ipv6: { addrs, prefix: p, gateway: prefixHost(p, 2), dns: prefixHost(p, 3) } });
  const h = (t: string) => addrs.parse(t);

  it('sends prefix::2 to ::1, prefix::3:53 to DNS, and other addresses out as they are', () => {
    const m = map(true);
    const t = m.mapOutbound(h('fd00::2'), 8080, 6);
    expect([t.kind, addrs.format(t.ip), t.port]).toEqual(['host', '::1', 8080]);
    expect(m.mapOutbound(h('fd00::3'), 53, 17).kind).toBe('dns');
    const out = m.mapOutbound(h('2001:db8::5'), 443, 6);
    expect([out.kind, addrs.format(out.ip), out.port]).toEqual(['host', '2001:db8::5', 443]);
    expect(m.mapInboundSource(m.hostLoopback6)).toBe(m.gateway6);
    expect(m.gatewayFor(h('fd00::77'))).toBe(m.gateway6);
    expect(m.isGuestSide(h('fd00::77'))).toBe(true);
    expect(m.isGuestSide(h('2001:db8::77'))).toBe(false);
  });

  it('blocks loopback, mapped, multicast, link-local, the rest of the prefix, port 0, and ::2 without host loopback', () => {
    const m = map(true);
    const reason = (t: string, port = 80) => m.mapOutbound(h(t), port, 6).reason;
    expect(reason('::1')).toBe('blocked-loopback');
    expect(reason('::')).toBe('blocked-reserved');
    expect(reason('::ffff:127.0.0.1')).toBe('blocked-reserved');
    expect(reason('ff02::1')).toBe('blocked-multicast');
    expect(reason('fe80::1')).toBe('blocked-local');
    expect(reason('fd00::9')).toBe('blocked-local');
    expect(reason('fd00::3', 80)).toBe('blocked-dns-port');
    expect(reason('2001:db8::1', 0)).toBe('blocked-port-zero');
    expect(map(false).mapOutbound(h('fd00::2'), 80, 6).reason).toBe('blocked-host-loopback');
  });
});
