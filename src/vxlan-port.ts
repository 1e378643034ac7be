/**
 * A bridge port that is a VXLAN tunnel endpoint (RFC 7348): the segment
 * continues on other hosts, behind a UDP socket on this one.
 *
 * How it works
 * - One UDP socket, one VNI. Every datagram must carry the VXLAN header with
 *   only the I flag and our VNI (stack/wire/vxlan.ts); anything else (other
 *   flags, another VNI, runts, over-long datagrams) is counted by reason and
 *   dropped, and the socket carries on.
 * - A remote is identified by its IP address alone: senders hash the inner
 *   flow into the UDP source port, and every VTEP listens on the VXLAN port.
 * - Remote endpoints: the ones given on the command line (flooding targets,
 *   like the kernel vxlan device's all-zeros FDB entries) and those learned
 *   from the sources of valid packets (at most MAX_REMOTES; a remote VTEP
 *   that pointed its own default at us, as flannel's peers do). Both are
 *   flooded to: a usernet in the middle of several kernels then carries their
 *   broadcasts too.
 * - The FDB maps inner source MACs to the remote they came from (a MacTable
 *   whose "port id" is the remote's index, aged like the bridge's). Unicast
 *   to a known MAC goes to its one remote; broadcast, multicast and unknown
 *   unicast go to every remote.
 * - Receive: recvmmsg batches into slots allocated once (native DatagramIo);
 *   the inner frame is handed to the bridge in place, after the 8-byte
 *   header. Transmit: deliver() writes the header and copies the frame once
 *   into the transmit area; each destination is one sendmmsg descriptor over
 *   those same bytes; flush() sends the batch.
 * - MTU: inner frames are at most MTU + 14 (+ a VLAN tag); the outer packet
 *   adds 50 bytes over IPv4 (70 over IPv6). The socket allows fragmentation
 *   of outer packets, as Linux's vxlan does by default; give usernet --mtu
 *   1450 on a 1500-byte underlay (flannel's choice) to avoid it.
 */
import { newFrame, PortCounters, type Frame, type Port } from '../stack/frame.js';
import { MacTable } from '../stack/mac-table.js';
import { checkVxlanHeader, VXLAN_BAD_FLAGS, VXLAN_HLEN, VXLAN_OK, writeVxlanHeader } from '../stack/wire/vxlan.js';
import type { Logger } from './log.js';
import type { BatchSink } from './tap-port.js';
import { sendDatagrams, TX_MESSAGES } from './datagram-port.js';
import { ADDR_STRIDE, DGRAM_MAX_BATCH, DGRAM_TRUNCATED, formatSockaddr, socketIo, type DatagramIo } from './native/socket-io.js';

const ETH_HLEN = 14;
/** Remote VTEPs (configured and learned); a segment spanning more hosts than this is beyond a user-mode tunnel. */
export const MAX_REMOTES = 64;
/** FDB entries: as many MACs as the bridge's default table. */
const FDB_SIZE = 4096;

export interface VxlanPortOptions {
  vni: number;
  /** sockaddrs of the configured remotes. */
  remotes: Uint8Array[];
  /** The UDP port learned remotes are sent to (the configured remotes' port). */
  vxlanPort: number;
  /** Largest inner frame (MTU + Ethernet header + VLAN tag). */
  maxFrame: number;
  /** FDB ageing (the bridge's MAC ageing). */
  agingMs: number;
  log: Logger;
  onError: (port: VxlanPort, err: Error) => void;
}

