/**
 * The host side of the TCP NAT: one host socket per guest connection, in
 * native code (native/tcp_sockets.cc), not Node's net.Socket.
 *
 * How it works
 * - Every host TCP socket (dialed, accepted by a port forward, and the
 *   forwards' listeners) sits in one edge-triggered epoll set, registered
 *   once with a token: a slot in `slots` plus a generation, so an event for a
 *   socket closed earlier in the same batch never reaches its slot's next
 *   owner. A wake-up hands over every ready socket in one call (onEvents);
 *   the frames the batch produced are written once at its end.
 * - dial: a non-blocking connect to the flow's host address (127.0.0.1 for
 *   the gateway, the address itself otherwise, a DNS upstream for N+3:53).
 *   At the end of the batch that dialed (drain) we ask whether the connect is
 *   done already, which it usually is on loopback, so the guest's SYN-ACK
 *   leaves in that batch instead of a loop turn later; otherwise the socket's
 *   first event settles it. The guest's SYN is answered only once the
 *   connect succeeded.
 * - host -> guest: reads go straight into the connection's send buffer (the
 *   ring the segments are cut from), until EAGAIN, EOF, or the ring is full;
 *   a full ring marks the socket `readBlocked` and onSendSpace queues a read
 *   for the end of the batch.
 * - guest -> host: in-order bytes are written from the receive ring (no
 *   copy) and consumed as the kernel takes them; EAGAIN marks the socket
 *   `writeBlocked` until its next EPOLLOUT. Meanwhile the ring fills and the
 *   window we advertise closes: buffering is bounded, nothing is dropped.
 *   One write per flow per batch (drain).
 * - Half-close both ways: the guest's FIN becomes shutdown(SHUT_WR) once its
 *   data is written; the host's EOF becomes our FIN after the queued data.
 * - A connection that ended normally while the host still owes us its EOF
 *   keeps the socket (what the guest sent last is written from a copy) until
 *   the EOF comes or `lingerMs` pass.
 * - Port forwards: `listen` opens a listener; accepted sockets are registered
 *   but not read until the guest completes the handshake (onEstablished).
 * - Closing a socket is synchronous, so a closed flow's rings go back to the
 *   pool at once: nothing can read into them any more.
 */
import { getSystemErrorMap, getSystemErrorName } from 'node:util';
import type { TcpCloseReason } from '../../stack/tcp/connection.js';
import type { TcpFlow, TcpHostEnv, TcpNat } from '../../stack/nat/tcp-nat.js';
import type { TcpSockets } from '../native/types.js';
import { TCP_EVENTS_MAX } from '../native/types.js';
import { native } from '../native/addon.js';
import { NativeError, UsernetError } from '../errors.js';
import type { Logger } from '../log.js';
import { isFdShortage, noteFdShortage } from '../fd-shortage.js';

export interface TcpProxyOptions {
  dialTimeoutMs: number;
  /** Where TCP to N+3:53 goes: the DNS upstreams, tried in order. */
  dnsUpstreams: { ip: string; port: number }[];
  /** Local address for outbound sockets (slirp4netns --outbound-addr), or null. */
  outboundAddress: string | null;
  /** The same for connections to IPv6 destinations (slirp4netns --outbound-addr6). */
  outboundAddress6?: string | null;
  /** How long a socket whose guest connection ended waits for the host's EOF (default 10 s). */
  lingerMs?: number;
}

const EAGAIN = -11;

/** Whether this system's epoll announces a TCP peer's FIN as EPOLLRDHUP: probed once per process. */
let rdhupProbe: boolean | null = null;
function finComesAsRdhup(log: Logger): boolean {
  if (rdhupProbe === null) {
    rdhupProbe = native.tcpReportsRdhup();
    if (!rdhupProbe) log.info('host TCP sockets: epoll reports no EPOLLRDHUP here (gVisor before 2023-07): reading on to EAGAIN after short reads');
  }
  return rdhupProbe;
}
const EINPROGRESS = -115;
const EPOLLIN = 0x1;
const EPOLLOUT = 0x4;
const EPOLLERR = 0x8;
const EPOLLHUP = 0x10;
const EPOLLRDHUP = 0x2000;
/** Tokens stay below 2^30 (small integers for V8): 20 bits of slot, 10 of generation. */
const SLOT_BITS = 20;
const SLOT_MASK = (1 << SLOT_BITS) - 1;
const GEN_MASK = (1 << 10) - 1;
const LISTEN_BACKLOG = 511;

