/**
 * `usernet run -- CMD`: a new network namespace (plus a user namespace when
 * not root) with a configured tap, usernet's bridge and gateway behind it,
 * and CMD running inside with inherited stdio. usernet exits with CMD's
 * status; the namespace and its tap vanish when CMD and usernet are gone,
 * because only usernet holds a reference to them (an fd).
 *
 * CMD is started through nsenter(1) pointed at /proc/<our pid>/fd/<ns fd>:
 * Node cannot enter a namespace itself before exec, and util-linux is on every
 * Linux system that has ip(8).
 *
 * IPv6: the kernel in the namespace configures itself by SLAAC from the
 * gateway's router advertisements. CMD starts only once a global address in
 * the prefix has passed duplicate address detection and the default route
 * is in place (read from /proc/<pid>/net of a placeholder process inside the
 * namespace, no netlink), or after IPV6_WAIT_MS with a warning: a command
 * must not fail to start because IPv6 did not come up.
 */
import { spawn } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import { readFileSync, readlinkSync } from 'node:fs';
import { findInPath } from './find-in-path.js';
import type { Logger } from './log.js';
import type { RunCommand } from './options.js';
import { Runtime } from './runtime.js';
import { native } from './native/addon.js';
import { TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_USO4, TUN_F_USO6 } from './native/types.js';
import { formatIpv4 } from '../stack/wire/ipv4-address.js';
import { macToBytes } from '../stack/wire/mac.js';
import { UsernetError } from './errors.js';
import { GUEST_IPV6_AUTO } from './options.js';
import { formatIpv6, parsePrefix } from '../stack/wire/ipv6-address.js';
import { startWarmUp, type RunningWarmUp } from './warm-up.js';
import { runtimeOptionsForTaps } from './tap-report.js';

export const OFFLOADS = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_USO4 | TUN_F_USO6;

/** Guest address offset within the network, as in slirp: N+100. */
const GUEST_HOST = 100;
const GATEWAY_HOST = 2;
/** Router solicitation delay (up to 1 s) plus DAD (1 s) with room to spare. */
const IPV6_WAIT_MS = 10_000;
const IPV6_POLL_MS = 20;
/** IFA_F_TENTATIVE and IFA_F_DADFAILED in /proc/net/if_inet6's flags. */
const IFA_F_TENTATIVE = 0x40;
const IFA_F_DADFAILED = 0x08;

export async function runInNamespace(cmd: RunCommand, log: Logger): Promise<number> {
  const o = cmd.options;
  const nsenter = findInPath('nsenter');
  if (nsenter === null) {
    throw new UsernetError('ERR_NO_NSENTER', 'nsenter(1) not found in PATH: install util-linux');
  }
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  const asRoot = uid === 0;
  const guest = formatIpv4((o.network + GUEST_HOST) >>> 0);
  const gateway = formatIpv4((o.network + GATEWAY_HOST) >>> 0);
  const ns = native.openTapInNamespace({
    target: { create: true, ...(asRoot ? {} : { createUserns: { uid, gid } }) },
    tap: { name: cmd.tapName, vnetHdr: o.offload, offloads: o.offload ? OFFLOADS : 0 },
    configure: {
      name: cmd.tapName,
      loopbackUp: true,
      mtu: o.mtu,
      ...(cmd.guestMac >= 0 ? { mac: macToBytes(cmd.guestMac) } : {}),
      ipv4: guest,
      prefixLength: o.prefix,
      up: true,
      defaultGateway: gateway,
    },
  });
  log.debug(`namespace ready: ${cmd.tapName} ${guest}/${o.prefix} via ${gateway}`);

  // The tap may run without the vnet header or keep another MTU (gVisor): the runtime follows it.
  const runtime = new Runtime(runtimeOptionsForTaps(o, [ns], log), log);
  let exitStatus = 1;
  let warm: RunningWarmUp | null = null;
  try {
    runtime.addTap(ns);
    // While the namespace's kernel configures IPv6 (about 2 s), the warm-up runs; the command starts either way.
    warm = startWarmUp(runtime.options, log);
    const nsArgs = [`--net=/proc/${process.pid}/fd/${ns.netnsFd}`];
    if (ns.usernsFd >= 0) nsArgs.unshift(`--user=/proc/${process.pid}/fd/${ns.usernsFd}`);
    let guest6: string | null = null;
    if (o.ipv6Prefix) {
      guest6 = await waitForSlaac(nsenter, nsArgs, ns.netnsFd, o.ipv6Prefix, log);
      if (guest6 === null) log.warn(`IPv6 not configured in the namespace after ${IPV6_WAIT_MS / 1000} s; starting the command anyway`);
      else log.debug(`namespace IPv6 ready: ${guest6}`);
    }
    for (const f of o.forwards ?? []) {
      if (f.guestAddr !== GUEST_IPV6_AUTO) continue;
      if (guest6 === null) throw new UsernetError('ERR_FORWARD_ADDRESS', `-p ${f.hostAddr}:${f.hostPort}: the namespace has no IPv6 address to forward to`);
      f.guestAddr = guest6;
    }
    await runtime.startForwards();
    await warm?.stop();
    warm = null;
    const dump = () => runtime.logStats();
    process.on('SIGUSR1', dump);
    try {
      exitStatus = await runChild(nsenter, [...nsArgs, '--', ...cmd.argv], log);
    } finally {
      process.off('SIGUSR1', dump);
    }
  } finally {
    await warm?.stop();
    runtime.close();
    native.closeFd(ns.netnsFd);
    if (ns.usernsFd >= 0) native.closeFd(ns.usernsFd);
  }
  return exitStatus;
}

