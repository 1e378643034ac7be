/**
 * A bridge port over a unix datagram socket: one plain Ethernet frame per
 * datagram, as QEMU's `-netdev dgram` sends them (and BESS, vfkit).
 *
 * How it works
 * - usernet binds the path; the peer (QEMU's own bound socket, its
 *   `local.path`) is learned from the source address of the datagram that
 *   came in last, so a VM restarted on another path is followed. Until the
 *   first datagram frames towards it are dropped ("no-peer"); a datagram
 *   from an unnamed socket cannot be answered and is dropped ("unnamed-peer").
 * - Receive: native/socket_io.cc (DatagramIo) reads a batch with recvmmsg
 *   into slots allocated here once; each frame goes to the bridge through one
 *   reused Frame, then every port flushes.
 * - Transmit: deliver() copies the frame into the transmit area and queues a
 *   descriptor; flush() sends the batch with one sendmmsg.
 * - Over-long datagrams (beyond MTU + Ethernet header + VLAN tag) and runts
 *   are counted and dropped; the socket carries on.
 */
import { newFrame, PortCounters, type Frame, type Port } from '../stack/frame.js';
import type { Logger } from './log.js';
import type { BatchSink } from './tap-port.js';
import { ADDR_STRIDE, DGRAM_MAX_BATCH, DGRAM_TRUNCATED, formatSockaddr, socketIo, type DatagramIo } from './native/socket-io.js';
import type { PortCounters as Counters } from '../stack/frame.js';

const ETH_HLEN = 14;
/** Frames (messages) per flush before a send is forced; sendmmsg takes 64 per call. */
export const TX_MESSAGES = 256;
const EAGAIN = 11;

/**
 * Sends `count` messages of `desc`; a message the kernel refuses is dropped
 * and counted, the rest still go (a full queue drops the rest of the batch,
 * as a NIC would).
 */
export function sendDatagrams(io: DatagramIo, desc: Uint32Array, count: number, counters: Counters): void {
  let start = 0;
  while (start < count) {
    const sent = io.send(start === 0 ? desc : desc.subarray(start * 4), count - start);
    start += sent;
    if (start >= count) return;
    if (io.lastError === EAGAIN) {
      for (let i = start; i < count; i++) counters.drop('tx-queue-full');
      return;
    }
    counters.drop('tx-error');
    start++;
  }
}

export interface DatagramPortOptions {
  maxFrame: number;
  log: Logger;
  onError: (port: DatagramPort, err: Error) => void;
}

export class DatagramPort implements Port {
  id = -1;
  readonly vnet = false;
  readonly counters = new PortCounters();
  private readonly io: DatagramIo;
  private readonly rx: Buffer;
  private readonly slotSize: number;
  private readonly meta = new Uint32Array(DGRAM_MAX_BATCH * 2);
  private readonly addrs: Uint8Array;
  private readonly tx: Buffer;
  private readonly dests: Uint8Array;
  private readonly desc = new Uint32Array(TX_MESSAGES * 4);
  private readonly frame = newFrame();
  private readonly maxFrame: number;
  private readonly log: Logger;
  private peerLen = 0;
  private txUsed = 0;
  private txCount = 0;
  private closed = false;

  constructor(
    fd: number,
    readonly name: string,
    private readonly sink: BatchSink,
    private readonly clock: () => number,
    opts: DatagramPortOptions,
  ) {
    this.maxFrame = opts.maxFrame;
    this.log = opts.log;
    // One byte more than the largest frame, so the kernel's MSG_TRUNC marks anything longer.
    this.slotSize = Math.ceil((opts.maxFrame + 1) / 64) * 64;
    const rxArea = new ArrayBuffer(this.slotSize * DGRAM_MAX_BATCH);
    this.rx = Buffer.from(rxArea);
    const addrArea = new ArrayBuffer(ADDR_STRIDE * DGRAM_MAX_BATCH);
    this.addrs = new Uint8Array(addrArea);
    const txArea = new ArrayBuffer(this.slotSize * TX_MESSAGES);
    this.tx = Buffer.from(txArea);
    const destArea = new ArrayBuffer(ADDR_STRIDE);
    this.dests = new Uint8Array(destArea);
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

  /** The peer's address, or null before the first datagram. */
  get peer(): string | null {
    return this.peerLen === 0 ? null : formatSockaddr(this.dests, 0, this.peerLen);
  }

  private onBatch(count: number): void {
    const now = this.clock();
    const frame = this.frame;
    const meta = this.meta;
    for (let i = 0; i < count; i++) {
      const len = meta[2 * i];
      const info = meta[2 * i + 1];
      if ((info & DGRAM_TRUNCATED) !== 0 || len > this.maxFrame) {
        this.counters.drop('oversize');
        continue;
      }
      const alen = info & 0xffff;
      if (alen <= 2) {
        this.counters.drop('unnamed-peer');
        continue;
      }
      if (len < ETH_HLEN) {
        this.counters.drop(len === 0 ? 'zero-length' : 'runt');
        continue;
      }
      this.learnPeer(i * ADDR_STRIDE, alen);
      frame.buf = this.rx;
      frame.off = i * this.slotSize;
      frame.len = len;
      frame.vnet = false;
      this.sink.input(this, frame, now);
    }
    this.sink.flush(now);
  }

  private learnPeer(off: number, len: number): void {
    const a = this.addrs;
    const d = this.dests;
    if (len === this.peerLen) {
      let same = true;
      for (let j = 0; j < len; j++) {
        if (a[off + j] !== d[j]) {
          same = false;
          break;
        }
      }
      if (same) return;
    }
    d.set(a.subarray(off, off + len));
    this.peerLen = len;
    this.log.info(`${this.name}: peer ${formatSockaddr(d, 0, len)}`);
  }

  deliver(frame: Frame, now: number): void {
    if (this.closed) return;
    if (frame.vnet) {
      this.counters.drop('vnet-to-plain');
      return;
    }
    if (this.peerLen === 0) {
      this.counters.drop('no-peer');
      return;
    }
    const len = frame.len;
    if (len > this.maxFrame) {
      this.counters.drop('too-big');
      return;
    }
    if (this.txCount === TX_MESSAGES || this.txUsed + len > this.tx.length) this.flush(now);
    frame.buf.copy(this.tx, this.txUsed, frame.off, frame.off + len);
    const w = this.txCount * 4;
    this.desc[w] = this.txUsed;
    this.desc[w + 1] = len;
    this.desc[w + 2] = 0;
    this.desc[w + 3] = this.peerLen;
    this.txUsed += len;
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
