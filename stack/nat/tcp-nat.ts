/**
 * TCP NAT: terminates every TCP connection a guest opens with our own TCP
 * (TcpConnection) and asks the runtime to proxy its byte stream to a host
 * socket.
 *
 * How it works
 * - A guest SYN for an unknown 4-tuple is mapped (AddressMap): blocked
 *   destinations get a RST at once, except the gateway with host loopback
 *   off, which gets ICMP net unreachable (ICMPv6 no route), as slirp4netns
 *   answers it (the guest's connect fails with ENETUNREACH); otherwise a flow is created in DIALING and
 *   the runtime dials the host (`host.dial`). Only when the dial succeeds does
 *   the guest get its SYN-ACK (`dialSucceeded`); refused -> RST, unreachable or
 *   timed out -> ICMP host unreachable (`dialFailed`). SYNs the guest repeats
 *   meanwhile hit the same flow and are absorbed by the connection.
 * - Segments for a known flow go to its connection; at the end of each input
 *   batch `flush` lets each touched connection send one ACK and whatever data
 *   the batch made room for. An ACK that may be delayed (under two segments
 *   of new data, the guest's FIN) is left to the delayed-ACK timer so the
 *   host's answer (reply data, our FIN) carries it.
 * - Output: every segment leaves with a virtio-net header and a partial
 *   checksum. Segments longer than the MSS are GSO frames (gso_size = the
 *   connection's sendMss): a vnet tap takes them as they are, and the bridge
 *   cuts them for plain taps.
 * - Timers: one DeadlineQueue for all flows; each flow is queued at the
 *   earlier of its connection's pollAt and its idle deadline.
 * - Limits: at most `maxFlows` flows. When the table is full, a new SYN
 *   takes the place of the oldest flow still in its handshake (DIALING or
 *   SYN-RECEIVED: it has accepted no data), which is reset and counted
 *   ('tcp-handshake-evicted'), as Linux drops the oldest request of a full
 *   SYN queue: a SYN flood cannot hold the table with half-open flows. With
 *   none to evict, the SYN gets a RST and a count ('tcp-flow-table-full').
 *   One guest address may hold at most maxFlows - floor(maxFlows / 8)
 *   guest-opened flows ('tcp-guest-share-full' beyond, with a RST): the last
 *   eighth stays for the other guests, so one guest's connection flood does
 *   not refuse every other guest's connections. (A guest that owns many
 *   addresses is not stopped by this; the share is per address.)
 *   flows idle for `idleTimeoutMs` are reset; a dial that takes longer than
 *   `dialTimeoutMs` (set by the runtime) ends in ICMP host unreachable, from
 *   the same deadline queue.
 * - A flow leaves the table when its connection closes (onClosed); the
 *   runtime hears of it through `host.onClosed` and releases its socket.
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
import { ICMPV6_DEST_UNREACHABLE, ICMPV6_UNREACH_ADDRESS, ICMPV6_UNREACH_NO_ROUTE, writeIcmpv6Error } from '../wire/icmpv6.js';
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
import { TcpConnection, type TcpCloseReason, type TcpEnv, type TcpSegmentOut } from '../tcp/connection.js';
import type { TcpConfig } from '../tcp/config.js';
import { writeIcmpError } from '../icmp-errors.js';
import type { AddressMap } from './address-map.js';
import { DeadlineQueue } from './deadline-queue.js';
import { endpointKey, FlowIndex, NatFlow } from './flow-key.js';
import type { FlowEvents } from './flow-events.js';
import type { GuestOutput } from './guest-output.js';
import { IPV6_HANDLE_BASE, type IpAddresses } from './ip-addresses.js';
import type { IpPacket } from './ip-packet.js';
import { seqAdd } from '../tcp/seq.js';
import { copyBytes } from '../tcp/byte-copy.js';
import { ErrnoCounts, newDropCounters, type DropAndErrnoCounts, type DropCounters, type DropCounts } from '../counters.js';
import type { DropReason } from '../drop-reasons.js';

/** ICMP destination unreachable code for "host unreachable". */
const ICMP_UNREACH_HOST = 1;
/** Bytes of the guest's SYN kept for an ICMP error quote: IP header (with options or extension headers) + 8. */
const SYN_QUOTE_MAX = 256;
/** SYN quote buffers kept for reuse. */
const QUOTE_POOL_MAX = 256;
/** IPv6 header minus IPv4 header: what an IPv6 segment gives up of the MSS. */
const IPV6_EXTRA_HEADER = 20;
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

/** What the runtime does for the TCP NAT: host sockets. */
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

