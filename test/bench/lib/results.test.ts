import { describe, expect, it } from 'vitest';
import { parseTcp, parseUdp } from '../../../bench/lib/iperf.js';
import { median, renderTable, repeat, sample, type Row } from '../../../bench/lib/results.js';
import { checkTargets } from '../../../bench/lib/targets.js';

describe('median and repeat', () => {
  it('takes the middle value, the mean of the two middle ones, or null', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBe(null);
  });

  it('keeps failures apart from numbers', async () => {
    const s = await repeat(3, async (i) => {
      if (i === 1) throw new Error('stalled\nsecond line');
      return i * 10;
    });
    expect(s.reps).toEqual([0, 20]);
    expect(s.value).toBe(10);
    expect(s.errors).toEqual(['stalled']);
  });
});

describe('renderTable', () => {
  const row = (higherIsBetter: boolean, u: number, k: number): Row => ({
    group: 'G',
    metric: 'm',
    unit: 'x',
    higherIsBetter,
    values: { usernet: sample([u]), kernel: sample([k]), slirp4netns: { value: null, reps: [], errors: ['boom'] } },
  });

  it('gives "times better" ratios both ways and marks failed cells', () => {
    const t = renderTable([row(true, 5, 20), row(false, 2, 1)]);
    const lines = t.split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[2]).toContain('| 0.25× |');
    expect(lines[3]).toContain('| 0.50× |');
    expect(lines[2]).toContain('| fail |');
  });
});

describe('iperf3 JSON', () => {
  it('reads TCP receiver throughput', () => {
    const j = { end: { sum_received: { bits_per_second: 4.2e9, bytes: 2.6e9 } } };
    expect(parseTcp(`warning\n${JSON.stringify(j)}`)).toEqual({ bitsPerSecond: 4.2e9, bytes: 2.6e9 });
  });

  it('reads UDP datagrams delivered from the 3.12 layout', () => {
    const j = { end: { sum: { start: 0, end: 5, seconds: 5, packets: 1000, lost_packets: 250 } } };
    expect(parseUdp(JSON.stringify(j)).packetsPerSecond).toBe(150);
  });

  it('turns iperf3 errors into exceptions', () => {
    expect(() => parseTcp(JSON.stringify({ error: 'unable to connect' }))).toThrow(/unable to connect/);
    expect(() => parseTcp('no json')).toThrow(/no JSON/);
  });
});

describe('checkTargets', () => {
  it('judges the issue targets from the rows', () => {
    const rows: Row[] = [
      {
        group: 'TCP',
        metric: 'ns→host MTU 1500',
        unit: 'Gbit/s',
        higherIsBetter: true,
        values: { usernet: sample([6]), kernel: sample([20]), slirp4netns: sample([0.8]) },
      },
      {
        group: 'Bridge',
        metric: 'ping RTT avg',
        unit: 'ms',
        higherIsBetter: false,
        values: { usernet: sample([0.05]), vde_switch: sample([0.12]) },
      },
    ];
    const t = checkTargets(rows);
    expect(t).toMatch(/ns→host MTU 1500: ≥ 0.5× kernel: \*\*missed\*\* \(0.30×\); ≥ 3× slirp4netns: met \(7.50×\)/);
    expect(t).toMatch(/RTT below vde_switch: met/);
    expect(t).toMatch(/host→ns MTU 1500: ≥ 0.5× kernel: not measured/);
  });
});
