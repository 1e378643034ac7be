/**
 * DHCP messages (RFC 2131 layout, RFC 2132 options) as a reusable
 * representation: `parse` fills every field from a UDP payload, `emitInto`
 * writes one. Only the options the gateway's server needs are decoded; the
 * others are counted in `unknownOptions` and skipped. Option overload (52)
 * is ignored: the sname and file fields are never read, and clients that
 * need them are not what a guest network sees.
 *
 * Absent options are null. `clientId` and `hostname` are subarrays of the
 * parsed buffer (no copy): valid only as long as that buffer is, so a caller
 * that keeps them copies them.
 */
import { readMac, writeMac } from './mac.js';
import { readU32, writeU32 } from './bytes.js';
import type { DropReason } from '../drop-reasons.js';

export const DHCP_SERVER_PORT = 67;
export const DHCP_CLIENT_PORT = 68;

export const BOOTP_REQUEST = 1;
export const BOOTP_REPLY = 2;
export const BOOTP_HTYPE_ETHERNET = 1;
/** The broadcast bit of `flags` (RFC 2131 section 2, figure 2). */
export const BOOTP_FLAG_BROADCAST = 0x8000;

export const DHCP_DISCOVER = 1;
export const DHCP_OFFER = 2;
export const DHCP_REQUEST = 3;
export const DHCP_DECLINE = 4;
export const DHCP_ACK = 5;
export const DHCP_NAK = 6;
export const DHCP_RELEASE = 7;
export const DHCP_INFORM = 8;

export const DHCP_OPT_PAD = 0;
export const DHCP_OPT_SUBNET_MASK = 1;
export const DHCP_OPT_ROUTER = 3;
export const DHCP_OPT_DNS = 6;
export const DHCP_OPT_HOSTNAME = 12;
export const DHCP_OPT_MTU = 26;
export const DHCP_OPT_BROADCAST = 28;
export const DHCP_OPT_REQUESTED_IP = 50;
export const DHCP_OPT_LEASE_TIME = 51;
export const DHCP_OPT_OVERLOAD = 52;
export const DHCP_OPT_MESSAGE_TYPE = 53;
export const DHCP_OPT_SERVER_ID = 54;
export const DHCP_OPT_PARAM_REQUEST = 55;
export const DHCP_OPT_MAX_MESSAGE_SIZE = 57;
export const DHCP_OPT_T1 = 58;
export const DHCP_OPT_T2 = 59;
export const DHCP_OPT_CLIENT_ID = 61;
export const DHCP_OPT_END = 255;

export const DHCP_MAGIC_COOKIE = 0x63825363;

/** op .. file: the BOOTP fixed part (RFC 951). */
export const BOOTP_FIXED_LEN = 236;
/** Fixed part plus the magic cookie: where the options start. */
export const DHCP_OPTIONS_OFFSET = 240;
/**
 * Replies are padded to the 300 bytes of a BOOTP message with its 64-byte
 * vendor area, as ISC dhcpd and dnsmasq do: some old relays and clients drop
 * anything shorter.
 */
export const BOOTP_MIN_LEN = 300;

const OP = 0;
const HTYPE = 1;
const HLEN = 2;
const HOPS = 3;
const XID = 4;
const SECS = 8;
const FLAGS = 10;
const CIADDR = 12;
const YIADDR = 16;
const SIADDR = 20;
const GIADDR = 24;
const CHADDR = 28;
const MAGIC = 236;

/** At most this many DNS servers go into one option: 63 * 4 fits the 255-byte option length. */
const MAX_DNS_SERVERS = 63;

export function messageTypeName(type: number): string {
  switch (type) {
    case DHCP_DISCOVER:
      return 'discover';
    case DHCP_OFFER:
      return 'offer';
    case DHCP_REQUEST:
      return 'request';
    case DHCP_DECLINE:
      return 'decline';
    case DHCP_ACK:
      return 'ack';
    case DHCP_NAK:
      return 'nak';
    case DHCP_RELEASE:
      return 'release';
    case DHCP_INFORM:
      return 'inform';
    default:
      return 'other';
  }
}

/** Writes a 4-byte option; returns the next offset. */
function putU32Option(buf: Uint8Array, off: number, code: number, v: number): number {
  buf[off] = code;
  buf[off + 1] = 4;
  writeU32(buf, off + 2, v);
  return off + 6;
}

