import { describe, expect, it } from 'vitest';
import { AddressMap, HOST_LOOPBACK_IP } from '../../../stack/nat/address-map.js';
import { parseIpv4 } from '../../../stack/wire/ipv4-address.js';

const ip = (s: string): number => parseIpv4(s);
const UDP = 17;
const TCP = 6;
const ICMP = 1;

function plan(hostLoopback = true): AddressMap {
  return new AddressMap({ network: ip('10.0.2.0'), prefix: 24, hostLoopback });
}

describe('AddressMap', () => {
  it('lays out the slirp plan', () => {
    const m = new AddressMap({ network: ip('10.0.2.77'), prefix: 24, hostLoopback: false });
    expect(m.network).toBe(ip('10.0.2.0'));
    expect(m.gateway).toBe(ip('10.0.2.2'));
    expect(m.dns).toBe(ip('10.0.2.3'));
    expect(m.guest).toBe(ip('10.0.2.100'));
    expect(m.broadcast).toBe(ip('10.0.2.255'));
    const wide = new AddressMap({ network: ip('192.168.0.0'), prefix: 16, hostLoopback: false });
    expect(wide.broadcast).toBe(ip('192.168.255.255'));
    expect(wide.guest).toBe(ip('192.168.0.100'));
  });

  it('refuses plans that cannot hold the guest address', () => {
    expect(() => new AddressMap({ network: ip('10.0.2.0'), prefix: 26, hostLoopback: true })).toThrow(RangeError);
    expect(() => new AddressMap({ network: 0, prefix: 0, hostLoopback: true })).toThrow(RangeError);
  });

  it('forwards ordinary destinations unchanged', () => {
    const m = plan();
    expect(m.mapOutbound(ip('93.184.216.34'), 443, TCP)).toEqual({ kind: 'host', ip: ip('93.184.216.34'), port: 443, reason: null });
    expect(m.mapOutbound(ip('8.8.8.8'), 53, UDP)).toMatchObject({ kind: 'host', ip: ip('8.8.8.8'), port: 53 });
    expect(m.mapOutbound(ip('1.1.1.1'), 1234, ICMP)).toMatchObject({ kind: 'host', ip: ip('1.1.1.1'), port: 0 });
    expect(m.mapOutbound(ip('223.255.255.255'), 9, UDP).kind).toBe('host');
  });

  it('maps the gateway address to host loopback only when allowed', () => {
    expect(plan(true).mapOutbound(ip('10.0.2.2'), 8080, TCP)).toEqual({ kind: 'host', ip: HOST_LOOPBACK_IP, port: 8080, reason: null });
    expect(plan(true).mapOutbound(ip('10.0.2.2'), 5, ICMP)).toMatchObject({ kind: 'host', ip: HOST_LOOPBACK_IP, port: 0 });
    expect(plan(false).mapOutbound(ip('10.0.2.2'), 8080, TCP)).toEqual({ kind: 'blocked', ip: 0, port: 0, reason: 'blocked-host-loopback' });
  });

  it('sends port 53 at the DNS address to the forwarder and blocks the rest there', () => {
    const m = plan();
    expect(m.mapOutbound(ip('10.0.2.3'), 53, UDP)).toMatchObject({ kind: 'dns', port: 53, reason: null });
    expect(m.mapOutbound(ip('10.0.2.3'), 53, TCP).kind).toBe('dns');
    expect(m.mapOutbound(ip('10.0.2.3'), 54, UDP)).toMatchObject({ kind: 'blocked', reason: 'blocked-dns-port' });
    expect(m.mapOutbound(ip('10.0.2.3'), 53, ICMP)).toMatchObject({ kind: 'blocked', reason: 'blocked-dns-port' });
  });

  it('blocks special, local and broadcast destinations', () => {
    const m = plan();
    const cases: Array<[string, number, string]> = [
      ['0.0.0.0', 80, 'blocked-reserved'],
      ['0.1.2.3', 80, 'blocked-reserved'],
      ['127.0.0.1', 80, 'blocked-loopback'],
      ['127.8.9.10', 80, 'blocked-loopback'],
      ['224.0.0.251', 5353, 'blocked-multicast'],
      ['239.255.255.250', 1900, 'blocked-multicast'],
      ['240.0.0.1', 80, 'blocked-reserved'],
      ['255.255.255.255', 67, 'blocked-broadcast'],
      ['10.0.2.0', 80, 'blocked-broadcast'],
      ['10.0.2.255', 80, 'blocked-broadcast'],
      ['10.0.2.100', 80, 'blocked-local'],
      ['10.0.2.1', 80, 'blocked-local'],
      ['93.184.216.34', 0, 'blocked-port-zero'],
    ];
    for (const [dst, port, reason] of cases) {
      expect(m.mapOutbound(ip(dst), port, UDP), dst).toEqual({ kind: 'blocked', ip: 0, port: 0, reason });
    }
    expect(m.mapOutbound(ip('10.0.2.2'), 0, UDP).reason).toBe('blocked-port-zero');
    // Loopback stays blocked even with host loopback allowed: only N+2 leads there.
    expect(plan(true).mapOutbound(ip('127.0.0.1'), 22, TCP).kind).toBe('blocked');
  });

  it('reuses one result object', () => {
    const m = plan();
    const a = m.mapOutbound(ip('8.8.8.8'), 53, UDP);
    const b = m.mapOutbound(ip('10.0.2.255'), 53, UDP);
    expect(a).toBe(b);
  });

  it('shows host loopback as the gateway address on the way in', () => {
    const m = plan();
    expect(m.mapInboundSource(HOST_LOOPBACK_IP)).toBe(ip('10.0.2.2'));
    expect(m.mapInboundSource(ip('127.0.1.1'))).toBe(ip('10.0.2.2'));
    expect(m.mapInboundSource(ip('93.184.216.34'))).toBe(ip('93.184.216.34'));
  });
});
