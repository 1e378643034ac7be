/**
 * The socket ports of one runtime: listeners for QEMU's -netdev stream
 * (every accepted connection becomes a bridge port, removed when it ends),
 * bound unix datagram sockets for -netdev dgram, and VXLAN endpoints.
 *
 * Accepting: Node's net.Server accepts (pauseOnConnect: Node never reads
 * from it); the connection's fd is duplicated for a native StreamIo and
 * Node's socket is destroyed, so the data path has no Node stream in it.
 * At most MAX_STREAM_CONNECTIONS per runtime; more are closed with a log line.
 *
 * Unix socket paths: a stale socket file at the path is replaced (a
 * previous usernet that died); anything else there is an error. The files
 * are removed at close.
 *
 * Every listener (a stream listener with its connections, a datagram socket,
 * a VXLAN endpoint) has an id: the daemon adds and removes them at run time
 * (add(), remove(); POST and DELETE /v1/ports). Removing one takes its ports
 * off the bridge, closes its socket and removes its file.
 */
import { lstatSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import type { Port } from '../stack/frame.js';
import { VXLAN_OVERHEAD_IPV4 } from '../stack/wire/vxlan.js';
import { ConfigError, UsernetError } from './errors.js';
import type { Logger } from './log.js';
import type { Runtime } from './runtime.js';
import { DatagramPort } from './datagram-port.js';
import { ipSockaddr, socketIo, unixSockaddr } from './native/socket-io.js';
import { native } from './native/addon.js';
import type { DgramListenSpec, SocketPortRequest, SocketPortSpecs, StreamListenSpec, VxlanSpec } from './socket-port-options.js';
import { StreamPort } from './stream-port.js';
import { VxlanPort } from './vxlan-port.js';

/** VM connections at once; each holds about 400 KiB of buffers. */
export const MAX_STREAM_CONNECTIONS = 256;
/** Ethernet header + one VLAN tag on top of the MTU. */
const L2_OVERHEAD = 14 + 4;

export interface ClosablePort extends Port {
  start(): void;
  close(): void;
}

export interface SocketPortInfo {
  id: number;
  kind: SocketPortRequest['kind'];
  spec: string;
  /** The bridge ports it has now (a stream listener: one per connected VM). */
  ports: string[];
}

interface Listener {
  id: number;
  kind: SocketPortInfo['kind'];
  /** Its unix socket path, if any. */
  path: string | null;
  spec: string;
  ports: Set<ClosablePort>;
  close(): Promise<void>;
}

function freeStaleSocket(path: string): void {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new ConfigError(`${path} exists and is not a socket`);
  rmSync(path, { force: true });
}

export class SocketPorts {
  private readonly listeners: Listener[] = [];
  /** Unix paths in use or being opened: add() refuses a second listener on one. */
  private readonly paths = new Set<string>();
  private nextId = 1;
  private connections = 0;
  private closed = false;

  constructor(
    private readonly runtime: Runtime,
    private readonly log: Logger,
  ) {}

  private get maxFrame(): number {
    return this.runtime.options.mtu + L2_OVERHEAD;
  }

  /** Opens everything in specs; on a failure closes what was opened and rethrows. */
  async start(specs: SocketPortSpecs | undefined): Promise<void> {
    if (specs === undefined) return;
    try {
      for (const s of specs.listenQemu) await this.listenStream(s);
      for (const s of specs.listenDgram) this.listenDgram(s);
      for (const s of specs.vxlan) this.addVxlan(s);
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  /** Opens one more listener at run time; its info. */
  async add(req: SocketPortRequest): Promise<SocketPortInfo> {
    if (this.closed) throw new UsernetError('ERR_SHUTTING_DOWN', 'the socket ports are closing');
    const l =
      req.kind === 'qemu-stream' ? await this.listenStream(req.spec) : req.kind === 'dgram' ? this.listenDgram(req.spec) : this.addVxlan(req.spec);
    return this.describe(l);
  }

  /** Closes listener `id` and takes its ports off the bridge; false if there is none. */
  async remove(id: number): Promise<boolean> {
    const i = this.listeners.findIndex((l) => l.id === id);
    if (i < 0) return false;
    const [l] = this.listeners.splice(i, 1);
    await l.close();
    if (l.path !== null) this.paths.delete(l.path);
    this.log.info(`${l.kind} ${l.spec}: removed (port ${l.id})`);
    return true;
  }

  private claimPath(path: string): void {
    if (this.paths.has(path)) throw new UsernetError('ERR_PORT_EXISTS', `${path} is already a socket port of this usernet`);
    this.paths.add(path);
  }

  private register(l: Omit<Listener, 'id'>): Listener {
    const listener = { id: this.nextId++, ...l };
    this.listeners.push(listener);
    return listener;
  }

  async listenStream(spec: StreamListenSpec): Promise<Listener> {
    if (spec.path !== null) this.claimPath(spec.path);
    try {
      return await this.openStream(spec);
    } catch (err) {
      if (spec.path !== null) this.paths.delete(spec.path);
      throw err;
    }
  }

  private async openStream(spec: StreamListenSpec): Promise<Listener> {
    const ports = new Set<ClosablePort>();
    let n = 0;
    const where = spec.path ?? `${spec.host}:${spec.port}`;
    const server: Server = createServer({ pauseOnConnect: true }, (sock: Socket) => {
      const handle = (sock as unknown as { _handle?: { fd?: number } })._handle;
      const fd0 = handle?.fd ?? -1;
      if (this.closed || fd0 < 0 || this.connections >= MAX_STREAM_CONNECTIONS) {
        this.log.warn(`qemu ${where}: connection refused (${this.closed ? 'closing' : fd0 < 0 ? 'no fd' : `${MAX_STREAM_CONNECTIONS} connections already`})`);
        sock.destroy();
        return;
      }
      let fd: number;
      try {
        fd = socketIo.dupNonBlocking(fd0);
      } finally {
        sock.destroy();
      }
      const name = `qemu:${where}#${++n}`;
      const port = new StreamPort(fd, name, this.runtime.portSink, this.runtime.now, {
        maxFrame: this.maxFrame,
        onEnd: (p, reason) => {
          if (reason === null) this.log.info(`${p.name}: disconnected`);
          else this.log.warn(`${p.name}: ${reason}`);
          ports.delete(p);
          this.connections--;
          this.runtime.detachPort(p, reason === null ? null : new UsernetError('ERR_PORT_FAILED', reason));
        },
      });
      this.connections++;
      ports.add(port);
      this.runtime.attachPort(port);
      this.log.info(`${name}: connected`);
    });
    if (spec.path !== null) freeStaleSocket(spec.path);
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => reject(new UsernetError(err.code ?? 'ERR_LISTEN', `qemu ${spec.text}: ${err.message}`)));
      if (spec.path !== null) server.listen(spec.path, () => resolve());
      else server.listen(spec.port, spec.host, () => resolve());
    });
    if (this.closed) {
      // Closed while listen() was under way (a daemon stopping during POST /v1/ports).
      await new Promise<void>((r) => server.close(() => r()));
      if (spec.path !== null) rmSync(spec.path, { force: true });
      throw new UsernetError('ERR_SHUTTING_DOWN', 'the socket ports are closing');
    }
    server.on('error', (err) => this.log.error(`qemu ${where}: ${err.message}`));
    this.log.info(`qemu: listening on ${spec.path === null ? `tcp:${where}` : `unix:${where}`} (-netdev stream)`);
    return this.register({
      kind: 'qemu-stream',
      path: spec.path,
      spec: spec.text,
      ports,
      close: async () => {
        for (const p of ports) this.runtime.detachPort(p);
        this.connections -= ports.size;
        ports.clear();
        await new Promise<void>((r) => server.close(() => r()));
        if (spec.path !== null) rmSync(spec.path, { force: true });
      },
    });
  }

  listenDgram(spec: DgramListenSpec): Listener {
    this.claimPath(spec.path);
    try {
      return this.openDgram(spec);
    } catch (err) {
      this.paths.delete(spec.path);
      throw err;
    }
  }

  private openDgram(spec: DgramListenSpec): Listener {
    freeStaleSocket(spec.path);
    const [fd] = socketIo.bindDatagram(unixSockaddr(spec.path));
    const name = `dgram:${spec.path}`;
    const ports = new Set<ClosablePort>();
    let port: DatagramPort;
    try {
      port = new DatagramPort(fd, name, this.runtime.portSink, this.runtime.now, {
        maxFrame: this.maxFrame,
        log: this.log,
        onError: (p, err) => {
          this.log.error(`${p.name}: ${err.message}; removing it from the bridge`);
          ports.delete(p);
          this.runtime.detachPort(p, err);
        },
      });
    } catch (err) {
      native.closeFd(fd);
      rmSync(spec.path, { force: true });
      throw err;
    }
    ports.add(port);
    this.runtime.attachPort(port);
    this.log.info(`qemu: listening on unix:${spec.path} (-netdev dgram)`);
    return this.register({
      kind: 'dgram',
      path: spec.path,
      spec: spec.text,
      ports,
      close: async () => {
        for (const p of ports) this.runtime.detachPort(p);
        ports.clear();
        rmSync(spec.path, { force: true });
      },
    });
  }

  addVxlan(spec: VxlanSpec): Listener {
    const [fd, boundPort] = socketIo.bindDatagram(ipSockaddr(spec.localAddress, spec.localPort));
    const local = spec.localAddress.includes(':') ? `[${spec.localAddress}]:${boundPort}` : `${spec.localAddress}:${boundPort}`;
    const name = `vxlan:${spec.vni}@${local}`;
    const ports = new Set<ClosablePort>();
    let port: VxlanPort;
    try {
      port = new VxlanPort(fd, name, this.runtime.portSink, this.runtime.now, {
        vni: spec.vni,
        remotes: spec.remotes.map((r) => ipSockaddr(r.address, r.port)),
        vxlanPort: spec.remotes[0]?.port ?? spec.localPort,
        maxFrame: this.maxFrame,
        agingMs: this.runtime.options.macAgingMs,
        log: this.log,
        onError: (p, err) => {
          this.log.error(`${p.name}: ${err.message}; removing it from the bridge`);
          ports.delete(p);
          this.runtime.detachPort(p, err);
        },
      });
    } catch (err) {
      native.closeFd(fd);
      throw err;
    }
    ports.add(port);
    this.runtime.attachPort(port);
    const remotes = spec.remotes.map((r) => (r.address.includes(':') ? `[${r.address}]:${r.port}` : `${r.address}:${r.port}`));
    this.log.info(
      `vxlan: VNI ${spec.vni} on udp ${local}, remotes ${remotes.join(', ')}; outer packets are the inner MTU + ${VXLAN_OVERHEAD_IPV4} bytes` +
        ` (IPv4 underlay; use --mtu ${1500 - VXLAN_OVERHEAD_IPV4} on a 1500-byte link)`,
    );
    return this.register({
      kind: 'vxlan',
      path: null,
      spec: spec.text,
      ports,
      close: async () => {
        for (const p of ports) this.runtime.detachPort(p);
        ports.clear();
      },
    });
  }

  private describe(l: Listener): SocketPortInfo {
    return { id: l.id, kind: l.kind, spec: l.spec, ports: [...l.ports].map((p) => p.name) };
  }

  info(): SocketPortInfo[] {
    return this.listeners.map((l) => this.describe(l));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const l of this.listeners.splice(0)) await l.close().catch(() => undefined);
  }
}
