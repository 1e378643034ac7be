/**
 * The L2 bridge: a learning switch between ports (taps, the gateway, later VM
 * sockets).
 *
 * How it works
 * - Every frame that enters is counted on its ingress port and shown to the
 *   `monitor` hook (pcap capture) before anything else looks at it, so
 *   captures include frames the bridge goes on to drop.
 * - The source MAC is learned on the ingress port; a group (multicast or
 *   broadcast) or all-zero source is invalid and the frame is dropped, as the
 *   Linux bridge does. Learning happens before forwarding so that a MAC that
 *   moved follows its new port at once.
 * - Group destinations and unknown unicast are flooded to every port but the
 *   ingress one; known unicast goes to exactly one port, and a frame whose
 *   destination lives behind its own ingress port is filtered. Entries age out
 *   after macAgingMs (Linux's 300 s by default), and the table is capped at
 *   macTableSize with least-recently-seen eviction (see mac-table.ts).
 * - Offloads: a vnet frame (virtio-net header before it, maybe a 64 KiB GSO
 *   super-frame) crosses to another vnet port as the very same Frame, without
 *   a copy. Towards a port without vnet headers it first goes through the
 *   OffloadCompleter, which completes the checksum or cuts segments; when
 *   flooding, that is done once and every segment goes to all such ports. A
 *   plain frame goes to a vnet port as is: that port writes a zero header.
 * - The bridge counts tx on egress ports itself; ports count their own write
 *   failures. Drops are counted at bridge level by reason and, the same
 *   reason, on the ingress port, so per-port stats show who sends junk.
 * - Nothing on the per-frame path allocates: ports live in an array indexed by
 *   their small integer id, the MAC table is typed arrays, and the offload
 *   emit callback is bound once in the constructor.
 * - Time is passed in (`now`, milliseconds); `pollAt` says when the next
 *   expiry sweep is worth doing, rate-limited to one per macSweepMs.
 */
import { defaults } from './config.js';
import type { Frame, FrameSink, Port, PortCountersSnapshot } from './frame.js';
import { MacTable } from './mac-table.js';
import { OffloadCompleter } from './offload.js';
import { formatMac } from './wire/mac.js';
import { newDropCounters, type DropCounts } from './counters.js';
import type { DropReason } from './drop-reasons.js';

const ETH_HLEN = 14;
const OFF_DST = 0;
const OFF_SRC = 6;

export interface BridgeOptions {
  macTableSize: number;
  macAgingMs: number;
  macSweepMs: number;
}

export type BridgeMonitor = (frame: Frame, from: Port, now: number) => void;

export interface BridgeStats {
  forwarded: number;
  flooded: number;
  filtered: number;
  evictions: number;
  drops: DropCounts;
  offload: { checksumsCompleted: number; superFrames: number; segments: number };
  ports: Array<{ id: number; name: string; vnet: boolean; counters: PortCountersSnapshot }>;
  macTable: {
    size: number;
    capacity: number;
    /** Left out unless asked for (stats(now, true)): it can be thousands of entries. */
    entries?: Array<{ mac: string; port: string; isStatic: boolean; ageMs: number | null }>;
  };
}

export class Bridge implements FrameSink {
  /** Called once per frame entering the bridge, before forwarding. */
  monitor: BridgeMonitor | null = null;

  /** Known unicast frames sent to their one port. */
  forwarded = 0;
  /** Frames flooded (broadcast, multicast, unknown unicast); one per frame, not per port. */
  flooded = 0;
  /** Frames whose destination is behind their ingress port. */
  filtered = 0;
  private readonly dropped = newDropCounters();
  /** Drops by reason so far (allocates: for stats and tests). */
  get drops(): DropCounts {
    return this.dropped.snapshot();
  }

  readonly table: MacTable;
  readonly offload = new OffloadCompleter();
  private readonly sweepMs: number;
  private nextSweep = -Infinity;

  /** Index = port id; null for free ids. */
  private readonly byId: Array<Port | null> = [];
  /** Attached ports in insertion order, for flooding. */
  private readonly ports: Port[] = [];

  // Context for the offload emit callback, set before each complete() call.
  private emitTo: Port | null = null;
  private emitExcept: Port | null = null;
  private emitNow = 0;
  private readonly emitBound: (f: Frame) => void;

  constructor(options: Partial<BridgeOptions> = {}) {
    const o = { ...defaultBridgeOptions(), ...options };
    this.table = new MacTable(o.macTableSize, o.macAgingMs);
    this.sweepMs = o.macSweepMs;
    this.emitBound = (f) => this.emitSegment(f);
  }

  /** Attaches a port and gives it the smallest free id. */
  addPort(port: Port): number {
    if (this.ports.includes(port)) return port.id;
    let id = this.byId.indexOf(null);
    if (id < 0) {
      id = this.byId.length;
      this.byId.push(null);
    }
    port.id = id;
    this.byId[id] = port;
    this.ports.push(port);
    return id;
  }

  /** Detaches a port and forgets every MAC behind it. */
  removePort(port: Port): void {
    const i = this.ports.indexOf(port);
    if (i < 0) return;
    this.ports.splice(i, 1);
    this.byId[port.id] = null;
    this.table.removePort(port.id);
  }

  /** Pins a MAC (e.g. the gateway's) to a port; returns false if the table is full of static entries. */
  addStaticMac(mac: number, port: Port): boolean {
    if (this.byId[port.id] !== port) return false;
    return this.table.addStatic(mac, port.id);
  }

  get portCount(): number {
    return this.ports.length;
  }

