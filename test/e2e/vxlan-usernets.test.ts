/**
 * Two usernet instances joined by VXLAN, as README.md's two-host example
 * has them. Namespaces (all i16b-<tag>-<hex>, removed afterwards):
 *
 *   H1: "host A": underlay veth 10.199.0.1/24; `usernet --tap T1 --mtu 1450 --vxlan
 *       10.199.0.2,vni=42` (DHCP on); an HTTP server on its 127.0.0.1:8000
 *   H2: "host B": underlay veth 10.199.0.2/24; `usernet --tap T2 --mtu 1450 --no-dhcp
 *       --vxlan 10.199.0.1,vni=42`; an HTTP server on its 127.0.0.1:8000
 *       that answers differently
 *   G1: A's guest on T1, address by DHCP from A (10.0.2.15)
 *   G2: B's guest on T2, a fixed address (10.0.2.102)
 *
 * Both usernets are a gateway at 10.0.2.2 with the same MAC on one segment
 * (an anycast gateway): the guests ping each other and move a blob both ways
 * over TCP (sha256), and each reaches its own host's loopback through
 * 10.0.2.2, never the other's.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { must, run, Sandbox, sleep, statsOf, usernetArgs } from './harness.js';

const box = new Sandbox('i16b');
afterAll(() => box.cleanup());

const BLOB_BYTES = 20 * 1024 * 1024;
const GATEWAY_MAC = '52:55:0a:00:02:02';

/** Runs a shell script in a namespace (asynchronously: the servers are children of this process). */
async function inNs(ns: string, script: string, timeoutMs = 60_000): Promise<string> {
  const p = box.spawn('ip', ['netns', 'exec', ns, 'sh', '-c', script]);
  const timer = setTimeout(() => void p.stop('SIGKILL'), timeoutMs);
  const end = await p.exited;
  clearTimeout(timer);
  if (end.code !== 0) throw new Error(`in ${ns}: ${script}: exit ${end.code ?? end.signal}: ${p.stderr}`);
  return p.stdout;
}

