/**
 * What opening and configuring a tap took (vnet header or not and why,
 * ioctl or rtnetlink per setting, what the interface kept), for the one info
 * line per tap, the stats JSON, and the options the runtime should run with.
 * The three front ends (usernet --tap, usernet run, slirp4netns) hand their
 * taps to Runtime.addTap, which logs and keeps these facts; run and
 * slirp4netns also take their runtime options from runtimeOptionsForTaps.
 */
import { writeSync } from 'node:fs';
import type { Logger } from './log.js';
import type { RuntimeOptions } from './options.js';
import type { ConfigSetting, ConfigStep, InterfaceReport, TapHandle } from './native/types.js';
import { TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN, TUN_F_UFO, TUN_F_USO4, TUN_F_USO6 } from './native/types.js';

/** IPv6 needs links of at least this MTU (RFC 8200 §5). */
const IPV6_MIN_MTU = 1280;

const OFFLOAD_NAMES: [number, string][] = [
  [TUN_F_CSUM, 'csum'],
  [TUN_F_TSO4, 'tso4'],
  [TUN_F_TSO6, 'tso6'],
  [TUN_F_TSO_ECN, 'tso-ecn'],
  [TUN_F_UFO, 'ufo'],
  [TUN_F_USO4, 'uso4'],
  [TUN_F_USO6, 'uso6'],
];

/** TUN_F_* bits as names: ['csum', 'tso4', 'tso6']. */
export function offloadNames(bits: number): string[] {
  return OFFLOAD_NAMES.filter(([bit]) => (bits & bit) !== 0).map(([, name]) => name);
}

/** Report keys as people say them, for notes. */
const SETTING_NAMES: Record<ConfigSetting, string> = {
  loopbackUp: 'lo up',
  mtu: 'mtu',
  mac: 'mac',
  ipv4: 'ipv4 address',
  txQueueLen: 'txqueuelen',
  up: 'link up',
  defaultGateway: 'ipv4 default route',
  ipv6: 'ipv6 address',
  defaultGateway6: 'ipv6 default route',
};

function steps(report: InterfaceReport): [ConfigSetting, ConfigStep][] {
  return Object.entries(report.steps) as [ConfigSetting, ConfigStep][];
}

/**
 * The settings neither way could apply and the interface does without, with
 * what it has instead: "mtu not set: interface keeps 1500".
 */
export function unappliedNotes(report: InterfaceReport): string[] {
  const notes: string[] = [];
  for (const [key, step] of steps(report)) {
    if (step.way !== 'unchanged' || (step.ioctlError === null && step.rtnetlinkError === null)) continue;
    const why = `ioctl ${step.ioctlError ?? '-'}, rtnetlink ${step.rtnetlinkError ?? '-'}`;
    const keeps =
      key === 'mtu' && report.mtu !== null
        ? `interface keeps ${report.mtu}`
        : key === 'mac' && report.mac !== null
          ? `interface keeps ${report.mac}`
          : 'interface works without it';
    notes.push(`${SETTING_NAMES[key]} not set (${why}): ${keeps}`);
  }
  return notes;
}

/** "configured via ioctl", "configured via rtnetlink", "configured via ioctl, rtnetlink for mtu, link up". */
function configuredVia(report: InterfaceReport): string {
  const by = (way: string) => steps(report).filter(([, s]) => s.way === way).map(([k]) => SETTING_NAMES[k]);
  const ioctl = by('ioctl');
  const rtnl = by('rtnetlink');
  if (ioctl.length === 0 && rtnl.length === 0) return 'configuration already in place';
  if (rtnl.length === 0) return 'configured via ioctl';
  if (ioctl.length === 0) return 'configured via rtnetlink';
  return `configured via ioctl, rtnetlink for ${rtnl.join(', ')}`;
}

function vnetText(h: TapHandle): string {
  if (h.vnetHdr) {
    const names = offloadNames(h.offloads);
    return `vnet header on (offloads ${names.length > 0 ? names.join(',') : 'none'})`;
  }
  return h.vnetFallback ? `vnet header off (${h.vnetFallback.code})` : 'vnet header off';
}

