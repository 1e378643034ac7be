/**
 * The TypeScript face of native/socket_io.cc: frame I/O on stream and
 * datagram sockets for the VM ports and the VXLAN port, and the sockaddr
 * encoding they use. Arguments are checked here; the addon trusts them.
 */
import { isIP } from 'node:net';
import { endianness } from 'node:os';
import { toNativeError } from '../errors.js';
import { parseIpv6 } from '../../stack/wire/ipv6-address.js';
import { loadAddon } from './addon.js';

/** Bytes reserved per address in DatagramIo's `addrs` and `dests` (sizeof struct sockaddr_storage). */
export const ADDR_STRIDE = 128;
/** Set in a DatagramIo meta address word when the datagram was longer than its slot. */
export const DGRAM_TRUNCATED = 0x10000;
/** recvmmsg batch cap of DatagramIo. */
export const DGRAM_MAX_BATCH = 64;

/** Why a StreamIo connection ended (onClose's `kind`). */
export const STREAM_EOF = 0;
export const STREAM_ERRNO = 1;
export const STREAM_BAD_LENGTH = 2;
export const STREAM_TRUNCATED = 3;

export interface StreamIoOptions {
  fd: number;
  /** The receive ring; at least maxFrame + 4 bytes. */
  rx: ArrayBuffer;
  /** Length-prefixed frames to send are copied here; send(len) writes tx[0, len). */
  tx: ArrayBuffer;
  /** Largest frame length accepted; a larger length prefix ends the connection. */
  maxFrame: number;
  /** [offset in rx, length] pairs, filled before each onBatch. */
  entries: Uint32Array;
  onBatch: (count: number) => void;
  /** kind: STREAM_*; value: the errno, the bad length, or the bytes of the cut-off frame. */
  onClose: (kind: number, value: number) => void;
}

export interface StreamIo {
  start(): void;
  /** len when taken (maybe into the backlog), or -errno (-ENOBUFS: backlog full, -EPIPE: ended). */
  send(len: number): number;
  /** Bytes waiting for the socket to become writable. */
  readonly backlog: number;
  close(): void;
}

export interface DatagramIoOptions {
  fd: number;
  rx: ArrayBuffer;
  slotSize: number;
  /** 1..DGRAM_MAX_BATCH. */
  slotCount: number;
  /** 2 words per slot: [length, source address length | DGRAM_TRUNCATED]. */
  meta: Uint32Array;
  /** ADDR_STRIDE bytes per slot: the datagram's source address. */
  addrs: ArrayBuffer;
  tx: ArrayBuffer;
  /** Destination sockaddrs named by send descriptors. */
  dests: ArrayBuffer;
  onBatch: (count: number) => void;
  onError: (err: Error) => void;
}

export interface DatagramIo {
  start(): void;
  /** desc: [txOffset, length, destOffset, destLength] per message; returns how many were sent (then lastError says why not). */
  send(desc: Uint32Array, count: number): number;
  readonly lastError: number;
  close(): void;
}

interface RawSocketAddon {
  StreamIo: new (o: StreamIoOptions) => StreamIo;
  DatagramIo: new (o: DatagramIoOptions) => DatagramIo;
  bindDatagram(sockaddr: Uint8Array): [number, number];
  dupNonBlocking(fd: number): number;
}

function raw(): RawSocketAddon {
  return loadAddon() as RawSocketAddon;
}

function call<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw toNativeError(e);
  }
}

const AF_UNIX = 1;
const AF_INET = 2;
const AF_INET6 = 10;
const SUN_PATH_MAX = 107;
const little = endianness() === 'LE';

function putFamily(b: Uint8Array, family: number): void {
  b[little ? 0 : 1] = family;
  b[little ? 1 : 0] = 0;
}

/** sockaddr_un for a path (at most 107 bytes). */
export function unixSockaddr(path: string): Uint8Array {
  const p = Buffer.from(path);
  if (p.length === 0 || p.length > SUN_PATH_MAX) throw new TypeError(`unix socket path too long (at most ${SUN_PATH_MAX} bytes): ${path}`);
  const b = new Uint8Array(2 + p.length + 1);
  putFamily(b, AF_UNIX);
  b.set(p, 2);
  return b;
}

/** sockaddr_in or sockaddr_in6 for an IP address and port. */
export function ipSockaddr(address: string, port: number): Uint8Array {
  const fam = isIP(address);
  if (fam === 4) {
    const b = new Uint8Array(16);
    putFamily(b, AF_INET);
    b[2] = port >> 8;
    b[3] = port & 0xff;
    address.split('.').forEach((x, i) => (b[4 + i] = Number(x)));
    return b;
  }
  const a6 = fam === 6 ? parseIpv6(address) : null;
  if (a6 !== null) {
    const b = new Uint8Array(28);
    putFamily(b, AF_INET6);
    b[2] = port >> 8;
    b[3] = port & 0xff;
    b.set(a6, 8);
    return b;
  }
  throw new TypeError(`not an IP address: ${address}`);
}

/** "10.0.0.1:4789", "[fd00::1]:4789", a unix path, or "unnamed" for a sockaddr. */
export function formatSockaddr(b: Uint8Array, off = 0, len = b.length - off): string {
  const family = little ? b[off] | (b[off + 1] << 8) : (b[off] << 8) | b[off + 1];
  const port = (b[off + 2] << 8) | b[off + 3];
  if (family === AF_INET && len >= 8) return `${b[off + 4]}.${b[off + 5]}.${b[off + 6]}.${b[off + 7]}:${port}`;
  if (family === AF_INET6 && len >= 24) {
    const parts: string[] = [];
    for (let i = 0; i < 16; i += 2) parts.push(((b[off + 8 + i] << 8) | b[off + 9 + i]).toString(16));
    return `[${parts.join(':').replace(/(^|:)0(:0)+(:|$)/, '::')}]:${port}`;
  }
  if (family === AF_UNIX) {
    if (len <= 2) return 'unnamed';
    let end = off + 2;
    while (end < off + len && b[end] !== 0) end++;
    return Buffer.from(b.buffer, b.byteOffset + off + 2, end - off - 2).toString();
  }
  return `family ${family}`;
}

export const socketIo = {
  createStreamIo(o: StreamIoOptions): StreamIo {
    if (!Number.isInteger(o.maxFrame) || o.maxFrame < 14 || o.rx.byteLength < o.maxFrame + 4 || o.entries.length < 2) {
      throw new TypeError('StreamIo: rx must hold maxFrame + 4 bytes, entries at least one pair');
    }
    return call(() => new (raw().StreamIo)(o));
  },
  createDatagramIo(o: DatagramIoOptions): DatagramIo {
    if (o.slotCount < 1 || o.slotCount > DGRAM_MAX_BATCH || o.rx.byteLength < o.slotSize * o.slotCount) {
      throw new TypeError('DatagramIo: rx too small or slotCount outside 1..64');
    }
    const onError = o.onError;
    return call(() => new (raw().DatagramIo)({ ...o, onError: (e: Error) => onError(toNativeError(e) as Error) }));
  },
  /** A non-blocking datagram socket bound to the address; [fd, bound port]. */
  bindDatagram(sockaddr: Uint8Array): [number, number] {
    return call(() => raw().bindDatagram(sockaddr));
  },
  dupNonBlocking(fd: number): number {
    if (!Number.isInteger(fd) || fd < 0) throw new TypeError('fd must be a non-negative integer');
    return call(() => raw().dupNonBlocking(fd));
  },
};
