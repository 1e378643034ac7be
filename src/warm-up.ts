/**
 * Start-up warm-up: short transactions through a throwaway copy of the
 * runtime, so that the first real connections run optimized code.
 *
 * A fresh Node process runs usernet's JavaScript in the interpreter until V8
 * has seen each function often enough to compile it, and the compiles run on
 * worker threads that compete with the guest and its peers for the CPUs. In a
 * fresh `usernet run` that is the first half second of traffic: requests take
 * milliseconds instead of tens of microseconds (bench/PROFILE.md §7-8).
 *
 * How it works: a second Runtime, private to the warm-up, gets a "tap" that is
 * one end of a SOCK_SEQPACKET pair (native framePair: one record per frame, as
 * a tap). On the other end a guest made of the engine's own TcpConnection
 * speaks Ethernet/IPv4/TCP (with the virtio-net header and partial checksums
 * a kernel guest sends when offloads are on) to the gateway address, which
 * the private runtime's NAT dials on host loopback, where a small echo server
 * of this module answers. The guest runs connect / 100-byte request /
 * 100-byte reply / close transactions, then request/response on longer
 * connections (500 each): the code paths of the bridge, gateway, NAT, TCP, the tap port
 * and the host-socket proxy, native calls included, that a guest's
 * connections take. Then everything is closed. Nothing leaves the process but
 * loopback connections to its own server, and the real runtime is not touched:
 * its tap and flows are separate objects of the same classes.
 *
 * It runs next to the real runtime (in `usernet run`, while the namespace
 * waits for its IPv6 address) and stops at its limits or when stop() is
 * called; every step is a frame or socket event, so real traffic is served
 * in between.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Runtime } from './runtime.js';
import { TapPort, type BatchSink } from './tap-port.js';
import { native } from './native/addon.js';
import { NativeError } from './errors.js';
import { errnoName, errnoText } from './host/errno.js';
import { TCP_EVENTS_MAX, type TcpSockets } from './native/types.js';
import { createLogger, type Logger } from './log.js';
import type { RuntimeOptions } from './options.js';
import type { Frame, Port } from '../stack/frame.js';
import { tcpDefaults, type TcpConfig } from '../stack/tcp/config.js';
import { TcpConnection, type TcpCloseReason, type TcpEnv, type TcpSegmentOut } from '../stack/tcp/connection.js';
import { TCP_CHECKSUM_OFFSET, tcpChecksum, TcpView, writeTcpHeader } from '../stack/wire/tcp.js';
import { emitIpv4Header, IP_PROTO_TCP, IPV4_HEADER_LEN } from '../stack/wire/ipv4.js';
import { emitEthernetHeader, ETH_HEADER_LEN, ETHERTYPE_IPV4 } from '../stack/wire/ethernet.js';
import { fold, pseudoHeaderSum4 } from '../stack/wire/checksum.js';
import { readU16, writeU16 } from '../stack/wire/bytes.js';
import { VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_LEN, VnetHeaderView } from '../stack/wire/vnet.js';
import { GATEWAY_HOST_NUMBER, GUEST_HOST_NUMBER } from '../stack/nat/address-map.js';
import { newDropCounters } from '../stack/counters.js';

/** Bytes of each request and reply, as in the transaction benchmark. */
const MESSAGE = 100;
/** First byte of a request: the server closes after its reply (C) or keeps the connection (R). */
const CLOSE_AFTER_REPLY = 0x43;
const KEEP_OPEN = 0x52;
/** The guest's MAC: locally administered, unicast; only ever on the private pair. */
const GUEST_MAC = 0x02_75_73_6e_77_75;
/** Guest ports cycle through this range; a transaction's port is never reused during one warm-up. */
const FIRST_PORT = 20_000;
const PORTS = 40_000;
/** Guest TCP timers (retransmission) are polled this often; on a lossless pair they rarely fire. */
const GUEST_TICK_MS = 5;
/** Below this MTU the warm-up does not run (startWarmUp). */
export const WARM_UP_MIN_MTU = 576;
/** Connections in flight at once: each mostly waits for timers and wake-ups, so a few overlap. */
const CHAINS = 4;

