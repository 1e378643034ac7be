import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { API_REPLY_MAX, handleApiRequest, startApiServer, type ApiLimits, type ApiServer, type ForwardTable } from '../../../src/slirp4netns/api.js';
import { createLogger } from '../../../src/log.js';
import type { ForwardEntry, ForwardSpec } from '../../../src/host/port-forwards.js';

class FakeForwards implements ForwardTable {
  entries: ForwardEntry[] = [];
  next = 1;
  failNext = false;
  async add(spec: ForwardSpec): Promise<ForwardEntry> {
    if (this.failNext) throw new Error('EADDRINUSE');
    const e = { id: this.next++, ...spec };
    this.entries.push(e);
    return e;
  }
  remove(id: number): boolean {
    const i = this.entries.findIndex((e) => e.id === id);
    if (i < 0) return false;
    this.entries.splice(i, 1);
    return true;
  }
  list(): ForwardEntry[] {
    return this.entries;
  }
}

const GUEST = '10.0.2.100';

async function call(f: ForwardTable, req: unknown): Promise<Record<string, unknown>> {
  const raw = Buffer.from(typeof req === 'string' ? req : `${JSON.stringify(req)}\n`);
  const reply = await handleApiRequest(raw, f, GUEST);
  expect(JSON.stringify(reply).length).toBeLessThan(API_REPLY_MAX);
  return reply;
}

const err = (what: string) => ({ error: { desc: `bad request: ${what}` } });

describe('slirp4netns API', () => {
  it('add_hostfwd returns the id; defaults host_addr to 0.0.0.0 and guest_addr to N+100', async () => {
    const f = new FakeForwards();
    expect(await call(f, { execute: 'add_hostfwd', arguments: { proto: 'tcp', host_addr: '127.0.0.1', host_port: 8080, guest_addr: '10.0.2.100', guest_port: 80 } })).toEqual({ return: { id: 1 } });
    expect(await call(f, { execute: 'add_hostfwd', arguments: { proto: 'udp', host_port: 5353, guest_port: 53 } })).toEqual({ return: { id: 2 } });
    expect(await call(f, { execute: 'add_hostfwd', arguments: { proto: 'tcp', host_addr: '', host_port: 1, guest_addr: '', guest_port: 2 } })).toEqual({ return: { id: 3 } });
    expect(f.entries[1]).toMatchObject({ proto: 'udp', hostAddr: '0.0.0.0', guestAddr: GUEST });
    expect(f.entries[2]).toMatchObject({ hostAddr: '0.0.0.0', guestAddr: GUEST });
  });

  it('list_hostfwd answers with entries (and the same under return)', async () => {
    const f = new FakeForwards();
    await call(f, { execute: 'add_hostfwd', arguments: { proto: 'tcp', host_addr: '0.0.0.0', host_port: 8080, guest_addr: '10.0.2.100', guest_port: 80 } });
    const r = await call(f, { execute: 'list_hostfwd' });
    const entries = [{ id: 1, proto: 'tcp', host_addr: '0.0.0.0', host_port: 8080, guest_addr: '10.0.2.100', guest_port: 80 }];
    expect(r).toEqual({ entries, return: { entries } });
  });

  it('keeps a long list under 2048 bytes by dropping the duplicate', async () => {
    const f = new FakeForwards();
    for (let i = 0; i < 12; i++) await call(f, { execute: 'add_hostfwd', arguments: { proto: 'tcp', host_port: 1000 + i, guest_port: 80 } });
    const r = await call(f, { execute: 'list_hostfwd' });
    expect((r.entries as unknown[]).length).toBe(12);
    expect(r.return).toBeUndefined();
  });

  it('remove_hostfwd closes by id; ids are not reused', async () => {
    const f = new FakeForwards();
    await call(f, { execute: 'add_hostfwd', arguments: { proto: 'tcp', host_port: 1, guest_port: 1 } });
    expect(await call(f, { execute: 'remove_hostfwd', arguments: { id: 1 } })).toEqual({ return: {} });
    expect(await call(f, { execute: 'remove_hostfwd', arguments: { id: 1 } })).toEqual(err('remove_hostfwd: bad arguments.id'));
    expect(await call(f, { execute: 'add_hostfwd', arguments: { proto: 'tcp', host_port: 1, guest_port: 1 } })).toEqual({ return: { id: 2 } });
  });

  it('answers every malformed request with slirp4netns error descriptions', async () => {
    const f = new FakeForwards();
    expect(await call(f, '{"execute":')).toEqual(err('cannot parse JSON'));
    expect(await call(f, '[1,2]')).toEqual(err('cannot parse JSON'));
    expect(await call(f, '')).toEqual(err('cannot parse JSON'));
    expect(await call(f, {})).toEqual(err('no execute found'));
    expect(await call(f, { execute: 7 })).toEqual(err('no execute found'));
    expect(await call(f, { execute: 'frobnicate' })).toEqual(err('unknown execute'));
    expect(await call(f, `{"execute":"list_hostfwd","pad":"${'x'.repeat(4096)}"}`)).toEqual(err('too large message'));
    const add = (a: Record<string, unknown>) => call(f, { execute: 'add_hostfwd', arguments: { proto: 'tcp', host_port: 80, guest_port: 80, ...a } });
    expect(await call(f, { execute: 'add_hostfwd' })).toEqual(err('add_hostfwd: bad arguments.proto'));
    expect(await add({ proto: 'sctp' })).toEqual(err('add_hostfwd: bad arguments.proto'));
    expect(await add({ host_addr: 'localhost' })).toEqual(err('add_hostfwd: bad arguments.host_addr'));
    expect(await add({ host_addr: '::1' })).toEqual(err('add_hostfwd: bad arguments.host_addr'));
    expect(await add({ host_port: 0 })).toEqual(err('add_hostfwd: bad arguments.host_port'));
    expect(await add({ host_port: 65536 })).toEqual(err('add_hostfwd: bad arguments.host_port'));
    expect(await add({ host_port: '80' })).toEqual(err('add_hostfwd: bad arguments.host_port'));
    expect(await add({ guest_addr: 5 })).toEqual(err('add_hostfwd: bad arguments.guest_addr'));
    expect(await add({ guest_port: undefined })).toEqual(err('add_hostfwd: bad arguments.guest_port'));
    expect(await add({ guest_port: 1.5 })).toEqual(err('add_hostfwd: bad arguments.guest_port'));
    f.failNext = true;
    expect(await add({})).toEqual(err('add_hostfwd: slirp_add_hostfwd failed'));
    expect(await call(f, { execute: 'remove_hostfwd' })).toEqual(err('remove_hostfwd: bad arguments.id'));
    expect(await call(f, { execute: 'remove_hostfwd', arguments: { id: 'one' } })).toEqual(err('remove_hostfwd: bad arguments.id'));
  });
});