/** One host connection (dialed or accepted). */
interface HostConn {
  kind: 'conn';
  token: number;
  fd: number;
  /** Null for an accepted socket until the NAT has a flow for it. */
  flow: TcpFlow | null;
  /** connect() in progress. */
  connecting: boolean;
  /** The connect failed at once: -errno, reported at the end of the batch. */
  dialError: number;
  connected: boolean;
  /** We shut down our sending side. */
  ended: boolean;
  /** The host sent EOF. */
  hostEof: boolean;
  /** Reading stopped because the send ring was full. */
  readBlocked: boolean;
  /** A write hit EAGAIN: wait for EPOLLOUT. */
  writeBlocked: boolean;
  /**
   * An event reported the peer's shutdown or an error (RDHUP, HUP, ERR): read
   * on to the EOF or the error even after a short read, since no new edge
   * will announce them.
   */
  peerShut: boolean;
  /**
   * An event reported the peer's FIN without an error (RDHUP or HUP, no ERR):
   * nothing can follow the bytes already queued, so a short read means the
   * queue is empty and at its end, and the read that would return 0 is spared.
   */
  peerFin: boolean;
  /** Accepted socket: no reading before the guest completes its handshake. */
  paused: boolean;
  /** Queued for the end-of-batch drain. */
  queued: boolean;
  wantRead: boolean;
  dnsAttempt: number;
  /** What the guest sent before a normal close, still to write (a copy: the flow's rings are gone). */
  tail: Buffer | null;
  lingerTimer: NodeJS.Timeout | null;
}

/** A port forward's listening socket. */
interface HostListener {
  kind: 'listener';
  token: number;
  fd: number;
  onAccept: (accepted: AcceptedSocket) => void;
}

/** An accepted connection waiting for its flow (PortForwards -> TcpProxy.attach / reject). */
export type AcceptedSocket = HostConn;

type Entry = HostConn | HostListener;

const errorMap = getSystemErrorMap();

/** 'ECONNREFUSED' for -111. */
export function errnoName(negErrno: number): string {
  try {
    return getSystemErrorName(negErrno);
  } catch {
    return `E${-negErrno}`;
  }
}

/** "connection refused (ECONNREFUSED)". */
export function errnoText(negErrno: number): string {
  const e = errorMap.get(negErrno);
  return e === undefined ? errnoName(negErrno) : `${e[1]} (${e[0]})`;
}

export class TcpProxy implements TcpHostEnv {
  /** Open host TCP connections (listeners not counted). */
  sockets = 0;
  private readonly io: TcpSockets;
  private readonly events = new Uint32Array(2 * TCP_EVENTS_MAX);
  private readonly slots: (Entry | null)[] = [];
  private readonly gens: number[] = [];
  private readonly freeSlots: number[] = [];
  /**
   * Flows to handle at the end of the batch: queue[0, queueLen). Emptied by count, not by
   * `length = 0`, which would drop the backing store and make the next push allocate one
   * (a few hundred bytes per batch, on every request/response).
   */
  private queue: (HostConn | null)[] = [];
  private queueLen = 0;
  private spareQueue: (HostConn | null)[] = [];
  /** Reads into here only to see a host's EOF after its guest connection is gone. */
  private readonly scratch = Buffer.allocUnsafe(16_384);
  private readonly lingerMs: number;
  private closed = false;
  private eventCount = 0;
  /** Bytes read from and written to host sockets since takeBatchWork. */
  private movedBytes = 0;

  constructor(
    private readonly nat: TcpNat,
    private readonly clock: () => number,
    /** Makes the ports write what the NAT queued. */
    private readonly flushPorts: (now: number) => void,
    private readonly opts: TcpProxyOptions,
    private readonly log: Logger,
  ) {
    nat.dialTimeoutMs = opts.dialTimeoutMs;
    this.lingerMs = opts.lingerMs ?? 10_000;
    this.rdhup = finComesAsRdhup(log);
    this.io = native.createTcpSockets({ events: this.events, onEvents: (n) => this.onEvents(n) });
    this.io.start();
  }

  // ---- the slot table ----

  private allocSlot(): number {
    const free = this.freeSlots.pop();
    if (free !== undefined) return free;
    const slot = this.slots.length;
    if (slot > SLOT_MASK) throw new UsernetError('ERR_HOST_SOCKETS_FULL', `tcp proxy: too many host sockets (${SLOT_MASK + 1})`);
    this.slots.push(null);
    this.gens.push(0);
    return slot;
  }

