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
import { performance } from 'node:perf_hooks';
import { constants as osConstants, tmpdir } from 'node:os';
import { mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findInPath } from './find-in-path.js';
import type { Logger } from './log.js';
import type { RunCommand } from './options.js';
import { networkInternals, openNetwork, type Network } from './network.js';
import { startMetrics, type MetricsServer } from './metrics-endpoint.js';
import { native } from './native/addon.js';
import { OFFLOADS } from './native/types.js';
import { formatIpv4 } from '../stack/wire/ipv4-address.js';
import { macToBytes } from '../stack/wire/mac.js';
import { UsernetError } from './errors.js';
import { GUEST_IPV6_AUTO } from './options.js';
import { formatIpv6, parsePrefix, prefixHost } from '../stack/wire/ipv6-address.js';
import type { NamespaceTarget } from './native/types.js';
import { guestResolvConf, RESOLV_CONF_PATH } from './resolv-conf.js';
import { onStatsSignal } from './stats-signal.js';
import { namespacesWithSubordinateIds } from './userns.js';
import { multiqueueRefused, ShardSet, workerCount } from './shards/shard-set.js';
import { runtimeOptionsForTaps } from './tap-report.js';

export { OFFLOADS };

/** Guest address offset within the network, as in slirp: N+100. */
const GUEST_HOST = 100;
const GATEWAY_HOST = 2;
const DNS_HOST = 3;
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
  // Until CMD runs, SIGINT and SIGTERM end the start-up: every step below
  // checks, and the finally blocks remove what was made (the SLAAC placeholder,
  // the user-namespace holder, the namespaces, the resolv.conf copy).
  const startup = new AbortController();
  const abortStartup = (sig: NodeJS.Signals) => startup.abort(sig);
  const startupSignals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of startupSignals) process.on(s, abortStartup);
  const endStartup = () => {
    for (const s of startupSignals) process.off(s, abortStartup);
  };
  // A shard that stops during start-up ends it with its error (after, runChild's onFatal).
  let shardFailure: Error | null = null;
  const checkAbort = () => {
    if (shardFailure !== null) throw shardFailure;
    if (startup.signal.aborted) throw new StartupAborted(startup.signal.reason as NodeJS.Signals);
  };
  const workers = workerCount(cmd.workers, o, 1, log);

  const guest = formatIpv4((o.network + GUEST_HOST) >>> 0);
  const gateway = formatIpv4((o.network + GATEWAY_HOST) >>> 0);
  const fds: number[] = [];
  let network: Network | null = null;
  let shards: ShardSet | null = null;
  let stopStats = () => {};
  let metrics: MetricsServer | null = null;
  let dnsDir: string | null = null;
  try {
    const spaces = await guestNamespaces(log);
    checkAbort();
    if (spaces.netnsFd >= 0) fds.push(spaces.netnsFd);
    if (spaces.usernsFd >= 0) fds.push(spaces.usernsFd);
    const ns = native.openTapInNamespace({
      target: spaces.target,
      tap: { name: cmd.tapName, vnetHdr: o.offload, offloads: o.offload ? OFFLOADS : 0, ...(workers > 1 ? { queues: workers } : {}) },
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
    if (ns.netnsFd >= 0) fds.push(ns.netnsFd);
    if (ns.usernsFd >= 0) fds.push(ns.usernsFd);
    const netnsFd = spaces.netnsFd >= 0 ? spaces.netnsFd : ns.netnsFd;
    const usernsFd = spaces.usernsFd >= 0 ? spaces.usernsFd : ns.usernsFd;
    log.debug(`namespace ready: ${cmd.tapName} ${guest}/${o.prefix} via ${gateway}`);

    // The tap may run without the vnet header or keep another MTU (gVisor): the runtime follows it.
    // Forwards and socket ports wait: a -p to the guest's IPv6 address needs SLAAC first.
    if ((ns.queueFds ?? []).length > 0) {
      // Engine shards, one per tap queue (src/shards/), each warming up its own code.
      shards = await ShardSet.open(runtimeOptionsForTaps(o, [ns], log), log, ns);
      shards.onFatal = (err) => (shardFailure = err);
      const s = shards;
      stopStats = onStatsSignal(() => s.logStats());
      s.startWarmUp();
    } else {
      if (workers > 1) multiqueueRefused(ns, cmd.workers !== null, log);
      network = await openNetwork(o, log, { handles: [ns], deferPorts: true });
    }
    const internals = network === null ? null : networkInternals(network);
    if (internals !== null) {
      stopStats = onStatsSignal(() => internals.runtime.logStats());
      metrics = await startMetrics(o, internals.runtime, log);
      // While the namespace's kernel configures IPv6 (about 2 s), the warm-up runs; the command starts either way.
      internals.startWarmUp();
    }
    const nsArgs = [`--net=/proc/${process.pid}/fd/${netnsFd}`];
    if (usernsFd >= 0) {
      // The single-id map denies setgroups, which nsenter would call to drop
      // supplementary groups; keeping the credentials keeps us uid 0 inside all the same.
      nsArgs.unshift(`--user=/proc/${process.pid}/fd/${usernsFd}`, ...(spaces.subordinateIds ? [] : ['--preserve-credentials']));
    }
    let guest6: string | null = null;
    if (o.ipv6Prefix) {
      // The command waits for this (about two seconds): a line when it starts and one when it is done.
      const since = performance.now();
      log.info(`IPv6: waiting for the namespace's SLAAC address in ${o.ipv6Prefix} (at most ${IPV6_WAIT_MS / 1000} s)`);
      guest6 = await waitForSlaac(nsenter, nsArgs, netnsFd, o.ipv6Prefix, log, startup.signal);
      checkAbort();
      if (guest6 !== null) log.info(`namespace IPv6 ready: ${guest6} after ${(performance.now() - since).toFixed(0)} ms`);
    }
    for (const f of o.forwards ?? []) {
      if (f.guestAddr !== GUEST_IPV6_AUTO) continue;
      if (guest6 === null) throw new UsernetError('ERR_FORWARD_ADDRESS', `-p ${f.hostAddr}:${f.hostPort}: the namespace has no IPv6 address to forward to`);
      f.guestAddr = guest6;
    }
    if (shards !== null) await shards.startPorts();
    else await internals?.startPorts();
    checkAbort();
    await internals?.stopWarmUp();
    await shards?.stopWarmUp();
    let argv = withParentDeathSignal(cmd.argv, log);
    if (o.dns) {
      dnsDir = mkdtempSync(join(tmpdir(), 'usernet-dns-'));
      argv = withGuestResolvConf(dnsDir, o, argv, log);
    }
    checkAbort();
    endStartup();
    return await runChild(nsenter, [...nsArgs, '--', ...argv], log, shards);
  } catch (err) {
    if (err instanceof StartupAborted) {
      log.info(`${err.signal} during start-up: stopping`);
      return 128 + (osConstants.signals[err.signal] ?? 0);
    }
    throw err;
  } finally {
    endStartup();
    stopStats();
    await metrics?.close();
    // The warm-up, the socket ports, then the runtime (the tap with it).
    await network?.close();
    await shards?.close();
    for (const fd of fds) native.closeFd(fd);
    if (dnsDir !== null) rmSync(dnsDir, { recursive: true, force: true });
  }
}

/** SIGINT/SIGTERM/SIGHUP arrived before CMD started (caught in `run`, which exits as the signal asks). */
class StartupAborted extends UsernetError {
  constructor(readonly signal: NodeJS.Signals) {
    super('ERR_STARTUP_ABORTED', `start-up interrupted by ${signal}`);
  }
}

interface GuestNamespaces {
  target: NamespaceTarget;
  /** fds usernet opened itself for namespaces made before the tap helper runs; -1 when the helper creates them. */
  netnsFd: number;
  usernsFd: number;
  /** The user namespace maps /etc/subuid's range (setgroups allowed) rather than the user alone. */
  subordinateIds: boolean;
}

/**
 * Where the tap helper goes: root creates a network namespace; an ordinary
 * user gets a user namespace too, with its subordinate ids mapped when
 * /etc/subuid grants some (userns.ts), else with its own uid alone.
 */
async function guestNamespaces(log: Logger): Promise<GuestNamespaces> {
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  if (uid === 0) return { target: { create: true }, netnsFd: -1, usernsFd: -1, subordinateIds: false };
  const mapped = await namespacesWithSubordinateIds(log);
  if (mapped === null) return { target: { create: true, createUserns: { uid, gid } }, netnsFd: -1, usernsFd: -1, subordinateIds: false };
  return {
    target: { netnsPath: `/proc/self/fd/${mapped.netnsFd}`, usernsPath: `/proc/self/fd/${mapped.usernsFd}` },
    netnsFd: mapped.netnsFd,
    usernsFd: mapped.usernsFd,
    subordinateIds: true,
  };
}

/**
 * CMD dies with usernet: without its network it would hang on, and a crash
 * (or a SIGKILL) leaves no handler to stop it. setpriv(1) asks the kernel
 * for SIGKILL when its parent, usernet, ends (PR_SET_PDEATHSIG, as
 * `unshare --kill-child`); it runs last, after nsenter has entered the user
 * namespace (a change of credentials clears the setting), and the chain
 * nsenter, unshare, sh, setpriv, CMD is one process (exec, no fork), so the
 * parent is usernet itself. Without setpriv, CMD runs without it (debug line).
 */
function withParentDeathSignal(argv: string[], log: Logger): string[] {
  const setpriv = findInPath('setpriv');
  if (setpriv === null) {
    log.debug('setpriv not found: the command is not killed if usernet dies');
    return argv;
  }
  return [setpriv, '--pdeathsig', 'KILL', '--', ...argv];
}

/**
 * CMD's view of /etc/resolv.conf names usernet's forwarder (N+3, and P::3
 * with IPv6), as rootlesskit's --copy-up=/etc gives its guests: CMD starts in
 * a private mount namespace (unshare(1)) where a copy written to `dir` is
 * bound over /etc/resolv.conf. The host's file is untouched. When the bind
 * fails (no /etc/resolv.conf to mount over), CMD runs with the host's file
 * and a warning.
 */
function withGuestResolvConf(dir: string, o: RunCommand['options'], argv: string[], log: Logger): string[] {
  const unshare = findInPath('unshare');
  const mount = findInPath('mount');
  const sh = findInPath('sh');
  if (unshare === null || mount === null || sh === null) {
    log.warn('unshare, mount or sh not found: the command sees the host\'s /etc/resolv.conf, not usernet\'s DNS');
    return argv;
  }
  const servers = [formatIpv4((o.network + DNS_HOST) >>> 0)];
  if (o.ipv6Prefix) servers.push(formatIpv6(prefixHost(parsePrefix(o.ipv6Prefix).address, DNS_HOST)));
  let host = '';
  try {
    host = readFileSync(RESOLV_CONF_PATH, 'utf8');
  } catch {
    // none on the host: the copy has our servers only
  }
  const file = join(dir, 'resolv.conf');
  writeFileSync(file, guestResolvConf(host, servers), { mode: 0o644 });
  const script =
    `"$1" --bind "$0" ${RESOLV_CONF_PATH} || echo "usernet: warn: could not mount usernet's resolv.conf over ${RESOLV_CONF_PATH}; DNS uses the host's servers" >&2; shift; exec "$@"`;
  return [unshare, '--mount', '--propagation', 'private', '--', sh, '-c', script, file, mount, ...argv];
}

/**
 * Waits until the namespace has a usable (not tentative) address in the
 * prefix and a default route; returns the address, or null on timeout.
 * A placeholder process inside the namespace lends us its /proc/PID/net.
 */
async function waitForSlaac(
  nsenter: string,
  nsArgs: string[],
  netnsFd: number,
  prefix: string,
  log: Logger,
  abort: AbortSignal,
): Promise<string | null> {
  const want = Buffer.from(parsePrefix(prefix).address).toString('hex').slice(0, 16);
  const child = spawn(nsenter, [...nsArgs, '--', ...withParentDeathSignal(['sleep', String(IPV6_WAIT_MS / 1000 + 5)], log)], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  child.on('error', (err) => log.debug(`IPv6 wait helper: ${err.message}`));
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const ourNs = readlinkSync(`/proc/self/fd/${netnsFd}`);
  const deadline = Date.now() + IPV6_WAIT_MS;
  try {
    while (Date.now() < deadline && !abort.aborted) {
      await new Promise((r) => setTimeout(r, IPV6_POLL_MS));
      if (child.exitCode !== null || child.signalCode !== null) {
        await exited;
        log.warn(`IPv6: could not look into the namespace (${stderr.trim() || `nsenter exited with ${child.exitCode ?? child.signalCode}`}); starting the command without waiting for SLAAC`);
        return null;
      }
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
    if (!abort.aborted) log.warn(`IPv6 not configured in the namespace after ${IPV6_WAIT_MS / 1000} s; starting the command anyway`);
    return null;
  } finally {
    child.kill('SIGKILL');
    await exited;
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
function runChild(file: string, args: string[], log: Logger, shards: ShardSet | null): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: 'inherit' });
    // A shard that stops leaves the command without its network: it is killed, usernet fails with the shard's error.
    let fatal: Error | null = null;
    if (shards !== null) {
      shards.onFatal = (err) => {
        fatal = err;
        child.kill('SIGKILL');
      };
    }
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
      if (fatal !== null) reject(fatal);
      else if (signal !== null) {
        log.debug(`command killed by ${signal}`);
        resolve(128 + (osConstants.signals[signal] ?? 0));
      } else {
        resolve(code ?? 1);
      }
    });
  });
}

