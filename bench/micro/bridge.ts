/**
 * Frames per second through the Bridge alone: no taps, no syscalls. Ports are
 * counters (deliver and flush do nothing but count), frames are prebuilt in
 * one buffer, and the Frame object is reused, as TapPort does. Measures known
 * unicast between two plain ports at 64 and 1514 bytes, and a 64 KiB vnet GSO
 * super-frame crossing between two vnet ports verbatim.
 */
import { PortCounters, type Frame, type Port } from '../../stack/frame.js';
import { Bridge } from '../../stack/bridge.js';
import { VIRTIO_NET_HDR_LEN } from '../../stack/wire/vnet.js';
import { yieldNow } from './gc-counter.js';

class CountingPort implements Port {
  id = -1;
  readonly counters = new PortCounters();
  /** Delivered frames and bytes; typed storage, so counts beyond 2^30 are not boxed on every store. */
  private readonly count = new Float64Array(2);
  get delivered(): number {
    return this.count[0];
  }
  get bytes(): number {
    return this.count[1];
  }
  constructor(
    readonly name: string,
    readonly vnet: boolean,
  ) {}
  deliver(frame: Frame, _now: number): void {
    this.count[0]++;
    this.count[1] += frame.len;
  }
  flush(_now: number): void {}
}

const MAC_A = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B = [0x02, 0, 0, 0, 0, 0x0b];

/** An Ethernet + IPv4 + UDP frame of `len` bytes from A to B at `off` (only the Ethernet header matters to the bridge). */
function writeFrame(buf: Buffer, off: number, len: number, src: number[], dst: number[]): void {
  buf.fill(0, off, off + len);
  buf.set(dst, off);
  buf.set(src, off + 6);
  buf.writeUInt16BE(0x0800, off + 12);
  buf[off + 14] = 0x45;
  buf.writeUInt16BE(len - 14, off + 16);
  buf[off + 22] = 64;
  buf[off + 23] = 17;
}

export interface BridgeMicroResult {
  framesPerSecond: number;
  frames: number;
  seconds: number;
}

/** Runs frames of `len` bytes A -> B for `seconds`, in slices that yield to the event loop. */
/** `onSteady` runs after the warm-up, right before the timed part (the GC counter resets there). */
export async function bridgeThroughput(len: number, vnet: boolean, seconds: number, onSteady?: () => void): Promise<BridgeMicroResult> {
  const bridge = new Bridge();
  const a = new CountingPort('a', vnet);
  const b = new CountingPort('b', vnet);
  bridge.addPort(a);
  bridge.addPort(b);
  // A batch of 64 frames in one buffer, as a tap receive area holds them.
  const BATCH = 64;
  const slot = Math.ceil((len + VIRTIO_NET_HDR_LEN) / 64) * 64;
  const area = Buffer.alloc(slot * BATCH);
  for (let i = 0; i < BATCH; i++) {
    writeFrame(area, i * slot + VIRTIO_NET_HDR_LEN, len, MAC_A, MAC_B);
    if (vnet && len > 1514) {
      // gso_type TCPV4 with NEEDS_CSUM: the bridge must pass it between vnet ports untouched.
      area[i * slot] = 1;
      area[i * slot + 1] = 1;
    }
  }
  const frame: Frame = { buf: area, off: 0, len, vnet };
  // Teach the bridge where B lives.
  const fromB = Buffer.alloc(64 + VIRTIO_NET_HDR_LEN);
  writeFrame(fromB, VIRTIO_NET_HDR_LEN, 60, MAC_B, MAC_A);
  bridge.input(b, { buf: fromB, off: VIRTIO_NET_HDR_LEN, len: 60, vnet }, 0);

  // The clock is read once per 256 batches: performance.now() allocates a
  // little per call (the heap profile shows it), which would show up in the GC
  // count as if it were the bridge's.
  const run = (until: number): number => {
    let n = 0;
    const now = performance.now();
    while (performance.now() < until) {
      for (let k = 0; k < 256; k++) {
        for (let i = 0; i < BATCH; i++) {
          frame.off = i * slot + VIRTIO_NET_HDR_LEN;
          bridge.input(a, frame, now);
        }
        bridge.flush(now);
        n += BATCH;
      }
    }
    return n;
  };
  // Warm-up lets the JIT settle before timing.
  run(performance.now() + 200);
  onSteady?.();
  const start = performance.now();
  const end = start + seconds * 1000;
  let frames = 0;
  while (performance.now() < end) {
    frames += run(Math.min(end, performance.now() + 5));
    await yieldNow();
  }
  const el = (performance.now() - start) / 1000;
  if (b.delivered < frames) throw new Error(`bridge delivered ${b.delivered} of ${frames} frames`);
  return { framesPerSecond: frames / el, frames, seconds: el };
}
