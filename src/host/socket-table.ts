/**
 * The host sockets' table and their epoll dispatch: tokens -> handlers.
 *
 * How it works
 * - Every native host TCP socket (native/tcp_sockets.cc: dialed, accepted and
 *   listening) sits in one edge-triggered epoll set, registered once with a
 *   token: a slot in this table plus a generation, so an event for a socket
 *   closed earlier in the same batch never reaches its slot's next owner.
 *   Tokens stay below 2^30 (small integers for V8): 20 bits of slot, 10 of
 *   generation.
 * - A wake-up hands over every ready socket in one call (onEvents: token and
 *   epoll bits pairs in one Uint32Array allocated once); each goes to its
 *   handler's `onEvent`, and `afterBatch` then writes the frames the batch
 *   produced, once.
 * - Busy polling is the runtime's (src/runtime.ts): it spins on this set
 *   (`spin`) and handles what it found (`pollNow`) as a wake-up would. The
 *   events and the bytes the handlers move are counted in the runtime's
 *   BatchWork, from which it decides whether to spin.
 * - UDP and ping sockets are not in this table: UDP flows use Node's dgram
 *   sockets, ping sockets native/ping.cc's own poll, and neither has tokens.
 *   A new kind of host socket that lives in this epoll set (a native call
 *   that takes a token) implements SocketHandler and registers here.
 */
import type { TcpSockets } from '../native/types.js';
import { TCP_EVENTS_MAX } from '../native/types.js';
import { native } from '../native/addon.js';
import { UsernetError } from '../errors.js';

export const EPOLLIN = 0x1;
export const EPOLLOUT = 0x4;
export const EPOLLERR = 0x8;
export const EPOLLHUP = 0x10;
export const EPOLLRDHUP = 0x2000;

const SLOT_BITS = 20;
const SLOT_MASK = (1 << SLOT_BITS) - 1;
const GEN_MASK = (1 << 10) - 1;

/** One socket in the epoll set. */
export interface SocketHandler {
  /** Set by SocketTable.add; valid until remove. */
  token: number;
  /** Epoll reported `bits` for this socket. */
  onEvent(bits: number, now: number): void;
  /** Shutdown of the whole table: close the socket now (no linger). */
  close(): void;
}

/** What a batch of input moved, for the runtime's busy-poll decision: frames and socket events, and their bytes. */
export interface BatchWork {
  items: number;
  bytes: number;
}

export class SocketTable {
  /** The native epoll set and its socket calls (connect, accept, read, write...). */
  readonly io: TcpSockets;
  private readonly events = new Uint32Array(2 * TCP_EVENTS_MAX);
  private readonly slots: (SocketHandler | null)[] = [];
  private readonly gens: number[] = [];
  private readonly freeSlots: number[] = [];
  private handlingBatch = false;
  private closed = false;

  constructor(
    private readonly clock: () => number,
    /** Writes what the batch's handlers queued (the runtime's flush). */
    private readonly afterBatch: (now: number) => void,
    private readonly work: BatchWork,
  ) {
    this.io = native.createTcpSockets({ events: this.events, onEvents: (n) => this.onEvents(n) });
    this.io.start();
  }

  /** Gives `h` a token (h.token) for the native call that registers its socket. */
  add(h: SocketHandler): number {
    let slot = this.freeSlots.pop();
    if (slot === undefined) {
      slot = this.slots.length;
      if (slot > SLOT_MASK) throw new UsernetError('ERR_HOST_SOCKETS_FULL', `host sockets: too many (${SLOT_MASK + 1})`);
      this.slots.push(null);
      this.gens.push(0);
    }
    h.token = (this.gens[slot] << SLOT_BITS) | slot;
    this.slots[slot] = h;
    return h.token;
  }

  /** Frees h's slot (its socket is closed or never opened); a second call does nothing. */
  remove(h: SocketHandler): void {
    const slot = h.token & SLOT_MASK;
    if (this.slots[slot] !== h) return;
    this.slots[slot] = null;
    this.gens[slot] = (this.gens[slot] + 1) & GEN_MASK;
    this.freeSlots.push(slot);
  }

  lookup(token: number): SocketHandler | null {
    const h = this.slots[token & SLOT_MASK];
    return h !== null && h !== undefined && h.token === token ? h : null;
  }

  private onEvents(count: number): void {
    this.work.items += count;
    const now = this.clock();
    const ev = this.events;
    this.handlingBatch = true;
    try {
      for (let i = 0; i < count; i++) {
        const h = this.lookup(ev[2 * i]);
        if (h !== null) h.onEvent(ev[2 * i + 1], now);
      }
    } finally {
      this.handlingBatch = false;
    }
    this.afterBatch(now);
  }

  /**
   * True while a batch of socket events is being handled: a flush from inside it (a port
   * forward's callback) must not fetch new events into the array being read.
   */
  get handling(): boolean {
    return this.handlingBatch;
  }

  /**
   * Busy-polls this set and `fds` (tap fds) for up to maxMicros. Once one is readable, a
   * bit mask of what is (bit 0 this set, bit i + 1 fds[i]); 0 when time ran out.
   */
  spin(fds: Int32Array, count: number, maxMicros: number): number {
    return this.closed ? 0 : this.io.spin(fds, count, maxMicros);
  }

  /** Handles the sockets that are ready now (after a spin saw them), as a wake-up would. */
  pollNow(): void {
    if (this.closed) return;
    const n = this.io.pollNow();
    if (n > 0) this.onEvents(n);
  }

  /** Closes every socket in the table, then the epoll set (shutdown). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const h of this.slots) if (h !== null) h.close();
    this.io.close();
  }
}
