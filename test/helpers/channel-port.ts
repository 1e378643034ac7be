/**
 * An in-memory bridge port for tests, in the spirit of gVisor's link/channel:
 * it records a copy of every frame delivered to it (the Frame is only valid
 * during deliver) and lets a test inject frames into a FrameSink as if they
 * had been read from a tap.
 *
 * The second half holds hand-rolled frame builders and an independent
 * checksum oracle for the bridge, offload and pcap tests, deliberately
 * written without stack/wire so the checks share no code with what they check.
 */
import { PortCounters, type Frame, type FrameSink, type Port } from '../../stack/frame.js';
import { VIRTIO_NET_HDR_LEN } from '../../stack/wire/vnet.js';

export interface DeliveredFrame {
  /** The Ethernet frame, without any virtio-net header. */
  bytes: Buffer;
  /** The 10 header bytes when the frame arrived with vnet = true, else null. */
  vnetHeader: Buffer | null;
  /** The Frame object and buffer the bridge handed over (identity checks only). */
  frame: Frame;
  buf: Buffer;
  off: number;
  now: number;
}

export interface ChannelPortOptions {
  vnet?: boolean;
  /** Keep copies of delivered frames (off for allocation tests). */
  record?: boolean;
  /** Size of the injection buffer. */
  bufferLen?: number;
}

export class ChannelPort implements Port {
  id = -1;
  readonly name: string;
  readonly vnet: boolean;
  readonly counters = new PortCounters();
  readonly delivered: DeliveredFrame[] = [];
  record: boolean;
  deliveries = 0;
  flushes = 0;
  /** Called after a delivery is recorded, e.g. to answer synchronously like the gateway does. */
  onDeliver: ((frame: Frame, now: number) => void) | null = null;

  /** Injection memory: frames are written at VIRTIO_NET_HDR_LEN so a header fits before them. */
  readonly txBuf: Buffer;
  readonly txFrame: Frame;

  constructor(name: string, options: ChannelPortOptions = {}) {
    this.name = name;
    this.vnet = options.vnet ?? false;
    this.record = options.record ?? true;
    this.txBuf = Buffer.alloc(options.bufferLen ?? 70_000);
    this.txFrame = { buf: this.txBuf, off: VIRTIO_NET_HDR_LEN, len: 0, vnet: false };
  }

  deliver(frame: Frame, now: number): void {
    this.deliveries++;
    if (this.record) this.recordFrame(frame, now);
    if (this.onDeliver !== null) this.onDeliver(frame, now);
  }

  private recordFrame(frame: Frame, now: number): void {
    this.delivered.push({
      bytes: Buffer.from(frame.buf.subarray(frame.off, frame.off + frame.len)),
      vnetHeader: frame.vnet ? Buffer.from(frame.buf.subarray(frame.off - VIRTIO_NET_HDR_LEN, frame.off)) : null,
      frame,
      buf: frame.buf,
      off: frame.off,
      now,
    });
  }

  flush(_now: number): void {
    this.flushes++;
  }

  /** Returns and forgets what was delivered so far. */
  take(): DeliveredFrame[] {
    return this.delivered.splice(0, this.delivered.length);
  }

  /**
   * Copies `bytes` (an Ethernet frame) into the injection buffer and hands it
   * to `sink` as coming from this port. With `vnetHeader` the frame carries
   * that virtio-net header (frame.vnet = true).
   */
  inject(sink: FrameSink, bytes: Uint8Array, now: number, vnetHeader?: Uint8Array): Frame {
    const f = this.prepare(bytes, vnetHeader);
    sink.input(this, f, now);
    return f;
  }

  /** Fills the injection frame without sending it (for repeated sends of the same bytes). */
  prepare(bytes: Uint8Array, vnetHeader?: Uint8Array): Frame {
    const f = this.txFrame;
    this.txBuf.fill(0, 0, VIRTIO_NET_HDR_LEN);
    if (vnetHeader !== undefined) this.txBuf.set(vnetHeader.subarray(0, VIRTIO_NET_HDR_LEN), 0);
    this.txBuf.set(bytes, VIRTIO_NET_HDR_LEN);
    f.buf = this.txBuf;
    f.off = VIRTIO_NET_HDR_LEN;
    f.len = bytes.length;
    f.vnet = vnetHeader !== undefined;
    return f;
  }
}

// --- frame builders and checksum oracle ---

export const MAC_A = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0a];
export const MAC_B = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0b];
export const MAC_C = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0c];
export const BCAST = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff];

/** RFC 1071 sum of 16-bit words, folded; an odd byte is padded on the right. */
export function onesSum(bytes: Uint8Array, start = 0, end = bytes.length, init = 0): number {
  let s = init;
  for (let i = start; i < end; i += 2) {
    const w = (bytes[i] << 8) | (i + 1 < end ? bytes[i + 1] : 0);
    s += w;
    s = (s & 0xffff) + (s >>> 16);
  }
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

export function rd16(b: Uint8Array, o: number): number {
  return (b[o] << 8) | b[o + 1];
}
export function rd32(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}
export function wr16(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 8) & 0xff;
  b[o + 1] = v & 0xff;
}
export function wr32(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 24) & 0xff;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
}

export function ethernet(dst: number[], src: number[], etherType: number, payload: Uint8Array): Buffer {
  const b = Buffer.alloc(14 + payload.length);
  b.set(dst, 0);
  b.set(src, 6);
  wr16(b, 12, etherType);
  b.set(payload, 14);
  return b;
}

