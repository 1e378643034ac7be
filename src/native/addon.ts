/**
 * The TypeScript face of the native addon (native/*.cc).
 *
 * The addon only makes syscalls. Everything a user can get wrong is checked
 * here first and reported as a ConfigError naming the field (TypeError for
 * programming errors such as a bad FrameIo buffer layout), and every error
 * the addon throws is converted to a NativeError, or a TapError with a hint
 * where we know what the user should do. The addon itself is loaded on first
 * use, so importing this module never fails on a machine without the build.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { ConfigError, UsernetError, errnoName, toNativeError, translatePingError, translateTapError } from '../errors.js';
import { parseIpv6 } from '../../stack/wire/ipv6-address.js';
import { formatMac, readMac } from '../../stack/wire/mac.js';
import { PING_ADDR6_STRIDE, PING_ENTRY_WORDS, PING_MAX_BATCH, UDP_BATCH_MAX } from './types.js';
import type {
  ConfigStep,
  ConfigWay,
  FrameIo,
  FrameIoOptions,
  InterfaceConfig,
  InterfaceReport,
  NamespaceTapRequest,
  NamespaceTapResult,
  NamespaceTarget,
  NativeAddon,
  PingSocket,
  PingSocketOptions,
  PidWatch,
  SandboxOptions,
  TcpSockets,
  TcpSocketsOptions,
  UdpSockets,
  UdpSocketsOptions,
  SandboxResult,
  SeccompResult,
  TapHandle,
  TapOpenOptions,
  VnetFallback,
} from './types.js';

/** The addon's answers before the errnos get their names (positive errnos, 0 for none). */
interface RawStep {
  way: ConfigWay | null;
  ioctlErrno: number;
  rtnetlinkErrno: number;
}
interface RawReport {
  name: string;
  steps: Record<string, RawStep>;
  mtu: number | null;
  mac: Uint8Array | null;
  up: boolean | null;
}
interface RawTap {
  fd: number;
  name: string;
  attached: boolean;
  vnetHdr: boolean;
  offloads: number;
  vnetFallback: { errno: number; syscall: string } | null;
  queueFds: number[];
  multiqueueFallback: { errno: number; syscall: string } | null;
  config?: RawReport | null;
}

/** What build/Release/usernet_native.node exports. */
interface RawAddon {
  openTap(opts: TapOpenOptions): RawTap;
  openTapInNamespace(req: NamespaceTapRequest): RawTap & { netnsFd: number; usernsFd: number };
  configureInterface(cfg: InterfaceConfig): RawReport;
  closeFd(fd: number): void;
  framePair(): [number, number];
  FrameIo: new (opts: FrameIoOptions) => FrameIo;
  TcpSockets: new (opts: TcpSocketsOptions) => TcpSockets;
  UdpSockets: new (opts: UdpSocketsOptions) => UdpSockets;
  tcpReportsRdhup(): boolean;
  PingSocket: new (opts: PingSocketOptions) => PingSocket;
  installSeccompFilter(): SeccompResult;
  enterSandbox(opts: SandboxOptions): SandboxResult;
  unlinkAt(dirFd: number, name: string): void;
  PidWatch: new (pid: number, onExit: () => void) => PidWatch;
  execve(file: string, argv: string[], env: string[], keepFds: number[]): void;
}

/** IFNAMSIZ - 1. */
const MAX_IFNAME_BYTES = 15;
/** All TUN_F_* bits the kernel defines today. */
const ALL_OFFLOADS = 0x7f;
/** RFC 791 minimum; the largest value the MTU ioctl takes for a tap. */
const MIN_MTU = 68;
const MAX_MTU = 65535;
/**
 * Slot bounds: a slot must hold at least a minimum Ethernet frame, and never
 * needs more than a 64 KiB GSO frame plus its virtio-net header; 1 MiB leaves
 * room without letting a typo allocate gigabytes.
 */