export interface WarmUpLimits {
  /** Connect/request/reply/close transactions. */
  connections: number;
  /** Request/response round trips after that, on connections of up to 500 each. */
  roundTrips: number;
  /** Wall-clock bound for the whole warm-up. */
  maxMs: number;
}

export const warmUpDefaults: Readonly<WarmUpLimits> = Object.freeze({ connections: 800, roundTrips: 3000, maxMs: 1500 });

export interface WarmUpResult {
  /** Connections opened and closed normally. */
  connections: number;
  /** Replies received (one per connection of the first phase, then many per connection). */
  roundTrips: number;
  /** Bytes the guest received, all checked against what the server sent. */
  bytes: number;
  ms: number;
  /** Why it ended early, or null. */
  stoppedBy: 'time' | 'stop' | 'error' | null;
  error: string | null;
}

/** What the server answers: byte i of a reply to request r is (r's first byte + i) & 0xff. */
function replyByte(first: number, i: number): number {
  return (first + i) & 0xff;
}

const warmUpTcpDrops = newDropCounters();

/**
 * Once the warm-up is over, its runtime, tap pair, rings and arenas are
 * garbage (about 9 MiB of buffers, a few MiB of them touched), but V8 frees
 * external memory only at its next full collection, and an idle process may
 * not have one for a long time. One full collection here gives the pages back
 * now (bench/PROFILE.md, "What an idle usernet's memory is"). `gc` is reached
 * the documented way for a running process: the flag, then a new context.
 */
function collectWarmUpGarbage(): void {
  try {
    setFlagsFromString('--expose-gc');
    (runInNewContext('gc') as () => void)();
  } catch {
    // Only memory is at stake: V8 collects it later anyway.
  }
}

/**
 * One guest connection: a TcpConnection running `rounds` request/replies; the
 * last request asks the server to close, and the guest closes after it.
 */
class GuestConn implements TcpEnv {
  /** Not reported: the warm-up's traffic is private. */
  readonly tcpDrops = warmUpTcpDrops;
  readonly conn: TcpConnection;
  private got = 0;
  private sent = 0;
  private readonly request = new Uint8Array(MESSAGE);
  private readonly rx = new Uint8Array(MESSAGE);

  constructor(
    private readonly guest: Guest,
    readonly port: number,
    private rounds: number,
    private readonly done: (err: string | null) => void,
    now: number,
  ) {
    this.conn = TcpConnection.connect(guest.tcpConfig, this, now, port, guest.serverPort, guest.iss());
  }

  emit(seg: TcpSegmentOut): void {
    this.guest.emit(seg);
  }

  onEstablished(): void {
    this.sendRequest();
  }

  private sendRequest(): void {
    const r = this.request;
    r[0] = this.rounds === 1 ? CLOSE_AFTER_REPLY : KEEP_OPEN;
    for (let i = 1; i < MESSAGE; i++) r[i] = (this.sent + i) & 0xff;
    this.sent++;
    this.got = 0;
    this.conn.send(r, 0, MESSAGE, this.guest.now());
  }

  onReadable(): void {
    const now = this.guest.now();
    while (this.rounds > 0 && this.conn.recvAvailable() > 0) {
      const n = this.conn.recv(this.rx, this.got, MESSAGE - this.got, now);
      if (n === 0) break;
      for (let i = this.got; i < this.got + n; i++) {
        if (this.rx[i] !== replyByte(this.request[0], i)) return this.fail(`reply byte ${i} is ${this.rx[i]}`);
      }
      this.got += n;
      this.guest.bytes += n;
      if (this.got < MESSAGE) continue;
      this.guest.roundTrips++;
      if (--this.rounds > 0) this.sendRequest();
    }
    if (this.conn.recvAvailable() > 0) this.fail('more bytes than asked for');
  }

