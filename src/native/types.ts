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
/** The offloads usernet asks for when it opens a tap with the virtio-net header. */
export const OFFLOADS = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_USO4 | TUN_F_USO6;

export interface TapOpenOptions {
  /** Interface name, at most 15 bytes. */
  name: string;
  /** Open with IFF_VNET_HDR (10-byte virtio_net_hdr before every frame). */
  vnetHdr: boolean;
  /** TUN_F_* bits to request when vnetHdr is set; the addon falls back to fewer if the kernel refuses. */
  offloads: number;
  /**
   * More than 1: open the tap with IFF_MULTI_QUEUE as this many fds, one per
   * queue (engine shards, 1..16). Where multi-queue is refused (gVisor, an
   * existing single-queue tap) the tap opens with one queue and
   * multiqueueFallback says why.
   */
  queues?: number;
}

/**
 * Why a tap asked for with the virtio-net header runs without it: the step
 * that said "not supported here" (gVisor: ioctl(TUNSETIFF,IFF_VNET_HDR)
 * EINVAL; ioctl(TUNSETVNETHDRSZ) or ioctl(TUNSETOFFLOAD) ENOTTY elsewhere).
 */
export interface VnetFallback {
  /** errno name, e.g. 'EINVAL'. */
  code: string;
  /** Negative, as in Node's system errors. */
  errno: number;
  syscall: string;
}

export interface TapHandle {
  fd: number;
  /** The name the kernel gave (equal to the requested one). */
  name: string;
  /** The tap already existed and we attached to it. */
  attached: boolean;
  /** What the tap does (not what was asked): false without the header, asked for or refused. */
  vnetHdr: boolean;
  /** TUN_F_* bits the kernel accepted (0 without vnetHdr). */
  offloads: number;
  /** Set when the header was asked for and refused as unsupported; null or absent otherwise. */
  vnetFallback?: VnetFallback | null;
  /** With queues > 1: the fds of the queues after the first (fd); empty or absent for one queue. */
  queueFds?: number[];
  /** Set when more queues were asked for and multi-queue was refused as unsupported. */
  multiqueueFallback?: VnetFallback | null;
  /** How the interface was configured (openTapInNamespace with `configure`); null or absent when it was not. */
  config?: InterfaceReport | null;
}

/**
 * How one setting was applied: 'ioctl'; 'rtnetlink' when the ioctl was
 * refused as unsupported (ENOTTY, EOPNOTSUPP, EINVAL); 'unchanged' when
 * nothing needed changing, or when neither way could change it and the
 * interface works as it is (then both errors are set).
 */
export type ConfigWay = 'ioctl' | 'rtnetlink' | 'unchanged';

/** The settings of an InterfaceConfig, as report keys. */
export type ConfigSetting =
  | 'loopbackUp'
  | 'mtu'
  | 'mac'
  | 'ipv4'
  | 'txQueueLen'
  | 'up'
  | 'defaultGateway'
  | 'ipv6'
  | 'defaultGateway6';

export interface ConfigStep {
  /** null: not reached (an earlier setting failed), or this is the one that failed. */
  way: ConfigWay | null;
  /** errno name of the refused ioctl ('ENOTTY'); null when it worked or was not tried. */
  ioctlError: string | null;
  /** errno name of the refused rtnetlink request; null when it worked or was not tried. */
  rtnetlinkError: string | null;
}

/** What configureInterface did, setting by setting, and what the interface has afterwards. */
export interface InterfaceReport {
  name: string;
  /** Only the settings that were asked for. */
  steps: Partial<Record<ConfigSetting, ConfigStep>>;
  /** The interface's MTU now (SIOCGIFMTU); null if it could not be read. */
  mtu: number | null;
  /** Its MAC now, "aa:bb:cc:dd:ee:ff"; null if it could not be read. */
  mac: string | null;
  up: boolean | null;
}

