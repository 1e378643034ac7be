import { describe, expect, it } from 'vitest';
import {
  ICMPV6_NEIGHBOR_ADVERTISEMENT,
  ICMPV6_NEIGHBOR_SOLICITATION,
  ICMPV6_ROUTER_ADVERTISEMENT,
  ICMPV6_ROUTER_SOLICITATION,
} from '../../../stack/wire/icmpv6.js';
import { formatIpv6, parseIpv6 } from '../../../stack/wire/ipv6-address.js';
import { formatMac, parseMac } from '../../../stack/wire/mac.js';
import {
  checkNdpOption,
  emitLinkLayerOption,
  emitMtuOption,
  emitNeighborAdvertisement,
  emitNeighborSolicitation,
  emitPrefixInfoOption,
  emitRdnssOption,
  emitRouterAdvertisement,
  emitRouterSolicitation,
  NA_FLAG_OVERRIDE,
  NA_FLAG_SOLICITED,
  NDP_OPT_MTU,
  NDP_OPT_PREFIX_INFO,
  NDP_OPT_RDNSS,
  NDP_OPT_SOURCE_LLA,
  NDP_OPT_TARGET_LLA,
  NdpMessageView,
  NdpOptionWalker,
  PREFIX_FLAG_AUTONOMOUS,
  PREFIX_FLAG_ON_LINK,
  RA_FLAG_MANAGED,
} from '../../../stack/wire/ndp.js';
import { DAD_NS, NA_SOLICITED, NS_GLOBAL, RS_BARE, RS_WITH_SLLA } from './ipv6-capture.fixture.js';

const icmp = (frame: Buffer) => frame.subarray(14 + 40);

function options(buf: Uint8Array, off: number, len: number) {
  const w = new NdpOptionWalker().reset(buf, off, len);
  const seen: { type: number; length: number; check: string | null }[] = [];
  while (w.next()) seen.push({ type: w.type, length: w.length, check: checkNdpOption(w) });
  return { seen, error: w.error, w };
}

describe('NDP messages from a real kernel', () => {
  const v = new NdpMessageView();

  it('NS for a global address with a source link-layer option', () => {
    const m = icmp(NS_GLOBAL);
    expect(v.reset(m, 0, m.length)).toBeNull();
    expect(v.type).toBe(ICMPV6_NEIGHBOR_SOLICITATION);
    expect(formatIpv6(m, v.targetOffset)).toBe('fd00::b');
    expect(v.optionsOffset).toBe(24);
    const { seen, error, w } = options(m, v.optionsOffset, v.optionsLength);
    expect(error).toBeNull();
    expect(seen).toEqual([{ type: NDP_OPT_SOURCE_LLA, length: 8, check: null }]);
    expect(formatMac(w.linkLayerAddress)).toBe('02:00:00:00:00:0a');
  });

  it('solicited NA with the target link-layer option', () => {
    const m = icmp(NA_SOLICITED);
    expect(v.reset(m, 0, m.length)).toBeNull();
    expect(v.type).toBe(ICMPV6_NEIGHBOR_ADVERTISEMENT);
    expect(v.flags).toBe(NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE);
    expect(formatIpv6(m, v.targetOffset)).toBe('fd00::b');
    const { seen, w } = options(m, v.optionsOffset, v.optionsLength);
    expect(seen.map((s) => s.type)).toEqual([NDP_OPT_TARGET_LLA]);
    expect(formatMac(w.linkLayerAddress)).toBe('02:00:00:00:00:0b');
  });

  it('DAD probe with an unknown (nonce) option that passes through', () => {
    const m = icmp(DAD_NS);
    expect(v.reset(m, 0, m.length)).toBeNull();
    expect(formatIpv6(m, v.targetOffset)).toBe('fe80::ff:fe00:a');
    const { seen, error } = options(m, v.optionsOffset, v.optionsLength);
    expect(error).toBeNull();
    expect(seen).toEqual([{ type: 14, length: 8, check: null }]);
  });

  it('RS with and without options', () => {
    let m = icmp(RS_WITH_SLLA);
    expect(v.reset(m, 0, m.length)).toBeNull();
    expect(v.type).toBe(ICMPV6_ROUTER_SOLICITATION);
    expect(v.optionsLength).toBe(8);
    m = icmp(RS_BARE);
    expect(v.reset(m, 0, m.length)).toBeNull();
    expect(v.optionsLength).toBe(0);
    expect(options(m, v.optionsOffset, 0).seen).toEqual([]);
  });

  it('emitters reproduce the captured NS, NA and RS bytes (checksum aside)', () => {
    const b = Buffer.alloc(32);
    const target = parseIpv6('fd00::b')!;
    let n = emitNeighborSolicitation(b, 0, target, 0);
    n += emitLinkLayerOption(b, n, NDP_OPT_SOURCE_LLA, parseMac('02:00:00:00:00:0a'));
    const ns = Buffer.from(icmp(NS_GLOBAL));
    ns.writeUInt16BE(0, 2);
    expect(b.subarray(0, n).toString('hex')).toBe(ns.toString('hex'));

    n = emitNeighborAdvertisement(b, 0, NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE, target, 0);
    n += emitLinkLayerOption(b, n, NDP_OPT_TARGET_LLA, parseMac('02:00:00:00:00:0b'));
    const na = Buffer.from(icmp(NA_SOLICITED));
    na.writeUInt16BE(0, 2);
    expect(b.subarray(0, n).toString('hex')).toBe(na.toString('hex'));

    n = emitRouterSolicitation(b, 0);
    n += emitLinkLayerOption(b, n, NDP_OPT_SOURCE_LLA, parseMac('02:00:00:00:00:0a'));
    const rs = Buffer.from(icmp(RS_WITH_SLLA));
    rs.writeUInt16BE(0, 2);
    expect(b.subarray(0, n).toString('hex')).toBe(rs.toString('hex'));
  });
});

