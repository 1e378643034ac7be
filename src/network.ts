/**
 * The library API: one virtual network (bridge, gateway, DHCP/DNS, NAT) in
 * this process, with taps, namespaces and VM sockets attached to it, port
 * forwards, counters and events. Every front end (`usernet --tap`, `run`,
 * `daemon`, `slirp4netns`) is built on it, through openNetwork and
 * networkInternals; `import { Network } from 'usernet'` gets it (src/index.ts).
 *
 * How it works
 * - A Network owns one Runtime (src/runtime.ts), the daemon's Guests
 *   (src/daemon/guests.ts: leases, MACs, DNS names of attached namespaces)
 *   and SocketPorts (VM sockets, VXLAN). Options are checked by the CLI's
 *   own parser (src/options.ts runtimeOptions), so the limits and defaults
 *   are the CLI's (stack/config.ts); a bad value is a ConfigError naming the
 *   option, in `field` too.
 * - Events are emitted on a later microtask, never from inside the stack:
 *   a listener cannot re-enter a batch being processed, and one that throws
 *   does so outside it.
 * - portUp/portDown: the runtime reports every port joining the bridge and
 *   every one leaving it while the network runs (detach, a failed tap, a VM
 *   that disconnected). close() emits 'close' instead of a portDown per port.
 *   The taps and socket ports of create()'s options are up when it resolves:
 *   their portUp went out before anyone could listen.
 * - flowOpened/flowClosed: while at least one listener for either is
 *   registered, the NAT reports each flow's start and end
 *   (stack/nat/flow-events.ts); the addresses are formatted then. With no
 *   listener the NAT holds null and does nothing per flow or per packet.
 *   A flow opened before the first listener came has no flowClosed, nor
 *   has one still open at close().
 * - drop: aggregated, not per packet. While a 'drop' listener is
 *   registered, a timer (dropIntervalMs, 1 s by default) compares the drop
 *   counters of every port and of the host side with the previous look and
 *   emits one event with what changed, if anything did. A per-packet event
 *   would put an allocation and a call on exactly the path a flood of bad
 *   frames stresses; the counters are already kept per reason, for free.
 */
import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import { LocalNames } from '../stack/dns-local-names.js';
import type { FlowEvents, FlowProto } from '../stack/nat/flow-events.js';
import type { NatFlow } from '../stack/nat/flow-table.js';
import type { Port } from '../stack/frame.js';
import type { BridgeStats } from '../stack/bridge.js';
import { formatIpv4 } from '../stack/wire/ipv4-address.js';
import { Guests, type AttachRequest, type GuestInfo } from './daemon/guests.js';
import { ConfigError, UsernetError } from './errors.js';
import { createLogger, isLogLevel, type Logger, type LogLevel } from './log.js';
import { native } from './native/addon.js';
import { OFFLOADS, type TapHandle } from './native/types.js';
import type { ForwardEntry, ForwardSpec } from './host/port-forwards.js';
import { GUEST_IPV6_AUTO, parsePublish, runtimeOptions, type CommonValues, type RuntimeOptions } from './options.js';
import { Runtime } from './runtime.js';
import { SocketPorts } from './socket-ports.js';
import { DatagramPort } from './datagram-port.js';
import { StreamPort } from './stream-port.js';
import { VxlanPort } from './vxlan-port.js';
import { TapPort } from './tap-port.js';
import { offloadNames, runtimeOptionsForTaps } from './tap-report.js';
import { startWarmUp, type RunningWarmUp } from './warm-up.js';

export type { GuestInfo, ForwardEntry, ForwardSpec, LogLevel };