/**
 * Interface configuration: each setting with its SIOCS* ioctl on an AF_INET
 * datagram socket, else with an rtnetlink request (see InterfaceReport).
 */
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
  /**
   * An IPv6 address to add (rtnetlink only, without duplicate address
   * detection), for where SLAAC does not run (gVisor). Not used by default.
   */
  ipv6?: string;
  /** Prefix length of `ipv6`; 64 when absent. */
  prefixLength6?: number;
  /** An IPv6 default route via this address on this interface (rtnetlink only). */
  defaultGateway6?: string;
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
  /** -1 after close. */
  registerBuffer(buf: ArrayBuffer): number;
  /** Drops a registration made with registerBuffer (never index 0); a later registerBuffer may reuse the index. */
  unregisterBuffer(index: number): void;
  start(): void;
  pause(): void;
  resume(): void;
  send(desc: Uint32Array, count: number): number;
  /**
   * Reads a batch now (as a wake-up would) and returns its frame count without calling
   * onBatch: the caller handles it. 0 when nothing waits, or while paused or closed.
   */
  readNow(): number;
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

/**
 * ICMP echo through one unprivileged ping socket (AF_INET, SOCK_DGRAM,
 * IPPROTO_ICMP). The kernel gives the socket an echo identifier (`localId`),
 * writes it into every request we send, fills in the checksum, and delivers
 * to us only the replies and ICMP errors that carry it.
 *
 * Receive: the addon polls the socket and, when something is queued, reads
 * first the ICMP errors (IP_RECVERR's error queue), then the echo replies,
 * each into the next slot of `rx` (slot i at i*slotSize) with an entry of
 * PING_ENTRY_WORDS words at entries[i*PING_ENTRY_WORDS], until nothing is
 * left or slotCount (at most PING_MAX_BATCH) entries are filled, and calls
 * onBatch(count) once. The slots and entries belong to JS only during that
 * call, so one rx and one entries array can serve every ping socket.
 *
 * A slot holds what the kernel gives, never an IP header:
 * - a reply: the ICMP echo reply, header and payload, identifier = localId;
 * - an ICMP or local error: the ICMP echo request it is about, as quoted back
 *   (the header with the identifier and sequence, and as much payload as the
 *   sender of the error included).
 *
 * Entry words (index constants below):
 * - PING_LEN: bytes stored in the slot.
 * - PING_KIND: PING_KIND_REPLY, PING_KIND_ICMP_ERROR (an ICMP error from the
 *   network) or PING_KIND_LOCAL_ERROR (raised by this host's stack, e.g.
 *   EMSGSIZE); PING_TRUNCATED is or'ed in when the datagram was longer than a
 *   slot and was cut. Compare `kind & PING_KIND_MASK`.
 * - PING_ADDR: a reply's source; for an error, the destination of the request.
 * - PING_OFFENDER: the node that sent an ICMP error (a router, or the
 *   destination itself); 0 when unknown or local.
 * - PING_TTL: the IP TTL of the packet that brought the reply or the ICMP
 *   error as it arrived here (0 when unknown, e.g. local errors).
 * - PING_TYPE_CODE: for an ICMP error, type << 8 | code (e.g. 11 << 8 | 0 for
 *   TTL exceeded in transit); 0 for replies.
 * - PING_INFO: an error's extra value: the next-hop MTU for "fragmentation
 *   needed" and for a local EMSGSIZE.
 * - PING_ERRNO: the errno the kernel derived from an error (positive; e.g.
 *   EHOSTUNREACH for TTL exceeded); 0 for replies.
 * Addresses are IPv4 as u32 in host order (10.0.0.1 = 0x0a000001).
 *
 * IPv6 (`family: 6`; AF_INET6, IPPROTO_ICMPV6): the same, with ICMPv6 types
 * (echo request 128, reply 129; errors such as 3/0 hop limit exceeded) and
 * the hop limit in PING_TTL. The addresses live in `addrs`, PING_ADDR6_STRIDE
 * bytes per entry: entry i's peer at addrs[i*32, +16) (PING_ADDR6_PEER) and
 * its offender at addrs[i*32+16, +16) (PING_ADDR6_OFFENDER), zero when
 * unknown; the words PING_ADDR and PING_OFFENDER then hold 1 when that
 * address is present, else 0.
 *
 * Send: `send(buf, off, len, dst, ttl?, tos?)` sends buf[off, off+len), an
 * ICMP echo request (type 8, code 0, header + payload; the identifier and
 * checksum are the kernel's to fill) to `dst` (u32 host order) without
 * blocking. `ttl` (1..255) and `tos` (0..255) apply to this packet only;
 * absent, the socket's values are used. Returns the bytes sent or a negative
 * errno (-EAGAIN when the socket buffer is full, -ENETUNREACH when there is no
 * route, -EBADF after close); never throws for a network condition.
 *
 * IPv6 send: `send6(buf, off, len, addr, addrOff, hopLimit?, tclass?)` sends
 * an ICMPv6 echo request (type 128) to the address at addr[addrOff, +16),
 * read in place. The hop limit and traffic class become socket options
 * (IPV6_UNICAST_HOPS, IPV6_TCLASS) set only when they differ from the last
 * send's, so a flow with one hop limit costs one setsockopt. `send` belongs to
 * family 4 sockets and `send6` to family 6 ones; the wrong one throws.
 */
