/**
 * usernet's VXLAN port against the kernel's vxlan device. Namespaces (all
 * i16-<tag>-<hex>, removed afterwards):
 *
 *   U:  usernet (`usernet run --vxlan ...`), underlay veth 10.199.0.1/24
 *       └── its guest namespace (created by `usernet run`): 10.0.2.100, SLAAC fd00::/64
 *   K:  underlay veth 10.199.0.2/24; vxlan0 (VNI 42, remote 10.199.0.1,
 *       dstport 4789) and a veth to G in bridge br0
 *   G:  the kernel side's guest: 10.0.2.50/24, fd00::50/64, an HTTP server
 *
 * The usernet guest pings G over IPv4 and IPv6 and fetches a blob from it over
 * TCP on both, checking the sha256.
 */
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { must, Sandbox, sleep, usernetAsync } from './harness.js';

const box = new Sandbox('i16');
afterAll(() => box.cleanup());

/** 100 MB as the issue asks; the IPv6 leg fetches the same file. */
const BLOB_BYTES = 100 * 1024 * 1024;

describe('VXLAN port against the kernel vxlan device', () => {
  it('a usernet guest and a kernel-side guest ping and move 100 MB over TCP, IPv4 and IPv6', async () => {
    const u = box.netns('u');
    const k = box.netns('k');
    const g = box.netns('g');
    const dir = box.tmpdir();
    const ip = (ns: string, ...a: string[]) => must('ip', ['-n', ns, ...a]);
    ip(u, 'link', 'add', 'i16u0', 'type', 'veth', 'peer', 'name', 'i16k0', 'netns', k);
    ip(u, 'addr', 'add', '10.199.0.1/24', 'dev', 'i16u0');
    ip(u, 'link', 'set', 'i16u0', 'up');
    ip(k, 'addr', 'add', '10.199.0.2/24', 'dev', 'i16k0');
    ip(k, 'link', 'set', 'i16k0', 'up');
    ip(k, 'link', 'add', 'vxlan0', 'type', 'vxlan', 'id', '42', 'remote', '10.199.0.1', 'local', '10.199.0.2', 'dstport', '4789', 'dev', 'i16k0');
    ip(k, 'link', 'add', 'br0', 'type', 'bridge');
    ip(k, 'link', 'add', 'i16k1', 'type', 'veth', 'peer', 'name', 'i16g0', 'netns', g);
    for (const l of ['vxlan0', 'i16k1']) ip(k, 'link', 'set', l, 'master', 'br0');
    for (const l of ['vxlan0', 'i16k1', 'br0']) ip(k, 'link', 'set', l, 'up');
    ip(g, 'link', 'set', 'i16g0', 'mtu', '1450');
    ip(g, 'addr', 'add', '10.0.2.50/24', 'dev', 'i16g0');
    ip(g, 'addr', 'add', 'fd00::50/64', 'dev', 'i16g0', 'nodad');
    ip(g, 'link', 'set', 'i16g0', 'up');
    // A veth leaves TCP checksums partial (CHECKSUM_PARTIAL) for a NIC that never comes: through
    // vxlan0 and the underlay veth the inner checksum reaches usernet's UDP socket unfinished, and
    // the usernet guest drops the segment. On a real underlay the NIC or the vxlan driver completes
    // it; here G computes its checksums itself.
    must('ip', ['netns', 'exec', g, 'ethtool', '-K', 'i16g0', 'tx', 'off']);

    const blob = randomBytes(BLOB_BYTES);
    const sha = createHash('sha256').update(blob).digest('hex');
    writeFileSync(join(dir, 'blob'), blob);
    // Python's http.server on :: takes IPv4 too (dual-stack).
    box.spawn('ip', ['netns', 'exec', g, 'python3', '-m', 'http.server', '8000', '--bind', '::', '--directory', dir]);
    await sleep(500);

    const script = [
      'set -e',
      'ping -c 3 -W 2 10.0.2.50 >/dev/null && echo I16-PING4-OK',
      'ping -6 -c 3 -W 2 fd00::50 >/dev/null && echo I16-PING6-OK',
      'echo "I16-SHA4 $(curl -sS --max-time 120 http://10.0.2.50:8000/blob | sha256sum | cut -d" " -f1)"',
      'echo "I16-SHA6 $(curl -sS -g --max-time 120 "http://[fd00::50]:8000/blob" | sha256sum | cut -d" " -f1)"',
    ].join('\n');
    const started = Date.now();
    const r = await usernetAsync(
      ['run', '--mtu', '1450', '--vxlan', '10.199.0.2,vni=42,local=10.199.0.1:4789', '--no-warm-up', '--log-level', 'info', '--', 'sh', '-c', script],
      300_000,
      ['ip', 'netns', 'exec', u],
    );
    const seconds = (Date.now() - started) / 1000;
    console.log(`vxlan test: ${BLOB_BYTES >> 20} MiB twice (IPv4, IPv6) in ${seconds.toFixed(1)} s including start-up`);
    expect(r.stdout, r.stderr).toContain('I16-PING4-OK');
    expect(r.stdout, r.stderr).toContain('I16-PING6-OK');
    expect(/I16-SHA4 (\w+)/.exec(r.stdout)?.[1], r.stderr).toBe(sha);
    expect(/I16-SHA6 (\w+)/.exec(r.stdout)?.[1], r.stderr).toBe(sha);
    expect(r.status).toBe(0);
    // The kernel learned the usernet guest behind usernet's VTEP.
    expect(must('bridge', ['-n', k, 'fdb', 'show', 'dev', 'vxlan0'])).toContain('dst 10.199.0.1');
  }, 400_000);
});
