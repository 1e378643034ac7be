/**
 * TCP NAT: terminates every TCP connection a guest opens with our own TCP
 * (TcpConnection) and asks the runtime to proxy its byte stream to a host
 * socket.
 *
 * How it works
 * - A guest SYN for an unknown 4-tuple is mapped (AddressMap): blocked
 *   destinations get a RST at once, except the gateway with host loopback
 *   off, which gets ICMP net unreachable (ICMPv6 no route), as slirp4netns
 *   answers it (the guest's connect fails with ENETUNREACH); otherwise a flow
 *   is created as a *pending open* and the runtime dials the host
 *   (`host.dial`).
 * - The pending open (as gVisor's tcp.Forwarder keeps its ForwarderRequest
 *   outside the endpoint): the flow holds the guest's SYN (`flow.syn`, a
 *   pooled PendingSyn: its ports, sequence number, window and options, and
 *   the IP header + 8 bytes an ICMP error quotes) and no TcpConnection yet.
 *   Only when the dial succeeds (`dialSucceeded`) is the connection created
 *   from the held SYN, in SYN-RECEIVED, and the guest gets its SYN-ACK.
 *   Refused -> RST|ACK; unreachable or timed out -> ICMP host unreachable
 *   (`dialFailed`). Meanwhile the NAT answers the guest itself: a repeated
 *   SYN is absorbed (counted in dupSynsWhileDialing; one with another
 *   sequence number also as the drop 'syn-while-dialing'), a RST at the
 *   SYN's sequence number + 1 closes the flow ('reset': the runtime cancels
 *   the connect), any other RST ('rst-out-of-window') or segment
 *   ('dialing') is dropped. These drops are the NAT's (stats drops), not the
 *   engine's.
 * - Segments for a known flow go to its connection; at the end of each input
 *   batch `flush` lets each touched connection send one ACK and whatever data
 *   the batch made room for. An ACK that may be delayed (under two segments
 *   of new data, the guest's FIN) is left to the delayed-ACK timer so the
 *   host's answer (reply data, our FIN) carries it.
 * - Output: every segment leaves with a virtio-net header and a partial
 *   checksum. Segments longer than the MSS are GSO frames (gso_size = the
 *   connection's sendMss): a vnet tap takes them as they are, and the bridge
 *   cuts them for plain taps.
 * - The flows live in a FlowTable (flow-table.ts), as UDP's and ICMP's do:
 *   ids (dense: the id freed last is reused first), the key index, the cap,
 *   the per-guest share, eviction, the deadlines and FlowEvents are the
 *   table's; a TcpFlow is a new object per connection (a closed one may
 *   still be held by the host side, which tests `closed`).
 * - Timers: the table's deadlines (one DeadlineQueue by id); each flow is
 *   queued at the earlier of its connection's pollAt and its idle deadline,
 *   or, while its open is pending, at its dial deadline. One poll handles
 *   at most TIMER_BATCH due flows and leaves the rest due (pollAt() <= now):
 *   the runtime reads its ports before it polls again. Thousands of flows
 *   whose timers run in step (zero-window probes of connections stalled
 *   together) would otherwise write thousands of segments in one go, and the
 *   guest's kernel answers each inside our write (an ACK, a RST) into its
 *   tap's queue (txqueuelen, 1000 by default) faster than we read it: the
 *   answers beyond the queue are lost, a lost RST only found by the next
 *   probe, up to rtoMax later.
 * - Limits (defaults in stack/limits.ts): at most `maxFlows` flows. The
 *   table's two classes are the handshake (guest-opened flows, open pending
 *   or SYN-RECEIVED: they have accepted no data, in the order they were
 *   opened) and the open flows (established, and inbound ones). When the
 *   table is full, a new SYN takes the place of the oldest flow still in its
 *   handshake, which is reset and counted ('tcp-handshake-evicted'), as
 *   Linux drops the oldest request of a full SYN queue: a SYN flood cannot
 *   hold the table with half-open flows. With none to evict, the SYN gets a
 *   RST and a count ('tcp-flow-table-full'). One guest address may hold at
 *   most guestShareOf(maxFlows) = maxFlows - floor(maxFlows / 8)
 *   guest-opened flows ('tcp-guest-share-full' beyond, with a RST): the last
 *   eighth stays for the other guests, so one guest's connection flood does
 *   not refuse every other guest's connections. (A guest that owns many
 *   addresses is not stopped by this; the share is per address.) An inbound
 *   open evicts nothing ('inbound-flow-table-full').
 *   Flows idle for `idleTimeoutMs` are reset; a dial that takes longer than
 *   `dialTimeoutMs` (set by the runtime) ends in ICMP host unreachable, from
 *   the same deadlines.
 * - A flow leaves the table when its connection closes (onClosed), or when
 *   its pending open ends without one; the runtime hears of it through
 *   `host.onClosed` and releases its socket (a pending flow has no rings to
 *   recycle: `flow.recycleBuffers()` knows).
 * - Both IP versions take this one path: addresses are handles
 *   (ip-addresses.ts), packets come as IpPacket, and only the header
 *   writing, the GSO type and the ICMP error differ. A flow holds a
 *   reference on each of its addresses until it closes. IPv6 flows use an
 *   MSS 20 bytes smaller (the longer header).
 * - Inbound (port forwards): `openInbound` actively opens a connection to a
 *   guest for a socket the runtime accepted. The guest sees it come from the
 *   gateway address N+2 (prefix::2 for an IPv6 guest) and a source port from INBOUND_PORT_FIRST..LAST,
 *   chosen so the 4-tuple is in no flow, guest-initiated or inbound. The
 *   flow lives in the same table and index as any other; the runtime hears
 *   `host.onEstablished` once the guest answers the SYN, and `onClosed`
 *   ('refused' for a RST, 'timeout' when SYNs go unanswered) otherwise.
 */
