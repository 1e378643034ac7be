/**
 * One usernet instance: the bridge, the gateway on it, the tap ports, the
 * timers and the optional pcap capture. The CLI front ends (main, run) only
 * open taps and hand them here.
 */
import { performance } from 'node:perf_hooks';
import { Bridge } from '../stack/bridge.js';
import type { Gateway } from '../stack/gateway.js';
import type { Logger } from './log.js';
import type { RuntimeOptions } from './options.js';
import { openCapture, type CaptureWriter } from './pcap-writer.js';
import { Scheduler } from './scheduler.js';
import { TapPort, type BatchSink } from './tap-port.js';
import type { ClosablePort } from './socket-ports.js';
import { TUN_F_USO4, TUN_F_USO6, type TapHandle } from './native/types.js';
import { formatMac } from '../stack/wire/mac.js';
import type { Frame, Port } from '../stack/frame.js';
import { defaults } from '../stack/config.js';
import type { Nat } from '../stack/nat/nat.js';
import { Stack } from '../stack/stack.js';
import { SocketTable, type BatchWork } from './host/socket-table.js';
import { TcpProxy } from './host/tcp-proxy.js';
import { UdpProxy } from './host/udp-proxy.js';
import { IcmpProxy } from './host/icmp-proxy.js';
import { PortForwards } from './host/port-forwards.js';
import { defaultUpstreams } from './resolv-conf.js';
import type { LocalNames } from '../stack/dns-local-names.js';
import { formatTapReport, tapStats } from './tap-report.js';
import { acquireGcObserver, processStats, releaseGcObserver } from './process-stats.js';
import { tcpBufferBudget } from '../stack/tcp/buffer-budget.js';

/** Both USO bits: a guest takes USO frames of either IP version. */
const USO_BOTH = TUN_F_USO4 | TUN_F_USO6;

/** Rounds of busy-poll hand-offs handled inline before the event loop gets a turn (dispatchReady). */
const INLINE_ROUNDS = 16;
/**
 * A TCP connection quiet this long gives its empty send and receive rings
 * back to the pool (stack/tcp/ring-pool.ts); its next byte takes one again.
 * Without it every idle connection keeps the pages its first bytes touched
 * (about 8 KiB of a 64 KiB and a 16 KiB ring); with it they are shared by
 * whatever connections are busy. Checked this often too: one pass over the
 * live flows a second is nothing next to the traffic it frees memory for.
 */
const RING_IDLE_MS = 1_000;

export class Runtime {
  readonly bridge: Bridge;
  readonly gateway: Gateway;
  readonly ports = new Set<TapPort>();
  readonly nat: Nat;
  /** Gateway, IPv4 and IPv6 layers, NAT: built and wired in stack/stack.ts. */
  readonly stack: Stack;
  /** The host TCP sockets' epoll set (dialed, accepted, listening): src/host/socket-table.ts. */
  readonly hostSockets: SocketTable;
  readonly tcpProxy: TcpProxy;
  readonly udpProxy: UdpProxy;
  readonly icmpProxy: IcmpProxy;
  /** Host -> guest forwards (-p, the slirp4netns API). Call startForwards for the ones in options. */
  readonly forwards: PortForwards;
  private readonly scheduler: Scheduler;
  private readonly pcap: CaptureWriter | null;
  private readonly wallAtStart = Date.now();
  private readonly monoAtStart = performance.now();
  private statsTimer: NodeJS.Timeout | null = null;
  private readonly ringTimer: NodeJS.Timeout;
  private closed = false;
  /**
   * Called after a tap failed (read error, hang-up: the device or its
   * namespace is gone) and was removed from the bridge. `usernet run` and
   * serve leave it unset and keep going with the other ports; the slirp4netns
   * front end has only that one tap and exits, as slirp4netns does.
   */
  onTapLost: ((port: TapPort, err: Error) => void) | null = null;

  /**
   * Told when a port joins the bridge (addTap, attachPort) or leaves it while
   * the runtime runs (removeTap, detachPort; `err` when it failed). The
   * library's portUp/portDown events (src/network.ts); null: nobody asked.
   */
  portEvents: { up(port: Port): void; down(port: Port, err: Error | null): void } | null = null;