function putBytesOption(buf: Uint8Array, off: number, code: number, data: Uint8Array): number {
  const n = Math.min(data.length, 255);
  buf[off] = code;
  buf[off + 1] = n;
  for (let i = 0; i < n; i++) buf[off + 2 + i] = data[i];
  return off + 2 + n;
}

/** Reusable representation of one DHCP message. `parse` overwrites every field. */
export class DhcpRepr {
  op = BOOTP_REQUEST;
  htype = BOOTP_HTYPE_ETHERNET;
  hlen = 6;
  hops = 0;
  xid = 0;
  secs = 0;
  /** Raw flags; see `broadcast`. */
  flags = 0;
  ciaddr = 0;
  yiaddr = 0;
  siaddr = 0;
  giaddr = 0;
  /** The first 6 bytes of chaddr as a number (the MAC when htype is Ethernet). */
  chaddr = 0;

  /** Option 53; null for plain BOOTP. */
  messageType: number | null = null;
  requestedIp: number | null = null;
  serverId: number | null = null;
  /** Seconds. */
  leaseTime: number | null = null;
  renewalTime: number | null = null;
  rebindingTime: number | null = null;
  subnetMask: number | null = null;
  /** The first router of option 3. */
  router: number | null = null;
  /** Option 6; empty when absent. Reused array. */
  readonly dnsServers: number[] = [];
  broadcastAddress: number | null = null;
  mtu: number | null = null;
  maxMessageSize: number | null = null;
  /** Option 55 codes in the client's order; empty when absent. Reused array. */
  readonly parameterRequestList: number[] = [];
  clientId: Uint8Array | null = null;
  hostname: Uint8Array | null = null;
  /** Options seen that this repr does not decode (skipped). */
  unknownOptions = 0;

  get broadcast(): boolean {
    return (this.flags & BOOTP_FLAG_BROADCAST) !== 0;
  }

  set broadcast(on: boolean) {
    this.flags = on ? this.flags | BOOTP_FLAG_BROADCAST : this.flags & ~BOOTP_FLAG_BROADCAST;
  }

  /** Clears everything, for building a message from scratch. */
  clear(): void {
    this.op = BOOTP_REQUEST;
    this.htype = BOOTP_HTYPE_ETHERNET;
    this.hlen = 6;
    this.hops = 0;
    this.xid = 0;
    this.secs = 0;
    this.flags = 0;
    this.ciaddr = 0;
    this.yiaddr = 0;
    this.siaddr = 0;
    this.giaddr = 0;
    this.chaddr = 0;
    this.clearOptions();
  }

  private clearOptions(): void {
    this.messageType = null;
    this.requestedIp = null;
    this.serverId = null;
    this.leaseTime = null;
    this.renewalTime = null;
    this.rebindingTime = null;
    this.subnetMask = null;
    this.router = null;
    this.dnsServers.length = 0;
    this.broadcastAddress = null;
    this.mtu = null;
    this.maxMessageSize = null;
    this.parameterRequestList.length = 0;
    this.clientId = null;
    this.hostname = null;
    this.unknownOptions = 0;
  }

  /**
   * Fills the fields from the UDP payload buf[off, off+len). Returns null, or
   * a drop reason: 'dhcp-truncated', 'dhcp-bad-magic' (plain BOOTP or
   * garbage), 'dhcp-bad-option' (an option running past the end or with a
   * length its code does not allow). A message that ends without option 255
   * is accepted: the UDP length already bounds it.
   */
  parse(buf: Uint8Array, off: number, len: number): DropReason | null {
    if (off < 0 || len < 0 || off + len > buf.length || len < DHCP_OPTIONS_OFFSET) return 'dhcp-truncated';
    if (readU32(buf, off + MAGIC) !== DHCP_MAGIC_COOKIE) return 'dhcp-bad-magic';
    this.op = buf[off + OP];
    this.htype = buf[off + HTYPE];
    this.hlen = buf[off + HLEN];
    this.hops = buf[off + HOPS];
    this.xid = readU32(buf, off + XID);
    this.secs = (buf[off + SECS] << 8) | buf[off + SECS + 1];
    this.flags = (buf[off + FLAGS] << 8) | buf[off + FLAGS + 1];
    this.ciaddr = readU32(buf, off + CIADDR);
    this.yiaddr = readU32(buf, off + YIADDR);
    this.siaddr = readU32(buf, off + SIADDR);
    this.giaddr = readU32(buf, off + GIADDR);
    this.chaddr = readMac(buf, off + CHADDR);
    this.clearOptions();

    const end = off + len;
    let p = off + DHCP_OPTIONS_OFFSET;
    while (p < end) {
      const code = buf[p];
      if (code === DHCP_OPT_PAD) {
        p++;
        continue;
      }
      if (code === DHCP_OPT_END) return null;
      if (p + 2 > end) return 'dhcp-bad-option';
      const n = buf[p + 1];
      const v = p + 2;
      if (v + n > end) return 'dhcp-bad-option';
      if (!this.takeOption(buf, code, v, n)) return 'dhcp-bad-option';
      p = v + n;
    }
    return null;
  }