export function pattern(len: number, seed = 1): Buffer {
  const b = Buffer.alloc(len);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

export interface L4Spec {
  /** 'tcp' or 'udp'. */
  proto: 'tcp' | 'udp';
  payload: Uint8Array;
  seq?: number;
  flags?: number;
  tcpOptions?: Uint8Array;
}

/**
 * An IPv4 packet whose L4 checksum holds only the pseudo-header sum (folded,
 * not complemented), the way a NEEDS_CSUM sender leaves it. Returns the bytes
 * and the offset of the L4 header within them.
 */
export function ipv4Partial(l4: L4Spec, opts: { id?: number; ipOptions?: Uint8Array } = {}): { bytes: Buffer; l4Off: number } {
  const ipOpt = opts.ipOptions ?? new Uint8Array(0);
  const ihl = 20 + ipOpt.length;
  const l4hdr = buildL4Header(l4);
  const total = ihl + l4hdr.length + l4.payload.length;
  const b = Buffer.alloc(total);
  b[0] = 0x40 | (ihl / 4);
  wr16(b, 2, total & 0xffff);
  wr16(b, 4, opts.id ?? 0x1234);
  wr16(b, 6, 0x4000); // DF
  b[8] = 64;
  b[9] = l4.proto === 'tcp' ? 6 : 17;
  b.set([10, 0, 2, 15], 12);
  b.set([93, 184, 216, 34], 16);
  b.set(ipOpt, 20);
  wr16(b, 10, ~onesSum(b, 0, ihl) & 0xffff);
  b.set(l4hdr, ihl);
  b.set(l4.payload, ihl + l4hdr.length);
  const l4len = total - ihl;
  if (l4.proto === 'udp') wr16(b, ihl + 4, l4len);
  const pseudo = onesSum(b, 12, 20, b[9] + l4len);
  wr16(b, ihl + (l4.proto === 'tcp' ? 16 : 6), pseudo);
  return { bytes: b, l4Off: ihl };
}

export function ipv6Partial(l4: L4Spec): { bytes: Buffer; l4Off: number } {
  const l4hdr = buildL4Header(l4);
  const plen = l4hdr.length + l4.payload.length;
  const b = Buffer.alloc(40 + plen);
  b[0] = 0x60;
  wr16(b, 4, plen & 0xffff);
  b[6] = l4.proto === 'tcp' ? 6 : 17;
  b[7] = 64;
  b.set([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0f], 8);
  b.set([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x22], 24);
  b.set(l4hdr, 40);
  b.set(l4.payload, 40 + l4hdr.length);
  if (l4.proto === 'udp') wr16(b, 44, plen);
  const pseudo = onesSum(b, 8, 40, b[6] + plen);
  wr16(b, 40 + (l4.proto === 'tcp' ? 16 : 6), pseudo);
  return { bytes: b, l4Off: 40 };
}

function buildL4Header(l4: L4Spec): Buffer {
  if (l4.proto === 'udp') {
    const h = Buffer.alloc(8);
    wr16(h, 0, 5353);
    wr16(h, 2, 53);
    return h;
  }
  const opt = l4.tcpOptions ?? new Uint8Array(0);
  const h = Buffer.alloc(20 + opt.length);
  wr16(h, 0, 40000);
  wr16(h, 2, 443);
  wr32(h, 4, l4.seq ?? 1000);
  wr32(h, 8, 0x01020304);
  h[12] = ((20 + opt.length) / 4) << 4;
  h[13] = l4.flags ?? 0x18;
  wr16(h, 14, 65535);
  h.set(opt, 20);
  return h;
}

export interface VnetFields {
  flags?: number;
  gsoType?: number;
  hdrLen?: number;
  gsoSize?: number;
  csumStart?: number;
  csumOffset?: number;
}

/** struct virtio_net_hdr, little-endian fields. */
export function vnetHeader(f: VnetFields): Buffer {
  const h = Buffer.alloc(10);
  h[0] = f.flags ?? 0;
  h[1] = f.gsoType ?? 0;
  h.writeUInt16LE(f.hdrLen ?? 0, 2);
  h.writeUInt16LE(f.gsoSize ?? 0, 4);
  h.writeUInt16LE(f.csumStart ?? 0, 6);
  h.writeUInt16LE(f.csumOffset ?? 0, 8);
  return h;
}

/** Verifies IPv4 header and L4 checksums of an Ethernet frame from scratch. */
export function checksumsValid(frame: Uint8Array): { ip: boolean; l4: boolean } {
  const et = rd16(frame, 12);
  let l3 = 14;
  let e = et;
  if (et === 0x8100) {
    l3 = 18;
    e = rd16(frame, 16);
  }
  if (e === 0x0800) {
    const ihl = (frame[l3] & 0x0f) * 4;
    const total = rd16(frame, l3 + 2);
    const proto = frame[l3 + 9];
    const l4len = total - ihl;
    const ip = onesSum(frame, l3, l3 + ihl) === 0xffff;
    const pseudo = onesSum(frame, l3 + 12, l3 + 20, proto + l4len);
    const l4 = onesSum(frame, l3 + ihl, l3 + total, pseudo) === 0xffff;
    return { ip, l4 };
  }
  const plen = rd16(frame, l3 + 4);
  const proto = frame[l3 + 6];
  const pseudo = onesSum(frame, l3 + 8, l3 + 40, proto + plen);
  return { ip: true, l4: onesSum(frame, l3 + 40, l3 + 40 + plen, pseudo) === 0xffff };
}