const MIN_SLOT_SIZE = 64;
const MAX_SLOT_SIZE = 1 << 20;
/** One batch per poll wakeup; more slots than this only delays other handles. */
const MAX_SLOT_COUNT = 4096;
const MAX_PATH_BYTES = 4095;
/**
 * Ping slot bounds: the smallest ICMP echo message is its 8-byte header; the
 * largest ICMP datagram over IPv4 is 65535 - 20 bytes, rounded up here.
 */
const MIN_PING_SLOT = 8;
const MAX_PING_SLOT = 65536;

/** Walks up from this file to the package root: src/native in development, dist/src/native when compiled. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new UsernetError('ERR_NATIVE_NOT_BUILT', 'cannot find the usernet package root');
    dir = up;
  }
}

let loaded: RawAddon | undefined;

/**
 * node-gyp-build picks build/Release (a source build: `npm install` in a
 * checkout, or a machine the prebuild does not fit), else
 * prebuilds/<platform>-<arch>/ shipped in the package.
 */
const nodeGypBuild = createRequire(import.meta.url)('node-gyp-build') as { (dir: string): unknown; path(dir: string): string };

/** The addon file that is (or would be) loaded; throws when there is none. */
export function addonPath(): string {
  return nodeGypBuild.path(packageRoot());
}

/** The loaded addon without this module's typing, for modules that type their own part (socket-io.ts). */
export function loadAddon(): unknown {
  return raw();
}

function raw(): RawAddon {
  if (loaded !== undefined) return loaded;
  const root = packageRoot();
  try {
    loaded = nodeGypBuild(root) as RawAddon;
  } catch (e) {
    throw new UsernetError(
      'ERR_NATIVE_NOT_BUILT',
      `the usernet native addon could not be loaded from ${root} (no build/Release and no fitting prebuilds/): run npm install (it builds the addon with node-gyp when no prebuild fits)`,
      { cause: e },
    );
  }
  return loaded;
}

// ---- validation -------------------------------------------------------------

function isInt(v: unknown, lo: number, hi: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= lo && v <= hi;
}

function isDottedQuad(v: unknown): v is string {
  if (typeof v !== 'string') return false;
  const parts = v.split('.');
  return parts.length === 4 && parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255);
}

/** Linux's dev_valid_name: 1..15 bytes, not "." or "..", no '/', ':' or whitespace. */
export function validateInterfaceName(name: unknown, field = 'name'): asserts name is string {
  if (typeof name !== 'string') throw new ConfigError(`${field} must be a string`, field);
  const bytes = Buffer.byteLength(name);
  if (bytes < 1 || bytes > MAX_IFNAME_BYTES)
    throw new ConfigError(`${field} "${name}" must be 1 to ${MAX_IFNAME_BYTES} bytes long`, field);
  if (name === '.' || name === '..' || /[/:\s\0]/.test(name))
    throw new ConfigError(`${field} "${name}" is not a valid interface name (no '/', ':' or spaces)`, field);
}

export function validateTapOptions(opts: TapOpenOptions): void {
  if (typeof opts !== 'object' || opts === null) throw new ConfigError('tap options must be an object', 'tap');
  validateInterfaceName(opts.name, 'tap.name');
  if (typeof opts.vnetHdr !== 'boolean') throw new ConfigError('tap.vnetHdr must be a boolean', 'tap.vnetHdr');
  if (!isInt(opts.offloads, 0, ALL_OFFLOADS) || (opts.offloads & ~ALL_OFFLOADS) !== 0)
    throw new ConfigError('tap.offloads must be a combination of TUN_F_* bits', 'tap.offloads');
  if (opts.queues !== undefined && !isInt(opts.queues, 1, MAX_TAP_QUEUES))
    throw new ConfigError(`tap.queues must be an integer from 1 to ${MAX_TAP_QUEUES}`, 'tap.queues');
}

/** native/usernet.h kMaxTapQueues. */
export const MAX_TAP_QUEUES = 16;

