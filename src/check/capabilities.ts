/**
 * The first half of `usernet check`: what this kernel grants usernet, each
 * probed by doing it, never inferred from a version number. A tap is opened
 * in a throwaway network namespace (a user namespace too when not root) by
 * the addon's forked helper, once plain and configured by ioctls, once with
 * the virtio-net header and every offload usernet asks for; ping sockets
 * send one echo to the host's loopback. Everything opened is closed before
 * returning; the namespaces vanish with their last fd.
 */
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';

import { NativeError } from '../errors.js';
import { findInPath } from '../find-in-path.js';
import { native } from '../native/addon.js';
import { TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_USO4, TUN_F_USO6, type NamespaceTarget, type NamespaceTapResult } from '../native/types.js';
import { pingOnce, withTimeout } from './probe.js';
import type { CheckRow } from './report.js';

const GROUP = 'kernel (what this machine grants)';
const PROBE_TAP = 'usncheck0';
const PING_GROUP_RANGE = '/proc/sys/net/ipv4/ping_group_range';

/** The offloads usernet requests (src/run.ts OFFLOADS), with what each buys. */
const OFFLOAD_BITS: { bit: number; name: string; without: string }[] = [
  { bit: TUN_F_CSUM, name: 'checksum offload', without: 'usernet verifies and computes every checksum itself (slower)' },
  { bit: TUN_F_TSO4, name: 'TSO over IPv4', without: 'TCP over IPv4 arrives in MTU-sized frames, not 64 KiB ones (slower)' },
  { bit: TUN_F_TSO6, name: 'TSO over IPv6', without: 'TCP over IPv6 arrives in MTU-sized frames, not 64 KiB ones (slower)' },
  { bit: TUN_F_USO4, name: 'USO over IPv4', without: 'UDP segmentation offload needs Linux 6.2; large UDP sends are split by the guest' },
  { bit: TUN_F_USO6, name: 'USO over IPv6', without: 'UDP segmentation offload needs Linux 6.2; large UDP sends are split by the guest' },
];
const ALL_OFFLOADS = OFFLOAD_BITS.reduce((a, o) => a | o.bit, 0);

export interface KernelReport {
  rows: CheckRow[];
  /** The virtio-net header works: the end-to-end part may keep offloads on. */
  vnetHdr: boolean;
}

function describe(err: unknown): string {
  if (err instanceof NativeError) return `${err.syscall}: ${err.code} (${err.message})`;
  return (err as Error).message ?? String(err);
}

function hintOf(err: unknown): string | undefined {
  const h = (err as { hint?: unknown }).hint;
  return typeof h === 'string' ? h : undefined;
}

/** Which row a failure of the namespace helper belongs to, from the syscall that failed. */
export function failedStep(err: unknown): 'namespace' | 'tap' | 'configure' {
  if (!(err instanceof NativeError)) return 'tap';
  const s = err.syscall;
  if (s.startsWith('unshare') || s.startsWith('setns') || /uid_map|gid_map|setgroups/.test(s)) return 'namespace';
  if (s.includes('/dev/net/tun') || s.includes('TUNSET')) return 'tap';
  return 'configure';
}

function target(userns: boolean): NamespaceTarget {
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  return userns ? { create: true, createUserns: { uid, gid } } : { create: true };
}

function closeAll(r: NamespaceTapResult): void {
  for (const fd of [r.fd, r.netnsFd, r.usernsFd]) if (fd >= 0) native.closeFd(fd);
}

function tunDevice(): CheckRow {
  const row = { group: GROUP, name: '/dev/net/tun' };
  try {
    closeSync(openSync('/dev/net/tun', 'r+'));
    return { ...row, status: 'PASS', detail: 'opens read-write' };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const fix =
      e.code === 'ENOENT' || e.code === 'ENODEV' || e.code === 'ENXIO'
        ? 'modprobe tun (or mknod /dev/net/tun c 10 200; in a container: --device /dev/net/tun)'
        : 'chmod 0666 /dev/net/tun (as Debian ships it), or run as root';
    return { ...row, status: 'FAIL', detail: e.message, fix };
  }
}

