import { describe, expect, it } from 'vitest';
import { measureAllocation } from '../helpers/gc-measure.js';
import { Bridge } from '../../stack/bridge.js';
import type { Frame, Port } from '../../stack/frame.js';
import { parseMac } from '../../stack/wire/mac.js';
import { VIRTIO_NET_HDR_GSO_TCPV4 } from '../../stack/wire/vnet.js';
import {
  BCAST,
  ChannelPort,
  MAC_A,
  MAC_B,
  MAC_C,
  checksumsValid,
  ethernet,
  ipv4Partial,
  pattern,
  rd32,
  vnetHeader,
} from '../helpers/channel-port.js';

const MAC_D = [0x02, 0x00, 0x00, 0x00, 0x00, 0x0d];
const MCAST = [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb];

function frame(dst: number[], src: number[], len = 60): Buffer {
  return ethernet(dst, src, 0x0800, pattern(len - 14));
}

function setup(opts: { vnet?: boolean[]; aging?: number; size?: number } = {}) {
  const bridge = new Bridge({ macTableSize: opts.size ?? 64, macAgingMs: opts.aging ?? 300_000, macSweepMs: 1000 });
  const v = opts.vnet ?? [false, false, false];
  const ports = v.map((vnet, i) => new ChannelPort(`p${i + 1}`, { vnet }));
  for (const p of ports) bridge.addPort(p);
  return { bridge, ports };
}

function counts(ports: ChannelPort[]): number[] {
  return ports.map((p) => p.take().length);
}