export function validateInterfaceConfig(cfg: InterfaceConfig): void {
  if (typeof cfg !== 'object' || cfg === null) throw new ConfigError('interface config must be an object', 'configure');
  validateInterfaceName(cfg.name, 'configure.name');
  if (cfg.up !== undefined && typeof cfg.up !== 'boolean') throw new ConfigError('up must be a boolean', 'up');
  if (cfg.loopbackUp !== undefined && typeof cfg.loopbackUp !== 'boolean')
    throw new ConfigError('loopbackUp must be a boolean', 'loopbackUp');
  if (cfg.mtu !== undefined && !isInt(cfg.mtu, MIN_MTU, MAX_MTU))
    throw new ConfigError(`mtu must be an integer from ${MIN_MTU} to ${MAX_MTU}`, 'mtu');
  if (cfg.mac !== undefined) {
    if (!(cfg.mac instanceof Uint8Array) || cfg.mac.length !== 6)
      throw new ConfigError('mac must be 6 bytes', 'mac');
    // The kernel refuses a group address as an interface's own MAC.
    if ((cfg.mac[0] & 1) !== 0) throw new ConfigError('mac must be a unicast address', 'mac');
  }
  if (cfg.ipv4 !== undefined && !isDottedQuad(cfg.ipv4))
    throw new ConfigError(`ipv4 "${String(cfg.ipv4)}" is not a dotted quad`, 'ipv4');
  if (cfg.prefixLength !== undefined && !isInt(cfg.prefixLength, 0, 32))
    throw new ConfigError('prefixLength must be an integer from 0 to 32', 'prefixLength');
  if (cfg.defaultGateway !== undefined && !isDottedQuad(cfg.defaultGateway))
    throw new ConfigError(`defaultGateway "${String(cfg.defaultGateway)}" is not a dotted quad`, 'defaultGateway');
  if (cfg.txQueueLen !== undefined && !isInt(cfg.txQueueLen, 0, 0x7fff_ffff))
    throw new ConfigError('txQueueLen must be a non-negative integer', 'txQueueLen');
  validateIpv6Config(cfg);
}

function isIpv6(v: unknown): v is string {
  return typeof v === 'string' && v.length <= 45 && !v.includes('%') && parseIpv6(v) !== null;
}

function validateIpv6Config(cfg: InterfaceConfig): void {
  if (cfg.ipv6 !== undefined && !isIpv6(cfg.ipv6)) throw new ConfigError(`ipv6 "${String(cfg.ipv6)}" is not an IPv6 address`, 'ipv6');
  if (cfg.prefixLength6 !== undefined) {
    if (cfg.ipv6 === undefined) throw new ConfigError('prefixLength6 needs ipv6', 'prefixLength6');
    if (!isInt(cfg.prefixLength6, 1, 128)) throw new ConfigError('prefixLength6 must be an integer from 1 to 128', 'prefixLength6');
  }
  if (cfg.defaultGateway6 !== undefined && !isIpv6(cfg.defaultGateway6))
    throw new ConfigError(`defaultGateway6 "${String(cfg.defaultGateway6)}" is not an IPv6 address`, 'defaultGateway6');
}

/** The addon's report with errno names and a printable MAC. */
function toInterfaceReport(raw: RawReport): InterfaceReport {
  const name = (n: number) => (n === 0 ? null : errnoName(n));
  const steps: InterfaceReport['steps'] = {};
  for (const [key, st] of Object.entries(raw.steps)) {
    const step: ConfigStep = { way: st.way, ioctlError: name(st.ioctlErrno), rtnetlinkError: name(st.rtnetlinkErrno) };
    (steps as Record<string, ConfigStep>)[key] = step;
  }
  return { name: raw.name, steps, mtu: raw.mtu, mac: raw.mac === null ? null : formatMac(readMac(raw.mac, 0)), up: raw.up };
}