export interface PingSocket {
  /** The echo identifier the kernel assigned (the socket's bound port), known from creation. */
  readonly localId: number;
  /** 4 or 6, as created. */
  readonly family: 4 | 6;
  send(buf: Uint8Array, off: number, len: number, dst: number, ttl?: number, tos?: number): number;
  send6(buf: Uint8Array, off: number, len: number, addr: Uint8Array, addrOff: number, hopLimit?: number, tclass?: number): number;
  /** Stops polling and closes the socket; no callback runs afterwards. Idempotent. */
  close(): void;
}

export interface PingSocketOptions {
  rx: ArrayBuffer;
  /**
   * Bytes per slot. A reply is as long as its request, so a slot of the
   * largest request the guest can send (its MTU, or 65507 with IP fragments)
   * avoids PING_TRUNCATED.
   */
  slotSize: number;
  /** 1..PING_MAX_BATCH. */
  slotCount: number;
  /** At least slotCount * PING_ENTRY_WORDS words. */
  entries: Uint32Array;
  /** Socket-wide IP TTL or IPv6 hop limit (1..255); the system default when absent. */
  ttl?: number;
  /** Socket-wide IP TOS byte or IPv6 traffic class (0..255); 0 when absent. */
  tos?: number;
  /** 4 (default) or 6. */
  family?: 4 | 6;
  /** Family 6 only, then required: at least slotCount * PING_ADDR6_STRIDE bytes, may be shared like `entries`. */
  addrs?: Uint8Array;
  onBatch: (count: number) => void;
  /** Called once if the socket fails while polling (not for ICMP errors: those are batch entries); polling stops. */
  onError: (err: Error) => void;
}

/** Words per ping entry, and the index of each word in an entry. */
export const PING_ENTRY_WORDS = 8;
export const PING_LEN = 0;
export const PING_KIND = 1;
export const PING_ADDR = 2;
export const PING_OFFENDER = 3;
export const PING_TTL = 4;
export const PING_TYPE_CODE = 5;
export const PING_INFO = 6;
export const PING_ERRNO = 7;

/** IPv6 sockets: bytes per entry in `addrs`, and where each address sits in them. */
export const PING_ADDR6_STRIDE = 32;
export const PING_ADDR6_PEER = 0;
export const PING_ADDR6_OFFENDER = 16;

export const PING_KIND_REPLY = 0;
export const PING_KIND_ICMP_ERROR = 1;
export const PING_KIND_LOCAL_ERROR = 2;
export const PING_KIND_MASK = 0xff;
export const PING_TRUNCATED = 0x100;

