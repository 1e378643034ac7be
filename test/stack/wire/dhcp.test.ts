import { describe, expect, it } from 'vitest';
import {
  BOOTP_MIN_LEN,
  BOOTP_REPLY,
  BOOTP_REQUEST,
  DHCP_DISCOVER,
  DHCP_OFFER,
  DHCP_OPTIONS_OFFSET,
  DhcpRepr,
} from '../../../stack/wire/dhcp.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const zeros = (n: number): string => '00'.repeat(n);

/**
 * A DISCOVER captured from BusyBox 1.35.0 udhcpc (`udhcpc -x hostname:box`)
 * on a veth: the UDP payload, 300 bytes.
 */
const UDHCPC_DISCOVER = hex(
  '01 01 06 00 d96e4e46 0000 0000' +
    '00000000 00000000 00000000 00000000' +
    '02000000000f' +
    zeros(10) + // rest of chaddr
    zeros(64) + // sname
    zeros(128) + // file
    '63825363' +
    '35 01 01' + // message type DISCOVER
    '39 02 0240' + // max message size 576
    '37 07 01 03 06 0c 0f 1c 2a' + // parameter request list
    '0c 03 626f78' + // hostname "box"
    '3c 0c 756468637020312e33352e30' + // vendor class "udhcp 1.35.0" (not decoded)
    '3d 07 01 02000000000f' + // client id: type 1 + MAC
    'ff' +
    zeros(15),
);

/**
 * The OFFER for it, written out by hand from RFC 2131 (fields) and RFC 2132
 * (options): 10.0.2.15 from 10.0.2.2, 24 h lease, T1 12 h, T2 21 h.
 */
const OFFER_OPTIONS =
  '35 01 02' +
  '36 04 0a000202' +
  '33 04 00015180' +
  '3a 04 0000a8c0' +
  '3b 04 00012750' +
  '01 04 ffffff00' +
  '03 04 0a000202' +
  '06 04 0a000203' +
  '1c 04 0a0002ff' +
  '1a 02 05dc' +
  '3d 07 01 02000000000f' +
  'ff';
const OFFER = (() => {
  const head = hex(
    '02 01 06 00 d96e4e46 0000 0000' +
      '00000000 0a00020f 00000000 00000000' +
      '02000000000f' +
      zeros(10 + 64 + 128) +
      '63825363' +
      OFFER_OPTIONS,
  );
  // 240 + 65 bytes of options: longer than the 300-byte minimum, so no padding.
  expect(head.length).toBe(305);
  return head;
})();

/** The NAK for the same client: short, so padded with zeros to 300 bytes. */
const NAK = (() => {
  const head = hex(
    '02 01 06 00 d96e4e46 0000 0000' +
      '00000000 00000000 00000000 00000000' +
      '02000000000f' +
      zeros(10 + 64 + 128) +
      '63825363' +
      '35 01 06 36 04 0a000202 ff',
  );
  return Buffer.concat([head, Buffer.alloc(300 - head.length)]);
})();

function makeOffer(): DhcpRepr {
  const r = new DhcpRepr();
  r.op = BOOTP_REPLY;
  r.xid = 0xd96e4e46;
  r.yiaddr = 0x0a00020f;
  r.chaddr = 0x02000000000f;
  r.messageType = DHCP_OFFER;
  r.serverId = 0x0a000202;
  r.leaseTime = 86400;
  r.renewalTime = 43200;
  r.rebindingTime = 75600;
  r.subnetMask = 0xffffff00;
  r.router = 0x0a000202;
  r.dnsServers.push(0x0a000203);
  r.broadcastAddress = 0x0a0002ff;
  r.mtu = 1500;
  r.clientId = hex('01 02000000000f');
  return r;
}

