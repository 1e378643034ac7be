/**
 * The slirp4netns 1.2.0 command line, parsed the way getopt_long(3) does:
 * `--x=V` and `--x V`, `-r3` and `-r 3`, grouped short flags (`-c6`),
 * unambiguous prefixes of long names, options after the positionals
 * (permutation) and `--` to end options. Pure: it returns a command or
 * throws SlirpUsageError; the front end prints and exits.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { IPV6_MIN_MTU } from '../../stack/wire/ipv6.js';
import { isMulticastMac, parseMac } from '../../stack/wire/mac.js';
import { UsernetError } from '../errors.js';

/**
 * A command line slirp4netns refuses. `message` is slirp4netns' own line
 * ('' when it prints none, as for a missing TAPNAME); `usage`: the usage
 * text follows on stdout (slirp4netns' `goto error` in parse_args), which it
 * does not for the checks made after parsing (CIDR, MAC, outbound address);
 * `prefixed`: getopt's own messages start with the program name.
 */
export class SlirpUsageError extends UsernetError {
  constructor(
    message: string,
    readonly usage = true,
    readonly prefixed = false,
  ) {
    super('ERR_USAGE', message);
  }
}

/**
 * A failure after parsing that slirp4netns also has: `words` is its line for
 * it (printed first: scripts match it), the message usernet's own detail.
 */
export class SlirpRuntimeError extends UsernetError {
  constructor(
    readonly words: string,
    message: string,
  ) {
    super('ERR_SLIRP', message);
  }
}

/** A check made after parsing (slirp4netns_config_from_options): its message, no usage text. */
function configError(message: string): SlirpUsageError {
  return new SlirpUsageError(message, false);
}

/** getopt's own complaint: "PROG: ..." and the usage text. */
function getoptError(message: string): SlirpUsageError {
  return new SlirpUsageError(message, true, true);
}

/**
 * Whether a path exists (access(F_OK)): null when it does, else strerror's
 * text for the failure ("No such file or directory"). parseSlirpArgs checks
 * --userns-path and the --netns-type=path target with it where slirp4netns
 * does, so the first refusal is the same; without one it checks nothing.
 */
export type PathProbe = (path: string) => string | null;

export interface SlirpOptions {
  /** The PID (netnsType 'pid') or the netns path ('path'). */
  target: string;
  pid: number;
  tapName: string;
  netnsType: 'pid' | 'path';
  usernsPath: string | null;
  configure: boolean;
  exitFd: number;
  readyFd: number;
  mtu: number;
  enableIpv6: boolean;
  apiSocket: string | null;
  cidr: string;
  network: number;
  prefix: number;
  disableHostLoopback: boolean;
  enableSandbox: boolean;
  enableSeccomp: boolean;
  /** As given: an IPv4 address or an interface name. */
  outboundAddr: string | null;
  outboundAddr6: string | null;
  disableDns: boolean;
  /** -1 when not given. */
  macAddress: number;
  macAddressText: string | null;
}

export type SlirpCommand = { kind: 'run'; options: SlirpOptions; warnings: string[] } | { kind: 'help' } | { kind: 'version' };

/** slirp4netns' own limits: an MTU above 65521 breaks libslirp's buffers; below 68 IPv4 cannot work. */
export const SLIRP_MTU_MIN = 68;
export const SLIRP_MTU_MAX = 65521;
/** The guest is N+100 and the broadcast address must stay above it. */
const PREFIX_MIN = 1;
const PREFIX_MAX = 25;
/** sizeof(sockaddr_un.sun_path) - 1. */
const UNIX_PATH_MAX = 107;

interface OptDef {
  long: string;
  short?: string;
  arg: boolean;
}

