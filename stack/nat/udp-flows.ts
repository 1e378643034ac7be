/**
 * UDP NAT flow table: one flow per (guest ip, guest port, destination ip,
 * destination port), which the runtime backs with one host datagram socket.
 *
 * How it works
 * - The key is two exact numbers, guest endpoint and destination endpoint
 *   (ip * 2^16 + port each), in a hashed index (FlowIndex): no strings, no
 *   allocation per lookup.
 * - Each flow has a small integer id (for the runtime's socket array), the
 *   host destination the address map chose, and packet/byte counters each
 *   way. Ids, keys, the cap, the share, expiry and eviction are the flow
 *   table's (flow-table.ts); flow objects are reused with their id, so
 *   neither lookups nor flow creation allocate in steady state.
 * - Idle timeouts: 60 s, like Linux conntrack's UDP stream timeout, and
 *   10 s for DNS (destination port 53), whose flows are one query and one
 *   answer and would otherwise pile up as each query uses a new source port.
 *   Traffic either way keeps a flow alive. `poll(now)` at `pollAt()` expires
 *   idle flows and reports each through `onClose` so the runtime closes the
 *   socket.
 * - Addresses are handles of either IP version (ip-addresses.ts); a flow
 *   holds a reference on its three addresses while it is in the table.
 * - At most maxFlows (4096, stack/limits.ts) flows. When full, a new flow evicts the least
 *   recently active flow that is already past its timeout; if there is none
 *   the new flow is refused ('flow-table-full') rather than breaking a live
 *   one. With `guestShare` (the NAT gives 7/8 of the table), one guest
 *   address holds at most that many ('flow-guest-share-full'); port
 *   forwards' flows count for no guest.
 */
import { DNS_PORT } from './address-map.js';
import { endpointKey, type FlowIndex } from './flow-key.js';
import { FlowTable, NatFlow, type FlowCloseReason, type FlowTableStats } from './flow-table.js';
import { limits } from '../limits.js';
import type { FlowEvents } from './flow-events.js';
import type { IpAddresses } from '../ip/ip-addresses.js';
import type { DropCounts } from '../counters.js';

export const UDP_MAX_FLOWS: number = limits.udpMaxFlows.default;
export const UDP_IDLE_TIMEOUT_MS: number = limits.udpIdleTimeoutMs.default;
export const UDP_DNS_IDLE_TIMEOUT_MS: number = limits.udpDnsIdleTimeoutMs.default;

const CLASS_DEFAULT = 0;
const CLASS_DNS = 1;

export class UdpFlow extends NatFlow {
  guestIp = 0;
  guestPort = 0;
  /** Destination as the guest addressed it. */
  dstIp = 0;
  dstPort = 0;
  /** Where the host socket sends (the address map's answer). */
  hostIp = 0;
  hostPort = 0;
  get isDns(): boolean {
    return this.timeoutClass === CLASS_DNS;
  }
}

export interface UdpFlowTableOptions {
  maxFlows?: number;
  idleTimeoutMs?: number;
  dnsIdleTimeoutMs?: number;
  /** A flow left the table by expiry or eviction; close its socket. The flow object is reused later. */
  onClose?: (id: number, flow: UdpFlow, reason: FlowCloseReason) => void;
  /** Where IPv6 handles live; without it only IPv4 addresses may be used. */
  addrs?: IpAddresses;
  /** Flows one guest address may hold (guestShareOf; 'flow-guest-share-full' beyond); default no limit but maxFlows. */
  guestShare?: number;
}

export class UdpFlowTable {
  private readonly core: FlowTable<UdpFlow>;
  /** The core's key index, for lookups on the per-packet path. */
  private readonly index: FlowIndex<UdpFlow>;
  private readonly addrs: IpAddresses | null;

