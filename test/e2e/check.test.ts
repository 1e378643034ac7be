/**
 * `usernet check` end to end: passes here, and reports a real refusal with
 * its fix. The refusal: IPv6 disabled on the host side, in a network
 * namespace made for the test (i19-<hex>, removed even on failure), where the
 * check itself runs.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { must, run, USERNET, usernet } from './harness.js';

const namespaces: string[] = [];
afterEach(() => {
  for (const ns of namespaces.splice(0)) run('ip', ['netns', 'del', ns]);
});

const rowOf = (out: string, name: string) => out.split('\n').find((l) => l.includes(`  ${name}`)) ?? '';

describe('usernet check', () => {
  it('passes on this machine: every row PASS (rtnetlink SKIP), exit 0', () => {
    const r = usernet(['check']);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^usernet \d+\.\d+\.\d+\naddon: .*N-API \d+\)\nnode: v\d+/);
    for (const name of ['/dev/net/tun', 'virtio-net header', 'TSO over IPv4', 'guest namespace', 'TCP 10.0.2.2 -> 127.0.0.1', 'UDP 10.0.2.2 -> 127.0.0.1', 'DNS via 10.0.2.3', 'ICMP echo to 10.0.2.2', 'IPv6 address by SLAAC', 'TCP fd00::2 -> ::1', 'UDP fd00::2 -> ::1', 'DNS via fd00::3', 'ICMPv6 echo to fd00::2']) {
      expect(rowOf(r.stdout, name), name).toMatch(/^ {2}PASS {2}/);
    }
    expect(r.stdout).not.toMatch(/^ {2}(FAIL|WARN) /m);
    expect(r.stdout).toMatch(/0 failed.*usernet works on this machine/);
  });

  it('runs the guest without the virtio-net header and IPv4 only when asked', () => {
    const r = usernet(['check', '--no-offload', '--disable-ipv6']);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(rowOf(r.stdout, 'guest namespace')).toMatch(/PASS/);
    expect(r.stdout).toMatch(/no virtio-net header \(--no-offload\)/);
    expect(r.stdout).not.toMatch(/fd00::/);
  });

  it('fails with the fix when the host has IPv6 disabled', () => {
    const ns = `i19-${randomBytes(4).toString('hex')}`;
    must('ip', ['netns', 'add', ns]);
    namespaces.push(ns);
    must('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    must('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.lo.disable_ipv6=1']);
    const r = run('ip', ['netns', 'exec', ns, process.execPath, USERNET, 'check'], 60_000);
    expect(r.status, r.stdout + r.stderr).toBe(1);
    expect(rowOf(r.stdout, 'IPv6 on the host')).toMatch(/^ {2}FAIL/);
    expect(r.stdout).toMatch(/fix: sysctl -w net\.ipv6\.conf\.all\.disable_ipv6=0/);
    expect(r.stdout).toMatch(/FAIL {2}TCP fd00::2 -> ::1\s+no echo server on ::1/);
    // IPv4 still works, and says so.
    expect(rowOf(r.stdout, 'TCP 10.0.2.2 -> 127.0.0.1')).toMatch(/PASS/);
    expect(r.stdout).toMatch(/3 failed.*usernet does not fully work on this machine/);
  });

  it('--help describes it; bad options are usage errors', () => {
    expect(usernet(['check', '--help']).stdout).toMatch(/usernet check: prove that usernet works/);
    expect(usernet(['check', '--bogus']).status).toBe(2);
  });
});
