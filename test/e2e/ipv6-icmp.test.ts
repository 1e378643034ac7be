/**
 * ICMPv6 echo NAT end to end: `usernet run` inside a test namespace ("the
 * host"), which has a veth to a second test namespace ("the target") with
 * ULA addresses made up for this run. `ping -6` in usernet's namespace
 * reaches the target through ICMPv6 ping sockets in the host namespace, and
 * ICMPv6 errors (no route, hop limit exceeded at the target acting as a
 * router) come back to it. Nothing goes anywhere but these namespaces.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, readlinkSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { must, Sandbox, sleep, usernetAsync } from './harness.js';
import { runAsync, spawnSlirp, Tracker } from './slirp-harness.js';

const sandbox = new Sandbox();
const tracker = new Tracker();
afterEach(async () => {
  await tracker.stopAll();
  await sandbox.cleanup();
});

/** Host and target namespaces joined by a veth, with `${net}::1` / `::2` (and 198.18.N.1 / .2 when v4 is given). */
function hostAndTarget(net: string, v4?: string): { host: string; target: string } {
  const host = sandbox.netns('h6');
  const target = sandbox.netns('t6');
  const a = sandbox.ifname('va6');
  const b = sandbox.ifname('vb6');
  must('ip', ['-n', host, 'link', 'add', a, 'type', 'veth', 'peer', 'name', b, 'netns', target]);
  must('ip', ['-n', host, 'addr', 'add', `${net}::1/64`, 'dev', a, 'nodad']);
  must('ip', ['-n', target, 'addr', 'add', `${net}::2/64`, 'dev', b, 'nodad']);
  if (v4 !== undefined) {
    must('ip', ['-n', host, 'addr', 'add', `${v4}.1/24`, 'dev', a]);
    must('ip', ['-n', target, 'addr', 'add', `${v4}.2/24`, 'dev', b]);
  }
  must('ip', ['-n', host, 'link', 'set', a, 'up']);
  must('ip', ['-n', target, 'link', 'set', b, 'up']);
  // An empty ping_group_range: usernet (root) widens it for its own group; the same sysctl governs ICMPv6.
  must('ip', ['netns', 'exec', host, 'sysctl', '-qw', 'net.ipv4.ping_group_range=1 0']);
  return { host, target };
}

describe('ICMPv6 echo NAT', () => {
  it('pings an IPv6 host beyond the gateway through a ping socket, and hears ICMPv6 errors', async () => {
    // As ping prints it: no leading zeros in the group.
    const net = `fd99:${randomBytes(2).readUInt16BE(0).toString(16)}`;
    const { host, target } = hostAndTarget(net);
    // The target also routes: ${net}:1::/64 goes back to the host, so a probe with one hop left dies at the target.
    must('ip', ['netns', 'exec', target, 'sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']);
    must('ip', ['-n', target, '-6', 'route', 'add', `${net}:1::/64`, 'via', `${net}::1`]);
    must('ip', ['-n', host, '-6', 'route', 'add', `${net}:1::/64`, 'via', `${net}::2`]);
    const inHost = ['ip', 'netns', 'exec', host];

    const r = await usernetAsync(['run', '--', 'ping', '-6', '-c', '3', '-i', '0.2', '-W', '2', `${net}::2`], 60_000, inHost);
    expect(r.stdout).toMatch(/3 packets transmitted, 3 received/);
    expect(r.stdout).toContain(`from ${net}::2`);
    expect(must('ip', ['netns', 'exec', host, 'cat', '/proc/sys/net/ipv4/ping_group_range']).split(/\s+/).slice(0, 2)).toEqual(['0', '0']);

    // No route from the host: the guest hears "no route" as from a router.
    const r2 = await usernetAsync(['run', '--', 'ping', '-6', '-c', '1', '-W', '2', `${net}:2::9`], 60_000, inHost);
    expect(r2.stdout).toMatch(/Destination unreachable: No route/);

    // Hop limit 2: usernet takes one, the target the last, and says so from its own address.
    const r3 = await usernetAsync(['run', '--', 'ping', '-6', '-c', '1', '-t', '2', '-W', '2', `${net}:1::9`], 60_000, inHost);
    expect(r3.stdout).toMatch(new RegExp(`From ${net}::2 icmp_seq=1 Time exceeded: Hop limit`));
  });

  it('slirp4netns --enable-sandbox widens ping_group_range before /proc goes away: ping and ping -6 still work', async () => {
    const tag = randomBytes(2).toString('hex');
    const net = `fd99:${tag}`;
    const v4 = `198.18.${parseInt(tag.slice(0, 2), 16)}`;
    const { host } = hostAndTarget(net, v4);
    const hostNs = readlinkSync(`/proc/self/ns/net`);
    // The slirp4netns target: a process with its own network namespace, started from inside the host namespace.
    const sleeper = sandbox.spawn('ip', ['netns', 'exec', host, 'unshare', '-n', 'sleep', '600']);
    let pid = sleeper.pid;
    for (let i = 0; i < 200; i++) {
      const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      if (comm === 'sleep' && readlinkSync(`/proc/${pid}/ns/net`) !== hostNs) break;
      const kids = readFileSync(`/proc/${sleeper.pid}/task/${sleeper.pid}/children`, 'utf8').trim();
      if (kids !== '') pid = Number(kids.split(/\s+/)[0]);
      await sleep(10);
    }
    expect(readFileSync(`/proc/${pid}/comm`, 'utf8').trim()).toBe('sleep');
    const s = spawnSlirp(['--configure', '--enable-sandbox', '--enable-ipv6', '-r', '4', String(pid), 'tap0'], tracker.track, ['ip', 'netns', 'exec', host]);
    expect(await s.ready).toBe('1');
    expect(must('ip', ['netns', 'exec', host, 'cat', '/proc/sys/net/ipv4/ping_group_range']).split(/\s+/).slice(0, 2)).toEqual(['0', '0']);
    const r4 = await runAsync('nsenter', ['-t', String(pid), '-n', 'ping', '-c', '2', '-i', '0.2', '-W', '2', `${v4}.2`]);
    expect(r4.stdout).toMatch(/2 packets transmitted, 2 received/);
    // SLAAC in the target namespace first (the RA comes at once, DAD takes about a second).
    const wait = 'for i in $(seq 100); do ip -6 route show default | grep -q . && ip -6 addr show scope global -tentative | grep -q inet6 && break; sleep 0.1; done';
    const r6 = await runAsync('nsenter', ['-t', String(pid), '-n', 'sh', '-c', `${wait}; ping -6 -c 2 -i 0.2 -W 2 ${net}::2`]);
    expect(r6.stdout).toMatch(/2 packets transmitted, 2 received/);
  });
});