/** Options of Network.create; every one may be left out. */
export interface NetworkOptions {
  /** The IPv4 network: gateway N+2, DNS N+3, guests from N+100. Default 10.0.2.0/24; prefix 1..25. */
  cidr?: string;
  /** Default 1500 (68..65521). */
  mtu?: number;
  /** The IPv6 /64 (router advertisements, SLAAC, NAT); false turns IPv6 off. Default fd00::/64 when the MTU is 1280 or more. */
  ipv6Prefix?: string | false;
  /** Open taps with the virtio-net header and TSO/checksum offloads when the kernel grants them. Default true. */
  offload?: boolean;
  /** Connections to the gateway address reach the host's 127.0.0.1 / ::1. Default true. */
  hostLoopback?: boolean;
  /** Answer DNS at N+3. Default true. */
  dns?: boolean;
  /** DNS upstreams ("127.0.0.1:5353", "[::1]:53"); default: /etc/resolv.conf's. */
  dnsServers?: string[];
  /** Serve DHCP. Default true. */
  dhcp?: boolean;
  /** MAC addresses the bridge remembers (16..1048576). Default 4096. */
  macTableSize?: number;
  /** Default 300. */
  macAgingSeconds?: number;
  /** See `--busy-poll`; 0 turns it off. Default 50. */
  busyPollMicros?: number;
  /** Write every frame crossing the bridge to this pcap file. */
  pcap?: string;
  /** Run the start-up warm-up (see `--no-warm-up`): useful only for latency in the first second. Default false. */
  warmUp?: boolean;
  /** Local address of outbound IPv4 / IPv6 host sockets. Default: the kernel's choice. */
  outboundAddress?: string;
  outboundAddress6?: string;
  /** Taps in this process's network namespace to attach at once (created when absent). */
  taps?: string[];
  /** Forwards to open at once: ForwardSpec objects or `-p` strings ("127.0.0.1:8080:10.0.2.100:80/tcp"). */
  forwards?: (ForwardSpec | string)[];
  /** `--listen-qemu`, `--listen-dgram` and `--vxlan` values (VMs and VXLAN segments). */
  listenQemu?: string[];
  listenDgram?: string[];
  vxlan?: string[];
  /** Default 'warn'. */
  logLevel?: LogLevel;
  /** Where log lines go ("usernet: warn: ...\n"); default stderr. */
  onLog?: (line: string) => void;
  /** How often 'drop' events are considered, in ms (100..3600000). Default 1000. */
  dropIntervalMs?: number;
}

/** Where to attach a namespace: exactly one of pid and netns. */
export interface AttachNamespaceOptions {
  /** The process whose network namespace (and user namespace, when it can) to join; detached when it exits. */
  pid?: number;
  /** Or a network namespace file (/run/netns/NAME, /proc/PID/ns/net). */
  netns?: string;
  /** With netns: a user namespace file to join first. */
  userns?: string;
  /** The lease's key: the same id gets the same address and MAC back. Default: random. */
  id?: string;
  /** Interface name inside. Default eth0. */
  ifname?: string;
  /** The guest's DNS name on the network. Default: the id when it is a valid host name. */
  name?: string;
  /** A specific address from the pool (N+100 up). */
  ipv4?: string;
  /** A specific MAC. Default 52:54 + the IPv4 address. */
  mac?: string;
}

export type PortKind = 'tap' | 'qemu-stream' | 'qemu-dgram' | 'vxlan';

export interface PortInfo {
  name: string;
  kind: PortKind;
}

export interface PortDownInfo extends PortInfo {
  /** Why, when the port failed or its peer went away abnormally; null when it was detached. */
  error: Error | null;
}

export interface TapInfo extends PortInfo {
  kind: 'tap';
  /** False when an existing (persistent) tap was attached. */
  created: boolean;
  vnetHdr: boolean;
  offloads: string[];
}

export interface Endpoint {
  address: string;
  /** The port; for ICMP the echo identifier (guest) or 0 (remote). */
  port: number;
}

export interface FlowInfo {
  proto: FlowProto;
  /** Unique among the live flows of this protocol; reused after flowClosed. */
  id: number;
  /** 'inbound': opened by a port forward. */
  direction: 'outbound' | 'inbound';
  guest: Endpoint;
  /** The other end as the guest sees it: the destination it addressed, or the gateway for a forward. */
  remote: Endpoint;
}

export interface FlowClosedInfo extends FlowInfo {
  /** TCP: 'normal', 'reset', 'timeout', 'refused'; UDP and ICMP: 'idle', 'evicted', 'removed'. */
  reason: string;
  /** Payload bytes. */
  bytesFromGuest: number;
  bytesToGuest: number;
}

