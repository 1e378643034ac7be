/**
 * Command-line options -> validated runtime options. Every limit has its
 * default, unit, range and --limit name in stack/limits.ts (other settings
 * in stack/config.ts); this module only parses and checks user input and
 * turns mistakes into ConfigError with a message that says what to do.
 */
import { isIP } from 'node:net';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { defaults } from '../stack/config.js';
import { fromCli, limitNames, limits, type CliLimitKey } from '../stack/limits.js';
import { formatIpv4, parseCidr, parseIpv4 } from '../stack/wire/ipv4-address.js';
import { formatIpv6, parsePrefix } from '../stack/wire/ipv6-address.js';
import { IPV6_MIN_MTU } from '../stack/wire/ipv6.js';
import { GUEST_HOST_NUMBER } from '../stack/nat/address-map.js';
import { isMulticastMac, parseMac } from '../stack/wire/mac.js';
import { ConfigError } from './errors.js';
import { isLogLevel, type LogLevel } from './log.js';
import type { ForwardSpec } from './host/port-forwards.js';
import { hasSocketPorts, parseSocketPortOptions, type SocketPortSpecs } from './socket-port-options.js';
import { observabilityFlags, observabilityOptions, type ObservabilityOptions } from './observability-options.js';

export interface RuntimeOptions {
  /** Network address as a u32. */
  network: number;
  prefix: number;
  cidrText: string;
  mtu: number;
  macTableSize: number;
  macAgingMs: number;
  /** How often the bridge sweeps expired MACs. */
  macSweepMs: number;
  /** Open taps with IFF_VNET_HDR and TSO/checksum offloads. */
  offload: boolean;
  pcapPath: string | null;
  logLevel: LogLevel;
  statsIntervalMs: number;
  /** See defaults.busyPollMicros. */
  busyPollMicros: number;
  /** Run the start-up warm-up (src/warm-up.ts). */
  warmUp: boolean;
  gatewayMac: number;
  /** Connections to N+2 reach host 127.0.0.1 (slirp's default). */
  hostLoopback: boolean;
  /** DNS upstreams given with --dns; null means /etc/resolv.conf. */
  dnsServers: { ip: string; port: number }[] | null;
  /** Answer DNS at N+3. */
  dns: boolean;
  dhcp: boolean;
  /** Local address of outbound host sockets (slirp4netns --outbound-addr); null or absent: the kernel's choice. */
  outboundAddress?: string | null;
  /** Port forwards opened at start (-p). */
  forwards?: ForwardSpec[];
  /** The IPv6 /64 on the link (router advertisements, NAT); null turns IPv6 off. */
  ipv6Prefix?: string | null;
  /** Local address of outbound IPv6 host sockets (slirp4netns --outbound-addr6). */
  outboundAddress6?: string | null;
  /** VM sockets and VXLAN endpoints (--listen-qemu, --listen-dgram, --vxlan; src/socket-ports.ts). */
  sockets?: SocketPortSpecs;
  /** Log format and file, stats, metrics, capture format (observability-options.ts); absent: the defaults. */
  observe?: ObservabilityOptions;
  /** Per-table caps and idle timeouts (--limit); absent ones take stack/limits.ts's defaults. */
  limits?: Partial<Limits>;
}

/** The caps, timeouts and budgets --limit may change (stack/limits.ts), in their own units (flows, ms, bytes). */
export type Limits = Record<CliLimitKey, number>;

/** --limit NAME=VALUE: the field, the unit, the range (in the command line's unit), from stack/limits.ts. */
export const LIMIT_NAMES: Record<string, { field: CliLimitKey; seconds: boolean; mib?: boolean; min: number; max: number }> = Object.fromEntries(
  limitNames().map(({ name, key, limit }) => [
    name,
    { field: key, seconds: limit.cli?.unit === 's', ...(limit.cli?.unit === 'MiB' ? { mib: true } : {}), min: limit.cli?.min ?? 1, max: limit.cli?.max ?? 1 },
  ]),
);

function parseLimits(texts: string[] | undefined): Partial<Limits> {
  const out: Partial<Limits> = {};
  for (const t of texts ?? []) {
    const m = /^([a-z-]+)=(\d+)$/.exec(t);
    const spec = m === null ? undefined : LIMIT_NAMES[m[1]];
    if (m === null || spec === undefined) {
      throw new ConfigError(`--limit ${t}: expected NAME=N with NAME one of ${Object.keys(LIMIT_NAMES).join(', ')}`);
    }
    const n = Number(m[2]);
    if (n < spec.min || n > spec.max) throw new ConfigError(`--limit ${t}: out of range (allowed: ${spec.min}..${spec.max})`);
    out[spec.field] = fromCli(limits[spec.field], n);
  }
  return out;
}

