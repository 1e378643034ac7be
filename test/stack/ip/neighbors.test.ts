import { describe, expect, it } from 'vitest';
import { ARP_ATTEMPTS, ARP_MAX_PENDING, ARP_MAX_WAITERS, ARP_RETRY_MS, Neighbors, type NeighborWaiter } from '../../../stack/ip/neighbors.js';

class Waiter implements NeighborWaiter {
  macs: number[] = [];
  failures = 0;
  resolved(mac: number): void {
    this.macs.push(mac);
  }
  failed(): void {
    this.failures++;
  }
}

function setup() {
  const n = new Neighbors(4);
  const asked: [number, number][] = [];
  n.requester = { sendArpRequest: (ip, now) => asked.push([ip, now]) };
  return { n, asked };
}

describe('Neighbors', () => {
  it('learns, updates and evicts the oldest beyond capacity', () => {
    const { n } = setup();
    for (let i = 1; i <= 5; i++) n.learn(i, 0x100 + i);
    expect(n.size).toBe(4);
    expect(n.lookup(1)).toBe(-1);
    expect(n.lookup(5)).toBe(0x105);
    n.learn(5, 0x999);
    expect(n.lookup(5)).toBe(0x999);
  });

  it('resolves at once when the MAC is known, without ARP', () => {
    const { n, asked } = setup();
    n.learn(7, 0x77);
    const w = new Waiter();
    expect(n.resolve(7, w, 0)).toBe(true);
    expect(w.macs).toEqual([0x77]);
    expect(asked).toHaveLength(0);
  });

  it('asks once for several waiters and wakes them all on learn', () => {
    const { n, asked } = setup();
    const a = new Waiter();
    const b = new Waiter();
    n.resolve(9, a, 10);
    n.resolve(9, b, 20);
    expect(asked).toEqual([[9, 10]]);
    expect(n.pollAt()).toBe(10 + ARP_RETRY_MS);
    n.learn(9, 0x99, 30);
    expect(a.macs).toEqual([0x99]);
    expect(b.macs).toEqual([0x99]);
    expect(n.pollAt()).toBe(Infinity);
    expect(n.stats()).toMatchObject({ resolved: 1, pending: 0, arpRequests: 1 });
  });

  it('retries every ARP_RETRY_MS and fails the waiters after ARP_ATTEMPTS', () => {
    const { n, asked } = setup();
    const w = new Waiter();
    n.resolve(3, w, 0);
    let now = 0;
    for (let i = 1; i < ARP_ATTEMPTS; i++) {
      now += ARP_RETRY_MS;
      n.poll(now);
    }
    expect(asked).toHaveLength(ARP_ATTEMPTS);
    expect(w.failures).toBe(0);
    n.poll(now + ARP_RETRY_MS - 1);
    expect(w.failures).toBe(0);
    n.poll(now + ARP_RETRY_MS);
    expect(w.failures).toBe(1);
    expect(n.stats().failed).toBe(1);
    // A later answer still teaches the MAC.
    n.learn(3, 0x33);
    expect(n.lookup(3)).toBe(0x33);
  });

  it('bounds the queue: too many addresses or waiters are refused and counted', () => {
    const { n } = setup();
    for (let ip = 1; ip <= ARP_MAX_PENDING; ip++) expect(n.resolve(1000 + ip, new Waiter(), 0)).toBe(true);
    expect(n.resolve(5000, new Waiter(), 0)).toBe(false);
    for (let i = 1; i < ARP_MAX_WAITERS; i++) expect(n.resolve(1001, new Waiter(), 0)).toBe(true);
    expect(n.resolve(1001, new Waiter(), 0)).toBe(false);
    expect(n.stats().refused).toBe(2);
  });

  it('refuses to wait without a requester', () => {
    const n = new Neighbors();
    expect(n.resolve(1, new Waiter(), 0)).toBe(false);
  });
});
