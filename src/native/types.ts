/**
 * The contract between the TypeScript runtime and the C++ addon (native/).
 * native/ does syscalls only; validation and errno mapping happen in
 * src/native/addon.ts, which implements these signatures.
 */

/** Offload bits of TUNSETOFFLOAD (linux/if_tun.h). */
export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
export const TUN_F_TSO6 = 0x04;
export const TUN_F_TSO_ECN = 0x08;
export const TUN_F_UFO = 0x10;
export const TUN_F_USO4 = 0x20;
export const TUN_F_USO6 = 0x40;

export interface TapOpenOptions {
  /** Interface name, at most 15 bytes. */
  name: string;
  /** Open with IFF_VNET_HDR (10-byte virtio_net_hdr before every frame). */
  vnetHdr: boolean;
  /** TUN_F_* bits to request when vnetHdr is set; the addon falls back to fewer if the kernel refuses. */
  offloads: number;
}

export interface TapHandle {
  fd: number;
  /** The name the kernel gave (equal to the requested one). */
  name: string;
  /** The tap already existed and we attached to it. */
  attached: boolean;
  vnetHdr: boolean;
  /** TUN_F_* bits the kernel accepted (0 without vnetHdr). */
  offloads: number;
}

/** Interface configuration done with ioctls on an AF_INET datagram socket. */
export interface InterfaceConfig {
  name: string;
  /** Bring it up (true) or down (false); unchanged when absent. */
  up?: boolean;
  mtu?: number;
  /** 6 bytes. */
  mac?: Uint8Array;
  /** Dotted quad. */
  ipv4?: string;
  prefixLength?: number;
  /** Dotted quad: a default route via this address on this interface. */
  defaultGateway?: string;
  /** Also bring up `lo`. */
  loopbackUp?: boolean;
  /** txqueuelen (SIOCSIFTXQLEN). */
  txQueueLen?: number;
}

/** Where the forked helper goes before it opens the tap. */
export interface NamespaceTarget {
  /** Join /proc/PID/ns/net (and /proc/PID/ns/user first, failure ignored). */
  pid?: number;
  /** Join this network namespace file (e.g. /run/netns/x or /proc/PID/ns/net). */
  netnsPath?: string;
  /** Join this user namespace first; failure is an error unless usernsOptional. */
  usernsPath?: string;
  usernsOptional?: boolean;
  /**
   * Create fresh namespaces instead of joining: a network namespace, and a user
   * namespace too when `createUserns` is set (needed when not root; the caller
   * maps its own uid/gid to 0 inside).
   */
  create?: boolean;
  createUserns?: { uid: number; gid: number };
}

export interface NamespaceTapRequest {
  target: NamespaceTarget;
  tap: TapOpenOptions;
  /** Configure the tap (and lo) inside the namespace before returning. */
  configure?: InterfaceConfig;
}

export interface NamespaceTapResult extends TapHandle {
  /** With target.create: an fd for the new network namespace (keeps it alive; usable with setns or /proc/self/fd/N). */
  netnsFd: number;
  /** With target.createUserns: an fd for the new user namespace; otherwise -1. */
  usernsFd: number;
}

/**
 * Batched frame I/O on one tap fd.
 *
 * Receive: the addon polls the fd (uv_poll) and, when readable, reads frames
 * into consecutive slots of `rx` (slot i at i*slotSize) until EAGAIN or all
 * slots are used, stores each frame's length in `lengths[i]`, and calls
 * onBatch(count) once. The slots belong to JS only during that call; the next
 * batch overwrites them.
 *
 * Send: `send(desc, count)` writes `count` frames described by `desc`, a
 * Uint32Array of 4-word descriptors [bufferIndex, offset, length, more]. A frame is a
 * chain of descriptors whose last one has more = 0, written with one writev.
 * bufferIndex refers to a buffer given to registerBuffer (index 0 is `rx`).
 * Returns the number of frames written; when a write fails, stops there and
 * records the errno in lastError (EAGAIN: the queue is full; the caller drops and counts).
 */
export interface FrameIo {
  registerBuffer(buf: ArrayBuffer): number;
  start(): void;
  pause(): void;
  resume(): void;
  send(desc: Uint32Array, count: number): number;
  /** errno of the last failed write in send(), 0 if none. */
  readonly lastError: number;
  /** Stops polling and closes the fd. Idempotent. */
  close(): void;
}

export interface FrameIoOptions {
  fd: number;
  rx: ArrayBuffer;
  slotSize: number;
  slotCount: number;
  lengths: Uint32Array;
  onBatch: (count: number) => void;
  /** Called once if the fd reports an error or hang-up while polling; polling stops. */
  onError: (err: Error) => void;
}

export interface NativeAddon {
  openTap(opts: TapOpenOptions): TapHandle;
  openTapInNamespace(req: NamespaceTapRequest): NamespaceTapResult;
  configureInterface(cfg: InterfaceConfig): void;
  createFrameIo(opts: FrameIoOptions): FrameIo;
  closeFd(fd: number): void;
}