export interface MainCommand {
  kind: 'main';
  taps: string[];
  options: RuntimeOptions;
  /** --workers; null: not given (one worker). */
  workers: number | null;
}

export interface RunCommand {
  kind: 'run';
  /** Name of the tap inside the new namespace. */
  tapName: string;
  /** MAC of the guest's tap, or -1 for one chosen by the kernel. */
  guestMac: number;
  argv: string[];
  options: RuntimeOptions;
  /** --workers; null: not given (one worker). */
  workers: number | null;
}

/** `usernet check`: the machine's capabilities, then a real guest through usernet (src/check/). */
export interface CheckCommand {
  kind: 'check';
  /** Run the guest with the virtio-net header (when the kernel grants it). */
  offload: boolean;
  /** Probe IPv6 too. */
  ipv6: boolean;
  /** What usernet itself logs during the check, printed under the table. */
  logLevel: LogLevel;
}

export type Command = MainCommand | RunCommand | CheckCommand | { kind: 'help'; topic: 'main' | 'run' | 'check' } | { kind: 'version' };

const MTU_MIN = 68;
/** slirp4netns' limit; the tap driver itself allows a little more. */
const MTU_MAX = 65521;
/** The guest gets N+100, so the network must hold at least 101 addresses beyond N (slirp4netns has the same limit). */
const PREFIX_MAX = 25;

export const common = {
  cidr: { type: 'string' },
  mtu: { type: 'string' },
  'mac-table-size': { type: 'string' },
  'mac-aging': { type: 'string' },
  limit: { type: 'string', multiple: true },
  pcap: { type: 'string' },
  'no-offload': { type: 'boolean' },
  'log-level': { type: 'string' },
  'stats-interval': { type: 'string' },
  'busy-poll': { type: 'string' },
  'no-warm-up': { type: 'boolean' },
  'disable-host-loopback': { type: 'boolean' },
  dns: { type: 'string', multiple: true },
  'disable-dns': { type: 'boolean' },
  'no-dhcp': { type: 'boolean' },
  'ipv6-prefix': { type: 'string' },
  'disable-ipv6': { type: 'boolean' },
  publish: { type: 'string', multiple: true, short: 'p' },
  'listen-qemu': { type: 'string', multiple: true },
  'listen-dgram': { type: 'string', multiple: true },
  vxlan: { type: 'string', multiple: true },
  ...observabilityFlags,
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
} as const satisfies ParseArgsConfig['options'];

const mainOptions = { ...common, tap: { type: 'string', multiple: true, short: 't' }, workers: { type: 'string' } } as const;
const runOptions = { ...common, 'tap-name': { type: 'string' }, mac: { type: 'string' }, workers: { type: 'string' } } as const;

/** native/usernet.h kMaxTapQueues: a tap queue per worker. */
export const WORKERS_MAX = 16;

/** --workers N: engine shards on worker threads (src/shards/); null when not given (one worker). */
function workersOption(v: string | undefined): number | null {
  if (v === undefined) return null;
  return intOption('--workers', v, 1, 1, WORKERS_MAX);
}

export function parseCommandLine(argv: string[]): Command {
  if (argv[0] === 'run') return parseRun(argv.slice(1));
  if (argv[0] === 'check') return parseCheck(argv.slice(1));
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: mainOptions, allowPositionals: false, strict: true }));
  } catch (err) {
    throw usageError(err);
  }
  if (values.help) return { kind: 'help', topic: 'main' };
  if (values.version) return { kind: 'version' };
  const taps = values.tap ?? [];
  for (const t of taps) checkIfName(t, '--tap');
  if (new Set(taps).size !== taps.length) throw new ConfigError('the same tap is given twice');
  const options = runtimeOptions(values, 'info');
  // A network of VMs (or of hosts over VXLAN) needs no tap.
  if (taps.length === 0 && !hasSocketPorts(options.sockets)) {
    throw new ConfigError(
      'no tap given: use --tap NAME (repeatable), --listen-qemu/--listen-dgram for VMs, or `usernet run -- CMD` to start a command in a new network namespace',
    );
  }
  for (const f of options.forwards ?? []) {
    if (f.guestAddr === GUEST_IPV6_AUTO) {
      throw new ConfigError(`-p ${f.hostAddr}:${f.hostPort}: give the guest's IPv6 address with --tap, e.g. -p [::1]:8080:[fd00::5054:ff:fe12:3456]:80`);
    }
  }
  return { kind: 'main', taps, options, workers: workersOption(values.workers) };
}