/**
 * The info line for one tap, e.g.
 * "tap tap0: created, vnet header off (EINVAL), configured via rtnetlink" or
 * "tap tap0: attached, vnet header on (offloads csum,tso4,tso6), configured via ioctl".
 */
export function formatTapReport(h: TapHandle): string {
  let line = `tap ${h.name}: ${h.attached ? 'attached' : 'created'}, ${vnetText(h)}`;
  if (h.config) {
    line += `, ${configuredVia(h.config)}`;
    const notes = unappliedNotes(h.config);
    if (notes.length > 0) line += `; ${notes.join('; ')}`;
  }
  return line;
}

/** The same facts for the stats JSON. */
export function tapStats(h: TapHandle): object {
  return {
    name: h.name,
    attached: h.attached,
    vnetHdr: h.vnetHdr,
    offloads: offloadNames(h.offloads),
    vnetFallback: h.vnetFallback ?? null,
    config: h.config
      ? { steps: h.config.steps, mtu: h.config.mtu, mac: h.config.mac, up: h.config.up, notes: unappliedNotes(h.config) }
      : null,
  };
}

/**
 * The options to run the runtime with for these taps: the warm-up and
 * anything keyed on `offload` follow what the taps do, not what was asked
 * for, and a configured tap that kept another MTU sets the runtime's MTU
 * (with a warning). Returns `o` itself when nothing differs.
 */
export function runtimeOptionsForTaps(o: RuntimeOptions, handles: TapHandle[], log: Logger): RuntimeOptions {
  const offload = o.offload && handles.every((h) => h.vnetHdr);
  let mtu = o.mtu;
  for (const h of handles) {
    const kept = h.config?.mtu;
    if (kept === null || kept === undefined || kept === o.mtu) continue;
    log.warn(`tap ${h.name} keeps MTU ${kept} (asked for ${o.mtu}): usernet uses ${Math.min(mtu, kept)}`);
    mtu = Math.min(mtu, kept);
  }
  for (const h of handles) {
    if (h.vnetHdr || h.vnetFallback === null || h.vnetFallback === undefined || !framesCountHeader(h.fd, mtu)) continue;
    mtu -= ETHERNET_HEADER_LEN;
    log.warn(`tap ${h.name} counts the Ethernet header in its MTU (gVisor): usernet uses MTU ${mtu}`);
  }
  if (offload === o.offload && mtu === o.mtu) return o;
  let ipv6Prefix = o.ipv6Prefix;
  if (ipv6Prefix && mtu < IPV6_MIN_MTU) {
    log.warn(`IPv6 off: MTU ${mtu} is below ${IPV6_MIN_MTU}`);
    ipv6Prefix = null;
  }
  return { ...o, offload, mtu, ipv6Prefix };
}

const ETHERNET_HEADER_LEN = 14;
/** IEEE 802 local experimental EtherType: no stack handles it. */
const ETHERTYPE_EXPERIMENTAL = 0x88b5;

/**
 * Whether the tap refuses a frame of MTU + 14 bytes (EMSGSIZE): gVisor's tap
 * compares the whole frame, Ethernet header included, with its MTU, where
 * Linux's compares the IP packet. Asked only where the vnet header was
 * refused (gVisor's mark), with one frame of an experimental EtherType to a
 * MAC nobody has, which any stack drops; it never reaches the bridge or the pcap.
 */
export function framesCountHeader(fd: number, mtu: number): boolean {
  const frame = Buffer.alloc(mtu + ETHERNET_HEADER_LEN);
  frame[0] = 0x02;
  frame[6] = 0x02;
  frame[11] = 0x01;
  frame.writeUInt16BE(ETHERTYPE_EXPERIMENTAL, 12);
  try {
    writeSync(fd, frame);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EMSGSIZE';
  }
}
