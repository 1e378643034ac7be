/**
 * The host side of the TCP NAT: one native host socket per guest connection
 * (native/tcp_sockets.cc, not Node's net.Socket). What the NAT asks of the
 * host (TcpHostEnv) lands here and goes to one of four parts:
 *
 * - socket-table.ts: the epoll set, its tokens and the dispatch of a batch
 *   of events to their sockets (shared with the listeners);
 * - tcp-dialer.ts: connects for the guest's SYNs, with DNS-upstream failover;
 * - tcp-listeners.ts: port forwards' listeners and their accepted sockets;
 * - tcp-pump.ts: the bytes both ways through the flow's TcpStream,
 *   half-close, lingering, the end-of-batch writes.
 *
 * A connection's states and their transitions are in tcp-host-conn.ts. This
 * class routes a connection's epoll events by its state: to the dialer while
 * it dials, to the pump afterwards; epoll's news of the peer's end is noted
 * first, whatever the state.
 */
import type { TcpCloseReason } from '../../stack/tcp/connection.js';
import type { TcpFlow, TcpHostEnv, TcpNat } from '../../stack/nat/tcp-nat.js';
import type { Logger } from '../log.js';
import { EPOLLERR, EPOLLHUP, EPOLLRDHUP, type BatchWork, type SocketTable } from './socket-table.js';
import { describeFlow, TcpDialer, type TcpDialerOptions } from './tcp-dialer.js';
import type { HostConn, HostConnOwner } from './tcp-host-conn.js';
import { TcpListeners, type AcceptedSocket } from './tcp-listeners.js';
import { TcpPump } from './tcp-pump.js';

export type { AcceptedSocket } from './tcp-listeners.js';

export interface TcpProxyOptions extends TcpDialerOptions {
  /** How long a socket whose guest connection ended waits for the host's EOF (default 10 s). */
  lingerMs?: number;
}

export class TcpProxy implements TcpHostEnv, HostConnOwner {
  private readonly pump: TcpPump;
  private readonly dialer: TcpDialer;
  private readonly listeners: TcpListeners;

  constructor(
    nat: TcpNat,
    table: SocketTable,
    work: BatchWork,
    clock: () => number,
    opts: TcpProxyOptions,
    log: Logger,
  ) {
    this.pump = new TcpPump(table, work, clock, opts.lingerMs ?? 10_000, log, (c) => describeFlow(nat, c.flow as TcpFlow));
    this.dialer = new TcpDialer(nat, table, this.pump, this, opts, clock, log);
    this.listeners = new TcpListeners(table, this.pump, this, log);
  }

  /** Open host TCP connections (listeners not counted). */
  get sockets(): number {
    return this.pump.sockets;
  }

  // ---- TcpHostEnv: the NAT's calls ----

  dial(flow: TcpFlow): void {
    this.dialer.dial(flow);
  }

  onReadable(flow: TcpFlow): void {
    const c = flow.host as HostConn | null;
    if (c !== null) this.pump.onReadable(c);
  }

  onSendSpace(flow: TcpFlow): void {
    const c = flow.host as HostConn | null;
    if (c !== null) this.pump.onSendSpace(c);
  }

  onEstablished(flow: TcpFlow): void {
    const c = flow.host as HostConn | null;
    if (c !== null) this.pump.established(c);
  }

  onClosed(flow: TcpFlow, reason: TcpCloseReason): void {
    const c = flow.host as HostConn | null;
    // Nothing reads into the rings after this, whatever happens to the socket.
    flow.host = null;
    this.pump.flowClosed(flow, c, reason);
  }

  /** End of a batch (the runtime's flush): settles dials, writes and reads what each queued flow has. */
  drain(now: number): void {
    this.dialer.settlePending(now);
    this.pump.drain(now);
  }

  // ---- port forwards (port-forwards.ts) ----

  listen(host: string, port: number, onAccept: (accepted: AcceptedSocket) => void): { id: number; port: number } {
    return this.listeners.listen(host, port, onAccept);
  }

  closeListener(id: number): void {
    this.listeners.close(id);
  }

  attach(flow: TcpFlow, c: AcceptedSocket): void {
    this.listeners.attach(flow, c);
  }

  reject(c: AcceptedSocket): void {
    this.listeners.reject(c);
  }

  // ---- HostConnOwner: a connection's events ----

  connEvent(c: HostConn, bits: number, now: number): void {
    if ((bits & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) !== 0) {
      if ((bits & EPOLLERR) === 0) c.peer = 'fin';
      else if (c.peer === 'open') c.peer = 'shut';
    }
    if (c.state === 'dialing') this.dialer.onEvent(c, bits, now);
    else this.pump.onEvent(c, bits, now);
  }

  closeConn(c: HostConn, abort: boolean): void {
    this.pump.close(c, abort);
  }
}