export class TcpFlow extends NatFlow implements TcpEnv {
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
  conn!: TcpConnection;
  /** The runtime's per-flow state (its socket). */
  host: unknown = null;
  /** The guest's SYN (IP header + 8 bytes, synQuoteLen of it), kept until the dial ends, for an ICMP error. */
  synQuote: Buffer | null = null;
  synQuoteLen = 0;
  dirty = false;
  /** Its ACK is held back by flush(now, true). */
  held = false;
  /** Set while closing without telling the guest (after an ICMP error). */
  silent = false;
  closed = false;

  constructor(readonly nat: TcpNat) {
    super();
  }

  get tcpDrops(): DropCounters {
    return this.nat.engineDrops;
  }

  emit(seg: TcpSegmentOut): void {
    this.nat.emitSegment(this, seg);
  }
  onEstablished(): void {
    if (this.inbound) this.nat.host.onEstablished?.(this);
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
}

export interface TcpNatStats {
  active: number;
  created: number;
  closed: Record<TcpCloseReason, number>;
  refusedByPolicy: number;
  rstForUnknown: number;
  dialFailures: number;
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
  /** Flow start and end reports (stack/nat/flow-events.ts); null: none. */
  events: FlowEvents | null = null;
  /**
   * How long a dial may take before the guest gets ICMP host unreachable
   * (dialFailed 'ETIMEDOUT'). The host side sets it: it knows its sockets. A
   * deadline in the shared queue, not a timer per dial.
   */
  dialTimeoutMs = Infinity;
  private readonly index = new FlowIndex<TcpFlow>();
  private readonly flows: (TcpFlow | null)[] = [null];
  private readonly freeIds: number[] = [];
  private readonly deadlines = new DeadlineQueue();
  private dirty: TcpFlow[] = [];
  private dirtyCount = 0;
  private readonly held: TcpFlow[] = [];
  private heldCount = 0;
  private readonly view = new TcpView();
  private readonly rst: TcpHeaderFields = { srcPort: 0, dstPort: 0, seq: 0, ack: 0, flags: 0, window: 0, urgent: 0 };
  private ipIdent = 1;
  private now = 0;
  private active = 0;
  private created = 0;
  /** Guest-opened flows in the order they were opened; those past their handshake are skipped lazily (evictHandshake). */
  private readonly handshakes: TcpFlow[] = [];
  private handshakesHead = 0;
  /** Guest-opened flows per guest address (handle). */
  private readonly perGuest = new Map<number, number>();
  private readonly closedBy: Record<TcpCloseReason, number> = { normal: 0, reset: 0, timeout: 0, refused: 0 };
  private refusedByPolicy = 0;
  private rstForUnknown = 0;
  private dialFailures = 0;
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
  /** Spare SYN quote buffers (SYN_QUOTE_MAX bytes each). */
  private readonly quotePool: Buffer[] = [];
  readonly addrs: IpAddresses;
  /** The TCP settings of IPv6 flows: the same with a smaller MSS. */
  private readonly tcp6: TcpConfig;

  constructor(
    private readonly opts: TcpNatOptions,
    private readonly out: GuestOutput,
  ) {
    this.addrs = opts.addrs;
    this.tcp6 = Object.freeze({ ...opts.tcp, mss: Math.max(536, opts.tcp.mss - IPV6_EXTRA_HEADER) });
  }

  get flowCount(): number {
    return this.active;
  }

