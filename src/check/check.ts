/**
 * `usernet check`: proves usernet works on this machine with nothing but
 * Node and usernet itself.
 *
 * 1. The kernel (capabilities.ts): tun, namespaces, the virtio-net header
 *    and each offload, ping sockets, IPv6, each by trying it.
 * 2. The real path: echo servers (TCP, UDP; 127.0.0.1 and ::1) and a DNS
 *    server on 127.0.0.1 start in this process; then exactly what
 *    `usernet run --dns 127.0.0.1:PORT -- node probe-main.js` does (run.ts:
 *    a new namespace, a tap, the bridge, the gateway, the NAT) runs the probe
 *    inside, which reaches those servers through the gateway (N+2 is the
 *    host's loopback, N+3 the DNS forwarder; P::2 and P::3 with IPv6) and
 *    pings the gateway.
 * 3. One table of rows, each PASS/FAIL/WARN/SKIP with a fix for failures;
 *    exit status 0 only when no row failed.
 *
 * Nothing leaves the machine: every server is on loopback, and the only
 * resolver asked is the check's own.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { defaults } from '../../stack/config.js';
import { formatIpv6, parsePrefix, prefixHost } from '../../stack/wire/ipv6-address.js';
import { DNS_HOST_NUMBER, GATEWAY_HOST_NUMBER, GUEST_HOST_NUMBER } from '../../stack/nat/address-map.js';
import { createLogger } from '../log.js';
import { parseCommandLine, type CheckCommand, type RunCommand } from '../options.js';
import { formatIpv4, parseCidr } from '../../stack/wire/ipv4-address.js';
import { probeKernel } from './capabilities.js';
import { startDnsResponder, type DnsAnswers } from './dns-responder.js';
import { startEchoServers } from './echo-servers.js';
import type { ProbeConfig, ProbeResult } from './probe.js';
import { checkExitStatus, formatCheckTable, type CheckRow } from './report.js';
import { versionLines } from '../cli/version.js';

const GROUP = 'through usernet (a new namespace, its tap, the gateway, the NAT)';
/** RFC 6761 keeps .test for testing; the addresses are documentation ones (RFC 5737, RFC 3849). */
const ANSWERS: DnsAnswers = {
  name: 'probe.usernet.test',
  a: Uint8Array.from([198, 51, 100, 7]),
  aaaa: Uint8Array.from([0x20, 0x01, 0x0d, 0xb8, ...new Array<number>(11).fill(0), 7]),
};

interface RowSpec {
  name: string;
  fix: string;
}

/** Names and fixes of the probe's results, by id (probe.ts). */
function rowSpecs(gw4: string, dns4: string, gw6: string, dns6: string): Record<string, RowSpec> {
  const ipv6Fix = 'IPv6 did not get through: check "IPv6 on the host" above; if the guest needs no IPv6, run usernet with --disable-ipv6';
  return {
    tcp4: { name: `TCP ${gw4} -> 127.0.0.1`, fix: 'the TCP NAT did not reach the host loopback: is 127.0.0.1 firewalled? rerun with --log-level debug and report the output' },
    udp4: { name: `UDP ${gw4} -> 127.0.0.1`, fix: 'the UDP NAT did not reach the host loopback: is 127.0.0.1 firewalled? rerun with --log-level debug and report the output' },
    dns4: { name: `DNS via ${dns4}`, fix: "the DNS forwarder got no answer from the check's resolver on 127.0.0.1: rerun with --log-level debug" },
    icmp4: { name: `ICMP echo to ${gw4}`, fix: 'the gateway did not answer the guest (or the guest namespace refused a ping socket): rerun with --log-level debug' },
    slaac6: {
      name: 'IPv6 address by SLAAC',
      fix: "the guest's kernel took no address from usernet's router advertisements (IPv6 disabled for new namespaces? net.ipv6.conf.default.disable_ipv6); or run usernet with --disable-ipv6",
    },
    tcp6: { name: `TCP ${gw6} -> ::1`, fix: ipv6Fix },
    udp6: { name: `UDP ${gw6} -> ::1`, fix: ipv6Fix },
    dns6: { name: `DNS via ${dns6}`, fix: "the DNS forwarder did not answer over IPv6: rerun with --log-level debug" },
    icmp6: { name: `ICMPv6 echo to ${gw6}`, fix: 'the gateway did not answer over IPv6: see the SLAAC row; rerun with --log-level debug' },
  };
}

export interface CheckOutcome {
  rows: CheckRow[];
  /** What usernet logged while the guest ran (at the requested level). */
  log: string[];
}