export class VxlanPort implements Port {
  id = -1;
  readonly vnet = false;
  readonly counters = new PortCounters();
  /** Inner source MAC -> remote index, aged like the bridge's table. */
  readonly fdb: MacTable;
  private readonly io: DatagramIo;
  private readonly vni: number;
  private readonly vxlanPort: number;
  private readonly rx: Buffer;
  private readonly slotSize: number;
  private readonly meta = new Uint32Array(DGRAM_MAX_BATCH * 2);
  private readonly addrs: Uint8Array;
  private readonly tx: Buffer;
  private readonly dests: Uint8Array;
  private readonly destLen = new Uint32Array(MAX_REMOTES);
  private remoteCount = 0;
  private readonly configured: number;
  private readonly desc = new Uint32Array(TX_MESSAGES * 4);
  private readonly frame = newFrame();
  private readonly maxFrame: number;
  private readonly log: Logger;
  private txUsed = 0;
  private txCount = 0;
  private closed = false;

  constructor(
    fd: number,
    readonly name: string,
    private readonly sink: BatchSink,
    private readonly clock: () => number,
    opts: VxlanPortOptions,
  ) {
    this.vni = opts.vni;
    this.vxlanPort = opts.vxlanPort;
    this.maxFrame = opts.maxFrame;
    this.log = opts.log;
    this.fdb = new MacTable(FDB_SIZE, opts.agingMs);
    this.slotSize = Math.ceil((opts.maxFrame + VXLAN_HLEN + 1) / 64) * 64;
    const rxArea = new ArrayBuffer(this.slotSize * DGRAM_MAX_BATCH);
    this.rx = Buffer.from(rxArea);
    const addrArea = new ArrayBuffer(ADDR_STRIDE * DGRAM_MAX_BATCH);
    this.addrs = new Uint8Array(addrArea);
    const txArea = new ArrayBuffer(this.slotSize * TX_MESSAGES);
    this.tx = Buffer.from(txArea);
    const destArea = new ArrayBuffer(ADDR_STRIDE * MAX_REMOTES);
    this.dests = new Uint8Array(destArea);
    for (const r of opts.remotes.slice(0, MAX_REMOTES)) this.addRemote(r, 0, r.length);
    this.configured = this.remoteCount;
    this.io = socketIo.createDatagramIo({
      fd,
      rx: rxArea,
      slotSize: this.slotSize,
      slotCount: DGRAM_MAX_BATCH,
      meta: this.meta,
      addrs: addrArea,
      tx: txArea,
      dests: destArea,
      onBatch: (n) => this.onBatch(n),
      onError: (err) => opts.onError(this, err),
    });
  }

  start(): void {
    this.io.start();
  }

  /** Remote endpoints, configured first, for stats. */
  remotes(): { address: string; learned: boolean }[] {
    const out = [];
    for (let i = 0; i < this.remoteCount; i++) {
      out.push({ address: formatSockaddr(this.dests, i * ADDR_STRIDE, this.destLen[i]), learned: i >= this.configured });
    }
    return out;
  }

  private addRemote(src: Uint8Array, off: number, len: number): number {
    const i = this.remoteCount++;
    this.dests.set(src.subarray(off, off + len), i * ADDR_STRIDE);
    this.destLen[i] = len;
    return i;
  }

  /**
   * Index of the remote whose address (not port) is the one at addrs[off,
   * off+len), or -1. A VTEP is its IP address: senders pick the UDP source
   * port per inner flow (RFC 7348 §5, Linux hashes the inner headers) and
   * listen on the VXLAN port only.
   */
  private findRemote(off: number, len: number): number {
    const a = this.addrs;
    const d = this.dests;
    // sockaddr_in: the address at [4, 8); sockaddr_in6: at [8, 24) and the scope id at [24, 28).
    const from = len >= 28 ? 8 : 4;
    const to = len >= 28 ? 28 : 8;
    for (let r = 0; r < this.remoteCount; r++) {
      if (this.destLen[r] !== len) continue;
      const base = r * ADDR_STRIDE;
      if (a[off] !== d[base] || a[off + 1] !== d[base + 1]) continue;
      let j = from;
      while (j < to && a[off + j] === d[base + j]) j++;
      if (j === to) return r;
    }
    return -1;
  }

