import { describe, expect, it } from 'vitest';
import { getopt, parseSlirpArgs, SlirpUsageError, unsupportedOption, type SlirpOptions } from '../../../src/slirp4netns/options.js';
import { slirpUsage } from '../../../src/slirp4netns/help.js';

function run(argv: string[]): SlirpOptions {
  const c = parseSlirpArgs(argv);
  if (c.kind !== 'run') throw new Error(`expected run, got ${c.kind}`);
  return c.options;
}

function usage(argv: string[]): string {
  try {
    parseSlirpArgs(argv);
  } catch (err) {
    expect(err).toBeInstanceOf(SlirpUsageError);
    return (err as Error).message;
  }
  throw new Error('no error');
}

describe('slirp4netns command line', () => {
  it('has slirp4netns defaults', () => {
    const o = run(['1234', 'tap0']);
    expect(o).toMatchObject({
      pid: 1234,
      tapName: 'tap0',
      netnsType: 'pid',
      configure: false,
      exitFd: -1,
      readyFd: -1,
      mtu: 1500,
      cidr: '10.0.2.0/24',
      network: 0x0a000200,
      prefix: 24,
      apiSocket: null,
      disableHostLoopback: false,
      disableDns: false,
      macAddress: -1,
      usernsPath: null,
      outboundAddr: null,
    });
  });

  it('takes long options as --x=V and --x V, short ones as -r3 and -r 3', () => {
    const a = run(['--mtu=65520', '--ready-fd', '3', '--exit-fd=4', '--api-socket', '/tmp/a.sock', '1', 'tap0']);
    const b = run(['-m', '65520', '-r3', '-e', '4', '-a/tmp/a.sock', '1', 'tap0']);
    for (const o of [a, b]) {
      expect(o.mtu).toBe(65520);
      expect(o.readyFd).toBe(3);
      expect(o.exitFd).toBe(4);
      expect(o.apiSocket).toBe('/tmp/a.sock');
    }
  });

  it('groups short flags, permutes options after positionals, honours --', () => {
    const o = run(['-c', '1', '--disable-dns', 'tap0', '-r', '5', '--disable-host-loopback']);
    expect(o).toMatchObject({ configure: true, disableDns: true, readyFd: 5, disableHostLoopback: true, pid: 1, tapName: 'tap0' });
    const g = run(['-cr7', '2', 'tap1']);
    expect(g).toMatchObject({ configure: true, readyFd: 7 });
    const p = run(['--netns-type=path', '--', '/run/netns/-odd', 'tap0']);
    expect(p).toMatchObject({ netnsType: 'path', target: '/run/netns/-odd', pid: -1 });
  });

  it('accepts unambiguous prefixes of long options, like getopt_long', () => {
    expect(run(['--conf', '--netns=path', '/run/netns/x', 'tap0'])).toMatchObject({ configure: true, netnsType: 'path' });
    expect(usage(['--disable', '1', 'tap0'])).toMatch(/ambiguous/);
  });

  it('parses the rest of the 1.2.0 options as rootlesskit and podman pass them', () => {
    const rk = run(['--mtu', '65520', '-r', '3', '--disable-host-loopback', '--cidr', '10.0.3.0/24', '--api-socket', '/d/.s4nn.sock', '99', 'tap0']);
    expect(rk).toMatchObject({ network: 0x0a000300, prefix: 24, apiSocket: '/d/.s4nn.sock', pid: 99 });
    const pm = run([
      '--disable-host-loopback', '--mtu=65520', '--cidr=10.0.2.0/24', '--outbound-addr=192.0.2.1', '-c', '-e', '3', '-r', '4',
      '--macaddress=02:00:00:00:00:05', '--userns-path=/proc/5/ns/user', '--netns-type=path', '/run/netns/n1', 'tap0',
    ]);
    expect(pm).toMatchObject({ configure: true, exitFd: 3, readyFd: 4, outboundAddr: '192.0.2.1', macAddress: 0x02_00_00_00_00_05, usernsPath: '/proc/5/ns/user' });
    expect(run(['--outbound-addr', 'eth0', '1', 'tap0']).outboundAddr).toBe('eth0');
    expect(run(['--target-type=netns', '1', 'tap0']).tapName).toBe('tap0');
  });

  it('help and version win over everything else', () => {
    expect(parseSlirpArgs(['--help']).kind).toBe('help');
    expect(parseSlirpArgs(['-h', 'junk']).kind).toBe('help');
    expect(parseSlirpArgs(['-v']).kind).toBe('version');
    expect(parseSlirpArgs(['--version']).kind).toBe('version');
  });

  it('rejects bad input with a message', () => {
    expect(usage([])).toMatch(/PID\|PATH and TAPNAME are required/);
    expect(usage(['1'])).toMatch(/required/);
    expect(usage(['1', 'tap0', 'extra'])).toMatch(/too many arguments/);
    expect(usage(['--bogus', '1', 'tap0'])).toMatch(/unrecognized option '--bogus'/);
    expect(usage(['-x', '1', 'tap0'])).toMatch(/invalid option -- 'x'/);
    expect(usage(['1', 'tap0', '-r'])).toMatch(/requires an argument -- 'r'/);
    expect(usage(['1', 'tap0', '--mtu'])).toMatch(/'--mtu' requires an argument/);
    expect(usage(['--configure=1', '1', 'tap0'])).toMatch(/doesn't allow an argument/);
    expect(usage(['abc', 'tap0'])).toMatch(/PID must be a positive number/);
    expect(usage(['0', 'tap0'])).toMatch(/PID must be a positive number/);
    expect(usage(['--mtu=65522', '1', 'tap0'])).toMatch(/MTU must be a number from 68 to 65521/);
    expect(usage(['--mtu=0', '1', 'tap0'])).toMatch(/MTU/);
    expect(usage(['--cidr=10.0.2.0/26', '1', 'tap0'])).toMatch(/prefix length must be 1..25/);
    expect(usage(['--cidr=banana', '1', 'tap0'])).toMatch(/cidr "banana"/);
    expect(usage(['--netns-type=foo', '1', 'tap0'])).toMatch(/netns-type must be "pid" or "path"/);
    expect(usage(['--target-type=bess', '1', 'tap0'])).toMatch(/target-type "bess" is not supported/);
    expect(usage(['-r', 'x', '1', 'tap0'])).toMatch(/ready-fd must be a non-negative number/);
    expect(usage(['-e', '-1', '1', 'tap0'])).toMatch(/exit-fd must be a non-negative number/);
    expect(usage(['--macaddress=02:00:00:00:00:01', '1', 'tap0'])).toMatch(/only be used with --configure/);
    expect(usage(['-c', '--macaddress=zz', '1', 'tap0'])).toMatch(/not a MAC address/);
    expect(usage(['-c', '--macaddress=01:00:00:00:00:01', '1', 'tap0'])).toMatch(/multicast/);
    expect(usage(['-a', 'x'.repeat(108), '1', 'tap0'])).toMatch(/api-socket path must be 1..107 bytes/);
    expect(usage(['1', 'a/b'])).toMatch(/not a valid interface name/);
    expect(usage(['1', 'sixteen-bytes-xx'])).toMatch(/not a valid interface name/);
    expect(usage(['--outbound-addr=no such interface', '1', 'tap0'])).toMatch(/neither an IPv4 address nor an interface name/);
  });

  it('names what usernet refuses (IPv6) and why; sandbox and seccomp are accepted', () => {
    expect(unsupportedOption(run(['1', 'tap0']))).toBeNull();
    expect(unsupportedOption(run(['-6', '1', 'tap0']))).toBeNull();
    expect(unsupportedOption(run(['--enable-ipv6', '--mtu=1000', '1', 'tap0']))).toMatch(/IPv6 needs an MTU of at least 1280/);
    expect(unsupportedOption(run(['--outbound-addr6=::1', '1', 'tap0']))).toBeNull();
    expect(unsupportedOption(run(['--enable-sandbox', '1', 'tap0']))).toBeNull();
    expect(unsupportedOption(run(['--enable-seccomp', '1', 'tap0']))).toBeNull();
    const both = run(['--enable-sandbox', '--enable-seccomp', '1', 'tap0']);
    expect(both.enableSandbox).toBe(true);
    expect(both.enableSeccomp).toBe(true);
  });

  it('--help advertises every option by name (all of them work)', () => {
    const text = slirpUsage('slirp4netns');
    for (const name of [
      '--configure', '--exit-fd', '--ready-fd', '--mtu', '--api-socket', '--cidr', '--disable-host-loopback',
      '--netns-type', '--userns-path', '--outbound-addr', '--disable-dns', '--macaddress', '--help', '--version',
      '--enable-sandbox', '--enable-seccomp', '--enable-ipv6', '--outbound-addr6', '-6,',
    ]) {
      expect(text).toContain(name);
    }
  });

  it('getopt keeps the last value of a repeated option', () => {
    expect(getopt(['--mtu=1', '-m', '2', 'a']).values.get('mtu')).toBe('2');
  });
});
