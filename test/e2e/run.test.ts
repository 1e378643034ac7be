/**
 * `usernet run`: a real namespace, the real Linux stack, real ping and tcpdump.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { must, Sandbox, sleep, usernet } from './harness.js';

const sandbox = new Sandbox();
afterEach(() => sandbox.cleanup());

describe('usernet run', () => {
  it('pings the gateway from a new namespace (vnet offloads on)', () => {
    const r = usernet(['run', '--', 'ping', '-c', '3', '-i', '0.2', '-W', '2', '10.0.2.2']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toMatch(/3 packets transmitted, 3 received/);
    expect(r.status).toBe(0);
  });

  it('pings the DNS address without offloads and with a large MTU', () => {
    const r = usernet(['run', '--no-offload', '--mtu', '65520', '--', 'ping', '-c', '2', '-i', '0.2', '-s', '30000', '10.0.2.3']);
    expect(r.stdout).toMatch(/2 packets transmitted, 2 received/);
    expect(r.status).toBe(0);
  });

  it('configures the namespace: address, route, MTU, lo up, custom CIDR and MAC', () => {
    const r = usernet([
      'run', '--cidr', '192.168.77.0/24', '--mtu', '9000', '--tap-name', 'eth0', '--mac', '02:aa:bb:cc:dd:ee', '--',
      'sh', '-c', 'ip -o addr show dev eth0; ip route; ip -o link show eth0; ip -o link show lo; ping -c 1 -W 2 192.168.77.2',
    ]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/inet 192\.168\.77\.100\/24/);
    expect(r.stdout).toMatch(/default via 192\.168\.77\.2 dev eth0/);
    expect(r.stdout).toMatch(/eth0: <[^>]*UP[^>]*> mtu 9000/);
    expect(r.stdout).toMatch(/link\/ether 02:aa:bb:cc:dd:ee/);
    expect(r.stdout).toMatch(/lo: <LOOPBACK,UP/);
    expect(r.stdout).toMatch(/1 received/);
  });

  it("exits with the command's status and reports signals as 128+N", () => {
    expect(usernet(['run', '--', 'sh', '-c', 'exit 7']).status).toBe(7);
    expect(usernet(['run', '--', 'sh', '-c', 'kill -TERM $$']).status).toBe(128 + 15);
    const missing = usernet(['run', '--', 'no-such-command-usernet']);
    expect(missing.status).toBe(127);
  });

  it('kills the command when usernet itself dies (SIGKILL: no handler runs)', async () => {
    const u = sandbox.spawnUsernet(['run', '--', 'sleep', '300']);
    /** usernet's child that has become `sleep 300` (the exec chain nsenter, setpriv, sleep is one process; the IPv6 wait helper is another sleep). */
    const sleeper = (): number | null => {
      for (const tid of existsSync(`/proc/${u.pid}/task`) ? readdirSync(`/proc/${u.pid}/task`) : []) {
        for (const c of readFileSync(`/proc/${u.pid}/task/${tid}/children`, 'utf8').split(' ').filter(Boolean)) {
          if (readFileSync(`/proc/${c}/cmdline`, 'utf8') === 'sleep\0' + '300\0') return Number(c);
        }
      }
      return null;
    };
    let pid: number | null = null;
    for (let i = 0; i < 300 && pid === null && u.running; i++) {
      await sleep(50);
      try {
        pid = sleeper();
      } catch {
        // a child that exec'd or ended between the listing and the read
      }
    }
    expect(pid, u.stderr).not.toBeNull();
    process.kill(u.pid, 'SIGKILL');
    await u.exited;
    /** Gone, or a zombie waiting for init to reap it. */
    const alive = () => existsSync(`/proc/${pid}/stat`) && !/^\d+ \([^)]*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    for (let i = 0; i < 100 && alive(); i++) await sleep(50);
    expect(alive()).toBe(false);
  });

  it('leaves no tap behind (its namespace has no name and ends with its last process)', () => {
    // A name of its own: other test files create and remove taps meanwhile, so the host's whole list may change.
    const name = `urun${process.pid % 100_000}`;
    const r = usernet(['run', '--tap-name', name, '--', 'sh', '-c', `ip -o link show ${name}`]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain(name);
    expect(must('ip', ['-o', 'link', 'show', 'type', 'tun'])).not.toMatch(new RegExp(`: ${name}[:@]`));
  });

  it.each([
    ['pcap', 0xa1b2c3d4],
    ['pcapng', 0x0a0d0d0a],
  ])('writes a capture that tcpdump reads (--pcap-format %s)', (format, magic) => {
    const dir = sandbox.tmpdir();
    const file = join(dir, `cap.${format}`);
    const r = usernet(['run', '--pcap', file, '--pcap-format', format, '--', 'ping', '-c', '2', '-i', '0.2', '10.0.2.2']);
    expect(r.status).toBe(0);
    const text = must('tcpdump', ['-n', '-e', '-r', file]);
    expect(text).toMatch(/ARP \(0x0806\).*Request who-has 10\.0\.2\.2 tell 10\.0\.2\.100/);
    expect(text).toMatch(/ARP \(0x0806\).*Reply 10\.0\.2\.2 is-at 52:55:0a:00:02:02/);
    expect(text).toMatch(/10\.0\.2\.100 > 10\.0\.2\.2: ICMP echo request/);
    expect(text).toMatch(/10\.0\.2\.2 > 10\.0\.2\.100: ICMP echo reply/);
    expect(readFileSync(file).readUInt32LE(0)).toBe(magic);
    // The warm-up's transactions go through a private runtime: none of them on the real bridge.
    expect(text).not.toMatch(/Flags \[/);
  });

  it('warms up while the namespace configures IPv6; --no-warm-up skips it', () => {
    const r = usernet(['run', '--log-level', 'debug', '--', 'true']);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/warm-up: [1-9]\d* connections, \d+ replies in \d+ ms/);
    expect(r.stderr).not.toMatch(/warm-up failed/);
    const off = usernet(['run', '--log-level', 'debug', '--no-warm-up', '--', 'true']);
    expect(off.status).toBe(0);
    expect(off.stderr).not.toMatch(/warm-up/);
  });

  it('rejects bad input with a clear message and exit status 2', () => {
    const cidr = usernet(['run', '--cidr', '10.0.2.0/33', '--', 'true']);
    expect(cidr.status).toBe(2);
    expect(cidr.stderr).toMatch(/--cidr 10\.0\.2\.0\/33/);
    const mtu = usernet(['run', '--mtu', '20', '--', 'true']);
    expect(mtu.status).toBe(2);
    expect(mtu.stderr).toMatch(/--mtu 20: out of range/);
    const nocmd = usernet(['run']);
    expect(nocmd.status).toBe(2);
    expect(nocmd.stderr).toMatch(/needs a command/);
    const unknown = usernet(['--bogus']);
    expect(unknown.status).toBe(2);
  });

  it('prints help and version', () => {
    const h = usernet(['--help']);
    expect(h.status).toBe(0);
    expect(h.stdout).toMatch(/usernet run/);
    const v = usernet(['--version']);
    expect(v.stdout).toMatch(/^usernet \d+\.\d+\.\d+/);
  });
});
