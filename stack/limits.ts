/**
 * Every cap, timeout and budget that bounds what usernet holds, in one place:
 * its default, its unit, and how a user changes it.
 *
 * How it works
 * - One entry per limit in `limits`: `default` in the entry's `unit` (flows,
 *   entries, ms, bytes); `cli` when the command line sets it: the name after
 *   `--limit` (or a flag of its own, such as `--mac-table-size`), the unit it
 *   is written in there (seconds for a timeout, MiB for a budget) and its
 *   range in that unit; `help` is its --help text, `row` the row of
 *   README's Reliability table that states it.
 * - Who reads it: the tables take their defaults from here (the UDP and
 *   ICMP flow tables directly; the TCP NAT, the bridge and the DNS
 *   forwarder's wait through stack/config.ts's `defaults` and the runtime;
 *   reassembly, the DNS forwarder's queue and the IPv4 neighbour table as
 *   their named constants), and every flow table's per-guest share is
 *   `guestShareOf` below. (The IPv6 layer's neighbour table keeps its own
 *   option default, 1024, in ip6/ipv6-layer.ts.) src/options.ts parses `--limit` from
 *   `limitNames()`; src/cli/help.ts prints `limitHelp()`; and a test
 *   (test/src/limits-docs.test.ts) checks that README's Reliability table
 *   states each limit as `readmeCap()` writes it, in its `row`, so the code,
 *   --help and the README cannot tell different numbers.
 * - What is not here: sizes that follow from a protocol or from the engine's
 *   own memory layout (the TCP engine's rings and timers, stack/tcp/config.ts;
 *   the transmit arena; pools of reused records): they bound no table a peer
 *   can fill.
 */

export type LimitUnit = 'flows' | 'entries' | 'count' | 'ms' | 'bytes';

/** How the command line writes a limit: counts as they are, timeouts in seconds, budgets in MiB. */
export type CliUnit = 'n' | 's' | 'MiB';

export interface Limit {
  readonly default: number;
  readonly unit: LimitUnit;
  /** The command line's way to set it; null: only the code (or a derived rule) sets it. */
  readonly cli: {
    /** `--limit NAME=N`; or, with `flag`, that flag's own name (e.g. 'mac-table-size' for --mac-table-size N). */
    readonly name: string;
    readonly flag: boolean;
    readonly unit: CliUnit;
    /** Range in the command line's unit. */
    readonly min: number;
    readonly max: number;
  } | null;
  /** What it bounds and what happens at it, as --help says it: `{}` stands for the default in the CLI unit, `\n` starts a continuation line. */
  readonly help: string;
  /** The row of README's Reliability table that states it (its first cell). */
  readonly row: string;
}

const FLOW_CAP_MAX = 1 << 20;
const IDLE_MAX_S = 1_000_000;

