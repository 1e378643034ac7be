/**
 * One host TCP connection (dialed for a guest's connection, or accepted by a
 * port forward) and its state set.
 *
 * Its life is one of five states; three small read/write/epoll fields and
 * one bookkeeping flag are orthogonal to it (each direction of a TCP
 * connection ends on its own, and epoll's news of the peer comes when it
 * comes).
 *
 * state (where the socket is in its life)
 * | from      | event                                              | to        |
 * |-----------|----------------------------------------------------|-----------|
 * | (new)     | the guest's SYN: a non-blocking connect (dialer)   | dialing   |
 * | (new)     | a forward's listener accepted it (listeners)       | accepted  |
 * | dialing   | the connect completed: the guest gets its SYN-ACK  | open      |
 * | dialing   | the connect failed (next DNS upstream: a new conn) | closed    |
 * | dialing   | the flow closed (guest RST, dial timeout)          | closed    |
 * | accepted  | the guest completed the handshake (onEstablished)  | open      |
 * | accepted  | the guest cannot be reached, refused, timed out    | closed    |
 * | open      | the flow closed normally (the socket may still owe | lingering |
 * |           |   a write, our FIN or the host's EOF; when nothing |           |
 * |           |   is owed it goes on to closed in the same call)   |           |
 * | open      | the flow was reset or timed out (RST to the host)  | closed    |
 * | open      | a host socket error (the guest gets a RST)         | closed    |
 * | lingering | tail written, SHUT_WR sent and the host's EOF read | closed    |
 * | lingering | a socket error, or `lingerMs` passed               | closed    |
 * | any       | shutdown (SocketTable.close)                       | closed    |
 *
 * - dialing: connect() in flight (or `dialError`: it failed at once, reported
 *   at the end of the batch). Nothing is read or written.
 * - accepted: connected, `flow` null until the NAT has one (attach); bytes
 *   the guest sends go to the host, but nothing is read from the host until
 *   the guest completed its handshake.
 * - open: bytes move both ways through the flow's TcpStream.
 * - lingering: the flow is gone and its rings are back in the pool. What the
 *   guest sent last is written from `tail` (a copy), then SHUT_WR; reads are
 *   dropped until the host's EOF. The linger timer bounds the wait.
 * - closed: fd closed, slot freed; terminal, every later call is a no-op.
 *
 * toHost (our writes: the guest -> host direction)
 * - open -> blocked: a write hit EAGAIN or was short; blocked -> open: EPOLLOUT (or ERR).
 * - open -> shut: SHUT_WR, once the guest's FIN came and every byte before it is written.
 *   (blocked and shut never hold together: SHUT_WR waits for the writes.)
 *
 * fromHost (our reads: the host -> guest direction)
 * - open -> full: the send ring is full; full -> due: it has room again (onSendSpace).
 * - open -> due: the guest completed an accepted connection's handshake.
 * - due -> open: the end-of-batch drain reads.
 * - any -> eof: the host's EOF was read (or known: see peer).
 *
 * peer (what epoll said about the host's end; used to end a run of reads)
 * - open -> shut: EPOLLERR (the error is still to be read);
 *   open or shut -> fin: EPOLLRDHUP or EPOLLHUP without ERR: nothing can
 *   follow the bytes queued, so a short read is the end and the read that
 *   would return 0 is spared.
 *
 * queued: in the end-of-batch list of the pump (one write per flow per batch).
 */
import type { TcpFlow } from '../../stack/nat/tcp-nat.js';
import type { SocketHandler } from './socket-table.js';

export type HostConnState = 'dialing' | 'accepted' | 'open' | 'lingering' | 'closed';
export type ToHost = 'open' | 'blocked' | 'shut';
export type FromHost = 'open' | 'full' | 'due' | 'eof';
export type PeerNews = 'open' | 'shut' | 'fin';

/** Where a connection's epoll events and its shutdown go (TcpProxy routes them by state). */
export interface HostConnOwner {
  connEvent(c: HostConn, bits: number, now: number): void;
  closeConn(c: HostConn, abort: boolean): void;
}

export class HostConn implements SocketHandler {
  token = 0;
  fd = -1;
  toHost: ToHost = 'open';
  fromHost: FromHost = 'open';
  peer: PeerNews = 'open';
  queued = false;
  /** connect() failed at once: -errno, reported at the end of the batch. */
  dialError = 0;
  /** What the guest sent before a normal close, still to write (lingering). */
  tail: Buffer | null = null;
  lingerTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly owner: HostConnOwner,
    public state: HostConnState,
    /** Null for an accepted socket until the NAT has a flow for it. */
    public flow: TcpFlow | null,
    /** Which DNS upstream a dial to N+3:53 went to. */
    readonly dnsAttempt: number,
  ) {}

  /** A call may have closed it (TypeScript keeps a narrowed `state` across calls). */
  get closed(): boolean {
    return this.state === 'closed';
  }

  onEvent(bits: number, now: number): void {
    this.owner.connEvent(this, bits, now);
  }

  close(): void {
    this.owner.closeConn(this, false);
  }
}
