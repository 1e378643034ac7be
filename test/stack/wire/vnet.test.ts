import { describe, expect, it } from 'vitest';
import {
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_HDR_GSO_TCPV4,
  VIRTIO_NET_HDR_LEN,
  VnetHeaderView,
} from '../../../stack/wire/vnet.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// NEEDS_CSUM, GSO TCPv4, hdr_len 66, gso_size 1448, csum_start 34, csum_offset 16 (little-endian).
const GOLDEN = hex('01 01 4200 a805 2200 1000');

describe('VnetHeaderView', () => {
  it('reads every field of a golden header at an offset', () => {
    const buf = Buffer.concat([hex('eeee'), GOLDEN]);
    const v = new VnetHeaderView().reset(buf, 2);
    expect(VIRTIO_NET_HDR_LEN).toBe(10);
    expect(v.flags).toBe(VIRTIO_NET_HDR_F_NEEDS_CSUM);
    expect(v.gsoType).toBe(VIRTIO_NET_HDR_GSO_TCPV4);
    expect(v.hdrLen).toBe(66);
    expect(v.gsoSize).toBe(1448);
    expect(v.csumStart).toBe(34);
    expect(v.csumOffset).toBe(16);
  });

  it('setters produce the golden bytes and clear zeroes only the header', () => {
    const buf = Buffer.alloc(14, 0xee);
    const v = new VnetHeaderView().reset(buf, 2);
    v.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    v.gsoType = VIRTIO_NET_HDR_GSO_TCPV4;
    v.hdrLen = 66;
    v.gsoSize = 1448;
    v.csumStart = 34;
    v.csumOffset = 16;
    expect(buf.subarray(2, 12)).toEqual(GOLDEN);
    v.clear();
    expect(buf).toEqual(hex('eeee 00000000000000000000 eeee'));
  });

  it('round-trips 16-bit values at the extremes', () => {
    const v = new VnetHeaderView().reset(Buffer.alloc(10), 0);
    v.gsoSize = 0xffff;
    v.csumOffset = 0x0102;
    expect(v.gsoSize).toBe(0xffff);
    expect(v.csumOffset).toBe(0x0102);
    expect(v.buf[8]).toBe(0x02);
  });
});
