import { describe, expect, it } from 'vitest';
import { MacTable } from '../../stack/mac-table.js';
import { parseMac } from '../../stack/wire/mac.js';
import { prng } from '../helpers/prng.js';

const A = parseMac('02:00:00:00:00:0a');
const B = parseMac('02:00:00:00:00:0b');
const C = parseMac('02:00:00:00:00:0c');

function randomMac(rand: () => number): number {
  return Math.floor(rand() * 0x1_0000) * 0x1_0000_0000 + Math.floor(rand() * 0x1_0000_0000);
}

describe('MacTable', () => {
  it('learns and looks up', () => {
    const t = new MacTable(16, 1000);
    expect(t.lookup(A, 0)).toBe(-1);
    t.learn(A, 1, 0);
    t.learn(B, 2, 0);
    expect(t.lookup(A, 10)).toBe(1);
    expect(t.lookup(B, 10)).toBe(2);
    expect(t.lookup(C, 10)).toBe(-1);
    expect(t.size).toBe(2);
  });

  it('keys on the full 48 bits', () => {
    const t = new MacTable(16, 1000);
    const hi = parseMac('ff:ff:ff:ff:ff:fe');
    const sameLow = parseMac('00:01:ff:ff:ff:fe');
    t.learn(hi, 1, 0);
    t.learn(sameLow, 2, 0);
    expect(t.lookup(hi, 0)).toBe(1);
    expect(t.lookup(sameLow, 0)).toBe(2);
  });

  it('a refresh moves a MAC that changed port and does not add an entry', () => {
    const t = new MacTable(16, 1000);
    t.learn(A, 1, 0);
    t.learn(A, 3, 5);
    expect(t.lookup(A, 6)).toBe(3);
    expect(t.size).toBe(1);
  });

  it('ages entries with a fake clock: expired lookups are absent and removed', () => {
    const t = new MacTable(16, 1000);
    t.learn(A, 1, 0);
    t.learn(B, 2, 500);
    expect(t.lookup(A, 999)).toBe(1);
    expect(t.lookup(A, 1000)).toBe(-1);
    expect(t.size).toBe(1);
    expect(t.lookup(B, 1000)).toBe(2);
    // Seeing a MAC again restarts its clock.
    t.learn(B, 2, 1400);
    expect(t.lookup(B, 2000)).toBe(2);
    expect(t.lookup(B, 2400)).toBe(-1);
  });

  it('sweep removes expired entries from the tail and reports nextExpiry', () => {
    const t = new MacTable(16, 100);
    expect(t.nextExpiry()).toBe(Infinity);
    t.learn(A, 1, 0);
    t.learn(B, 1, 50);
    t.learn(C, 1, 80);
    expect(t.nextExpiry()).toBe(100);
    expect(t.sweep(99)).toBe(0);
    expect(t.sweep(150)).toBe(2);
    expect(t.size).toBe(1);
    expect(t.nextExpiry()).toBe(180);
    expect(t.lookup(C, 150)).toBe(1);
    expect(t.sweep(1000)).toBe(1);
    expect(t.size).toBe(0);
    expect(t.nextExpiry()).toBe(Infinity);
  });

  it('static entries never age, never get evicted, and are not moved by learning', () => {
    const t = new MacTable(4, 100);
    expect(t.addStatic(A, 7)).toBe(true);
    t.learn(A, 1, 0);
    expect(t.lookup(A, 1_000_000)).toBe(7);
    expect(t.sweep(1_000_000)).toBe(0);
    const rand = prng(1);
    for (let i = 0; i < 1000; i++) t.learn(randomMac(rand), 2, i);
    expect(t.lookup(A, 2_000_000)).toBe(7);
    expect(t.size).toBe(4);
    expect(t.dynamicSize).toBe(3);
  });

  it('turning a dynamic entry static takes it off the LRU list', () => {
    const t = new MacTable(2, 100);
    t.learn(A, 1, 0);
    t.addStatic(A, 2);
    t.learn(B, 1, 1);
    t.learn(C, 1, 2);
    expect(t.lookup(A, 500)).toBe(2);
    expect(t.lookup(B, 2)).toBe(-1);
    expect(t.lookup(C, 2)).toBe(1);
    expect(t.evictions).toBe(1);
  });

  it('refuses to learn when every slot is static', () => {
    const t = new MacTable(2, 100);
    t.addStatic(A, 1);
    t.addStatic(B, 1);
    t.learn(C, 1, 0);
    expect(t.lookup(C, 0)).toBe(-1);
    expect(t.refused).toBe(1);
    expect(t.addStatic(C, 1)).toBe(false);
  });

  it('evicts the least recently seen entry when full', () => {
    const t = new MacTable(3, 1_000_000);
    t.learn(A, 1, 0);
    t.learn(B, 1, 1);
    t.learn(C, 1, 2);
    t.learn(A, 1, 3); // A is now the most recent, B the oldest
    const D = parseMac('02:00:00:00:00:0d');
    t.learn(D, 2, 4);
    expect(t.evictions).toBe(1);
    expect(t.lookup(B, 5)).toBe(-1);
    expect(t.lookup(A, 5)).toBe(1);
    expect(t.lookup(C, 5)).toBe(1);
    expect(t.lookup(D, 5)).toBe(2);
  });

  it('stays at maxEntries under a flood of 100k random MACs', () => {
    const t = new MacTable(256, 300_000);
    const rand = prng(42);
    const recent: number[] = [];
    for (let i = 0; i < 100_000; i++) {
      const m = randomMac(rand);
      t.learn(m, i % 5, i);
      recent.push(m);
      if (recent.length > 256) recent.shift();
      expect(t.size).toBeLessThanOrEqual(256);
    }
    expect(t.size).toBe(256);
    expect(t.evictions).toBe(100_000 - 256);
    // The survivors are exactly the 256 most recent ones.
    for (const m of recent) expect(t.lookup(m, 100_000)).toBeGreaterThanOrEqual(0);
  });

  it('removePort forgets every MAC of that port, static ones included', () => {
    const t = new MacTable(16, 1000);
    t.learn(A, 1, 0);
    t.learn(B, 2, 0);
    t.addStatic(C, 1);
    expect(t.removePort(1)).toBe(2);
    expect(t.lookup(A, 0)).toBe(-1);
    expect(t.lookup(C, 0)).toBe(-1);
    expect(t.lookup(B, 0)).toBe(2);
    expect(t.size).toBe(1);
  });

  it('entries() reports a snapshot', () => {
    const t = new MacTable(16, 1000);
    t.learn(A, 1, 5);
    t.addStatic(B, 2);
    const e = t.entries().sort((x, y) => x.mac - y.mac);
    expect(e).toEqual([
      { mac: A, portId: 1, isStatic: false, lastSeen: 5 },
      { mac: B, portId: 2, isStatic: true, lastSeen: 0 },
    ]);
  });

  it('agrees with a Map model under randomized operations (hash deletion by backward shift)', () => {
    // A small key space and a tiny table make collisions, probe runs that wrap
    // around the bucket array, and deletions in the middle of runs common.
    for (const seed of [1, 2, 3, 4, 5]) {
      const rand = prng(seed);
      const cap = 1 + Math.floor(rand() * 40);
      const aging = 50;
      const t = new MacTable(cap, aging);
      type M = { port: number; seen: number; isStatic: boolean };
      const model = new Map<number, M>();
      const order: number[] = []; // dynamic keys, least recently seen first
      const keys = Array.from({ length: cap * 3 }, () => randomMac(rand));
      let now = 0;
      const touch = (k: number) => {
        const i = order.indexOf(k);
        if (i >= 0) order.splice(i, 1);
      };
      const removeModel = (k: number) => {
        model.delete(k);
        touch(k);
      };
      let evictions = 0;
      for (let step = 0; step < 20_000; step++) {
        now += Math.floor(rand() * 3);
        const k = keys[Math.floor(rand() * keys.length)];
        const op = rand();
        if (op < 0.5) {
          const port = Math.floor(rand() * 4);
          t.learn(k, port, now);
          const m = model.get(k);
          if (m?.isStatic) continue;
          if (m) {
            m.port = port;
            m.seen = now;
            touch(k);
            order.push(k);
          } else {
            if (model.size === cap) {
              if (order.length === 0) continue;
              removeModel(order[0]);
              evictions++;
            }
            model.set(k, { port, seen: now, isStatic: false });
            order.push(k);
          }
        } else if (op < 0.8) {
          const m = model.get(k);
          let want = -1;
          if (m) {
            if (!m.isStatic && now - m.seen >= aging) removeModel(k);
            else want = m.port;
          }
          expect(t.lookup(k, now)).toBe(want);
        } else if (op < 0.87) {
          const existed = model.has(k);
          expect(t.delete(k)).toBe(existed);
          removeModel(k);
        } else if (op < 0.9) {
          const port = Math.floor(rand() * 4);
          const m = model.get(k);
          let ok = true;
          if (m) {
            touch(k);
            m.isStatic = true;
            m.port = port;
          } else {
            if (model.size === cap) {
              if (order.length === 0) ok = false;
              else {
                removeModel(order[0]);
                evictions++;
              }
            }
            if (ok) model.set(k, { port, seen: 0, isStatic: true });
          }
          expect(t.addStatic(k, port)).toBe(ok);
        } else if (op < 0.95) {
          let n = 0;
          while (order.length > 0 && now - model.get(order[0])!.seen >= aging) {
            removeModel(order[0]);
            n++;
          }
          expect(t.sweep(now)).toBe(n);
        } else if (op < 0.96) {
          const port = Math.floor(rand() * 4);
          let n = 0;
          for (const [mk, m] of [...model]) {
            if (m.port === port) {
              removeModel(mk);
              n++;
            }
          }
          expect(t.removePort(port)).toBe(n);
        }
        expect(t.size).toBe(model.size);
      }
      expect(t.evictions).toBe(evictions);
      // Every key the model holds is found at its port (lookups at a time nothing expires).
      for (const [k, m] of model) {
        if (m.isStatic || now - m.seen < aging) expect(t.lookup(k, now)).toBe(m.port);
      }
      for (const k of keys) if (!model.has(k)) expect(t.lookup(k, now)).toBe(-1);
    }
  });
});