  constructor(opts: UdpFlowTableOptions = {}) {
    const addrs = opts.addrs ?? null;
    this.addrs = addrs;
    const idle = opts.idleTimeoutMs ?? UDP_IDLE_TIMEOUT_MS;
    const dnsIdle = opts.dnsIdleTimeoutMs ?? UDP_DNS_IDLE_TIMEOUT_MS;
    this.core = new FlowTable<UdpFlow>({
      proto: 'udp',
      maxFlows: opts.maxFlows ?? UDP_MAX_FLOWS,
      // A class per timeout; a flow past its timeout may give its place to a new one.
      classes: [
        { timeoutMs: idle, evictAfterMs: idle },
        { timeoutMs: dnsIdle, evictAfterMs: dnsIdle },
      ],
      make: () => new UdpFlow(),
      onClose:
        opts.onClose === undefined && addrs === null
          ? null
          : (id, f, reason) => {
              opts.onClose?.(id, f, reason);
              this.releaseAddresses(f);
            },
      guestShare: opts.guestShare,
    });
    this.index = this.core.index;
  }

  /** Flow start and end reports (stack/nat/flow-events.ts); null: none. */
  get events(): FlowEvents | null {
    return this.core.events;
  }
  set events(e: FlowEvents | null) {
    this.core.events = e;
  }

  private releaseAddresses(f: UdpFlow): void {
    const a = this.addrs;
    if (a === null) return;
    a.release(f.guestIp);
    a.release(f.dstIp);
    a.release(f.hostIp);
  }

  get maxFlows(): number {
    return this.core.maxFlows;
  }

  /** Active flows. */
  get size(): number {
    return this.core.size;
  }

  /** Drop reasons and lifetime counters. */
  get drops(): DropCounts {
    return this.core.drops;
  }

  lookup(guestIp: number, guestPort: number, dstIp: number, dstPort: number): UdpFlow | null {
    return this.index.get(endpointKey(guestIp, guestPort), endpointKey(dstIp, dstPort));
  }

  /**
   * The flow for this guest datagram, created with host destination
   * hostIp:hostPort if there is none (an existing flow keeps its own). Counts
   * as activity. Null when the table is full ('flow-table-full' counted).
   */
  lookupOrCreate(
    guestIp: number,
    guestPort: number,
    dstIp: number,
    dstPort: number,
    hostIp: number,
    hostPort: number,
    now: number,
    /** A port forward's flow (reported as such to `events`). */
    inbound = false,
  ): UdpFlow | null {
    const g = endpointKey(guestIp, guestPort);
    const d = endpointKey(dstIp, dstPort);
    const found = this.index.get(g, d);
    if (found !== null) {
      this.core.touch(found, now);
      return found;
    }
    const f = this.core.allocate((dstPort & 0xffff) === DNS_PORT ? CLASS_DNS : CLASS_DEFAULT, g, d, now, inbound ? -1 : guestIp);
    if (f === null) return null;
    const a = this.addrs;
    f.guestIp = a === null ? guestIp >>> 0 : a.retain(guestIp);
    f.guestPort = guestPort & 0xffff;
    f.dstIp = a === null ? dstIp >>> 0 : a.retain(dstIp);
    f.dstPort = dstPort & 0xffff;
    f.hostIp = a === null ? hostIp >>> 0 : a.retain(hostIp);
    f.hostPort = hostPort & 0xffff;
    this.core.opened(f, inbound, f.guestIp, f.guestPort, f.dstIp, f.dstPort);
    return f;
  }

  /** A datagram of `bytes` payload went from the guest to the host. */
  recordOutbound(flow: UdpFlow, bytes: number, now: number): void {
    flow.packetsOut++;
    flow.bytesOut += bytes;
    this.core.touch(flow, now);
  }

  /** A datagram of `bytes` payload came back from the host. */
  recordInbound(flow: UdpFlow, bytes: number, now: number): void {
    flow.packetsIn++;
    flow.bytesIn += bytes;
    this.core.touch(flow, now);
  }

  byId(id: number): UdpFlow | null {
    return this.core.byId(id);
  }

  /** Removes a flow the runtime closed itself (e.g. its socket failed); no callback. */
  remove(id: number): boolean {
    const f = this.core.byId(id);
    if (f === null) return false;
    this.core.release(f, 'removed');
    this.releaseAddresses(f);
    return true;
  }

  /** When the next flow times out (its deadline); Infinity when empty. */
  pollAt(): number {
    return this.core.pollAt();
  }

  /** Expires idle flows, reporting each through onClose; returns how many. */
  poll(now: number): number {
    return this.core.poll(now);
  }

  /** When this flow times out unless there is more traffic. */
  deadline(flow: UdpFlow): number {
    return this.core.deadline(flow);
  }

  stats(): FlowTableStats {
    return this.core.stats();
  }
}