  /** The server closed after its last reply: close our side too. */
  checkPeerClosed(now: number): void {
    if (this.conn.state !== 'CLOSE-WAIT') return;
    if (this.rounds > 0) return this.fail('closed before the reply');
    this.conn.shutdownSend(now);
  }

  onSendSpace(): void {}

  onClosed(reason: TcpCloseReason): void {
    this.guest.forget(this);
    if (reason === 'normal') this.guest.connections++;
    this.done(reason === 'normal' ? null : `connection ${reason}`);
  }

  private fail(why: string): void {
    this.guest.forget(this);
    // The reason first: the abort's onClosed('reset') reports a second, less telling one.
    this.done(why);
    this.conn.abort(this.guest.now());
  }
}

/** The warm-up's guest: Ethernet/IPv4 around the TCP segments of its connections. */
class Guest implements BatchSink {
  readonly tcpConfig: TcpConfig;
  connections = 0;
  roundTrips = 0;
  bytes = 0;
  port: TapPort | null = null;
  private readonly conns = new Map<number, GuestConn>();
  private readonly tx: Buffer;
  private readonly txFrame: Frame;
  private readonly vnetHeader: VnetHeaderView;
  private readonly view = new TcpView();
  private ident = 0;
  private nextIss = 0x1234_5678;

  constructor(
    readonly gatewayMac: number,
    readonly guestIp: number,
    readonly gatewayIp: number,
    readonly serverPort: number,
    readonly vnet: boolean,
    mtu: number,
    readonly now: () => number,
  ) {
    // Small first buffers: the guest's messages are 100 bytes, and the default rings (64 + 16 KiB,
    // not recycled here: the pool's go to the NAT's flows) would be 80 KiB of garbage per connection.
    this.tcpConfig = {
      ...tcpDefaults,
      // Segments of at most one MSS (no TSO: the messages are small).
      mss: mtu - IPV4_HEADER_LEN - 20,
      maxSegmentLen: mtu - IPV4_HEADER_LEN - 20,
      sendBufferInitial: 1024,
      recvBufferInitial: 1024,
    };
    this.tx = Buffer.alloc(VIRTIO_NET_HDR_LEN + mtu + ETH_HEADER_LEN);
    this.txFrame = { buf: this.tx, off: vnet ? VIRTIO_NET_HDR_LEN : 0, len: 0, vnet };
    this.vnetHeader = new VnetHeaderView().reset(this.tx, 0);
  }

  iss(): number {
    this.nextIss = (this.nextIss + 0x0100_0193) >>> 0;
    return this.nextIss;
  }

  open(port: number, rounds: number, done: (err: string | null) => void): void {
    const c = new GuestConn(this, port, rounds, done, this.now());
    this.conns.set(port, c);
    this.flush(this.now());
  }

  forget(c: GuestConn): void {
    if (this.conns.get(c.port) === c) this.conns.delete(c.port);
  }

  /** A segment from one of our connections: frame it and queue it on the pair. */
  emit(seg: TcpSegmentOut): void {
    const b = this.tx;
    const eth = this.txFrame.off;
    const ip = eth + ETH_HEADER_LEN;
    const tcp = ip + IPV4_HEADER_LEN;
    const hl = writeTcpHeader(b, tcp, seg, seg.options);
    if (seg.len > 0) seg.buf.copy(b, tcp + hl, seg.off, seg.off + seg.len);
    const tcpLen = hl + seg.len;
    emitEthernetHeader(b, eth, this.gatewayMac, GUEST_MAC, ETHERTYPE_IPV4);
    emitIpv4Header(b, ip, this.guestIp, this.gatewayIp, IP_PROTO_TCP, tcpLen, 64, this.ident++ & 0xffff, true);
    const pseudo = pseudoHeaderSum4(this.guestIp, this.gatewayIp, IP_PROTO_TCP, tcpLen);
    if (this.vnet) {
      // As a kernel guest with checksum offload: the field holds the pseudo-header sum, the header says where.
      const v = this.vnetHeader;
      v.clear();
      v.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
      v.csumStart = ETH_HEADER_LEN + IPV4_HEADER_LEN;
      v.csumOffset = TCP_CHECKSUM_OFFSET;
      writeU16(b, tcp + TCP_CHECKSUM_OFFSET, fold(pseudo));
    } else {
      tcpChecksum(b, pseudo, tcp, tcpLen);
    }
    this.txFrame.len = ETH_HEADER_LEN + IPV4_HEADER_LEN + tcpLen;
    this.port?.deliver(this.txFrame, this.now());
  }