import { fold } from '../wire/checksum.js';
import { IP_PROTO_TCP } from '../wire/ipv4.js';
import { ICMP_DEST_UNREACHABLE, ICMP_UNREACH_NET } from '../wire/icmpv4.js';
import { ICMPV6_DEST_UNREACHABLE, ICMPV6_UNREACH_ADDRESS, ICMPV6_UNREACH_NO_ROUTE } from '../wire/icmpv6.js';
import { writeIcmpv6Error } from '../ip6/icmp-errors.js';
import {
  TCP_ACK,
  TCP_CHECKSUM_OFFSET,
  TCP_HEADER_LEN,
  TCP_RST,
  TCP_SYN,
  TcpOptions,
  TcpView,
  tcpOptionsLength,
  writeTcpHeader,
  type TcpHeaderFields,
} from '../wire/tcp.js';
import {
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_NONE,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
} from '../wire/vnet.js';
import { ETH_HEADER_LEN, ETHERTYPE_IPV4, ETHERTYPE_IPV6 } from '../wire/ethernet.js';
import { TcpConnection, type TcpCloseReason, type TcpEnv, type TcpSegmentOut, type TcpSynIn } from '../tcp/connection.js';
import type { TcpConfig } from '../tcp/config.js';
import { writeIcmpError } from '../ip4/icmp-errors.js';
import type { AddressMap } from './address-map.js';
import { endpointKey, type FlowIndex } from './flow-key.js';
import { FlowTable, NatFlow } from './flow-table.js';
import { guestShareOf } from '../limits.js';
import type { FlowEvents } from './flow-events.js';
import type { GuestOutput } from '../guest-output.js';
import { IPV6_HANDLE_BASE, type IpAddresses } from '../ip/ip-addresses.js';
import type { IpPacket } from '../ip/ip-packet.js';
import { seqAdd } from '../tcp/seq.js';
import { copyBytes } from '../tcp/byte-copy.js';
import { ErrnoCounts, newDropCounters, type DropAndErrnoCounts, type DropCounters, type DropCounts } from '../counters.js';
import type { DropReason } from '../drop-reasons.js';
import type { ByteRegion } from '../tcp/send-buffer.js';
import type { TcpStream } from './tcp-stream.js';

/** ICMP destination unreachable code for "host unreachable". */
const ICMP_UNREACH_HOST = 1;
/** Bytes of the guest's SYN kept for an ICMP error quote: IP header (with options or extension headers) + 8. */
const SYN_QUOTE_MAX = 256;
/** PendingSyn records kept for reuse. */
const PENDING_POOL_MAX = 256;
/**
 * The table's classes: guest-opened flows start in their handshake (open
 * pending or SYN-RECEIVED), in the order they were opened, and any of them
 * may be evicted for a new SYN, oldest first; established flows (and
 * inbound ones from the start) are never evicted. Neither class times out
 * in the table: a flow's idle and dial timeouts are deadlines of its own.
 */
const CLASS_HANDSHAKE = 0;
const CLASS_OPEN = 1;
const TCP_CLASSES = [
  { timeoutMs: Infinity, evictAfterMs: 0 },
  { timeoutMs: Infinity, evictAfterMs: Infinity },
] as const;
/** IPv6 header minus IPv4 header: what an IPv6 segment gives up of the MSS. */
const IPV6_EXTRA_HEADER = 20;
/** Due flows one poll handles at most (see "Timers" above): well below a tap's default queue of 1000, with room for the answers. */
export const TIMER_BATCH = 256;

/**
 * Source ports of inbound (port-forwarded) connections at N+2: the IANA
 * dynamic range, which guests rarely dial on the gateway; a port is used only
 * when its 4-tuple is free anyway.
 */
export const INBOUND_PORT_FIRST = 49_152;
export const INBOUND_PORT_LAST = 65_535;

export interface TcpNatOptions {
  addressMap: AddressMap;
  addrs: IpAddresses;
  tcp: TcpConfig;
  maxFlows: number;
  idleTimeoutMs: number;
}

/** What the runtime does for the TCP NAT: host sockets. The bytes go through the flow's TcpStream (tcp-stream.ts). */
export interface TcpHostEnv {
  /** Connect to flow.hostIp:flow.hostPort (a handle: TcpNat.addrs.format) or the DNS upstream when flow.toDns; then call dialSucceeded or dialFailed. */
  dial(flow: TcpFlow): void;
  /** The guest sent data (or its FIN became readable): move it to the host socket. */
  onReadable(flow: TcpFlow): void;
  /** Room opened in the guest-bound send buffer: resume reading the host socket. */
  onSendSpace(flow: TcpFlow): void;
  /** The connection is over; release the host socket ('normal': after writing what is still readable). */
  onClosed(flow: TcpFlow, reason: TcpCloseReason): void;
  /** An inbound connection (openInbound) completed its handshake with the guest: start proxying. */
  onEstablished?(flow: TcpFlow): void;
}

/**
 * The guest's SYN, held by a pending open until the dial ends: what
 * TcpConnection.fromSyn reads from it, and its quote for an ICMP error.
 */
export class PendingSyn implements TcpSynIn {
  srcPort = 0;
  dstPort = 0;
  seq = 0;
  window = 0;
  readonly options = new TcpOptions();
  /** The SYN's IP header (with options or extension headers) + 8 bytes of TCP, quoteLen of it. */
  readonly quote = Buffer.allocUnsafe(SYN_QUOTE_MAX);
  quoteLen = 0;