export async function runCheck(cmd: CheckCommand): Promise<CheckOutcome> {
  const kernel = await probeKernel({ ipv6: cmd.ipv6 });
  const rows = [...kernel.rows];
  const logLines: string[] = [];
  const log = createLogger(cmd.logLevel, (line) => logLines.push(line.trimEnd()));

  const cidr = parseCidr(defaults.cidr);
  const n = cidr.network;
  const gw4 = formatIpv4((n + GATEWAY_HOST_NUMBER) >>> 0);
  const dns4 = formatIpv4((n + DNS_HOST_NUMBER) >>> 0);
  const prefix = parsePrefix(defaults.ipv6Prefix).address;
  const gw6 = formatIpv6(prefixHost(prefix, GATEWAY_HOST_NUMBER));
  const dns6 = formatIpv6(prefixHost(prefix, DNS_HOST_NUMBER));
  const specs = rowSpecs(gw4, dns4, gw6, dns6);
  const ids = ['tcp4', 'udp4', 'dns4', 'icmp4', ...(cmd.ipv6 ? ['slaac6', 'tcp6', 'udp6', 'dns6', 'icmp6'] : [])];
  const skipAll = (why: string) => {
    for (const id of ids) rows.push({ group: GROUP, name: specs[id].name, status: 'SKIP', detail: why });
  };

  const tapRow = kernel.rows.find((r) => r.name === 'tap device');
  if (tapRow?.status !== 'PASS') {
    skipAll('not run: no tap in a new namespace (see above)');
    return { rows, log: logLines };
  }

  const echo = await startEchoServers();
  const dns = await startDnsResponder(ANSWERS).catch((err: Error) => err);
  const dir = mkdtempSync(join(tmpdir(), 'usernet-check-'));
  try {
    if ('error' in echo.v4 || dns instanceof Error) {
      const why = 'error' in echo.v4 ? echo.v4.error : (dns as Error).message;
      rows.push({ group: GROUP, name: 'servers on 127.0.0.1', status: 'FAIL', detail: why, fix: 'the host has no usable loopback: ip link set lo up' });
      skipAll('not run: no servers on 127.0.0.1');
      return { rows, log: logLines };
    }
    const offload = cmd.offload && kernel.vnetHdr;
    const probe: ProbeConfig = {
      gateway4: gw4,
      dns4,
      gateway6: cmd.ipv6 ? gw6 : null,
      dns6: cmd.ipv6 ? dns6 : null,
      prefix6: cmd.ipv6 ? formatIpv6(prefix) : null,
      tcp4: echo.v4.tcp,
      udp4: echo.v4.udp,
      tcp6: 'error' in echo.v6 ? 0 : echo.v6.tcp,
      udp6: 'error' in echo.v6 ? 0 : echo.v6.udp,
      name: ANSWERS.name,
      a: formatIpv4(Buffer.from(ANSWERS.a).readUInt32BE(0)),
      aaaa: formatIpv6(ANSWERS.aaaa),
    };
    const results = join(dir, 'results.json');
    const probeMain = fileURLToPath(new URL('./probe-main.js', import.meta.url));
    const run = parseCommandLine([
      'run',
      '--dns', `127.0.0.1:${dns.port}`,
      '--no-warm-up',
      '--log-level', cmd.logLevel,
      ...(offload ? [] : ['--no-offload']),
      ...(cmd.ipv6 ? [] : ['--disable-ipv6']),
      '--',
      process.execPath, probeMain, results, JSON.stringify(probe),
    ]) as RunCommand;
    const { runInNamespace } = await import('../run.js');
    let status: number;
    try {
      status = await runInNamespace(run, log);
    } catch (err) {
      const hint = (err as { hint?: unknown }).hint;
      rows.push({
        group: GROUP,
        name: 'guest namespace',
        status: 'FAIL',
        detail: (err as Error).message,
        fix: typeof hint === 'string' ? hint : 'see the kernel rows above; rerun with --log-level debug',
      });
      skipAll('not run: no guest namespace');
      return { rows, log: logLines };
    }
    rows.push({
      group: GROUP,
      name: 'guest namespace',
      status: 'PASS',
      detail: `tap0 ${formatIpv4((n + GUEST_HOST_NUMBER) >>> 0)}/${cidr.prefix} via ${gw4}, ${offload ? 'virtio-net header and offloads' : 'no virtio-net header (--no-offload)'}`,
    });
    let got: ProbeResult[];
    try {
      got = JSON.parse(readFileSync(results, 'utf8')) as ProbeResult[];
    } catch {
      rows.push({
        group: GROUP,
        name: 'probe',
        status: 'FAIL',
        detail: `the probe (${process.execPath} in the namespace) ended with status ${status} and no results`,
        fix: 'rerun with --log-level debug; status 127 means the namespace could not start it',
      });
      skipAll('no result from the probe');
      return { rows, log: logLines };
    }
    for (const id of ids) {
      const r = got.find((g) => g.id === id);
      const spec = specs[id];
      if (r === undefined) rows.push({ group: GROUP, name: spec.name, status: 'FAIL', detail: 'the probe did not report it', fix: spec.fix });
      else {
        const noServer6 = !r.ok && (id === 'tcp6' || id === 'udp6') && 'error' in echo.v6;
        const detail = noServer6 ? `no echo server on ::1: ${(echo.v6 as { error: string }).error}` : r.detail;
        rows.push({ group: GROUP, name: spec.name, status: r.ok ? 'PASS' : 'FAIL', detail, ...(r.ok ? {} : { fix: spec.fix }) });
      }
    }
    return { rows, log: logLines };
  } finally {
    echo.close();
    if (!(dns instanceof Error)) dns.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The whole command: header, table, usernet's own log lines; returns the exit status. */
export async function checkCommand(cmd: CheckCommand, write: (s: string) => void): Promise<number> {
  write(`${versionLines().join('\n')}\n\n`);
  const { rows, log } = await runCheck(cmd);
  write(formatCheckTable(rows));
  if (log.length > 0) write(`\nusernet logged while the guest ran:\n${log.map((l) => `  ${l}`).join('\n')}\n`);
  return checkExitStatus(rows);
}
