/**
 * The byte pump: moves a TCP flow's bytes between its host socket and the
 * flow's rings, through the flow's TcpStream (stack/nat/tcp-stream.ts) only.
 *
 * How it works
 * - host -> guest: reads go straight into the stream's writable region (the
 *   send ring the guest's segments are cut from), until EAGAIN, EOF, or the
 *   ring is full; a full ring makes fromHost 'full', and onSendSpace makes
 *   the read due at the end of the batch.
 * - guest -> host: readable bytes are written from where they are (the
 *   receive ring, or a big segment still in the tap's receive slot: see
 *   stack/tcp/receive-buffer.ts, one write per such segment) and consumed as
 *   the kernel takes them; EAGAIN makes toHost
 *   'blocked' until the socket's next EPOLLOUT. Meanwhile the ring fills and
 *   the window the guest sees closes: buffering is bounded, nothing is
 *   dropped. One write per flow per batch: onReadable only queues the
 *   connection, and `drain` (the runtime's flush) writes.
 * - Half-close both ways: the guest's FIN becomes shutdown(SHUT_WR) once its
 *   data is written; the host's EOF becomes our FIN after the queued data.
 * - A connection that ended normally while the host still owes its EOF, or
 *   we still owe writes, lingers: what the guest sent last is written from a
 *   copy (the flow's rings go back to the pool at once), reads are dropped,
 *   until the EOF comes or `lingerMs` pass.
 * - Without EPOLLRDHUP (old gVisor) a FIN that arrives with the last bytes is
 *   only an EPOLLIN and no later edge announces it: a short read then reads
 *   on to EAGAIN or EOF.
 * - Closing a socket is synchronous, so a closed flow's rings go back to the
 *   pool at once: nothing can read into them any more.
 * The connection's states and their transitions are in tcp-host-conn.ts.
 */
import type { TcpCloseReason } from '../../stack/tcp/connection.js';
import type { TcpStream } from '../../stack/nat/tcp-stream.js';
import { native } from '../native/addon.js';
import type { Logger } from '../log.js';
import { EAGAIN, errnoName } from './errno.js';
import { EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, EPOLLRDHUP, type BatchWork, type SocketTable } from './socket-table.js';
import type { HostConn } from './tcp-host-conn.js';

/** Whether this system's epoll announces a TCP peer's FIN as EPOLLRDHUP: probed once per process. */
let rdhupProbe: boolean | null = null;
function finComesAsRdhup(log: Logger): boolean {
  if (rdhupProbe === null) {
    rdhupProbe = native.tcpReportsRdhup();
    if (!rdhupProbe) log.info('host TCP sockets: epoll reports no EPOLLRDHUP here (gVisor before 2023-07): reading on to EAGAIN after short reads');
  }
  return rdhupProbe;
}

export class TcpPump {
  /** Open host TCP connections (listeners not counted). */
  sockets = 0;
  /**
   * Connections to handle at the end of the batch: queue[0, queueLen). Emptied by count, not by
   * `length = 0`, which would drop the backing store and make the next push allocate one
   * (a few hundred bytes per batch, on every request/response).
   */
  private queue: (HostConn | null)[] = [];
  private queueLen = 0;
  private spareQueue: (HostConn | null)[] = [];
  /** Reads into here only to see a host's EOF after its guest connection is gone. */
  private readonly scratch = Buffer.allocUnsafe(16_384);
  /**
   * The FIN comes with EPOLLRDHUP (Linux). Without it (old gVisor) a FIN that arrived with the
   * last bytes is only an EPOLLIN, and no later edge announces it: a short read then reads on.
   */
  private readonly rdhup: boolean;

  constructor(
    private readonly table: SocketTable,
    /** The runtime's count of what this batch moved (busy polling). */
    private readonly work: BatchWork,
    private readonly clock: () => number,
    private readonly lingerMs: number,
    private readonly log: Logger,
    /** "10.0.2.100:40000 -> 10.0.2.2:80", for logs. */
    private readonly describe: (c: HostConn) => string,
  ) {
    this.rdhup = finComesAsRdhup(log);
  }