  readonly now = (): number => performance.now();

  constructor(
    readonly options: RuntimeOptions,
    readonly log: Logger,
    extras: { localNames?: LocalNames } = {},
  ) {
    this.bridge = new Bridge({
      macTableSize: options.macTableSize,
      macAgingMs: options.macAgingMs,
      macSweepMs: options.macSweepMs,
    });
    const dnsUpstreams = options.dns ? (options.dnsServers ?? defaultUpstreams()) : [];
    const drain = (now: number) => this.bridge.flush(now);
    const limits = options.limits ?? {};
    // One budget per process (as the ring pool): the last runtime created sets it.
    tcpBufferBudget.limit = limits.tcpBufferMemory ?? defaults.tcpBufferMemory;
    this.stack = new Stack(
      {
        mac: options.gatewayMac,
        network: options.network,
        prefix: options.prefix,
        mtu: options.mtu,
        hostLoopback: options.hostLoopback,
        dhcp: options.dhcp,
        dnsUpstreams,
        dnsTimeoutMs: defaults.dnsTimeoutMs,
        localNames: extras.localNames ?? null,
        tcpMaxFlows: limits.tcpMaxFlows ?? defaults.tcpMaxFlows,
        tcpIdleTimeoutMs: limits.tcpIdleTimeoutMs ?? defaults.tcpIdleTimeoutMs,
        udpMaxFlows: limits.udpMaxFlows ?? defaults.udpMaxFlows,
        udpIdleTimeoutMs: limits.udpIdleTimeoutMs ?? defaults.udpIdleTimeoutMs,
        // A DNS flow is one query and one answer: never kept longer than any UDP flow.
        udpDnsIdleTimeoutMs: Math.min(defaults.udpDnsIdleTimeoutMs, limits.udpIdleTimeoutMs ?? Infinity),
        icmpMaxFlows: limits.icmpMaxFlows ?? defaults.icmpMaxFlows,
        icmpIdleTimeoutMs: limits.icmpIdleTimeoutMs ?? defaults.icmpIdleTimeoutMs,
        reassemblyTimeoutMs: limits.reassemblyTimeoutMs,
        ipv6Prefix: options.ipv6Prefix ?? null,
      },
      this.bridge,
      drain,
    );
    this.gateway = this.stack.gateway;
    this.nat = this.stack.nat;
    this.bridge.addPort(this.gateway);
    this.bridge.addStaticMac(this.gateway.mac, this.gateway);
    // Host events (socket reads, connects) produce frames outside any tap batch: write them at once.
    const flushPorts = (now: number) => this.flush(now);
    this.hostSockets = new SocketTable(this.now, flushPorts, this.work);
    this.tcpProxy = new TcpProxy(
      this.nat.tcp,
      this.hostSockets,
      this.work,
      this.now,
      {
        dialTimeoutMs: defaults.tcpDialTimeoutMs,
        dnsUpstreams,
        outboundAddress: options.outboundAddress ?? null,
        outboundAddress6: options.outboundAddress6 ?? null,
      },
      log,
    );
    this.nat.tcp.host = this.tcpProxy;
    this.udpProxy = new UdpProxy(this.nat.udp, dnsUpstreams, this.now, flushPorts, options.outboundAddress ?? null, log, options.outboundAddress6 ?? null);
    this.nat.udp.host = this.udpProxy;
    this.icmpProxy = new IcmpProxy(this.nat.icmp, this.now, flushPorts, log);
    this.nat.icmp.host = this.icmpProxy;
    this.forwards = new PortForwards(this.nat, this.tcpProxy, this.udpProxy, this.now, flushPorts, log);
    this.pcap = options.pcapPath === null ? null : openCapture(options.pcapPath, options.observe?.pcapFormat ?? 'pcapng');
    if (this.pcap !== null) {
      const pcap = this.pcap;
      this.bridge.monitor = (frame, from, now) => pcap.record(frame, from, this.wallClock(now));
    }
    this.scheduler = new Scheduler(this.now, (now) => this.flush(now));
    this.scheduler.add(this.bridge);
    this.scheduler.add(this.stack);
    acquireGcObserver();
    if (options.statsIntervalMs > 0) {
      this.statsTimer = setInterval(() => this.logStats(), options.statsIntervalMs);
      this.statsTimer.unref();
    }
    this.ringTimer = setInterval(() => this.releaseIdleRings(), RING_IDLE_MS);
    this.ringTimer.unref();
  }