/**
 * Entries per batch at most, so that a flooded socket yields the event loop
 * to other handles; at 64 the one JS call per batch already costs little next
 * to the 64 recvmsg calls it follows.
 */
export const PING_MAX_BATCH = 64;

/** What installSeccompFilter reports. */
export interface SeccompResult {
  /** BPF instructions in the filter. */
  instructions: number;
  /** Syscalls on the EPERM denylist. */
  denied: number;
}

export interface SandboxOptions {
  /**
   * An existing directory to mount the new root's tmpfs on (inside the new
   * mount namespace only; the host keeps its own). slirp4netns uses /tmp.
   */
  scratch: string;
  /** Top-level directories bind-mounted read-only into the new root, e.g. ['/etc', '/run']. */
  keep: string[];
}

export interface SandboxResult {
  /** Threads moved into the sandbox, this one included. */
  threads: number;
  /** The signal that carried the request to the other threads. */
  signal: number;
}

/** Watches one process (by pidfd); onExit runs once when it exits. Does not keep Node alive. */
export interface PidWatch {
  /** Stops watching. Idempotent. */
  close(): void;
}

/**
 * The NAT's host TCP sockets in one edge-triggered epoll set (native/tcp_sockets.cc).
 * Every call returns a count or -errno (never throws for a socket failure).
 * Ready sockets are reported as [token, epoll events] pairs in `events`, with
 * one onEvents(count) call per wake-up.
 */
export interface TcpSockets {
  start(): void;
  /** Non-blocking connect; the fd (in progress or done: see status) or -errno. */
  connect(token: number, family: 4 | 6, host: string, port: number, local: string | null): number;
  /** 0 when the connect completed, -EINPROGRESS while it runs, -errno when it failed. */
  status(fd: number): number;
  listen(token: number, family: 4 | 6, host: string, port: number, backlog: number): number;
  /** A waiting connection's fd (registered with `token`), or -EAGAIN. */
  accept(listenFd: number, token: number): number;
  localPort(fd: number): number;
  /** Bytes read into bytes[offset, offset + length), 0 at EOF, or -errno (-EAGAIN: nothing now). */
  read(fd: number, bytes: Uint8Array, offset: number, length: number): number;
  /** Bytes the kernel took, or -errno (-EAGAIN: no room now). */
  write(fd: number, bytes: Uint8Array, offset: number, length: number): number;
  /** shutdown(SHUT_WR): a FIN after what is queued. */
  shutdown(fd: number): number;
  /** close(2); abort: a RST instead (SO_LINGER 0). */
  closeSocket(fd: number, abort: boolean): number;
  /**
   * Busy-polls the set and fds[0..count) (at most 15) for up to maxMicros. Once one is
   * readable: a bit mask of what is (bit 0 the set, bit i + 1 fds[i]); 0 when time ran out.
   */
  spin(fds: Int32Array, count: number, maxMicros: number): number;
  /** The ready sockets now into `events` (as onEvents would get them); returns their count. */
  pollNow(): number;
  /** Stops polling and closes the epoll set (not the sockets). Idempotent. */
  close(): void;
}

export interface TcpSocketsOptions {
  /** At least TCP_EVENTS_MAX pairs. */
  events: Uint32Array;
  onEvents: (count: number) => void;
}

/** Ready sockets reported per onEvents call at most. */
export const TCP_EVENTS_MAX = 256;

/**
 * The NAT's host UDP sockets (native/udp_sockets.cc): connected sockets in one
 * level-triggered epoll set, read with recvmmsg (UDP_GRO on) into the `rx`
 * slots and written with sendmmsg (UDP_SEGMENT for bursts) from `tx`.
 * Received messages are reported as [token, rxOffset, length, segmentSize]
 * in `meta`, one onBatch(count) call per up to UDP_BATCH_MAX messages; an
 * error is a message of length 0 whose segment size is UDP_ERROR_FLAG | errno.
 */