/** Every option slirp4netns 1.2.0 knows; `key` is the long name. */
export const SLIRP_OPTIONS: readonly OptDef[] = [
  { long: 'configure', short: 'c', arg: false },
  { long: 'exit-fd', short: 'e', arg: true },
  { long: 'ready-fd', short: 'r', arg: true },
  { long: 'mtu', short: 'm', arg: true },
  { long: 'enable-ipv6', short: '6', arg: false },
  { long: 'api-socket', short: 'a', arg: true },
  { long: 'cidr', arg: true },
  { long: 'disable-host-loopback', arg: false },
  { long: 'netns-type', arg: true },
  { long: 'userns-path', arg: true },
  { long: 'enable-sandbox', arg: false },
  { long: 'enable-seccomp', arg: false },
  { long: 'outbound-addr', arg: true },
  { long: 'outbound-addr6', arg: true },
  { long: 'disable-dns', arg: false },
  { long: 'macaddress', arg: true },
  { long: 'target-type', arg: true },
  { long: 'help', short: 'h', arg: false },
  { long: 'version', short: 'v', arg: false },
];

/** Long option by exact name or unambiguous prefix, as getopt_long matches them. */
function findLong(name: string): OptDef {
  const exact = SLIRP_OPTIONS.find((o) => o.long === name);
  if (exact !== undefined) return exact;
  const hits = SLIRP_OPTIONS.filter((o) => o.long.startsWith(name));
  if (hits.length === 1) return hits[0];
  if (hits.length === 0) throw getoptError(`unrecognized option '--${name}'`);
  throw getoptError(`option '--${name}' is ambiguous; possibilities: ${hits.map((h) => `'--${h.long}'`).join(' ')}`);
}

/**
 * The raw getopt pass, in argument order as getopt_long(3) returns options:
 * `visit` sees each option as it comes (slirp4netns validates -e, -r, -m and
 * --userns-path there, and -h/-v exit at once, so a later bad option is never
 * reached) and may return 'stop'. Values by long name (last one wins) and the
 * positionals are returned.
 */
export function getopt(
  argv: readonly string[],
  visit: (long: string, value: string | true) => 'stop' | void = () => undefined,
): { values: Map<string, string | true>; positionals: string[]; stopped: string | null } {
  const values = new Map<string, string | true>();
  const positionals: string[] = [];
  const take = (long: string, value: string | true): boolean => {
    values.set(long, value);
    return visit(long, value) === 'stop';
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      const def = findLong(name);
      let value: string | true;
      if (!def.arg) {
        if (eq >= 0) throw getoptError(`option '--${def.long}' doesn't allow an argument`);
        value = true;
      } else if (eq >= 0) {
        value = a.slice(eq + 1);
      } else {
        if (i + 1 >= argv.length) throw getoptError(`option '--${def.long}' requires an argument`);
        value = argv[++i];
      }
      if (take(def.long, value)) return { values, positionals, stopped: def.long };
      continue;
    }
    if (a.startsWith('-') && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        const c = a[j];
        const def = SLIRP_OPTIONS.find((o) => o.short === c);
        if (def === undefined) throw getoptError(`invalid option -- '${c}'`);
        if (!def.arg) {
          if (take(def.long, true)) return { values, positionals, stopped: def.long };
          continue;
        }
        let value: string;
        if (j + 1 < a.length) value = a.slice(j + 1);
        else if (i + 1 < argv.length) value = argv[++i];
        else throw getoptError(`option requires an argument -- '${c}'`);
        if (take(def.long, value)) return { values, positionals, stopped: def.long };
        break;
      }
      continue;
    }
    positionals.push(a);
  }
  return { values, positionals, stopped: null };
}

/**
 * strtol(3) in base 10 as slirp4netns calls it with an end check: optional
 * leading white space and sign, then digits to the end; null otherwise or
 * beyond a C long.
 */
export function strtol(text: string): number | null {
  const m = /^[ \t\n\v\f\r]*([+-]?)(\d+)$/.exec(text);
  if (m === null) return null;
  const n = Number(m[2]) * (m[1] === '-' ? -1 : 1);
  return Number.isSafeInteger(n) ? n : null;
}

function str(v: string | true | undefined): string | null {
  return typeof v === 'string' ? v : null;
}

