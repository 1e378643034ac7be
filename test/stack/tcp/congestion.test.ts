import { describe, expect, it } from 'vitest';
import { NewReno } from '../../../stack/tcp/congestion.js';

describe('NewReno', () => {
  it('starts at 10 segments, grows by bytes acked in slow start and by 1 SMSS per cwnd in avoidance', () => {
    const c = new NewReno(1000, 10);
    expect(c.cwnd).toBe(10_000);
    c.onAck(5000);
    expect(c.cwnd).toBe(15_000);
    c.ssthresh = 15_000;
    c.onAck(10_000);
    expect(c.cwnd).toBe(15_000);
    c.onAck(5000);
    expect(c.cwnd).toBe(16_000);
  });

  it('fast recovery: enter, inflate, partial ACK deflates, full ACK exits', () => {
    const c = new NewReno(1000, 10);
    c.enterRecovery(20_000, 5000);
    expect([c.ssthresh, c.cwnd, c.inRecovery, c.recover]).toEqual([10_000, 13_000, true, 5000]);
    c.onDupAckInRecovery();
    expect(c.cwnd).toBe(14_000);
    expect(c.onAckInRecovery(3000, 2000, 2000)).toBe(true);
    expect(c.cwnd).toBe(13_000);
    expect(c.onAckInRecovery(5000, 2000, 0)).toBe(false);
    expect(c.inRecovery).toBe(false);
    expect(c.cwnd).toBe(2000);
  });

  it('timeout collapses cwnd to one segment', () => {
    const c = new NewReno(1000, 10);
    c.onTimeout(3000);
    expect([c.cwnd, c.ssthresh]).toEqual([1000, 2000]);
  });

  it('keeps whole bytes when the flight is odd: a fractional window made a fractional segment length', () => {
    const c = new NewReno(1448, 10);
    c.enterRecovery(2_963_791, 5000);
    expect(Number.isInteger(c.ssthresh) && Number.isInteger(c.cwnd)).toBe(true);
    c.onAckInRecovery(5000, 1000, 1_481_895);
    expect(Number.isInteger(c.cwnd)).toBe(true);
    c.onTimeout(2_963_791);
    expect(Number.isInteger(c.ssthresh)).toBe(true);
    expect(c.ssthresh).toBe(1_481_895);
  });
});