  /** Decodes one option at buf[v, v+n); false when its length is wrong for its code. */
  private takeOption(buf: Uint8Array, code: number, v: number, n: number): boolean {
    switch (code) {
      case DHCP_OPT_MESSAGE_TYPE:
        if (n !== 1) return false;
        this.messageType = buf[v];
        return true;
      case DHCP_OPT_REQUESTED_IP:
        if (n !== 4) return false;
        this.requestedIp = readU32(buf, v);
        return true;
      case DHCP_OPT_SERVER_ID:
        if (n !== 4) return false;
        this.serverId = readU32(buf, v);
        return true;
      case DHCP_OPT_LEASE_TIME:
        if (n !== 4) return false;
        this.leaseTime = readU32(buf, v);
        return true;
      case DHCP_OPT_T1:
        if (n !== 4) return false;
        this.renewalTime = readU32(buf, v);
        return true;
      case DHCP_OPT_T2:
        if (n !== 4) return false;
        this.rebindingTime = readU32(buf, v);
        return true;
      case DHCP_OPT_SUBNET_MASK:
        if (n !== 4) return false;
        this.subnetMask = readU32(buf, v);
        return true;
      case DHCP_OPT_BROADCAST:
        if (n !== 4) return false;
        this.broadcastAddress = readU32(buf, v);
        return true;
      case DHCP_OPT_ROUTER:
        if (n < 4 || n % 4 !== 0) return false;
        this.router = readU32(buf, v);
        return true;
      case DHCP_OPT_DNS:
        if (n < 4 || n % 4 !== 0) return false;
        for (let i = 0; i < n; i += 4) this.dnsServers.push(readU32(buf, v + i));
        return true;
      case DHCP_OPT_MTU:
        if (n !== 2) return false;
        this.mtu = (buf[v] << 8) | buf[v + 1];
        return true;
      case DHCP_OPT_MAX_MESSAGE_SIZE:
        if (n !== 2) return false;
        this.maxMessageSize = (buf[v] << 8) | buf[v + 1];
        return true;
      case DHCP_OPT_PARAM_REQUEST:
        for (let i = 0; i < n; i++) this.parameterRequestList.push(buf[v + i]);
        return true;
      case DHCP_OPT_CLIENT_ID:
        // RFC 2132 9.14: a type byte and at least one byte of identifier.
        if (n < 2) return false;
        this.clientId = buf.subarray(v, v + n);
        return true;
      case DHCP_OPT_HOSTNAME:
        if (n < 1) return false;
        this.hostname = buf.subarray(v, v + n);
        return true;
      default:
        this.unknownOptions++;
        return true;
    }
  }

  /** Bytes `emitInto` writes: fixed part, cookie, options, end, padded to BOOTP_MIN_LEN. */
  bufferLen(): number {
    let n = DHCP_OPTIONS_OFFSET;
    if (this.messageType !== null) n += 3;
    if (this.serverId !== null) n += 6;
    if (this.leaseTime !== null) n += 6;
    if (this.renewalTime !== null) n += 6;
    if (this.rebindingTime !== null) n += 6;
    if (this.subnetMask !== null) n += 6;
    if (this.router !== null) n += 6;
    if (this.dnsServers.length > 0) n += 2 + 4 * Math.min(this.dnsServers.length, MAX_DNS_SERVERS);
    if (this.broadcastAddress !== null) n += 6;
    if (this.mtu !== null) n += 4;
    if (this.requestedIp !== null) n += 6;
    if (this.maxMessageSize !== null) n += 4;
    if (this.parameterRequestList.length > 0) n += 2 + Math.min(this.parameterRequestList.length, 255);
    if (this.hostname !== null) n += 2 + Math.min(this.hostname.length, 255);
    if (this.clientId !== null) n += 2 + Math.min(this.clientId.length, 255);
    n += 1;
    return n < BOOTP_MIN_LEN ? BOOTP_MIN_LEN : n;
  }

