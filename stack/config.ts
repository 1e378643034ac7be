import { limits } from './limits.js';

/**
 * Settings a user may want to change, in one place; the CLI overrides some
 * of them through src/options.ts. Every cap, timeout and budget (flow
 * tables, the bridge's MAC table, the TCP buffer budget, the DNS forwarder's
 * upstream wait) has its default, unit and command-line name in
 * stack/limits.ts; the entries below that name one take its default from
 * there, for the callers that read `defaults`. Sizes that follow from a
 * protocol or from the engine's own memory layout stay named constants next
 * to the code they bound, each with its reason.
 */
export const defaults = {
  /** Network the gateway serves (slirp's default). */
  cidr: '10.0.2.0/24',
  mtu: 1500,
  /** slirp's gateway MAC: 52:55 then the gateway address 10.0.2.2. */
  gatewayMac: '52:55:0a:00:02:02',
  macTableSize: limits.macTableSize.default,
  macAgingMs: limits.macAgingMs.default,
  /** How often the bridge sweeps expired MAC entries. Lookups also ignore stale entries. */
  macSweepMs: 1_000,
  tcpMaxFlows: limits.tcpMaxFlows.default,
  tcpIdleTimeoutMs: limits.tcpIdleTimeoutMs.default,
  tcpBufferMemory: limits.tcpBufferMemory.default,
  tcpDialTimeoutMs: limits.tcpDialTimeoutMs.default,
  udpMaxFlows: limits.udpMaxFlows.default,
  udpIdleTimeoutMs: limits.udpIdleTimeoutMs.default,
  udpDnsIdleTimeoutMs: limits.udpDnsIdleTimeoutMs.default,
  icmpMaxFlows: limits.icmpMaxFlows.default,
  icmpIdleTimeoutMs: limits.icmpIdleTimeoutMs.default,
  dnsTimeoutMs: limits.dnsTimeoutMs.default,
  /** The IPv6 /64 on the link (gateway ::2, DNS ::3), as slirp4netns and pasta use. */
  ipv6Prefix: 'fd00::/64',
  /**
   * After a small batch (a request, a handshake step), keep polling the
   * taps and host sockets this long before sleeping: the answer usually
   * comes within it, and picking it up without going idle saves the wake-up
   * of an idle CPU (tens of microseconds in a VM). 0 turns it off. Like
   * Linux's net.core.busy_poll, in microseconds.
   */
  busyPollMicros: 50,
  /** A batch of more frames and host events than this is bulk traffic: no busy polling after it. */
  busyPollBatchMax: 8,
  /** ... or more bytes than this (frames received plus host bytes read and written). */
  busyPollBytesMax: 16_384,
} as const;

export type Defaults = typeof defaults;