  /** A frame from the private runtime. */
  input(_from: Port, frame: Frame, now: number): void {
    const b = frame.buf;
    const eth = frame.off;
    if (frame.len < ETH_HEADER_LEN + IPV4_HEADER_LEN + 20 || readU16(b, eth + 12) !== ETHERTYPE_IPV4) return;
    const ip = eth + ETH_HEADER_LEN;
    if (b[ip + 9] !== IP_PROTO_TCP) return;
    const ihl = (b[ip] & 0x0f) * 4;
    const total = readU16(b, ip + 2);
    const v = this.view;
    if (v.reset(b, ip + ihl, total - ihl) !== null || v.parseOptions() !== null) return;
    const c = this.conns.get(v.dstPort);
    if (c === undefined) return;
    c.conn.input(v, now);
    c.checkPeerClosed(now);
  }

  /** End of a batch from the runtime (or a timer tick): answer it. */
  flush(now: number): void {
    for (const c of this.conns.values()) c.conn.flush(now);
    this.port?.flush(now);
  }

  tick(now: number): void {
    for (const c of this.conns.values()) if (c.conn.pollAt() <= now) c.conn.poll(now);
    this.port?.flush(now);
  }

  abortAll(now: number): void {
    for (const c of [...this.conns.values()]) c.conn.abort(now);
    this.conns.clear();
  }
}

const EAGAIN = -11;

/**
 * The host side: answers each 100-byte request with 100 bytes, and shuts its
 * side down after a reply when the request asks for it. On the addon's
 * TcpSockets, as the proxy's own host sockets, so that it allocates next to
 * nothing per connection (a Node server's sockets and buffers would grow the
 * heap by tens of megabytes over a warm-up, and keep it).
 */
class EchoServer {
  readonly port: number;
  private readonly events = new Uint32Array(2 * TCP_EVENTS_MAX);
  private readonly io: TcpSockets;
  private readonly listenFd: number;
  /** Accepted sockets by token: fd, position in the current request, that request's first byte. */
  private readonly conns = new Map<number, { fd: number; pos: number; first: number }>();
  private nextToken = 1;
  private readonly rx = Buffer.alloc(4096);
  private readonly reply = Buffer.alloc(MESSAGE);

  constructor() {
    this.io = native.createTcpSockets({ events: this.events, onEvents: (n) => this.onEvents(n) });
    const fd = this.io.listen(0, 4, '127.0.0.1', 0, 128);
    if (fd < 0) {
      this.io.close();
      throw new NativeError(errnoName(fd), fd, 'listen', `warm-up server: listen: ${errnoText(fd)}`);
    }
    this.listenFd = fd;
    this.port = this.io.localPort(fd);
    this.io.start();
  }

  private onEvents(count: number): void {
    for (let i = 0; i < count; i++) {
      const token = this.events[2 * i];
      if (token === 0) this.acceptAll();
      else this.serve(token);
    }
  }

  private acceptAll(): void {
    for (;;) {
      const token = this.nextToken;
      const fd = this.io.accept(this.listenFd, token);
      if (fd < 0) return;
      this.nextToken = (token % 0x7fff_ffff) + 1;
      this.conns.set(token, { fd, pos: 0, first: 0 });
    }
  }

