/**
 * ICMP echo NAT table: one flow per (guest ip, guest echo identifier,
 * destination ip), which the runtime backs with one host ping socket
 * (SOCK_DGRAM, IPPROTO_ICMP).
 *
 * How it works
 * - The kernel gives each ping socket its own echo identifier and rewrites
 *   the one in our requests, so the flow stores the guest's identifier and
 *   the runtime writes it back into every reply before it reaches the guest.
 *   The host's identifier is kept on the flow (`hostIdent`, -1 until the
 *   runtime knows it) for logs and for matching errors.
 * - Key: guest ip * 2^16 + guest identifier, then destination ip, in a
 *   hashed index (FlowIndex); addresses are handles of either IP version
 *   (ip-addresses.ts), and a flow holds a reference on its three addresses
 *   while it is in the table (given `addrs`); ids, reused flow objects, activity order,
 *   the cap and the share come from the flow table (flow-table.ts), so
 *   steady-state echo traffic allocates nothing.
 * - Idle timeout 30 s (Linux conntrack's ICMP timeout); poll(now) at
 *   pollAt() expires flows and reports each through onClose so the runtime
 *   closes the ping socket.
 * - At most maxFlows (1024, stack/limits.ts) flows: ping is low volume, and each flow holds a
 *   host socket. When full, a new flow evicts the least recently active flow
 *   already past its timeout, else it is refused ('flow-table-full'). With
 *   `guestShare` (the NAT gives 7/8 of the table), one guest address holds
 *   at most that many ('flow-guest-share-full').
 */
import { endpointKey, type FlowIndex } from './flow-key.js';
import { FlowTable, NatFlow, type FlowCloseReason, type FlowTableStats } from './flow-table.js';
import { limits } from '../limits.js';
import type { FlowEvents } from './flow-events.js';
import type { IpAddresses } from '../ip/ip-addresses.js';
import type { DropCounts } from '../counters.js';

export const ICMP_MAX_FLOWS: number = limits.icmpMaxFlows.default;
export const ICMP_IDLE_TIMEOUT_MS: number = limits.icmpIdleTimeoutMs.default;

export class IcmpFlow extends NatFlow {
  guestIp = 0;
  /** The echo identifier the guest uses; restored on replies. */
  guestIdent = 0;
  dstIp = 0;
  /** Where the ping socket sends (the address map's answer). */
  hostIp = 0;
  /** The identifier the host socket got, -1 until known. */
  hostIdent = -1;
}

export interface IcmpFlowTableOptions {
  maxFlows?: number;
  idleTimeoutMs?: number;
  /** A flow left the table by expiry or eviction; close its socket. The flow object is reused later. */
  onClose?: (id: number, flow: IcmpFlow, reason: FlowCloseReason) => void;
  /** Where IPv6 handles live; without it only IPv4 addresses may be used. */
  addrs?: IpAddresses;
  /** Flows one guest address may hold (guestShareOf; 'flow-guest-share-full' beyond); default no limit but maxFlows. */
  guestShare?: number;
}

export class IcmpFlowTable {
  private readonly core: FlowTable<IcmpFlow>;
  /** The core's key index, for lookups on the per-packet path. */
  private readonly index: FlowIndex<IcmpFlow>;
  private readonly addrs: IpAddresses | null;

  constructor(opts: IcmpFlowTableOptions = {}) {
    const addrs = opts.addrs ?? null;
    this.addrs = addrs;
    const idle = opts.idleTimeoutMs ?? ICMP_IDLE_TIMEOUT_MS;
    this.core = new FlowTable<IcmpFlow>({
      proto: 'icmp',
      maxFlows: opts.maxFlows ?? ICMP_MAX_FLOWS,
      // A class per timeout; a flow past its timeout may give its place to a new one.
      classes: [{ timeoutMs: idle, evictAfterMs: idle }],
      make: () => new IcmpFlow(),
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

  private releaseAddresses(f: IcmpFlow): void {
    const a = this.addrs;
    if (a === null) return;
    a.release(f.guestIp);
    a.release(f.dstIp);
    a.release(f.hostIp);
  }

  get maxFlows(): number {
    return this.core.maxFlows;
  }

  get size(): number {
    return this.core.size;
  }

  get drops(): DropCounts {
    return this.core.drops;
  }

  lookup(guestIp: number, guestIdent: number, dstIp: number): IcmpFlow | null {
    return this.index.get(endpointKey(guestIp, guestIdent), dstIp);
  }

  /**
   * The flow for this echo request, created with host destination hostIp if
   * there is none. Counts as activity. Null when the table is full
   * ('flow-table-full' counted).
   */
  lookupOrCreate(guestIp: number, guestIdent: number, dstIp: number, hostIp: number, now: number): IcmpFlow | null {
    const g = endpointKey(guestIp, guestIdent);
    const found = this.index.get(g, dstIp);
    if (found !== null) {
      this.core.touch(found, now);
      return found;
    }
    const f = this.core.allocate(0, g, dstIp, now, guestIp);
    if (f === null) return null;
    const a = this.addrs;
    f.guestIp = a === null ? guestIp : a.retain(guestIp);
    f.guestIdent = guestIdent & 0xffff;
    f.dstIp = a === null ? dstIp : a.retain(dstIp);
    f.hostIp = a === null ? hostIp : a.retain(hostIp);
    f.hostIdent = -1;
    this.core.opened(f, false, f.guestIp, f.guestIdent, f.dstIp, 0);
    return f;
  }

  /** The runtime learnt the identifier its ping socket was given. */
  setHostIdent(flow: IcmpFlow, ident: number): void {
    flow.hostIdent = ident & 0xffff;
  }

  recordOutbound(flow: IcmpFlow, bytes: number, now: number): void {
    flow.packetsOut++;
    flow.bytesOut += bytes;
    this.core.touch(flow, now);
  }

  recordInbound(flow: IcmpFlow, bytes: number, now: number): void {
    flow.packetsIn++;
    flow.bytesIn += bytes;
    this.core.touch(flow, now);
  }

  byId(id: number): IcmpFlow | null {
    return this.core.byId(id);
  }

  /** Removes a flow the runtime closed itself; no callback. */
  remove(id: number): boolean {
    const f = this.core.byId(id);
    if (f === null) return false;
    this.core.release(f, 'removed');
    this.releaseAddresses(f);
    return true;
  }

  pollAt(): number {
    return this.core.pollAt();
  }

  poll(now: number): number {
    return this.core.poll(now);
  }

  deadline(flow: IcmpFlow): number {
    return this.core.deadline(flow);
  }

  stats(): FlowTableStats {
    return this.core.stats();
  }
}