  private tokenOf(slot: number): number {
    return (this.gens[slot] << SLOT_BITS) | slot;
  }

  private freeSlot(token: number): void {
    const slot = token & SLOT_MASK;
    this.slots[slot] = null;
    this.gens[slot] = (this.gens[slot] + 1) & GEN_MASK;
    this.freeSlots.push(slot);
  }

  private lookup(token: number): Entry | null {
    const slot = token & SLOT_MASK;
    const e = this.slots[slot];
    return e !== null && e !== undefined && e.token === token ? e : null;
  }

  private newConn(flow: TcpFlow | null, dnsAttempt: number): HostConn {
    const slot = this.allocSlot();
    const c: HostConn = {
      kind: 'conn', token: this.tokenOf(slot), fd: -1, flow, connecting: false, dialError: 0, connected: false,
      ended: false, hostEof: false, peerShut: false, peerFin: false, readBlocked: false, writeBlocked: false, paused: false, queued: false,
      wantRead: false, dnsAttempt, tail: null, lingerTimer: null,
    };
    this.slots[slot] = c;
    return c;
  }

  // ---- dialing ----

  dial(flow: TcpFlow): void {
    this.connect(flow, 0);
  }

  private connect(flow: TcpFlow, dnsAttempt: number): void {
    let host: string;
    let port: number;
    if (flow.toDns) {
      const up = this.opts.dnsUpstreams[dnsAttempt];
      if (up === undefined) {
        this.failed(flow, 'EHOSTUNREACH');
        return;
      }
      host = up.ip;
      port = up.port;
    } else {
      host = this.nat.addrs.format(flow.hostIp);
      port = flow.hostPort;
    }
    const v6 = host.includes(':');
    const local = isLoopback(host) ? null : v6 ? (flow.toDns ? null : (this.opts.outboundAddress6 ?? null)) : this.opts.outboundAddress;
    const c = this.newConn(flow, dnsAttempt);
    flow.host = c;
    c.connecting = true;
    const fd = this.io.connect(c.token, v6 ? 6 : 4, host, port, local);
    if (fd < 0) c.dialError = fd;
    else {
      c.fd = fd;
      this.sockets++;
    }
    // Settled at the end of this batch (the NAT is in the middle of the SYN now).
    this.enqueue(c);
  }

  /** Is the connect done? Called at the end of the dialing batch and on the socket's events. */
  private settle(c: HostConn, now: number): void {
    const flow = c.flow as TcpFlow;
    const st = c.dialError !== 0 ? c.dialError : this.io.status(c.fd);
    if (st === EINPROGRESS) return;
    c.connecting = false;
    if (st < 0) {
      this.closeConn(c, false);
      if (flow.host !== c) return;
      flow.host = null;
      if (flow.toDns && c.dnsAttempt + 1 < this.opts.dnsUpstreams.length && !flow.closed) {
        // Fail over to the next upstream resolver.
        this.connect(flow, c.dnsAttempt + 1);
        return;
      }
      this.failed(flow, errnoName(st));
      return;
    }
    this.connected(c, now);
  }

  private connected(c: HostConn, now: number): void {
    c.connecting = false;
    c.connected = true;
    this.nat.dialSucceeded(c.flow as TcpFlow, now);
    // A server that speaks first may have sent already.
    this.readHost(c, now);
  }

  private failed(flow: TcpFlow, code: string): void {
    const now = this.clock();
    this.log.debug(`tcp ${this.describe(flow)}: connect failed: ${code}`);
    if (isFdShortage(code)) noteFdShortage(this.log, 'tcp', now);
    this.nat.dialFailed(flow, code, now);
  }

  // ---- port forwards ----

  /**
   * Listens on host:port for a port forward; each accepted connection goes to
   * onAccept (which attaches or rejects it). Returns the listener's id (for
   * closeListener) and the bound port, or throws a system-style error.
   */
  listen(host: string, port: number, onAccept: (accepted: AcceptedSocket) => void): { id: number; port: number } {
    const slot = this.allocSlot();
    const l: HostListener = { kind: 'listener', token: this.tokenOf(slot), fd: -1, onAccept };
    const fd = this.io.listen(l.token, host.includes(':') ? 6 : 4, host, port, LISTEN_BACKLOG);
    if (fd < 0) {
      this.freeSlot(l.token);
      throw new NativeError(errnoName(fd), fd, 'listen', errnoText(fd));
    }
    l.fd = fd;
    this.slots[slot] = l;
    return { id: l.token, port: this.io.localPort(fd) };
  }