  /** Reads until EAGAIN (the set is edge-triggered); replies to every complete request. */
  private serve(token: number): void {
    const c = this.conns.get(token);
    if (c === undefined) return;
    for (;;) {
      const n = this.io.read(c.fd, this.rx, 0, this.rx.length);
      if (n === EAGAIN) return;
      if (n <= 0) {
        // The client's FIN (after our reply and FIN, or its last request) or an error: done.
        this.drop(token, c.fd, n < 0);
        return;
      }
      for (let i = 0; i < n; i++) {
        if (c.pos === 0) c.first = this.rx[i];
        if (++c.pos < MESSAGE) continue;
        c.pos = 0;
        for (let j = 0; j < MESSAGE; j++) this.reply[j] = replyByte(c.first, j);
        if (this.io.write(c.fd, this.reply, 0, MESSAGE) !== MESSAGE) {
          // 100 bytes always fit a fresh socket's buffer; anything else is a broken connection.
          this.drop(token, c.fd, true);
          return;
        }
        if (c.first === CLOSE_AFTER_REPLY) this.io.shutdown(c.fd);
      }
    }
  }

  private drop(token: number, fd: number, abort: boolean): void {
    this.conns.delete(token);
    this.io.closeSocket(fd, abort);
  }

  close(): void {
    for (const [token, c] of this.conns) this.drop(token, c.fd, true);
    this.io.closeSocket(this.listenFd, false);
    this.io.close();
  }
}

export class WarmUp {
  private stopped = false;
  /** Transactions in flight: stop() and port errors end their waits. */
  private readonly waiting = new Set<(err: string | null) => void>();

  constructor(
    private readonly options: RuntimeOptions,
    private readonly log: Logger,
    private readonly limits: WarmUpLimits = warmUpDefaults,
  ) {}

  /** Ends the warm-up at its next step (the result says 'stop'). */
  stop(): void {
    this.stopped = true;
    this.wakeAll();
  }

  private wakeAll(): void {
    for (const w of [...this.waiting]) w(null);
    this.waiting.clear();
  }

  async run(): Promise<WarmUpResult> {
    const t0 = performance.now();
    const o = this.options;
    const quiet = createLogger('error', (line) => this.log.debug(`warm-up: ${line.trim()}`));
    const server = new EchoServer();
    const serverPort = server.port;
    // Its own runtime: host loopback on (its server is there), nothing else that talks to the world.
    const rt = new Runtime(
      {
        ...o,
        hostLoopback: true,
        // Its guest and server share this thread: a busy poll could only wait in vain, but it
        // runs (for a microsecond) so that its code is compiled too.
        busyPollMicros: Math.min(o.busyPollMicros, 1),
        dns: false,
        dhcp: false,
        dnsServers: [],
        pcapPath: null,
        statsIntervalMs: 0,
        forwards: [],
        ipv6Prefix: null,
        outboundAddress: null,
        outboundAddress6: null,
      },
      quiet,
    );
    const guest = new Guest(
      rt.gateway.mac,
      (o.network + GUEST_HOST_NUMBER) >>> 0,
      (o.network + GATEWAY_HOST_NUMBER) >>> 0,
      serverPort,
      o.offload,
      o.mtu,
      rt.now,
    );
    let failure: string | null = null;
    const [ours, theirs] = native.framePair();
    let guestPort: TapPort | null = null;
    let ticker: NodeJS.Timeout | null = null;
    let deadlineTimer: NodeJS.Timeout | null = null;
    const result = (stoppedBy: WarmUpResult['stoppedBy']): WarmUpResult => ({
      connections: guest.connections,
      roundTrips: guest.roundTrips,
      bytes: guest.bytes,
      ms: performance.now() - t0,
      stoppedBy,
      error: failure,
    });
    try {
      const onError = (_p: TapPort, err: Error) => {
        failure ??= err.message;
        this.wakeAll();
      };
      rt.addTap({ fd: ours, name: 'warm-up', attached: false, vnetHdr: o.offload, offloads: 0 });
      guestPort = new TapPort({ fd: theirs, name: 'warm-up-guest', attached: false, vnetHdr: o.offload, offloads: 0 }, guest, rt.now, {
        mtu: o.mtu,
        onError,
      });
      guest.port = guestPort;
      guestPort.start();
      ticker = setInterval(() => guest.tick(rt.now()), GUEST_TICK_MS);
      ticker.unref();

      const deadline = t0 + this.limits.maxMs;
      // A transaction that stalls (it should not: the pair loses nothing) ends at the deadline too.
      deadlineTimer = setTimeout(() => this.wakeAll(), this.limits.maxMs);
      let port = 0;
      /** One connection of `rounds` transactions; resolves with an error text or null. */
      const transaction = (rounds: number) =>
        new Promise<string | null>((resolve) => {
          // stop() or a port error ends the wait; over() then says which.
          this.waiting.add(resolve);
          guest.open(FIRST_PORT + (port++ % PORTS), rounds, (err) => {
            this.waiting.delete(resolve);
            resolve(err);
          });
        });
      const over = (): WarmUpResult['stoppedBy'] =>
        failure !== null ? 'error' : this.stopped ? 'stop' : performance.now() >= deadline ? 'time' : null;
      /** Runs connections of `rounds` until `total` rounds are done, CHAINS at a time (a connection mostly waits). */
      const phase = async (total: number, rounds: number) => {
        let started = 0;
        const chain = async () => {
          while (started < total && over() === null) {
            const n = Math.min(rounds, total - started);
            started += n;
            const err = await transaction(n);
            if (err !== null) failure ??= err;
          }
        };
        await Promise.all(Array.from({ length: CHAINS }, chain));
      };
      await phase(this.limits.connections, 1);
      // Request/response on a few long connections.
      await phase(this.limits.roundTrips, 500);
      return result(over());
    } finally {
      this.wakeAll();
      if (ticker !== null) clearInterval(ticker);
      if (deadlineTimer !== null) clearTimeout(deadlineTimer);
      guest.abortAll(rt.now());
      guestPort?.close();
      if (guestPort === null) native.closeFd(theirs);
      rt.close();
      server.close();
    }
  }
}