  /** Takes what the passive open needs from the parsed SYN `tcp` of packet `pkt`. */
  hold(pkt: IpPacket, tcp: TcpView): void {
    this.srcPort = tcp.srcPort;
    this.dstPort = tcp.dstPort;
    this.seq = tcp.seq;
    this.window = tcp.window;
    const o = this.options;
    const from = tcp.options;
    o.clear();
    o.mss = from.mss;
    o.windowScale = from.windowScale;
    o.sackPermitted = from.sackPermitted;
    o.tsPresent = from.tsPresent;
    o.tsVal = from.tsVal;
    o.tsEcr = from.tsEcr;
    this.quoteLen = Math.min(pkt.l4Off - pkt.ipOff + 8, pkt.ipLen, SYN_QUOTE_MAX);
    copyBytes(this.quote, 0, pkt.frame.buf, pkt.ipOff, this.quoteLen);
  }
}

export class TcpFlow extends NatFlow implements TcpEnv, TcpStream {
  guestIp = 0;
  guestPort = 0;
  /** The destination as the guest sees it (source of our segments). */
  remoteIp = 0;
  remotePort = 0;
  guestMac = 0;
  /** Where the runtime connects. */
  hostIp = 0;
  hostPort = 0;
  toDns = false;
  /** Opened towards the guest for a port forward (openInbound). */
  inbound = false;
  /**
   * The TCP engine's side of the flow. Unset while the open is pending
   * (`syn` non-null): the host side touches it only once its dial succeeded
   * (or, for an inbound flow, from the start).
   */
  conn!: TcpConnection;
  /** The runtime's per-flow state (its socket). */
  host: unknown = null;
  /** Non-null while the open is pending: the guest's SYN, held until the dial ends. */
  syn: PendingSyn | null = null;
  dirty = false;
  /** Its ACK is held back by flush(now, true). */
  held = false;
  closed = false;

  constructor(readonly nat: TcpNat) {
    super();
  }

  get tcpDrops(): DropCounters {
    return this.nat.engineDrops;
  }

  /** An open connection quiet since before `quietSince` gives its empty rings to the pool; a pending open has none. */
  releaseIdleMemory(quietSince: number): void {
    if (this.syn === null && this.conn.lastActivity < quietSince) this.conn.releaseMemory();
  }

  /** A closed flow's rings to the shared pool (TcpConnection.recycleBuffers); nothing for a pending open. */
  recycleBuffers(): void {
    if (this.syn === null) this.conn.recycleBuffers();
  }

  emit(seg: TcpSegmentOut): void {
    this.nat.emitSegment(this, seg);
  }
  onEstablished(): void {
    if (this.inbound) this.nat.host.onEstablished?.(this);
    else this.nat.handshakeDone(this);
  }
  onReadable(): void {
    this.nat.host.onReadable(this);
  }
  onSendSpace(): void {
    this.nat.host.onSendSpace(this);
  }
  onClosed(reason: TcpCloseReason): void {
    this.nat.flowClosed(this, reason);
  }

  // ---- TcpStream (tcp-stream.ts): what the host side sees of this flow ----

  readable(): number {
    return this.conn.recvAvailable();
  }
  peek(): ByteRegion {
    return this.conn.recvPeek();
  }
  consume(n: number, now: number): void {
    this.conn.recvConsume(n, now);
    this.nat.hostTookData(this);
  }
  get guestFinished(): boolean {
    return this.conn.peerFinished;
  }
  writable(): ByteRegion {
    return this.conn.sendWritable();
  }
  commit(n: number, now: number): void {
    this.conn.sendCommit(n, now);
  }
  pushed(now: number): void {
    this.nat.hostActivity(this, now);
  }
  end(now: number): void {
    if (this.closed) return;
    this.conn.shutdownSend(now);
    this.nat.hostActivity(this, now);
  }
  abort(now: number): void {
    this.nat.hostAborted(this, now);
  }
  release(): void {
    this.recycleBuffers();
  }
}

export interface TcpNatStats {
  active: number;
  created: number;
  closed: Record<TcpCloseReason, number>;
  refusedByPolicy: number;
  rstForUnknown: number;
  dialFailures: number;
  /** SYNs the guest repeated while their open was pending (absorbed). */
  dupSynsWhileDialing: number;
  idleResets: number;
  /** Payload bytes guest -> host and host -> guest, closed and live flows together. */
  bytesFromGuest: number;
  bytesToGuest: number;
  inboundOpened: number;
  drops: DropAndErrnoCounts;
  /** Segments the flows' TCP engines discarded (RFC 9293 checks), by reason. */
  engineDrops: DropCounts;
}