  closeListener(id: number): void {
    const l = this.lookup(id);
    if (l === null || l.kind !== 'listener') return;
    this.io.closeSocket(l.fd, false);
    this.freeSlot(l.token);
  }

  private acceptAll(l: HostListener): void {
    for (;;) {
      const c = this.newConn(null, 0);
      const fd = this.io.accept(l.fd, c.token);
      if (fd < 0) {
        this.freeSlot(c.token);
        if (fd !== EAGAIN) this.log.warn(`tcp listener: accept: ${errnoText(fd)}`);
        return;
      }
      c.fd = fd;
      c.connected = true;
      c.paused = true;
      this.sockets++;
      l.onAccept(c);
    }
  }

  /** Gives an accepted socket its flow (TcpNat.openInbound); reading starts when the guest answers. */
  attach(flow: TcpFlow, c: AcceptedSocket): void {
    // A client that left meanwhile is seen by the first read, once the guest answered.
    c.flow = flow;
    flow.host = c;
  }

  /** The guest cannot be reached: reset the client. */
  reject(c: AcceptedSocket): void {
    this.closeConn(c, true);
  }

  onEstablished(flow: TcpFlow): void {
    const c = flow.host as HostConn | null;
    if (c === null || !c.paused) return;
    c.paused = false;
    this.queueRead(c);
  }

  // ---- events ----

  private onEvents(count: number): void {
    this.eventCount += count;
    const now = this.clock();
    const ev = this.events;
    this.handling = true;
    try {
      for (let i = 0; i < count; i++) {
        const e = this.lookup(ev[2 * i]);
        if (e === null) continue;
        const bits = ev[2 * i + 1];
        if (e.kind === 'listener') {
          this.acceptAll(e);
          continue;
        }
        this.onSocketEvent(e, bits, now);
      }
    } finally {
      this.handling = false;
    }
    this.flushPorts(now);
  }

  /**
   * True while a batch of socket events is being handled: a flush from inside it (a port
   * forward's callback) must not fetch new events into the array being read.
   */
  get handlingEvents(): boolean {
    return this.handling;
  }

  private handling = false;
  /**
   * The FIN comes with EPOLLRDHUP (Linux). Without it (old gVisor) a FIN that arrived with the
   * last bytes is only an EPOLLIN, and no later edge announces it: a short read then reads on.
   */
  private readonly rdhup: boolean;

  private onSocketEvent(c: HostConn, bits: number, now: number): void {
    if ((bits & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) !== 0) {
      c.peerShut = true;
      if ((bits & EPOLLERR) === 0) c.peerFin = true;
    }
    const flow = c.flow;
    if (flow === null) {
      // Accepted, no flow yet: a client that left is seen when the flow reads.
      return;
    }
    if (c.connecting) {
      // Writable without an error or hang-up: the connect is done (no status() call needed).
      if ((bits & (EPOLLOUT | EPOLLERR | EPOLLHUP)) === EPOLLOUT) this.connected(c, now);
      else this.settle(c, now);
      return;
    }
    if ((bits & (EPOLLOUT | EPOLLERR)) !== 0 && c.writeBlocked) {
      c.writeBlocked = false;
      if (c.tail !== null) this.writeTail(c);
      else this.pump(c, now);
    }
    if (c.fd >= 0 && (bits & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) !== 0) this.readHost(c, now);
  }

  /** Host -> guest: reads into the send ring until EAGAIN, EOF or a full ring. */
  private readHost(c: HostConn, now: number): void {
    const flow = c.flow as TcpFlow;
    if (c.paused || c.hostEof || c.fd < 0) return;
    if (flow.closed || flow.host !== c) {
      this.drainClosed(c);
      return;
    }
    const conn = flow.conn;
    let moved = false;
    for (;;) {
      const r = conn.sendWritable();
      if (r.len === 0) {
        c.readBlocked = true;
        break;
      }
      // The region object is the ring's and sendCommit reuses it (segments are cut through it).
      const room = r.len;
      const n = this.io.read(c.fd, r.buf, r.off, room);
      if (n > 0) {
        this.movedBytes += n;
        conn.sendCommit(n, now);
        moved = true;
        // A short read emptied the socket: the next data brings a new edge (an EOF or error
        // already announced does not, so then read on).
        if (n < room) {
          if (c.peerFin) {
            // The FIN came with or before these bytes: this was the end.
            this.hostEnded(c, now);
            return;
          }
          if (!c.peerShut && this.rdhup) break;
        }
        continue;
      }
      if (n === 0) {
        this.hostEnded(c, now);
        return;
      }
      if (n !== EAGAIN) this.hostError(c, n, now);
      break;
    }
    if (moved) this.nat.hostActivity(flow, now);
  }