export const limits = {
  tcpMaxFlows: {
    default: 65_536,
    unit: 'flows',
    cli: { name: 'tcp-flows', flag: false, unit: 'n', min: 1, max: FLOW_CAP_MAX },
    help: 'TCP connections at once (default {}); a SYN beyond gets a RST',
    row: 'TCP flows (one host socket each)',
  },
  udpMaxFlows: {
    default: 4096,
    unit: 'flows',
    cli: { name: 'udp-flows', flag: false, unit: 'n', min: 1, max: FLOW_CAP_MAX },
    help: 'UDP flows (default {}); beyond, an idle one is reused or the datagram dropped',
    row: 'UDP flows (one host socket each)',
  },
  icmpMaxFlows: {
    // Ping is low volume, and each flow holds a host socket.
    default: 1024,
    unit: 'flows',
    cli: { name: 'icmp-flows', flag: false, unit: 'n', min: 1, max: FLOW_CAP_MAX },
    help: 'ICMP echo flows (default {}); the same',
    row: 'ICMP echo flows (one ping socket each)',
  },
  tcpIdleTimeoutMs: {
    // The guest may be gone without a FIN. Two hours, the usual keepalive time.
    default: 7_200_000,
    unit: 'ms',
    cli: { name: 'tcp-idle', flag: false, unit: 's', min: 1, max: IDLE_MAX_S },
    help: 'reset a connection silent both ways this long (default {})',
    row: 'TCP flows (one host socket each)',
  },
  udpIdleTimeoutMs: {
    // Linux conntrack's UDP stream timeout.
    default: 60_000,
    unit: 'ms',
    cli: { name: 'udp-idle', flag: false, unit: 's', min: 1, max: IDLE_MAX_S },
    help: 'close an idle UDP flow (default {})',
    row: 'UDP flows (one host socket each)',
  },
  udpDnsIdleTimeoutMs: {
    // A DNS flow is one query and one answer, each from a new source port:
    // kept longer, they pile up. Never longer than udp-idle (the runtime).
    default: 10_000,
    unit: 'ms',
    cli: null,
    help: 'close an idle UDP flow to port 53 (never later than udp-idle)',
    row: 'UDP flows (one host socket each)',
  },
  icmpIdleTimeoutMs: {
    // Linux conntrack's ICMP timeout.
    default: 30_000,
    unit: 'ms',
    cli: { name: 'icmp-idle', flag: false, unit: 's', min: 1, max: IDLE_MAX_S },
    help: 'close an idle ICMP flow (default {})',
    row: 'ICMP echo flows (one ping socket each)',
  },
  tcpDialTimeoutMs: {
    default: 20_000,
    unit: 'ms',
    cli: null,
    help: "a host connect not done by then fails the guest's SYN (ICMP host unreachable)",
    row: 'TCP flows (one host socket each)',
  },
  reassemblyTimeoutMs: {
    // Linux' net.ipv4.ipfrag_time default.
    default: 30_000,
    unit: 'ms',
    cli: { name: 'reassembly-timeout', flag: false, unit: 's', min: 1, max: 3_600 },
    help: 'drop an incomplete fragmented datagram (default {})',
    row: 'IPv4 and IPv6 fragment reassembly (each)',
  },
  reassemblyMaxDatagrams: {
    default: 64,
    unit: 'entries',
    cli: null,
    help: 'incomplete datagrams held per family; beyond, the oldest is evicted',
    row: 'IPv4 and IPv6 fragment reassembly (each)',
  },
  reassemblyMaxBytes: {
    default: 4 * 1024 * 1024,
    unit: 'bytes',
    cli: null,
    help: 'fragment bytes held per family; beyond, the oldest datagram is evicted',
    row: 'IPv4 and IPv6 fragment reassembly (each)',
  },
  tcpBufferMemory: {
    // 512 MiB is 64 connections at their full 4 MiB both ways; everything
    // beyond works with smaller windows instead of holding 8 MiB each
    // (stack/tcp/buffer-budget.ts).
    default: 512 * 1024 * 1024,
    unit: 'bytes',
    cli: { name: 'tcp-buffers', flag: false, unit: 'MiB', min: 1, max: FLOW_CAP_MAX },
    help: 'TCP buffer memory all connections share beyond their first\n80 KiB each (default {}); past it, smaller windows',
    row: 'TCP buffer memory beyond the first rings',
  },
  macTableSize: {
    default: 4096,
    unit: 'entries',
    cli: { name: 'mac-table-size', flag: true, unit: 'n', min: 16, max: FLOW_CAP_MAX },
    help: 'MAC addresses remembered; the least recently seen is evicted\nbeyond this (default {})',
    row: 'bridge MACs',
  },
  macAgingMs: {
    // Linux bridge's default ageing time.
    default: 300_000,
    unit: 'ms',
    cli: { name: 'mac-aging', flag: true, unit: 's', min: 1, max: IDLE_MAX_S },
    help: 'forget a MAC not seen for this long (default {})',
    row: 'bridge MACs',
  },
  neighborCapacity: {
    default: 1024,
    unit: 'entries',
    cli: null,
    help: 'guest neighbours (IP to MAC) learned; beyond, the oldest learned entry is dropped',
    row: 'guest neighbours (IP to MAC)',
  },
  arpMaxPending: {
    // Each is a guest that has not spoken: a handful is plenty.
    default: 64,
    unit: 'entries',
    cli: null,
    help: 'addresses being resolved (ARP, NDP) at once; beyond, the waiter is refused',
    row: 'ARP / neighbour resolutions in progress',
  },
  arpMaxWaiters: {
    default: 64,
    unit: 'entries',
    cli: null,
    help: 'connections or datagrams waiting for one address to resolve; beyond, refused',
    row: 'ARP / neighbour resolutions in progress',
  },
  arpAttempts: {
    // Linux's ucast+mcast probes default to 3.
    default: 3,
    unit: 'count',
    cli: null,
    help: 'requests per resolution before giving up',
    row: 'ARP / neighbour resolutions in progress',
  },
  arpRetryMs: {
    // Linux's retrans_time default.
    default: 1_000,
    unit: 'ms',
    cli: null,
    help: 'between two requests of one resolution',
    row: 'ARP / neighbour resolutions in progress',
  },
  dnsMaxPending: {
    default: 1024,
    unit: 'entries',
    cli: null,
    help: 'DNS queries waiting for an upstream; beyond, the oldest gets a SERVFAIL at once',
    row: 'DNS queries waiting for an upstream',
  },
  dnsTimeoutMs: {
    default: 2_000,
    unit: 'ms',
    cli: null,
    help: 'wait for an upstream resolver before trying the next',
    row: 'DNS queries waiting for an upstream',
  },
} as const satisfies Record<string, Limit>;

