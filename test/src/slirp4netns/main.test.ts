import { describe, expect, it } from 'vitest';
import { namespaceRequest } from '../../../src/slirp4netns/main.js';
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