describe('DhcpRepr', () => {
  it('parses the captured udhcpc DISCOVER', () => {
    expect(UDHCPC_DISCOVER.length).toBe(300);
    const r = new DhcpRepr();
    expect(r.parse(UDHCPC_DISCOVER, 0, UDHCPC_DISCOVER.length)).toBeNull();
    expect(r.op).toBe(BOOTP_REQUEST);
    expect(r.htype).toBe(1);
    expect(r.hlen).toBe(6);
    expect(r.hops).toBe(0);
    expect(r.xid).toBe(0xd96e4e46);
    expect(r.secs).toBe(0);
    expect(r.broadcast).toBe(false);
    expect(r.ciaddr).toBe(0);
    expect(r.yiaddr).toBe(0);
    expect(r.siaddr).toBe(0);
    expect(r.giaddr).toBe(0);
    expect(r.chaddr).toBe(0x02000000000f);
    expect(r.messageType).toBe(DHCP_DISCOVER);
    expect(r.maxMessageSize).toBe(576);
    expect(r.parameterRequestList).toEqual([1, 3, 6, 12, 15, 28, 42]);
    expect(Buffer.from(r.hostname!).toString('latin1')).toBe('box');
    expect(Buffer.from(r.clientId!)).toEqual(hex('01 02000000000f'));
    expect(r.unknownOptions).toBe(1);
    expect(r.requestedIp).toBeNull();
    expect(r.serverId).toBeNull();
    expect(r.leaseTime).toBeNull();
    expect(r.dnsServers).toEqual([]);
  });

  it('emits the hand-built OFFER byte for byte', () => {
    const r = makeOffer();
    expect(r.bufferLen()).toBe(305);
    const out = Buffer.alloc(309, 0xee);
    expect(r.emitInto(out, 2)).toBe(305);
    expect(out.subarray(2, 307)).toEqual(OFFER);
    expect(out[0]).toBe(0xee);
    expect(out[1]).toBe(0xee);
    expect(out[307]).toBe(0xee);
  });

  it('pads a short message to the 300-byte BOOTP minimum', () => {
    const r = new DhcpRepr();
    r.op = BOOTP_REPLY;
    r.xid = 0xd96e4e46;
    r.chaddr = 0x02000000000f;
    r.messageType = 6;
    r.serverId = 0x0a000202;
    expect(r.bufferLen()).toBe(BOOTP_MIN_LEN);
    const out = Buffer.alloc(300, 0xee);
    expect(r.emitInto(out, 0)).toBe(300);
    expect(out).toEqual(NAK);
  });

  it('round-trips the OFFER through parse and emit', () => {
    const r = new DhcpRepr();
    expect(r.parse(OFFER, 0, OFFER.length)).toBeNull();
    expect(r.op).toBe(BOOTP_REPLY);
    expect(r.yiaddr).toBe(0x0a00020f);
    expect(r.messageType).toBe(DHCP_OFFER);
    expect(r.serverId).toBe(0x0a000202);
    expect(r.leaseTime).toBe(86400);
    expect(r.renewalTime).toBe(43200);
    expect(r.rebindingTime).toBe(75600);
    expect(r.subnetMask).toBe(0xffffff00);
    expect(r.router).toBe(0x0a000202);
    expect(r.dnsServers).toEqual([0x0a000203]);
    expect(r.broadcastAddress).toBe(0x0a0002ff);
    expect(r.mtu).toBe(1500);
    const again = Buffer.alloc(r.bufferLen());
    r.emitInto(again, 0);
    expect(again).toEqual(OFFER);
  });

  it('round-trips the DISCOVER except for the option it does not decode', () => {
    const r = new DhcpRepr();
    expect(r.parse(UDHCPC_DISCOVER, 0, 300)).toBeNull();
    const out = Buffer.alloc(r.bufferLen());
    r.emitInto(out, 0);
    const back = new DhcpRepr();
    expect(back.parse(out, 0, out.length)).toBeNull();
    expect(back.xid).toBe(r.xid);
    expect(back.chaddr).toBe(r.chaddr);
    expect(back.parameterRequestList).toEqual(r.parameterRequestList);
    expect(back.maxMessageSize).toBe(576);
    expect(Buffer.from(back.hostname!)).toEqual(Buffer.from('box'));
    expect(Buffer.from(back.clientId!)).toEqual(Buffer.from(r.clientId!));
    expect(back.unknownOptions).toBe(0);
    // Fixed part is identical.
    expect(out.subarray(0, DHCP_OPTIONS_OFFSET)).toEqual(UDHCPC_DISCOVER.subarray(0, DHCP_OPTIONS_OFFSET));
  });

  it('grows past 300 bytes when the options need it', () => {
    const r = makeOffer();
    for (let i = 0; i < 20; i++) r.dnsServers.push(0x08080800 + i);
    const n = r.bufferLen();
    expect(n).toBeGreaterThan(BOOTP_MIN_LEN);
    const out = Buffer.alloc(n);
    expect(r.emitInto(out, 0)).toBe(n);
    expect(out[n - 1]).toBe(0xff);
    const back = new DhcpRepr();
    expect(back.parse(out, 0, n)).toBeNull();
    expect(back.dnsServers.length).toBe(21);
  });

  it('reads the broadcast flag and keeps it on emit', () => {
    const msg = Buffer.from(UDHCPC_DISCOVER);
    msg[10] = 0x80;
    const r = new DhcpRepr();
    expect(r.parse(msg, 0, 300)).toBeNull();
    expect(r.broadcast).toBe(true);
    expect(r.flags).toBe(0x8000);
    r.broadcast = false;
    expect(r.flags).toBe(0);
    r.broadcast = true;
    const out = Buffer.alloc(r.bufferLen());
    r.emitInto(out, 0);
    expect(out[10]).toBe(0x80);
  });

  it('parses at an offset and accepts a message without an end option', () => {
    const body = Buffer.from(UDHCPC_DISCOVER.subarray(0, DHCP_OPTIONS_OFFSET + 3));
    const buf = Buffer.concat([hex('aabbcc'), body]);
    const r = new DhcpRepr();
    expect(r.parse(buf, 3, body.length)).toBeNull();
    expect(r.messageType).toBe(DHCP_DISCOVER);
  });

  it('reports drop reasons instead of throwing', () => {
    const r = new DhcpRepr();
    expect(r.parse(UDHCPC_DISCOVER, 0, 239)).toBe('dhcp-truncated');
    expect(r.parse(UDHCPC_DISCOVER, 200, 300)).toBe('dhcp-truncated');
    expect(r.parse(UDHCPC_DISCOVER, -1, 10)).toBe('dhcp-truncated');

    const noMagic = Buffer.from(UDHCPC_DISCOVER);
    noMagic[236] = 0;
    expect(r.parse(noMagic, 0, 300)).toBe('dhcp-bad-magic');

    // An option whose length runs past the end.
    const long = Buffer.from(UDHCPC_DISCOVER.subarray(0, DHCP_OPTIONS_OFFSET + 4));
    long[DHCP_OPTIONS_OFFSET + 1] = 9;
    expect(r.parse(long, 0, long.length)).toBe('dhcp-bad-option');

    // A code with no room for its length byte.
    const lone = Buffer.from(UDHCPC_DISCOVER.subarray(0, DHCP_OPTIONS_OFFSET + 1));
    lone[DHCP_OPTIONS_OFFSET] = 50;
    expect(r.parse(lone, 0, lone.length)).toBe('dhcp-bad-option');

    // Fixed-size options with the wrong size.
    const cases: [number, number][] = [
      [53, 2],
      [50, 3],
      [54, 5],
      [51, 2],
      [1, 8],
      [3, 6],
      [6, 0],
      [26, 4],
      [57, 1],
      [61, 1],
      [12, 0],
    ];
    for (const [code, n] of cases) {
      const m = Buffer.alloc(DHCP_OPTIONS_OFFSET + 2 + n + 1);
      UDHCPC_DISCOVER.copy(m, 0, 0, DHCP_OPTIONS_OFFSET);
      m[DHCP_OPTIONS_OFFSET] = code;
      m[DHCP_OPTIONS_OFFSET + 1] = n;
      m[m.length - 1] = 0xff;
      expect(r.parse(m, 0, m.length), `option ${code} length ${n}`).toBe('dhcp-bad-option');
    }
  });

  it('skips pad and unknown options, and ignores overload', () => {
    const m = Buffer.concat([
      UDHCPC_DISCOVER.subarray(0, DHCP_OPTIONS_OFFSET),
      hex('00 00 35 01 03 00 34 01 03 f0 03 010203 32 04 0a00020f 36 04 0a000202 ff'),
    ]);
    const r = new DhcpRepr();
    expect(r.parse(m, 0, m.length)).toBeNull();
    expect(r.messageType).toBe(3);
    expect(r.requestedIp).toBe(0x0a00020f);
    expect(r.serverId).toBe(0x0a000202);
    expect(r.unknownOptions).toBe(2);
  });

  it('clears options left over from the previous parse', () => {
    const r = new DhcpRepr();
    expect(r.parse(OFFER, 0, OFFER.length)).toBeNull();
    const bare = Buffer.concat([UDHCPC_DISCOVER.subarray(0, DHCP_OPTIONS_OFFSET), hex('35 01 01 ff')]);
    expect(r.parse(bare, 0, bare.length)).toBeNull();
    expect(r.serverId).toBeNull();
    expect(r.dnsServers).toEqual([]);
    expect(r.clientId).toBeNull();
    expect(r.mtu).toBeNull();
  });
});
