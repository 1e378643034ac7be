/**
 * `usernet slirp4netns [OPTION]... PID|PATH TAPNAME`, also run when the
 * program is invoked as `slirp4netns`: the slirp4netns 1.2.0 interface in
 * front of the ordinary usernet runtime (same bridge, gateway and NAT).
 *
 * How it works (the order clients rely on)
 * 1. Parse; refuse what usernet cannot do with exit status 1 before
 *    touching anything. With --enable-sandbox but no CAP_SYS_ADMIN (an
 *    ordinary user, as rootlesskit runs us), re-execute this same process
 *    (same PID, same fds) inside the target's user namespace first, where we
 *    are uid 0 with every capability (userns-reexec.ts); refuse when there
 *    is none to join.
 * 2. Open the tap inside the target namespace with the native helper: it
 *    forks, joins the user namespace (PID mode: /proc/PID/ns/user, failure
 *    ignored; --userns-path: required) and the network namespace, attaches
 *    to TAPNAME or creates it, applies --configure with ioctls, and passes
 *    the fd back; it is reaped before the call returns, so no helper
 *    process outlives this one or holds its stdout/stderr.
 * 3. Start the runtime on that tap; with --api-socket, listen (the API
 *    server keeps an fd of the socket's directory to unlink it at exit).
 * 4. --enable-sandbox, then --enable-seccomp (slirp4netns' order): a new
 *    mount namespace whose root holds only /etc and /run, every thread's
 *    capabilities dropped; then the syscall filter on every thread. Nothing
 *    after this point opens files outside /etc and /run: every module is
 *    loaded (static imports), the pcap file and resolv.conf were opened by
 *    the runtime, the API socket is bound.
 * 5. Only then write "1" to the ready fd and close it.
 * 6. Run until SIGTERM/SIGINT, hang-up on the exit fd, the tap failing (its
 *    device deleted: exit 1, as slirp4netns exits when a tap read fails) or,
 *    in PID mode, the target process exiting (our tap fd keeps its network
 *    namespace alive, so the tap would never fail by itself); then reset
 *    guest connections, close sockets, unlink the API socket, and exit.
 * Any failure before step 5 exits 1 without writing to the ready fd.
 */
