/**
 * The host side of the TCP NAT: one net.Socket per guest connection.
 *
 * How it works
 * - dial: connect to the flow's host address (127.0.0.1 for the gateway, the
 *   address itself otherwise, a DNS upstream for N+3:53). The guest's SYN is
 *   answered only once this succeeds.
 * - host -> guest: the socket reads (onread) straight into the connection's
 *   send buffer, the memory the segments are cut from. When the guest's
 *   window and our send buffer are full the read callback returns false,
 *   which stops reading; onSendSpace resumes it.
 * - guest -> host: in-order bytes go to socket.write as a view of the
 *   receive ring, without a copy, and only while the socket has nothing
 *   queued. Bytes the kernel took at once are consumed at once; bytes the
 *   socket had to queue stay in the ring (`inflight`) until the write
 *   completes. Meanwhile the receive buffer fills and the window we
 *   advertise closes: buffering is bounded by the receive buffer, and
 *   nothing is ever dropped. One write per batch of guest segments (drain).
 * - Half-close both ways: the guest's FIN ends our writing side once its
 *   data is written; the host's EOF becomes our FIN after the queued data.
 * - Port forwards (`attach`): a socket a forward's server accepted shares
 *   everything above except the read path: a server cannot hand its
 *   sockets an onread buffer, so their reads arrive as 'data' chunks copied
 *   into the send buffer; what does not fit waits in `remainder` with the
 *   socket paused until onSendSpace. The socket stays paused until the
 *   guest completes the handshake (onEstablished).
 * - Per connection we make the socket, its state and one closure (the onread
 *   buffer generator, which Node calls without a receiver); every event
 *   handler is shared and finds its state through the socket (`this`). The
 *   dial timeout is a deadline in the NAT's queue (TcpNat.dialTimeoutMs),
 *   not a timer per dial.
 * - A closed flow's rings go back to the pool (recycleBuffers) once both the
 *   flow and its socket are closed: until 'close', the socket may still read
 *   into the send ring.
 */
import { connect, type Socket } from 'node:net';
import type { TcpCloseReason } from '../../stack/tcp/connection.js';
import type { TcpFlow, TcpHostEnv, TcpNat } from '../../stack/nat/tcp-nat.js';
import { isIpv6Handle } from '../../stack/nat/ip-addresses.js';
import type { Logger } from '../log.js';


export interface TcpProxyOptions {
  dialTimeoutMs: number;
  /** Where TCP to N+3:53 goes: the DNS upstreams, tried in order. */
  dnsUpstreams: { ip: string; port: number }[];
  /** Local address for outbound sockets (slirp4netns --outbound-addr), or null. */
  outboundAddress: string | null;
  /** The same for connections to IPv6 destinations (slirp4netns --outbound-addr6). */
  outboundAddress6?: string | null;
}

interface HostState {
  proxy: TcpProxy;
  flow: TcpFlow;
  socket: Socket;
  /** Waiting in `pending` for the end-of-batch drain. */
  pumpQueued: boolean;
  connected: boolean;
  /** We called end() on the socket. */
  ended: boolean;
  /** The host sent EOF. */
  hostEof: boolean;
  dnsAttempt: number;
  /** An accepted socket (port forward): reads are copied from 'data' chunks. */
  accepted: boolean;
  /** Bytes of the last chunk the send buffer had no room for (accepted sockets only). */
  remainder: Buffer | null;
  /**
   * Guest bytes at the head of the receive ring that the socket was handed
   * as a view and has not finished writing: consumed (and the window
   * reopened) only when the write completes, so the ring keeps them intact.
   */
  inflight: number;
  /** Callbacks still to come for writes that completed at once (Node calls them a tick later): ignored. */
  skipCallbacks: number;
  /** The write callback of this connection (one closure per connection). */
  written: (err?: Error | null) => void;
}

function noWrite(): void {}

/** Where a socket keeps its HostState for the shared handlers. */
const STATE = Symbol('usernet.tcpHostState');
type HostSocket = Socket & { [STATE]: HostState };

function stateOf(socket: Socket): HostState {
  return (socket as HostSocket)[STATE];
}

