/**
 * Spare ring memory of closed connections, handed to the next ones.
 *
 * How it works: every connection's first host read and first byte from the peer
 * allocate its send and receive rings (64 KiB and 16 KiB by default). At
 * thousands of short connections per second that is hundreds of MB/s of
 * fresh ArrayBuffers, and V8 counts them as external memory, which brings
 * on extra garbage collections. A connection whose owner knows nobody holds
 * its rings any more (`TcpConnection.recycleBuffers`) gives them back here,
 * and `take` hands out one of exactly the asked size.
 *
 * Limits: only rings up to MAX_BYTES are kept, at most MAX_PER_SIZE of each
 * size, so the pool never holds more than a few MiB after a burst.
 * Contents are not cleared: a ring's bytes are only read after they were
 * written.
 */

/** Larger rings (grown by bulk transfers) go back to the GC. */
const MAX_BYTES = 256 * 1024;
/** Per size: enough to absorb a burst of short connections closing in one batch. */
const MAX_PER_SIZE = 32;

export class RingPool {
  private readonly free = new Map<number, Buffer[]>();

  /** A spare ring of exactly `size` bytes, or null. */
  take(size: number): Buffer | null {
    const list = this.free.get(size);
    return list === undefined || list.length === 0 ? null : list.pop()!;
  }

  /** Keeps `buf` for a later take; the caller must not use it afterwards. */
  give(buf: Buffer): void {
    const size = buf.length;
    if (size === 0 || size > MAX_BYTES) return;
    let list = this.free.get(size);
    if (list === undefined) {
      list = [];
      this.free.set(size, list);
    }
    if (list.length < MAX_PER_SIZE) list.push(buf);
  }

  /** Rings held (tests, diagnostics). */
  get size(): number {
    let n = 0;
    for (const l of this.free.values()) n += l.length;
    return n;
  }
}

/** The one pool both ring kinds share (they differ in size). */
export const ringPool = new RingPool();