/**
 * The command line in slirp4netns 1.2.0's order of checks, with its words:
 * parse_args (options as getopt returns them, then --macaddress without -c,
 * --target-type, the positionals, PID or netns path), then
 * slirp4netns_config_from_options (CIDR, outbound addresses, MAC). `probe`
 * checks paths where slirp4netns does (omit it to stay pure).
 */
export function parseSlirpArgs(argv: readonly string[], probe?: PathProbe): SlirpCommand {
  let mtu = 1500;
  let exitFd = -1;
  let readyFd = -1;
  const { values, positionals, stopped } = getopt(argv, (long, v) => {
    if (long === 'help' || long === 'version') return 'stop';
    const text = typeof v === 'string' ? v : '';
    if (long === 'exit-fd' || long === 'ready-fd') {
      const n = strtol(text);
      if (n === null || n < 0 || n > 0x7fff_ffff) throw new SlirpUsageError(`${long} must be a non-negative integer`);
      if (long === 'exit-fd') exitFd = n;
      else readyFd = n;
    } else if (long === 'mtu') {
      const n = strtol(text);
      if (n === null || n <= 0 || n > SLIRP_MTU_MAX) throw new SlirpUsageError(`MTU must be a positive integer (< ${SLIRP_MTU_MAX + 1})`);
      mtu = n;
    } else if (long === 'userns-path' && probe !== undefined && probe(text) !== null) {
      throw new SlirpUsageError(`userns path doesn't exist: ${text}`);
    }
    return undefined;
  });
  if (stopped === 'help') return { kind: 'help' };
  if (stopped === 'version') return { kind: 'version' };

  const configure = values.has('configure');
  const macText = str(values.get('macaddress'));
  if (macText !== null && !configure) throw new SlirpUsageError('--macaddr cannot be specified when --configure or -c is not specified');

  const targetType = str(values.get('target-type')) ?? 'netns';
  if (targetType === 'bess') {
    // Refused on purpose: usernet has no BESS port (README, "Drop-in for slirp4netns").
    throw configError('--target-type=bess is not supported by usernet (only netns)');
  }
  if (targetType !== 'netns') throw new SlirpUsageError('--target-type must be either "netns" or "bess"');
  // slirp4netns prints nothing but the usage text here.
  if (positionals.length < 2) throw new SlirpUsageError('');
  const warnings = positionals.length > 2 ? ['WARNING: too many arguments'] : [];
  const [target, tapName] = positionals;
  // slirp4netns takes every --netns-type other than "pid" as a path.
  const netnsType = (str(values.get('netns-type')) ?? 'pid') === 'pid' ? 'pid' : 'path';
  let pid = -1;
  if (netnsType === 'pid') {
    const n = strtol(target);
    if (n === null || n <= 0 || n > 0x7fff_ffff) throw new SlirpUsageError('PID must be a positive integer');
    pid = n;
  } else {
    const why = probe?.(target) ?? null;
    if (why !== null) throw new SlirpUsageError(`existing path expected when --netns-type=path: ${why}`);
  }

  const cidrText = str(values.get('cidr')) ?? '10.0.2.0/24';
  const cidr = parseSlirpCidr(cidrText);

  const apiSocket = str(values.get('api-socket'));
  const usernsPath = str(values.get('userns-path'));

  const outboundAddr = str(values.get('outbound-addr'));
  if (outboundAddr !== null && (outboundAddr.length === 0 || (!isIPv4(outboundAddr) && !isIfName(outboundAddr)))) {
    throw configError('outbound-addr has to be valid ipv4 address or interface name.');
  }
  const outboundAddr6 = str(values.get('outbound-addr6'));
  if (outboundAddr6 !== null && (outboundAddr6.length === 0 || (!isIPv6(outboundAddr6) && !isIfName(outboundAddr6)))) {
    // slirp4netns 1.2.0's words, its typo included: scripts match them.
    throw configError('outbound-addr has to be valid ipv4 address or iterface name.');
  }

  let macAddress = -1;
  if (macText !== null) {
    macAddress = parseMac(macText);
    const macError = `"${macText}" is an invalid MAC address.`;
    if (macAddress < 0) throw configError(macError);
    // slirp4netns takes a multicast MAC and the kernel then refuses it; usernet refuses it here.
    if (isMulticastMac(macAddress)) throw configError(`${macError} (usernet: it is a multicast address)`);
  }

  return {
    kind: 'run',
    warnings,
    options: {
      target,
      pid,
      tapName,
      netnsType,
      usernsPath,
      configure,
      exitFd,
      readyFd,
      mtu,
      enableIpv6: values.has('enable-ipv6'),
      apiSocket,
      cidr: cidrText,
      network: cidr.network,
      prefix: cidr.prefix,
      disableHostLoopback: values.has('disable-host-loopback'),
      enableSandbox: values.has('enable-sandbox'),
      enableSeccomp: values.has('enable-seccomp'),
      outboundAddr,
      outboundAddr6,
      disableDns: values.has('disable-dns'),
      macAddress,
      macAddressText: macText,
    },
  };
}