export interface DropInfo {
  /** Drops since the previous 'drop' event (or since the first listener came). */
  total: number;
  /**
   * By port name and reason, as the ports' counters have them ('gateway' for
   * what the gateway and NAT refused, a tap's name for what came in on it
   * malformed or could not be written to it), and 'host' for the host-side sockets.
   */
  byPort: Record<string, Record<string, number>>;
}

/** The events of a Network and their arguments. */
export interface NetworkEvents {
  portUp: [PortInfo];
  portDown: [PortDownInfo];
  flowOpened: [FlowInfo];
  flowClosed: [FlowClosedInfo];
  drop: [DropInfo];
  /** A guest attached by pid left because its process exited. */
  guestGone: [GuestInfo];
  close: [];
}

/** The counters of Network.stats(): the same object as the CLI's stats JSON, plus guests and forwards. */
export interface NetworkStats {
  gateway: Record<string, unknown>;
  taps: object[];
  bridge: BridgeStats;
  nat: Record<string, unknown>;
  hostSockets: { tcp: number; udp: number; icmp: number };
  hostDrops: { udp: Record<string, number>; icmp: Record<string, number> };
  guests: GuestInfo[];
  forwards: ForwardEntry[];
  [key: string]: unknown;
}

const DROP_INTERVAL_DEFAULT_MS = 1000;
const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;

/** What the front ends reach that the public surface does not show. */
interface Internals {
  runtime: Runtime;
  guests: Guests;
  sockets: SocketPorts;
  log: Logger;
  /** Attaches a tap the caller opened (the taps option, front ends). */
  addTap(handle: TapHandle): TapInfo;
  /** Starts the warm-up (src/warm-up.ts), stopped by close(): the front ends start it where they want it. */
  startWarmUp(): void;
  /** Stops it early (`usernet run`, before the command starts). */
  stopWarmUp(): Promise<void>;
  /** With openNetwork's deferPorts: opens the forwards and socket ports of the options now. */
  startPorts(): Promise<void>;
}
const internals = new WeakMap<Network, Internals>();

/** The runtime, guests and socket ports of a network (for the CLI front ends; not part of the package's API). */
export function networkInternals(n: Network): Internals {
  const i = internals.get(n);
  if (i === undefined) throw new TypeError('not a Network');
  return i;
}

export class Network extends EventEmitter<NetworkEvents> {
  private readonly runtime: Runtime;
  private readonly guests: Guests;
  private readonly sockets: SocketPorts;
  private readonly log: Logger;
  private readonly taps = new Map<string, TapPort>();
  private readonly queued: [keyof NetworkEvents, unknown][] = [];
  private flushQueued = false;
  private flowReporter: FlowReporter | null = null;
  private dropTimer: NodeJS.Timeout | null = null;
  private dropSeen = new Map<string, number>();
  private readonly dropIntervalMs: number;
  private warm: RunningWarmUp | null = null;
  private closed = false;

  /** Use Network.create. */
  private constructor(runtime: Runtime, names: LocalNames, log: Logger, dropIntervalMs: number) {
    super();
    this.runtime = runtime;
    this.log = log;
    this.dropIntervalMs = dropIntervalMs;
    this.guests = new Guests(runtime, runtime.options, names, log);
    this.guests.onAutoDetach = (info) => this.queue('guestGone', info);
    this.sockets = new SocketPorts(runtime, log);
    internals.set(this, {
      runtime,
      guests: this.guests,
      sockets: this.sockets,
      log,
      addTap: (h) => this.addTapHandle(h),
      startWarmUp: () => {
        if (this.warm === null && !this.closed) this.warm = startWarmUp(this.runtime.options, this.log);
      },
      stopWarmUp: async () => {
        const w = this.warm;
        this.warm = null;
        await w?.stop();
      },
      startPorts: async () => {
        await runtime.startForwards();
        await this.sockets.start(runtime.options.sockets);
      },
    });
    runtime.portEvents = {
      up: (port) => this.queue('portUp', portInfo(port)),
      down: (port, error) => {
        if (port instanceof TapPort && this.taps.get(port.name) === port) this.taps.delete(port.name);
        this.queue('portDown', { ...portInfo(port), error });
      },
    };
    // newListener comes before the listener is added, removeListener after: look once both are done.
    const plain = this as EventEmitter;
    plain.on('newListener', (event: string | symbol) => queueMicrotask(() => this.listenersChanged(event)));
    plain.on('removeListener', (event: string | symbol) => queueMicrotask(() => this.listenersChanged(event)));
  }