export class TcpNat {
  host!: TcpHostEnv;
  /**
   * How long a dial may take before the guest gets ICMP host unreachable
   * (dialFailed 'ETIMEDOUT'). The host side sets it: it knows its sockets. A
   * deadline in the shared queue, not a timer per dial.
   */
  dialTimeoutMs = Infinity;
  /** Ids, keys, caps, the guest share, eviction, deadlines and FlowEvents (flow-table.ts). */
  private readonly flows: FlowTable<TcpFlow>;
  /** The table's key index, for lookups on the per-segment path. */
  private readonly index: FlowIndex<TcpFlow>;
  private dirty: TcpFlow[] = [];
  private dirtyCount = 0;
  private readonly held: TcpFlow[] = [];
  private heldCount = 0;
  private readonly view = new TcpView();
  private readonly rst: TcpHeaderFields = { srcPort: 0, dstPort: 0, seq: 0, ack: 0, flags: 0, window: 0, urgent: 0 };
  private ipIdent = 1;
  private now = 0;
  private readonly closedBy: Record<TcpCloseReason, number> = { normal: 0, reset: 0, timeout: 0, refused: 0 };
  private refusedByPolicy = 0;
  private rstForUnknown = 0;
  private dialFailures = 0;
  private dupSynsWhileDialing = 0;
  private idleResets = 0;
  private inboundOpened = 0;
  private inboundPortNext = INBOUND_PORT_FIRST;
  private closedBytesFromGuest = 0;
  private closedBytesToGuest = 0;
  private readonly dropped = newDropCounters();
  /** Shared by the TCP engines of every flow (TcpEnv.tcpDrops). */
  readonly engineDrops = newDropCounters();
  /** Drops by reason so far (allocates: for stats and tests). */
  /** Failed dials by errno, among the drops as 'dial-etimedout' and the like. */
  private readonly dialErrors = new ErrnoCounts('dial-', (code) => String(code).toLowerCase());
  get drops(): DropAndErrnoCounts {
    return this.dialErrors.addTo(this.dropped.snapshot());
  }
  private readonly icmpScratch = Buffer.alloc(40 + 8 + SYN_QUOTE_MAX);
  /** Spare PendingSyn records. */
  private readonly pendingPool: PendingSyn[] = [];
  readonly addrs: IpAddresses;
  /** The TCP settings of IPv6 flows: the same with a smaller MSS. */
  private readonly tcp6: TcpConfig;

  constructor(
    private readonly opts: TcpNatOptions,
    private readonly out: GuestOutput,
  ) {
    this.addrs = opts.addrs;
    this.tcp6 = Object.freeze({ ...opts.tcp, mss: Math.max(536, opts.tcp.mss - IPV6_EXTRA_HEADER) });
    this.flows = new FlowTable<TcpFlow>({
      proto: 'tcp',
      maxFlows: opts.maxFlows,
      classes: TCP_CLASSES,
      // A new object per flow: a closed flow may still be held (see flow-table.ts, "Flow objects").
      make: () => new TcpFlow(this),
      reuse: false,
      idOrder: 'lifo',
      guestShare: guestShareOf(opts.maxFlows),
      evict: (f, now) => this.evictHandshake(f, now),
      deadlines: true,
    });
    this.index = this.flows.index;
  }

  /** Flow start and end reports (stack/nat/flow-events.ts); null: none. */
  get events(): FlowEvents | null {
    return this.flows.events;
  }
  set events(e: FlowEvents | null) {
    this.flows.events = e;
  }

  get flowCount(): number {
    return this.flows.size;
  }

  /** Every live flow (for shutdown and diagnostics; allocates). */
  liveFlows(): TcpFlow[] {
    return this.flows.liveFlows();
  }

  /** One guest segment (either IP version). Returns a drop reason or null. */
  handle(pkt: IpPacket, now: number): DropReason | null {
    this.now = now;
    const tcp = this.view;
    const bad = tcp.reset(pkt.frame.buf, pkt.l4Off, pkt.l4Len);
    if (bad !== null) return bad;
    if (pkt.toBroadcast) return 'tcp-to-broadcast';
    if (!pkt.l4ChecksumOk()) return 'tcp-bad-checksum';
    const badOpt = tcp.parseOptions();
    if (badOpt !== null) return badOpt;

    const keyA = endpointKey(pkt.src, tcp.srcPort);
    const keyB = endpointKey(pkt.dst, tcp.dstPort);
    const flow = this.index.get(keyA, keyB);
    if (flow !== null) {
      if (flow.syn !== null) {
        this.inputPending(flow, now);
        return null;
      }
      if (flow.conn.input(tcp, now) === 'reopen') {
        // A new SYN on a 4-tuple in TIME-WAIT: the old connection is gone; open anew.
        return this.open(pkt, keyA, keyB, now);
      }
      this.touch(flow);
      return null;
    }
    const flags = tcp.flags;
    if ((flags & TCP_RST) !== 0) return 'tcp-rst-no-flow';
    if ((flags & TCP_SYN) === 0 || (flags & TCP_ACK) !== 0) {
      // RFC 9293 3.10.7.1: a segment for no connection gets a RST.
      this.rstForUnknown++;
      this.sendRstFor(pkt, now);
      return null;
    }
    return this.open(pkt, keyA, keyB, now);
  }

  private open(pkt: IpPacket, keyA: number, keyB: number, now: number): DropReason | null {
    const tcp = this.view;
    const target = this.opts.addressMap.mapOutbound(pkt.dst, tcp.dstPort, IP_PROTO_TCP);
    if (target.kind === 'blocked') {
      this.refusedByPolicy++;
      this.bump(target.reason ?? 'blocked');
      if (target.reason === 'blocked-host-loopback') this.sendNetUnreachable(pkt, now);
      else this.sendRstFor(pkt, now);
      return null;
    }
    // Over the guest's share, or full with no handshake to evict (see "Limits" at the top).
    const flow = this.flows.allocate(CLASS_HANDSHAKE, keyA, keyB, now, pkt.src);
    if (flow === null) {
      this.sendRstFor(pkt, now);
      return this.flows.lastRefusal === 'flow-guest-share-full' ? 'tcp-guest-share-full' : 'tcp-flow-table-full';
    }
    const a = this.addrs;
    flow.guestIp = a.retain(pkt.src);
    flow.guestPort = tcp.srcPort;
    flow.remoteIp = a.retain(pkt.dst);
    flow.remotePort = tcp.dstPort;
    flow.guestMac = pkt.srcMac;
    flow.toDns = target.kind === 'dns';
    flow.hostIp = target.kind === 'dns' ? 0 : a.retain(target.ip);
    flow.hostPort = target.port;
    const syn = this.pendingPool.pop() ?? new PendingSyn();
    syn.hold(pkt, tcp);
    flow.syn = syn;
    this.flows.opened(flow, false, flow.guestIp, flow.guestPort, flow.remoteIp, flow.remotePort);
    this.host.dial(flow);
    this.schedule(flow);
    return null;
  }