describe('router advertisement and its options (golden bytes from RFC 4861 4.2, 4.6, RFC 8106 5.1)', () => {
  const b = Buffer.alloc(128);
  let n = emitRouterAdvertisement(b, 0, 64, RA_FLAG_MANAGED, 1800, 30000, 1000);
  const raHdr = n;
  n += emitLinkLayerOption(b, n, NDP_OPT_SOURCE_LLA, parseMac('52:55:0a:00:02:02'));
  n += emitMtuOption(b, n, 1500);
  n += emitPrefixInfoOption(b, n, parseIpv6('fd00::')!, 0, 64, PREFIX_FLAG_ON_LINK | PREFIX_FLAG_AUTONOMOUS, 86400, 14400);
  n += emitRdnssOption(b, n, 600, Buffer.concat([parseIpv6('fd00::3')!, parseIpv6('fd00::4')!]), 0, 2);

  it('writes the expected bytes', () => {
    expect(b.subarray(0, raHdr).toString('hex')).toBe('86000000' + '40' + '80' + '0708' + '00007530' + '000003e8');
    expect(b.subarray(16, 24).toString('hex')).toBe('0101' + '52550a000202');
    expect(b.subarray(24, 32).toString('hex')).toBe('0501' + '0000' + '000005dc');
    expect(b.subarray(32, 64).toString('hex')).toBe(
      '0304' + '40' + 'c0' + '00015180' + '00003840' + '00000000' + 'fd000000000000000000000000000000',
    );
    expect(b.subarray(64, 104).toString('hex')).toBe(
      '1905' + '0000' + '00000258' + 'fd000000000000000000000000000003' + 'fd000000000000000000000000000004',
    );
    expect(n).toBe(104);
  });

  it('parses back through the view and the walker', () => {
    const v = new NdpMessageView();
    expect(v.reset(b, 0, n)).toBeNull();
    expect(v.type).toBe(ICMPV6_ROUTER_ADVERTISEMENT);
    expect(v.curHopLimit).toBe(64);
    expect(v.flags).toBe(RA_FLAG_MANAGED);
    expect(v.routerLifetime).toBe(1800);
    expect(v.reachableTime).toBe(30000);
    expect(v.retransTimer).toBe(1000);
    const w = new NdpOptionWalker().reset(b, v.optionsOffset, v.optionsLength);
    const types: number[] = [];
    while (w.next()) {
      expect(checkNdpOption(w)).toBeNull();
      types.push(w.type);
      if (w.type === NDP_OPT_MTU) expect(w.mtu).toBe(1500);
      if (w.type === NDP_OPT_PREFIX_INFO) {
        expect(w.prefixLength).toBe(64);
        expect(w.prefixFlags).toBe(0xc0);
        expect(w.validLifetime).toBe(86400);
        expect(w.preferredLifetime).toBe(14400);
        expect(formatIpv6(b, w.prefixOffset)).toBe('fd00::');
      }
      if (w.type === NDP_OPT_RDNSS) {
        expect(w.rdnssLifetime).toBe(600);
        expect(w.rdnssCount).toBe(2);
        expect(formatIpv6(b, w.rdnssAddressOffset + 16)).toBe('fd00::4');
      }
    }
    expect(w.error).toBeNull();
    expect(types).toEqual([NDP_OPT_SOURCE_LLA, NDP_OPT_MTU, NDP_OPT_PREFIX_INFO, NDP_OPT_RDNSS]);
  });
});

