/**
 * The host side of the UDP NAT: one connected datagram socket per guest flow
 * (connected, so the kernel reports ICMP port unreachable as ECONNREFUSED and
 * only the flow's peer can answer), and one socket per address family for
 * the DNS forwarder's upstream queries.
 *
 * How it works
 * - Flow sockets live in native UdpSockets (native/udp_sockets.cc), not in
 *   Node's dgram: one epoll set, read with recvmmsg into a receive area
 *   allocated once (UDP_BATCH_MAX slots of 64 KiB, since UDP_GRO may hand a
 *   coalesced burst of up to 64 KiB as one message), one JS call per batch of
 *   messages whatever the number of flows. Each message goes to the guest
 *   as one datagram, or as one USO frame when it holds a burst; where guests
 *   take USO, single datagrams of one flow and one size that arrived one
 *   after another are put together into one USO frame too (GRO in software:
 *   one tap write for up to GSO_MAX_SEGMENTS datagrams, at the cost of one
 *   copy of each, straight from the receive slots into the frame the stack
 *   builds: UdpNat.hostBurstStart; a staging copy only where that frame
 *   cannot be built).
 * - Guest datagrams are gathered in a UdpSendBatch (copied into a registered
 *   tx area, runs of equal-size datagrams to one socket joined into one
 *   UDP_SEGMENT message) and leave in one native sendmmsg call per batch at
 *   `drain`, which the runtime calls at the end of every batch (as TcpProxy's).
 * - Flows are found by a token (slot | generation << 16) that the native
 *   side hands back with every message, so a closed flow's late messages are
 *   recognised and dropped. Nothing is allocated per datagram.
 * - A socket that cannot be opened, or a message the kernel refuses, is a
 *   drop counted by reason and errno (UDP's loss); the flow lives on.
 * - The native sockets and their areas are made with the first flow: a
 *   usernet that never proxies UDP does not pay for them.
 *
 * Port forwards register their bound socket with `addForwardSocket`; guest
 * replies on inbound flows leave through it to the client (`sendToClient`).
 */
