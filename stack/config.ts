/**
 * Capacities and timeouts a user may want to change, in one place; the CLI
 * overrides some of them through src/options.ts. Sizes that follow from a
 * protocol or from the engine's own memory layout (reassembly slots, ring
 * pools, pending ARP queues, per-table caps such as UDP_MAX_FLOWS) stay named
 * constants next to the code they bound, each with its reason.
 */
export const defaults = {
  /** Network the gateway serves (slirp's default). */
  cidr: '10.0.2.0/24',
  mtu: 1500,
  /** slirp's gateway MAC: 52:55 then the gateway address 10.0.2.2. */
  gatewayMac: '52:55:0a:00:02:02',
  /** MAC entries the bridge remembers; beyond this the least recently seen is evicted. */
  macTableSize: 4096,
  /** Linux bridge's default ageing time. */
  macAgingMs: 300_000,
  /** How often the bridge sweeps expired MAC entries. Lookups also ignore stale entries. */
  macSweepMs: 1_000,
  /** TCP connections proxied at once; each holds a host socket (an fd). */
  tcpMaxFlows: 65_536,
  /**
   * A connection with no segment either way for this long is reset: the
   * guest may be gone without a FIN. Two hours, the usual keepalive time.
   */
  tcpIdleTimeoutMs: 7_200_000,
  /**
   * TCP buffer memory all connections share beyond their first rings (64 KiB
   * send, 16 KiB receive): a ring grows, and a window opens, past those only
   * with room here (stack/tcp/buffer-budget.ts). 512 MiB is 64 connections
   * at their full 4 MiB both ways; everything beyond works with smaller
   * windows instead of holding 8 MiB each.
   */
  tcpBufferMemory: 512 * 1024 * 1024,
  /** A host connect that has not completed by then fails the guest's SYN. */
  tcpDialTimeoutMs: 20_000,
  udpMaxFlows: 4096,
  /** Linux conntrack's UDP stream timeout. */
  udpIdleTimeoutMs: 60_000,
  /** DNS flows are one query and one answer. */
  udpDnsIdleTimeoutMs: 10_000,
  icmpMaxFlows: 1024,
  /** Linux conntrack's ICMP timeout. */
  icmpIdleTimeoutMs: 30_000,
  /** Wait for an upstream resolver before trying the next. */
  dnsTimeoutMs: 2_000,
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
