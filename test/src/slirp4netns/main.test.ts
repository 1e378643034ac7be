import { describe, expect, it } from 'vitest';
import { namespaceRequest, slirpVersionText, slirpWordsFor } from '../../../src/slirp4netns/main.js';
import { parseSlirpArgs, type SlirpOptions } from '../../../src/slirp4netns/options.js';

function opts(argv: string[]): SlirpOptions {
  const c = parseSlirpArgs(argv);
  if (c.kind !== 'run') throw new Error(`expected run, got ${c.kind}`);
  return c.options;
}

describe('namespaceRequest', () => {
  it('PID mode joins /proc/PID/ns/user when it can; --userns-path is required', () => {
    expect(namespaceRequest(opts(['1234', 'tap0'])).target).toEqual({ pid: 1234, usernsOptional: true });
    expect(namespaceRequest(opts(['--userns-path=/run/u', '1234', 'tap0'])).target).toEqual({ pid: 1234, usernsPath: '/run/u' });
  });
  it('path mode joins only the named user namespace', () => {
    expect(namespaceRequest(opts(['--netns-type=path', '/run/n', 'tap0'])).target).toEqual({ netnsPath: '/run/n' });
    expect(namespaceRequest(opts(['--netns-type=path', '--userns-path=/run/u', '/run/n', 'tap0'])).target).toEqual({
      netnsPath: '/run/n',
      usernsPath: '/run/u',
    });
  });
  it('already re-executed inside the target user namespace: joining it again becomes optional (setns would say EINVAL)', () => {
    expect(namespaceRequest(opts(['--userns-path=/run/u', '1234', 'tap0']), true).target).toEqual({
      pid: 1234,
      usernsPath: '/run/u',
      usernsOptional: true,
    });
    expect(namespaceRequest(opts(['--netns-type=path', '--userns-path=/run/u', '/run/n', 'tap0']), true).target).toEqual({
      netnsPath: '/run/n',
      usernsPath: '/run/u',
      usernsOptional: true,
    });
    expect(namespaceRequest(opts(['1234', 'tap0']), true).target).toEqual({ pid: 1234, usernsOptional: true });
  });
  it('configures the tap with -c', () => {
    const r = namespaceRequest(opts(['-c', '--mtu=1500', '1234', 'tap0']));
    expect(r.configure).toMatchObject({ name: 'tap0', mtu: 1500, ipv4: '10.0.2.100', prefixLength: 24, defaultGateway: '10.0.2.2', up: true });
  });
});

describe('slirpVersionText (-v)', () => {
  it("prints slirp4netns 1.2.0's five lines, with values that enable exactly usernet's features, then usernet's", () => {
    expect(slirpVersionText('0.1.0')).toBe(
      [
        'slirp4netns version 1.2.0',
        'commit: 656041d45cfca7a4176f6b7eed9e4fe6c11e8383',
        'libslirp: 4.7.0',
        'SLIRP_CONFIG_VERSION_MAX: 3',
        'libseccomp: 2.5.4',
        'usernet: 0.1.0',
        '',
      ].join('\n'),
    );
  });
  it('parses as the probes parse it: SLIRP_CONFIG_VERSION_MAX >= 3 (--disable-dns, --outbound-addr), a libseccomp line', () => {
    const text = slirpVersionText('9.9.9');
    const max = /^SLIRP_CONFIG_VERSION_MAX: (\d+)$/m.exec(text);
    expect(Number(max?.[1])).toBeGreaterThanOrEqual(3);
    expect(text).toMatch(/^libseccomp: \d+\.\d+\.\d+$/m);
    expect(text.split('\n')[0]).toBe('slirp4netns version 1.2.0');
  });
});

describe('slirpWordsFor', () => {
  const o = opts(['999999', 'tap0']);
  const native = (syscall: string, desc: string) => ({ syscall, message: `${syscall} failed: X (${desc})` });
  it('names the failed step as slirp4netns does', () => {
    expect(slirpWordsFor(native('open(netns)', 'No such file or directory'), o)).toBe('/proc/999999/ns/net: No such file or directory');
    expect(slirpWordsFor(native('setns(net)', 'Invalid argument'), o)).toBe('setns(CLONE_NEWNET): Invalid argument');
    expect(slirpWordsFor(native('ioctl(TUNSETIFF)', 'Device or resource busy'), o)).toBe('ioctl(TUNSETIFF): Device or resource busy');
    expect(slirpWordsFor(native('ioctl(SIOCSIFMTU)', 'Invalid argument'), o)).toBe('cannot set MTU: Invalid argument');
    expect(slirpWordsFor(new Error('something else'), o)).toBeNull();
  });
});