  /** Idle connections' empty rings back to the pool (RING_IDLE_MS); from a timer, so no host read is under way. */
  releaseIdleRings(): void {
    if (this.nat.tcp.flowCount === 0) return;
    const quietSince = this.now() - RING_IDLE_MS;
    for (const f of this.nat.tcp.liveFlows()) f.releaseIdleMemory(quietSince);
  }

  /** Milliseconds since the epoch for a runtime timestamp (pcap wants wall-clock time). */
  wallClock(now: number): number {
    return this.wallAtStart + (now - this.monoAtStart);
  }

  /**
   * Engine shards (src/shards/): sees every frame a port read before the
   * bridge does; true when it took the frame (another shard owns its flow).
   * Null in a runtime that is not a shard.
   */
  steer: ((from: Port, frame: Frame, now: number) => boolean) | null = null;

  /** Where every port that reads in batches (taps, VM sockets, VXLAN) hands its frames. */
  readonly portSink: BatchSink = {
    input: (from: Port, frame: Frame, now: number) => {
      if (this.steer !== null && this.steer(from, frame, now)) return;
      this.inTapBatch = true;
      this.work.items++;
      this.tapFrames++;
      this.work.bytes += frame.len;
      this.bridge.input(from, frame, now);
    },
    flush: (now: number) => {
      this.inTapBatch = false;
      this.flush(now);
    },
  };

  /** Ports other than taps (VM sockets, VXLAN endpoints: src/socket-ports.ts), closed with the runtime. */
  readonly socketPorts = new Set<ClosablePort>();

  /** Puts a non-tap port on the bridge and starts its reads. */
  attachPort(port: ClosablePort): void {
    this.socketPorts.add(port);
    this.bridge.addPort(port);
    this.updateUso();
    port.start();
    this.portEvents?.up(port);
  }

  /** Takes a non-tap port off the bridge (its MACs forgotten) and closes it; `err`: why, when it failed. */
  detachPort(port: ClosablePort, err: Error | null = null): void {
    if (!this.socketPorts.delete(port)) return;
    this.bridge.flush(this.now());
    this.bridge.removePort(port);
    this.updateUso();
    port.close();
    this.portEvents?.down(port, err);
  }

  /**
   * UDP bursts leave for guests as one USO frame only while every port that
   * takes vnet frames is a tap that accepted USO: the bridge hands vnet frames
   * to vnet ports as they are, and a tap without USO (or another vnet port)
   * would refuse the frame. Ports without vnet headers get the bridge's
   * segmentation either way.
   */
  private updateUso(): void {
    let uso = true;
    let any = false;
    for (const p of this.ports) {
      if (!p.vnet) continue;
      any = true;
      if ((p.handle.offloads & USO_BOTH) !== USO_BOTH) uso = false;
    }
    for (const p of this.socketPorts) if (p.vnet) uso = false;
    this.nat.ipv4.uso = uso && any;
  }

  addTap(handle: TapHandle): TapPort {
    const sink = this.portSink;
    const port = new TapPort(handle, sink, this.now, {
      mtu: this.options.mtu,
      onError: (p, err) => {
        this.log.error(`tap ${p.name}: ${err.message}; removing it from the bridge`);
        this.removeTap(p, err);
        this.onTapLost?.(p, err);
      },
      onTooBig: (p, len) => {
        this.log.warn(
          `tap ${p.name} refused a ${len}-byte frame as too big (EMSGSIZE): gVisor's tap counts the Ethernet header in its MTU; ` +
            "start usernet with an --mtu 14 below the tap's (--mtu 1486 for its default 1500)",
        );
      },
      onZeroSource: (p) => {
        this.log.info(`tap ${p.name}: the guest sends from MAC 00:00:00:00:00:00 (gVisor's tap has none); it is ${formatMac(p.standInMac)} here`);
      },
    });
    // Frames received on one tap may be written to any other straight from its receive area.
    port.registerStable(this.stack.transmitBuffer);
    for (const other of this.ports) {
      other.registerStable(port.rxArea);
      port.registerStable(other.rxArea);
    }
    this.ports.add(port);
    this.bridge.addPort(port);
    this.updateUso();
    port.start();
    this.log.info(formatTapReport(handle));
    if (handle.vnetHdr && (handle.offloads & USO_BOTH) !== USO_BOTH) {
      this.log.info(`tap ${handle.name}: no UDP segmentation offload (the kernel refused TUN_F_USO4/USO6, Linux < 6.2): UDP bursts go to guests as single datagrams`);
    }
    this.portEvents?.up(port);
    return port;
  }