  /**
   * Opens a connection to guestIp:guestPort (a handle; its MAC is guestMac)
   * from N+2 (prefix::2) for a host socket the runtime accepted; `host`
   * becomes flow.host.
   * The SYN leaves at once. Null when the table is full or no source port
   * is free (counted in drops).
   */
  openInbound(guestIp: number, guestPort: number, guestMac: number, host: unknown, now: number): TcpFlow | null {
    this.now = now;
    // An inbound open evicts nothing: the guest's handshakes keep their places.
    if (this.flows.size >= this.flows.maxFlows) {
      this.bump('inbound-flow-table-full');
      return null;
    }
    const gw = this.opts.addressMap.gatewayFor(guestIp);
    if (gw < 0) {
      this.bump('inbound-no-ipv6');
      return null;
    }
    const keyA = endpointKey(guestIp, guestPort);
    const port = this.pickInboundPort(keyA, gw);
    if (port < 0) {
      this.bump('inbound-no-port');
      return null;
    }
    // Not full and counted for no guest: this cannot be refused.
    const flow = this.flows.allocate(CLASS_OPEN, keyA, endpointKey(gw, port), now) as TcpFlow;
    flow.inbound = true;
    flow.guestIp = this.addrs.retain(guestIp);
    flow.guestPort = guestPort;
    flow.remoteIp = this.addrs.retain(gw);
    flow.remotePort = port;
    flow.guestMac = guestMac;
    flow.host = host;
    this.inboundOpened++;
    flow.conn = TcpConnection.connect(guestIp >= IPV6_HANDLE_BASE ? this.tcp6 : this.opts.tcp, flow, now, port, guestPort);
    this.flows.opened(flow, true, flow.guestIp, flow.guestPort, flow.remoteIp, flow.remotePort);
    this.schedule(flow);
    return flow;
  }

  /** Next source port at N+2 whose 4-tuple with the guest endpoint is in no flow; -1 if none. */
  private pickInboundPort(guestKey: number, gw: number): number {
    const span = INBOUND_PORT_LAST - INBOUND_PORT_FIRST + 1;
    for (let i = 0; i < span; i++) {
      const p = this.inboundPortNext;
      this.inboundPortNext = p === INBOUND_PORT_LAST ? INBOUND_PORT_FIRST : p + 1;
      if (this.index.get(guestKey, endpointKey(gw, p)) === null) return p;
    }
    return -1;
  }

  /** A segment from the guest while its open is pending (see "The pending open" at the top). */
  private inputPending(flow: TcpFlow, now: number): void {
    const tcp = this.view;
    const syn = flow.syn as PendingSyn;
    const f = tcp.flags;
    if ((f & TCP_RST) !== 0) {
      // The guest gave up on its SYN: the runtime cancels the dial (onClosed 'reset').
      if (tcp.seq === seqAdd(syn.seq, 1)) this.closePending(flow, 'reset', false, now);
      else this.bump('rst-out-of-window');
      return;
    }
    if ((f & TCP_SYN) !== 0 && (f & TCP_ACK) === 0) {
      // A retransmitted SYN while the host connect is in progress: the answer comes with the dial's end.
      this.dupSynsWhileDialing++;
      if (tcp.seq !== syn.seq) this.bump('syn-while-dialing');
      return;
    }
    this.bump('dialing');
  }

  /** The host connect for this flow succeeded: the connection starts from the held SYN and answers it. */
  dialSucceeded(flow: TcpFlow, now: number): void {
    const syn = flow.syn;
    if (flow.closed || syn === null) return;
    this.now = now;
    const cfg = flow.guestIp >= IPV6_HANDLE_BASE ? this.tcp6 : this.opts.tcp;
    flow.conn = TcpConnection.fromSyn(syn, cfg, flow, now);
    this.releaseSyn(flow);
    this.touch(flow);
  }

  /**
   * The host connect failed. ECONNREFUSED becomes a RST; anything else
   * (unreachable, timed out) an ICMP host unreachable, which Linux reports to
   * the guest application as EHOSTUNREACH at once.
   */
  dialFailed(flow: TcpFlow, code: string, now: number): void {
    if (flow.closed || flow.syn === null) return;
    this.now = now;
    this.dialFailures++;
    this.dialErrors.add(code);
    if (code === 'ECONNREFUSED') {
      this.closePending(flow, 'refused', true, now);
    } else {
      this.sendIcmpUnreachable(flow, ICMP_UNREACH_HOST, now);
      this.closePending(flow, 'reset', false, now);
    }
  }

  /** Ends a pending open: `rst` answers the held SYN with RST|ACK first. */
  private closePending(flow: TcpFlow, reason: TcpCloseReason, rst: boolean, now: number): void {
    if (rst) this.sendPendingRst(flow, now);
    this.flowClosed(flow, reason);
  }

