/**
 * The namespaces attached to a usernet daemon, and their addresses.
 *
 * How it works
 * - attach: the same forked helper as `usernet run` and the slirp4netns front
 *   end (native openTapInNamespace) joins the namespace (by PID: its user
 *   namespace first, failure ignored, then its network namespace; by path:
 *   the path, and a user namespace path if given), creates the tap under the
 *   requested name (eth0 by default), and configures it: MAC, MTU, the
 *   address from the pool, lo up, link up, default route via N+2. IPv6 comes
 *   from the gateway's router advertisements (SLAAC), so the guest's IPv6
 *   address is the EUI-64 one of its MAC, which is what is reported. The tap
 *   becomes a bridge port.
 * - Addresses: a lease per caller-chosen id (a container id), kept after
 *   detach so that the same id gets the same address and MAC back; the pool
 *   is N+100 .. the last host address of the network. When it is exhausted,
 *   the lease detached longest ago is given up. A requested address must be
 *   in the pool and not held by an attached guest.
 * - MAC: 52:54 followed by the four bytes of the IPv4 address: unique on the
 *   network, stable with the lease, locally administered and unicast.
 * - Names: an attached guest's name (default: its id when that is a valid
 *   host name) is answered by the DNS forwarder with its addresses, as
 *   Docker's embedded DNS does on user-defined networks.
 * - attach with `tap: NAME` instead creates the tap in the daemon's own
 *   namespace with the lease's MAC and the MTU set, down and without
 *   addresses: for whoever moves it into a container and configures it there
 *   (Docker's remote network driver, docker-plugin.ts). The tap fd keeps
 *   working after the move; closing it (detach) removes the interface
 *   wherever it is.
 * - reserve/unreserve: a lease held for an address that is not attached yet
 *   (an IPAM request); an attach that asks for that address takes it over.
 * - A guest attached by PID is detached when that process exits (a
 *   container that died); its namespace would otherwise live on through
 *   the tap fd.
 * - Limits: at most MAX_GUESTS attached, and as many leases as the pool has
 *   addresses.
 */
import { randomBytes } from 'node:crypto';
import { formatIpv4, parseIpv4 } from '../../stack/wire/ipv4-address.js';
import { formatIpv6, parsePrefix, prefixHost, writeEui64 } from '../../stack/wire/ipv6-address.js';
import { formatMac, isMulticastMac, macToBytes, parseMac } from '../../stack/wire/mac.js';
import { isValidHostName, type LocalNames } from '../../stack/dns-local-names.js';
import { ConfigError, UsernetError } from '../errors.js';
import type { Logger } from '../log.js';
import { native } from '../native/addon.js';
import type { NamespaceTarget, PidWatch, TapHandle } from '../native/types.js';
import type { RuntimeOptions } from '../options.js';
import { OFFLOADS } from '../native/types.js';
import type { Runtime } from '../runtime.js';
import type { TapPort } from '../tap-port.js';

/** Attached namespaces at most; each costs a tap fd, a 4 MiB receive area and a registration in every other tap. */
export const MAX_GUESTS = 1024;
const FIRST_GUEST_HOST = 100;
const GATEWAY_HOST = 2;
const DNS_HOST = 3;
const ID_MAX_LEN = 128;

export interface AttachRequest {
  /** The caller's key for the lease (a container id); a random one when absent. */
  id?: string;
  /** Join /proc/PID/ns/net (and /proc/PID/ns/user first, failure ignored). */
  pid?: number;
  /** Or this network namespace file (/run/netns/x, /proc/PID/ns/net, a CNI netns path). */
  netns?: string;
  /** With netns: a user namespace file to join first. */
  userns?: string;
  /**
   * Or: create a tap of this name in the daemon's own namespace, its MAC and
   * MTU set, down and unaddressed, for a caller that moves it elsewhere.
   */
  tap?: string;
  /** Interface name inside (default eth0). */
  ifname?: string;
  /** DNS name of the guest on the network (default: the id when it is a valid host name). */
  name?: string;
  /** A specific IPv4 address from the pool. */
  ipv4?: string;
  /** A specific MAC (default: derived from the IPv4 address). */
  mac?: string;
  /** Who attached it (e.g. "cni:NETWORK"), for a client's own garbage collection. */
  owner?: string;
}