  /** Opens the forwards given in the options (-p); rejects on the first that cannot listen. */
  async startForwards(): Promise<void> {
    for (const f of this.options.forwards ?? []) await this.forwards.add(f);
  }

  /** Takes a tap off the bridge and closes it; `err`: why, when it failed. */
  removeTap(port: TapPort, err: Error | null = null): void {
    if (!this.ports.delete(port)) return;
    // Frames queued in its receive area leave before the other ports forget that memory.
    this.bridge.flush(this.now());
    this.bridge.removePort(port);
    this.updateUso();
    for (const other of this.ports) other.unregisterStable(port.rxArea);
    port.close();
    this.portEvents?.down(port, err);
  }

  private flush(now: number): void {
    // Guest bytes go to the host sockets once per batch (and open the windows), the NAT
    // answers the batch (one ACK per connection), then every port writes.
    this.tcpProxy.drain(now);
    this.udpProxy.drain(now);
    // Busy polling (--busy-poll) after a small batch: its answer is likely microseconds away.
    // Bulk traffic (big batches, or many bytes: TSO frames) has its next batch coming anyway.
    // A flush from inside a batch (a port forward's callback while frames or socket events
    // are being handled) leaves that to the batch's own flush at its end: what a poll finds
    // is read into the memory the batch is still using.
    // A batch of nothing but guest datagrams to UDP flows does not spin (UdpProxy.takeFramesSent).
    let spin = false;
    let spinMicros = this.options.busyPollMicros;
    if (!this.inTapBatch && !this.hostSockets.handling) {
      const { items, bytes } = this.work;
      this.work.items = 0;
      this.work.bytes = 0;
      const udpFrames = this.udpProxy.takeFramesSent();
      spin =
        this.options.busyPollMicros > 0 &&
        items > udpFrames &&
        items <= defaults.busyPollBatchMax &&
        bytes <= defaults.busyPollBytesMax;
      // Frames that only crossed the bridge (nothing for the gateway, no host socket event):
      // the other guest's kernel answers inside our tap write (an ICMP echo, a TCP ACK), so one
      // look (a poll with no wait) finds that answer; an answer from a process in that guest
      // needs a CPU, and on a small machine it is likely ours: spinning would only delay it
      // and the frame we just wrote (the ping's reply waits for us to sleep).
      const gatewayFrames = this.gateway.counters.rxFrames;
      if (spin && items === this.tapFrames && gatewayFrames === this.gatewayFramesSeen) spinMicros = 0;
      this.tapFrames = 0;
      this.gatewayFramesSeen = gatewayFrames;
    }
    // While we spin, a delayable ACK waits for the host's answer to carry it.
    this.stack.flush(now, spin);
    this.bridge.flush(now);
    this.scheduler.kick();
    if (!spin) return;
    let n = 0;
    for (const p of this.ports) {
      if (n === this.spinFds.length) break;
      this.spinPorts[n] = p;
      this.spinFds[n++] = p.handle.fd;
    }
    const ready = this.hostSockets.spin(this.spinFds, n, spinMicros);
    if (ready === 0) {
      // Nothing came: the held ACKs go now, before the thread sleeps.
      const later = this.now();
      this.stack.flushHeldAcks(later);
      this.bridge.flush(later);
      return;
    }
    this.ready = ready;
    if (this.dispatching) return;
    this.dispatchReady();
  }

