import { describe, expect, it } from 'vitest';
import { GUEST_IPV6_AUTO, parseCommandLine, parsePublish } from '../../src/options.js';
import { ConfigError } from '../../src/errors.js';
import { defaults } from '../../stack/config.js';

const NET = 0x0a000200;

describe('-p [HOST_ADDR:]HOST_PORT:[GUEST_ADDR:]GUEST_PORT[/proto]', () => {
  it('fills in 0.0.0.0, N+100 and tcp', () => {
    expect(parsePublish('8080:80', NET, 24)).toEqual({ proto: 'tcp', hostAddr: '0.0.0.0', hostPort: 8080, guestAddr: '10.0.2.100', guestPort: 80 });
    expect(parsePublish('127.0.0.1:8080:80/udp', NET, 24)).toEqual({ proto: 'udp', hostAddr: '127.0.0.1', hostPort: 8080, guestAddr: '10.0.2.100', guestPort: 80 });
    expect(parsePublish('127.0.0.1:8080:10.0.2.15:80/tcp', NET, 24)).toEqual({ proto: 'tcp', hostAddr: '127.0.0.1', hostPort: 8080, guestAddr: '10.0.2.15', guestPort: 80 });
  });

  it('rejects malformed specs with a message naming them', () => {
    for (const bad of ['80', '1:2:3:4:5', '0:80', '8080:65536', 'x:80', 'localhost:80:80', '1:80:192.168.1.1:80', '80:80/sctp', '80:1.5']) {
      expect(() => parsePublish(bad, NET, 24), bad).toThrow(ConfigError);
    }
    expect(() => parsePublish('80:80/sctp', NET, 24)).toThrow(/-p 80:80\/sctp: unknown protocol/);
  });

  it('is accepted by usernet run and usernet --tap, repeatably', () => {
    const r = parseCommandLine(['run', '-p', '127.0.0.1:8080:80', '--publish', '53:53/udp', '--', 'true']);
    expect(r.kind).toBe('run');
    if (r.kind === 'run') expect(r.options.forwards?.map((f) => f.proto)).toEqual(['tcp', 'udp']);
    const m = parseCommandLine(['--tap', 'tap0', '--cidr', '10.9.0.0/24', '-p', '127.0.0.1:8080:10.9.0.15:80']);
    if (m.kind !== 'main') throw new Error('expected main');
    expect(m.options.forwards).toEqual([{ proto: 'tcp', hostAddr: '127.0.0.1', hostPort: 8080, guestAddr: '10.9.0.15', guestPort: 80 }]);
  });
});

describe('IPv6 options', () => {
  it('takes bracketed IPv6 addresses in -p; an IPv6 host address alone means the guest SLAAC address', () => {
    expect(parsePublish('[::1]:8080:80', NET, 24)).toEqual({ proto: 'tcp', hostAddr: '::1', hostPort: 8080, guestAddr: GUEST_IPV6_AUTO, guestPort: 80 });
    expect(parsePublish('[::1]:8080:[fd00::5]:80/udp', NET, 24)).toEqual({ proto: 'udp', hostAddr: '::1', hostPort: 8080, guestAddr: 'fd00::5', guestPort: 80 });
    expect(parsePublish('[::1]:8080:10.0.2.100:80', NET, 24).guestAddr).toBe('10.0.2.100');
    expect(() => parsePublish('::1:8080:80', NET, 24)).toThrow(/brackets/);
    expect(() => parsePublish('[::1:8080:80', NET, 24)).toThrow(/unbalanced/);
  });

  it('has IPv6 on with fd00::/64 by default, off below MTU 1280 or with --disable-ipv6', () => {
    const opts = (args: string[]) => {
      const c = parseCommandLine(['run', ...args, '--', 'true']);
      if (c.kind !== 'run') throw new Error('expected run');
      return c.options;
    };
    expect(opts([]).ipv6Prefix).toBe('fd00::/64');
    expect(opts(['--ipv6-prefix', 'fd42:0:0:7::/64']).ipv6Prefix).toBe('fd42:0:0:7::/64');
    expect(opts(['--mtu', '1000']).ipv6Prefix).toBeNull();
    expect(opts(['--disable-ipv6']).ipv6Prefix).toBeNull();
    expect(() => opts(['--ipv6-prefix', 'fd00::/48'])).toThrow(/must be a \/64/);
    expect(() => opts(['--ipv6-prefix', 'fe80::/64'])).toThrow(/outside fe80/);
    expect(() => opts(['--ipv6-prefix', 'fd00::/64', '--mtu', '1000'])).toThrow(/at least 1280/);
    expect(() => opts(['--disable-ipv6', '-p', '[::1]:8080:80'])).toThrow(/needs IPv6/);
    expect(() => parseCommandLine(['--tap', 'tap0', '-p', '[::1]:8080:80'])).toThrow(/give the guest's IPv6 address/);
  });
});

describe('--busy-poll MICROS', () => {
  it('defaults to the engine default, takes 0 to turn it off, and rejects what is not a whole number in range', () => {
    const d = parseCommandLine(['--tap', 'tap0']);
    if (d.kind !== 'main') throw new Error('expected main');
    expect(d.options.busyPollMicros).toBe(defaults.busyPollMicros);
    const off = parseCommandLine(['run', '--busy-poll', '0', '--', 'true']);
    if (off.kind !== 'run') throw new Error('expected run');
    expect(off.options.busyPollMicros).toBe(0);
    for (const bad of ['-1', '1.5', 'x', '10001']) {
      expect(() => parseCommandLine(['--tap', 'tap0', '--busy-poll', bad]), bad).toThrow(/--busy-poll/);
    }
  });
});
