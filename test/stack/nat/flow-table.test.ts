import { describe, expect, it } from 'vitest';
import { FlowTable, NatFlow, type FlowClass } from '../../../stack/nat/flow-table.js';

function table(maxFlows: number, classes: FlowClass[], extra: Partial<ConstructorParameters<typeof FlowTable<NatFlow>>[0]> = {}) {
  const closed: number[] = [];
  const t = new FlowTable<NatFlow>({ proto: 'udp', maxFlows, classes, make: () => new NatFlow(), onClose: (id) => closed.push(id), ...extra });
  return { t, closed };
}

const idle = (ms: number): FlowClass => ({ timeoutMs: ms, evictAfterMs: ms });

describe('FlowTable', () => {
  it('reports the deadline per timeout class and refuses at the cap', () => {
    const { t, closed } = table(2, [idle(100), idle(10)]);
    const a = t.allocate(0, 1, 1, 0)!;
    const b = t.allocate(1, 2, 2, 0)!;
    expect(t.deadline(a)).toBe(100);
    expect(t.deadline(b)).toBe(10);
    expect(t.pollAt()).toBe(10);
    expect(t.allocate(0, 3, 3, 5)).toBeNull();
    expect(t.lastRefusal).toBe('flow-table-full');
    expect(t.drops['flow-table-full']).toBe(1);
    t.touch(b, 50);
    expect(t.pollAt()).toBe(60);
    expect(t.poll(100)).toBe(2);
    expect(closed.sort()).toEqual([1, 2]);
    expect(t.size).toBe(0);
    expect(t.index.get(1, 1)).toBeNull();
  });

  it('indexes flows by key and finds them by id while active', () => {
    const { t } = table(4, [idle(100)]);
    const f = t.allocate(0, 7, 9, 0)!;
    expect(t.index.get(7, 9)).toBe(f);
    expect(t.byId(f.id)).toBe(f);
    t.release(f, 'removed');
    expect(t.index.get(7, 9)).toBeNull();
    expect(t.byId(f.id)).toBeNull();
    expect(t.stats()).toMatchObject({ active: 0, created: 1, removed: 1 });
  });

  it("keeps a guest address to its share and frees its place on release", () => {
    const { t } = table(8, [idle(100)], { guestShare: 2 });
    const a = t.allocate(0, 1, 1, 0, 5)!;
    t.allocate(0, 2, 2, 0, 5);
    expect(t.allocate(0, 3, 3, 0, 5)).toBeNull();
    expect(t.lastRefusal).toBe('flow-guest-share-full');
    expect(t.allocate(0, 3, 3, 0, 6)).not.toBeNull();
    expect(t.allocate(0, 4, 4, 0)).not.toBeNull(); // -1: no guest
    t.release(a, 'removed');
    expect(t.allocate(0, 5, 5, 0, 5)).not.toBeNull();
  });

  it('lifo ids: the id freed last comes back first, fresh ids only when none is free; generations grow per id', () => {
    const { t } = table(8, [idle(100)], { idOrder: 'lifo', reuse: false });
    const a = t.allocate(0, 1, 1, 0)!;
    const b = t.allocate(0, 2, 2, 0)!;
    const c = t.allocate(0, 3, 3, 0)!;
    expect([a.id, b.id, c.id]).toEqual([1, 2, 3]);
    t.release(a, 'removed');
    t.release(c, 'removed');
    const d = t.allocate(0, 4, 4, 0)!;
    expect(d.id).toBe(3);
    expect(d).not.toBe(c); // reuse: false, a new object
    expect(d.generation).toBe(2);
    expect(t.allocate(0, 5, 5, 0)!.id).toBe(1);
    expect(t.allocate(0, 6, 6, 0)!.id).toBe(4);
    expect(t.liveFlows().map((f) => f.id)).toEqual([1, 2, 3, 4]);
  });

  it('evicts through the hook, oldest first, skipping heads the hook moves out of the evictable class', () => {
    const evicted: number[] = [];
    const keep = new Set<number>();
    const classes = [
      { timeoutMs: Infinity, evictAfterMs: 0 },
      { timeoutMs: Infinity, evictAfterMs: Infinity },
    ];
    const t: FlowTable<NatFlow> = new FlowTable<NatFlow>({
      proto: 'tcp',
      maxFlows: 3,
      classes,
      make: () => new NatFlow(),
      evict: (f) => {
        if (keep.has(f.id)) {
          t.setClass(f, 1);
          return false;
        }
        evicted.push(f.id);
        t.release(f, 'reset');
        return true;
      },
    });
    t.allocate(0, 1, 1, 0);
    t.allocate(0, 2, 2, 1);
    t.allocate(1, 3, 3, 2);
    keep.add(1);
    // Flow 1 is kept (moved to class 1, never evicted); flow 2 is the oldest left in class 0.
    expect(t.allocate(0, 4, 4, 3)!.id).toBe(2);
    expect(evicted).toEqual([2]);
    expect(t.byId(1)!.timeoutClass).toBe(1);
    // Id 2's new flow is now the only evictable one.
    expect(t.allocate(0, 5, 5, 4)!.id).toBe(2);
    expect(evicted).toEqual([2, 2]);
    t.setClass(t.byId(2)!, 1);
    expect(t.allocate(0, 6, 6, 5)).toBeNull();
    expect(t.lastRefusal).toBe('flow-table-full');
  });

  it('deadlines: popDue returns due active flows once; release cancels', () => {
    const { t } = table(4, [{ timeoutMs: Infinity, evictAfterMs: Infinity }], { deadlines: true });
    const a = t.allocate(0, 1, 1, 0)!;
    const b = t.allocate(0, 2, 2, 0)!;
    t.schedule(a, 10);
    t.schedule(b, 20);
    expect(t.pollAt()).toBe(10);
    t.release(a, 'removed');
    expect(t.popDue(30)).toBe(b);
    expect(t.popDue(30)).toBeNull();
  });
});