/**
 * Waits until the namespace has a usable (not tentative) address in the
 * prefix and a default route; returns the address, or null on timeout.
 * A placeholder process inside the namespace lends us its /proc/PID/net.
 */
async function waitForSlaac(nsenter: string, nsArgs: string[], netnsFd: number, prefix: string, log: Logger): Promise<string | null> {
  const want = Buffer.from(parsePrefix(prefix).address).toString('hex').slice(0, 16);
  const child = spawn(nsenter, [...nsArgs, '--', 'sleep', String(IPV6_WAIT_MS / 1000 + 5)], { stdio: 'ignore' });
  child.on('error', (err) => log.debug(`IPv6 wait helper: ${err.message}`));
  const ourNs = readlinkSync(`/proc/self/fd/${netnsFd}`);
  const deadline = Date.now() + IPV6_WAIT_MS;
  try {
    while (Date.now() < deadline && child.exitCode === null) {
      await new Promise((r) => setTimeout(r, IPV6_POLL_MS));
      const pid = child.pid;
      if (pid === undefined) continue;
      try {
        // Until nsenter has joined, its /proc/PID/net is ours, not the namespace's.
        if (readlinkSync(`/proc/${pid}/ns/net`) !== ourNs) continue;
        const addr = usableAddress(readFileSync(`/proc/${pid}/net/if_inet6`, 'latin1'), want);
        if (addr !== null && hasDefaultRoute(readFileSync(`/proc/${pid}/net/ipv6_route`, 'latin1'))) return addr;
      } catch {
        // The helper is starting or gone; try again.
      }
    }
    return null;
  } finally {
    child.kill('SIGKILL');
  }
}

/** First address whose top 64 bits are `want` (16 hex digits) and that is neither tentative nor failed DAD. */
export function usableAddress(ifInet6: string, want: string): string | null {
  for (const line of ifInet6.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 6 || f[0].length !== 32 || !f[0].startsWith(want)) continue;
    const flags = parseInt(f[4], 16);
    if ((flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED)) !== 0) continue;
    return formatIpv6(Buffer.from(f[0], 'hex'));
  }
  return null;
}

/** Whether /proc/net/ipv6_route has a ::/0 route through a gateway. */
export function hasDefaultRoute(ipv6Route: string): boolean {
  const zero = '0'.repeat(32);
  for (const line of ipv6Route.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 10 && f[0] === zero && f[1] === '00' && f[4] !== zero) return true;
  }
  return false;
}

/** Runs the child with our stdio; resolves to its exit status (128+signal when killed, like a shell). */
function runChild(file: string, args: string[], log: Logger): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: 'inherit' });
    // A terminal sends SIGINT to the whole foreground group, CMD included: forwarding it would
    // deliver it twice. Other signals are meant for us and CMD alike.
    const forward = (sig: NodeJS.Signals) => {
      if (sig === 'SIGINT' && process.stdin.isTTY) return;
      child.kill(sig);
    };
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];
    for (const s of signals) process.on(s, forward);
    const done = () => {
      for (const s of signals) process.off(s, forward);
    };
    child.on('error', (err) => {
      done();
      reject(err);
    });
    child.on('exit', (code, signal) => {
      done();
      if (signal !== null) {
        log.debug(`command killed by ${signal}`);
        resolve(128 + (osConstants.signals[signal] ?? 0));
      } else {
        resolve(code ?? 1);
      }
    });
  });
}

