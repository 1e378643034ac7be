import { describe, expect, it } from 'vitest';
import { API_REPLY_MAX, handleApiRequest, type ForwardTable } from '../../../src/slirp4netns/api.js';
import type { ForwardEntry, ForwardSpec } from '../../../src/nat/port-forward.js';

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