import { createSocket, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { UdpHostEnv, UdpNat } from '../../stack/nat/udp-nat.js';
import type { UdpFlow } from '../../stack/nat/udp-flows.js';
import { isIpv6Handle } from '../../stack/ip/ip-addresses.js';
import type { Logger } from '../log.js';
import { ErrnoCounts, newDropCounters, type DropAndErrnoCounts } from '../../stack/counters.js';
import type { DropReason } from '../../stack/drop-reasons.js';
import { native } from '../native/addon.js';
import { UDP_BATCH_MAX, UDP_ERROR_FLAG, type UdpSockets } from '../native/types.js';
import { GSO_MAX_BYTES, mergeableRun, UdpSendBatch } from './udp-send-batch.js';
import { copyBytes } from '../../stack/tcp/byte-copy.js';
import { errnoName } from './errno.js';
import { NativeError } from '../errors.js';
import { isFdShortage, noteFdShortage } from '../fd-shortage.js';

/** A receive slot holds the largest message UDP_GRO can build (64 KiB of payload). */
const RX_SLOT = 65_536;
const SLOT_BITS = 16;
const SLOT_MASK = (1 << SLOT_BITS) - 1;
const GEN_MASK = 0x7fff;
const ECONNREFUSED = 111;

interface FlowSocket {
  fd: number;
  token: number;
  flow: UdpFlow;
  generation: number;
}

export interface UdpProxyStats {
  /** Datagrams and native send calls guest → host, and messages (a run joined by UDP_SEGMENT is one). */
  datagramsOut: number;
  messagesOut: number;
  sendCalls: number;
  /** Messages host → guest, the datagrams they held (more with UDP_GRO), and native receive batches. */
  messagesIn: number;
  datagramsIn: number;
  receiveBatches: number;
  /** Single datagrams put together into USO frames (consecutive, one flow, one size). */
  merged: number;
  /** Sockets that took UDP_GRO; errno name once the kernel refused UDP_SEGMENT (null while it takes it). */
  groSockets: number;
  gsoRefused: string | null;
}

export class UdpProxy implements UdpHostEnv {
  private io: UdpSockets | null = null;
  private rx: Buffer | null = null;
  /** Where single datagrams of one flow are put together into one burst for a USO frame. */
  private gather: Buffer | null = null;
  private readonly meta = new Uint32Array(4 * UDP_BATCH_MAX);
  private batch: UdpSendBatch | null = null;
  private readonly slots: (FlowSocket | null)[] = [];
  private readonly gens: number[] = [];
  private readonly freeSlots: number[] = [];
  /** Flow id -> its socket. */
  private readonly byFlow: (FlowSocket | null)[] = [];
  private socketCount = 0;
  private framesSent = 0;
  private dns4: Socket | null = null;
  private dns6: Socket | null = null;
  private readonly forwardSockets = new Map<number, Socket>();
  private readonly dropped = newDropCounters();
  /** Host socket errors by errno, among the drops as 'udp-EMSGSIZE' and the like. */
  private readonly socketErrors = new ErrnoCounts('udp-');
  private readonly counts: UdpProxyStats = {
    datagramsOut: 0, messagesOut: 0, sendCalls: 0, messagesIn: 0, datagramsIn: 0, receiveBatches: 0, merged: 0, groSockets: 0, gsoRefused: null,
  };
  /** Drops by reason so far (allocates: for stats and tests). */
  get drops(): DropAndErrnoCounts {
    return this.socketErrors.addTo(this.dropped.snapshot());
  }

  constructor(
    private readonly nat: UdpNat,
    private readonly upstreams: { ip: string; port: number }[],
    private readonly clock: () => number,
    private readonly flushPorts: (now: number) => void,
    private readonly outboundAddress: string | null,
    private readonly log: Logger,
    private readonly outboundAddress6: string | null = null,
  ) {}

  get openSockets(): number {
    return this.socketCount + (this.dns4 ? 1 : 0) + (this.dns6 ? 1 : 0);
  }

  /** Batching counters (allocates: for stats and tests). */
  stats(): UdpProxyStats {
    const io = this.io;
    if (io !== null) {
      this.counts.groSockets = io.groSockets;
      this.counts.gsoRefused = io.gsoOff === 0 ? null : errnoName(-io.gsoOff);
    }
    return { ...this.counts };
  }

  /**
   * The flows' epoll set, made at the first flow (an idle usernet does not pay for the
   * receive area); null when it cannot be made now (no descriptor left: EMFILE), counted
   * like a socket that cannot be opened, and tried again at the next flow.
   */
  private sockets(): UdpSockets | null {
    if (this.io !== null) return this.io;
    const rx = new ArrayBuffer(RX_SLOT * UDP_BATCH_MAX);
    const batch = new UdpSendBatch();
    let io: UdpSockets;
    try {
      io = native.createUdpSockets({
        rx,
        slotSize: RX_SLOT,
        meta: this.meta,
        tx: batch.tx.buffer as ArrayBuffer,
        onBatch: (n) => this.onBatch(n),
      });
    } catch (err) {
      const code = (err as { code?: string }).code ?? 'error';
      if (!(err instanceof NativeError)) throw err;
      this.log.debug(`udp: epoll set: ${code}`);
      if (isFdShortage(code)) noteFdShortage(this.log, 'udp', this.clock());
      this.socketErrors.add(code);
      return null;
    }
    this.rx = Buffer.from(rx);
    this.gather = Buffer.alloc(GSO_MAX_BYTES);
    this.batch = batch;
    this.io = io;
    io.start();
    return io;
  }

  open(flow: UdpFlow): void {
    this.close(flow);
    const io = this.sockets();
    if (io === null) return this.bump('udp-open-failed');
    const six = isIpv6Handle(flow.hostIp);
    const host = this.nat.output.addrs.format(flow.hostIp);
    const local = six ? this.outboundAddress6 : this.outboundAddress;
    const bindTo = local !== null && !host.startsWith('127.') && host !== '::1' ? local : null;
    let slot = this.freeSlots.pop();
    if (slot === undefined) {
      slot = this.slots.length;
      if (slot > SLOT_MASK) return this.bump('udp-open-failed');
      this.slots.push(null);
      this.gens.push(0);
    }
    const token = (this.gens[slot] << SLOT_BITS) | slot;
    const fd = io.open(token, six ? 6 : 4, host, flow.hostPort, bindTo);
    if (fd < 0) {
      this.freeSlots.push(slot);
      this.log.debug(`udp ${host}:${flow.hostPort}: ${errnoName(fd)}`);
      if (isFdShortage(errnoName(fd))) noteFdShortage(this.log, 'udp', this.clock());
      this.socketErrors.add(errnoName(fd));
      return this.bump('udp-open-failed');
    }
    const fs: FlowSocket = { fd, token, flow, generation: flow.generation };
    this.slots[slot] = fs;
    this.byFlow[flow.id] = fs;
    this.socketCount++;
  }

  /**
   * Guest frames handed to flow sockets since the last call (a USO frame counts once),
   * for the runtime's busy-poll choice: a batch of nothing else is no request awaiting
   * an answer the spin could catch (the spin does not watch UDP sockets), and a guest
   * streaming datagrams only gets smaller batches from it, at a CPU's cost.
   */
  takeFramesSent(): number {
    const n = this.framesSent;
    this.framesSent = 0;
    return n;
  }

  send(flow: UdpFlow, buf: Buffer, off: number, len: number, gsoSize = 0): void {
    this.framesSent++;
    const fs = this.byFlow[flow.id];
    if (fs === null || fs === undefined || fs.generation !== flow.generation) return this.bump('udp-no-socket');
    const batch = this.batch as UdpSendBatch;
    if (!batch.add(fs.fd, buf, off, len, gsoSize)) {
      this.drain(0);
      if (!batch.add(fs.fd, buf, off, len, gsoSize)) this.bump('udp-too-big');
    }
  }

  /** Sends what the batch gathered: one native call (sendmmsg per socket run). */
  drain(_now: number): void {
    const batch = this.batch;
    if (batch === null || batch.count === 0) return;
    const io = this.io as UdpSockets;
    const count = batch.count;
    const sent = io.send(batch.desc, count);
    const c = this.counts;
    c.sendCalls++;
    c.messagesOut += count;
    c.datagramsOut += batch.datagrams;
    if (sent < count) {
      const err = io.lastError;
      for (let i = sent; i < count; i++) this.bump('udp-send-failed');
      if (err !== 0) this.socketErrors.add(errnoName(-err));
    }
    batch.clear();
  }

  private onBatch(n: number): void {
    const now = this.clock();
    const m = this.meta;
    const rx = this.rx as Buffer;
    const c = this.counts;
    const uso = this.nat.output.uso;
    c.receiveBatches++;
    let i = 0;
    while (i < n) {
      const token = m[4 * i];
      const fs = this.slots[token & SLOT_MASK];
      const len = m[4 * i + 2];
      const seg = m[4 * i + 3];
      if (fs === null || fs === undefined || fs.token !== token || !fs.flow.active || fs.flow.generation !== fs.generation) {
        i++;
        continue;
      }
      const flow = fs.flow;
      if ((seg & UDP_ERROR_FLAG) !== 0) {
        const errno = seg & ~UDP_ERROR_FLAG;
        if (errno === ECONNREFUSED) this.nat.hostRefused(flow, now);
        else this.socketErrors.add(errnoName(-errno));
        i++;
        continue;
      }
      // Software GRO: single datagrams of one flow, of one size (the last may be
      // shorter), that came in one after another leave as one USO frame.
      const run = uso ? mergeableRun(m, i, n) : 1;
      if (run > 1) {
        let total = 0;
        for (let k = i; k < i + run; k++) total += m[4 * k + 2];
        c.messagesIn += run;
        c.datagramsIn += run;
        c.merged += run;
        // Straight from the receive slots into the guest frame where it can be built in place.
        let out = this.nat.hostBurstStart(flow, total, len, now);
        if (out >= 0) {
          const arena = this.nat.output.out.arena;
          for (let k = i; k < i + run; k++) {
            const l = m[4 * k + 2];
            copyBytes(arena, out, rx, m[4 * k + 1], l);
            out += l;
          }
          this.nat.hostBurstEnd(now);
          i += run;
          continue;
        }
        const g = this.gather as Buffer;
        let at = 0;
        for (let k = i; k < i + run; k++) {
          const l = m[4 * k + 2];
          copyBytes(g, at, rx, m[4 * k + 1], l);
          at += l;
        }
        this.nat.fromHost(flow, g, 0, at, now, len);
        i += run;
        continue;
      }
      c.messagesIn++;
      c.datagramsIn += seg > 0 && seg < len ? Math.ceil(len / seg) : 1;
      this.nat.fromHost(flow, rx, m[4 * i + 1], len, now, seg);
      i++;
    }
    this.flushPorts(now);
  }

  addForwardSocket(forwardId: number, socket: Socket): void {
    this.forwardSockets.set(forwardId, socket);
  }

  removeForwardSocket(forwardId: number): void {
    this.forwardSockets.delete(forwardId);
  }

  sendToClient(forwardId: number, clientIp: number, clientPort: number, buf: Buffer, off: number, len: number): void {
    const socket = this.forwardSockets.get(forwardId);
    if (socket === undefined) return this.bump('udp-forward-gone');
    const copy = Buffer.allocUnsafe(len);
    buf.copy(copy, 0, off, off + len);
    socket.send(copy, clientPort, this.nat.output.addrs.format(clientIp));
  }

  close(flow: UdpFlow): void {
    const fs = this.byFlow[flow.id];
    if (fs === null || fs === undefined) return;
    // Datagrams still gathered for this socket leave before it closes.
    this.drain(0);
    this.byFlow[flow.id] = null;
    const slot = fs.token & SLOT_MASK;
    this.slots[slot] = null;
    this.gens[slot] = (this.gens[slot] + 1) & GEN_MASK;
    this.freeSlots.push(slot);
    this.socketCount--;
    this.io?.closeSocket(fs.fd);
  }

  sendDns(upstreamIndex: number, buf: Buffer, off: number, len: number): void {
    const up = this.upstreams[upstreamIndex];
    if (up === undefined) return;
    const six = isIPv6(up.ip);
    const socket = six ? (this.dns6 ??= this.dnsSocket('udp6')) : (this.dns4 ??= this.dnsSocket('udp4'));
    const copy = Buffer.allocUnsafe(len);
    buf.copy(copy, 0, off, off + len);
    socket.send(copy, up.port, up.ip);
  }

  private dnsSocket(type: 'udp4' | 'udp6'): Socket {
    const socket = createSocket({ type });
    socket.on('message', (msg, rinfo) => {
      const i = this.upstreams.findIndex((u) => u.port === rinfo.port && sameAddress(u.ip, rinfo.address));
      if (i < 0) return this.bump('dns-unknown-upstream');
      const now = this.clock();
      this.nat.dnsResponse(i, msg, 0, msg.length, now);
      this.flushPorts(now);
    });
    // An unreachable upstream shows up here (ECONNREFUSED is not reported on unconnected sockets); the forwarder's timeout fails over.
    socket.on('error', (err: NodeJS.ErrnoException) => {
      this.log.debug(`dns upstream socket: ${err.message}`);
      if (isFdShortage(err.code)) noteFdShortage(this.log, 'dns', this.clock());
    });
    return socket;
  }

  closeAll(): void {
    this.drain(0);
    for (const fs of this.slots) if (fs !== null) this.io?.closeSocket(fs.fd);
    this.slots.length = 0;
    this.gens.length = 0;
    this.freeSlots.length = 0;
    this.byFlow.length = 0;
    this.socketCount = 0;
    this.io?.close();
    this.io = null;
    this.dns4?.close();
    this.dns6?.close();
    this.dns4 = this.dns6 = null;
  }

  private bump(reason: DropReason): void {
    this.dropped.add(reason);
  }
}

function sameAddress(a: string, b: string): boolean {
  return a === b || a === b.replace(/^::ffff:/, '');
}