  /** Every live flow (for shutdown and diagnostics; allocates). */
  liveFlows(): TcpFlow[] {
    return this.flows.filter((f): f is TcpFlow => f !== null);
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
    const max = this.opts.maxFlows;
    if ((this.perGuest.get(pkt.src) ?? 0) >= max - Math.floor(max / 8)) {
      this.sendRstFor(pkt, now);
      return 'tcp-guest-share-full';
    }
    if (this.active >= max && !this.evictHandshake(now)) {
      this.sendRstFor(pkt, now);
      return 'tcp-flow-table-full';
    }
    const flow = new TcpFlow(this);
    flow.id = this.freeIds.length > 0 ? this.freeIds.pop()! : this.flows.length;
    this.flows[flow.id] = flow;
    flow.createdAt = now;
    flow.lastActivity = now;
    const a = this.addrs;
    flow.guestIp = a.retain(pkt.src);
    this.perGuest.set(flow.guestIp, (this.perGuest.get(flow.guestIp) ?? 0) + 1);
    flow.guestPort = tcp.srcPort;
    flow.remoteIp = a.retain(pkt.dst);
    flow.remotePort = tcp.dstPort;
    flow.guestMac = pkt.srcMac;
    flow.toDns = target.kind === 'dns';
    flow.hostIp = target.kind === 'dns' ? 0 : a.retain(target.ip);
    flow.hostPort = target.port;
    const quoteLen = Math.min(pkt.l4Off - pkt.ipOff + 8, pkt.ipLen, SYN_QUOTE_MAX);
    const quote = this.quotePool.pop() ?? Buffer.allocUnsafe(SYN_QUOTE_MAX);
    copyBytes(quote, 0, pkt.frame.buf, pkt.ipOff, quoteLen);
    flow.synQuote = quote;
    flow.synQuoteLen = quoteLen;
    this.index.add(flow, keyA, keyB);
    this.active++;
    this.created++;
    flow.conn = TcpConnection.fromSyn(tcp, pkt.v6 ? this.tcp6 : this.opts.tcp, flow, now);
    // After conn is set: the trim reads the queued flows' states.
    this.handshakes.push(flow);
    this.trimHandshakes();
    if (this.events !== null) this.events.opened('tcp', flow, false, flow.guestIp, flow.guestPort, flow.remoteIp, flow.remotePort);
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
    if (this.active >= this.opts.maxFlows) {
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
    const flow = new TcpFlow(this);
    flow.id = this.freeIds.length > 0 ? this.freeIds.pop()! : this.flows.length;
    this.flows[flow.id] = flow;
    flow.createdAt = now;
    flow.lastActivity = now;
    flow.inbound = true;
    flow.guestIp = this.addrs.retain(guestIp);
    flow.guestPort = guestPort;
    flow.remoteIp = this.addrs.retain(gw);
    flow.remotePort = port;
    flow.guestMac = guestMac;
    flow.host = host;
    this.index.add(flow, keyA, endpointKey(gw, port));
    this.active++;
    this.created++;
    this.inboundOpened++;
    flow.conn = TcpConnection.connect(guestIp >= IPV6_HANDLE_BASE ? this.tcp6 : this.opts.tcp, flow, now, port, guestPort);
    if (this.events !== null) this.events.opened('tcp', flow, true, flow.guestIp, flow.guestPort, flow.remoteIp, flow.remotePort);
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

  /** The host connect for this flow succeeded: answer the guest's SYN. */
  dialSucceeded(flow: TcpFlow, now: number): void {
    if (flow.closed) return;
    this.now = now;
    this.releaseQuote(flow);
    flow.conn.accept(now);
    this.touch(flow);
  }

  /**
   * The host connect failed. ECONNREFUSED becomes a RST; anything else
   * (unreachable, timed out) an ICMP host unreachable, which Linux reports to
   * the guest application as EHOSTUNREACH at once.
   */
  dialFailed(flow: TcpFlow, code: string, now: number): void {
    if (flow.closed) return;
    this.now = now;
    this.dialFailures++;
    this.dialErrors.add(code);
    if (code === 'ECONNREFUSED' || flow.synQuote === null) {
      flow.conn.refuse(now);
    } else {
      this.sendIcmpUnreachable(flow, ICMP_UNREACH_HOST, now);
      flow.silent = true;
      flow.conn.abort(now);
    }
    this.touch(flow);
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
    flow.conn.abort(now);
    this.touch(flow);
  }

  /** Something changed on the host side of this flow (data read, data written, EOF). */
  hostActivity(flow: TcpFlow, now: number): void {
    if (flow.closed) return;
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
    return this.deadlines.peekTime();
  }

  poll(now: number): void {
    this.now = now;
    for (let id = this.deadlines.popDue(now); id >= 0; id = this.deadlines.popDue(now)) {
      const flow = this.flows[id];
      if (flow === null || flow === undefined || flow.closed) continue;
      if (flow.conn.state === 'DIALING') {
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
    for (const flow of this.liveFlows()) if (!flow.closed) flow.conn.abort(now);
  }

  stats(): TcpNatStats {
    let fromGuest = this.closedBytesFromGuest;
    let toGuest = this.closedBytesToGuest;
    for (const f of this.flows) {
      if (f === null || f === undefined) continue;
      fromGuest += f.conn.counters.bytesIn;
      toGuest += f.conn.counters.bytesOut;
    }
    return {
      active: this.active,
      created: this.created,
      closed: { ...this.closedBy },
      refusedByPolicy: this.refusedByPolicy,
      rstForUnknown: this.rstForUnknown,
      dialFailures: this.dialFailures,
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
    this.closedBytesFromGuest += flow.conn.counters.bytesIn;
    this.closedBytesToGuest += flow.conn.counters.bytesOut;
    this.index.remove(flow);
    this.deadlines.cancel(flow.id);
    this.flows[flow.id] = null;
    this.freeIds.push(flow.id);
    this.active--;
    if (!flow.inbound) {
      const n = (this.perGuest.get(flow.guestIp) ?? 1) - 1;
      if (n === 0) this.perGuest.delete(flow.guestIp);
      else this.perGuest.set(flow.guestIp, n);
    }
    this.releaseQuote(flow);
    if (this.events !== null) this.events.closed('tcp', flow, reason, flow.conn.counters.bytesIn, flow.conn.counters.bytesOut);
    this.host.onClosed(flow, reason);
    // After the runtime heard of it: it may still format the addresses.
    this.addrs.release(flow.guestIp);
    this.addrs.release(flow.remoteIp);
    if (!flow.toDns && !flow.inbound) this.addrs.release(flow.hostIp);
  }

  private touch(flow: TcpFlow): void {
    if (flow.dirty || flow.closed) return;
    flow.dirty = true;
    if (this.dirtyCount === this.dirty.length) this.dirty.push(flow);
    else this.dirty[this.dirtyCount] = flow;
    this.dirtyCount++;
  }

  private schedule(flow: TcpFlow): void {
    if (flow.closed) return;
    const c = flow.conn;
    const idle = c.state === 'DIALING' ? flow.createdAt + this.dialTimeoutMs : c.lastActivity + this.opts.idleTimeoutMs;
    this.deadlines.schedule(flow.id, Math.min(c.pollAt(), idle));
  }

  /** Writes one segment of `flow` to its guest. */
  emitSegment(flow: TcpFlow, seg: TcpSegmentOut): void {
    if (flow.silent) return;
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

  private sendIcmpUnreachable(flow: TcpFlow, code: number, now: number): void {
    const q = flow.synQuote;
    if (q === null) return;
    const s = this.icmpScratch;
    const v6 = flow.guestIp >= IPV6_HANDLE_BASE;
    let len: number;
    if (v6) {
      // Address unreachable: Linux reports it to the application as EHOSTUNREACH, like ICMP host unreachable.
      const a = this.addrs;
      len = writeIcmpv6Error(s, 0, s.length, ICMPV6_DEST_UNREACHABLE, ICMPV6_UNREACH_ADDRESS, a.bytes, a.offsetOf(this.opts.addressMap.gateway6), q, 0, flow.synQuoteLen);
    } else {
      len = writeIcmpError(s, 0, s.length, ICMP_DEST_UNREACHABLE, code, this.opts.addressMap.gateway, this.nextIdent(), q, 0, flow.synQuoteLen);
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

  /** A flow's SYN quote goes back to the pool (bounded: a burst of dials leaves garbage, not a big pool). */
  private releaseQuote(flow: TcpFlow): void {
    const q = flow.synQuote;
    if (q === null) return;
    flow.synQuote = null;
    flow.synQuoteLen = 0;
    if (this.quotePool.length < QUOTE_POOL_MAX) this.quotePool.push(q);
  }

  private nextIdent(): number {
    this.ipIdent = (this.ipIdent + 1) & 0xffff;
    return this.ipIdent;
  }

  /**
   * Resets the oldest guest-opened flow still in its handshake, to make room
   * in a full table; false when there is none. The queue holds each flow
   * once, from open(); it is trimmed as it is walked and compacted when
   * mostly dead (trimHandshakes).
   */
  private evictHandshake(now: number): boolean {
    const q = this.handshakes;
    let evicted = false;
    while (this.handshakesHead < q.length) {
      const f = q[this.handshakesHead++];
      if (f.closed) continue;
      const st = f.conn.state;
      if (st !== 'DIALING' && st !== 'SYN-RECEIVED') continue;
      this.bump('tcp-handshake-evicted');
      f.conn.abort(now);
      evicted = f.closed;
      break;
    }
    if (this.handshakesHead === q.length) {
      q.length = 0;
      this.handshakesHead = 0;
    }
    return evicted;
  }

  /**
   * Keeps the handshake queue short when no eviction walks it (a table that
   * never fills): past twice the live flows it keeps only the flows still in
   * their handshake, so closed flows are not held (amortised O(1): each trim
   * halves it at least).
   */
  private trimHandshakes(): void {
    const q = this.handshakes;
    if (q.length <= 2 * this.active + 64) return;
    let n = 0;
    for (let i = this.handshakesHead; i < q.length; i++) {
      const f = q[i];
      if (!f.closed && (f.conn.state === 'DIALING' || f.conn.state === 'SYN-RECEIVED')) q[n++] = f;
    }
    q.length = n;
    this.handshakesHead = 0;
  }

  private bump(reason: DropReason): void {
    this.dropped.add(reason);
  }
}
