import { describe, expect, it } from 'vitest';
import { Counters, ErrnoCounts, newDropCounters, withDrops } from '../../stack/counters.js';
import { DROP_REASONS } from '../../stack/drop-reasons.js';

describe('Counters', () => {
  it('counts by name and reports only the names counted', () => {
    const c = new Counters(['a', 'b', 'c'] as const);
    c.add('b');
    c.add('b');
    c.add('c', 5);
    expect(c.get('a')).toBe(0);
    expect(c.get('b')).toBe(2);
    expect(c.total()).toBe(7);
    expect(c.snapshot()).toEqual({ b: 2, c: 5 });
  });

  it('refuses a list that names a counter twice', () => {
    expect(() => new Counters(['a', 'b', 'a'])).toThrow(RangeError);
  });

  it('DROP_REASONS names each reason once, in kebab case', () => {
    expect(new Set(DROP_REASONS).size).toBe(DROP_REASONS.length);
    for (const r of DROP_REASONS) expect(r).toMatch(/^[a-z0-9]+(-[a-z0-9]+)*$/);
    expect(newDropCounters().snapshot()).toEqual({});
  });

  it('ErrnoCounts builds its names only when read', () => {
    const e = new ErrnoCounts('dial-', (code) => String(code).toLowerCase());
    e.add('ETIMEDOUT');
    e.add('ETIMEDOUT');
    const drops = newDropCounters();
    drops.add('runt');
    expect(e.addTo(drops.snapshot())).toEqual({ runt: 1, 'dial-etimedout': 2 });
  });

  it('withDrops keeps the drops in the serialized object', () => {
    const set = newDropCounters();
    const o = withDrops({ queries: 1 }, set);
    set.add('unknown-id');
    expect(JSON.parse(JSON.stringify(o))).toEqual({ queries: 1, drops: { 'unknown-id': 1 } });
  });
});