import { accessSync, closeSync, writeSync } from 'node:fs';
import { Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import { isIPv4, isIPv6 } from 'node:net';
import { defaults } from '../../stack/config.js';
import { formatIpv4 } from '../../stack/wire/ipv4-address.js';
import { macToBytes, parseMac } from '../../stack/wire/mac.js';
import { UsernetError } from '../errors.js';
import { isLogFormat, isLogLevel, openLogger, type Logger } from '../log.js';
import type { RuntimeOptions } from '../options.js';
import { native } from '../native/addon.js';
import type { NamespaceTapRequest, PidWatch } from '../native/types.js';
import { OFFLOADS } from '../native/types.js';
import { networkInternals, openNetwork } from '../network.js';
import { startApiServer, type ApiServer } from './api.js';
import { slirpUsage } from './help.js';
import { parseSlirpArgs, SlirpRuntimeError, SlirpUsageError, unsupportedOption, type SlirpOptions } from './options.js';
import { decideUserns, reexecInUserns, usernsFacts } from './userns-reexec.js';
import { onStatsSignal } from '../stats-signal.js';
import { isCaptureFormat } from '../observability-options.js';
import type { CaptureFormat } from '../pcap-writer.js';

/** The slirp4netns release whose interface this front end speaks, and its commit. */
export const SLIRP4NETNS_COMPAT_VERSION = '1.2.0';
export const SLIRP4NETNS_COMPAT_COMMIT = '656041d45cfca7a4176f6b7eed9e4fe6c11e8383';
/** What `-v` reports for the libraries slirp4netns is built on (see slirpVersionText). */
export const LIBSLIRP_COMPAT_VERSION = '4.7.0';
export const SLIRP_CONFIG_VERSION_MAX = 3;
export const LIBSECCOMP_COMPAT_VERSION = '2.5.4';
const GUEST_HOST = 100;
const GATEWAY_HOST = 2;
/**
 * What --enable-sandbox keeps, as slirp4netns does: /etc for resolv.conf and
 * hosts, /run because clients put the API socket under it. The new root's
 * tmpfs is mounted on /tmp, inside the new mount namespace only.
 */
export const SANDBOX_KEEP: readonly string[] = ['/etc', '/run'];
export const SANDBOX_SCRATCH = '/tmp';

export async function runSlirp4netns(argv: string[], prog: string, usernetVersion: string): Promise<number> {
  let cmd;
  try {
    cmd = parseSlirpArgs(argv, pathProbe);
  } catch (err) {
    if (!(err instanceof SlirpUsageError)) throw err;
    // slirp4netns' order: its one line on stderr (getopt's with the program name), then the usage on stdout.
    if (err.message !== '') process.stderr.write(`${err.prefixed ? `${prog}: ` : ''}${err.message}\n`);
    if (err.usage) process.stdout.write(slirpUsage(prog));
    return 1;
  }
  if (cmd.kind === 'help') {
    process.stdout.write(slirpUsage(prog));
    return 0;
  }
  if (cmd.kind === 'version') {
    process.stdout.write(slirpVersionText(usernetVersion));
    return 0;
  }
  for (const w of cmd.warnings) process.stdout.write(`${w}\n`);
  const o = cmd.options;
  const refused = unsupportedOption(o);
  if (refused !== null) {
    process.stderr.write(`${refused}\n`);
    return 1;
  }
  const log = slirpLogger(process.env);
  const facts = usernsFacts(o);
  const userns = decideUserns(o, facts);
  try {
    if (userns.kind === 'refuse') throw new UsernetError('ERR_SANDBOX_USERNS', userns.message);
    if (userns.kind === 'reexec') {
      log.info(`enable-sandbox: no CAP_SYS_ADMIN here; re-executing inside ${userns.userns}`);
      reexecInUserns(userns.userns, [o.readyFd, o.exitFd]);
    }
    return await serve(o, log, facts.joined);
  } catch (err) {
    // slirp4netns' words for the same failure first (scripts match them), then usernet's own account.
    const words = slirpWordsFor(err as Error & { syscall?: string }, o);
    if (words !== null) process.stderr.write(`${words}\n`);
    process.stderr.write(`${prog}: ${(err as Error).message}\n`);
    if (process.env.USERNET_DEBUG) process.stderr.write(`${(err as Error).stack}\n`);
    return 1;
  }
}

/**
 * slirp4netns' command line has no room for usernet's own switches: the
 * environment carries them. USERNET_LOG_LEVEL (default warn),
 * USERNET_LOG_FORMAT (text or json), USERNET_LOG_FILE (append there instead
 * of stderr; opened before the sandbox, which keeps the fd). A value it does
 * not know is said once on stderr and the default used.
 */
export function slirpLogger(env: NodeJS.ProcessEnv): Logger {
  const level = env.USERNET_LOG_LEVEL ?? 'warn';
  const format = env.USERNET_LOG_FORMAT ?? 'text';
  if (!isLogFormat(format)) process.stderr.write(`usernet: warn: USERNET_LOG_FORMAT=${format}: use text or json; using text\n`);
  return openLogger(isLogLevel(level) ? level : 'warn', isLogFormat(format) ? format : 'text', env.USERNET_LOG_FILE || null, 'USERNET_LOG_FILE');
}

/** USERNET_PCAP_FORMAT: pcapng (default) or pcap; another value is said and pcapng used. */
export function slirpPcapFormat(env: NodeJS.ProcessEnv, log: Logger): CaptureFormat {
  const f = env.USERNET_PCAP_FORMAT ?? 'pcapng';
  if (isCaptureFormat(f)) return f;
  log.warn(`USERNET_PCAP_FORMAT=${f}: use pcapng or pcap; using pcapng`);
  return 'pcapng';
}

/**
 * `-v`: slirp4netns' five lines, then one naming usernet. Clients parse them
 * to probe features, so the values are chosen for what they enable:
 * SLIRP_CONFIG_VERSION_MAX 3 is the highest slirp4netns 1.2.0 tests
 * (>= 2: --outbound-addr[6], >= 3: --disable-dns), both of which usernet
 * has; the libseccomp line says --enable-seccomp works. The commit is
 * slirp4netns v1.2.0's, the release whose interface this is.
 */
export function slirpVersionText(usernetVersion: string): string {
  return [
    `slirp4netns version ${SLIRP4NETNS_COMPAT_VERSION}`,
    `commit: ${SLIRP4NETNS_COMPAT_COMMIT}`,
    `libslirp: ${LIBSLIRP_COMPAT_VERSION}`,
    `SLIRP_CONFIG_VERSION_MAX: ${SLIRP_CONFIG_VERSION_MAX}`,
    `libseccomp: ${LIBSECCOMP_COMPAT_VERSION}`,
    `usernet: ${usernetVersion}`,
    '',
  ].join('\n');
}

/** access(path, F_OK) for parseSlirpArgs: null, or strerror's words for the failure. */
function pathProbe(path: string): string | null {
  try {
    accessSync(path);
    return null;
  } catch (err) {
    return strerror(err as NodeJS.ErrnoException);
  }
}

const STRERROR: Record<string, string> = {
  ENOENT: 'No such file or directory',
  EACCES: 'Permission denied',
  EPERM: 'Operation not permitted',
  ENOTDIR: 'Not a directory',
  ELOOP: 'Too many levels of symbolic links',
  ENAMETOOLONG: 'File name too long',
  EINVAL: 'Invalid argument',
};

function strerror(err: { code?: string; message: string }): string {
  if (err.code !== undefined && STRERROR[err.code] !== undefined) return STRERROR[err.code];
  // The native addon's messages end in "(strerror text)".
  const m = /\(([^()]+)\)$/.exec(err.message);
  return m !== null ? m[1] : (err.code ?? err.message);
}

/**
 * The line slirp4netns prints when the same step fails (its perror() calls
 * in nsenter, child and configure_network), or null for failures it has no
 * counterpart for.
 */
export function slirpWordsFor(err: { syscall?: string; code?: string; message: string }, o: SlirpOptions): string | null {
  if (err instanceof SlirpRuntimeError) return err.words;
  const why = strerror(err);
  switch (err.syscall) {
    case 'open(netns)':
      return `${o.netnsType === 'pid' ? `/proc/${o.pid}/ns/net` : o.target}: ${why}`;
    case 'open(userns)':
      return `${o.usernsPath ?? `/proc/${o.pid}/ns/user`}: ${why}`;
    case 'setns(net)':
      return `setns(CLONE_NEWNET): ${why}`;
    case 'setns(user)':
      return `setns(CLONE_NEWUSER): ${why}`;
    case 'open(/dev/net/tun)':
      return `open("/dev/net/tun"): ${why}`;
    case 'ioctl(TUNSETIFF)':
      return `ioctl(TUNSETIFF): ${why}`;
    case 'ioctl(SIOCSIFMTU)':
      return `cannot set MTU: ${why}`;
    case 'ioctl(SIOCSIFHWADDR)':
      return `cannot set MAC address: ${why}`;
    case 'ioctl(SIOCSIFADDR)':
      return `cannot set device address: ${why}`;
    case 'ioctl(SIOCSIFNETMASK)':
      return `cannot set device netmask: ${why}`;
    case 'ioctl(SIOCADDRT)':
      return `set route: ${why}`;
    case 'ioctl(SIOCGIFFLAGS)':
    case 'ioctl(SIOCSIFFLAGS)':
    case 'ioctl(SIOCGIFFLAGS,lo)':
    case 'ioctl(SIOCSIFFLAGS,lo)':
      return `cannot set device up: ${why}`;
    default:
      return null;
  }
}

/**
 * --outbound-addr (family 4) / --outbound-addr6 (family 6): an address of
 * that family as it is, or the first such address of the named interface
 * (for IPv6 a global one before a link-local one, which would need a scope).
 */
export function resolveOutboundAddress(value: string, family: 4 | 6 = 4): string {
  const flag = family === 4 ? 'outbound-addr' : 'outbound-addr6';
  if (family === 4 ? isIPv4(value) : isIPv6(value)) return value;
  const addrs = networkInterfaces()[value];
  // slirp4netns' words (its typo for -6 included), then usernet's hint.
  const words = family === 4 ? 'outbound-addr has to be valid ipv4 address or interface name.' : 'outbound-addr has to be valid ipv4 address or iterface name.';
  if (addrs === undefined) throw new SlirpRuntimeError(words, `${flag}: no interface named "${value}"`);
  const want = family === 4 ? 'IPv4' : 'IPv6';
  const found = addrs.filter((a) => a.family === want).sort((a, b) => Number(a.address.startsWith('fe80')) - Number(b.address.startsWith('fe80')))[0];
  if (found === undefined || found.address.startsWith('fe80')) {
    throw new SlirpRuntimeError(words, `${flag}: interface "${value}" has no ${want} address usable for outbound connections`);
  }
  return found.address;
}

export function runtimeOptionsFor(o: SlirpOptions, log: Logger, outboundAddress: string | null, outboundAddress6: string | null = null): RuntimeOptions {
  return {
    network: o.network,
    prefix: o.prefix,
    cidrText: o.cidr,
    mtu: o.mtu,
    macTableSize: defaults.macTableSize,
    macAgingMs: defaults.macAgingMs,
    macSweepMs: defaults.macSweepMs,
    offload: true,
    pcapPath: process.env.USERNET_PCAP ?? null,
    observe: { logFormat: log.format, logFile: null, statsMacTable: false, metrics: null, pcapFormat: slirpPcapFormat(process.env, log) },
    logLevel: log.level,
    statsIntervalMs: 0,
    busyPollMicros: defaults.busyPollMicros,
    warmUp: true,
    gatewayMac: parseMac(defaults.gatewayMac),
    hostLoopback: !o.disableHostLoopback,
    dnsServers: null,
    dns: !o.disableDns,
    dhcp: true,
    outboundAddress,
    outboundAddress6,
    forwards: [],
    // -6: router advertisements with fd00::/64 (the kernel configures itself by SLAAC), IPv6 NAT to the host.
    ipv6Prefix: o.enableIpv6 ? defaults.ipv6Prefix : null,
  };
}

/**
 * inTargetUserns: this process already runs in the target's user namespace
 * (re-executed there); the helper's setns into it would fail with EINVAL, so
 * joining becomes optional.
 */
export function namespaceRequest(o: SlirpOptions, inTargetUserns = false): NamespaceTapRequest {
  const joined = inTargetUserns ? { usernsOptional: true } : {};
  const target =
    o.netnsType === 'pid'
      ? { pid: o.pid, ...(o.usernsPath !== null ? { usernsPath: o.usernsPath, ...joined } : { usernsOptional: true }) }
      : { netnsPath: o.target, ...(o.usernsPath !== null ? { usernsPath: o.usernsPath, ...joined } : {}) };
  return {
    target,
    tap: { name: o.tapName, vnetHdr: true, offloads: OFFLOADS },
    ...(o.configure
      ? {
          configure: {
            name: o.tapName,
            loopbackUp: true,
            mtu: o.mtu,
            ...(o.macAddress >= 0 ? { mac: macToBytes(o.macAddress) } : {}),
            ipv4: formatIpv4((o.network + GUEST_HOST) >>> 0),
            prefixLength: o.prefix,
            up: true,
            defaultGateway: formatIpv4((o.network + GATEWAY_HOST) >>> 0),
          },
        }
      : {}),
  };
}

async function serve(o: SlirpOptions, log: Logger, inTargetUserns: boolean): Promise<number> {
  const outbound = o.outboundAddr === null ? null : resolveOutboundAddress(o.outboundAddr);
  const outbound6 = o.outboundAddr6 === null ? null : resolveOutboundAddress(o.outboundAddr6, 6);
  const handle = native.openTapInNamespace(namespaceRequest(o, inTargetUserns));
  let api: ApiServer | null = null;
  let exitWatch: Socket | null = null;
  let targetWatch: PidWatch | null = null;
  // Until the run loop below takes over, an early end is remembered: it then exits at once, without ready.
  let early: { why: string; code: number } | null = null;
  let end = (why: string, code: number): void => {
    early ??= { why, code };
  };
  // The tap may run without the vnet header or keep another MTU: the runtime follows it (openNetwork).
  const network = await openNetwork(runtimeOptionsFor(o, log, outbound, outbound6), log, {
    handles: [handle],
    onTapLost: (port, err) => end(`tap ${port.name} failed (${err.message})`, 1),
  });
  const { runtime, startWarmUp } = networkInternals(network);
  onStatsSignal(() => runtime.logStats());
  try {
    if (o.apiSocket !== null) {
      api = await startApiServer(o.apiSocket, runtime.forwards, formatIpv4((o.network + GUEST_HOST) >>> 0), log);
    }
    if (o.netnsType === 'pid') targetWatch = native.watchProcessExit(o.pid, () => end(`target process ${o.pid} exited`, 0));
    // The sandbox takes /proc away: ping sockets must be allowed before it, not on the first echo.
    if (o.enableSandbox) runtime.icmpProxy.prepare();
    confine(o, log);
  } catch (err) {
    targetWatch?.close();
    api?.close();
    await network.close();
    throw err;
  }
  return new Promise<number>((resolve) => {
    let stopped = false;
    const stop = (why: string, code: number) => {
      if (stopped) return;
      stopped = true;
      log.info(`${why}: stopping`);
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      exitWatch?.destroy();
      targetWatch?.close();
      api?.close();
      // The warm-up stops first, then the runtime.
      void network.close().then(() => resolve(code));
    };
    const onSignal = (sig: NodeJS.Signals) => stop(sig, 0);
    end = stop;
    if (early !== null) {
      stop(early.why, early.code === 0 ? 1 : early.code);
      return;
    }
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    if (o.exitFd >= 0) {
      try {
        exitWatch = watchExitFd(o.exitFd, () => stop('exit-fd closed', 0));
      } catch (err) {
        process.stderr.write(`exit-fd ${o.exitFd}: ${(err as Error).message}\n`);
        stop('bad exit-fd', 1);
        return;
      }
    }
    if (o.readyFd >= 0) {
      try {
        writeSync(o.readyFd, '1');
        closeSync(o.readyFd);
      } catch (err) {
        process.stderr.write(`ready-fd ${o.readyFd}: ${(err as Error).message}\n`);
        stop('bad ready-fd', 1);
        return;
      }
    }
    // Ready is out and the container starts; the warm-up runs next to its first steps for about a second.
    startWarmUp();
  });
}

/** --enable-sandbox, then --enable-seccomp; a failure throws (the caller exits 1, before the ready fd). */
function confine(o: SlirpOptions, log: Logger): void {
  if (o.enableSandbox) {
    try {
      const r = native.enterSandbox({ scratch: SANDBOX_SCRATCH, keep: [...SANDBOX_KEEP] });
      log.info(`sandbox: ${r.threads} threads in a new mount namespace (root: ${SANDBOX_KEEP.join(', ')}), capabilities dropped`);
    } catch (err) {
      const e = err as Error & { code?: string };
      const hint =
        e.code === 'EPERM'
          ? ' (needs CAP_SYS_ADMIN: run as root, inside a user namespace, or with a target user namespace to join)'
          : '';
      throw new UsernetError('ERR_SANDBOX', `enable-sandbox: ${e.message}${hint}`, { cause: err });
    }
  }
  if (o.enableSeccomp) {
    try {
      const r = native.installSeccompFilter();
      log.info(`seccomp: filter with ${r.denied} denied syscalls installed on every thread`);
    } catch (err) {
      throw new UsernetError('ERR_SECCOMP', `enable-seccomp: ${(err as Error).message}`, { cause: err });
    }
  }
}

/**
 * Reads and discards whatever arrives on fd (data does not stop us) and calls
 * onHangup once when the writer is gone or the fd fails.
 */
function watchExitFd(fd: number, onHangup: () => void): Socket {
  const s = new Socket({ fd, readable: true, writable: false, allowHalfOpen: true });
  let fired = false;
  const once = () => {
    if (fired) return;
    fired = true;
    onHangup();
  };
  s.on('data', () => undefined);
  s.on('end', once);
  s.on('close', once);
  s.on('error', once);
  return s;
}
