import { describe, expect, it } from 'vitest';
import { Bridge } from '../../stack/bridge.js';
import {
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_GSO_TCPV6,
  VIRTIO_NET_HDR_GSO_UDP_L4,
} from '../../stack/wire/vnet.js';
import {
  BCAST,
  ChannelPort,
  MAC_A,
  MAC_B,
  MAC_C,
  checksumsValid,
  ethernet,
  ipv4Partial,
  ipv6Partial,
  pattern,
  vnetHeader,
  type VnetFields,
} from '../helpers/channel-port.js';
import type { DropReason } from '../../stack/drop-reasons.js';
import { prng } from '../helpers/prng.js';

interface Seed {
  eth: Buffer;
  vnet: VnetFields | null;
}

function seeds(): Seed[] {
  const tcp4 = ipv4Partial({ proto: 'tcp', payload: pattern(6000, 1), flags: 0x19 });
  const tcp6 = ipv6Partial({ proto: 'tcp', payload: pattern(3000, 2) });
  const udp4 = ipv4Partial({ proto: 'udp', payload: pattern(2500, 3) });
  const small = ipv4Partial({ proto: 'udp', payload: pattern(40, 4) });
  return [
    { eth: ethernet(BCAST, MAC_A, 0x0806, pattern(28, 5)), vnet: null },
    { eth: ethernet(MAC_B, MAC_A, 0x0800, small.bytes), vnet: null },
    { eth: ethernet(MAC_A, MAC_C, 0x0800, small.bytes), vnet: { flags: 1, csumStart: 34, csumOffset: 6 } },
    {
      eth: ethernet(MAC_C, MAC_A, 0x0800, tcp4.bytes),
      vnet: { flags: 1, gsoType: VIRTIO_NET_HDR_GSO_TCPV4, hdrLen: 54, gsoSize: 1448, csumStart: 34, csumOffset: 16 },
    },
    {
      eth: ethernet(BCAST, MAC_B, 0x86dd, tcp6.bytes),
      vnet: { flags: 1, gsoType: VIRTIO_NET_HDR_GSO_TCPV6, hdrLen: 74, gsoSize: 1200, csumStart: 54, csumOffset: 16 },
    },
    {
      eth: ethernet(MAC_A, MAC_B, 0x0800, udp4.bytes),
      vnet: { flags: 1, gsoType: VIRTIO_NET_HDR_GSO_UDP_L4, hdrLen: 42, gsoSize: 1000, csumStart: 34, csumOffset: 6 },
    },
  ];
}

function mutate(rand: () => number, seed: Seed): { eth: Buffer; vnet: Buffer | null } {
  let eth = Buffer.from(seed.eth);
  let vnet = seed.vnet === null ? null : vnetHeader(seed.vnet);
  const rounds = 1 + Math.floor(rand() * 4);
  for (let r = 0; r < rounds; r++) {
    const op = Math.floor(rand() * 10);
    const at = Math.floor(rand() * Math.max(1, eth.length));
    switch (op) {
      case 0: // bit flip
        if (eth.length > 0) eth[at] ^= 1 << Math.floor(rand() * 8);
        break;
      case 1: // truncate, often into the headers
        eth = eth.subarray(0, rand() < 0.5 ? Math.floor(rand() * 80) : at);
        break;
      case 2: // extend with junk
        eth = Buffer.concat([eth, Buffer.alloc(Math.floor(rand() * 200), Math.floor(rand() * 256))]);
        break;
      case 3: // byte to 0 or 0xff
        if (eth.length > 0) eth[at] = rand() < 0.5 ? 0 : 0xff;
        break;
      case 4: // edit a header length field: IHL, IP total/payload length, TCP data offset
        if (eth.length > 60) {
          const which = Math.floor(rand() * 4);
          if (which === 0) eth[14] = (eth[14] & 0xf0) | Math.floor(rand() * 16);
          else if (which === 1) eth.writeUInt16BE(Math.floor(rand() * 0x10000), 16);
          else if (which === 2) eth.writeUInt16BE(Math.floor(rand() * 0x10000), 18);
          else eth[46] = Math.floor(rand() * 256);
        }
        break;
      case 5: // source becomes group or zero
        if (eth.length >= 12) {
          if (rand() < 0.5) eth[6] |= 1;
          else eth.fill(0, 6, 12);
        }
        break;
      case 6: // random virtio-net header field, or add/remove the header
        if (vnet === null || rand() < 0.1) {
          vnet = vnet === null ? Buffer.alloc(10) : null;
          break;
        }
        {
          const field = Math.floor(rand() * 6);
          if (field === 0) vnet[0] = Math.floor(rand() * 4);
          else if (field === 1) vnet[1] = [0, 1, 3, 4, 5, 0x81, 0x84, 7, 0xff][Math.floor(rand() * 9)];
          else vnet.writeUInt16LE(rand() < 0.5 ? Math.floor(rand() * 0x10000) : Math.floor(rand() * 120), (field - 1) * 2);
        }
        break;
      case 7: // ethertype
        if (eth.length >= 14) eth.writeUInt16BE([0x0800, 0x86dd, 0x8100, 0x0806, 0x1234][Math.floor(rand() * 5)], 12);
        break;
      case 8: // protocol / next header
        if (eth.length >= 34) {
          eth[23] = [6, 17, 1, 0][Math.floor(rand() * 4)];
          eth[20] = [6, 17, 0, 58][Math.floor(rand() * 4)];
        }
        break;
      default: // random byte anywhere
        if (eth.length > 0) eth[at] = Math.floor(rand() * 256);
    }
  }
  return { eth, vnet };
}