describe('malformed NDP', () => {
  const v = new NdpMessageView();
  it('rejects short messages, bad codes and non-NDP types', () => {
    const m = Buffer.from(icmp(NS_GLOBAL));
    expect(v.reset(m, 0, 23)).toBe('ndp-truncated');
    expect(v.reset(m, 0, 3)).toBe('ndp-truncated');
    const c = Buffer.from(m);
    c[1] = 1;
    expect(v.reset(c, 0, c.length)).toBe('ndp-bad-code');
    c[0] = 128;
    expect(v.reset(c, 0, c.length)).toBe('ndp-not-ndp');
    const ra = Buffer.alloc(15);
    ra[0] = ICMPV6_ROUTER_ADVERTISEMENT;
    expect(v.reset(ra, 0, 15)).toBe('ndp-truncated');
  });

  it('option of length 0 is malformed (RFC 4861 4.6) and the walk stops', () => {
    const opts = Buffer.from([1, 1, 2, 0, 0, 0, 0, 1, 5, 0, 0, 0, 0, 0, 5, 0xdc]);
    const r = options(opts, 0, opts.length);
    expect(r.seen.length).toBe(1);
    expect(r.error).toBe('ndp-opt-zero-length');
  });

  it('options running past the end, or a lone byte, are truncated', () => {
    expect(options(Buffer.from([3, 4, 0, 0, 0, 0, 0, 0]), 0, 8).error).toBe('ndp-opt-truncated');
    expect(options(Buffer.from([1]), 0, 1).error).toBe('ndp-opt-truncated');
    expect(options(Buffer.alloc(4), 2, 4).error).toBe('ndp-opt-truncated');
  });

  it('known options with the wrong size fail their check', () => {
    const cases: [number[], string][] = [
      [[1, 2, ...new Array(14).fill(0)], 'ndp-opt-bad-lla'],
      [[3, 1, 64, 0, 0, 0, 0, 0], 'ndp-opt-bad-prefix'],
      [[3, 4, 200, ...new Array(29).fill(0)], 'ndp-opt-bad-prefix'],
      [[5, 2, ...new Array(14).fill(0)], 'ndp-opt-bad-mtu'],
      [[25, 1, 0, 0, 0, 0, 0, 0], 'ndp-opt-bad-rdnss'],
      [[25, 2, ...new Array(14).fill(0)], 'ndp-opt-bad-rdnss'],
    ];
    for (const [bytes, reason] of cases) {
      const r = options(Buffer.from(bytes), 0, bytes.length);
      expect(r.error).toBeNull();
      expect(r.seen[0].check).toBe(reason);
    }
  });

  it('walks random bytes without throwing or overrunning', () => {
    let seed = 12345;
    const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 16) & 0xff;
    for (let i = 0; i < 2000; i++) {
      const len = rnd() % 64;
      const b = Buffer.alloc(len + 8);
      for (let k = 0; k < b.length; k++) b[k] = rnd();
      const w = new NdpOptionWalker().reset(b, 4, len);
      let guard = 0;
      while (w.next()) {
        expect(w.offset + w.length).toBeLessThanOrEqual(4 + len);
        checkNdpOption(w);
        guard++;
      }
      expect(guard).toBeLessThanOrEqual(len / 8);
    }
  });
});