// The socket events, shared by all connections (`this` is the socket).
function onConnect(this: Socket): void {
  const s = stateOf(this);
  s.proxy.connected(s);
}
function onDialError(this: Socket, err: NodeJS.ErrnoException): void {
  const s = stateOf(this);
  s.proxy.socketError(s, err);
}
function onAcceptedError(this: Socket, err: NodeJS.ErrnoException): void {
  const s = stateOf(this);
  s.proxy.hostError(s.flow, err);
}
function onEnd(this: Socket): void {
  const s = stateOf(this);
  s.proxy.hostEnded(s);
}
function onClose(this: Socket): void {
  const s = stateOf(this);
  s.proxy.socketClosed(s);
}
function onDrain(this: Socket): void {
  const s = stateOf(this);
  s.proxy.pumpState(s);
}
function onHostRead(this: Socket, n: number, buf: Uint8Array): boolean {
  const s = stateOf(this);
  return s.proxy.onHostData(s.flow, n, buf);
}
function onChunk(this: Socket, chunk: Buffer): void {
  const s = stateOf(this);
  s.proxy.onHostChunk(s.flow, s, chunk);
}

export class TcpProxy implements TcpHostEnv {
  sockets = 0;
  private readonly spare = Buffer.alloc(1);
  private pending: TcpFlow[] = [];
  private spareList: TcpFlow[] = [];

