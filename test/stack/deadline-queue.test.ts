import { describe, expect, it } from 'vitest';
import { DeadlineQueue } from '../../stack/deadline-queue.js';

describe('DeadlineQueue', () => {
  it('pops due flows in time order and nothing early', () => {
    const q = new DeadlineQueue(2);
    q.schedule(3, 30);
    q.schedule(1, 10);
    q.schedule(2, 20);
    expect(q.peekTime()).toBe(10);
    expect(q.popDue(5)).toBe(-1);
    expect(q.popDue(25)).toBe(1);
    expect(q.popDue(25)).toBe(2);
    expect(q.popDue(25)).toBe(-1);
    expect(q.popDue(30)).toBe(3);
    expect(q.size).toBe(0);
  });

  it('keeps only the earliest deadline per flow and skips stale entries', () => {
    const q = new DeadlineQueue();
    q.schedule(7, 100);
    q.schedule(7, 200); // later: ignored, 100 stays
    expect(q.scheduledAt(7)).toBe(100);
    q.schedule(7, 50); // earlier: replaces
    expect(q.popDue(60)).toBe(7);
    expect(q.popDue(1000)).toBe(-1); // the entry at 100 is stale
  });

  it('cancel makes entries stale', () => {
    const q = new DeadlineQueue();
    q.schedule(1, 10);
    q.cancel(1);
    expect(q.popDue(100)).toBe(-1);
    expect(q.scheduledAt(1)).toBe(Infinity);
  });

  it('matches a simple model under random operations', () => {
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const q = new DeadlineQueue(4);
    const model = new Map<number, number>();
    let now = 0;
    for (let step = 0; step < 20_000; step++) {
      const r = rnd();
      const id = Math.floor(rnd() * 300);
      if (r < 0.5) {
        const at = now + Math.floor(rnd() * 100);
        q.schedule(id, at);
        const cur = model.get(id);
        if (cur === undefined || at < cur) model.set(id, at);
      } else if (r < 0.6) {
        q.cancel(id);
        model.delete(id);
      } else {
        now += Math.floor(rnd() * 10);
        const due = [...model].filter(([, t]) => t <= now).sort((a, b) => a[1] - b[1] || a[0] - b[0]);
        const popped: number[] = [];
        for (let id2 = q.popDue(now); id2 >= 0; id2 = q.popDue(now)) popped.push(id2);
        expect(popped.sort((a, b) => a - b)).toEqual(due.map(([i]) => i).sort((a, b) => a - b));
        for (const [i] of due) model.delete(i);
      }
    }
  });
});