export interface GuestInfo {
  id: string;
  name: string | null;
  ifname: string;
  target: string;
  mac: string;
  ipv4: string;
  prefixLength: number;
  gateway: string;
  dns: string;
  ipv6: string | null;
  gateway6: string | null;
  dns6: string | null;
  mtu: number;
  owner: string | null;
  attachedAt: string;
}

interface Guest {
  info: GuestInfo;
  port: TapPort;
  watch: PidWatch | null;
  /** Forwards published for this guest: removed with it. */
  forwards: number[];
}

interface Lease {
  ip: number;
  /** When it was last released (ms since the epoch); 0 while attached. */
  releasedAt: number;
}

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]*$/;
const TAP_RE = /^[A-Za-z0-9_.-]{1,15}$/;

export class Guests {
  private readonly guests = new Map<string, Guest>();
  private readonly leases = new Map<string, Lease>();
  private readonly leased = new Map<number, string>();
  private readonly first: number;
  private readonly last: number;
  private readonly prefix6: Uint8Array | null;
  /** Called after a guest left on its own (its process exited). */
  onAutoDetach: ((info: GuestInfo) => void) | null = null;

  constructor(
    private readonly runtime: Runtime,
    private readonly options: RuntimeOptions,
    private readonly names: LocalNames,
    private readonly log: Logger,
  ) {
    const size = 2 ** (32 - options.prefix);
    this.first = (options.network + FIRST_GUEST_HOST) >>> 0;
    this.last = (options.network + size - 2) >>> 0;
    this.prefix6 = options.ipv6Prefix ? parsePrefix(options.ipv6Prefix).address : null;
  }

  get size(): number {
    return this.guests.size;
  }

  list(): GuestInfo[] {
    return [...this.guests.values()].map((g) => g.info);
  }

  get(id: string): GuestInfo | null {
    return this.guests.get(id)?.info ?? null;
  }

  /** Attaches a namespace; throws ConfigError for bad requests, UsernetError/NativeError when the system refuses. */
  attach(req: AttachRequest): GuestInfo {
    const id = req.id ?? randomBytes(6).toString('hex');
    if (typeof id !== 'string' || id.length > ID_MAX_LEN || !ID_RE.test(id)) {
      throw new ConfigError(`id "${String(id)}": 1..${ID_MAX_LEN} letters, digits and _.:- (starting with a letter or digit)`, 'id');
    }
    if (this.guests.has(id)) throw new UsernetError('ERR_GUEST_EXISTS', `a guest with id "${id}" is attached already: detach it first`);
    if (this.guests.size >= MAX_GUESTS) throw new UsernetError('ERR_GUEST_LIMIT', `${MAX_GUESTS} guests are attached: detach one first`);
    const target = this.target(req);
    const ifname = req.ifname ?? 'eth0';
    const name = req.name ?? (isValidHostName(id) ? id : null);
    if (name !== null && !isValidHostName(name)) throw new ConfigError(`name "${name}" is not a valid host name`, 'name');
    if (name !== null && this.list().some((g) => g.name !== null && g.name.toLowerCase() === name.toLowerCase())) {
      throw new UsernetError('ERR_NAME_TAKEN', `the name "${name}" belongs to another attached guest`);
    }
    let mac = -1;
    if (req.mac !== undefined) {
      mac = typeof req.mac === 'string' ? parseMac(req.mac) : -1;
      if (mac < 0 || isMulticastMac(mac)) throw new ConfigError(`mac "${String(req.mac)}": a unicast MAC address such as 02:00:00:00:00:01`, 'mac');
    }
    const ip = this.lease(id, req.ipv4);
    if (mac < 0) mac = 0x5254_0000_0000 + ip;
    const o = this.options;
    let port: TapPort;
    try {
      const handle = target.tap === null ? native.openTapInNamespace({
        target: target.native,
        tap: { name: ifname, vnetHdr: o.offload, offloads: o.offload ? OFFLOADS : 0 },
        configure: {
          name: ifname,
          loopbackUp: true,
          mtu: o.mtu,
          mac: macToBytes(mac),
          ipv4: formatIpv4(ip),
          prefixLength: o.prefix,
          up: true,
          defaultGateway: formatIpv4((o.network + GATEWAY_HOST) >>> 0),
        },
      }) : this.openLocalTap(target.tap, mac);
      port = this.runtime.addTap(handle);
    } catch (err) {
      this.release(id);
      throw err;
    }
    const info: GuestInfo = {
      id,
      name,
      ifname: target.tap ?? ifname,
      target: target.text,
      mac: formatMac(mac),
      ipv4: formatIpv4(ip),
      prefixLength: o.prefix,
      gateway: formatIpv4((o.network + GATEWAY_HOST) >>> 0),
      dns: formatIpv4((o.network + DNS_HOST) >>> 0),
      ipv6: this.prefix6 === null ? null : formatIpv6(this.slaacAddress(mac)),
      gateway6: this.prefix6 === null ? null : formatIpv6(prefixHost(this.prefix6, GATEWAY_HOST)),
      dns6: this.prefix6 === null ? null : formatIpv6(prefixHost(this.prefix6, DNS_HOST)),
      mtu: o.mtu,
      owner: typeof req.owner === 'string' ? req.owner.slice(0, ID_MAX_LEN) : null,
      attachedAt: new Date().toISOString(),
    };
    let watch: PidWatch | null = null;
    if (req.pid !== undefined) {
      try {
        watch = native.watchProcessExit(req.pid, () => {
          if (this.guests.get(id)?.port !== port) return;
          this.log.info(`guest ${id}: process ${req.pid} exited; detaching`);
          this.detach(id);
          this.onAutoDetach?.(info);
        });
      } catch (err) {
        this.log.warn(`guest ${id}: cannot watch process ${req.pid} (${(err as Error).message}); detach it explicitly`);
      }
    }
    this.guests.set(id, { info, port, watch, forwards: [] });
    if (name !== null) this.names.set(name, ipv4Bytes(ip), this.prefix6 === null ? null : this.slaacAddress(mac));
    this.log.info(`guest ${id} attached: ${info.ifname} in ${target.text}, ${info.ipv4}/${o.prefix}, ${info.mac}${name === null ? '' : `, name ${name}`}`);
    return info;
  }

