/**
 * Error classes. Every error usernet raises on purpose is a UsernetError with
 * a stable `code` that callers and the CLI can switch on; messages are for
 * people and may change. Programming errors stay plain: argument checks in
 * stack/ (which does not import src/) throw RangeError or TypeError, and the
 * front ends turn those caused by user input into ConfigError.
 */

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

/** A tap could not be opened; `hint` tells the user what to do about it. */
export class TapError extends NativeError {
  readonly hint: string;
  readonly tapName: string;

  constructor(from: NativeError, tapName: string, hint: string) {
    super(from.code, from.errno, from.syscall, `tap ${tapName}: ${from.message}`, { cause: from });
    this.hint = hint;
    this.tapName = tapName;
  }
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

export const TAP_HINT_NO_DEVICE = 'load the tun module or run with --device /dev/net/tun';
export const TAP_HINT_PERMISSION =
  'needs CAP_NET_ADMIN: run as root, or use `usernet run` which creates a user namespace';
export const TAP_HINT_BUSY =
  'the tap is already in use by another process (a tap can be attached by only one process unless created with IFF_MULTI_QUEUE)';

/**
 * Adds a user-facing hint to the errors people actually hit when opening a
 * tap. Errors it has no advice for come back as they are (converted to
 * NativeError when they came from the addon).
 */
export function translateTapError(err: unknown, name: string): Error {
  const e = toNativeError(err);
  if (!(e instanceof NativeError) || e instanceof TapError) return e instanceof Error ? e : new Error(String(e));
  let hint: string | undefined;
  if (e.code === 'EPERM' || e.code === 'EACCES') hint = TAP_HINT_PERMISSION;
  else if (e.syscall === 'open(/dev/net/tun)' && (e.code === 'ENOENT' || e.code === 'ENODEV' || e.code === 'ENXIO'))
    hint = TAP_HINT_NO_DEVICE;
  else if (e.code === 'EBUSY' && e.syscall === 'ioctl(TUNSETIFF)') hint = TAP_HINT_BUSY;
  return hint === undefined ? e : new TapError(e, name, hint);
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