  /**
   * A new network, with the taps, forwards and socket ports of `options`
   * open. Rejects with ConfigError for a bad option, or the error of what
   * could not be opened (nothing stays open then).
   */
  static async create(options: NetworkOptions = {}): Promise<Network> {
    const { runtime: ro, log, dropIntervalMs } = checkOptions(options);
    const net = await openNetwork(ro, log, { taps: options.taps ?? [], dropIntervalMs });
    if (options.warmUp === true) networkInternals(net).startWarmUp();
    return net;
  }

  /** The IPv4 network ("10.0.2.0/24"), gateway (N+2), DNS server (N+3), MTU and IPv6 prefix. */
  get info(): { cidr: string; gateway: string; dns: string; mtu: number; ipv6Prefix: string | null; offload: boolean } {
    const o = this.runtime.options;
    return {
      cidr: o.cidrText,
      gateway: formatIpv4((o.network + 2) >>> 0),
      dns: formatIpv4((o.network + 3) >>> 0),
      mtu: o.mtu,
      ipv6Prefix: o.ipv6Prefix ?? null,
      offload: o.offload,
    };
  }

  /** Attaches a tap of this process's namespace (creating it when absent; a created one vanishes at detach). */
  attachTap(name: string): TapInfo {
    this.checkOpen();
    if (typeof name !== 'string' || !IFNAME_RE.test(name)) throw new ConfigError(`tap "${String(name)}": an interface name of 1..15 letters, digits and _.-`, 'name');
    if (this.taps.has(name)) throw new UsernetError('ERR_TAP_ATTACHED', `tap ${name} is attached already`);
    const o = this.runtime.options;
    const handle = native.openTap({ name, vnetHdr: o.offload, offloads: o.offload ? OFFLOADS : 0 });
    return this.addTapHandle(handle);
  }

  /** Takes a tap off the network and closes it; false when no tap of that name is attached (by attachTap or the taps option). */
  detachTap(name: string): boolean {
    const port = this.taps.get(name);
    if (port === undefined) return false;
    this.runtime.removeTap(port);
    return true;
  }

  /**
   * Creates an interface (eth0) in a network namespace and attaches it: an
   * address from the pool, the MAC, MTU, default route and DNS name set up
   * (IPv6 by SLAAC). Throws ConfigError for a bad request, UsernetError or
   * NativeError when the system refuses.
   */
  attachNamespace(options: AttachNamespaceOptions): GuestInfo {
    this.checkOpen();
    if (typeof options !== 'object' || options === null) throw new ConfigError('attachNamespace needs { pid } or { netns }', 'pid');
    const req: AttachRequest = {};
    for (const k of ['pid', 'netns', 'userns', 'id', 'ifname', 'name', 'ipv4', 'mac'] as const) {
      if (options[k] !== undefined) (req as Record<string, unknown>)[k] = options[k];
    }
    if (req.pid === undefined && req.netns === undefined) throw new ConfigError('attachNamespace needs { pid } or { netns }', 'pid');
    if (req.ifname !== undefined && (typeof req.ifname !== 'string' || !IFNAME_RE.test(req.ifname))) {
      throw new ConfigError(`ifname "${String(req.ifname)}": an interface name of 1..15 letters, digits and _.-`, 'ifname');
    }
    return this.guests.attach(req);
  }

  /** Detaches the namespace attached under `id`: its interface vanishes; the lease stays for a re-attach. */
  detach(id: string): boolean {
    return this.guests.detach(id);
  }