export type LimitKey = keyof typeof limits;

/** The limits `--limit NAME=N` sets, by field (src/options.ts's RuntimeOptions.limits). */
export type CliLimitKey = { [K in LimitKey]: (typeof limits)[K]['cli'] extends { flag: false } ? K : never }[LimitKey];

/**
 * The flows one guest address may hold in a table of maxFlows: all but the
 * last eighth, which stays for the other guests, so that one guest's flood
 * of fresh flows (which expiry cannot reclaim before their timeout, and a
 * completed connection not at all) does not refuse every other guest's.
 */
export function guestShareOf(maxFlows: number): number {
  return maxFlows - Math.floor(maxFlows / 8);
}

/** A value given on the command line (in the limit's CLI unit) in the limit's own unit. */
export function fromCli(l: Limit, n: number): number {
  const u = l.cli?.unit ?? 'n';
  return u === 's' ? n * 1000 : u === 'MiB' ? n * 1024 * 1024 : n;
}

/** The default as the command line writes it (seconds, MiB, or the count). */
export function defaultInCli(l: Limit): number {
  const u = l.cli?.unit ?? 'n';
  return u === 's' ? l.default / 1000 : u === 'MiB' ? l.default / (1024 * 1024) : l.default;
}

/** Every `--limit` name with its field, in the order above. */
export function limitNames(): { name: string; key: CliLimitKey; limit: Limit }[] {
  const out: { name: string; key: CliLimitKey; limit: Limit }[] = [];
  for (const [key, l] of Object.entries(limits) as [LimitKey, Limit][]) {
    if (l.cli !== null && !l.cli.flag) out.push({ name: l.cli.name, key: key as CliLimitKey, limit: l });
  }
  return out;
}

/** The argument placeholder of a --limit name in --help: N, S or MIB. */
function placeholder(l: Limit): string {
  const u = l.cli?.unit ?? 'n';
  return u === 's' ? 'S' : u === 'MiB' ? 'MIB' : 'N';
}

/** The help text of a limit with its default filled in, continuation lines indented to `indent` columns. */
export function helpText(l: Limit, indent: number): string {
  return l.help.replace('{}', String(defaultInCli(l))).replace(/\n/g, `\n${' '.repeat(indent)}`);
}

/** The Limits section of --help: one entry per --limit name, default from the table above. */
export function limitHelp(): string {
  const col = 25;
  const lines: string[] = [];
  for (const { name, limit } of limitNames()) {
    const head = `  --limit ${name}=${placeholder(limit)}`;
    const text = helpText(limit, col);
    if (head.length < col - 1) lines.push(`${head.padEnd(col)}${text}`);
    else lines.push(head, `${' '.repeat(col)}${text}`);
  }
  return lines.join('\n');
}

/**
 * How README's Reliability table writes a limit's cap or timeout: the flag
 * and the default in the CLI unit ("`--limit tcp-flows` (65536)",
 * "`--limit udp-idle` (60 s)"), or the bare default for one no flag sets
 * ("1024", "20 s", "4 MiB").
 */
export function readmeCap(l: Limit): string {
  const u = l.cli?.unit ?? (l.unit === 'ms' ? 's' : l.unit === 'bytes' ? 'MiB' : 'n');
  const v = u === 's' ? l.default / 1000 : u === 'MiB' ? l.default / (1024 * 1024) : l.default;
  const value = u === 's' ? `${v} s` : u === 'MiB' ? `${v} MiB` : String(v);
  if (l.cli === null) return value;
  return `\`${l.cli.flag ? '--' : '--limit '}${l.cli.name}\` (${value})`;
}