  /**
   * The runtime moved guest data to the host socket (the receive window opened). An
   * urgent window update has left already; the ACK is the end-of-batch flush's to send.
   */
  hostTookData(flow: TcpFlow): void {
    this.touch(flow);
  }

  /** The host side reset or failed after connecting: reset the guest's side. */
  hostAborted(flow: TcpFlow, now: number): void {
    if (flow.closed) return;
    this.now = now;
    if (flow.syn !== null) {
      this.closePending(flow, 'reset', true, now);
      return;
    }
    flow.conn.abort(now);
    this.touch(flow);
  }

  /** Something changed on the host side of this flow (data read, data written, EOF). */
  hostActivity(flow: TcpFlow, now: number): void {
    if (flow.closed || flow.syn !== null) return;
    this.now = now;
    flow.conn.flush(now);
    this.schedule(flow);
  }

  /**
   * End of an input batch: one ACK (and the data it freed) per touched flow.
   *
   * `holdAcks`: an ACK that may be delayed (under two segments of new data, the guest's
   * FIN) is held back so that the host's answer, if it comes within microseconds, carries
   * it: a request/response then costs the guest one segment instead of two. The runtime
   * holds ACKs only when it is about to busy-poll (the answer is likely on its way and the
   * thread stays awake), and calls `flushHeldAcks` when the poll ends with nothing; the
   * next flush sends whatever is still held in any case, so an ACK for data waits at most
   * one round of the event loop. The ACK of the guest's FIN (CLOSE-WAIT) is left to its
   * delayed-ACK timer instead (`delayedAckMs`, as Linux does after a FIN): nothing on the
   * guest waits for it, and the host's close, which takes the server a wake-up, usually
   * comes first and our FIN carries it. Without busy polling ACKs leave at once: sleeping
   * until the answer and waking up cost more than the frame (transactions A/B,
   * bench/PROFILE.md).
   */
  flush(now: number, holdAcks = false): void {
    this.now = now;
    this.flushHeldAcks(now);
    for (let i = 0; i < this.dirtyCount; i++) {
      const flow = this.dirty[i];
      this.dirty[i] = null as unknown as TcpFlow;
      flow.dirty = false;
      if (flow.closed) continue;
      flow.conn.flush(now, holdAcks);
      if (holdAcks && !flow.held && flow.conn.ackDelayed && flow.conn.state !== 'CLOSE-WAIT') {
        flow.held = true;
        if (this.heldCount === this.held.length) this.held.push(flow);
        else this.held[this.heldCount] = flow;
        this.heldCount++;
      }
      this.schedule(flow);
    }
    this.dirtyCount = 0;
  }

  /** Sends the ACKs the last flush held back that no answer has carried yet. */
  flushHeldAcks(now: number): void {
    this.now = now;
    for (let i = 0; i < this.heldCount; i++) {
      const flow = this.held[i];
      this.held[i] = null as unknown as TcpFlow;
      flow.held = false;
      if (flow.closed) continue;
      flow.conn.flush(now);
      this.schedule(flow);
    }
    this.heldCount = 0;
  }

  pollAt(): number {
    return this.flows.pollAt();
  }

  poll(now: number): void {
    this.now = now;
    for (let n = 0; n < TIMER_BATCH; n++) {
      const flow = this.flows.popDue(now);
      if (flow === null) break;
      if (flow.closed) continue;
      if (flow.syn !== null) {
        if (now - flow.createdAt >= this.dialTimeoutMs) this.dialFailed(flow, 'ETIMEDOUT', now);
        else this.schedule(flow);
        continue;
      }
      if (now - flow.conn.lastActivity >= this.opts.idleTimeoutMs) {
        this.idleResets++;
        flow.conn.abort(now);
        continue;
      }
      flow.conn.poll(now);
      if (!flow.closed) this.schedule(flow);
    }
  }

  /** Resets every connection (shutdown). */
  abortAll(now: number): void {
    this.now = now;
    for (const flow of this.liveFlows()) {
      if (flow.closed) continue;
      if (flow.syn !== null) this.closePending(flow, 'reset', true, now);
      else flow.conn.abort(now);
    }
  }

  stats(): TcpNatStats {
    let fromGuest = this.closedBytesFromGuest;
    let toGuest = this.closedBytesToGuest;
    for (const f of this.flows.liveFlows()) {
      if (f.syn !== null) continue;
      fromGuest += f.conn.counters.bytesIn;
      toGuest += f.conn.counters.bytesOut;
    }
    return {
      active: this.flows.size,
      created: this.flows.created,
      closed: { ...this.closedBy },
      refusedByPolicy: this.refusedByPolicy,
      rstForUnknown: this.rstForUnknown,
      dialFailures: this.dialFailures,
      dupSynsWhileDialing: this.dupSynsWhileDialing,
      idleResets: this.idleResets,
      bytesFromGuest: fromGuest,
      bytesToGuest: toGuest,
      inboundOpened: this.inboundOpened,
      drops: this.dialErrors.addTo(this.dropped.snapshot()),
      engineDrops: this.engineDrops.snapshot(),
    };
  }

