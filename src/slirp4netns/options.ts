/**
 * The slirp4netns 1.2.0 command line, parsed the way getopt_long(3) does:
 * `--x=V` and `--x V`, `-r3` and `-r 3`, grouped short flags (`-c6`),
 * unambiguous prefixes of long names, options after the positionals
 * (permutation) and `--` to end options. Pure: it returns a command or
 * throws SlirpUsageError; the front end prints and exits.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { IPV6_MIN_MTU } from '../../stack/wire/ipv6.js';
import { parseCidr } from '../../stack/wire/ipv4-address.js';
import { isMulticastMac, parseMac } from '../../stack/wire/mac.js';
import { UsernetError } from '../errors.js';

export class SlirpUsageError extends UsernetError {
  constructor(message: string) {
    super('ERR_USAGE', message);
  }
}

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

export type SlirpCommand = { kind: 'run'; options: SlirpOptions } | { kind: 'help' } | { kind: 'version' };

/** slirp4netns' own limits: an MTU above 65521 breaks libslirp's buffers; below 68 IPv4 cannot work. */
export const SLIRP_MTU_MIN = 68;
export const SLIRP_MTU_MAX = 65521;
/** The guest is N+100 and the broadcast address must stay above it. */
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
  if (hits.length === 0) throw new SlirpUsageError(`unrecognized option '--${name}'`);
  throw new SlirpUsageError(`option '--${name}' is ambiguous; possibilities: ${hits.map((h) => `'--${h.long}'`).join(' ')}`);
}

/** The raw getopt pass: option values by long name (last one wins) and positionals. */
export function getopt(argv: readonly string[]): { values: Map<string, string | true>; positionals: string[] } {
  const values = new Map<string, string | true>();
  const positionals: string[] = [];
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
      if (!def.arg) {
        if (eq >= 0) throw new SlirpUsageError(`option '--${def.long}' doesn't allow an argument`);
        values.set(def.long, true);
      } else if (eq >= 0) {
        values.set(def.long, a.slice(eq + 1));
      } else {
        if (i + 1 >= argv.length) throw new SlirpUsageError(`option '--${def.long}' requires an argument`);
        values.set(def.long, argv[++i]);
      }
      continue;
    }
    if (a.startsWith('-') && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        const c = a[j];
        const def = SLIRP_OPTIONS.find((o) => o.short === c);
        if (def === undefined) throw new SlirpUsageError(`invalid option -- '${c}'`);
        if (!def.arg) {
          values.set(def.long, true);
          continue;
        }
        if (j + 1 < a.length) values.set(def.long, a.slice(j + 1));
        else if (i + 1 < argv.length) values.set(def.long, argv[++i]);
        else throw new SlirpUsageError(`option requires an argument -- '${c}'`);
        break;
      }
      continue;
    }
    positionals.push(a);
  }
  return { values, positionals };
}

function fdValue(name: string, v: string | true | undefined): number {
  if (v === undefined) return -1;
  if (typeof v !== 'string' || !/^\d+$/.test(v) || Number(v) > 0x7fff_ffff) {
    throw new SlirpUsageError(`${name} must be a non-negative number, got ${JSON.stringify(v)}`);
  }
  return Number(v);
}

function str(v: string | true | undefined): string | null {
  return typeof v === 'string' ? v : null;
}