describe('two usernets joined by VXLAN', () => {
  it('carry a guest on each end to each other, and each to its own host loopback', async () => {
    const h1 = box.netns('h1');
    const h2 = box.netns('h2');
    const g1 = box.netns('g1');
    const g2 = box.netns('g2');
    const dir = box.tmpdir();
    const ip = (ns: string, ...a: string[]) => must('ip', ['-n', ns, ...a]);
    const [v1, v2, t1, t2] = ['v1', 'v2', 't1', 't2'].map((t) => box.ifname(t));
    ip(h1, 'link', 'add', v1, 'type', 'veth', 'peer', 'name', v2, 'netns', h2);
    ip(h1, 'addr', 'add', '10.199.0.1/24', 'dev', v1);
    ip(h2, 'addr', 'add', '10.199.0.2/24', 'dev', v2);
    ip(h1, 'link', 'set', v1, 'up');
    ip(h2, 'link', 'set', v2, 'up');
    ip(h1, 'tuntap', 'add', 'dev', t1, 'mode', 'tap');
    ip(h2, 'tuntap', 'add', 'dev', t2, 'mode', 'tap');

    // Each host's loopback server says which host it is.
    const names = { [h1]: `host-a-${randomBytes(4).toString('hex')}`, [h2]: `host-b-${randomBytes(4).toString('hex')}` };
    for (const h of [h1, h2]) {
      const d = join(dir, h);
      must('mkdir', [d]);
      writeFileSync(join(d, 'whoami'), names[h]);
      box.spawn('ip', ['netns', 'exec', h, 'python3', '-m', 'http.server', '8000', '--bind', '127.0.0.1', '--directory', d]);
    }

    const [node, cli] = usernetArgs([]);
    const common = ['--mtu', '1450', '--no-warm-up', '--log-level', 'info', '--stats-mac-table'];
    const a = box.spawn('ip', ['netns', 'exec', h1, node, ...cli, '--tap', t1, ...common, '--vxlan', '10.199.0.2,vni=42']);
    const b = box.spawn('ip', ['netns', 'exec', h2, node, ...cli, '--tap', t2, ...common, '--no-dhcp', '--vxlan', '10.199.0.1,vni=42']);
    await a.waitFor(/gateway 10\.0\.2\.2/, 30_000);
    await b.waitFor(/gateway 10\.0\.2\.2/, 30_000);

    // The taps move into the guests' namespaces; usernet keeps their fds.
    ip(h1, 'link', 'set', t1, 'netns', g1);
    ip(h2, 'link', 'set', t2, 'netns', g2);
    for (const [g, t] of [[g1, t1], [g2, t2]]) {
      ip(g, 'link', 'set', t, 'mtu', '1450');
      ip(g, 'link', 'set', t, 'up');
    }
    // G1 by DHCP: only A answers (B runs --no-dhcp), so one offer crosses nothing.
    const script = join(dir, 'udhcpc.sh');
    writeFileSync(script, '#!/bin/sh\n[ "$1" = bound ] || exit 0\nip addr add "$ip/$mask" dev "$interface"\nip route add default via "$router"\necho "lease $ip router $router"\n');
    chmodSync(script, 0o755);
    const lease = await inNs(g1, `busybox udhcpc -i ${t1} -f -q -n -t 5 -T 2 -s ${script}`);
    expect(lease).toContain('lease 10.0.2.15 router 10.0.2.2');
    ip(g2, 'addr', 'add', '10.0.2.102/24', 'dev', t2);
    ip(g2, 'route', 'add', 'default', 'via', '10.0.2.2');

    expect(await inNs(g1, 'ping -c 3 -i 0.2 -W 2 10.0.2.102')).toMatch(/3 received/);
    expect(await inNs(g2, 'ping -c 3 -i 0.2 -W 2 10.0.2.15')).toMatch(/3 received/);

    // TCP both ways, checked by sha256.
    const blobs = [g1, g2].map((g) => {
      const d = join(dir, `${g}-www`);
      must('mkdir', [d]);
      const blob = randomBytes(BLOB_BYTES);
      writeFileSync(join(d, 'blob'), blob);
      box.spawn('ip', ['netns', 'exec', g, 'python3', '-m', 'http.server', '8080', '--bind', '0.0.0.0', '--directory', d]);
      return createHash('sha256').update(blob).digest('hex');
    });
    await sleep(500);
    const fetch = (g: string, url: string) => inNs(g, `curl -sS --max-time 60 --retry 3 --retry-connrefused ${url} | sha256sum | cut -d" " -f1`, 90_000);
    expect((await fetch(g1, 'http://10.0.2.102:8080/blob')).trim()).toBe(blobs[1]);
    expect((await fetch(g2, 'http://10.0.2.15:8080/blob')).trim()).toBe(blobs[0]);

    // Each guest's 10.0.2.2 is its own host: its own gateway, NAT and loopback.
    for (const [g, h] of [[g1, h1], [g2, h2]]) {
      expect(await inNs(g, 'ping -c 2 -i 0.2 -W 2 10.0.2.2')).toMatch(/2 received/);
      expect(await inNs(g, 'curl -sS --max-time 10 http://10.0.2.2:8000/whoami')).toBe(names[h]);
      expect(run('ip', ['-n', g, 'neigh', 'show', '10.0.2.2']).stdout).toContain(GATEWAY_MAC);
    }

    // Each bridge kept the gateway MAC pinned to its own gateway, and learned the other guest behind VXLAN.
    const macOf = (g: string, t: string) => /link\/ether ([0-9a-f:]{17})/.exec(ip(g, 'link', 'show', t))![1];
    for (const [u, remoteMac] of [[a, macOf(g2, t2)], [b, macOf(g1, t1)]] as const) {
      const s = await statsOf(u);
      const table = new Map<string, string>(s.bridge.macTable.entries.map((e: any) => [e.mac, e.port]));
      expect(table.get(GATEWAY_MAC)).toBe('gateway');
      expect(table.get(remoteMac)).toMatch(/^vxlan:42@/);
    }
    expect(a.running && b.running).toBe(true);
  }, 240_000);
});
