import { describe, expect, it } from 'vitest';
import { parseSlirpArgs, type SlirpOptions } from '../../../src/slirp4netns/options.js';
import {
  decideUserns,
  reexecCommand,
  statusHasCapSysAdmin,
  targetUsernsPath,
  type UsernsFacts,
} from '../../../src/slirp4netns/userns-reexec.js';

function opts(argv: string[]): SlirpOptions {
  const c = parseSlirpArgs(argv);
  if (c.kind !== 'run') throw new Error(`expected run, got ${c.kind}`);
  return c.options;
}

const unprivileged: UsernsFacts = { capSysAdmin: false, joined: false, target: 'other' };

describe('targetUsernsPath', () => {
  it('PID mode: /proc/PID/ns/user, or --userns-path when given', () => {
    expect(targetUsernsPath(opts(['1234', 'tap0']))).toBe('/proc/1234/ns/user');
    expect(targetUsernsPath(opts(['--userns-path=/run/u', '1234', 'tap0']))).toBe('/run/u');
  });
  it('path mode: only --userns-path', () => {
    expect(targetUsernsPath(opts(['--netns-type=path', '/run/netns/x', 'tap0']))).toBeNull();
    expect(targetUsernsPath(opts(['--netns-type=path', '--userns-path=/run/u', '/run/netns/x', 'tap0']))).toBe('/run/u');
  });
});

describe('statusHasCapSysAdmin', () => {
  it('reads bit 21 of CapEff', () => {
    expect(statusHasCapSysAdmin('Name:\tnode\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n')).toBe(true);
    expect(statusHasCapSysAdmin('CapEff:\t0000000000200000\n')).toBe(true);
    expect(statusHasCapSysAdmin('CapEff:\t00000000001fffff\n')).toBe(false);
    expect(statusHasCapSysAdmin('CapEff:\t0000000000000000\n')).toBe(false);
  });
  it('is false for a missing or malformed line, never throws', () => {
    expect(statusHasCapSysAdmin('')).toBe(false);
    expect(statusHasCapSysAdmin('CapEff:\tzz\n')).toBe(false);
    expect(statusHasCapSysAdmin('CapPrm:\t000001ffffffffff\n')).toBe(false);
  });
});

describe('decideUserns', () => {
  it('stays without --enable-sandbox or with CAP_SYS_ADMIN (root, podman)', () => {
    expect(decideUserns(opts(['1234', 'tap0']), unprivileged)).toEqual({ kind: 'stay' });
    expect(decideUserns(opts(['--enable-sandbox', '1234', 'tap0']), { ...unprivileged, capSysAdmin: true })).toEqual({ kind: 'stay' });
    expect(decideUserns(opts(['--enable-sandbox', '1234', 'tap0']), { capSysAdmin: true, joined: true, target: 'same' })).toEqual({ kind: 'stay' });
  });
  it('re-executes into the target user namespace (rootlesskit: ordinary user, PID mode)', () => {
    expect(decideUserns(opts(['--enable-sandbox', '-r', '3', '1234', 'tap0']), unprivileged)).toEqual({ kind: 'reexec', userns: '/proc/1234/ns/user' });
    expect(decideUserns(opts(['--enable-sandbox', '--netns-type=path', '--userns-path=/run/u', '/run/n', 'tap0']), unprivileged)).toEqual({
      kind: 'reexec',
      userns: '/run/u',
    });
  });
  it('refuses, once re-executed, when the capability is still missing: never a second exec', () => {
    const d = decideUserns(opts(['--enable-sandbox', '1234', 'tap0']), { ...unprivileged, joined: true });
    expect(d.kind).toBe('refuse');
    expect(d.kind === 'refuse' && d.message).toMatch(/^enable-sandbox: needs CAP_SYS_ADMIN.*after joining \/proc\/1234\/ns\/user/);
  });
  it('refuses without a user namespace to join, or when already in it, or when it cannot be looked at', () => {
    const none = decideUserns(opts(['--enable-sandbox', '--netns-type=path', '/run/n', 'tap0']), unprivileged);
    expect(none.kind === 'refuse' && none.message).toMatch(/^enable-sandbox: .*--userns-path/);
    const same = decideUserns(opts(['--enable-sandbox', '1234', 'tap0']), { ...unprivileged, target: 'same' });
    expect(same.kind === 'refuse' && same.message).toMatch(/already in \/proc\/1234\/ns\/user/);
    const gone = decideUserns(opts(['--enable-sandbox', '1234', 'tap0']), { ...unprivileged, target: { error: 'ENOENT: no such file' } });
    expect(gone.kind === 'refuse' && gone.message).toMatch(/cannot be joined \(ENOENT: no such file\)/);
  });
});

describe('reexecCommand', () => {
  it('runs this same node with the same arguments after nsenter joins the user namespace only', () => {
    const c = reexecCommand('/usr/bin/nsenter', '/proc/9/ns/user');
    expect(c.slice(0, 5)).toEqual(['/usr/bin/nsenter', '--user=/proc/9/ns/user', '--preserve-credentials', '--', process.execPath]);
    expect(c.slice(5)).toEqual([...process.execArgv, ...process.argv.slice(1)]);
  });
});