/** Plain tap, configured by ioctls, in a new namespace: rows for the namespace, the tap and the configuration. */
function plainTap(userns: boolean): CheckRow[] {
  const ns: CheckRow = { group: GROUP, name: 'network namespace', status: 'PASS', detail: userns ? 'created (inside a new user namespace)' : 'created' };
  const tap: CheckRow = { group: GROUP, name: 'tap device', status: 'PASS', detail: 'opened in the new namespace (IFF_TAP|IFF_NO_PI)' };
  const conf: CheckRow = {
    group: GROUP,
    name: 'interface configuration (ioctls)',
    status: 'PASS',
    detail: 'lo up, MTU, address, default route set',
  };
  try {
    closeAll(
      native.openTapInNamespace({
        target: target(userns),
        tap: { name: PROBE_TAP, vnetHdr: false, offloads: 0 },
        configure: { name: PROBE_TAP, loopbackUp: true, mtu: 1500, ipv4: '10.0.2.100', prefixLength: 24, up: true, defaultGateway: '10.0.2.2' },
      }),
    );
    return [ns, tap, conf];
  } catch (err) {
    const step = failedStep(err);
    const failed: CheckRow = { ...(step === 'namespace' ? ns : step === 'tap' ? tap : conf), status: 'FAIL', detail: describe(err) };
    if (step === 'namespace') {
      failed.fix = userns
        ? 'allow unprivileged user namespaces (sysctl -w user.max_user_namespaces=15000; on Ubuntu also kernel.apparmor_restrict_unprivileged_userns=0), or run as root'
        : 'network namespaces are refused (a container without CAP_SYS_ADMIN?): run in a privileged container or as root on the host';
    } else if (step === 'tap') {
      failed.fix = hintOf(err) ?? 'the tun driver refused the tap: see the error';
    } else {
      failed.fix = 'the interface ioctls are refused here (gVisor refuses the set-ioctls): configure the tap from outside, or run usernet where rtnetlink or ioctls are allowed';
    }
    const rows = [ns, tap, conf];
    const at = rows.findIndex((r) => r.name === failed.name);
    return rows.map((r, i) => (i < at ? r : i === at ? failed : { ...r, status: 'SKIP', detail: `not reached (${failed.name} failed)` }));
  }
}

/** Tap with IFF_VNET_HDR and every offload usernet uses; one row for the header, one per offload. */
function vnetTap(userns: boolean): { rows: CheckRow[]; ok: boolean } {
  let got: NamespaceTapResult;
  try {
    got = native.openTapInNamespace({ target: target(userns), tap: { name: PROBE_TAP, vnetHdr: true, offloads: ALL_OFFLOADS } });
    closeAll(got);
  } catch (err) {
    return {
      ok: false,
      rows: [
        {
          group: GROUP,
          name: 'virtio-net header',
          status: 'FAIL',
          detail: describe(err),
          fix: 'taps with IFF_VNET_HDR are refused (gVisor does): run usernet with --no-offload (the check runs its guest so)',
        },
      ],
    };
  }
  if (!got.vnetHdr) {
    return {
      ok: false,
      rows: [{ group: GROUP, name: 'virtio-net header', status: 'FAIL', detail: 'the tap came without it', fix: 'run usernet with --no-offload' }],
    };
  }
  const rows: CheckRow[] = [{ group: GROUP, name: 'virtio-net header', status: 'PASS', detail: 'IFF_VNET_HDR accepted' }];
  for (const o of OFFLOAD_BITS) {
    const on = (got.offloads & o.bit) !== 0;
    rows.push({
      group: GROUP,
      name: o.name,
      status: on ? 'PASS' : 'WARN',
      detail: on ? 'accepted by TUNSETOFFLOAD' : 'refused by TUNSETOFFLOAD',
      ...(on ? {} : { fix: o.without }),
    });
  }
  return { ok: true, rows };
}

/** As root: can a user namespace be made (what ordinary users' `usernet run` needs)? */
function userNamespaces(root: boolean, plain: CheckRow[]): CheckRow {
  const row = { group: GROUP, name: 'user namespaces' };
  let max = '';
  try {
    max = readFileSync('/proc/sys/user/max_user_namespaces', 'utf8').trim();
  } catch {
    // not there on kernels without user namespaces
  }
  const fix = 'sysctl -w user.max_user_namespaces=15000 (on Ubuntu also kernel.apparmor_restrict_unprivileged_userns=0)';
  if (!root) {
    const ns = plain[0];
    return ns.status === 'PASS' ? { ...row, status: 'PASS', detail: `created (max_user_namespaces ${max})` } : { ...row, status: 'FAIL', detail: ns.detail, fix };
  }
  try {
    closeAll(native.openTapInNamespace({ target: target(true), tap: { name: PROBE_TAP, vnetHdr: false, offloads: 0 } }));
    return { ...row, status: 'PASS', detail: `created (max_user_namespaces ${max}); ordinary users' usernet run needs them` };
  } catch (err) {
    return { ...row, status: 'WARN', detail: describe(err), fix: `root does not need them; for ordinary users: ${fix}` };
  }
}