  /** The attached namespaces. */
  guestList(): GuestInfo[] {
    return this.guests.list();
  }

  /**
   * Opens a forward from a host address to a guest address: a ForwardSpec
   * or a `-p` string ("127.0.0.1:8080:10.0.2.100:80", "8053:53/udp").
   * Resolves once listening; rejects with ConfigError or ForwardError.
   */
  async addForward(spec: ForwardSpec | string): Promise<ForwardEntry> {
    this.checkOpen();
    return this.runtime.forwards.add(forwardSpec(spec, this.runtime.options));
  }

  /** Closes forward `id`'s listener (accepted connections live on); false when there is none. */
  removeForward(id: number): boolean {
    return this.runtime.forwards.remove(id);
  }

  forwards(): ForwardEntry[] {
    return this.runtime.forwards.list();
  }

  /** The counters, as the CLI's stats JSON has them, with the guests and forwards. */
  stats(): NetworkStats {
    return { ...this.runtime.stats(), guests: this.guests.list(), forwards: this.runtime.forwards.list() } as NetworkStats;
  }

  /**
   * Detaches every namespace, closes the forwards, socket ports and taps
   * (guest TCP connections are reset first) and emits 'close'. Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopDropTimer();
    if (this.flowReporter !== null) this.runtime.nat.setFlowEvents(null);
    await this.warm?.stop();
    this.warm = null;
    this.runtime.portEvents = null;
    this.guests.closeAll();
    await this.sockets.close();
    this.runtime.close();
    this.taps.clear();
    this.queue('close', undefined);
  }

  private addTapHandle(handle: TapHandle): TapInfo {
    const port = this.runtime.addTap(handle);
    this.taps.set(handle.name, port);
    return { name: handle.name, kind: 'tap', created: !handle.attached, vnetHdr: handle.vnetHdr, offloads: offloadNames(handle.offloads) };
  }

  private checkOpen(): void {
    if (this.closed) throw new UsernetError('ERR_CLOSED', 'the network is closed');
  }

  /** Emits on a later microtask: never from inside the stack's batch. */
  private queue(event: keyof NetworkEvents, arg: unknown): void {
    this.queued.push([event, arg]);
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask(() => {
      this.flushQueued = false;
      for (const [e, a] of this.queued.splice(0)) {
        if (a === undefined) (this.emit as (e: string) => boolean)(e);
        else (this.emit as (e: string, a: unknown) => boolean)(e, a);
      }
    });
  }

  private listenersChanged(event: string | symbol): void {
    if (this.closed) return;
    if (event === 'flowOpened' || event === 'flowClosed') {
      const want = this.listenerCount('flowOpened') + this.listenerCount('flowClosed') > 0;
      if (want && this.flowReporter === null) {
        this.flowReporter = new FlowReporter(this.runtime, (e, info) => this.queue(e, info));
        this.runtime.nat.setFlowEvents(this.flowReporter);
      } else if (!want && this.flowReporter !== null) {
        this.runtime.nat.setFlowEvents(null);
        this.flowReporter = null;
      }
    } else if (event === 'drop') {
      const want = this.listenerCount('drop') > 0;
      if (want && this.dropTimer === null) {
        this.dropSeen = this.dropCounts();
        this.dropTimer = setInterval(() => this.checkDrops(), this.dropIntervalMs);
        this.dropTimer.unref();
      } else if (!want) this.stopDropTimer();
    }
  }

  private stopDropTimer(): void {
    if (this.dropTimer !== null) clearInterval(this.dropTimer);
    this.dropTimer = null;
  }

  /** "port\0reason" -> count, over every port on the bridge and the host side. */
  private dropCounts(): Map<string, number> {
    const counts = new Map<string, number>();
    const add = (port: string, drops: Record<string, number | undefined>) => {
      for (const [reason, n] of Object.entries(drops)) {
        if (n === undefined || n === 0) continue;
        const k = `${port}\0${reason}`;
        counts.set(k, (counts.get(k) ?? 0) + n);
      }
    };
    const rt = this.runtime;
    const ports: Port[] = [rt.gateway, ...rt.ports, ...rt.socketPorts];
    for (const p of ports) add(p.name, p.counters.drops);
    add('host', rt.udpProxy.drops);
    add('host', rt.icmpProxy.drops);
    return counts;
  }