/** A warm-up running in the background; stop() ends it early and resolves once it has cleaned up. */
export interface RunningWarmUp {
  stop(): Promise<void>;
}

/**
 * Starts the warm-up unless the options turn it off. It is an optimization:
 * a failure is logged (warn) and changes nothing else.
 */
export function startWarmUp(options: RuntimeOptions, log: Logger, progress: 'info' | 'debug' = 'info'): RunningWarmUp | null {
  if (!options.warmUp) return null;
  if (options.mtu < WARM_UP_MIN_MTU) {
    // Its guest cuts 100-byte messages into one-MSS segments and expects the NAT to do the same,
    // which below this the NAT's minimum segment size does not (kernel guests advertise at least 256).
    log.debug(`warm-up skipped: MTU ${options.mtu} is below ${WARM_UP_MIN_MTU}`);
    return null;
  }
  const w = new WarmUp(options, log);
  // One line when it starts and one when it is over (below): the guest's first connections are slower until then.
  // Engine shards other than the first say it at debug: the operator hears of one warm-up, not one per shard.
  const say = progress === 'info' ? (m: string) => log.info(m) : (m: string) => log.debug(m);
  say('warm-up: started (about a second of loopback transactions, so that the first connections run compiled code)');
  const done = w
    .run()
    .then(
      (r) => {
        if (r.error !== null) log.warn(`warm-up failed (it only speeds up the first connections): ${r.error}`);
        else say(`warm-up: ${r.connections} connections, ${r.roundTrips} replies in ${r.ms.toFixed(0)} ms${r.stoppedBy ? ` (ended by ${r.stoppedBy})` : ''}`);
      },
      (err: Error) => log.warn(`warm-up failed (it only speeds up the first connections): ${err.message}`),
    )
    .then(() => {
      setImmediate(collectWarmUpGarbage);
    });
  return {
    stop: () => {
      w.stop();
      return done;
    },
  };
}
