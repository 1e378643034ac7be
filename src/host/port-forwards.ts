/**
 * Host side of port forwarding: one listening TCP server or bound UDP socket
 * per forward, from host addr:port to guest addr:port.
 *
 * How it works
 * - TCP: the listener is a native socket of the host TCP epoll set
 *   (tcp-listeners.ts, through TcpProxy.listen); each accepted
 *   socket goes to the engine (Nat.inbound.connectTcp), which ARPs for the
 *   guest if needed and opens a connection from N+2; the socket is then
 *   attached to the flow (TcpProxy.attach) and proxied like any other, read
 *   only once the guest answered. If the guest cannot be reached (ARP gave
 *   up, table full) the socket is reset.
 * - UDP: every datagram on the bound socket goes to Nat.inbound.sendUdp with
 *   its client address; the guest's replies come back through UdpProxy's
 *   sendToClient on the same socket.
 * - Ids start at 1 and are never reused. `remove` closes the listener only:
 *   TCP connections already accepted live on (UDP flows end with their
 *   socket, which is the listener).
 * - Either IP version on either side: the host side is a proxy, so a host
 *   listener on ::1 may lead to an IPv4 guest and the other way round. The
 *   guest address is interned for the forward's lifetime (a handle, see
 *   stack/ip/ip-addresses.ts); an IPv6 guest needs IPv6 enabled.
 */
import { isIP } from 'node:net';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import type { Nat } from '../../stack/nat/nat.js';
import { isIpv6Handle } from '../../stack/ip/ip-addresses.js';
import type { Logger } from '../log.js';
import type { AcceptedSocket, TcpProxy } from './tcp-proxy.js';
import type { UdpProxy } from './udp-proxy.js';
import { UsernetError } from '../errors.js';

export type ForwardProto = 'tcp' | 'udp';

export interface ForwardSpec {
  proto: ForwardProto;
  /** IPv4 or IPv6 address; 0.0.0.0 (or ::) for every address. */
  hostAddr: string;
  hostPort: number;
  /** An address inside the IPv4 network or the IPv6 prefix. */
  guestAddr: string;
  guestPort: number;
}

export interface ForwardEntry extends ForwardSpec {
  id: number;
}

interface Forward {
  entry: ForwardEntry;
  guestIp: number;
  /** TcpProxy's id of the TCP listener. */
  listener: number | null;
  udp: UdpSocket | null;
}

/** A forward could not be set up (bad address, port taken); `code` is the errno name when the OS refused. */
export class ForwardError extends UsernetError {}

export class PortForwards {
  private readonly forwards = new Map<number, Forward>();
  private nextId = 1;

  constructor(
    private readonly nat: Nat,
    private readonly tcpProxy: TcpProxy,
    private readonly udpProxy: UdpProxy,
    private readonly clock: () => number,
    private readonly flushPorts: (now: number) => void,
    private readonly log: Logger,
  ) {}

  /** Starts listening; resolves once bound, rejects with ForwardError otherwise. */
  async add(spec: ForwardSpec): Promise<ForwardEntry> {
    if (isIP(spec.hostAddr) === 0) throw new ForwardError('ERR_FORWARD_ADDRESS', `host address ${spec.hostAddr} is not an IP address`);
    if (isIP(spec.guestAddr) === 0) throw new ForwardError('ERR_FORWARD_ADDRESS', `guest address ${spec.guestAddr} is not an IP address`);
    const addrs = this.nat.addrs;
    let guestIp: number;
    try {
      guestIp = addrs.parse(spec.guestAddr);
    } catch (err) {
      throw new ForwardError('ERR_FORWARD_ADDRESS', `guest address ${spec.guestAddr}: ${(err as Error).message}`);
    }
    if (!this.nat.addressMap.isGuestSide(guestIp)) {
      addrs.release(guestIp);
      const where = isIpv6Handle(guestIp) ? (!this.nat.ipv6Enabled ? 'IPv6 is off' : 'it is outside the IPv6 prefix') : 'it is outside the network';
      throw new ForwardError('ERR_FORWARD_ADDRESS', `guest address ${spec.guestAddr}: ${where}`);
    }
    const id = this.nextId++;
    const entry: ForwardEntry = { id, ...spec };
    const fw: Forward = { entry, guestIp, listener: null, udp: null };
    try {
      if (spec.proto === 'tcp') fw.listener = this.listenTcp(fw);
      else fw.udp = await this.bindUdp(fw);
    } catch (err) {
      addrs.release(guestIp);
      throw err;
    }
    this.forwards.set(id, fw);
    this.log.info(`forward ${id}: ${describeForward(spec)}`);
    return entry;
  }

