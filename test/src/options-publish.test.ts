import { describe, expect, it } from 'vitest';
import { parseCommandLine, parsePublish } from '../../src/options.js';
import { ConfigError } from '../../src/errors.js';

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