function gidInRange(): { inRange: boolean; text: string } {
  const gid = process.getgid?.() ?? 0;
  try {
    const [lo, hi] = readFileSync(PING_GROUP_RANGE, 'utf8').trim().split(/\s+/).map(Number);
    return { inRange: gid >= lo && gid <= hi, text: `gid ${gid}, range "${lo} ${hi}"` };
  } catch (err) {
    return { inRange: false, text: (err as Error).message };
  }
}

async function pingSockets(root: boolean, ipv6: boolean): Promise<CheckRow[]> {
  const range = gidInRange();
  const sysctl = "sysctl -w net.ipv4.ping_group_range='0 2147483647'";
  const rows: CheckRow[] = [];
  if (range.inRange) rows.push({ group: GROUP, name: 'ping_group_range', status: 'PASS', detail: `${range.text}: ping sockets allowed` });
  else if (root) rows.push({ group: GROUP, name: 'ping_group_range', status: 'PASS', detail: `${range.text}: usernet (root) widens it when it forwards the first echo` });
  else rows.push({ group: GROUP, name: 'ping_group_range', status: 'FAIL', detail: `${range.text}: no ICMP echo beyond the gateway`, fix: sysctl });
  const families: [4 | 6, string][] = ipv6 ? [[4, '127.0.0.1'], [6, '::1']] : [[4, '127.0.0.1']];
  for (const [family, dst] of families) {
    const name = family === 4 ? 'ping socket (ICMP)' : 'ping socket (ICMPv6)';
    if (!range.inRange) {
      rows.push({ group: GROUP, name, status: 'SKIP', detail: root ? 'not tried: the range excludes our group (usernet widens it)' : 'not tried: the range excludes our group' });
      continue;
    }
    try {
      rows.push({ group: GROUP, name, status: 'PASS', detail: await withTimeout(name, pingOnce(family, dst)) });
    } catch (err) {
      rows.push({ group: GROUP, name, status: 'FAIL', detail: describe(err), fix: hintOf(err) ?? 'ICMP echo beyond the gateway will not work: see the error' });
    }
  }
  return rows;
}

function hostIpv6(): CheckRow {
  const row = { group: GROUP, name: 'IPv6 on the host' };
  if (!existsSync('/proc/sys/net/ipv6')) {
    return { ...row, status: 'FAIL', detail: 'no IPv6 in this kernel (ipv6.disable=1?)', fix: 'boot without ipv6.disable=1, or run usernet with --disable-ipv6' };
  }
  try {
    const all = readFileSync('/proc/sys/net/ipv6/conf/all/disable_ipv6', 'utf8').trim();
    const lo = readFileSync('/proc/sys/net/ipv6/conf/lo/disable_ipv6', 'utf8').trim();
    if (all !== '0' || lo !== '0') {
      return {
        ...row,
        status: 'FAIL',
        detail: `disabled (net.ipv6.conf.all.disable_ipv6=${all}, lo ${lo}): guests' IPv6 cannot reach ::1 or the Internet`,
        fix: 'sysctl -w net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.lo.disable_ipv6=0, or run usernet with --disable-ipv6',
      };
    }
  } catch {
    // unreadable: the ::1 echo server below tells
  }
  return { ...row, status: 'PASS', detail: 'enabled' };
}

export async function probeKernel(opts: { ipv6: boolean }): Promise<KernelReport> {
  const root = (process.getuid?.() ?? 0) === 0;
  const rows: CheckRow[] = [tunDevice()];
  const plain = plainTap(!root);
  rows.push(...plain);
  const tapOk = plain.every((r) => r.status === 'PASS');
  rows.push({
    group: GROUP,
    name: 'rtnetlink',
    status: 'SKIP',
    detail: 'not probed: this build configures interfaces by ioctls only',
  });
  let vnetHdr = false;
  if (tapOk) {
    const v = vnetTap(!root);
    rows.push(...v.rows);
    vnetHdr = v.ok;
  } else {
    rows.push({ group: GROUP, name: 'virtio-net header', status: 'SKIP', detail: 'not tried: no tap' });
  }
  rows.push(userNamespaces(root, plain));
  rows.push(...(await pingSockets(root, opts.ipv6)));
  if (opts.ipv6) rows.push(hostIpv6());
  const nsenter = findInPath('nsenter');
  rows.push(
    nsenter === null
      ? { group: GROUP, name: 'nsenter', status: 'FAIL', detail: 'not found in PATH: usernet run needs it', fix: 'install util-linux' }
      : { group: GROUP, name: 'nsenter', status: 'PASS', detail: nsenter },
  );
  return { rows, vnetHdr };
}