const checkOptions = {
  'no-offload': { type: 'boolean' },
  'disable-ipv6': { type: 'boolean' },
  'log-level': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

function parseCheck(argv: string[]): Command {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: checkOptions, allowPositionals: false, strict: true }));
  } catch (err) {
    throw usageError(err);
  }
  if (values.help) return { kind: 'help', topic: 'check' };
  const logLevel = values['log-level'] ?? 'warn';
  if (!isLogLevel(logLevel)) throw new ConfigError(`--log-level ${logLevel}: use error, warn, info or debug`);
  return { kind: 'check', offload: !values['no-offload'], ipv6: !values['disable-ipv6'], logLevel };
}

function parseRun(argv: string[]): Command {
  const { optionArgs, command } = splitAtCommand(argv, runOptions);
  let values;
  try {
    ({ values } = parseArgs({ args: optionArgs, options: runOptions, allowPositionals: false, strict: true }));
  } catch (err) {
    throw usageError(err);
  }
  if (values.help) return { kind: 'help', topic: 'run' };
  if (values.version) return { kind: 'version' };
  if (command.length === 0) throw new ConfigError('usernet run needs a command: usernet run [OPTIONS] -- CMD [ARGS...]');
  const tapName = values['tap-name'] ?? 'tap0';
  checkIfName(tapName, '--tap-name');
  let guestMac = -1;
  if (values.mac !== undefined) {
    guestMac = parseMac(values.mac);
    if (guestMac < 0) throw new ConfigError(`--mac ${values.mac}: not a MAC address (example: 02:00:00:00:00:01)`);
    if (isMulticastMac(guestMac)) {
      throw new ConfigError(`--mac ${values.mac}: a multicast address cannot be an interface's address`);
    }
  }
  return { kind: 'run', tapName, guestMac, argv: command, options: runtimeOptions(values, 'warn'), workers: workersOption(values.workers) };
}

/**
 * `usernet run` takes its command after `--` or at the first word that is not
 * an option, like unshare(1): the command's own options must not be parsed as ours.
 */
function splitAtCommand(argv: string[], options: ParseArgsConfig['options']): { optionArgs: string[]; command: string[] } {
  const takesValue = new Set<string>();
  for (const [name, o] of Object.entries(options ?? {})) {
    if (o.type === 'string') {
      takesValue.add(`--${name}`);
      if (o.short) takesValue.add(`-${o.short}`);
    }
  }
  let i = 0;
  while (i < argv.length) {
    const a = argv[i];
    if (a === '--') return { optionArgs: argv.slice(0, i), command: argv.slice(i + 1) };
    if (!a.startsWith('-') || a === '-') break;
    i += takesValue.has(a) ? 2 : 1;
  }
  return { optionArgs: argv.slice(0, Math.min(i, argv.length)), command: argv.slice(i) };
}

export type CommonValues = {
  [K in keyof typeof common]?: (typeof common)[K] extends { multiple: true }
    ? string[]
    : (typeof common)[K]['type'] extends 'string'
      ? string
      : boolean;
};