  /** A dialed or accepted socket got its fd: it counts as open from here. */
  adopt(c: HostConn, fd: number): void {
    c.fd = fd;
    this.sockets++;
  }

  // ---- events ----

  /** An epoll event for an accepted, open or lingering connection. */
  onEvent(c: HostConn, bits: number, now: number): void {
    if (c.flow === null) {
      // Accepted, no flow yet: a client that left is seen when the flow reads.
      return;
    }
    if ((bits & (EPOLLOUT | EPOLLERR)) !== 0 && c.toHost === 'blocked') {
      c.toHost = 'open';
      if (c.tail !== null) this.writeTail(c);
      else this.pump(c, now);
    }
    if (!c.closed && (bits & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) !== 0) this.readHost(c, now);
  }

  /** A dialed connection is open (the dialer): a server that speaks first may have sent already. */
  startReading(c: HostConn, now: number): void {
    this.readHost(c, now);
  }

  /** The guest completed an accepted connection's handshake: start reading the host. */
  established(c: HostConn): void {
    if (c.state !== 'accepted') return;
    c.state = 'open';
    this.queueRead(c);
  }

  // ---- host -> guest ----

  /** Reads into the send ring until EAGAIN, EOF or a full ring. */
  private readHost(c: HostConn, now: number): void {
    if (c.fromHost === 'eof') return;
    if (c.state === 'lingering') {
      this.drainClosed(c);
      return;
    }
    if (c.state !== 'open') return;
    const s: TcpStream = c.flow as TcpStream;
    let moved = false;
    for (;;) {
      const r = s.writable();
      if (r.len === 0) {
        c.fromHost = 'full';
        break;
      }
      // The region object is the ring's and commit reuses it (segments are cut through it).
      const room = r.len;
      const n = this.table.io.read(c.fd, r.buf, r.off, room);
      if (n > 0) {
        this.work.bytes += n;
        s.commit(n, now);
        moved = true;
        // A short read emptied the socket: the next data brings a new edge (an EOF or error
        // already announced does not, so then read on).
        if (n < room) {
          if (c.peer === 'fin') {
            // The FIN came with or before these bytes: this was the end.
            this.hostEnded(c, now);
            return;
          }
          if (c.peer === 'open' && this.rdhup) break;
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
    if (moved) s.pushed(now);
  }

  /** Lingering: read and drop until the host's EOF, then close. */
  private drainClosed(c: HostConn): void {
    for (;;) {
      const n = this.table.io.read(c.fd, this.scratch, 0, this.scratch.length);
      if (n > 0) continue;
      if (n === 0) {
        c.fromHost = 'eof';
        this.maybeClose(c);
      } else if (n !== EAGAIN) this.close(c, false);
      return;
    }
  }

  /** The host sent EOF: our FIN follows the queued data. */
  private hostEnded(c: HostConn, now: number): void {
    c.fromHost = 'eof';
    (c.flow as TcpStream).end(now);
    this.maybeClose(c);
  }

  private hostError(c: HostConn, err: number, now: number): void {
    this.log.debug(`tcp ${this.describe(c)}: host socket error ${errnoName(err)}`);
    this.close(c, false);
    (c.flow as TcpStream).abort(now);
  }

  /** Room opened in the send ring: read again at the end of the batch. */
  onSendSpace(c: HostConn): void {
    if (c.fromHost !== 'full') return;
    this.queueRead(c);
  }

  /** Reads at the end of the batch (from the engine's own events the connection must not be re-entered). */
  private queueRead(c: HostConn): void {
    c.fromHost = 'due';
    this.enqueue(c);
  }

  // ---- guest -> host ----

  /**
   * New guest bytes: queue the connection and move them at the end of the batch
   * (`drain`), so a batch of segments becomes one socket write, not one per segment.
   */
  onReadable(c: HostConn): void {
    this.enqueue(c);
  }

  private enqueue(c: HostConn): void {
    if (c.queued) return;
    c.queued = true;
    this.queue[this.queueLen++] = c;
  }

  /** End of a batch (the runtime's flush): writes and reads what each queued connection has. */
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
        if (c.state === 'closed' || c.state === 'dialing') continue;
        this.pump(c, now);
        if (c.fromHost === 'due') {
          c.fromHost = 'open';
          this.readHost(c, now);
        }
      }
      this.spareQueue = list;
    }
  }