  /** Detaches a guest: its tap is closed (the interface vanishes), the lease is kept for a re-attach. */
  detach(id: string): boolean {
    const g = this.guests.get(id);
    if (g === undefined) return false;
    this.guests.delete(id);
    g.watch?.close();
    for (const f of g.forwards) this.runtime.forwards.remove(f);
    if (g.info.name !== null) this.names.delete(g.info.name);
    this.runtime.removeTap(g.port);
    this.release(id);
    this.log.info(`guest ${id} detached`);
    return true;
  }

  /** Ties a forward to an attached guest: it is removed when the guest is detached. */
  ownForward(id: string, forwardId: number): void {
    this.guests.get(id)?.forwards.push(forwardId);
  }

  /** The lease of an id, attached or not (for forwards to a guest by id). */
  leaseOf(id: string): string | null {
    const l = this.leases.get(id);
    return l === undefined ? null : formatIpv4(l.ip);
  }

  closeAll(): void {
    for (const id of [...this.guests.keys()]) this.detach(id);
  }

  /** Reserves an address for an id without attaching anything (the lease as an attach would take it); returns the address. */
  reserve(id: string, ipv4?: string): string {
    if (typeof id !== 'string' || id.length > ID_MAX_LEN || !ID_RE.test(id)) throw new ConfigError(`id "${String(id)}" is not a valid lease id`, 'id');
    return formatIpv4(this.lease(id, ipv4));
  }

  /** Gives up the lease on an address unless an attached guest holds it; true when one was dropped. */
  unreserve(ipv4: string): boolean {
    const holder = this.leased.get(parseIpv4(ipv4));
    if (holder === undefined || this.guests.has(holder)) return false;
    this.forget(holder);
    return true;
  }

  /** A tap in this namespace: MAC and MTU set, left down for whoever moves it. */
  private openLocalTap(name: string, mac: number): TapHandle {
    const o = this.options;
    const handle = native.openTap({ name, vnetHdr: o.offload, offloads: o.offload ? OFFLOADS : 0 });
    try {
      // A persistent interface of that name would outlive our fd: never take one over.
      if (handle.attached) throw new UsernetError('ERR_TAP_EXISTS', `an interface named ${name} exists already in the daemon's namespace`);
      native.configureInterface({ name, mtu: o.mtu, mac: macToBytes(mac) });
    } catch (err) {
      native.closeFd(handle.fd);
      throw err;
    }
    return handle;
  }