/**
 * --cidr as slirp4netns' parse_cidr reads it: `^(([0-9]{1,3}\.){3}[0-9]{1,3})/([0-9]{1,2})$`,
 * an IPv4 address inet_pton takes, a prefix 1..25, no host bits. Throws
 * slirp4netns' own message (no usage text follows it).
 */
export function parseSlirpCidr(text: string): { network: number; prefix: number } {
  const m = /^((?:[0-9]{1,3}\.){3}[0-9]{1,3})\/([0-9]{1,2})$/.exec(text);
  if (m === null) throw configError(`invalid CIDR: ${text}`);
  // inet_pton: four decimal parts 0..255, no leading zeros.
  const parts = m[1].split('.');
  if (parts.some((p) => Number(p) > 255 || (p.length > 1 && p.startsWith('0')))) throw configError(`invalid network address: ${m[1]}`);
  const prefix = Number(m[2]);
  if (prefix < PREFIX_MIN || prefix > PREFIX_MAX) throw configError(`prefix length needs to be ${PREFIX_MIN}-${PREFIX_MAX}`);
  const addr = parts.reduce((a, p) => a * 256 + Number(p), 0);
  const mask = (0xffff_ffff << (32 - prefix)) >>> 0;
  if (((addr & mask) >>> 0) !== addr) throw configError('CIDR needs to be a network address like 10.0.2.0/24, not like 10.0.2.100/24');
  return { network: addr, prefix };
}

function isIfName(s: string): boolean {
  return Buffer.byteLength(s) <= 15 && !/[\s/:]/.test(s) && s !== '.' && s !== '..';
}

/** A valid Linux interface name (dev_valid_name): 1..15 bytes, not . or .., no white space, '/' or ':'. */
export function isValidTapName(s: string): boolean {
  return s.length > 0 && isIfName(s);
}

/**
 * What usernet refuses although slirp4netns would go on (each is listed in
 * the README's drop-in section with its reason), as the line to print (the
 * words slirp4netns prints where it fails on the same input, then usernet's
 * hint), or null when everything asked for is supported.
 */
export function unsupportedOption(o: SlirpOptions): string | null {
  if (!isValidTapName(o.tapName)) {
    // slirp4netns: TUNSETIFF fails on a bad name, and silently truncates a long one to 15 bytes.
    return `ioctl(TUNSETIFF): Invalid argument (usernet: TAPNAME "${o.tapName}" must be 1-15 bytes, without white space, '/' or ':')`;
  }
  if (o.mtu < SLIRP_MTU_MIN) return `cannot set MTU: Invalid argument (usernet: the MTU must be at least ${SLIRP_MTU_MIN})`;
  if (o.apiSocket !== null && (o.apiSocket.length === 0 || Buffer.byteLength(o.apiSocket) > UNIX_PATH_MAX)) {
    return `the specified API socket path is too long (>= ${UNIX_PATH_MAX + 1})`;
  }
  if (o.enableIpv6 && o.mtu < IPV6_MIN_MTU) return `enable-ipv6: IPv6 needs an MTU of at least ${IPV6_MIN_MTU}, got ${o.mtu}`;
  return null;
}