  private checkDrops(): void {
    const now = this.dropCounts();
    const byPort: Record<string, Record<string, number>> = {};
    let total = 0;
    for (const [k, n] of now) {
      const d = n - (this.dropSeen.get(k) ?? 0);
      if (d <= 0) continue;
      const [port, reason] = k.split('\0');
      (byPort[port] ??= {})[reason] = d;
      total += d;
    }
    this.dropSeen = now;
    if (total > 0) this.queue('drop', { total, byPort } satisfies DropInfo);
  }
}

/** Formats flows as they open and keeps what closing needs. */
class FlowReporter implements FlowEvents {
  private readonly live = new Map<number, FlowInfo>();

  constructor(
    private readonly runtime: Runtime,
    private readonly emit: (event: 'flowOpened' | 'flowClosed', info: FlowInfo) => void,
  ) {}

  opened(proto: FlowProto, flow: NatFlow, inbound: boolean, guestIp: number, guestPort: number, remoteIp: number, remotePort: number): void {
    const a = this.runtime.nat.addrs;
    const info: FlowInfo = {
      proto,
      id: flow.id,
      direction: inbound ? 'inbound' : 'outbound',
      guest: { address: a.format(guestIp), port: guestPort },
      remote: { address: a.format(remoteIp), port: remotePort },
    };
    this.live.set(flowKey(proto, flow.id), info);
    this.emit('flowOpened', info);
  }

  closed(proto: FlowProto, flow: NatFlow, reason: string, bytesFromGuest: number, bytesToGuest: number): void {
    const k = flowKey(proto, flow.id);
    const info = this.live.get(k);
    if (info === undefined) return;
    this.live.delete(k);
    const closed: FlowClosedInfo = { ...info, reason, bytesFromGuest, bytesToGuest };
    this.emit('flowClosed', closed);
  }
}

function flowKey(proto: FlowProto, id: number): number {
  return (proto === 'tcp' ? 0 : proto === 'udp' ? 1 : 2) * 2 ** 32 + id;
}

function portInfo(port: Port): PortInfo {
  const kind: PortKind =
    port instanceof TapPort ? 'tap' : port instanceof StreamPort ? 'qemu-stream' : port instanceof DatagramPort ? 'qemu-dgram' : port instanceof VxlanPort ? 'vxlan' : 'tap';
  return { name: port.name, kind };
}

/**
 * Opens a network with already validated runtime options (the CLI front
 * ends; Network.create after checkOptions): the taps, then the runtime
 * (following what the taps do: runtimeOptionsForTaps), the forwards and the
 * socket ports. On a failure closes what was opened.
 * - taps: names to open in this namespace; handles: taps the caller opened
 *   (in another namespace), which the network then owns.
 * - deferPorts: leave the forwards and socket ports to internals.startPorts()
 *   (`usernet run` knows the guest's IPv6 address for -p only later).
 * - onTapLost: see Runtime.onTapLost (the slirp4netns front end exits then).
 */
export async function openNetwork(
  options: RuntimeOptions,
  log: Logger,
  extra: {
    taps?: string[];
    handles?: TapHandle[];
    deferPorts?: boolean;
    onTapLost?: (port: TapPort, err: Error) => void;
    dropIntervalMs?: number;
  } = {},
): Promise<Network> {
  const handles: TapHandle[] = [];
  try {
    for (const name of extra.taps ?? []) {
      handles.push(native.openTap({ name, vnetHdr: options.offload, offloads: options.offload ? OFFLOADS : 0 }));
    }
  } catch (err) {
    for (const h of handles) native.closeFd(h.fd);
    throw err;
  }
  handles.push(...(extra.handles ?? []));
  const ro = runtimeOptionsForTaps(options, handles, log);
  const names = new LocalNames();
  const runtime = new Runtime(ro, log, { localNames: names });
  runtime.onTapLost = extra.onTapLost ?? null;
  const net = new (Network as unknown as new (r: Runtime, n: LocalNames, l: Logger, d: number) => Network)(
    runtime,
    names,
    log,
    extra.dropIntervalMs ?? DROP_INTERVAL_DEFAULT_MS,
  );
  const internals = networkInternals(net);
  try {
    for (const h of handles) internals.addTap(h);
    if (!extra.deferPorts) await internals.startPorts();
  } catch (err) {
    await net.close();
    throw err;
  }
  return net;
}

