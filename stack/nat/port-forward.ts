/**
 * The engine side of port forwarding (host -> guest), sans-IO: it turns
 * "a host client connected" and "a host client sent a datagram" into flows
 * towards the guest, finding the guest's MAC first.
 *
 * How it works
 * - The runtime owns the listening sockets; for each accepted TCP socket it
 *   calls `connectTcp`, for each datagram `sendUdp`.
 * - A guest that has not sent anything has no entry in Neighbors, and a
 *   SYN or datagram needs a destination MAC. Then the work is parked as a
 *   waiter on Neighbors.resolve, which ARPs for the guest (bounded queue,
 *   a few retries). Waiting datagrams are copied (they are rare: only the
 *   first ones to a silent guest), at most UDP_WAITING_MAX per forward.
 * - TCP results come back through the callback given to connectTcp: the
 *   flow (SYN sent; the runtime attaches its socket to flow.host) or null
 *   with a reason, after which the runtime closes its socket.
 */
import type { Neighbors, NeighborWaiter } from '../ip/neighbors.js';
import type { TcpFlow, TcpNat } from './tcp-nat.js';
import type { UdpNat } from './udp-nat.js';
import type { IpAddresses } from '../ip/ip-addresses.js';
import { newDropCounters, type DropCounts } from '../counters.js';
import type { DropReason } from '../drop-reasons.js';

/** Datagrams of one forward that may wait for ARP at once. */
export const UDP_WAITING_MAX = 32;

export type InboundTcpResult = (flow: TcpFlow | null, reason: string | null, now: number) => void;

export interface PortForwardStats {
  tcpConnects: number;
  tcpOpened: number;
  udpDatagrams: number;
  drops: DropCounts;
}

class TcpWaiter implements NeighborWaiter {
  constructor(
    private readonly pf: InboundForwarder,
    private readonly guestIp: number,
    private readonly guestPort: number,
    private readonly host: unknown,
    private readonly done: InboundTcpResult,
  ) {}
  resolved(mac: number, now: number): void {
    this.pf.openTcp(this.guestIp, this.guestPort, mac, this.host, this.done, now);
    this.pf.addrs.release(this.guestIp);
  }
  failed(now: number): void {
    this.pf.addrs.release(this.guestIp);
    this.pf.bump('arp-failed');
    this.done(null, 'arp-failed', now);
  }
}

class UdpWaiter implements NeighborWaiter {
  constructor(
    private readonly pf: InboundForwarder,
    private readonly forwardId: number,
    private readonly clientIp: number,
    private readonly clientPort: number,
    private readonly guestIp: number,
    private readonly guestPort: number,
    private readonly data: Buffer,
  ) {}
  resolved(mac: number, now: number): void {
    this.pf.udpWaitDone(this.forwardId);
    this.pf.deliverUdp(this.forwardId, this.clientIp, this.clientPort, this.guestIp, this.guestPort, mac, this.data, 0, this.data.length, now);
    this.release();
  }
  failed(_now: number): void {
    this.pf.udpWaitDone(this.forwardId);
    this.pf.bump('arp-failed');
    this.release();
  }
  private release(): void {
    this.pf.addrs.release(this.guestIp);
    this.pf.addrs.release(this.clientIp);
  }
}

export class InboundForwarder {
  private tcpConnects = 0;
  private tcpOpened = 0;
  private udpDatagrams = 0;
  private readonly udpWaiting = new Map<number, number>();
  private readonly dropped = newDropCounters();

  /** Waiters hold a reference on the addresses they carry (ip-addresses.ts). */
  readonly addrs: IpAddresses;

  constructor(
    private readonly neighbors: Neighbors,
    private readonly tcp: TcpNat,
    private readonly udp: UdpNat,
  ) {
    this.addrs = tcp.addrs;
  }

  /**
   * A host client connected to a TCP forward: open a connection to
   * guestIp:guestPort. `done` runs once, maybe before this returns.
   */
  connectTcp(guestIp: number, guestPort: number, host: unknown, done: InboundTcpResult, now: number): void {
    this.tcpConnects++;
    const mac = this.neighbors.lookup(guestIp);
    if (mac >= 0) return this.openTcp(guestIp, guestPort, mac, host, done, now);
    this.addrs.retain(guestIp);
    if (!this.neighbors.resolve(guestIp, new TcpWaiter(this, guestIp, guestPort, host, done), now)) {
      this.addrs.release(guestIp);
      this.bump('arp-queue-full');
      done(null, 'arp-queue-full', now);
    }
  }

  /** @internal (TcpWaiter) */
  openTcp(guestIp: number, guestPort: number, mac: number, host: unknown, done: InboundTcpResult, now: number): void {
    const flow = this.tcp.openInbound(guestIp, guestPort, mac, host, now);
    if (flow === null) {
      this.bump('tcp-open-failed');
      done(null, 'tcp-open-failed', now);
      return;
    }
    this.tcpOpened++;
    done(flow, null, now);
  }

  /** A datagram from a host client of UDP forward `forwardId`; buf is only read during the call. */
  sendUdp(
    forwardId: number,
    clientIp: number,
    clientPort: number,
    guestIp: number,
    guestPort: number,
    buf: Buffer,
    off: number,
    len: number,
    now: number,
  ): void {
    this.udpDatagrams++;
    const mac = this.neighbors.lookup(guestIp);
    if (mac >= 0) return this.deliverUdp(forwardId, clientIp, clientPort, guestIp, guestPort, mac, buf, off, len, now);
    const waiting = this.udpWaiting.get(forwardId) ?? 0;
    if (waiting >= UDP_WAITING_MAX) return this.bump('udp-arp-queue-full');
    const copy = Buffer.from(buf.subarray(off, off + len));
    const w = new UdpWaiter(this, forwardId, this.addrs.retain(clientIp), clientPort, this.addrs.retain(guestIp), guestPort, copy);
    this.udpWaiting.set(forwardId, waiting + 1);
    if (!this.neighbors.resolve(guestIp, w, now)) {
      this.udpWaitDone(forwardId);
      this.addrs.release(clientIp);
      this.addrs.release(guestIp);
      this.bump('arp-queue-full');
    }
  }

  /** @internal (UdpWaiter) */
  deliverUdp(
    forwardId: number,
    clientIp: number,
    clientPort: number,
    guestIp: number,
    guestPort: number,
    mac: number,
    buf: Buffer,
    off: number,
    len: number,
    now: number,
  ): void {
    const bad = this.udp.fromForward(forwardId, clientIp, clientPort, guestIp, guestPort, mac, buf, off, len, now);
    if (bad !== null) this.bump(bad);
  }

  /** @internal (UdpWaiter) */
  udpWaitDone(forwardId: number): void {
    const n = (this.udpWaiting.get(forwardId) ?? 1) - 1;
    if (n <= 0) this.udpWaiting.delete(forwardId);
    else this.udpWaiting.set(forwardId, n);
  }

  /** @internal */
  bump(reason: DropReason): void {
    this.dropped.add(reason);
  }

  stats(): PortForwardStats {
    return { tcpConnects: this.tcpConnects, tcpOpened: this.tcpOpened, udpDatagrams: this.udpDatagrams, drops: this.dropped.snapshot() };
  }
}