  /**
   * Writes bufferLen() bytes at off and returns that length. sname and file
   * are zero; options go out in a fixed order with the message type first
   * (some clients look for it there).
   */
  emitInto(buf: Uint8Array, off: number): number {
    const total = this.bufferLen();
    buf.fill(0, off, off + total);
    buf[off + OP] = this.op;
    buf[off + HTYPE] = this.htype;
    buf[off + HLEN] = this.hlen;
    buf[off + HOPS] = this.hops;
    writeU32(buf, off + XID, this.xid);
    buf[off + SECS] = (this.secs >>> 8) & 0xff;
    buf[off + SECS + 1] = this.secs & 0xff;
    buf[off + FLAGS] = (this.flags >>> 8) & 0xff;
    buf[off + FLAGS + 1] = this.flags & 0xff;
    writeU32(buf, off + CIADDR, this.ciaddr);
    writeU32(buf, off + YIADDR, this.yiaddr);
    writeU32(buf, off + SIADDR, this.siaddr);
    writeU32(buf, off + GIADDR, this.giaddr);
    // The other 10 bytes of the 16-byte chaddr stay zero.
    writeMac(buf, off + CHADDR, this.chaddr);
    writeU32(buf, off + MAGIC, DHCP_MAGIC_COOKIE);

    let p = off + DHCP_OPTIONS_OFFSET;
    if (this.messageType !== null) {
      buf[p] = DHCP_OPT_MESSAGE_TYPE;
      buf[p + 1] = 1;
      buf[p + 2] = this.messageType;
      p += 3;
    }
    if (this.serverId !== null) p = putU32Option(buf, p, DHCP_OPT_SERVER_ID, this.serverId);
    if (this.leaseTime !== null) p = putU32Option(buf, p, DHCP_OPT_LEASE_TIME, this.leaseTime);
    if (this.renewalTime !== null) p = putU32Option(buf, p, DHCP_OPT_T1, this.renewalTime);
    if (this.rebindingTime !== null) p = putU32Option(buf, p, DHCP_OPT_T2, this.rebindingTime);
    if (this.subnetMask !== null) p = putU32Option(buf, p, DHCP_OPT_SUBNET_MASK, this.subnetMask);
    if (this.router !== null) p = putU32Option(buf, p, DHCP_OPT_ROUTER, this.router);
    if (this.dnsServers.length > 0) {
      const count = Math.min(this.dnsServers.length, MAX_DNS_SERVERS);
      buf[p] = DHCP_OPT_DNS;
      buf[p + 1] = count * 4;
      for (let i = 0; i < count; i++) writeU32(buf, p + 2 + 4 * i, this.dnsServers[i]);
      p += 2 + count * 4;
    }
    if (this.broadcastAddress !== null) p = putU32Option(buf, p, DHCP_OPT_BROADCAST, this.broadcastAddress);
    if (this.mtu !== null) {
      buf[p] = DHCP_OPT_MTU;
      buf[p + 1] = 2;
      buf[p + 2] = (this.mtu >>> 8) & 0xff;
      buf[p + 3] = this.mtu & 0xff;
      p += 4;
    }
    if (this.requestedIp !== null) p = putU32Option(buf, p, DHCP_OPT_REQUESTED_IP, this.requestedIp);
    if (this.maxMessageSize !== null) {
      buf[p] = DHCP_OPT_MAX_MESSAGE_SIZE;
      buf[p + 1] = 2;
      buf[p + 2] = (this.maxMessageSize >>> 8) & 0xff;
      buf[p + 3] = this.maxMessageSize & 0xff;
      p += 4;
    }
    if (this.parameterRequestList.length > 0) {
      const count = Math.min(this.parameterRequestList.length, 255);
      buf[p] = DHCP_OPT_PARAM_REQUEST;
      buf[p + 1] = count;
      for (let i = 0; i < count; i++) buf[p + 2 + i] = this.parameterRequestList[i];
      p += 2 + count;
    }
    if (this.hostname !== null) p = putBytesOption(buf, p, DHCP_OPT_HOSTNAME, this.hostname);
    if (this.clientId !== null) p = putBytesOption(buf, p, DHCP_OPT_CLIENT_ID, this.clientId);
    buf[p] = DHCP_OPT_END;
    return total;
  }
}
