/**
 * Two namespaces, each behind its own tap on one usernet bridge: real Linux
 * stacks on both ends, ping and iperf3 across, counters read back via SIGUSR1.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { must, run, Sandbox, statsOf, type Background } from './harness.js';

const sandbox = new Sandbox();
afterEach(() => sandbox.cleanup());

interface Host {
  ns: string;
  tap: string;
  ip: string;
  mac: string;
}

/** Taps are made in the root namespace, attached by usernet, then moved into the test namespaces. */
async function twoHosts(extraArgs: string[] = []): Promise<{ usernet: Background; a: Host; b: Host }> {
  const tapA = sandbox.tap('a');
  const tapB = sandbox.tap('b');
  const usernet = sandbox.spawnUsernet(['--tap', tapA, '--tap', tapB, '--log-level', 'info', ...extraArgs]);
  await usernet.waitFor(/gateway 10\.0\.2\.2/);
  const hosts = [
    { tap: tapA, ip: '10.0.2.101', tag: 'a' },
    { tap: tapB, ip: '10.0.2.102', tag: 'b' },
  ].map(({ tap, ip, tag }) => {
    const ns = sandbox.guestOnTap(tap, ip, tag);
    const mac = /link\/ether ([0-9a-f:]{17})/.exec(must('ip', ['-n', ns, 'link', 'show', tap]))![1];
    return { ns, tap, ip, mac };
  });
  return { usernet, a: hosts[0], b: hosts[1] };
}

describe('bridge between two namespaces', () => {
  it('forwards ping both ways, answers the gateway, and learns both MACs', async () => {
    const { usernet, a, b } = await twoHosts(['--stats-mac-table']);
    const ab = must('ip', ['netns', 'exec', a.ns, 'ping', '-c', '3', '-i', '0.2', '-W', '2', b.ip]);
    expect(ab).toMatch(/3 received/);
    const ba = must('ip', ['netns', 'exec', b.ns, 'ping', '-c', '2', '-i', '0.2', '-W', '2', a.ip]);
    expect(ba).toMatch(/2 received/);
    const gw = must('ip', ['netns', 'exec', b.ns, 'ping', '-c', '1', '-W', '2', '10.0.2.2']);
    expect(gw).toMatch(/1 received/);

    const s = await statsOf(usernet);
    const table = new Map<string, string>(s.bridge.macTable.entries.map((e: any) => [e.mac, e.port]));
    expect(table.get(a.mac)).toBe(a.tap);
    expect(table.get(b.mac)).toBe(b.tap);
    expect(table.get('52:55:0a:00:02:02')).toBe('gateway');
    expect(s.bridge.forwarded).toBeGreaterThan(0);
    expect(s.bridge.flooded).toBeGreaterThan(0);
    const portA = s.bridge.ports.find((p: any) => p.name === a.tap);
    expect(portA.counters.rxFrames).toBeGreaterThanOrEqual(5);
    expect(portA.counters.txFrames).toBeGreaterThanOrEqual(5);
  });

  for (const offload of [true, false]) {
    it(`carries TCP between the namespaces (iperf3, ${offload ? 'vnet offloads' : 'plain taps'})`, async () => {
      const { usernet, a, b } = await twoHosts(offload ? [] : ['--no-offload']);
      const server = sandbox.spawn('ip', ['netns', 'exec', b.ns, 'iperf3', '-s', '-1', '--forceflush', '-B', b.ip, '-p', '5201']);
      await server.waitFor(/Server listening/);
      const r = run('ip', ['netns', 'exec', a.ns, 'iperf3', '-c', b.ip, '-p', '5201', '-t', '2', '-J'], 30_000);
      expect(r.status).toBe(0);
      const result = JSON.parse(r.stdout);
      expect(result.error).toBeUndefined();
      expect(result.end.sum_received.bytes).toBeGreaterThan(1_000_000);
      const s = await statsOf(usernet);
      if (offload) expect(s.bridge.ports.find((p: any) => p.name === a.tap).vnet).toBe(true);
      else expect(s.bridge.ports.find((p: any) => p.name === a.tap).vnet).toBe(false);
    });
  }

  it('stops cleanly on SIGTERM and the taps survive for their owner', async () => {
    const { usernet, a } = await twoHosts();
    const r = await usernet.stop('SIGTERM');
    expect(r.code).toBe(0);
    expect(usernet.stderr).toMatch(/SIGTERM: stopping/);
    // Persistent taps belong to whoever created them: still there after usernet left.
    expect(must('ip', ['-n', a.ns, 'link', 'show', a.tap])).toMatch(a.tap);
  });
});

describe('usernet --tap errors', () => {
  it('reports a tap busy in another process with a hint', async () => {
    const tap = sandbox.tap('busy');
    const first = sandbox.spawnUsernet(['--tap', tap, '--log-level', 'info']);
    await first.waitFor(/gateway 10\.0\.2\.2/);
    const second = sandbox.spawnUsernet(['--tap', tap]);
    const r = await second.exited;
    expect(r.code).toBe(1);
    expect(second.stderr).toMatch(/EBUSY/);
    expect(second.stderr).toMatch(/hint: .*already in use/);
  });

  it('asks for a tap when none is given', async () => {
    const p = sandbox.spawnUsernet([]);
    const r = await p.exited;
    expect(r.code).toBe(2);
    expect(p.stderr).toMatch(/no tap given/);
  });
});
