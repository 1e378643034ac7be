/**
 * The dialer: one non-blocking host connect per guest connection.
 *
 * How it works
 * - Where: the flow's host address (127.0.0.1 for the gateway, the address
 *   itself otherwise), or for N+3:53 the DNS upstreams, tried in order: a
 *   failed connect to one moves on to the next (a new HostConn) and only the
 *   last failure reaches the guest. Outbound sockets to non-loopback
 *   addresses bind to --outbound-addr(6) when given (not DNS over IPv6).
 * - When: at the end of the batch that dialed (settlePending) we ask whether
 *   the connect is done already, which it usually is on loopback, so the
 *   guest's SYN-ACK leaves in that batch instead of a loop turn later;
 *   otherwise the socket's first event settles it (writable without an error
 *   or hang-up: done, no status() call needed).
 * - The guest's SYN is answered only once the connect succeeded; its
 *   failure's errno decides the guest's answer (the NAT: RST for
 *   ECONNREFUSED, ICMP host unreachable otherwise). A dial that takes longer
 *   than `dialTimeoutMs` is the NAT's deadline, not a timer here.
 * - Every call into the NAT about a dial (what to dial, success, failure,
 *   the timeout) is in the last section of this class, "the NAT's side".
 */
import type { TcpFlow, TcpNat } from '../../stack/nat/tcp-nat.js';
import type { Logger } from '../log.js';
import { EINPROGRESS, errnoName } from './errno.js';
import { isFdShortage, noteFdShortage } from '../fd-shortage.js';
import { EPOLLERR, EPOLLHUP, EPOLLOUT, type SocketTable } from './socket-table.js';
import { HostConn, type HostConnOwner } from './tcp-host-conn.js';
import type { TcpPump } from './tcp-pump.js';

export interface TcpDialerOptions {
  dialTimeoutMs: number;
  /** Where TCP to N+3:53 goes: the DNS upstreams, tried in order. */
  dnsUpstreams: { ip: string; port: number }[];
  /** Local address for outbound sockets (slirp4netns --outbound-addr), or null. */
  outboundAddress: string | null;
  /** The same for connections to IPv6 destinations (slirp4netns --outbound-addr6). */
  outboundAddress6?: string | null;
}

export class TcpDialer {
  /** Dials to settle at the end of the batch: pending[0, pendingLen) (reused arrays, as the pump's queue). */
  private pending: (HostConn | null)[] = [];
  private pendingLen = 0;
  private sparePending: (HostConn | null)[] = [];

  constructor(
    private readonly nat: TcpNat,
    private readonly table: SocketTable,
    private readonly pump: TcpPump,
    private readonly owner: HostConnOwner,
    private readonly opts: TcpDialerOptions,
    private readonly clock: () => number,
    private readonly log: Logger,
  ) {
    nat.dialTimeoutMs = opts.dialTimeoutMs;
  }

  dial(flow: TcpFlow): void {
    this.connect(flow, 0);
  }

  private connect(flow: TcpFlow, dnsAttempt: number): void {
    const to = this.target(flow, dnsAttempt);
    if (to === null) {
      this.failed(flow, 'EHOSTUNREACH');
      return;
    }
    const v6 = to.host.includes(':');
    const local = isLoopback(to.host) ? null : v6 ? (flow.toDns ? null : (this.opts.outboundAddress6 ?? null)) : this.opts.outboundAddress;
    const c = new HostConn(this.owner, 'dialing', flow, dnsAttempt);
    this.table.add(c);
    flow.host = c;
    const fd = this.table.io.connect(c.token, v6 ? 6 : 4, to.host, to.port, local);
    if (fd < 0) c.dialError = fd;
    else this.pump.adopt(c, fd);
    // Settled at the end of this batch (the NAT is in the middle of the SYN now).
    this.pending[this.pendingLen++] = c;
  }

  /** An epoll event for a dialing connection. */
  onEvent(c: HostConn, bits: number, now: number): void {
    // Writable without an error or hang-up: the connect is done (no status() call needed).
    if ((bits & (EPOLLOUT | EPOLLERR | EPOLLHUP)) === EPOLLOUT) this.connected(c, now);
    else this.settle(c, now);
  }

  /** End of a batch: settles the dials it started (done already, on loopback, most of the time). */
  settlePending(now: number): void {
    while (this.pendingLen > 0) {
      const list = this.pending;
      const n = this.pendingLen;
      this.pending = this.sparePending;
      this.pendingLen = 0;
      for (let i = 0; i < n; i++) {
        const c = list[i] as HostConn;
        list[i] = null;
        if (c.state === 'dialing') this.settle(c, now);
      }
      this.sparePending = list;
    }
  }

  /** Is the connect done? */
  private settle(c: HostConn, now: number): void {
    const flow = c.flow as TcpFlow;
    const st = c.dialError !== 0 ? c.dialError : this.table.io.status(c.fd);
    if (st === EINPROGRESS) return;
    if (st < 0) {
      this.pump.close(c, false);
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
    c.state = 'open';
    this.succeeded(c.flow as TcpFlow, now);
    this.pump.startReading(c, now);
  }

  // ---- the NAT's side of a dial: every call into TcpNat about dialing is here ----

  /** The address to connect to: the flow's host address, or the DNS upstream number `dnsAttempt`; null: none left. */
  private target(flow: TcpFlow, dnsAttempt: number): { host: string; port: number } | null {
    if (flow.toDns) {
      const up = this.opts.dnsUpstreams[dnsAttempt];
      return up === undefined ? null : { host: up.ip, port: up.port };
    }
    return { host: this.nat.addrs.format(flow.hostIp), port: flow.hostPort };
  }

  /** The guest gets its SYN-ACK. */
  private succeeded(flow: TcpFlow, now: number): void {
    this.nat.dialSucceeded(flow, now);
  }

  /** The guest gets a RST (ECONNREFUSED) or ICMP host unreachable. */
  private failed(flow: TcpFlow, code: string): void {
    const now = this.clock();
    this.log.debug(`tcp ${describeFlow(this.nat, flow)}: connect failed: ${code}`);
    if (isFdShortage(code)) noteFdShortage(this.log, 'tcp', now);
    this.nat.dialFailed(flow, code, now);
  }
}

/** "10.0.2.100:40000 -> 10.0.2.2:80", for logs. */
export function describeFlow(nat: TcpNat, flow: TcpFlow): string {
  const a = nat.addrs;
  return `${a.format(flow.guestIp)}:${flow.guestPort} -> ${a.format(flow.remoteIp)}:${flow.remotePort}`;
}

function isLoopback(host: string): boolean {
  return host.startsWith('127.') || host === '::1';
}
