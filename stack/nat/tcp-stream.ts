/**
 * The byte stream a TCP flow offers the host side (src/host/tcp-pump.ts): the
 * one interface through which a host socket's bytes meet the guest's
 * connection. The host side never calls TcpConnection or TcpNat for its
 * bytes; TcpFlow (tcp-nat.ts) implements this over its connection's rings
 * and tells the NAT what each call means for the guest (an ACK to send, a
 * deadline to move).
 *
 * Two directions, each a ring of the connection, read and written in place
 * (no copy):
 * - guest -> host: `readable()` bytes wait; `peek()` is the first contiguous
 *   run of them; `consume(n, now)` once the host socket took n (this opens
 *   the window the guest sees: its ACK leaves with the end-of-batch flush).
 *   `guestFinished`: the guest's FIN arrived after those bytes.
 * - host -> guest: `writable()` is the free run of the send ring (length 0:
 *   the guest's window and the ring are full, stop reading the host);
 *   `commit(n, now)` accounts n bytes read into it; `pushed(now)` after a
 *   run of commits sends what the windows allow and restarts the idle clock;
 *   `end(now)` is the host's EOF (our FIN follows the queued bytes);
 *   `abort(now)` the host's failure (the guest gets a RST).
 * - `closed`: the flow is over; after `release()` its rings belong to the
 *   pool and nothing may read into them or from them.
 *
 * The regions are the rings' own reused objects: valid until the next call
 * on the same stream.
 */
import type { ByteRegion } from '../tcp/send-buffer.js';

export interface TcpStream {
  readonly closed: boolean;
  readable(): number;
  peek(): ByteRegion;
  consume(n: number, now: number): void;
  readonly guestFinished: boolean;
  writable(): ByteRegion;
  commit(n: number, now: number): void;
  pushed(now: number): void;
  end(now: number): void;
  abort(now: number): void;
  release(): void;
}