describe('Bridge: forwarding', () => {
  it('assigns small port ids and reuses freed ones', () => {
    const { bridge, ports } = setup();
    expect(ports.map((p) => p.id)).toEqual([0, 1, 2]);
    bridge.removePort(ports[1]);
    const p4 = new ChannelPort('p4');
    expect(bridge.addPort(p4)).toBe(1);
    expect(bridge.portCount).toBe(3);
  });

  it('floods unknown unicast, then forwards to the learned port only', () => {
    const { bridge, ports } = setup();
    const [p1, p2, p3] = ports;
    p1.inject(bridge, frame(MAC_B, MAC_A), 0);
    expect(counts(ports)).toEqual([0, 1, 1]);
    expect(bridge.flooded).toBe(1);
    // B answers from p2: A is known on p1, so only p1 sees it.
    p2.inject(bridge, frame(MAC_A, MAC_B), 1);
    expect(counts(ports)).toEqual([1, 0, 0]);
    // And now B is known too.
    p3.inject(bridge, frame(MAC_B, MAC_C), 2);
    expect(counts(ports)).toEqual([0, 1, 0]);
    expect(bridge.forwarded).toBe(2);
    expect(bridge.flooded).toBe(1);
  });

  it('floods broadcast and multicast to every port but the ingress one', () => {
    const { bridge, ports } = setup();
    const [p1, p2] = ports;
    p2.inject(bridge, frame(MAC_A, MAC_B), 0);
    counts(ports);
    p1.inject(bridge, frame(BCAST, MAC_A), 1);
    expect(counts(ports)).toEqual([0, 1, 1]);
    p2.inject(bridge, frame(MCAST, MAC_B), 2);
    expect(counts(ports)).toEqual([1, 0, 1]);
    expect(bridge.flooded).toBe(3);
  });

  it('filters a frame whose destination lives behind the ingress port', () => {
    const { bridge, ports } = setup();
    const [p1] = ports;
    p1.inject(bridge, frame(BCAST, MAC_A), 0);
    p1.inject(bridge, frame(BCAST, MAC_B), 0);
    counts(ports);
    p1.inject(bridge, frame(MAC_B, MAC_A), 1);
    expect(counts(ports)).toEqual([0, 0, 0]);
    expect(bridge.filtered).toBe(1);
    expect(bridge.drops['same-port']).toBe(1);
    expect(p1.counters.drops['same-port']).toBe(1);
  });

  it('a MAC that moves is followed to its new port', () => {
    const { bridge, ports } = setup();
    const [p1, p2, p3] = ports;
    p1.inject(bridge, frame(BCAST, MAC_A), 0);
    p3.inject(bridge, frame(BCAST, MAC_A), 1);
    counts(ports);
    p2.inject(bridge, frame(MAC_A, MAC_B), 2);
    expect(counts(ports)).toEqual([0, 0, 1]);
  });

  it('drops runts and invalid sources (group or zero) without learning them', () => {
    const { bridge, ports } = setup();
    const [p1, p2] = ports;
    p1.inject(bridge, Buffer.alloc(13), 0);
    p1.inject(bridge, frame(BCAST, BCAST), 0);
    p1.inject(bridge, frame(BCAST, MCAST), 0);
    p1.inject(bridge, frame(BCAST, [0, 0, 0, 0, 0, 0]), 0);
    expect(counts(ports)).toEqual([0, 0, 0]);
    expect(bridge.drops).toEqual({ runt: 1, 'invalid-source': 3 });
    expect(p1.counters.rxFrames).toBe(4);
    expect(bridge.table.size).toBe(0);
    // A frame towards the multicast "source" is still flooded, not sent to p1 only.
    p2.inject(bridge, frame(MAC_D, MAC_B), 1);
    expect(counts(ports)).toEqual([1, 0, 1]);
  });

  it('aging makes a MAC unknown again, so it is flooded; poll sweeps the table', () => {
    const { bridge, ports } = setup({ aging: 1000 });
    const [p1, p2] = ports;
    expect(bridge.pollAt()).toBe(Infinity);
    p1.inject(bridge, frame(BCAST, MAC_A), 0);
    counts(ports);
    expect(bridge.pollAt()).toBe(1000);
    p2.inject(bridge, frame(MAC_A, MAC_B), 999);
    expect(counts(ports)).toEqual([1, 0, 0]);
    p2.inject(bridge, frame(MAC_A, MAC_B), 1000);
    expect(counts(ports)).toEqual([1, 0, 1]);
    // B was seen at 1000; sweeping at 1999 keeps it and the next one is rate-limited.
    expect(bridge.poll(1999)).toBe(0);
    expect(bridge.pollAt()).toBe(2999);
    expect(bridge.poll(2500)).toBe(0);
    expect(bridge.table.size).toBe(1);
    expect(bridge.poll(3000)).toBe(1);
    expect(bridge.table.size).toBe(0);
    expect(bridge.pollAt()).toBe(Infinity);
  });

  it('keeps per-port counters', () => {
    const { bridge, ports } = setup();
    const [p1, p2, p3] = ports;
    p1.inject(bridge, frame(BCAST, MAC_A, 100), 0);
    p2.inject(bridge, frame(MAC_A, MAC_B, 200), 0);
    p3.inject(bridge, Buffer.alloc(5), 0);
    expect(p1.counters.snapshot()).toEqual({ rxFrames: 1, rxBytes: 100, txFrames: 1, txBytes: 200, drops: {} });
    expect(p2.counters.snapshot()).toEqual({ rxFrames: 1, rxBytes: 200, txFrames: 1, txBytes: 100, drops: {} });
    expect(p3.counters.snapshot()).toEqual({ rxFrames: 1, rxBytes: 5, txFrames: 1, txBytes: 100, drops: { runt: 1 } });
  });

  it('static MACs stay on their port', () => {
    const { bridge, ports } = setup();
    const [p1, p2] = ports;
    const gw = parseMac('52:55:0a:00:02:02');
    expect(bridge.addStaticMac(gw, p1)).toBe(true);
    p2.inject(bridge, frame([0x52, 0x55, 10, 0, 2, 2], MAC_B), 0);
    expect(counts(ports)).toEqual([1, 0, 0]);
    // A spoofed frame from p2 does not move it.
    p2.inject(bridge, frame(BCAST, [0x52, 0x55, 10, 0, 2, 2]), 1);
    counts(ports);
    p2.inject(bridge, frame([0x52, 0x55, 10, 0, 2, 2], MAC_B), 2);
    expect(counts(ports)).toEqual([1, 0, 0]);
  });

  it('removing a port forgets its MACs and stops deliveries to it', () => {
    const { bridge, ports } = setup();
    const [p1, p2, p3] = ports;
    p1.inject(bridge, frame(BCAST, MAC_A), 0);
    counts(ports);
    bridge.removePort(p1);
    p2.inject(bridge, frame(MAC_A, MAC_B), 1);
    expect(counts(ports)).toEqual([0, 0, 1]);
    // Frames from a detached port are refused.
    p1.inject(bridge, frame(BCAST, MAC_A), 2);
    expect(counts(ports)).toEqual([0, 0, 0]);
    expect(bridge.drops['unknown-port']).toBe(1);
    expect(p3.counters.txFrames).toBe(2);
  });

  it('flush reaches every port', () => {
    const { bridge, ports } = setup();
    bridge.flush(5);
    bridge.flush(6);
    expect(ports.map((p) => p.flushes)).toEqual([2, 2, 2]);
  });

  it('monitor sees every frame once, before it is forwarded, including dropped ones', () => {
    const { bridge, ports } = setup();
    const [p1, p2] = ports;
    const log: string[] = [];
    bridge.monitor = (f: Frame, from: Port, now: number) => {
      log.push(`monitor ${from.name} ${f.len} ${now} delivered=${p2.delivered.length}`);
    };
    p1.inject(bridge, frame(BCAST, MAC_A, 64), 7);
    p1.inject(bridge, Buffer.alloc(3), 8);
    expect(log).toEqual(['monitor p1 64 7 delivered=0', 'monitor p1 3 8 delivered=1']);
  });

  it('stats() names ports and lists MAC entries', () => {
    const { bridge, ports } = setup({ size: 2 });
    const [p1, p2] = ports;
    p1.inject(bridge, frame(BCAST, MAC_A), 0);
    p2.inject(bridge, frame(BCAST, MAC_B), 10);
    p2.inject(bridge, frame(BCAST, MAC_C), 20);
    const s = bridge.stats(30);
    expect(s.flooded).toBe(3);
    expect(s.evictions).toBe(1);
    expect(s.ports.map((p) => [p.id, p.name, p.counters.rxFrames])).toEqual([
      [0, 'p1', 1],
      [1, 'p2', 2],
      [2, 'p3', 0],
    ]);
    expect(s.macTable.capacity).toBe(2);
    expect(s.macTable.entries!.sort((a, b) => a.mac.localeCompare(b.mac))).toEqual([
      { mac: '02:00:00:00:00:0b', port: 'p2', isStatic: false, ageMs: 20 },
      { mac: '02:00:00:00:00:0c', port: 'p2', isStatic: false, ageMs: 10 },
    ]);
    // Without the entries: size and capacity only (the stats line and /metrics).
    expect(bridge.stats(30, false).macTable).toEqual({ size: 2, capacity: 2 });
  });
});