/** NetworkOptions -> RuntimeOptions through the CLI's parser; its messages are reworded to name the option. */
function checkOptions(o: NetworkOptions): { runtime: RuntimeOptions; log: Logger; dropIntervalMs: number } {
  if (typeof o !== 'object' || o === null) throw new ConfigError('options must be an object');
  const v: CommonValues = {};
  const str = (key: keyof NetworkOptions, cli: keyof CommonValues) => {
    const x = o[key];
    if (x === undefined) return;
    if (typeof x !== 'string') throw new ConfigError(`${key}: expected a string`, key);
    (v as Record<string, unknown>)[cli] = x;
  };
  const int = (key: keyof NetworkOptions, cli: keyof CommonValues) => {
    const x = o[key];
    if (x === undefined) return;
    if (typeof x !== 'number' || !Number.isInteger(x)) throw new ConfigError(`${key}: expected a whole number, got ${String(x)}`, key);
    (v as Record<string, unknown>)[cli] = String(x);
  };
  const flag = (key: keyof NetworkOptions, cli: keyof CommonValues, negated: boolean) => {
    const x = o[key];
    if (x === undefined) return;
    if (typeof x !== 'boolean') throw new ConfigError(`${key}: expected true or false`, key);
    (v as Record<string, unknown>)[cli] = negated ? !x : x;
  };
  const strings = (key: keyof NetworkOptions, cli: keyof CommonValues) => {
    const x = o[key];
    if (x === undefined) return;
    if (!Array.isArray(x) || !x.every((s) => typeof s === 'string')) throw new ConfigError(`${key}: expected an array of strings`, key);
    (v as Record<string, unknown>)[cli] = x;
  };
  str('cidr', 'cidr');
  int('mtu', 'mtu');
  if (o.ipv6Prefix === false) (v as Record<string, unknown>)['disable-ipv6'] = true;
  else str('ipv6Prefix', 'ipv6-prefix');
  flag('offload', 'no-offload', true);
  flag('hostLoopback', 'disable-host-loopback', true);
  flag('dns', 'disable-dns', true);
  strings('dnsServers', 'dns');
  flag('dhcp', 'no-dhcp', true);
  int('macTableSize', 'mac-table-size');
  int('macAgingSeconds', 'mac-aging');
  int('busyPollMicros', 'busy-poll');
  str('pcap', 'pcap');
  strings('listenQemu', 'listen-qemu');
  strings('listenDgram', 'listen-dgram');
  strings('vxlan', 'vxlan');
  if (o.logLevel !== undefined && (typeof o.logLevel !== 'string' || !isLogLevel(o.logLevel))) {
    throw new ConfigError(`logLevel "${String(o.logLevel)}": use error, warn, info or debug`, 'logLevel');
  }
  if (o.onLog !== undefined && typeof o.onLog !== 'function') throw new ConfigError('onLog: expected a function', 'onLog');
  if (o.taps !== undefined) {
    if (!Array.isArray(o.taps)) throw new ConfigError('taps: expected an array of interface names', 'taps');
    for (const t of o.taps) if (typeof t !== 'string' || !IFNAME_RE.test(t)) throw new ConfigError(`taps: "${String(t)}" is not an interface name (1..15 letters, digits and _.-)`, 'taps');
    if (new Set(o.taps).size !== o.taps.length) throw new ConfigError('taps: the same tap is given twice', 'taps');
  }
  const dropIntervalMs = o.dropIntervalMs ?? DROP_INTERVAL_DEFAULT_MS;
  if (!Number.isInteger(dropIntervalMs) || dropIntervalMs < 100 || dropIntervalMs > 3_600_000) {
    throw new ConfigError(`dropIntervalMs ${String(o.dropIntervalMs)}: a whole number of milliseconds, 100..3600000`, 'dropIntervalMs');
  }
  let ro: RuntimeOptions;
  try {
    ro = runtimeOptions(v, o.logLevel ?? 'warn');
  } catch (err) {
    throw reword(err);
  }
  ro.warmUp = o.warmUp === true;
  for (const [key, fam] of [['outboundAddress', 4], ['outboundAddress6', 6]] as const) {
    const a = o[key];
    if (a === undefined) continue;
    if (typeof a !== 'string' || isIP(a) !== fam) throw new ConfigError(`${key} "${String(a)}": an IPv${fam} address`, key);
    ro[key] = a;
  }
  if (o.forwards !== undefined) {
    if (!Array.isArray(o.forwards)) throw new ConfigError('forwards: expected an array', 'forwards');
    ro.forwards = o.forwards.map((f) => forwardSpec(f, ro));
  }
  const log = createLogger(ro.logLevel, o.onLog);
  return { runtime: ro, log, dropIntervalMs };
}