function toTapHandle<T extends RawTap>(raw: T): Omit<T, 'vnetFallback' | 'multiqueueFallback' | 'config'> & TapHandle {
  const named = (f: { errno: number; syscall: string } | null): VnetFallback | null =>
    f === null ? null : { code: errnoName(f.errno), errno: -f.errno, syscall: f.syscall };
  const config = raw.config === undefined ? undefined : raw.config === null ? null : toInterfaceReport(raw.config);
  return { ...raw, vnetFallback: named(raw.vnetFallback), multiqueueFallback: named(raw.multiqueueFallback), ...(config === undefined ? {} : { config }) };
}

/** A failed configuration carries the addon's raw report: name its errnos before the error is translated. */
function withReport(e: unknown): unknown {
  if (typeof e === 'object' && e !== null && 'report' in e) {
    const o = e as { report: unknown };
    if (typeof o.report === 'object' && o.report !== null) o.report = toInterfaceReport(o.report as RawReport);
  }
  return e;
}

function validatePath(v: unknown, field: string): void {
  if (typeof v !== 'string' || v.length === 0 || v.includes('\0') || Buffer.byteLength(v) > MAX_PATH_BYTES)
    throw new ConfigError(`${field} must be a non-empty path`, field);
}

export function validateNamespaceTarget(t: NamespaceTarget): void {
  if (typeof t !== 'object' || t === null) throw new ConfigError('target must be an object', 'target');
  const modes = [t.pid !== undefined, t.netnsPath !== undefined, t.create === true].filter(Boolean).length;
  if (modes !== 1) throw new ConfigError('target needs exactly one of pid, netnsPath or create', 'target');
  if (t.pid !== undefined && !isInt(t.pid, 1, 0x7fff_ffff)) throw new ConfigError('pid must be a positive integer', 'pid');
  if (t.netnsPath !== undefined) validatePath(t.netnsPath, 'netnsPath');
  if (t.usernsPath !== undefined) {
    if (t.create === true) throw new ConfigError('usernsPath cannot be combined with create', 'usernsPath');
    validatePath(t.usernsPath, 'usernsPath');
  }
  if (t.usernsOptional !== undefined && typeof t.usernsOptional !== 'boolean')
    throw new ConfigError('usernsOptional must be a boolean', 'usernsOptional');
  if (t.createUserns !== undefined) {
    if (t.create !== true) throw new ConfigError('createUserns needs create', 'createUserns');
    const { uid, gid } = t.createUserns;
    // 2^32-1 is (uid_t)-1, "no id", which a map cannot name.
    if (!isInt(uid, 0, 0xffff_fffe) || !isInt(gid, 0, 0xffff_fffe))
      throw new ConfigError('createUserns needs integer uid and gid', 'createUserns');
  }
}

function validateFrameIoOptions(o: FrameIoOptions): void {
  if (typeof o !== 'object' || o === null) throw new TypeError('FrameIo options must be an object');
  if (!isInt(o.fd, 0, 0x7fff_ffff)) throw new TypeError('fd must be a non-negative integer');
  if (!(o.rx instanceof ArrayBuffer)) throw new TypeError('rx must be an ArrayBuffer');
  if (!isInt(o.slotSize, MIN_SLOT_SIZE, MAX_SLOT_SIZE))
    throw new TypeError(`slotSize must be an integer from ${MIN_SLOT_SIZE} to ${MAX_SLOT_SIZE}`);
  if (!isInt(o.slotCount, 1, MAX_SLOT_COUNT)) throw new TypeError(`slotCount must be an integer from 1 to ${MAX_SLOT_COUNT}`);
  if (!(o.lengths instanceof Uint32Array) || o.lengths.length < o.slotCount)
    throw new TypeError('lengths must be a Uint32Array with at least slotCount entries');
  if (o.rx.byteLength < o.slotSize * o.slotCount) throw new TypeError('rx must hold slotSize * slotCount bytes');
  if (typeof o.onBatch !== 'function' || typeof o.onError !== 'function')
    throw new TypeError('onBatch and onError must be functions');
}