  /** Called by the flow's connection, exactly once. */
  flowClosed(flow: TcpFlow, reason: TcpCloseReason): void {
    if (flow.closed) return;
    flow.closed = true;
    this.closedBy[reason]++;
    // A pending open carried no bytes (and has no connection).
    const pending = flow.syn !== null;
    const bytesIn = pending ? 0 : flow.conn.counters.bytesIn;
    const bytesOut = pending ? 0 : flow.conn.counters.bytesOut;
    this.closedBytesFromGuest += bytesIn;
    this.closedBytesToGuest += bytesOut;
    // The table reports these to FlowEvents with the reason, then frees the id, key, share and deadline.
    flow.bytesOut = bytesIn;
    flow.bytesIn = bytesOut;
    this.flows.release(flow, reason);
    this.host.onClosed(flow, reason);
    // After the runtime heard of it (a pending flow is still recognisable as one by `syn`).
    this.releaseSyn(flow);
    // Also after the runtime heard of it: it may still format the addresses.
    this.addrs.release(flow.guestIp);
    this.addrs.release(flow.remoteIp);
    if (!flow.toDns && !flow.inbound) this.addrs.release(flow.hostIp);
  }

  /** Queues the flow for the end-of-batch flush (a pending open has nothing to flush). */
  private touch(flow: TcpFlow): void {
    if (flow.dirty || flow.closed || flow.syn !== null) return;
    flow.dirty = true;
    if (this.dirtyCount === this.dirty.length) this.dirty.push(flow);
    else this.dirty[this.dirtyCount] = flow;
    this.dirtyCount++;
  }

  private schedule(flow: TcpFlow): void {
    if (flow.closed) return;
    if (flow.syn !== null) {
      this.flows.schedule(flow, flow.createdAt + this.dialTimeoutMs);
      return;
    }
    const c = flow.conn;
    this.flows.schedule(flow, Math.min(c.pollAt(), c.lastActivity + this.opts.idleTimeoutMs));
  }

  /** Writes one segment of `flow` to its guest. */
  emitSegment(flow: TcpFlow, seg: TcpSegmentOut): void {
    const now = this.now;
    const tcpHeaderLen = TCP_HEADER_LEN + tcpOptionsLength(seg.options, seg.flags);
    const tcpLen = tcpHeaderLen + seg.len;
    const src = flow.remoteIp;
    const ipHeaderLen = this.addrs.headerLength(src);
    const ipLen = ipHeaderLen + tcpLen;
    const out = this.out;
    const ipOff = out.begin(flow.guestMac, ipLen, now, src >= IPV6_HANDLE_BASE ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4);
    const buf = out.arena;
    this.addrs.emitHeader(buf, ipOff, src, flow.guestIp, IP_PROTO_TCP, tcpLen, this.nextIdent(), true);
    const tcpOff = ipOff + ipHeaderLen;
    writeTcpHeader(buf, tcpOff, seg, seg.options);
    if (seg.len > 0) copyBytes(buf, tcpOff + tcpHeaderLen, seg.buf, seg.off, seg.len);
    // flow.conn is still unset while TcpConnection.connect emits an inbound flow's SYN (no payload).
    const gsoSize = seg.len > 0 && seg.len > flow.conn.sendMss ? flow.conn.sendMss : 0;
    this.finishTcp(buf, ipOff, src, flow.guestIp, tcpHeaderLen, tcpLen, gsoSize);
    out.send(ipLen, now);
  }

  /**
   * Fills in the virtio-net header for a TCP packet at ipOff: the checksum
   * field gets only the pseudo-header sum (NEEDS_CSUM), and a payload longer
   * than gsoSize makes it a TCPv4 or TCPv6 GSO frame.
   */
  private finishTcp(buf: Buffer, ipOff: number, src: number, dst: number, tcpHeaderLen: number, tcpLen: number, gsoSize: number): void {
    const ipHeaderLen = this.addrs.headerLength(src);
    const tcpOff = ipOff + ipHeaderLen;
    const partial = fold(this.addrs.pseudoSum(src, dst, IP_PROTO_TCP, tcpLen));
    buf[tcpOff + 16] = partial >>> 8;
    buf[tcpOff + 17] = partial & 0xff;
    const v = this.out.header();
    v.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    v.csumStart = ETH_HEADER_LEN + ipHeaderLen;
    v.csumOffset = TCP_CHECKSUM_OFFSET;
    v.hdrLen = ETH_HEADER_LEN + ipHeaderLen + tcpHeaderLen;
    if (gsoSize > 0) {
      v.gsoType = src >= IPV6_HANDLE_BASE ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4;
      v.gsoSize = gsoSize;
    } else {
      v.gsoType = VIRTIO_NET_HDR_GSO_NONE;
    }
  }

  /** RFC 9293 reset generation for a segment that has no connection (or is refused). */
  private sendRstFor(pkt: IpPacket, now: number): void {
    const tcp = this.view;
    const flags = tcp.flags;
    const r = this.rst;
    r.srcPort = tcp.dstPort;
    r.dstPort = tcp.srcPort;
    if ((flags & TCP_ACK) !== 0) {
      r.seq = tcp.ack;
      r.ack = 0;
      r.flags = TCP_RST;
    } else {
      let segLen = tcp.payloadLength;
      if ((flags & TCP_SYN) !== 0) segLen++;
      if ((flags & 0x01) !== 0) segLen++;
      r.seq = 0;
      r.ack = seqAdd(tcp.seq, segLen);
      r.flags = TCP_RST | TCP_ACK;
    }
    const tcpLen = TCP_HEADER_LEN;
    const ipHeaderLen = this.addrs.headerLength(pkt.src);
    const ipLen = ipHeaderLen + tcpLen;
    const out = this.out;
    const ipOff = out.begin(pkt.srcMac, ipLen, now, pkt.etherType);
    const buf = out.arena;
    this.addrs.emitHeader(buf, ipOff, pkt.dst, pkt.src, IP_PROTO_TCP, tcpLen, this.nextIdent(), true);
    writeTcpHeader(buf, ipOff + ipHeaderLen, r, null as TcpOptions | null);
    this.finishTcp(buf, ipOff, pkt.dst, pkt.src, TCP_HEADER_LEN, tcpLen, 0);
    out.send(ipLen, now);
  }