export function parseSlirpArgs(argv: readonly string[]): SlirpCommand {
  const { values, positionals } = getopt(argv);
  if (values.has('help')) return { kind: 'help' };
  if (values.has('version')) return { kind: 'version' };

  const netnsType = str(values.get('netns-type')) ?? 'pid';
  if (netnsType !== 'pid' && netnsType !== 'path') {
    throw new SlirpUsageError(`netns-type must be "pid" or "path", got "${netnsType}"`);
  }
  const targetType = str(values.get('target-type')) ?? 'netns';
  if (targetType !== 'netns') {
    throw new SlirpUsageError(`target-type "${targetType}" is not supported (only "netns")`);
  }
  if (positionals.length !== 2) {
    throw new SlirpUsageError(
      positionals.length < 2 ? 'PID|PATH and TAPNAME are required' : `too many arguments: ${positionals.slice(2).join(' ')}`,
    );
  }
  const [target, tapName] = positionals;
  let pid = -1;
  if (netnsType === 'pid') {
    if (!/^\d+$/.test(target) || Number(target) < 1 || Number(target) > 0x7fff_ffff) {
      throw new SlirpUsageError(`PID must be a positive number, got "${target}" (use --netns-type=path for a path)`);
    }
    pid = Number(target);
  } else if (target.length === 0) {
    throw new SlirpUsageError('PATH must not be empty');
  }
  if (tapName.length === 0 || Buffer.byteLength(tapName) > 15 || /[\s/:]/.test(tapName) || tapName === '.' || tapName === '..') {
    throw new SlirpUsageError(`TAPNAME "${tapName}" is not a valid interface name (1-15 bytes, no spaces, '/' or ':')`);
  }

  const mtuText = str(values.get('mtu'));
  let mtu = 1500;
  if (mtuText !== null) {
    if (!/^\d+$/.test(mtuText) || Number(mtuText) < SLIRP_MTU_MIN || Number(mtuText) > SLIRP_MTU_MAX) {
      throw new SlirpUsageError(`MTU must be a number from ${SLIRP_MTU_MIN} to ${SLIRP_MTU_MAX}, got "${mtuText}"`);
    }
    mtu = Number(mtuText);
  }

  const cidrText = str(values.get('cidr')) ?? '10.0.2.0/24';
  let cidr;
  try {
    cidr = parseCidr(cidrText);
  } catch (err) {
    throw new SlirpUsageError(`cidr "${cidrText}": ${(err as Error).message}`);
  }
  if (cidr.prefix < 1 || cidr.prefix > PREFIX_MAX) {
    throw new SlirpUsageError(`cidr "${cidrText}": the prefix length must be 1..${PREFIX_MAX}`);
  }

  const apiSocket = str(values.get('api-socket'));
  if (apiSocket !== null && (apiSocket.length === 0 || Buffer.byteLength(apiSocket) > UNIX_PATH_MAX)) {
    throw new SlirpUsageError(`api-socket path must be 1..${UNIX_PATH_MAX} bytes long`);
  }
  const usernsPath = str(values.get('userns-path'));
  if (usernsPath !== null && usernsPath.length === 0) throw new SlirpUsageError('userns-path must not be empty');

  const configure = values.has('configure');
  const macText = str(values.get('macaddress'));
  let macAddress = -1;
  if (macText !== null) {
    if (!configure) throw new SlirpUsageError('macaddress can only be used with --configure');
    macAddress = parseMac(macText);
    if (macAddress < 0) throw new SlirpUsageError(`macaddress "${macText}" is not a MAC address (example: 02:00:00:00:00:01)`);
    if (isMulticastMac(macAddress)) throw new SlirpUsageError(`macaddress "${macText}" is a multicast address`);
  }

  const outboundAddr = str(values.get('outbound-addr'));
  if (outboundAddr !== null && (outboundAddr.length === 0 || (!isIPv4(outboundAddr) && !isIfName(outboundAddr)))) {
    throw new SlirpUsageError(`outbound-addr "${outboundAddr}" is neither an IPv4 address nor an interface name`);
  }
  const outboundAddr6 = str(values.get('outbound-addr6'));
  if (outboundAddr6 !== null && (outboundAddr6.length === 0 || (!isIPv6(outboundAddr6) && !isIfName(outboundAddr6)))) {
    throw new SlirpUsageError(`outbound-addr6 "${outboundAddr6}" is neither an IPv6 address nor an interface name`);
  }

  return {
    kind: 'run',
    options: {
      target,
      pid,
      tapName,
      netnsType,
      usernsPath,
      configure,
      exitFd: fdValue('exit-fd', values.get('exit-fd')),
      readyFd: fdValue('ready-fd', values.get('ready-fd')),
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

function isIfName(s: string): boolean {
  return Buffer.byteLength(s) <= 15 && !/[\s/:]/.test(s) && s !== '.' && s !== '..';
}

/**
 * Combinations usernet cannot serve, with the reason printed when they are
 * given; null when everything asked for is supported.
 */
export function unsupportedOption(o: SlirpOptions): string | null {
  if (o.enableIpv6 && o.mtu < IPV6_MIN_MTU) return `enable-ipv6: IPv6 needs an MTU of at least ${IPV6_MIN_MTU}, got ${o.mtu}`;
  return null;
}