export interface UdpSockets {
  start(): void;
  /** A connected UDP socket registered with `token`: its fd, or -errno. */
  open(token: number, family: 4 | 6, host: string, port: number, local: string | null): number;
  closeSocket(fd: number): number;
  /**
   * Sends `count` messages described as [fd, txOffset, length, gsoSize] in desc;
   * gsoSize > 0 with length > gsoSize: a burst cut by the kernel (UDP_SEGMENT).
   * Returns how many went; the errno of the last failure is in lastError.
   */
  send(desc: Uint32Array, count: number): number;
  readonly lastError: number;
  /** 0 while the kernel takes UDP_SEGMENT; the errno that refused it once it did not (bursts are cut natively since). */
  readonly gsoOff: number;
  /** Sockets on which UDP_GRO was accepted. */
  readonly groSockets: number;
  /** Stops polling and closes the epoll set (not the sockets). Idempotent. */
  close(): void;
}

export interface UdpSocketsOptions {
  /** UDP_BATCH_MAX slots of slotSize bytes. */
  rx: ArrayBuffer;
  slotSize: number;
  /** 4 * UDP_BATCH_MAX words. */
  meta: Uint32Array;
  tx: ArrayBuffer;
  onBatch: (count: number) => void;
}

/** Messages per onBatch call and per sendmmsg at most. */
export const UDP_BATCH_MAX = 64;
export const UDP_ERROR_FLAG = 0x8000_0000;

export interface NativeAddon {
  createUdpSockets(opts: UdpSocketsOptions): UdpSockets;
  createTcpSockets(opts: TcpSocketsOptions): TcpSockets;
  /**
   * Whether epoll reports a TCP peer's FIN as EPOLLRDHUP here (a loopback probe): Linux does,
   * gVisor before release-20230717.0 does not (only EPOLLIN).
   */
  tcpReportsRdhup(): boolean;
  openTap(opts: TapOpenOptions): TapHandle;
  openTapInNamespace(req: NamespaceTapRequest): NamespaceTapResult;
  /** Throws a NativeError whose `report` says what was done when a setting cannot be applied and is needed. */
  configureInterface(cfg: InterfaceConfig): InterfaceReport;
  createFrameIo(opts: FrameIoOptions): FrameIo;
  /** Throws PingError (with a hint) when the group is outside net.ipv4.ping_group_range. */
  createPingSocket(opts: PingSocketOptions): PingSocket;
  closeFd(fd: number): void;
  /** Two connected non-blocking SOCK_SEQPACKET fds: one frame per record, a tap's stand-in (the warm-up). */
  framePair(): [number, number];
  /**
   * Installs usernet's seccomp filter on every thread of this process
   * (PR_SET_NO_NEW_PRIVS, then SECCOMP_FILTER_FLAG_TSYNC). Irreversible.
   */
  installSeccompFilter(): SeccompResult;
  /**
   * Moves every thread of this process into a new mount namespace whose root
   * is a tmpfs holding read-only binds of `keep`, and drops all capabilities
   * (bounding, ambient, effective, permitted, inheritable) of every thread.
   * Irreversible; on failure the process is half-confined and must exit.
   */
  enterSandbox(opts: SandboxOptions): SandboxResult;
  /** unlinkat(dirFd, name, 0). */
  unlinkAt(dirFd: number, name: string): void;
  /** Calls onExit once when process `pid` exits (pidfd_open + poll). */
  watchProcessExit(pid: number, onExit: () => void): PidWatch;
  /**
   * execve(2) of this whole process (same PID; fds without FD_CLOEXEC stay
   * open, and stdio and `keepFds` lose FD_CLOEXEC first: Node sets it on
   * inherited fds 3+ at start-up, and libuv on a tty it re-opened; the
   * calling thread's signal mask is emptied first).
   * Returns only by throwing (the execve failed, flags are put back, and this
   * process goes on).
   */
  execve(file: string, argv: string[], env: string[], keepFds?: number[]): never;
}
