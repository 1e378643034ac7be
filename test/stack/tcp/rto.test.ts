import { describe, expect, it } from 'vitest';
import { RtoEstimator } from '../../../stack/tcp/rto.js';

describe('RtoEstimator (RFC 6298)', () => {
  it('starts at the initial RTO, backs off exponentially up to max', () => {
    const r = new RtoEstimator(1000, 200, 60_000);
    expect(r.current()).toBe(1000);
    const seen: number[] = [];
    for (let i = 0; i < 8; i++) {
      r.expired();
      seen.push(r.current());
    }
    expect(seen).toEqual([2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]);
  });

  it('first sample sets SRTT = R, RTTVAR = R/2; later ones smooth; min clamps', () => {
    const r = new RtoEstimator(1000, 200, 60_000);
    r.sample(100);
    expect([r.srtt, r.rttvar, r.current()]).toEqual([100, 50, 300]);
    r.sample(300);
    expect(r.rttvar).toBe(0.75 * 50 + 0.25 * 200);
    expect(r.srtt).toBe(0.875 * 100 + 0.125 * 300);
    expect(r.current()).toBe(125 + 4 * 87.5);
    const fast = new RtoEstimator(1000, 200, 60_000);
    fast.sample(0.2);
    expect(fast.current()).toBe(200);
  });

  it('a sample resets the backoff', () => {
    const r = new RtoEstimator(1000, 200, 60_000);
    r.expired();
    r.expired();
    r.sample(10);
    expect(r.backoff).toBe(0);
    expect(r.current()).toBe(200);
  });
});
