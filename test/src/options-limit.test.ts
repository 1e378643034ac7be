import { describe, expect, it } from 'vitest';
import { LIMIT_NAMES, parseCommandLine } from '../../src/options.js';
import { ConfigError } from '../../src/errors.js';

function limitsOf(args: string[]) {
  const r = parseCommandLine(['--tap', 'tap0', ...args]);
  if (r.kind !== 'main') throw new Error('expected main');
  return r.options.limits;
}

describe('--limit NAME=N', () => {
  it('sets flow caps in flows and timeouts in seconds, repeatably; absent names keep the defaults', () => {
    expect(limitsOf([])).toEqual({});
    expect(
      limitsOf(['--limit', 'tcp-flows=256', '--limit', 'udp-flows=512', '--limit', 'icmp-flows=64', '--limit', 'udp-idle=5', '--limit', 'tcp-idle=60', '--limit', 'icmp-idle=3', '--limit', 'reassembly-timeout=2']),
    ).toEqual({
      tcpMaxFlows: 256,
      udpMaxFlows: 512,
      icmpMaxFlows: 64,
      udpIdleTimeoutMs: 5_000,
      tcpIdleTimeoutMs: 60_000,
      icmpIdleTimeoutMs: 3_000,
      reassemblyTimeoutMs: 2_000,
    });
    expect(Object.keys(LIMIT_NAMES).sort()).toEqual(['icmp-flows', 'icmp-idle', 'reassembly-timeout', 'tcp-buffers', 'tcp-flows', 'tcp-idle', 'udp-flows', 'udp-idle']);
  });

  it('is accepted by usernet run too', () => {
    const r = parseCommandLine(['run', '--limit', 'udp-flows=100', '--', 'true']);
    if (r.kind !== 'run') throw new Error('expected run');
    expect(r.options.limits).toEqual({ udpMaxFlows: 100 });
  });

  it('refuses unknown names, malformed values and values out of range, naming them', () => {
    for (const bad of ['tcp-flows', 'tcp-flows=', 'tcp-flows=-1', 'tcp-flows=1.5', 'nope=3', 'tcp-flows=0', 'udp-idle=0', `tcp-flows=${(1 << 20) + 1}`]) {
      expect(() => limitsOf(['--limit', bad]), bad).toThrow(ConfigError);
    }
    expect(() => limitsOf(['--limit', 'nope=3'])).toThrow(/--limit nope=3: expected NAME=N with NAME one of tcp-flows/);
    expect(() => limitsOf(['--limit', 'tcp-flows=0'])).toThrow(/^--limit tcp-flows=0: out of range \(allowed: 1\.\.1048576\)$/);
  });
});

describe('--limit tcp-buffers=MIB', () => {
  it('sets the TCP buffer budget in bytes', () => {
    expect(limitsOf(['--limit', 'tcp-buffers=32', '--limit', 'tcp-idle=3'])).toEqual({ tcpBufferMemory: 32 * 1024 * 1024, tcpIdleTimeoutMs: 3000 });
  });

  it('refuses 0 and non-numbers', () => {
    expect(() => limitsOf(['--limit', 'tcp-buffers=0'])).toThrow(/^--limit tcp-buffers=0: out of range \(allowed: 1\.\.1048576\)$/);
    expect(() => limitsOf(['--limit', 'tcp-buffers=1M'])).toThrow(ConfigError);
  });
});