export function runtimeOptions(v: CommonValues, defaultLogLevel: LogLevel): RuntimeOptions {
  const cidrText = v.cidr ?? defaults.cidr;
  let cidr;
  try {
    cidr = parseCidr(cidrText);
  } catch (err) {
    throw new ConfigError(`--cidr ${cidrText}: ${(err as Error).message}`);
  }
  if (cidr.prefix < 1 || cidr.prefix > PREFIX_MAX) {
    throw new ConfigError(
      `--cidr ${cidrText}: the prefix length must be 1..${PREFIX_MAX} (the guest gets the network address + 100), for example 10.0.2.0/24`,
    );
  }
  const mtu = intOption('--mtu', v.mtu, defaults.mtu, MTU_MIN, MTU_MAX);
  const mt = limits.macTableSize.cli;
  const macTableSize = intOption('--mac-table-size', v['mac-table-size'], limits.macTableSize.default, mt.min, mt.max);
  const ma = limits.macAgingMs.cli;
  const macAgingS = intOption('--mac-aging', v['mac-aging'], limits.macAgingMs.default / 1000, ma.min, ma.max);
  const statsS = intOption('--stats-interval', v['stats-interval'], 0, 0, 86_400);
  const busyPoll = intOption('--busy-poll', v['busy-poll'], defaults.busyPollMicros, 0, 10_000);
  const logLevel = v['log-level'] ?? defaultLogLevel;
  if (!isLogLevel(logLevel)) throw new ConfigError(`--log-level ${logLevel}: use one of error, warn, info, debug`);
  const ipv6Prefix = ipv6PrefixOption(v, mtu);
  const forwards = (v.publish ?? []).map((p) => parsePublish(p, cidr.network, cidr.prefix));
  checkForwardFamilies(forwards, ipv6Prefix !== null);
  return {
    network: cidr.network,
    prefix: cidr.prefix,
    cidrText,
    mtu,
    macTableSize,
    macAgingMs: macAgingS * 1000,
    // Sweep often enough that an expired MAC is gone within a tenth of the ageing time.
    macSweepMs: Math.max(100, Math.min(defaults.macSweepMs, macAgingS * 100)),
    offload: !v['no-offload'],
    pcapPath: v.pcap ?? null,
    logLevel,
    statsIntervalMs: statsS * 1000,
    busyPollMicros: busyPoll,
    warmUp: !v['no-warm-up'],
    gatewayMac: parseMac(defaults.gatewayMac),
    hostLoopback: !v['disable-host-loopback'],
    dnsServers: v.dns === undefined ? null : v.dns.map(parseDnsServer),
    dns: !v['disable-dns'],
    dhcp: !v['no-dhcp'],
    outboundAddress: null,
    forwards,
    ipv6Prefix,
    sockets: parseSocketPortOptions(v),
    observe: observabilityOptions(v),
    limits: parseLimits(v.limit),
  };
}

function checkForwardFamilies(forwards: ForwardSpec[], ipv6: boolean): void {
  if (ipv6) return;
  for (const f of forwards) {
    if (f.guestAddr === GUEST_IPV6_AUTO || isIP(f.guestAddr) === 6) {
      throw new ConfigError(`-p to an IPv6 guest address needs IPv6, which is off (--disable-ipv6, or an MTU below 1280)`);
    }
  }
}

/** --ipv6-prefix / --disable-ipv6; IPv6 is on by default (fd00::/64) when the MTU allows it. */
function ipv6PrefixOption(v: CommonValues, mtu: number): string | null {
  if (v['disable-ipv6']) {
    if (v['ipv6-prefix'] !== undefined) throw new ConfigError('--ipv6-prefix and --disable-ipv6 contradict each other');
    return null;
  }
  const text = v['ipv6-prefix'];
  if (text === undefined) return mtu >= IPV6_MIN_MTU ? defaults.ipv6Prefix : null;
  if (mtu < IPV6_MIN_MTU) throw new ConfigError(`--ipv6-prefix: IPv6 needs an MTU of at least ${IPV6_MIN_MTU} (got --mtu ${mtu})`);
  let p;
  try {
    p = parsePrefix(text);
  } catch (err) {
    throw new ConfigError(`--ipv6-prefix ${text}: ${(err as Error).message}`);
  }
  if (p.length !== 64) throw new ConfigError(`--ipv6-prefix ${text}: must be a /64 (SLAAC needs 64-bit interface identifiers), e.g. fd00::/64`);
  const a = p.address;
  if (a[0] === 0xff || (a[0] === 0xfe && (a[1] & 0xc0) === 0x80)) throw new ConfigError(`--ipv6-prefix ${text}: must be a unicast prefix outside fe80::/10`);
  return `${formatIpv6(a)}/64`;
}

/** The guest address of a -p without one whose host address is IPv6: the namespace's SLAAC address (`usernet run` fills it in). */
export const GUEST_IPV6_AUTO = 'auto6';

/**
 * -p [HOST_ADDR:]HOST_PORT:[GUEST_ADDR:]GUEST_PORT[/tcp|/udp]. IPv6
 * addresses go in brackets ([::1]:8080:80). The host address defaults to
 * 0.0.0.0 (as in the slirp4netns API), the protocol to tcp, and the guest
 * address to N+100 (the guest of `usernet run`), or, for an IPv6 host
 * address, to the guest's IPv6 address (GUEST_IPV6_AUTO; `usernet run`
 * learns it from SLAAC).
 */
