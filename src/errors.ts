/**
 * Error classes. Every error usernet raises on purpose is a UsernetError with
 * a stable `code` that callers and the CLI can switch on; messages are for
 * people and may change. Programming errors stay plain: argument checks in
 * stack/ (which does not import src/) throw RangeError or TypeError, and the
 * front ends turn those caused by user input into ConfigError. The linter
 * (eslint.config.js) refuses `new Error` and classes built on a plain Error
 * in src/ and stack/ outside this file.
 */
import { constants as osConstants } from 'node:os';
import type { ConfigSetting, InterfaceReport } from './native/types.js';

export class UsernetError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Bad user input: a value from the command line or an API caller. */
export class ConfigError extends UsernetError {
  /** The option or field at fault, when there is one. */
  readonly field: string | undefined;

  constructor(message: string, field?: string) {
    super('ERR_CONFIG', message);
    this.field = field;
  }
}

/**
 * A failed syscall in the native addon, shaped like Node's own system errors:
 * `code` is the errno name ('EPERM'), `errno` is negative (-1), `syscall`
 * names the step ('ioctl(TUNSETIFF)', 'setns(net)').
 */
export class NativeError extends UsernetError {
  readonly errno: number;
  readonly syscall: string;

  constructor(code: string, errno: number, syscall: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.errno = errno;
    this.syscall = syscall;
  }
}

/**
 * A tap could not be opened or configured; `hint` tells the user what to do
 * about it. `report` (a configuration that failed) says which settings were
 * applied, and how, before the one that could not be.
 */
export class TapError extends NativeError {
  readonly hint: string;
  readonly tapName: string;
  readonly report: InterfaceReport | null;

  constructor(from: NativeError, tapName: string, hint: string, report: InterfaceReport | null = null) {
    super(from.code, from.errno, from.syscall, `tap ${tapName}: ${from.message}`, { cause: from });
    this.hint = hint;
    this.tapName = tapName;
    this.report = report;
  }
}

const ERRNO_NAMES = new Map<number, string>();
for (const [name, n] of Object.entries(osConstants.errno)) if (!ERRNO_NAMES.has(n)) ERRNO_NAMES.set(n, name);

/**
 * The name of a positive errno as the addon's own errors spell it (libuv's
 * names: 95 is 'ENOTSUP'); `E<n>` for one Node does not know.
 */
export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `E${errno}`;
}

interface SystemErrorLike {
  message: string;
  code: string;
  errno: number;
  syscall: string;
}

function isSystemErrorLike(e: unknown): e is SystemErrorLike {
  if (typeof e !== 'object' || e === null) return false;
  const o = e as Record<string, unknown>;
  return typeof o.code === 'string' && typeof o.errno === 'number' && typeof o.syscall === 'string';
}

/**
 * Turns an error thrown by the addon (a plain Error with code, errno and
 * syscall) into a NativeError. Anything else (a TypeError from the addon's
 * own argument checks, for one) is returned unchanged.
 */
export function toNativeError(e: unknown): unknown {
  if (e instanceof NativeError || !isSystemErrorLike(e)) return e;
  return new NativeError(e.code, e.errno, e.syscall, e.message, { cause: e });
}

export const TAP_HINT_NO_DEVICE =
  'there is no /dev/net/tun: on a host, load the tun module (modprobe tun); in a container, pass the device in ' +
  '(docker run --device /dev/net/tun, podman run --device /dev/net/tun); under gVisor see docs/gvisor.md';
export const TAP_HINT_NOT_TUN =
  'the file at /dev/net/tun is not the tun device (it answers the tun ioctls with ENOTTY: something such as /dev/null ' +
  'is mounted over it); give the container the real device (docker run --device /dev/net/tun) or load the tun module on the host';
export const TAP_HINT_PERMISSION =
  'needs CAP_NET_ADMIN: run as root, or use `usernet run` which creates a user namespace';
export const TAP_HINT_TUN_MODE =
  '/dev/net/tun is not open to this user (distributions ship it with mode 0666, which is safe: a tap still needs ' +
  'CAP_NET_ADMIN in its namespace); as root: chmod 0666 /dev/net/tun, or run usernet as root';
export const TAP_HINT_BUSY =
  'the tap is already in use by another process (a tap can be attached by only one process unless created with IFF_MULTI_QUEUE)';
export const TAP_HINT_NOT_A_TAP =
  'an interface of that name exists and is not a tap (a tun device, or another kind): pick another name ' +
  '(--tap NAME, --tap-name NAME for `usernet run`, TAPNAME for slirp4netns) or delete it';
export const TAP_HINT_VNET =
  'the tap refused its virtio-net header settings: run with --no-offload to open a plain tap';