function validatePingSocketOptions(o: PingSocketOptions): void {
  if (typeof o !== 'object' || o === null) throw new TypeError('ping socket options must be an object');
  if (!(o.rx instanceof ArrayBuffer)) throw new TypeError('rx must be an ArrayBuffer');
  if (!isInt(o.slotSize, MIN_PING_SLOT, MAX_PING_SLOT))
    throw new TypeError(`slotSize must be an integer from ${MIN_PING_SLOT} to ${MAX_PING_SLOT}`);
  if (!isInt(o.slotCount, 1, PING_MAX_BATCH))
    throw new TypeError(`slotCount must be an integer from 1 to ${PING_MAX_BATCH}`);
  if (o.rx.byteLength < o.slotSize * o.slotCount) throw new TypeError('rx must hold slotSize * slotCount bytes');
  if (!(o.entries instanceof Uint32Array) || o.entries.length < o.slotCount * PING_ENTRY_WORDS)
    throw new TypeError(`entries must be a Uint32Array with at least slotCount * ${PING_ENTRY_WORDS} words`);
  if (o.ttl !== undefined && !isInt(o.ttl, 1, 255)) throw new RangeError('ttl must be an integer from 1 to 255');
  if (o.tos !== undefined && !isInt(o.tos, 0, 255)) throw new RangeError('tos must be an integer from 0 to 255');
  if (o.family !== undefined && o.family !== 4 && o.family !== 6) throw new TypeError('family must be 4 or 6');
  if (o.family === 6) {
    if (!(o.addrs instanceof Uint8Array) || o.addrs.length < o.slotCount * PING_ADDR6_STRIDE)
      throw new TypeError(`family 6 needs addrs, a Uint8Array with at least slotCount * ${PING_ADDR6_STRIDE} bytes`);
  } else if (o.addrs !== undefined) {
    throw new TypeError('addrs is for family 6 only');
  }
  if (typeof o.onBatch !== 'function' || typeof o.onError !== 'function')
    throw new TypeError('onBatch and onError must be functions');
}

/**
 * The addon's PingSocket behind argument checks. send() is on the per-packet
 * path: the checks are integer comparisons only, and network failures come
 * back as a negative errno, never as an exception.
 */
class CheckedPingSocket implements PingSocket {
  readonly localId: number;
  readonly family: 4 | 6;
  readonly #socket: PingSocket;

  constructor(socket: PingSocket) {
    this.#socket = socket;
    this.localId = socket.localId;
    this.family = socket.family;
  }

  send(buf: Uint8Array, off: number, len: number, dst: number, ttl?: number, tos?: number): number {
    if (!(buf instanceof Uint8Array)) throw new TypeError('buf must be a Uint8Array');
    if (!isInt(off, 0, buf.length) || !isInt(len, 0, buf.length - off))
      throw new RangeError('off and len must describe bytes inside buf');
    if (!isInt(dst, 0, 0xffff_ffff)) throw new TypeError('dst must be an IPv4 address as a u32 in host order');
    if (ttl !== undefined && !isInt(ttl, 1, 255)) throw new RangeError('ttl must be an integer from 1 to 255');
    if (tos !== undefined && !isInt(tos, 0, 255)) throw new RangeError('tos must be an integer from 0 to 255');
    if (this.family !== 4) throw new TypeError('send is for family 4 sockets; use send6');
    return this.#socket.send(buf, off, len, dst, ttl, tos);
  }