  /** Closes the listener of forward `id`; false when there is none. */
  remove(id: number): boolean {
    const fw = this.forwards.get(id);
    if (fw === undefined) return false;
    this.forwards.delete(id);
    this.close(fw);
    return true;
  }

  list(): ForwardEntry[] {
    return [...this.forwards.values()].map((f) => ({ ...f.entry }));
  }

  closeAll(): void {
    for (const fw of this.forwards.values()) this.close(fw);
    this.forwards.clear();
  }

  private close(fw: Forward): void {
    if (fw.listener !== null) this.tcpProxy.closeListener(fw.listener);
    if (fw.udp !== null) {
      this.udpProxy.removeForwardSocket(fw.entry.id);
      this.nat.udp.forwardRemoved(fw.entry.id);
      fw.udp.close();
    }
    // Live connections hold their own reference.
    this.nat.addrs.release(fw.guestIp);
  }

  private listenTcp(fw: Forward): number {
    const { hostAddr, hostPort } = fw.entry;
    try {
      return this.tcpProxy.listen(hostAddr, hostPort, (socket) => this.accepted(fw, socket)).id;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new ForwardError(e.code ?? 'ERR_FORWARD_LISTEN', `listen on ${hostPortText(hostAddr, hostPort)}: ${e.message}`, { cause: err });
    }
  }

  private accepted(fw: Forward, socket: AcceptedSocket): void {
    const now = this.clock();
    this.nat.inbound.connectTcp(
      fw.guestIp,
      fw.entry.guestPort,
      null,
      (flow, reason, at) => {
        if (flow === null) {
          this.log.debug(`forward ${fw.entry.id}: cannot reach ${fw.entry.guestAddr}:${fw.entry.guestPort}: ${reason}`);
          this.tcpProxy.reject(socket);
          return;
        }
        this.tcpProxy.attach(flow, socket);
        this.flushPorts(at);
      },
      now,
    );
  }

  private bindUdp(fw: Forward): Promise<UdpSocket> {
    const { id, hostAddr, hostPort, guestPort } = fw.entry;
    const socket = createSocket({ type: isIP(hostAddr) === 6 ? 'udp6' : 'udp4', ipv6Only: isIP(hostAddr) === 6 });
    return new Promise((resolve, reject) => {
      socket.once('error', (err: NodeJS.ErrnoException) => {
        socket.close();
        reject(new ForwardError(err.code ?? 'ERR_FORWARD_BIND', `bind ${hostPortText(hostAddr, hostPort)}/udp: ${err.message}`, { cause: err }));
      });
      socket.bind({ address: hostAddr, port: hostPort, exclusive: true }, () => {
        socket.removeAllListeners('error');
        socket.on('error', (err) => this.log.debug(`forward ${id}: ${err.message}`));
        socket.on('message', (msg, rinfo) => {
          const addrs = this.nat.addrs;
          let client: number;
          try {
            client = addrs.parse(rinfo.address);
          } catch {
            return;
          }
          const now = this.clock();
          // The flow keeps its own reference to the client's address.
          this.nat.inbound.sendUdp(id, client, rinfo.port, fw.guestIp, guestPort, msg, 0, msg.length, now);
          addrs.release(client);
          this.flushPorts(now);
        });
        this.udpProxy.addForwardSocket(id, socket);
        resolve(socket);
      });
    });
  }
}

/** "127.0.0.1:80" or "[::1]:80". */
function hostPortText(addr: string, port: number): string {
  return isIP(addr) === 6 ? `[${addr}]:${port}` : `${addr}:${port}`;
}

/** For messages: "tcp 127.0.0.1:8080 -> 10.0.2.100:80". */
export function describeForward(f: ForwardSpec): string {
  return `${f.proto} ${hostPortText(f.hostAddr, f.hostPort)} -> ${hostPortText(f.guestAddr, f.guestPort)}`;
}