  /**
   * RST|ACK answering a pending open's SYN (a refused dial, an abort before
   * the dial ended): seq 0, acknowledging the SYN, no options, as RFC 9293
   * §3.10.7.1 answers a SYN no connection takes.
   */
  private sendPendingRst(flow: TcpFlow, now: number): void {
    const syn = flow.syn as PendingSyn;
    const r = this.rst;
    r.srcPort = flow.remotePort;
    r.dstPort = flow.guestPort;
    r.seq = 0;
    r.ack = seqAdd(syn.seq, 1);
    r.flags = TCP_RST | TCP_ACK;
    const src = flow.remoteIp;
    const tcpLen = TCP_HEADER_LEN;
    const ipHeaderLen = this.addrs.headerLength(src);
    const ipLen = ipHeaderLen + tcpLen;
    const out = this.out;
    const ipOff = out.begin(flow.guestMac, ipLen, now, src >= IPV6_HANDLE_BASE ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4);
    const buf = out.arena;
    this.addrs.emitHeader(buf, ipOff, src, flow.guestIp, IP_PROTO_TCP, tcpLen, this.nextIdent(), true);
    writeTcpHeader(buf, ipOff + ipHeaderLen, r, null as TcpOptions | null);
    this.finishTcp(buf, ipOff, src, flow.guestIp, TCP_HEADER_LEN, tcpLen, 0);
    out.send(ipLen, now);
  }

  private sendIcmpUnreachable(flow: TcpFlow, code: number, now: number): void {
    const syn = flow.syn;
    if (syn === null) return;
    const q = syn.quote;
    const s = this.icmpScratch;
    const v6 = flow.guestIp >= IPV6_HANDLE_BASE;
    let len: number;
    if (v6) {
      // Address unreachable: Linux reports it to the application as EHOSTUNREACH, like ICMP host unreachable.
      const a = this.addrs;
      len = writeIcmpv6Error(s, 0, s.length, ICMPV6_DEST_UNREACHABLE, ICMPV6_UNREACH_ADDRESS, a.bytes, a.offsetOf(this.opts.addressMap.gateway6), q, 0, syn.quoteLen);
    } else {
      len = writeIcmpError(s, 0, s.length, ICMP_DEST_UNREACHABLE, code, this.opts.addressMap.gateway, this.nextIdent(), q, 0, syn.quoteLen);
    }
    if (len === 0) return;
    const ipOff = this.out.begin(flow.guestMac, len, now, v6 ? ETHERTYPE_IPV6 : ETHERTYPE_IPV4);
    s.copy(this.out.arena, ipOff, 0, len);
    this.out.send(len, now);
  }

  /** ICMP net unreachable (ICMPv6 no route) about the guest's packet itself, from the gateway. */
  private sendNetUnreachable(pkt: IpPacket, now: number): void {
    const s = this.icmpScratch;
    const buf = pkt.frame.buf;
    let len: number;
    if (pkt.v6) {
      const a = this.addrs;
      len = writeIcmpv6Error(s, 0, s.length, ICMPV6_DEST_UNREACHABLE, ICMPV6_UNREACH_NO_ROUTE, a.bytes, a.offsetOf(this.opts.addressMap.gateway6), buf, pkt.ipOff, pkt.ipLen);
    } else {
      len = writeIcmpError(s, 0, s.length, ICMP_DEST_UNREACHABLE, ICMP_UNREACH_NET, this.opts.addressMap.gateway, this.nextIdent(), buf, pkt.ipOff, pkt.ipLen);
    }
    if (len === 0) return;
    const ipOff = this.out.begin(pkt.srcMac, len, now, pkt.etherType);
    s.copy(this.out.arena, ipOff, 0, len);
    this.out.send(len, now);
  }

  /** Ends the pending open: its PendingSyn goes back to the pool (bounded: a burst of dials leaves garbage, not a big pool). */
  private releaseSyn(flow: TcpFlow): void {
    const syn = flow.syn;
    if (syn === null) return;
    flow.syn = null;
    if (this.pendingPool.length < PENDING_POOL_MAX) this.pendingPool.push(syn);
  }

  private nextIdent(): number {
    this.ipIdent = (this.ipIdent + 1) & 0xffff;
    return this.ipIdent;
  }

  /** A guest-opened flow completed its handshake: it is no longer the SYN queue's to evict. */
  handshakeDone(flow: TcpFlow): void {
    this.flows.setClass(flow, CLASS_OPEN);
  }

  /**
   * The table is full and `f` is the oldest flow of the handshake class: reset
   * it to make room ('tcp-handshake-evicted'), unless it has left its
   * handshake without saying so (then it moves to the open class and the
   * table looks at the next one). True if it left the table.
   */
  private evictHandshake(f: TcpFlow, now: number): boolean {
    if (!inHandshake(f)) {
      this.flows.setClass(f, CLASS_OPEN);
      return false;
    }
    this.bump('tcp-handshake-evicted');
    if (f.syn !== null) this.closePending(f, 'reset', true, now);
    else f.conn.abort(now);
    return f.closed;
  }

  private bump(reason: DropReason): void {
    this.dropped.add(reason);
  }
}

/** A guest-opened flow not yet established: its open pending (the dial) or its SYN-ACK unanswered. */
function inHandshake(f: TcpFlow): boolean {
  return !f.closed && (f.syn !== null || f.conn.state === 'SYN-RECEIVED');
}
