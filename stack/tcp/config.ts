/**
 * The TCP engine's settings: segment sizes, rings, RFC timers. They are the
 * protocol's and the engine's memory layout, not caps on a table a peer can
 * fill, so they stay here rather than in stack/limits.ts (which holds the
 * budget all connections' rings share, tcpBufferMemory). The NAT passes one
 * (frozen, shared) object to every connection.
 */
export interface TcpConfig {
  /** MSS we advertise: MTU 1500 - 20 (IPv4) - 20 (TCP). */
  mss: number;
  /**
   * Largest payload of one emitted segment. 0 means one peer MSS per segment
   * (plain taps). With TSO on the egress tap set it to ~64 KiB: the NAT hands
   * the segment to the kernel as one GSO frame cut into `sendMss` pieces.
   */
  maxSegmentLen: number;
  /** Receive buffer (and so the largest window we advertise) per connection. */
  recvBufferMax: number;
  /** First allocation of the receive buffer; it doubles up to recvBufferMax. */
  recvBufferInitial: number;
  sendBufferMax: number;
  sendBufferInitial: number;
  /** RFC 6928 initial window, in segments. */
  initialCwndSegments: number;
  /** Upper bound on an unsent ACK when the owner does not call flush(). */
  delayedAckMs: number;
  rtoInitialMs: number;
  rtoMinMs: number;
  rtoMaxMs: number;
  /** Consecutive RTO expiries (or unanswered zero-window probes) before giving up. */
  maxRetransmits: number;
  /** SYN / SYN-ACK retransmissions before giving up. */
  maxSynRetransmits: number;
  timeWaitMs: number;
  /** FIN-WAIT-2 with no segment from the peer for this long: give up. */
  finWait2Ms: number;
  /** Disjoint out-of-order ranges kept; the bytes are bounded by the window. */
  oooMaxRanges: number;
  /** Offer/accept SACK-permitted and timestamps. */
  sack: boolean;
  timestamps: boolean;
}

export const tcpDefaults: Readonly<TcpConfig> = Object.freeze({
  mss: 1460,
  // 64 KiB IP packet - 20 IPv4 - 60 max TCP header, rounded down by the sender
  // to whole MSS pieces.
  maxSegmentLen: 65_535 - 20 - 60,
  // 4 MiB: enough for multi-Gbit/s at the sub-millisecond RTTs of a local
  // guest, and window scale 7 covers it.
  recvBufferMax: 4 * 1024 * 1024,
  // Small first allocations so 10,000 idle flows cost little: 2 KiB rings come
  // from Node's shared 8 KiB slabs (Buffer.allocUnsafe below 4 KiB), so a
  // flow's first bytes touch part of a shared page, not a page of each of its
  // own 16 and 64 KiB rings (bench/PROFILE.md §9: 9 KiB of malloc per idle
  // connection before). Doubling makes growth amortised O(1) per byte; a bulk
  // flow reaches 64 KiB after five doublings within its first 64 KiB.
  recvBufferInitial: 2 * 1024,
  sendBufferMax: 4 * 1024 * 1024,
  sendBufferInitial: 2 * 1024,
  initialCwndSegments: 10,
  delayedAckMs: 1,
  rtoInitialMs: 1_000,
  // Linux's floor rather than RFC 6298's 1 s: the peer is a local guest
  // with sub-millisecond RTT, so a 1 s floor would stall every tail loss for a
  // second. 200 ms still exceeds Linux's longest delayed ACK (TCP_DELACK_MAX),
  // so a delayed ACK never looks like a loss.
  rtoMinMs: 200,
  rtoMaxMs: 60_000,
  maxRetransmits: 15,
  maxSynRetransmits: 6,
  // 2 s instead of 2*MSL (60-240 s): TIME-WAIT protects a new incarnation of
  // the same 4-tuple from old duplicates, and on a local link no segment lives
  // longer than milliseconds; holding flow state for minutes only costs memory.
  timeWaitMs: 2_000,
  finWait2Ms: 60_000,
  oooMaxRanges: 32,
  sack: true,
  timestamps: true,
});