  send6(buf: Uint8Array, off: number, len: number, addr: Uint8Array, addrOff: number, hopLimit?: number, tclass?: number): number {
    if (this.family !== 6) throw new TypeError('send6 is for family 6 sockets; use send');
    if (!(buf instanceof Uint8Array)) throw new TypeError('buf must be a Uint8Array');
    if (!isInt(off, 0, buf.length) || !isInt(len, 0, buf.length - off))
      throw new RangeError('off and len must describe bytes inside buf');
    if (!(addr instanceof Uint8Array)) throw new TypeError('addr must be a Uint8Array');
    if (!isInt(addrOff, 0, addr.length - 16)) throw new RangeError('addrOff + 16 must be inside addr');
    if (hopLimit !== undefined && !isInt(hopLimit, 1, 255)) throw new RangeError('hopLimit must be an integer from 1 to 255');
    if (tclass !== undefined && !isInt(tclass, 0, 255)) throw new RangeError('tclass must be an integer from 0 to 255');
    return this.#socket.send6(buf, off, len, addr, addrOff, hopLimit, tclass);
  }

  close(): void {
    this.#socket.close();
  }
}

/** A top-level directory: "/etc", not "/", "etc", "/a/b" or "/..". */
function isTopLevelDir(v: unknown): v is string {
  return typeof v === 'string' && /^\/[^/\0]+$/.test(v) && v !== '/.' && v !== '/..' && Buffer.byteLength(v) <= 255;
}

export function validateSandboxOptions(o: SandboxOptions): void {
  if (typeof o !== 'object' || o === null) throw new ConfigError('sandbox options must be an object', 'sandbox');
  validatePath(o.scratch, 'sandbox.scratch');
  if (!o.scratch.startsWith('/') || o.scratch.split('/').includes('..'))
    throw new ConfigError('sandbox.scratch must be an absolute path without ".."', 'sandbox.scratch');
  if (!Array.isArray(o.keep) || o.keep.length > 16 || !o.keep.every(isTopLevelDir))
    throw new ConfigError('sandbox.keep must list top-level directories such as "/etc"', 'sandbox.keep');
  if (new Set(o.keep).size !== o.keep.length) throw new ConfigError('sandbox.keep has duplicates', 'sandbox.keep');
}

// ---- the addon --------------------------------------------------------------

function nativeCall<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw toNativeError(e);
  }
}

function tapCall<T>(name: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw translateTapError(withReport(e), name);
  }
}

