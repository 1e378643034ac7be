/**
 * Flow start and end, for whoever embeds the stack (the library's
 * 'flowOpened' and 'flowClosed' events, src/network.ts).
 *
 * How it works
 * - Each protocol's flow table (flow-table.ts) holds a `FlowEvents` or null.
 *   Null is the default and costs one comparison per flow opened or closed:
 *   nothing on the per-packet path, nothing allocated.
 * - `opened` is called once the flow is in its table with its addresses
 *   (handles, stack/ip/ip-addresses.ts: format them during the call);
 *   `closed` exactly once per opened flow, before its addresses are released.
 *   A flow id is unique among the live flows of one protocol and is reused
 *   after `closed`.
 */
import type { NatFlow } from './flow-table.js';

export type FlowProto = 'tcp' | 'udp' | 'icmp';

export interface FlowEvents {
  /**
   * guest*: the guest's end; remote*: the other end as the guest sees it (the
   * destination it addressed, or the gateway for a port forward's flow). For
   * ICMP the ports are the echo identifier and 0.
   */
  opened(proto: FlowProto, flow: NatFlow, inbound: boolean, guestIp: number, guestPort: number, remoteIp: number, remotePort: number): void;
  /** reason: TCP's close reason, or 'idle', 'evicted', 'removed' for UDP and ICMP. Payload bytes each way. */
  closed(proto: FlowProto, flow: NatFlow, reason: string, bytesFromGuest: number, bytesToGuest: number): void;
}