  private target(req: AttachRequest): { native: NamespaceTarget; text: string; tap: string | null } {
    const given = [req.pid, req.netns, req.tap].filter((v) => v !== undefined).length;
    if (given !== 1) throw new ConfigError('give exactly one of pid, netns and tap', 'pid');
    if (req.tap !== undefined) {
      if (typeof req.tap !== 'string' || !TAP_RE.test(req.tap)) throw new ConfigError('tap: an interface name of 1..15 letters, digits and _.-', 'tap');
      return { native: {}, text: `tap ${req.tap}`, tap: req.tap };
    }
    if (req.pid !== undefined) {
      if (!Number.isInteger(req.pid) || req.pid < 1 || req.pid > 0x7fff_ffff) throw new ConfigError('pid must be a positive integer', 'pid');
      return { native: { pid: req.pid }, text: `pid ${req.pid}`, tap: null };
    }
    if (typeof req.netns !== 'string' || !req.netns.startsWith('/')) throw new ConfigError('netns must be an absolute path', 'netns');
    if (req.userns !== undefined && (typeof req.userns !== 'string' || !req.userns.startsWith('/'))) {
      throw new ConfigError('userns must be an absolute path', 'userns');
    }
    return { native: { netnsPath: req.netns, ...(req.userns === undefined ? {} : { usernsPath: req.userns }) }, text: req.netns, tap: null };
  }

  /** Takes (or renews) the id's lease; a requested address must be free. */
  private lease(id: string, requested: string | undefined): number {
    let want = -1;
    if (requested !== undefined) {
      want = typeof requested === 'string' ? parseIpv4(requested) : -1;
      if (want < 0 || want < this.first || want > this.last) {
        throw new ConfigError(`ipv4 "${String(requested)}": not in the pool ${formatIpv4(this.first)}..${formatIpv4(this.last)}`, 'ipv4');
      }
      const holder = this.leased.get(want);
      if (holder !== undefined && holder !== id) {
        if (this.guests.has(holder)) throw new UsernetError('ERR_ADDRESS_TAKEN', `${requested} is held by attached guest ${holder}`);
        this.forget(holder);
      }
    }
    const old = this.leases.get(id);
    if (old !== undefined && (want < 0 || old.ip === want)) {
      old.releasedAt = 0;
      return old.ip;
    }
    if (old !== undefined) this.forget(id);
    const ip = want >= 0 ? want : this.freeAddress();
    this.leases.set(id, { ip, releasedAt: 0 });
    this.leased.set(ip, id);
    return ip;
  }

  private freeAddress(): number {
    for (let ip = this.first; ip <= this.last; ip++) if (!this.leased.has(ip)) return ip;
    // Every address has a lease: give up the one released longest ago.
    let oldest: string | null = null;
    let at = Infinity;
    for (const [id, l] of this.leases) {
      if (l.releasedAt !== 0 && l.releasedAt < at) {
        oldest = id;
        at = l.releasedAt;
      }
    }
    if (oldest === null) throw new UsernetError('ERR_POOL_EXHAUSTED', `every address of ${this.options.cidrText} from ${formatIpv4(this.first)} is attached`);
    const ip = this.leases.get(oldest)!.ip;
    this.forget(oldest);
    return ip;
  }

  private release(id: string): void {
    const l = this.leases.get(id);
    if (l !== undefined) l.releasedAt = Date.now();
  }

  private forget(id: string): void {
    const l = this.leases.get(id);
    if (l === undefined) return;
    this.leases.delete(id);
    this.leased.delete(l.ip);
  }

  private slaacAddress(mac: number): Uint8Array {
    const a = prefixHost(this.prefix6!, 0);
    writeEui64(a, 8, macToBytes(mac));
    return a;
  }
}

function ipv4Bytes(ip: number): Uint8Array {
  return Uint8Array.from([ip >>> 24, (ip >>> 16) & 0xff, (ip >>> 8) & 0xff, ip & 0xff]);
}