describe('Bridge: vnet frames', () => {
  const payload = pattern(4000, 11);
  const { bytes: ip, l4Off } = ipv4Partial({ proto: 'tcp', payload, seq: 5000, flags: 0x18 });
  const gsoHeader = vnetHeader({ flags: 1, gsoType: VIRTIO_NET_HDR_GSO_TCPV4, hdrLen: 54, gsoSize: 1448, csumStart: 34, csumOffset: 16 });

  it('a vnet frame crosses to a vnet port verbatim: same Frame, same bytes, header included', () => {
    const { bridge, ports } = setup({ vnet: [true, true, false] });
    const [v1, v2] = ports;
    v2.inject(bridge, frame(BCAST, MAC_B), 0);
    counts(ports);
    const eth = ethernet(MAC_B, MAC_A, 0x0800, ip);
    const f = v1.inject(bridge, eth, 1, gsoHeader);
    const got = v2.take();
    expect(got.length).toBe(1);
    expect(got[0].frame).toBe(f);
    expect(got[0].buf).toBe(v1.txBuf);
    expect(got[0].bytes.equals(eth)).toBe(true);
    expect(got[0].vnetHeader!.equals(gsoHeader)).toBe(true);
    expect(counts(ports)).toEqual([0, 0, 0]);
    expect(v2.counters.txBytes).toBe(eth.length);
  });

  it('a GSO frame to a plain port is segmented with valid checksums', () => {
    const { bridge, ports } = setup({ vnet: [true, false, false] });
    const [v1, p2] = ports;
    p2.inject(bridge, frame(BCAST, MAC_B), 0);
    counts(ports);
    v1.inject(bridge, ethernet(MAC_B, MAC_A, 0x0800, ip), 1, gsoHeader);
    const segs = p2.take();
    expect(segs.length).toBe(3);
    expect(counts(ports)).toEqual([0, 0, 0]);
    segs.forEach((s, i) => {
      expect(s.vnetHeader).toBeNull();
      expect(checksumsValid(s.bytes)).toEqual({ ip: true, l4: true });
      expect(rd32(s.bytes, 14 + l4Off + 4)).toBe(5000 + i * 1448);
    });
    expect(Buffer.concat(segs.map((s) => s.bytes.subarray(54))).equals(payload)).toBe(true);
    expect(p2.counters.txFrames).toBe(3);
    expect(bridge.forwarded).toBe(1);
    expect(bridge.offload.segments).toBe(3);
  });

  it('flooding a GSO frame: vnet ports get it verbatim, plain ports get the segments once each', () => {
    const { bridge, ports } = setup({ vnet: [true, true, false, false] });
    const [v1, v2, p3, p4] = ports;
    const f = v1.inject(bridge, ethernet(MAC_D, MAC_A, 0x0800, ip), 1, gsoHeader);
    const v = v2.take();
    expect(v.length).toBe(1);
    expect(v[0].frame).toBe(f);
    const a = p3.take();
    const b = p4.take();
    expect(a.length).toBe(3);
    expect(b.map((s) => s.bytes.toString('hex'))).toEqual(a.map((s) => s.bytes.toString('hex')));
    expect(v1.take().length).toBe(0);
    expect(bridge.offload.superFrames).toBe(1);
  });

  it('a plain frame goes to a vnet port as is', () => {
    const { bridge, ports } = setup({ vnet: [false, true, false] });
    const [p1, v2] = ports;
    const eth = frame(BCAST, MAC_A);
    p1.inject(bridge, eth, 0);
    const got = v2.take();
    expect(got[0].vnetHeader).toBeNull();
    expect(got[0].bytes.equals(eth)).toBe(true);
  });

  it('a port that feeds the bridge from inside deliver gets correct segments (re-entrant offload)', () => {
    const { bridge, ports } = setup({ vnet: [true, false, true, false] });
    const [v1, p2, v3, p4] = ports;
    p2.inject(bridge, frame(BCAST, MAC_B), 0);
    p4.inject(bridge, frame(BCAST, MAC_D), 0);
    counts(ports);
    const inner = ipv4Partial({ proto: 'tcp', payload: pattern(3000, 99), seq: 1 });
    let fired = false;
    p2.onDeliver = () => {
      if (fired) return;
      fired = true;
      v3.inject(bridge, ethernet(MAC_D, MAC_C, 0x0800, inner.bytes), 1, gsoHeader);
    };
    v1.inject(bridge, ethernet(MAC_B, MAC_A, 0x0800, ip), 1, gsoHeader);
    const outer = p2.take();
    const nested = p4.take();
    expect(outer.length).toBe(3);
    expect(nested.length).toBe(3);
    for (const s of [...outer, ...nested]) expect(checksumsValid(s.bytes)).toEqual({ ip: true, l4: true });
    expect(Buffer.concat(outer.map((s) => s.bytes.subarray(54))).equals(payload)).toBe(true);
    expect(Buffer.concat(nested.map((s) => s.bytes.subarray(54))).equals(inner.bytes.subarray(40))).toBe(true);
    expect(outer.map((s) => rd32(s.bytes, 38))).toEqual([5000, 6448, 7896]);
  });

  it('offload failures are dropped and counted on the ingress port', () => {
    const { bridge, ports } = setup({ vnet: [true, false, false] });
    const [v1] = ports;
    const bad = vnetHeader({ flags: 1, gsoType: VIRTIO_NET_HDR_GSO_TCPV4, hdrLen: 54, gsoSize: 0 });
    v1.inject(bridge, ethernet(BCAST, MAC_A, 0x0800, ip), 0, bad);
    expect(counts(ports)).toEqual([0, 0, 0]);
    expect(bridge.drops['gso-size-zero']).toBe(1);
    expect(v1.counters.drops['gso-size-zero']).toBe(1);
  });
});