/** The native addon, loaded on first use. Arguments are validated before any syscall. */
export const native: NativeAddon = {
  openTap(opts: TapOpenOptions): TapHandle {
    validateTapOptions(opts);
    const addon = raw();
    return toTapHandle(tapCall(opts.name, () => addon.openTap(opts)));
  },

  openTapInNamespace(req: NamespaceTapRequest): NamespaceTapResult {
    if (typeof req !== 'object' || req === null) throw new ConfigError('request must be an object', 'request');
    validateNamespaceTarget(req.target);
    validateTapOptions(req.tap);
    if (req.configure !== undefined) validateInterfaceConfig(req.configure);
    const addon = raw();
    return toTapHandle(tapCall(req.tap.name, () => addon.openTapInNamespace(req)));
  },

  configureInterface(cfg: InterfaceConfig): InterfaceReport {
    validateInterfaceConfig(cfg);
    const addon = raw();
    // Its failures are a tap's configuration failures: the same hints.
    return toInterfaceReport(tapCall(cfg.name, () => addon.configureInterface(cfg)));
  },

  createFrameIo(opts: FrameIoOptions): FrameIo {
    validateFrameIoOptions(opts);
    const addon = raw();
    const onError = opts.onError;
    return nativeCall(
      () => new addon.FrameIo({ ...opts, onError: (e: Error) => onError(toNativeError(e) as Error) }),
    );
  },

  createUdpSockets(opts: UdpSocketsOptions): UdpSockets {
    const addon = raw();
    if (!Number.isInteger(opts.slotSize) || opts.slotSize < 1 || opts.slotSize > MAX_SLOT_SIZE) {
      throw new RangeError(`UdpSockets slotSize ${opts.slotSize} out of range`);
    }
    if (opts.rx.byteLength < opts.slotSize * UDP_BATCH_MAX || opts.meta.length < 4 * UDP_BATCH_MAX) {
      throw new RangeError(`UdpSockets needs ${UDP_BATCH_MAX} rx slots and ${4 * UDP_BATCH_MAX} meta words`);
    }
    // Called per batch on the data path: the raw object, no wrapper.
    return nativeCall(() => new addon.UdpSockets(opts));
  },

  createTcpSockets(opts: TcpSocketsOptions): TcpSockets {
    const addon = raw();
    // Called per socket operation on the data path: the raw object, no wrapper.
    return nativeCall(() => new addon.TcpSockets(opts));
  },

  tcpReportsRdhup(): boolean {
    const addon = raw();
    return nativeCall(() => addon.tcpReportsRdhup());
  },

  createPingSocket(opts: PingSocketOptions): PingSocket {
    validatePingSocketOptions(opts);
    const addon = raw();
    const onError = opts.onError;
    let socket: PingSocket;
    try {
      socket = new addon.PingSocket({ ...opts, onError: (e: Error) => onError(toNativeError(e) as Error) });
    } catch (e) {
      throw translatePingError(e);
    }
    return new CheckedPingSocket(socket);
  },

  closeFd(fd: number): void {
    if (!isInt(fd, 0, 0x7fff_ffff)) throw new TypeError('fd must be a non-negative integer');
    const addon = raw();
    nativeCall(() => addon.closeFd(fd));
  },

  framePair(): [number, number] {
    const addon = raw();
    return nativeCall(() => addon.framePair());
  },

  installSeccompFilter(): SeccompResult {
    const addon = raw();
    return nativeCall(() => addon.installSeccompFilter());
  },

  enterSandbox(opts: SandboxOptions): SandboxResult {
    validateSandboxOptions(opts);
    const addon = raw();
    return nativeCall(() => addon.enterSandbox({ scratch: opts.scratch, keep: [...opts.keep] }));
  },

  unlinkAt(dirFd: number, name: string): void {
    if (!isInt(dirFd, 0, 0x7fff_ffff)) throw new TypeError('dirFd must be a non-negative integer');
    if (typeof name !== 'string' || name.length === 0 || name.includes('/') || name.includes('\0') || name === '.' || name === '..')
      throw new TypeError('name must be a single path component');
    const addon = raw();
    nativeCall(() => addon.unlinkAt(dirFd, name));
  },

  watchProcessExit(pid: number, onExit: () => void): PidWatch {
    if (!isInt(pid, 1, 0x7fff_ffff)) throw new ConfigError('pid must be a positive integer', 'pid');
    if (typeof onExit !== 'function') throw new TypeError('onExit must be a function');
    const addon = raw();
    return nativeCall(() => new addon.PidWatch(pid, onExit));
  },

  execve(file: string, argv: string[], env: string[], keepFds: number[] = []): never {
    validatePath(file, 'file');
    if (!file.startsWith('/')) throw new ConfigError('file must be an absolute path', 'file');
    const strings = (v: unknown): v is string[] => Array.isArray(v) && v.every((a) => typeof a === 'string' && !a.includes('\0'));
    if (!strings(argv) || argv.length === 0) throw new ConfigError('argv must be a non-empty array of strings without NUL', 'argv');
    if (!strings(env) || env.some((e) => !e.includes('='))) throw new ConfigError('env must be an array of NAME=value strings', 'env');
    if (!Array.isArray(keepFds) || !keepFds.every((fd) => isInt(fd, 0, 0x7fff_ffff)))
      throw new ConfigError('keepFds must be an array of non-negative integers', 'keepFds');
    const addon = raw();
    // stdio always: libuv re-opens a tty on its fd number close-on-exec, and the new image expects 0-2.
    const keep = [...new Set([0, 1, 2, ...keepFds])];
    nativeCall(() => addon.execve(file, [...argv], [...env], keep));
    // A native execve that returns has failed, and the addon has thrown already.
    throw new UsernetError('ERR_EXECVE', `execve ${file} returned`);
  },
};
