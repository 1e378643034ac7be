/**
 * Listening host TCP sockets for port forwards (port-forwards.ts).
 *
 * How it works
 * - `listen` opens a listener in the shared epoll set (SocketTable); its
 *   event accepts every waiting connection (until EAGAIN). Each accepted
 *   socket becomes a HostConn in 'accepted' and goes to the forward's
 *   callback, which asks the NAT for a flow towards the guest and then
 *   attaches the socket to it (`attach`) or resets the client (`reject`).
 * - An accepted socket is registered at once but not read before the guest
 *   completes its handshake (TcpPump.established): a client that left
 *   meanwhile is seen by that first read.
 * - A listener's id is its token; closing it leaves accepted connections alone.
 */
import type { TcpFlow } from '../../stack/nat/tcp-nat.js';
import { NativeError } from '../errors.js';
import type { Logger } from '../log.js';
import { EAGAIN, errnoName, errnoText } from './errno.js';
import type { SocketHandler, SocketTable } from './socket-table.js';
import { HostConn, type HostConnOwner } from './tcp-host-conn.js';
import type { TcpPump } from './tcp-pump.js';

/** Connections a listener's kernel queue holds before the next accept (the kernel caps it at somaxconn). */
const LISTEN_BACKLOG = 511;

/** An accepted connection waiting for its flow (PortForwards -> TcpProxy.attach / reject). */
export type AcceptedSocket = HostConn;

class HostListener implements SocketHandler {
  token = 0;
  fd = -1;

  constructor(
    private readonly owner: TcpListeners,
    readonly onAccept: (accepted: AcceptedSocket) => void,
  ) {}

  onEvent(): void {
    this.owner.acceptAll(this);
  }

  close(): void {
    this.owner.close(this.token);
  }
}

export class TcpListeners {
  constructor(
    private readonly table: SocketTable,
    private readonly pump: TcpPump,
    private readonly connOwner: HostConnOwner,
    private readonly log: Logger,
  ) {}

  /**
   * Listens on host:port; each accepted connection goes to onAccept (which attaches or
   * rejects it). Returns the listener's id (for close) and the bound port, or throws a
   * system-style error.
   */
  listen(host: string, port: number, onAccept: (accepted: AcceptedSocket) => void): { id: number; port: number } {
    const l = new HostListener(this, onAccept);
    this.table.add(l);
    const fd = this.table.io.listen(l.token, host.includes(':') ? 6 : 4, host, port, LISTEN_BACKLOG);
    if (fd < 0) {
      this.table.remove(l);
      throw new NativeError(errnoName(fd), fd, 'listen', errnoText(fd));
    }
    l.fd = fd;
    return { id: l.token, port: this.table.io.localPort(fd) };
  }

  close(id: number): void {
    const l = this.table.lookup(id);
    if (!(l instanceof HostListener)) return;
    this.table.io.closeSocket(l.fd, false);
    this.table.remove(l);
  }

  acceptAll(l: HostListener): void {
    for (;;) {
      const c = new HostConn(this.connOwner, 'accepted', null, 0);
      this.table.add(c);
      const fd = this.table.io.accept(l.fd, c.token);
      if (fd < 0) {
        this.table.remove(c);
        if (fd !== EAGAIN) this.log.warn(`tcp listener: accept: ${errnoText(fd)}`);
        return;
      }
      this.pump.adopt(c, fd);
      l.onAccept(c);
    }
  }

  /** Gives an accepted socket its flow (TcpNat.openInbound); reading starts when the guest answers. */
  attach(flow: TcpFlow, c: AcceptedSocket): void {
    c.flow = flow;
    flow.host = c;
  }

  /** The guest cannot be reached: reset the client. */
  reject(c: AcceptedSocket): void {
    this.pump.close(c, true);
  }
}