/**
 * Allocation check without --expose-gc or timings. The loop runs
 * synchronously, so nothing else allocates on this isolate while it runs.
 * If the bridge allocated even a few bytes per frame, a million frames would
 * fill the young generation (a few MiB) and force scavenges; the GC
 * PerformanceObserver records every collection, and the heap size measured
 * around the loop catches smaller growth that did not trigger one. Both are
 * deterministic: they count collections and bytes, not time. The check is
 * first run on a deliberately allocating monitor hook to prove it can fail.
 */
/** Without a full collection first: one would leave lazily made objects for the run to make again (their growth, not the bridge's). */
const measure = (run: () => void) => measureAllocation(run, false);

describe('Bridge: no allocation per frame', () => {
  function build(): { bridge: Bridge; ports: ChannelPort[]; frames: Array<[ChannelPort, Frame]> } {
    const bridge = new Bridge({ macTableSize: 64, macAgingMs: 300_000, macSweepMs: 1000 });
    const ports = [0, 1, 2].map((i) => new ChannelPort(`p${i}`, { record: false, bufferLen: 256 }));
    for (const p of ports) bridge.addPort(p);
    const mk = (port: ChannelPort, dst: number[], src: number[]): [ChannelPort, Frame] => {
      const bytes = frame(dst, src, 64);
      const buf = Buffer.alloc(80);
      bytes.copy(buf, 10);
      return [port, { buf, off: 10, len: bytes.length, vnet: false }];
    };
    const [p0, p1, p2] = ports;
    const frames = [
      mk(p0, BCAST, MAC_A), // broadcast flood
      mk(p1, MAC_A, MAC_B), // known unicast
      mk(p2, MAC_D, MAC_C), // unknown unicast flood
      mk(p0, MAC_C, MAC_A), // known unicast
      mk(p1, MCAST, MAC_B), // multicast flood
      mk(p1, BCAST, MCAST), // invalid source drop
    ];
    return { bridge, ports, frames };
  }

  function pump(bridge: Bridge, frames: Array<[ChannelPort, Frame]>, n: number, t0: number): void {
    for (let i = 0; i < n; i++) {
      const pair = frames[i % frames.length];
      bridge.input(pair[0], pair[1], t0 + (i >>> 10));
      if ((i & 63) === 63) bridge.flush(t0);
    }
  }

  it('the measurement detects an allocating hook', async () => {
    const { bridge, frames } = build();
    const sink: unknown[] = [null];
    bridge.monitor = (f, _from, now) => {
      sink[0] = { len: f.len, now, x: [now] };
    };
    pump(bridge, frames, 100_000, 0);
    const r = await measure(() => pump(bridge, frames, 1_000_000, 1000));
    expect(r.gcs > 0 || r.grew > 1 << 20).toBe(true);
  });

  it('a million frames through a 3-port bridge allocate nothing', async () => {
    const { bridge, ports, frames } = build();
    // Warm-up: let the JIT settle and every drop reason exist once.
    pump(bridge, frames, 200_000, 0);
    const r = await measure(() => pump(bridge, frames, 1_000_000, 1000));
    expect(r.gcs).toBe(0);
    expect(r.grew).toBeLessThan(64 * 1024);
    expect(ports.reduce((a, p) => a + p.deliveries, 0)).toBeGreaterThan(1_000_000);
  });

  it('segmenting GSO frames for a plain port allocates nothing', async () => {
    const bridge = new Bridge({ macTableSize: 64, macAgingMs: 300_000, macSweepMs: 1000 });
    const v = new ChannelPort('v', { vnet: true, record: false });
    const p = new ChannelPort('p', { record: false });
    bridge.addPort(v);
    bridge.addPort(p);
    const { bytes: ip } = ipv4Partial({ proto: 'tcp', payload: pattern(8000) });
    const f = v.prepare(
      ethernet(MAC_B, MAC_A, 0x0800, ip),
      vnetHeader({ flags: 1, gsoType: VIRTIO_NET_HDR_GSO_TCPV4, hdrLen: 54, gsoSize: 1448, csumStart: 34, csumOffset: 16 }),
    );
    for (let i = 0; i < 5000; i++) bridge.input(v, f, 0);
    const r = await measure(() => {
      for (let i = 0; i < 20_000; i++) bridge.input(v, f, 1);
    });
    expect(r.gcs).toBe(0);
    expect(r.grew).toBeLessThan(64 * 1024);
    expect(p.deliveries).toBe(25_000 * 6);
  });
});