export function parsePublish(text: string, network: number, prefix: number): ForwardSpec {
  const bad = (why: string) =>
    new ConfigError(`-p ${text}: ${why} (expected [HOST_ADDR:]HOST_PORT:[GUEST_ADDR:]GUEST_PORT[/tcp|udp], e.g. 127.0.0.1:8080:80/tcp or [::1]:8080:80)`);
  let body = text;
  let proto: 'tcp' | 'udp' = 'tcp';
  const slash = text.lastIndexOf('/');
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (p !== 'tcp' && p !== 'udp') throw bad(`unknown protocol "${p}"`);
    proto = p;
    body = text.slice(0, slash);
  }
  // Fields are separated by ':' outside brackets.
  const parts: string[] = [];
  let cur = '';
  let depth = 0;
  for (const c of body) {
    if (c === '[') depth++;
    else if (c === ']') depth--;
    if (c === ':' && depth === 0) {
      parts.push(cur);
      cur = '';
    } else cur += c;
  }
  parts.push(cur);
  if (depth !== 0) throw bad('unbalanced brackets');
  const unbracket = (a: string) => (a.startsWith('[') && a.endsWith(']') ? a.slice(1, -1) : a);
  let hostAddr = '0.0.0.0';
  let guestAddr: string | null = null;
  let hostPortText: string;
  let guestPortText: string;
  if (parts.length === 2) [hostPortText, guestPortText] = parts;
  else if (parts.length === 3) [hostAddr, hostPortText, guestPortText] = parts;
  else if (parts.length === 4) [hostAddr, hostPortText, guestAddr, guestPortText] = parts;
  else throw bad('wrong number of fields (IPv6 addresses go in brackets)');
  hostAddr = unbracket(hostAddr);
  const hostFamily = isIP(hostAddr);
  if (hostFamily === 0) throw bad(`host address "${hostAddr}" is not an IP address`);
  if (guestAddr === null) {
    guestAddr = hostFamily === 6 ? GUEST_IPV6_AUTO : formatIpv4((network + GUEST_HOST_NUMBER) >>> 0);
  } else {
    guestAddr = unbracket(guestAddr);
    const fam = isIP(guestAddr);
    if (fam === 0) throw bad(`guest address "${guestAddr}" is not an IP address`);
    if (fam === 4) {
      const guestIp = parseIpv4(guestAddr);
      const mask = prefix === 0 ? 0 : (0xffff_ffff << (32 - prefix)) >>> 0;
      if (((guestIp & mask) >>> 0) !== network) throw bad(`guest address ${guestAddr} is outside the network`);
    }
  }
  const port = (t: string, what: string): number => {
    if (!/^\d{1,5}$/.test(t) || Number(t) < 1 || Number(t) > 65535) throw bad(`${what} "${t}" is not a port (1..65535)`);
    return Number(t);
  };
  return { proto, hostAddr, hostPort: port(hostPortText, 'host port'), guestAddr, guestPort: port(guestPortText, 'guest port') };
}

/** "127.0.0.1", "127.0.0.1:5353", "::1", "[::1]:5353". */
export function parseDnsServer(text: string): { ip: string; port: number } {
  const m = /^\[([0-9a-fA-F:.]+)\](?::(\d+))?$/.exec(text) ?? /^([0-9.]+)(?::(\d+))?$/.exec(text) ?? /^([0-9a-fA-F:]+)()$/.exec(text);
  const port = m?.[2] ? Number(m[2]) : 53;
  if (m === null || !isIP(m[1]) || port < 1 || port > 65535) {
    throw new ConfigError(`--dns ${text}: expected an IP address with an optional port, e.g. 127.0.0.1:5353 or [::1]:53`);
  }
  return { ip: m[1], port };
}

function intOption(flag: string, text: string | undefined, dflt: number, min: number, max: number): number {
  if (text === undefined) return dflt;
  if (!/^\d+$/.test(text)) throw new ConfigError(`${flag} ${text}: not a whole number (allowed: ${min}..${max})`);
  const n = Number(text);
  if (n < min || n > max) throw new ConfigError(`${flag} ${text}: out of range (allowed: ${min}..${max})`);
  return n;
}

function checkIfName(name: string, flag: string): void {
  if (name.length === 0 || Buffer.byteLength(name) > 15 || /[\s/:]/.test(name) || name === '.' || name === '..') {
    throw new ConfigError(`${flag} ${JSON.stringify(name)}: not a valid interface name (1-15 characters, no spaces, '/' or ':')`);
  }
}

export function usageError(err: unknown): ConfigError {
  const msg = (err as Error).message.replace(/\. To specify a positional argument.*$/s, '');
  return new ConfigError(`${msg} (see --help)`);
}