/** What each setting is, for hints. */
const SETTING_TEXT: Record<ConfigSetting, string> = {
  loopbackUp: 'bring lo up',
  mtu: 'set the MTU',
  mac: 'set the MAC address',
  ipv4: 'set the IPv4 address',
  txQueueLen: 'set the queue length',
  up: 'bring the link up',
  defaultGateway: 'add the IPv4 default route',
  ipv6: 'add the IPv6 address',
  defaultGateway6: 'add the IPv6 default route',
};

/** A hint for a configuration that stopped at a setting neither the ioctl nor rtnetlink could apply. */
export function configureHint(report: InterfaceReport): string | undefined {
  for (const [key, step] of Object.entries(report.steps) as [ConfigSetting, NonNullable<InterfaceReport['steps'][ConfigSetting]>][]) {
    if (step.way !== null || step.rtnetlinkError === null) continue;
    const ways = step.ioctlError !== null ? `neither the ioctl (${step.ioctlError}) nor rtnetlink (${step.rtnetlinkError})` : `rtnetlink (${step.rtnetlinkError})`;
    return (
      `${ways} could ${SETTING_TEXT[key]} on ${report.name}, and it cannot work without that: this kernel or sandbox ` +
      'does not let usernet configure interfaces; configure it from outside and give usernet the tap unconfigured ' +
      '(usernet --tap NAME, or slirp4netns without --configure); gVisor: see docs/gvisor.md for the versions that take rtnetlink link and route requests'
    );
  }
  return undefined;
}

/**
 * Adds a user-facing hint to the errors people actually hit when opening or
 * configuring a tap. Errors it has no advice for come back as they are
 * (converted to NativeError when they came from the addon).
 */
export function translateTapError(err: unknown, name: string): Error {
  const report = reportOf(err);
  const e = toNativeError(err);
  if (!(e instanceof NativeError) || e instanceof TapError) return e instanceof Error ? e : new Error(String(e));
  let hint: string | undefined;
  if (e.code === 'EACCES' && e.syscall === 'open(/dev/net/tun)') hint = TAP_HINT_TUN_MODE;
  else if (e.code === 'EPERM' || e.code === 'EACCES') hint = TAP_HINT_PERMISSION;
  else if (e.syscall === 'open(/dev/net/tun)' && (e.code === 'ENOENT' || e.code === 'ENODEV' || e.code === 'ENXIO'))
    hint = TAP_HINT_NO_DEVICE;
  else if (e.syscall === 'ioctl(TUNSETIFF)' && (e.code === 'ENOTTY' || e.code === 'ENOTSUP')) hint = TAP_HINT_NOT_TUN;
  else if (e.code === 'EBUSY' && e.syscall === 'ioctl(TUNSETIFF)') hint = TAP_HINT_BUSY;
  else if (e.code === 'EINVAL' && e.syscall === 'ioctl(TUNSETIFF)') hint = TAP_HINT_NOT_A_TAP;
  else if (e.syscall === 'ioctl(TUNSETVNETHDRSZ)' || e.syscall === 'ioctl(TUNSETOFFLOAD)') hint = TAP_HINT_VNET;
  else if (report !== null) hint = configureHint(report);
  return hint === undefined ? e : new TapError(e, name, hint, report);
}

function reportOf(err: unknown): InterfaceReport | null {
  if (typeof err !== 'object' || err === null || !('report' in err)) return null;
  const r = (err as { report: unknown }).report;
  return typeof r === 'object' && r !== null && 'steps' in r ? (r as InterfaceReport) : null;
}

export const PING_HINT_GROUP_RANGE =
  "unprivileged ICMP needs the group in net.ipv4.ping_group_range: sysctl -w net.ipv4.ping_group_range='0 2147483647'";

/**
 * A ping socket could not be created; `hint` tells the user what to do. The
 * kernel checks only the group range, not capabilities, so root gets EACCES
 * too when gid 0 is outside the range (the default range "1 0" is empty).
 */
export class PingError extends NativeError {
  readonly hint: string;

  constructor(from: NativeError, hint: string) {
    super(from.code, from.errno, from.syscall, `ping socket: ${from.message}; ${hint}`, { cause: from });
    this.hint = hint;
  }
}

/** Adds the ping_group_range hint to EACCES from socket(ICMP); other errors come back as NativeErrors. */
export function translatePingError(err: unknown): Error {
  const e = toNativeError(err);
  if (!(e instanceof NativeError) || e instanceof PingError) return e instanceof Error ? e : new Error(String(e));
  if (e.code === 'EACCES' && e.syscall === 'socket(ICMP)') return new PingError(e, PING_HINT_GROUP_RANGE);
  return e;
}
