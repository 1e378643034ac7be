/**
 * The steady UDP NAT path allocates nothing per datagram, either way:
 * guest frames (vnet header, partial checksum, as a tap with offloads hands
 * them over) through the gateway, the IPv4 layer and the NAT's flow lookup
 * to the host env, and host datagrams (single and UDP_GRO bursts) from
 * `fromHost` out to the guest through IpOutput.
 *
 * Same measurement as the TCP one (test/stack/tcp/no-alloc.test.ts): the
 * loop runs synchronously, the GC PerformanceObserver records every
 * collection that starts during it, and the heap size around it catches
 * growth that did not trigger one. A control run whose host env copies each
 * datagram into a fresh Buffer proves the check can fail.
 */
import { describe, expect, it } from 'vitest';
import type { Frame, FrameSink, Port } from '../../../stack/frame.js';
import type { UdpHostEnv } from '../../../stack/nat/udp-nat.js';
import type { UdpFlow } from '../../../stack/nat/udp-flows.js';
import { emitEthernetHeader, ETHERTYPE_IPV4 } from '../../../stack/wire/ethernet.js';
import { emitIpv4Header, IP_PROTO_UDP } from '../../../stack/wire/ipv4.js';
import { writeUdpHeader } from '../../../stack/wire/udp.js';
import { VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_NONE, VIRTIO_NET_HDR_LEN, VnetHeaderView } from '../../../stack/wire/vnet.js';
import { GW_MAC, makeNat, NET } from './nat-fixture.js';
import { measureAllocation } from '../../helpers/gc-measure.js';

const GW = NET + 2;
const GUEST = NET + 100;
/** Above 2^32: a MAC that V8 has to box whenever it escapes as a number. */
const GUEST_MAC = 0x8a00_c000_0064;
const FRAMES = 16;
const PAYLOAD = 1400;

/** Counts what the stack sends to the guest, touching no memory it would have to allocate. */
class CountingSink implements FrameSink {
  frames = 0;
  bytes = 0;
  input(_from: Port, f: Frame): void {
    this.frames++;
    this.bytes += f.len;
  }
}

class CountingHost implements UdpHostEnv {
  opened: UdpFlow | null = null;
  datagrams = 0;
  bytes = 0;
  /** The control: keep a copy of each datagram, as a naive host env would. */
  allocate = false;
  last: Buffer | null = null;
  open(flow: UdpFlow): void {
    this.opened = flow;
  }
  send(_flow: UdpFlow, buf: Buffer, off: number, len: number): void {
    this.datagrams++;
    this.bytes += len;
    if (this.allocate) this.last = Buffer.from(buf.subarray(off, off + len));
  }
  close(): void {}
  sendDns(): void {}
  sendToClient(): void {}
}

/** FRAMES guest datagrams in one area, each from its own source port range start, to 10.0.2.2:5201 (the host's loopback). */
function guestFrames(): Frame[] {
  const slot = 2048;
  const area = Buffer.alloc(slot * FRAMES);
  const frames: Frame[] = [];
  for (let i = 0; i < FRAMES; i++) {
    const base = i * slot;
    const v = new VnetHeaderView().reset(area, base);
    v.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    v.gsoType = VIRTIO_NET_HDR_GSO_NONE;
    v.csumStart = 14 + 20;
    v.csumOffset = 6;
    const e = base + VIRTIO_NET_HDR_LEN;
    emitEthernetHeader(area, e, GW_MAC, GUEST_MAC, ETHERTYPE_IPV4);
    emitIpv4Header(area, e + 14, GUEST, GW, IP_PROTO_UDP, 8 + PAYLOAD, 64, i + 1, false);
    writeUdpHeader(area, e + 34, 40_000, 5201, PAYLOAD);
    area.fill(i, e + 42, e + 42 + PAYLOAD);
    frames.push({ buf: area, off: e, len: 14 + 20 + 8 + PAYLOAD, vnet: true });
  }
  return frames;
}

function setup() {
  const sink = new CountingSink();
  const { gw, nat } = makeNat(sink);
  const host = new CountingHost();
  nat.udp.host = host;
  const frames = guestFrames();
  /** Host datagrams: 16 singles, then one GRO message of 16 × 1400 B. */
  const hostArea = Buffer.alloc(FRAMES * PAYLOAD, 0x42);
  return { sink, gw, nat, host, frames, hostArea, clock: { tick: 0 } };
}

type Env = ReturnType<typeof setup>;

/**
 * Clock readings in fractional milliseconds, as performance.now() gives,
 * made before the measurement and held as boxed numbers (the array's first
 * element is not a number, so V8 keeps its elements tagged): passed on as
 * they are, as the runtime passes its clock's reading, where a double made
 * by arithmetic in the loop would be boxed again at every call it crosses.
 */
const NOWS: unknown[] = ['tagged'];
for (let i = 1; i <= 120_000; i++) NOWS.push(1000.25 + i * 0.137);

function nextNow(env: Env): number {
  env.clock.tick = env.clock.tick === NOWS.length - 1 ? 1 : env.clock.tick + 1;
  return NOWS[env.clock.tick] as number;
}

/** `now` is a parameter so it stays one boxed number: a double loaded from a field and passed on in a loop is boxed per call. */
function round(env: Env, now: number): void {
  const { gw, nat, host, frames, hostArea } = env;
  for (let i = 0; i < FRAMES; i++) gw.deliver(frames[i], now);
  const flow = host.opened!;
  for (let i = 0; i < FRAMES; i++) nat.udp.fromHost(flow, hostArea, i * PAYLOAD, PAYLOAD, now, 0);
  nat.udp.fromHost(flow, hostArea, 0, FRAMES * PAYLOAD, now, PAYLOAD);
}

function rounds(env: Env, n: number): void {
  for (let r = 0; r < n; r++) round(env, nextNow(env));
}

const measure = measureAllocation;

/** Rounds measured: 16 guest datagrams and 32 host datagrams each, 480,000 + 960,000 datagrams in all. */
const ROUNDS = 30_000;

describe('UDP NAT data path: no allocation per datagram', () => {
  it('the measurement detects a host env that copies each datagram into a new Buffer', async () => {
    const env = setup();
    rounds(env, 5_000);
    env.host.allocate = true;
    const r = await measure(() => rounds(env, 2_000));
    expect(r.gcs > 0 || r.grew / (2_000 * FRAMES) > 64).toBe(true);
  });

  it('guest → host and host → guest (single datagrams and GRO bursts) allocate nothing', async () => {
    const env = setup();
    // Warm-up: JIT, the flow, the neighbour entry, copy tables.
    rounds(env, 20_000);
    const out0 = env.host.datagrams;
    const in0 = env.sink.frames;
    const r = await measure(() => rounds(env, ROUNDS));
    expect(env.host.datagrams - out0).toBe(ROUNDS * FRAMES);
    // Single datagrams one frame each; the burst one USO frame or 16 datagrams, by what the guests take.
    expect(env.sink.frames - in0).toBeGreaterThanOrEqual(ROUNDS * (FRAMES + 1));
    expect(env.nat.udp.drops).toEqual({});
    expect(env.nat.udp.flows.size).toBe(1);
    expect(r.gcs).toBe(0);
    expect(r.grew / (ROUNDS * FRAMES)).toBeLessThan(2);
  });
});