  private onBatch(count: number): void {
    const now = this.clock();
    const frame = this.frame;
    const meta = this.meta;
    const rx = this.rx;
    for (let i = 0; i < count; i++) {
      const len = meta[2 * i];
      const info = meta[2 * i + 1];
      const off = i * this.slotSize;
      if ((info & DGRAM_TRUNCATED) !== 0 || len > this.maxFrame + VXLAN_HLEN) {
        this.counters.drop('vxlan-oversize');
        continue;
      }
      if (len < VXLAN_HLEN + ETH_HLEN) {
        this.counters.drop('vxlan-runt');
        continue;
      }
      const check = checkVxlanHeader(rx, off, this.vni);
      if (check !== VXLAN_OK) {
        this.counters.drop(check === VXLAN_BAD_FLAGS ? 'vxlan-flags' : 'vxlan-vni');
        continue;
      }
      const alen = info & 0xffff;
      let remote = this.findRemote(i * ADDR_STRIDE, alen);
      if (remote < 0) {
        if (this.remoteCount < MAX_REMOTES && alen > 2 && alen <= ADDR_STRIDE) {
          remote = this.addRemote(this.addrs, i * ADDR_STRIDE, alen);
          // Answers go to the VXLAN port, not to the source port the sender hashed.
          this.dests[remote * ADDR_STRIDE + 2] = this.vxlanPort >> 8;
          this.dests[remote * ADDR_STRIDE + 3] = this.vxlanPort & 0xff;
          this.log.info(`${this.name}: learned remote ${formatSockaddr(this.dests, remote * ADDR_STRIDE, alen)}`);
        } else {
          this.counters.drop('vxlan-remote-table-full');
        }
      }
      const inner = off + VXLAN_HLEN;
      // Learn unicast sources only; the bridge drops group and zero sources itself.
      if (remote >= 0 && (rx[inner + 6] & 1) === 0) this.fdb.learnAt(rx, inner + 6, remote, now);
      frame.buf = rx;
      frame.off = inner;
      frame.len = len - VXLAN_HLEN;
      frame.vnet = false;
      this.sink.input(this, frame, now);
    }
    this.sink.flush(now);
  }

  deliver(frame: Frame, now: number): void {
    if (this.closed) return;
    if (frame.vnet) {
      this.counters.drop('vnet-to-plain');
      return;
    }
    const len = frame.len;
    if (len > this.maxFrame) {
      this.counters.drop('too-big');
      return;
    }
    if (this.remoteCount === 0) {
      this.counters.drop('no-remote');
      return;
    }
    const buf = frame.buf;
    let target = -1;
    if ((buf[frame.off] & 1) === 0) target = this.fdb.lookupAt(buf, frame.off, now);
    const msgs = target >= 0 ? 1 : this.remoteCount;
    if (this.txCount + msgs > TX_MESSAGES || this.txUsed + VXLAN_HLEN + len > this.tx.length) this.flush(now);
    const at = this.txUsed;
    writeVxlanHeader(this.tx, at, this.vni);
    buf.copy(this.tx, at + VXLAN_HLEN, frame.off, frame.off + len);
    this.txUsed = at + VXLAN_HLEN + len;
    const d = this.desc;
    if (target >= 0) {
      this.queue(d, at, len + VXLAN_HLEN, target);
    } else {
      for (let r = 0; r < this.remoteCount; r++) this.queue(d, at, len + VXLAN_HLEN, r);
    }
  }

  private queue(d: Uint32Array, at: number, len: number, remote: number): void {
    const w = this.txCount * 4;
    d[w] = at;
    d[w + 1] = len;
    d[w + 2] = remote * ADDR_STRIDE;
    d[w + 3] = this.destLen[remote];
    this.txCount++;
  }

  flush(_now: number): void {
    const count = this.txCount;
    if (count === 0) return;
    this.txCount = 0;
    this.txUsed = 0;
    if (this.closed) return;
    sendDatagrams(this.io, this.desc, count, this.counters);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.io.close();
  }
}