describe('Bridge fuzz', () => {
  for (const seedValue of [1, 2, 3]) {
    it(`mutated frames with random vnet headers (seed ${seedValue}): nothing throws, counters move, output is sane`, () => {
      const rand = prng(seedValue);
      const bridge = new Bridge({ macTableSize: 8, macAgingMs: 50, macSweepMs: 10 });
      const ports = [
        new ChannelPort('v1', { vnet: true }),
        new ChannelPort('v2', { vnet: true }),
        new ChannelPort('p1'),
        new ChannelPort('p2'),
      ];
      for (const p of ports) bridge.addPort(p);
      let monitored = 0;
      bridge.monitor = () => {
        monitored++;
      };
      const base = seeds();
      const N = 4000;
      let segmentsChecked = 0;
      for (let i = 0; i < N; i++) {
        const now = i;
        const { eth, vnet } = mutate(rand, base[Math.floor(rand() * base.length)]);
        // Plain ports cannot produce vnet frames.
        const from = vnet === null ? ports[Math.floor(rand() * 4)] : ports[Math.floor(rand() * 2)];
        const gso = vnet === null ? 0 : vnet[1] & 0x7f;
        try {
          from.inject(bridge, eth, now, vnet ?? undefined);
          if (rand() < 0.05) bridge.poll(now);
          bridge.flush(now);
        } catch (e) {
          throw new Error(`seed ${seedValue} iteration ${i} threw: ${(e as Error).stack}`, { cause: e });
        }
        for (const p of ports) {
          for (const d of p.take()) {
            expect(p).not.toBe(from);
            expect(d.bytes.length).toBeGreaterThanOrEqual(14);
            if (!p.vnet) {
              expect(d.vnetHeader).toBeNull();
              // Whatever the segmenter emits has consistent lengths and checksums.
              if (vnet !== null && (gso === VIRTIO_NET_HDR_GSO_TCPV4 || gso === VIRTIO_NET_HDR_GSO_TCPV6 || gso === VIRTIO_NET_HDR_GSO_UDP_L4)) {
                expect(checksumsValid(d.bytes)).toEqual({ ip: true, l4: true });
                segmentsChecked++;
              }
            }
          }
        }
      }
      expect(monitored).toBe(N);
      expect(ports.reduce((a, p) => a + p.counters.rxFrames, 0)).toBe(N);
      const bridgeDrops = Object.values(bridge.drops).reduce((a, b) => a + b, 0);
      const offloadDrops = Object.values(bridge.offload.errors).reduce((a, b) => a + b, 0);
      expect(bridgeDrops).toBeGreaterThan(0);
      expect(offloadDrops).toBeGreaterThan(0);
      expect(bridge.drops['invalid-source']).toBeGreaterThan(0);
      expect(bridge.drops.runt).toBeGreaterThan(0);
      // Drops the offload path reports are the bridge's offload drop reasons.
      for (const [reason, n] of Object.entries(bridge.offload.errors)) expect(bridge.drops[reason as DropReason]).toBe(n);
      expect(segmentsChecked).toBeGreaterThan(100);
      expect(bridge.forwarded + bridge.flooded).toBeGreaterThan(0);
      expect(bridge.table.size).toBeLessThanOrEqual(8);
    });
  }
});
