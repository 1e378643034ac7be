import { describe, expect, it } from 'vitest';
import { parseCommandLine } from '../../src/options.js';
import { ConfigError } from '../../src/errors.js';

describe('--limit tcp-buffers=MIB', () => {
  it('sets the TCP buffer budget in bytes', () => {
    const c = parseCommandLine(['--tap', 't0', '--limit', 'tcp-buffers=32', '--limit', 'tcp-idle=3']);
    expect(c.kind).toBe('main');
    if (c.kind !== 'main') return;
    expect(c.options.limits).toEqual({ tcpBufferMemory: 32 * 1024 * 1024, tcpIdleTimeoutMs: 3000 });
  });

  it('refuses 0 and non-numbers', () => {
    expect(() => parseCommandLine(['--tap', 't0', '--limit', 'tcp-buffers=0'])).toThrow(ConfigError);
    expect(() => parseCommandLine(['--tap', 't0', '--limit', 'tcp-buffers=1M'])).toThrow(ConfigError);
  });
});
