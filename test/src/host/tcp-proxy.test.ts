/**
 * The host TCP layer (src/host/: socket table, dialer, listeners, pump) against
 * real loopback sockets, with a fake flow: a TcpStream over plain buffers
 * that records what the proxy asked of it, and a fake NAT for the dials. The
 * states of tcp-host-conn.ts one by one: dialing, accepted, open, lingering,
 * closed.
 */
import { once } from 'node:events';
import { createServer, connect as netConnect, type AddressInfo, type Server, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { TcpFlow, TcpNat } from '../../../stack/nat/tcp-nat.js';
import type { TcpStream } from '../../../stack/nat/tcp-stream.js';
import type { ByteRegion } from '../../../stack/tcp/send-buffer.js';
import { createLogger } from '../../../src/log.js';
import { SocketTable, type BatchWork } from '../../../src/host/socket-table.js';
import { TcpProxy, type AcceptedSocket } from '../../../src/host/tcp-proxy.js';
import type { HostConn } from '../../../src/host/tcp-host-conn.js';

/** A flow as the host side sees it: rings are plain buffers, every call is recorded. */
class FakeFlow implements TcpStream {
  closed = false;
  guestFinished = false;
  host: unknown = null;
  // What the dialer reads.
  toDns = false;
  hostIp = 1;
  hostPort = 0;
  guestIp = 0;
  guestPort = 0;
  remoteIp = 0;
  remotePort = 0;
  calls: string[] = [];
  /** host -> guest: committed bytes. */
  private readonly sendRing = Buffer.alloc(1 << 16);
  private sent = 0;
  /** guest -> host: bytes the guest "sent", and how far the host took them. */
  private toHost = Buffer.alloc(0);
  private taken = 0;
  private readonly region: ByteRegion = { buf: this.sendRing, off: 0, len: 0 };

  guestSends(text: string): void {
    this.toHost = Buffer.concat([this.toHost.subarray(this.taken), Buffer.from(text)]);
    this.taken = 0;
  }
  fromHost(): string {
    return this.sendRing.toString('latin1', 0, this.sent);
  }
  readable(): number {
    return this.toHost.length - this.taken;
  }
  peek(): ByteRegion {
    this.region.buf = this.toHost;
    this.region.off = this.taken;
    this.region.len = this.readable();
    return this.region;
  }
  consume(n: number): void {
    this.taken += n;
  }
  writable(): ByteRegion {
    this.region.buf = this.sendRing;
    this.region.off = this.sent;
    this.region.len = this.sendRing.length - this.sent;
    return this.region;
  }
  commit(n: number): void {
    this.sent += n;
  }
  pushed(): void {
    this.calls.push('pushed');
  }
  end(): void {
    this.calls.push('end');
  }
  abort(): void {
    this.calls.push('abort');
  }
  release(): void {
    this.calls.push('release');
  }
}

/** The NAT's dial calls, recorded. */
class FakeNat {
  dialTimeoutMs = Infinity;
  outcomes: string[] = [];
  addrs = { format: () => '127.0.0.1' };
  dialSucceeded(): void {
    this.outcomes.push('ok');
  }
  dialFailed(_flow: unknown, code: string): void {
    this.outcomes.push(code);
  }
}

const cleanups: (() => void)[] = [];
afterEach(() => {
  while (cleanups.length > 0) cleanups.pop()?.();
});

function setup(opts: { lingerMs?: number; dnsUpstreams?: { ip: string; port: number }[] } = {}) {
  const nat = new FakeNat();
  const work: BatchWork = { items: 0, bytes: 0 };
  const clock = () => performance.now();
  let proxy: TcpProxy | null = null;
  // As the runtime's flush: the end of every batch of socket events drains.
  const table = new SocketTable(clock, (now) => proxy?.drain(now), work);
  proxy = new TcpProxy(
    nat as unknown as TcpNat,
    table,
    work,
    clock,
    { dialTimeoutMs: 5000, dnsUpstreams: opts.dnsUpstreams ?? [], outboundAddress: null, lingerMs: opts.lingerMs ?? 10_000 },
    createLogger('error', () => {}),
  );
  cleanups.push(() => table.close());
  return { proxy, table, nat, work };
}

async function until(what: string, cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`waited 5 s for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A client connected to a forward's listener, and the accepted socket attached to a fresh fake flow. */
async function accepted(proxy: TcpProxy) {
  const got: AcceptedSocket[] = [];
  const { port } = proxy.listen('127.0.0.1', 0, (c) => got.push(c));
  const client = netConnect({ host: '127.0.0.1', port, allowHalfOpen: true });
  cleanups.push(() => client.destroy());
  let fromProxy = '';
  let ended = false;
  let error: string | null = null;
  client.on('data', (d: Buffer) => (fromProxy += d.toString('latin1')));
  client.on('end', () => (ended = true));
  client.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
  await once(client, 'connect');
  await until('the accept', () => got.length === 1);
  const c = got[0];
  const flow = new FakeFlow();
  proxy.attach(flow as unknown as TcpFlow, c);
  return {
    client,
    c: c as HostConn,
    flow,
    tcp: flow as unknown as TcpFlow,
    received: () => fromProxy,
    ended: () => ended,
    error: () => error,
  };
}

async function server(): Promise<{ srv: Server; port: number; conns: Socket[] }> {
  const conns: Socket[] = [];
  const srv = createServer({ allowHalfOpen: true }, (s) => conns.push(s));
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  cleanups.push(() => {
    for (const s of conns) s.destroy();
    srv.close();
  });
  return { srv, port: (srv.address() as AddressInfo).port, conns };
}

/** A port nothing listens on (bound and closed again). */
async function closedPort(): Promise<number> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as AddressInfo).port;
  srv.close();
  await once(srv, 'close');
  return port;
}

describe('host TCP: accepted connections (port forwards)', () => {
  it('reads nothing before the guest completed its handshake, then the bytes land in the stream', async () => {
    const { proxy } = setup();
    const a = await accepted(proxy);
    await new Promise<void>((r) => a.client.write('hello', () => r()));
    expect(a.c.state).toBe('accepted');
    proxy.drain(performance.now());
    expect(a.flow.fromHost()).toBe('');
    proxy.onEstablished(a.tcp);
    expect(a.c.state).toBe('open');
    proxy.drain(performance.now());
    // Read by that drain, or by the socket's next event if loopback delivered the bytes later.
    await until('the bytes', () => a.flow.fromHost() === 'hello');
    expect(a.flow.calls).toContain('pushed');
    expect(proxy.sockets).toBe(1);
  });

  it("turns the host's EOF into end() on the stream", async () => {
    const { proxy } = setup();
    const a = await accepted(proxy);
    proxy.onEstablished(a.tcp);
    proxy.drain(performance.now());
    a.client.end('last');
    await until('end()', () => a.flow.calls.includes('end'));
    expect(a.flow.fromHost()).toBe('last');
    expect(a.c.fromHost).toBe('eof');
  });

  it('writes the guest\'s bytes at the end of the batch, then SHUT_WR after the guest\'s FIN', async () => {
    const { proxy } = setup();
    const a = await accepted(proxy);
    proxy.onEstablished(a.tcp);
    a.flow.guestSends('request');
    a.flow.guestFinished = true;
    proxy.onReadable(a.tcp);
    expect(a.flow.readable()).toBe(7);
    proxy.drain(performance.now());
    expect(a.flow.readable()).toBe(0);
    expect(a.c.toHost).toBe('shut');
    await until("the client's end", () => a.ended());
    expect(a.received()).toBe('request');
  });

  it('resets the client when the guest cannot be reached (reject)', async () => {
    const { proxy } = setup();
    const a = await accepted(proxy);
    proxy.reject(a.c);
    expect(a.c.state).toBe('closed');
    expect(proxy.sockets).toBe(0);
    await until('the reset', () => a.error() !== null);
    expect(a.error()).toBe('ECONNRESET');
  });
});

describe('host TCP: the end of a connection', () => {
  it("lingers after a normal close: writes what the guest sent last, SHUT_WR, and closes at the host's EOF", async () => {
    const { proxy } = setup();
    const a = await accepted(proxy);
    proxy.onEstablished(a.tcp);
    proxy.drain(performance.now());
    a.flow.guestSends('bye');
    a.flow.guestFinished = true;
    a.flow.closed = true;
    proxy.onClosed(a.tcp, 'normal');
    expect(a.flow.calls).toContain('release');
    expect(a.c.state).toBe('lingering');
    expect(a.c.toHost).toBe('shut');
    await until("the client's end", () => a.ended());
    expect(a.received()).toBe('bye');
    expect(proxy.sockets).toBe(1);
    a.client.end();
    await until('the close', () => proxy.sockets === 0);
    expect(a.c.state).toBe('closed');
  });

  it('gives up lingering after lingerMs when the host never sends its EOF', async () => {
    const { proxy } = setup({ lingerMs: 20 });
    const a = await accepted(proxy);
    proxy.onEstablished(a.tcp);
    a.flow.closed = true;
    proxy.onClosed(a.tcp, 'normal');
    expect(a.c.state).toBe('lingering');
    await until('the linger timeout', () => proxy.sockets === 0);
    expect(a.c.state).toBe('closed');
  });

  it('resets the host socket when the guest reset the flow', async () => {
    const { proxy } = setup();
    const a = await accepted(proxy);
    proxy.onEstablished(a.tcp);
    a.flow.closed = true;
    proxy.onClosed(a.tcp, 'reset');
    expect(a.c.state).toBe('closed');
    expect(a.flow.calls).toContain('release');
    await until('the reset', () => a.error() !== null);
    expect(a.error()).toBe('ECONNRESET');
  });
});

describe('host TCP: dialing', () => {
  it('reports a loopback connect at the end of the dialing batch, and a refused one as ECONNREFUSED', async () => {
    const { proxy, nat } = setup();
    const { port, conns } = await server();
    const ok = new FakeFlow();
    ok.hostPort = port;
    proxy.dial(ok as unknown as TcpFlow);
    expect((ok.host as HostConn).state).toBe('dialing');
    const refused = new FakeFlow();
    refused.hostPort = await closedPort();
    proxy.dial(refused as unknown as TcpFlow);
    await until('both outcomes', () => {
      proxy.drain(performance.now());
      return nat.outcomes.length === 2;
    });
    expect([...nat.outcomes].sort()).toEqual(['ECONNREFUSED', 'ok']);
    expect((ok.host as HostConn).state).toBe('open');
    expect(refused.host).toBeNull();
    await until('the server side', () => conns.length === 1);
    expect(proxy.sockets).toBe(1);
  });

  it('fails over to the next DNS upstream; only the last failure reaches the guest', async () => {
    const dead = await closedPort();
    const { port } = await server();
    const { proxy, nat } = setup({ dnsUpstreams: [{ ip: '127.0.0.1', port: dead }, { ip: '127.0.0.1', port }] });
    const flow = new FakeFlow();
    flow.toDns = true;
    proxy.dial(flow as unknown as TcpFlow);
    const first = flow.host as HostConn;
    await until('the outcome', () => {
      proxy.drain(performance.now());
      return nat.outcomes.length === 1;
    });
    expect(nat.outcomes).toEqual(['ok']);
    expect(first.state).toBe('closed');
    expect((flow.host as HostConn).dnsAttempt).toBe(1);

    const { proxy: p2, nat: n2 } = setup({ dnsUpstreams: [{ ip: '127.0.0.1', port: dead }] });
    const lone = new FakeFlow();
    lone.toDns = true;
    p2.dial(lone as unknown as TcpFlow);
    await until('the outcome', () => {
      p2.drain(performance.now());
      return n2.outcomes.length === 1;
    });
    expect(n2.outcomes).toEqual(['ECONNREFUSED']);
  });
});
