import { describe, expect, it } from 'vitest';
import { subordinateRange } from '../../src/userns.js';

describe('subordinateRange', () => {
  const text = 'alice:100000:65536\n1001:200000:1000\nbob:300000:0\nbob:400000:10\ncarol:x:5\n';

  it('finds the user by name or by uid, first match first', () => {
    expect(subordinateRange(text, 'alice', 1000)).toEqual({ start: 100000, count: 65536 });
    expect(subordinateRange(text, null, 1001)).toEqual({ start: 200000, count: 1000 });
    expect(subordinateRange(text, 'dave', 1001)).toEqual({ start: 200000, count: 1000 });
  });

  it('skips empty and malformed ranges', () => {
    expect(subordinateRange(text, 'bob', 5)).toEqual({ start: 400000, count: 10 });
    expect(subordinateRange(text, 'carol', 6)).toBeNull();
    expect(subordinateRange('', 'alice', 1000)).toBeNull();
  });
});
