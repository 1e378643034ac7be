import { describe, expect, it } from 'vitest';
import { MAX_INITIAL_RTR_ADVERTISEMENTS } from '../../../stack/ip6/ipv6-layer.js';
import { parse, raInfo, setup } from './ipv6-fixture.js';

// Answers to router solicitations: ndp.test.ts.

describe('router advertisements', () => {
  it('carry prefix (on-link, autonomous), MTU, source link-layer and RDNSS, M=0 O=0', () => {
    const { router, sink } = setup({ mtu: 1400, routerLifetimeS: 900, rdnssLifetimeS: 300, validLifetimeS: 7200, preferredLifetimeS: 3600 });
    router.poll(0);
    expect(sink.frames.length).toBe(1);
    const p = parse(sink.frames[0]);
    expect(p).toMatchObject({ dstMac: '33:33:00:00:00:01', srcMac: '52:55:0a:00:02:02', src: 'fe80::5055:aff:fe00:202', dst: 'ff02::1', hopLimit: 255, checksumOk: true });
    expect(raInfo(p.frame)).toEqual({
      curHopLimit: 64,
      flags: 0,
      routerLifetime: 900,
      reachable: 0,
      retrans: 0,
      slla: '52:55:0a:00:02:02',
      mtu: 1400,
      prefix: { prefix: 'fd00::/64', flags: 0xc0, valid: 7200, preferred: 3600 },
      rdnss: { lifetime: 300, servers: ['fd00::3'] },
    });
  });

  it('omit RDNSS when DNS is disabled', () => {
    const { router, sink } = setup({ dnsEnabled: false });
    router.poll(0);
    expect(raInfo(sink.frames[0]).rdnss).toBeUndefined();
  });

  it('send an initial burst, then every [Min, Max]RtrAdvInterval', () => {
    let r = 0.5;
    const { router, sink } = setup({ maxRtrAdvIntervalMs: 60_000, random: () => r });
    expect(router.pollAt()).toBe(0);
    const times: number[] = [];
    let now = 0;
    for (let i = 0; i < 6; i++) {
      now = router.pollAt();
      router.poll(now);
      times.push(now);
    }
    expect(sink.frames.length).toBe(6);
    const gaps = times.slice(1).map((t, i) => t - times[i]);
    // Min = 0.33 * 60 s = 19.8 s; midpoint 39.9 s; initial ones capped at 16 s.
    expect(gaps.slice(0, MAX_INITIAL_RTR_ADVERTISEMENTS - 1)).toEqual([16_000, 16_000]);
    expect(gaps.slice(MAX_INITIAL_RTR_ADVERTISEMENTS)).toEqual([39_900, 39_900]);
    r = 0;
    router.poll(router.pollAt());
    r = 0.999999;
    const t0 = router.pollAt();
    expect(t0 - now - 39_900).toBe(19_800);
    router.poll(t0);
    expect(router.pollAt() - t0).toBe(60_000);
    // Not due: nothing.
    router.poll(router.pollAt() - 1);
    expect(sink.frames.length).toBe(8);
  });
});
