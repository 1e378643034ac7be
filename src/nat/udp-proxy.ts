/**
 * The host side of the UDP NAT: one connected datagram socket per guest flow
 * (connected, so the kernel reports ICMP port unreachable as ECONNREFUSED and
 * only the flow's peer can answer), and one socket per address family for
 * the DNS forwarder's upstream queries.
 *
 * Datagrams the guest sends before the socket is connected wait in a short
 * queue (PENDING_MAX); beyond it they are dropped and counted, as a full
 * socket buffer would drop them.
 *
 * Port forwards register their bound socket with `addForwardSocket`; guest
 * replies on inbound flows leave through it to the client (`sendToClient`).
 */
import { isFdShortage, noteFdShortage } from '../fd-shortage.js';
import { createSocket, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { UdpHostEnv, UdpNat } from '../../stack/nat/udp-nat.js';
import type { UdpFlow } from '../../stack/nat/udp-flows.js';
import { isIpv6Handle } from '../../stack/nat/ip-addresses.js';
import type { Logger } from '../log.js';
import { ErrnoCounts, newDropCounters, type DropAndErrnoCounts } from '../../stack/counters.js';
import type { DropReason } from '../../stack/drop-reasons.js';

const PENDING_MAX = 64;

interface FlowSocket {
  socket: Socket;
  generation: number;
  connected: boolean;
  pending: Buffer[] | null;
  /** The connect failed: what the guest sends on this flow is dropped (counted). */
  failed: boolean;
}

export class UdpProxy implements UdpHostEnv {
  private readonly sockets = new Map<number, FlowSocket>();
  private dns4: Socket | null = null;
  private dns6: Socket | null = null;
  private readonly forwardSockets = new Map<number, Socket>();
  private readonly dropped = newDropCounters();
  /** Drops by reason so far (allocates: for stats and tests). */
  /** Host socket errors by errno, among the drops as 'udp-EMSGSIZE' and the like. */
  private readonly socketErrors = new ErrnoCounts('udp-');
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
    return this.sockets.size + (this.dns4 ? 1 : 0) + (this.dns6 ? 1 : 0);
  }

  open(flow: UdpFlow): void {
    this.sockets.get(flow.id)?.socket.close();
    const six = isIpv6Handle(flow.hostIp);
    const socket = createSocket({ type: six ? 'udp6' : 'udp4' });
    const fs: FlowSocket = { socket, generation: flow.generation, connected: false, pending: [], failed: false };
    this.sockets.set(flow.id, fs);
    const host = this.nat.output.addrs.format(flow.hostIp);
    const current = () => this.sockets.get(flow.id) === fs && flow.active && flow.generation === fs.generation;
    socket.on('message', (msg) => {
      if (!current()) return;
      const now = this.clock();
      this.nat.fromHost(flow, msg, 0, msg.length, now);
      this.flushPorts(now);
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (!current()) return;
      if (err.code === 'ECONNREFUSED') {
        const now = this.clock();
        this.nat.hostRefused(flow, now);
        this.flushPorts(now);
      } else {
        this.log.debug(`udp ${host}:${flow.hostPort}: ${err.code ?? err.message}`);
        if (isFdShortage(err.code)) noteFdShortage(this.log, 'udp', this.clock());
        this.socketErrors.add(err.code ?? 'error');
      }
    });
    const connect = () =>
      socket.connect(flow.hostPort, host, (err?: Error) => {
        // A failed connect comes here, not as an 'error' event, and leaves the socket unconnected:
        // sending on it would throw. Drop what waited (the guest's datagrams were never accepted).
        if (err) {
          const code = (err as NodeJS.ErrnoException).code ?? 'error';
          this.log.debug(`udp ${host}:${flow.hostPort}: connect: ${code}`);
          if (isFdShortage(code)) noteFdShortage(this.log, 'udp', this.clock());
          this.socketErrors.add(code);
          for (let i = fs.pending?.length ?? 0; i > 0; i--) this.bump('udp-connect-failed');
          fs.pending = null;
          fs.failed = true;
          return;
        }
        fs.connected = true;
        const q = fs.pending;
        fs.pending = null;
        if (q !== null) for (const d of q) socket.send(d);
      });
    const local = six ? this.outboundAddress6 : this.outboundAddress;
    if (local !== null && !host.startsWith('127.') && host !== '::1') socket.bind({ address: local, port: 0 }, connect);
    else connect();
  }

  send(flow: UdpFlow, buf: Buffer, off: number, len: number): void {
    const fs = this.sockets.get(flow.id);
    if (fs === undefined) return this.bump('udp-no-socket');
    // dgram keeps the buffer until the datagram is sent: give it its own copy.
    const copy = Buffer.allocUnsafe(len);
    buf.copy(copy, 0, off, off + len);
    if (fs.connected) fs.socket.send(copy);
    else if (fs.pending !== null && fs.pending.length < PENDING_MAX) fs.pending.push(copy);
    else this.bump(fs.failed ? 'udp-connect-failed' : 'udp-pending-full');
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
    const fs = this.sockets.get(flow.id);
    if (fs === undefined) return;
    this.sockets.delete(flow.id);
    fs.socket.close();
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
    for (const fs of this.sockets.values()) fs.socket.close();
    this.sockets.clear();
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