  constructor(
    private readonly nat: TcpNat,
    private readonly clock: () => number,
    /** Makes the ports write what the NAT queued. */
    private readonly flushPorts: (now: number) => void,
    private readonly opts: TcpProxyOptions,
    private readonly log: Logger,
  ) {
    nat.dialTimeoutMs = opts.dialTimeoutMs;
  }

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
    const local = isIpv6Handle(flow.hostIp) && !flow.toDns ? (this.opts.outboundAddress6 ?? null) : this.opts.outboundAddress;
    // onread is only honoured when the socket is made by connect(): read straight into the send buffer.
    const spare = this.spare;
    const socket = connect({
      host,
      port,
      allowHalfOpen: true,
      // Set on the handle before 'connect' is emitted, so the SYN-ACK's answer is never held back.
      noDelay: true,
      ...(local !== null && !isLoopback(host) ? { localAddress: local } : {}),
      onread: {
        // Node asks for the next buffer right after each read, even one after which we stop
        // reading; it must never be empty (that fails the socket with ENOBUFS). When the send
        // buffer is full, a one-byte spare takes the first read after resuming.
        buffer: () => {
          const r = flow.conn.sendWritable();
          return r.len === 0 ? spare : r.buf.subarray(r.off, r.off + r.len);
        },
        callback: onHostRead,
      },
    }) as HostSocket;
    const state: HostState = { proxy: this, flow, socket, pumpQueued: false, connected: false, ended: false, hostEof: false, dnsAttempt, accepted: false, remainder: null, inflight: 0, skipCallbacks: 0, written: noWrite };
    state.written = (err) => this.written(state, err);
    socket[STATE] = state;
    flow.host = state;
    this.sockets++;
    socket.once('connect', onConnect);
    socket.on('error', onDialError);
    this.watch(socket);
  }

  /** The dial succeeded: answer the guest's SYN. */
  connected(state: HostState): void {
    state.connected = true;
    if (state.flow.host !== state) return;
    const now = this.clock();
    this.nat.dialSucceeded(state.flow, now);
    this.flushPorts(now);
  }

  /** An error on a socket we dialed: before 'connect' the dial failed, after it the host aborted. */
  socketError(state: HostState, err: NodeJS.ErrnoException): void {
    const flow = state.flow;
    if (flow.host !== state) return;
    if (!state.connected) {
      if (flow.toDns && state.dnsAttempt + 1 < this.opts.dnsUpstreams.length && !flow.closed) {
        // Fail over to the next upstream resolver; the old socket's 'close' still counts it.
        state.socket.destroy();
        this.connect(flow, state.dnsAttempt + 1);
        return;
      }
      this.failed(flow, err.code ?? 'EHOSTUNREACH');
      return;
    }
    this.hostError(flow, err);
  }

  /**
   * Takes over a socket a port forward accepted, for an inbound flow
   * (TcpNat.openInbound) whose SYN is on its way to the guest.
   */
  attach(flow: TcpFlow, socket: Socket): void {
    const state: HostState = { proxy: this, flow, socket, pumpQueued: false, connected: true, ended: false, hostEof: false, dnsAttempt: 0, accepted: true, remainder: null, inflight: 0, skipCallbacks: 0, written: noWrite };
    state.written = (err) => this.written(state, err);
    (socket as HostSocket)[STATE] = state;
    flow.host = state;
    this.sockets++;
    socket.setNoDelay(true);
    socket.on('data', onChunk);
    // No reading before the guest accepted the connection.
    socket.pause();
    socket.on('error', onAcceptedError);
    this.watch(socket);
  }

  onEstablished(flow: TcpFlow): void {
    const state = flow.host as HostState | null;
    if (state !== null && state.accepted && state.remainder === null) state.socket.resume();
  }

  /** The events both kinds of sockets handle alike. */
  private watch(socket: Socket): void {
    socket.on('end', onEnd);
    socket.on('close', onClose);
    socket.on('drain', onDrain);
  }

  /** The host sent EOF: our FIN follows the queued data. */
  hostEnded(state: HostState): void {
    const flow = state.flow;
    state.hostEof = true;
    if (flow.host !== state) return;
    const now = this.clock();
    if (!flow.closed) {
      flow.conn.shutdownSend(now);
      this.nat.hostActivity(flow, now);
      this.flushPorts(now);
    }
    this.maybeDestroy(flow, state);
  }

  socketClosed(state: HostState): void {
    const flow = state.flow;
    this.sockets--;
    // A DNS failover's old socket: the flow has moved on to the next one.
    if (flow.host !== state) return;
    flow.host = null;
    if (flow.closed) {
      // Nothing reads into the rings any more.
      flow.conn.recycleBuffers();
      return;
    }
    if (state.connected && !(state.hostEof && state.ended)) {
      const now = this.clock();
      this.nat.hostAborted(flow, now);
      this.flushPorts(now);
    }
  }

  pumpState(state: HostState): void {
    if (state.flow.host === state) this.pump(state.flow);
  }

  hostError(flow: TcpFlow, err: NodeJS.ErrnoException): void {
    this.log.debug(`tcp ${this.describe(flow)}: host socket error ${err.code ?? err.message}`);
    const now = this.clock();
    this.nat.hostAborted(flow, now);
    this.flushPorts(now);
  }

  /** A chunk read from an accepted socket: copy what fits, keep the rest until the guest makes room. */
  onHostChunk(flow: TcpFlow, state: HostState, chunk: Buffer): void {
    if (flow.closed) return;
    const now = this.clock();
    const n = flow.conn.send(chunk, 0, chunk.length, now);
    if (n < chunk.length) {
      state.remainder = chunk.subarray(n);
      state.socket.pause();
    }
    this.nat.hostActivity(flow, now);
    this.flushPorts(now);
  }

  /** Runs after onSendSpace returned: the connection must not be re-entered from its own event. */
  private readonly drainRemainder = (flow: TcpFlow, state: HostState): void => {
    const r = state.remainder;
    if (r === null || flow.closed || flow.host !== state) return;
    const now = this.clock();
    const n = flow.conn.send(r, 0, r.length, now);
    state.remainder = n < r.length ? r.subarray(n) : null;
    if (state.remainder === null) state.socket.resume();
    this.nat.hostActivity(flow, now);
    this.flushPorts(now);
  };

  private failed(flow: TcpFlow, code: string): void {
    const now = this.clock();
    this.log.debug(`tcp ${this.describe(flow)}: connect failed: ${code}`);
    this.nat.dialFailed(flow, code, now);
    this.flushPorts(now);
  }

  onHostData(flow: TcpFlow, n: number, buf: Uint8Array): boolean {
    if (flow.closed) return false;
    const now = this.clock();
    if (buf === this.spare) flow.conn.send(this.spare, 0, n, now);
    else flow.conn.sendCommit(n, now);
    this.nat.hostActivity(flow, now);
    this.flushPorts(now);
    // false stops reading until onSendSpace.
    return flow.conn.sendSpace() > 0;
  }

  onSendSpace(flow: TcpFlow): void {
    const state = flow.host as HostState | null;
    if (state === null || !state.connected) return;
    if (state.accepted) {
      if (state.remainder !== null) process.nextTick(this.drainRemainder, flow, state);
      else if (flow.conn.state !== 'SYN-SENT') state.socket.resume();
      return;
    }
    // For sockets with onread, resume() restarts reading that a false return stopped.
    state.socket.resume();
  }

  /**
   * New guest bytes: queue the flow and move them at the end of the batch
   * (`drain`), so a batch of segments becomes one socket write, not one per
   * segment.
   */
  onReadable(flow: TcpFlow): void {
    const state = flow.host as HostState | null;
    if (state === null || state.pumpQueued) return;
    state.pumpQueued = true;
    this.pending.push(flow);
  }

  /** End of a batch (the runtime's flush): writes what each readable flow has, once. */
  drain(now: number): void {
    if (this.pending.length === 0) return;
    const flows = this.pending;
    this.pending = this.spareList;
    for (const flow of flows) {
      const state = flow.host as HostState | null;
      if (state !== null) state.pumpQueued = false;
      this.pump(flow, false, now);
    }
    flows.length = 0;
    this.spareList = flows;
  }

  /**
   * Moves the guest's bytes into the host socket while it is below the
   * high-water mark. Without a copy: the socket gets a view of the receive
   * ring. A write the kernel takes at once (the usual case: Node tries the
   * write(2) before queueing) leaves nothing queued in the socket, and the
   * bytes are consumed right away (its callback, a tick later, is skipped);
   * otherwise they stay in the ring, counted in `inflight`, until the write's
   * callback (`written`), and nothing more is handed over meanwhile, so the
   * bytes leave in order.
   */
  private pump(flow: TcpFlow, flushPorts = true, now = this.clock(), opened = false): void {
    const state = flow.host as HostState | null;
    if (state === null || !state.connected || state.ended || state.inflight > 0) return;
    const socket = state.socket;
    const conn = flow.conn;
    let moved = opened;
    while (conn.recvAvailable() > 0 && socket.writableLength === 0) {
      const r = conn.recvPeek();
      const n = r.len;
      socket.write(r.buf.subarray(r.off, r.off + n), state.written);
      if (socket.writableLength > 0) {
        state.inflight = n;
        break;
      }
      state.skipCallbacks++;
      conn.recvConsume(n, now);
      moved = true;
    }
    if (conn.peerFinished && conn.recvAvailable() === 0 && !state.ended) {
      state.ended = true;
      socket.end();
      this.maybeDestroy(flow, state);
    }
    if (moved && !flow.closed) {
      // The window opened: let the connection tell the guest.
      this.nat.hostActivity(flow, now);
      if (flushPorts) this.flushPorts(now);
    }
  }

  /** A write of a ring view finished (or failed: the socket's error handler deals with that). */
  private written(state: HostState, err?: Error | null): void {
    if (state.skipCallbacks > 0) {
      state.skipCallbacks--;
      return;
    }
    const n = state.inflight;
    if (n === 0) return;
    state.inflight = 0;
    const flow = state.flow;
    if (err || flow.closed || flow.host !== state) return;
    const now = this.clock();
    flow.conn.recvConsume(n, now);
    this.pump(flow, true, now, true);
  }

  onClosed(flow: TcpFlow, reason: TcpCloseReason): void {
    const state = flow.host as HostState | null;
    if (state === null) {
      // The socket is gone already (or there never was one).
      flow.conn.recycleBuffers();
      return;
    }
    if (state.inflight > 0) {
      // Already queued in the socket; the ring stays ours until the socket closes (buffers are recycled only then).
      flow.conn.recvConsume(state.inflight, this.clock());
      state.inflight = 0;
    }
    if (reason === 'normal') {
      // Everything the guest sent before its FIN is still readable: write it, then end.
      const conn = flow.conn;
      while (conn.recvAvailable() > 0) {
        const r = conn.recvPeek();
        const chunk = Buffer.allocUnsafe(r.len);
        r.buf.copy(chunk, 0, r.off, r.off + r.len);
        conn.recvConsume(r.len, this.clock());
        if (state.connected) state.socket.write(chunk);
      }
      if (!state.ended) {
        state.ended = true;
        state.socket.end();
      }
      this.maybeDestroy(flow, state);
      // A host that never closes its side must not keep the socket forever.
      if (!state.socket.destroyed) setTimeout(() => state.socket.destroy(), 10_000).unref();
    } else if (reason === 'reset' || reason === 'timeout') {
      if (state.connected) state.socket.resetAndDestroy();
      else state.socket.destroy();
    } else {
      state.socket.destroy();
    }
  }

  private maybeDestroy(flow: TcpFlow, state: HostState): void {
    if (state.ended && state.hostEof && flow.closed && !state.socket.destroyed) state.socket.destroy();
  }

  /** Closes every host socket (shutdown). */
  closeAll(): void {
    for (const flow of this.nat.liveFlows()) {
      const state = flow.host as HostState | null;
      if (state !== null) state.socket.destroy();
    }
  }

  private describe(flow: TcpFlow): string {
    const a = this.nat.addrs;
    return `${a.format(flow.guestIp)}:${flow.guestPort} -> ${a.format(flow.remoteIp)}:${flow.remotePort}`;
  }
}

function isLoopback(host: string): boolean {
  return host.startsWith('127.') || host === '::1';
}