  /** After the guest's side closed: read and drop until the host's EOF, then close. */
  private drainClosed(c: HostConn): void {
    for (;;) {
      const n = this.io.read(c.fd, this.scratch, 0, this.scratch.length);
      if (n > 0) continue;
      if (n === 0) {
        c.hostEof = true;
        this.maybeClose(c);
      } else if (n !== EAGAIN) this.closeConn(c, false);
      return;
    }
  }

  /** The host sent EOF: our FIN follows the queued data. */
  private hostEnded(c: HostConn, now: number): void {
    const flow = c.flow as TcpFlow;
    c.hostEof = true;
    if (!flow.closed) {
      flow.conn.shutdownSend(now);
      this.nat.hostActivity(flow, now);
    }
    this.maybeClose(c);
  }

  private hostError(c: HostConn, err: number, now: number): void {
    const flow = c.flow as TcpFlow;
    this.log.debug(`tcp ${this.describe(flow)}: host socket error ${errnoName(err)}`);
    this.closeConn(c, false);
    this.nat.hostAborted(flow, now);
  }

  onSendSpace(flow: TcpFlow): void {
    const c = flow.host as HostConn | null;
    if (c === null || !c.readBlocked) return;
    c.readBlocked = false;
    this.queueRead(c);
  }

  /** Reads at the end of the batch (from the engine's own events the connection must not be re-entered). */
  private queueRead(c: HostConn): void {
    c.wantRead = true;
    this.enqueue(c);
  }

  /**
   * New guest bytes: queue the flow and move them at the end of the batch
   * (`drain`), so a batch of segments becomes one socket write, not one per
   * segment.
   */
  onReadable(flow: TcpFlow): void {
    const c = flow.host as HostConn | null;
    if (c !== null) this.enqueue(c);
  }

  private enqueue(c: HostConn): void {
    if (c.queued) return;
    c.queued = true;
    this.queue[this.queueLen++] = c;
  }

  /** End of a batch (the runtime's flush): settles dials, writes and reads what each queued flow has. */
  drain(now: number): void {
    while (this.queueLen > 0) {
      const list = this.queue;
      const n = this.queueLen;
      this.queue = this.spareQueue;
      this.queueLen = 0;
      for (let i = 0; i < n; i++) {
        const c = list[i] as HostConn;
        list[i] = null;
        c.queued = false;
        if (c.fd < 0 && c.dialError === 0) continue;
        if (c.connecting) {
          this.settle(c, now);
          continue;
        }
        this.pump(c, now);
        if (c.wantRead) {
          c.wantRead = false;
          this.readHost(c, now);
        }
      }
      this.spareQueue = list;
    }
  }

  /** Guest -> host: writes the receive ring's readable bytes from where they are. */
  private pump(c: HostConn, now: number): void {
    const flow = c.flow;
    if (flow === null || flow.closed || flow.host !== c || !c.connected || c.ended || c.writeBlocked || c.fd < 0) return;
    const conn = flow.conn;
    let moved = false;
    while (conn.recvAvailable() > 0) {
      const r = conn.recvPeek();
      const len = r.len;
      const n = this.io.write(c.fd, r.buf, r.off, len);
      if (n > 0) {
        this.movedBytes += n;
        conn.recvConsume(n, now);
        moved = true;
        if (n < len) {
          c.writeBlocked = true;
          break;
        }
        continue;
      }
      if (n === EAGAIN) c.writeBlocked = true;
      else this.hostError(c, n, now);
      break;
    }
    if (c.fd >= 0 && !c.writeBlocked && conn.peerFinished && conn.recvAvailable() === 0) this.endHost(c);
    // The window opened: the end-of-batch flush tells the guest (pump runs inside a batch).
    if (moved) this.nat.hostTookData(flow);
  }

  /** shutdown(SHUT_WR) once everything the guest sent is written. */
  private endHost(c: HostConn): void {
    if (c.ended) return;
    c.ended = true;
    this.io.shutdown(c.fd);
    this.maybeClose(c);
  }

