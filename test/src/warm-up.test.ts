// The start-up warm-up: real transactions through a private runtime (a
// SOCK_SEQPACKET pair for the tap, the engine's TCP as the guest, a loopback
// echo server), every reply byte checked, nothing left open afterwards.
import { readdirSync, readlinkSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseCommandLine, type RuntimeOptions } from '../../src/options.js';
import { createLogger } from '../../src/log.js';
import { startWarmUp, WarmUp, WARM_UP_MIN_MTU } from '../../src/warm-up.js';

function options(...extra: string[]): RuntimeOptions {
  const c = parseCommandLine(['--tap', 'unused', ...extra]);
  if (c.kind !== 'main') throw new Error('expected main');
  return c.options;
}

function socketFds(): Set<string> {
  return new Set(
    readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`).startsWith('socket:');
      } catch {
        return false;
      }
    }),
  );
}

const lines: string[] = [];
const log = createLogger('debug', (l) => lines.push(l));

describe('warm-up', () => {
  it('runs connect/request/reply/close and request/response through a private runtime (vnet frames, partial checksums)', async () => {
    const before = socketFds();
    const r = await new WarmUp(options(), log, { connections: 60, roundTrips: 1200, maxMs: 60_000 }).run();
    expect(r.error).toBeNull();
    expect(r.stoppedBy).toBeNull();
    // 60 one-request connections, then 1200 round trips on connections of at most 500.
    expect(r.connections).toBe(63);
    expect(r.roundTrips).toBe(1260);
    expect(r.bytes).toBe(126_000);
    expect(socketFds()).toEqual(before);
  });

  it('works with plain frames (full checksums, verified by the gateway) and whatever the host-loopback option says', async () => {
    const before = socketFds();
    const o = options('--no-offload', '--disable-host-loopback', '--busy-poll', '0', '--mtu', '9000');
    const r = await new WarmUp(o, log, { connections: 40, roundTrips: 300, maxMs: 60_000 }).run();
    expect(r.error).toBeNull();
    expect(r.stoppedBy).toBeNull();
    expect(r.roundTrips).toBe(340);
    expect(r.bytes).toBe(34_000);
    expect(socketFds()).toEqual(before);
  });

  it('ends early on stop() and cleans up', async () => {
    const before = socketFds();
    const w = new WarmUp(options(), log, { connections: 1_000_000, roundTrips: 0, maxMs: 60_000 });
    const running = w.run();
    await new Promise((resolve) => setTimeout(resolve, 200));
    w.stop();
    const r = await running;
    expect(r.stoppedBy).toBe('stop');
    expect(r.error).toBeNull();
    expect(r.connections).toBeGreaterThan(0);
    expect(r.connections).toBeLessThan(1_000_000);
    expect(socketFds()).toEqual(before);
  });

  it('ends at its time limit', async () => {
    const r = await new WarmUp(options(), log, { connections: 1_000_000, roundTrips: 0, maxMs: 150 }).run();
    expect(r.stoppedBy).toBe('time');
    expect(r.error).toBeNull();
    expect(r.connections).toBeGreaterThan(0);
  });

  it('runs at the smallest MTU it takes, with and without offloads; below it start-up skips it', async () => {
    for (const extra of [[], ['--no-offload']]) {
      const r = await new WarmUp(options('--mtu', String(WARM_UP_MIN_MTU), ...extra), log, { connections: 10, roundTrips: 50, maxMs: 60_000 }).run();
      expect(r.error).toBeNull();
      expect(r.roundTrips).toBe(60);
    }
    lines.length = 0;
    expect(startWarmUp(options('--mtu', String(WARM_UP_MIN_MTU - 1), '--disable-ipv6'), log)).toBeNull();
    expect(lines.join('')).toMatch(/warm-up skipped: MTU 575/);
    expect(startWarmUp(options('--no-warm-up'), log)).toBeNull();
  });

  it('is on by default; --no-warm-up turns it off', () => {
    expect(options().warmUp).toBe(true);
    expect(options('--no-warm-up').warmUp).toBe(false);
    const run = parseCommandLine(['run', '--no-warm-up', '--', 'true']);
    expect(run.kind === 'run' && run.options.warmUp).toBe(false);
  });
});