/** The CLI flag in a ConfigError's message -> the NetworkOptions name. */
const FLAG_NAMES: [string, keyof NetworkOptions][] = [
  ['--cidr', 'cidr'],
  ['--mtu', 'mtu'],
  ['--ipv6-prefix', 'ipv6Prefix'],
  ['--disable-ipv6', 'ipv6Prefix'],
  ['--dns', 'dnsServers'],
  ['--mac-table-size', 'macTableSize'],
  ['--mac-aging', 'macAgingSeconds'],
  ['--busy-poll', 'busyPollMicros'],
  ['--listen-qemu', 'listenQemu'],
  ['--listen-dgram', 'listenDgram'],
  ['--vxlan', 'vxlan'],
];

function reword(err: unknown): unknown {
  if (!(err instanceof ConfigError)) return err;
  for (const [flag, name] of FLAG_NAMES) {
    if (err.message.startsWith(`${flag} `) || err.message.startsWith(`${flag}:`)) {
      return new ConfigError(`${name}${err.message.slice(flag.length)}`, name);
    }
  }
  return err;
}

function forwardSpec(spec: ForwardSpec | string, o: RuntimeOptions): ForwardSpec {
  if (typeof spec === 'string') {
    const f = parsePublish(spec, o.network, o.prefix);
    if (f.guestAddr === GUEST_IPV6_AUTO) throw new ConfigError(`forward ${spec}: give the guest's IPv6 address, e.g. [::1]:8080:[fd00::5054:ff:fe00:64]:80`, 'forwards');
    if (isIP(f.guestAddr) === 6 && !o.ipv6Prefix) throw new ConfigError(`forward ${spec}: IPv6 is off`, 'forwards');
    return f;
  }
  if (typeof spec !== 'object' || spec === null) throw new ConfigError('a forward is a ForwardSpec object or a "-p" string', 'forwards');
  const { proto, hostAddr, hostPort, guestAddr, guestPort } = spec;
  if (proto !== 'tcp' && proto !== 'udp') throw new ConfigError(`forward proto "${String(proto)}": tcp or udp`, 'forwards');
  for (const [what, p] of [['hostPort', hostPort], ['guestPort', guestPort]] as const) {
    if (!Number.isInteger(p) || p < 1 || p > 65535) throw new ConfigError(`forward ${what} ${String(p)}: a port, 1..65535`, 'forwards');
  }
  if (typeof hostAddr !== 'string' || isIP(hostAddr) === 0) throw new ConfigError(`forward hostAddr "${String(hostAddr)}": an IP address`, 'forwards');
  if (typeof guestAddr !== 'string' || isIP(guestAddr) === 0) throw new ConfigError(`forward guestAddr "${String(guestAddr)}": an IP address`, 'forwards');
  return { proto, hostAddr, hostPort, guestAddr, guestPort };
}