  /** The rest of a normally closed connection's data, from its copy. */
  private writeTail(c: HostConn): void {
    const t = c.tail as Buffer;
    const n = this.io.write(c.fd, t, 0, t.length);
    if (n === t.length) {
      c.tail = null;
      this.endHost(c);
    } else if (n > 0 || n === EAGAIN) {
      if (n > 0) c.tail = t.subarray(n);
      c.writeBlocked = true;
    } else {
      this.closeConn(c, false);
    }
  }

  onClosed(flow: TcpFlow, reason: TcpCloseReason): void {
    const c = flow.host as HostConn | null;
    // Nothing reads into the rings after this, whatever happens to the socket.
    flow.host = null;
    if (c === null || c.fd < 0) {
      // The socket is gone already (or there never was one).
      flow.conn.recycleBuffers();
      return;
    }
    if (reason !== 'normal') {
      // A connected socket is reset, so the host sees the guest's abort as one.
      this.closeConn(c, (reason === 'reset' || reason === 'timeout') && c.connected);
      flow.conn.recycleBuffers();
      return;
    }
    // Everything the guest sent before its FIN is still to be written, then our FIN.
    const conn = flow.conn;
    const left = c.ended ? 0 : conn.recvAvailable();
    if (left > 0) {
      const tail = Buffer.allocUnsafe(left);
      let at = 0;
      while (conn.recvAvailable() > 0) {
        const r = conn.recvPeek();
        r.buf.copy(tail, at, r.off, r.off + r.len);
        at += r.len;
        conn.recvConsume(r.len, this.clock());
      }
      c.tail = tail;
    }
    flow.conn.recycleBuffers();
    if (c.connected && !c.writeBlocked) {
      if (c.tail !== null) this.writeTail(c);
      else this.endHost(c);
    }
    if (c.fd < 0) return;
    this.maybeClose(c);
    if (c.fd >= 0) {
      // A host that never closes its side must not keep the socket forever.
      c.lingerTimer = setTimeout(() => this.closeConn(c, false), this.lingerMs);
      c.lingerTimer.unref();
    }
  }

  private maybeClose(c: HostConn): void {
    const flow = c.flow;
    if (c.ended && c.hostEof && flow !== null && flow.closed) this.closeConn(c, false);
  }

  /** Closes the socket (abort: with a RST) and frees its slot; safe to call twice. */
  private closeConn(c: HostConn, abort: boolean): void {
    if (c.lingerTimer !== null) {
      clearTimeout(c.lingerTimer);
      c.lingerTimer = null;
    }
    if (c.fd >= 0) {
      this.io.closeSocket(c.fd, abort);
      c.fd = -1;
      this.sockets--;
    }
    if (this.lookup(c.token) === c) this.freeSlot(c.token);
  }

  /** Socket events and bytes moved since the last call (the runtime's batch size, for busy polling). */
  takeBatchWork(): { events: number; bytes: number } {
    const w = this.work;
    w.events = this.eventCount;
    w.bytes = this.movedBytes;
    this.eventCount = 0;
    this.movedBytes = 0;
    return w;
  }

  private readonly work = { events: 0, bytes: 0 };

  /**
   * Busy-polls our sockets and `fds` (tap fds) for up to maxMicros. Once one is readable, a
   * bit mask of what is (bit 0 our sockets, bit i + 1 fds[i]); 0 when time ran out.
   */
  spin(fds: Int32Array, count: number, maxMicros: number): number {
    return this.closed ? 0 : this.io.spin(fds, count, maxMicros);
  }

  /** Handles the sockets that are ready now (after a spin saw them), as a wake-up would. */
  pollNow(): void {
    if (this.closed) return;
    const n = this.io.pollNow();
    if (n > 0) this.onEvents(n);
  }

  /** Closes every host socket and listener (shutdown). */
  closeAll(): void {
    if (this.closed) return;
    this.closed = true;
    for (const e of this.slots) {
      if (e === null) continue;
      if (e.kind === 'listener') this.closeListener(e.token);
      else this.closeConn(e, false);
    }
    this.io.close();
  }

  private describe(flow: TcpFlow): string {
    const a = this.nat.addrs;
    return `${a.format(flow.guestIp)}:${flow.guestPort} -> ${a.format(flow.remoteIp)}:${flow.remotePort}`;
  }
}

function isLoopback(host: string): boolean {
  return host.startsWith('127.') || host === '::1';
}