  /** Writes the receive ring's readable bytes from where they are. */
  private pump(c: HostConn, now: number): void {
    if ((c.state !== 'open' && c.state !== 'accepted') || c.flow === null || c.toHost !== 'open') return;
    const s: TcpStream = c.flow;
    while (s.readable() > 0) {
      const r = s.peek();
      const len = r.len;
      const n = this.table.io.write(c.fd, r.buf, r.off, len);
      if (n > 0) {
        this.work.bytes += n;
        // The window opens: the end-of-batch flush tells the guest (pump runs inside a batch).
        s.consume(n, now);
        if (n < len) {
          c.toHost = 'blocked';
          break;
        }
        continue;
      }
      if (n === EAGAIN) c.toHost = 'blocked';
      else this.hostError(c, n, now);
      break;
    }
    if (!c.closed && c.toHost === 'open' && s.guestFinished && s.readable() === 0) this.endHost(c);
  }

  /** shutdown(SHUT_WR) once everything the guest sent is written. */
  private endHost(c: HostConn): void {
    if (c.toHost === 'shut') return;
    c.toHost = 'shut';
    this.table.io.shutdown(c.fd);
    this.maybeClose(c);
  }

  /** The rest of a normally closed connection's data, from its copy. */
  private writeTail(c: HostConn): void {
    const t = c.tail as Buffer;
    const n = this.table.io.write(c.fd, t, 0, t.length);
    if (n === t.length) {
      c.tail = null;
      this.endHost(c);
    } else if (n > 0 || n === EAGAIN) {
      if (n > 0) c.tail = t.subarray(n);
      c.toHost = 'blocked';
    } else {
      this.close(c, false);
    }
  }

  // ---- the end ----

  /** The flow is over (TcpHostEnv.onClosed); `c` is its connection, if it still has one. */
  flowClosed(s: TcpStream, c: HostConn | null, reason: TcpCloseReason): void {
    if (c === null || c.state === 'closed') {
      // The socket is gone already (or there never was one).
      s.release();
      return;
    }
    if (reason !== 'normal' || c.state === 'dialing') {
      // A connected socket is reset, so the host sees the guest's abort as one.
      this.close(c, (reason === 'reset' || reason === 'timeout') && c.state !== 'dialing');
      s.release();
      return;
    }
    // Everything the guest sent before its FIN is still to be written, then our FIN.
    const left = c.toHost === 'shut' ? 0 : s.readable();
    if (left > 0) {
      const tail = Buffer.allocUnsafe(left);
      let at = 0;
      while (s.readable() > 0) {
        const r = s.peek();
        r.buf.copy(tail, at, r.off, r.off + r.len);
        at += r.len;
        s.consume(r.len, this.clock());
      }
      c.tail = tail;
    }
    s.release();
    c.state = 'lingering';
    if (c.toHost === 'open') {
      if (c.tail !== null) this.writeTail(c);
      else this.endHost(c);
    }
    if (c.closed) return;
    this.maybeClose(c);
    if (!c.closed) {
      // A host that never closes its side must not keep the socket forever.
      c.lingerTimer = setTimeout(() => this.close(c, false), this.lingerMs);
      c.lingerTimer.unref();
    }
  }

  private maybeClose(c: HostConn): void {
    if (c.toHost === 'shut' && c.fromHost === 'eof' && c.state === 'lingering') this.close(c, false);
  }

  /** Closes the socket (abort: with a RST) and frees its slot; safe to call twice. */
  close(c: HostConn, abort: boolean): void {
    if (c.lingerTimer !== null) {
      clearTimeout(c.lingerTimer);
      c.lingerTimer = null;
    }
    if (c.fd >= 0) {
      this.table.io.closeSocket(c.fd, abort);
      c.fd = -1;
      this.sockets--;
    }
    c.state = 'closed';
    this.table.remove(c);
  }
}