  input(from: Port, frame: Frame, now: number): void {
    const c = from.counters;
    c.rxFrames++;
    c.rxBytes += frame.len;
    if (this.monitor !== null) this.monitor(frame, from, now);
    if (from.id < 0 || this.byId[from.id] !== from) {
      this.drop(from, 'unknown-port');
      return;
    }
    if (frame.len < ETH_HLEN) {
      this.drop(from, 'runt');
      return;
    }
    const buf = frame.buf;
    const off = frame.off;
    const s = off + OFF_SRC;
    if ((buf[s] & 1) !== 0 || (buf[s] | buf[s + 1] | buf[s + 2] | buf[s + 3] | buf[s + 4] | buf[s + 5]) === 0) {
      this.drop(from, 'invalid-source');
      return;
    }
    // The *At variants read the MAC bytes themselves: see mac-table.ts on boxing.
    this.table.learnAt(buf, s, from.id, now);

    if ((buf[off + OFF_DST] & 1) === 0) {
      const id = this.table.lookupAt(buf, off + OFF_DST, now);
      if (id >= 0) {
        if (id === from.id) {
          this.filtered++;
          this.drop(from, 'same-port');
          return;
        }
        const to = this.byId[id];
        if (to !== null && to !== undefined) {
          this.forwarded++;
          this.deliverTo(from, to, frame, now);
          return;
        }
      }
    }
    this.flooded++;
    this.flood(from, frame, now);
  }

  /** Ends an input batch: lets every port write what it queued. */
  flush(now: number): void {
    const ports = this.ports;
    for (let i = 0; i < ports.length; i++) ports[i].flush(now);
  }

  /** When the next expiry sweep is due; Infinity when nothing can expire. */
  pollAt(): number {
    const expiry = this.table.nextExpiry();
    if (expiry === Infinity) return Infinity;
    return expiry > this.nextSweep ? expiry : this.nextSweep;
  }

  /** Sweeps expired MAC entries if due; returns how many were removed. */
  poll(now: number): number {
    if (now < this.nextSweep) return 0;
    this.nextSweep = now + this.sweepMs;
    return this.table.sweep(now);
  }

  /** Snapshot for the stats endpoint; allocates. */
  /** Counters; with `macEntries`, every MAC table entry too. */
  stats(now?: number, macEntries = true): BridgeStats {
    return {
      forwarded: this.forwarded,
      flooded: this.flooded,
      filtered: this.filtered,
      evictions: this.table.evictions,
      drops: this.dropped.snapshot(),
      offload: {
        checksumsCompleted: this.offload.checksumsCompleted,
        superFrames: this.offload.superFrames,
        segments: this.offload.segments,
      },
      ports: this.ports.map((p) => ({ id: p.id, name: p.name, vnet: p.vnet, counters: p.counters.snapshot() })),
      macTable: {
        size: this.table.size,
        capacity: this.table.maxEntries,
        ...(macEntries
          ? {
              entries: this.table.entries().map((e) => ({
                mac: formatMac(e.mac),
                port: this.byId[e.portId]?.name ?? `#${e.portId}`,
                isStatic: e.isStatic,
                ageMs: e.isStatic || now === undefined ? null : now - e.lastSeen,
              })),
            }
          : {}),
      },
    };
  }

  private drop(from: Port, reason: DropReason): void {
    this.dropped.add(reason);
    from.counters.drop(reason);
  }

  private deliverTo(from: Port, to: Port, frame: Frame, now: number): void {
    if (frame.vnet && !to.vnet) {
      this.completeOffloads(from, to, null, frame, now);
      return;
    }
    const c = to.counters;
    c.txFrames++;
    c.txBytes += frame.len;
    to.deliver(frame, now);
  }

  private flood(from: Port, frame: Frame, now: number): void {
    const ports = this.ports;
    let plainTargets = 0;
    for (let i = 0; i < ports.length; i++) {
      const to = ports[i];
      if (to === from) continue;
      if (frame.vnet && !to.vnet) {
        plainTargets++;
        continue;
      }
      const c = to.counters;
      c.txFrames++;
      c.txBytes += frame.len;
      to.deliver(frame, now);
    }
    // Complete offloads once; each resulting frame goes to every plain port.
    if (plainTargets > 0) this.completeOffloads(from, null, from, frame, now);
  }

  /**
   * Runs the offload completer with emit going to `to`, or to every plain
   * port but `except`. The previous emit context is restored afterwards
   * because a port may feed the bridge from inside deliver (the gateway
   * answers synchronously), and that frame may need offloads too. The
   * completer copes with being re-entered: each segment is rebuilt from the
   * source frame, never from what the scratch buffer held before.
   */
  private completeOffloads(from: Port, to: Port | null, except: Port | null, frame: Frame, now: number): void {
    const savedTo = this.emitTo;
    const savedExcept = this.emitExcept;
    const savedNow = this.emitNow;
    this.emitTo = to;
    this.emitExcept = except;
    this.emitNow = now;
    const reason = this.offload.complete(frame, this.emitBound);
    this.emitTo = savedTo;
    this.emitExcept = savedExcept;
    this.emitNow = savedNow;
    if (reason !== null) this.drop(from, reason);
  }

  private emitSegment(f: Frame): void {
    const now = this.emitNow;
    const one = this.emitTo;
    if (one !== null) {
      one.counters.txFrames++;
      one.counters.txBytes += f.len;
      one.deliver(f, now);
      return;
    }
    const ports = this.ports;
    const except = this.emitExcept;
    for (let i = 0; i < ports.length; i++) {
      const to = ports[i];
      if (to === except || to.vnet) continue;
      to.counters.txFrames++;
      to.counters.txBytes += f.len;
      to.deliver(f, now);
    }
  }
}

export function defaultBridgeOptions(): BridgeOptions {
  return {
    macTableSize: defaults.macTableSize,
    macAgingMs: defaults.macAgingMs,
    macSweepMs: defaults.macSweepMs,
  };
}