describe('slirp4netns API socket', () => {
  let dir = '';
  let server: ApiServer | null = null;
  afterEach(() => {
    server?.close();
    server = null;
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
    dir = '';
  });

  async function start(limits: ApiLimits = {}): Promise<string> {
    dir = mkdtempSync(join(tmpdir(), 'i20-api-'));
    const path = join(dir, 'api.sock');
    server = await startApiServer(path, new FakeForwards(), GUEST, createLogger('error', () => undefined), limits);
    return path;
  }

  /** Connects, lets `act` write, and collects what the server sends until the connection is gone. */
  function session(path: string, act: (c: Socket) => void): Promise<{ reply: string; closed: boolean }> {
    return new Promise((resolve) => {
      const c = connect(path);
      let reply = '';
      c.setEncoding('utf8');
      c.on('data', (d: string) => (reply += d));
      c.on('error', () => undefined);
      c.on('close', () => resolve({ reply, closed: true }));
      c.on('connect', () => act(c));
    });
  }

  it('answers a too large request and closes the connection, without waiting for the client to finish', async () => {
    const path = await start();
    const r = await session(path, (c) => c.write(`{"execute":"list_hostfwd","pad":"${' '.repeat(5000)}`));
    expect(JSON.parse(r.reply)).toEqual(err('too large message'));
    expect(r.closed).toBe(true);
  });

  it('a client that keeps writing a too large request is cut off (before, it never finished)', async () => {
    const path = await start();
    const chunk = Buffer.alloc(1024, 0x20);
    const r = await session(path, (c) => {
      c.write('{"execute":"list_hostfwd","pad":"');
      // Never ends its request: only the server's close stops this.
      const more = () => {
        if (c.destroyed) return;
        if (c.write(chunk)) setImmediate(more);
        else c.once('drain', more);
      };
      more();
    });
    expect(r.closed).toBe(true);
    // Whether the reply is read before the write fails (EPIPE) is up to the client, as with slirp4netns.
    if (r.reply !== '') expect(JSON.parse(r.reply)).toEqual(err('too large message'));
  });

  it('closes after the reply even when the client never shuts down its write side', async () => {
    const path = await start();
    const r = await session(path, (c) => c.write('{"execute":"list_hostfwd"}'));
    expect(JSON.parse(r.reply)).toMatchObject({ entries: [] });
    expect(r.closed).toBe(true);
  });

  it('closes an idle connection, and an incomplete request, without a reply once the request timeout passes', async () => {
    const path = await start({ requestTimeoutMs: 100 });
    expect(await session(path, () => undefined)).toEqual({ reply: '', closed: true });
    expect(await session(path, (c) => c.write('{"execute":'))).toEqual({ reply: '', closed: true });
    // The server still answers the next client.
    expect(JSON.parse((await session(path, (c) => c.end('{"execute":"list_hostfwd"}'))).reply)).toMatchObject({ entries: [] });
  });

  it('bounds concurrent connections: one beyond the cap is closed unanswered; after the others go, requests work again', async () => {
    const path = await start({ maxConnections: 2, requestTimeoutMs: 60_000 });
    const held: Socket[] = [];
    for (let i = 0; i < 2; i++) {
      const c = connect(path);
      c.on('error', () => undefined);
      await new Promise<void>((r) => c.on('connect', () => r()));
      held.push(c);
    }
    // Let the server accept both before the third arrives.
    await new Promise((r) => setTimeout(r, 50));
    const third = await session(path, (c) => c.write('{"execute":"list_hostfwd"}'));
    expect(third).toEqual({ reply: '', closed: true });
    for (const c of held) c.destroy();
    // The server frees the slots when it sees those closes: ask until it answers.
    let reply = '';
    for (let i = 0; i < 100 && reply === ''; i++) {
      reply = (await session(path, (c) => c.end('{"execute":"list_hostfwd"}'))).reply;
      if (reply === '') await new Promise((r) => setTimeout(r, 20));
    }
    expect(JSON.parse(reply)).toMatchObject({ entries: [] });
  });
});