  /**
   * What a busy poll found ready is handled here and now instead of through another turn
   * of the event loop (its epoll_pwait and a native-to-JS callback per source). Each
   * handler ends in flush(), whose own busy poll may find the next thing: that continues
   * here, for at most INLINE_ROUNDS rounds, then the event loop gets its turn (timers,
   * Node's own sockets).
   */
  private dispatchReady(): void {
    this.dispatching = true;
    try {
      for (let round = 0; round < INLINE_ROUNDS && this.ready !== 0; round++) {
        const r = this.ready;
        this.ready = 0;
        if ((r & 1) !== 0) this.hostSockets.pollNow();
        for (let i = 0; i < this.spinPorts.length; i++) {
          const p = this.spinPorts[i];
          if ((r & (2 << i)) !== 0 && p !== null && this.ports.has(p)) p.readNow();
        }
      }
    } finally {
      this.dispatching = false;
      this.ready = 0;
      // A loop, not fill(): Array.prototype.fill is a call into the runtime, ~2 % of a ping's path.
      const sp = this.spinPorts;
      for (let i = 0; i < sp.length; i++) sp[i] = null;
    }
  }

  /** Between a tap batch's first frame and its flush. */
  private inTapBatch = false;
  /** Of work.items, the frames from ports (the rest are host socket events). */
  private tapFrames = 0;
  /** The gateway's received-frame count at the last busy-poll decision. */
  private gatewayFramesSeen = 0;
  /** Ready bits from the last busy poll, for dispatchReady. */
  private ready = 0;
  private dispatching = false;
  /** The ports behind spinFds. */
  private readonly spinPorts: (TapPort | null)[] = new Array<TapPort | null>(15).fill(null);

  /** The taps' fds, for busy polling (at most 15 are watched). */
  private readonly spinFds = new Int32Array(15);
  /**
   * What the input since the last flush moved: frames from the ports and host socket events
   * (SocketTable), and their bytes (the frames', and what the TCP pump read and wrote).
   * Small work means an answer is likely microseconds away: worth a busy poll.
   */
  private readonly work: BatchWork = { items: 0, bytes: 0 };

  /** The counters, stamped with the time and uptime; the MAC table's entries only when asked for. */
  stats(opts: { macTable?: boolean } = {}): object {
    const now = this.now();
    return {
      time: new Date(this.wallClock(now)).toISOString(),
      uptimeSeconds: Math.round(now - this.monoAtStart) / 1000,
      gateway: { mac: formatMac(this.gateway.mac), ...this.gateway.stats() },
      taps: [...this.ports].map((p) => tapStats(p.handle)),
      bridge: this.bridge.stats(now, opts.macTable === true),
      nat: this.stack.natStats(),
      hostSockets: { tcp: this.tcpProxy.sockets, udp: this.udpProxy.openSockets, icmp: this.icmpProxy.openSockets },
      tcpBuffers: tcpBufferBudget.stats(),
      hostDrops: { udp: this.udpProxy.drops, icmp: this.icmpProxy.drops },
      udpHost: { ...this.udpProxy.stats(), usoToGuests: this.nat.ipv4.uso, usoFrames: this.nat.ipv4.usoFrames, usoDatagrams: this.nat.ipv4.usoDatagrams },
      pcapRecords: this.pcap?.records,
      process: processStats(),
    };
  }

  /** Counters as one line through the logger, whatever its level: they were asked for (log.ts: record). */
  logStats(): void {
    this.log.record('stats', this.stats({ macTable: this.options.observe?.statsMacTable }));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    releaseGcObserver();
    if (this.statsTimer !== null) clearInterval(this.statsTimer);
    clearInterval(this.ringTimer);
    this.scheduler.close();
    // Reset every guest connection while the taps can still carry the RSTs.
    const now = this.now();
    this.nat.tcp.abortAll(now);
    this.flush(now);
    this.forwards.closeAll();
    this.hostSockets.close();
    this.udpProxy.closeAll();
    this.icmpProxy.closeAll();
    for (const p of this.ports) p.close();
    this.ports.clear();
    for (const p of this.socketPorts) p.close();
    this.socketPorts.clear();
    this.pcap?.close();
  }
}
