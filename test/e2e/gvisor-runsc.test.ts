/**
 * usernet inside a real gVisor sandbox (Debian's runsc, 20221219 here; see
 * docs/gvisor.md for what a newer runsc changes).
 *
 * The arrangement: `runsc run` on an OCI bundle whose root is the host's `/`
 * read-only (so node, the built usernet, curl and ping are there), a
 * read-write bind of a temporary directory at /w, and `--network=none`: the
 * sandbox still has its own netstack with a loopback, and /dev/net/tun
 * (--network=host would have neither the netstack nor the device, and this
 * runsc refuses --network=sandbox on kernels with a per-namespace
 * net.core.rmem_default). Inside, one shell script:
 * - starts `usernet --tap tap0`, which creates the tap in the sandbox's
 *   netstack (a gVisor tap lives only as long as a file holds it: no
 *   TUNSETPERSIST, so nobody can create it beforehand);
 * - gives tap0 10.0.2.100/24 with `ip addr add` (RTM_NEWADDR, which this runsc
 *   has; the tap is up from birth and its MTU and MAC cannot be changed), which
 *   also routes 10.0.2.0/24 to it;
 * - starts a node HTTP server on the sandbox's 127.0.0.1;
 * - fetches a blob with curl from the gateway, 10.0.2.2, which usernet's NAT
 *   maps to that loopback, once with a length and once ended by the server's
 *   close (this runsc's epoll reports no EPOLLRDHUP for that FIN), and pings
 *   the gateway.
 * The test compares the blob's sha256 and the ping count, and reads usernet's
 * log for the gVisor-specific paths (the stand-in MAC).
 *
 * gVisor's tap refuses (EMSGSIZE) any write longer than its MTU of 1500
 * counting the Ethernet header, so full-size segments for MTU 1500 would
 * never arrive: with --no-offload usernet is given --mtu 1486; with the
 * default options it finds that out itself (after the vnet header fallback).
 *
 * Everything is named i13g-<hex> (temporary directory, container id) and the
 * container is killed and deleted by its own id, with its own --root state
 * directory, in afterEach, whatever happened.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT, run, USERNET } from './harness.js';
import { findInPath } from '../../src/find-in-path.js';

const RUNSC = findInPath('runsc');
if (RUNSC === null) console.warn('gvisor-runsc.test.ts: skipped: runsc is not installed (apt-get install runsc)');

/** Where the blob server listens inside the sandbox: its own loopback, so no clash with anything outside. */
const SERVER_PORT = 8080;
const BLOB_BYTES = 4 << 20;
/** The whole in-sandbox script: node and usernet start in about a second each under gVisor. */
const CONTAINER_TIMEOUT_MS = 150_000;
/** What a gVisor tap takes: 1500 bytes including the 14-byte Ethernet header. */
const GVISOR_MTU = 1486;

const CAPS = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FOWNER',
  'CAP_KILL',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_NET_BIND_SERVICE',
  // TUNSETIFF and rtnetlink requests that change things.
  'CAP_NET_ADMIN',
  'CAP_NET_RAW',
  'CAP_AUDIT_WRITE',
];

interface Container {
  dir: string;
  state: string;
  id: string;
}
const containers: Container[] = [];

afterEach(() => {
  for (const c of containers.splice(0)) {
    if (RUNSC !== null) {
      run(...privateMounts(RUNSC, ['--root', c.state, 'kill', c.id, 'KILL']), 20_000);
      run(...privateMounts(RUNSC, ['--root', c.state, 'delete', '--force', c.id]), 30_000);
    }
    rmSync(c.dir, { recursive: true, force: true });
  }
});

/**
 * runsc as the command of a private mount namespace: the sandbox's root is the
 * host's /, and whatever runsc mounts or unmounts while it sets up or tears
 * down a sandbox must stay out of the host's mount table (the namespaces of
 * other tests live there, as bind mounts under /run/netns).
 */
function privateMounts(runsc: string, args: string[]): [string, string[]] {
  return ['unshare', ['--mount', '--propagation', 'private', '--', runsc, ...args]];
}

/** The script run inside the sandbox. Every wait in it is bounded; results are RESULT lines on stdout. */
function insideScript(usernetArgs: string[]): string {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  return `#!/bin/sh
cd /w
${q(process.execPath)} ${q(USERNET)} ${usernetArgs.map(q).join(' ')} > /w/usernet.log 2>&1 &
UPID=$!
i=0
until ip link show tap0 > /dev/null 2>&1; do
  if ! kill -0 $UPID 2> /dev/null; then wait $UPID; echo "RESULT usernet_died=$?"; exit 0; fi
  i=$((i + 1)); if [ $i -gt 300 ]; then echo "RESULT tap_missing=1"; kill $UPID; exit 0; fi
  sleep 0.1
done
echo "RESULT tap=$(ip -o link show tap0 | tr -s ' ' | tr '\\\\' ' ')"
ip addr add 10.0.2.100/24 dev tap0; echo "RESULT ip_addr_add=$?"
${q(process.execPath)} /w/server.cjs > /w/server.log 2>&1 &
SPID=$!
i=0
until grep -q listening /w/server.log 2> /dev/null; do
  i=$((i + 1)); if [ $i -gt 300 ]; then echo "RESULT server_missing=1"; break; fi
  sleep 0.1
done
curl -sS --max-time 90 -o /w/got http://10.0.2.2:${SERVER_PORT}/blob 2> /w/curl.err; echo "RESULT curl=$?"
curl -sS --http1.0 --max-time 90 -o /w/got-close http://10.0.2.2:${SERVER_PORT}/close 2> /w/curl-close.err; echo "RESULT curl_close=$?"
ping -c 3 -W 5 10.0.2.2 > /w/ping.out 2>&1; echo "RESULT ping=$?"
kill $SPID
kill -TERM $UPID; wait $UPID; echo "RESULT usernet_exit=$?"
`;
}

const SERVER = `
const http = require('node:http');
const fs = require('node:fs');
const blob = fs.readFileSync('/w/blob');
http.createServer((req, res) => {
  // /close: no length, the end is the server's FIN (an HTTP/1.0 answer), which
  // usernet must pass on even where epoll reports no EPOLLRDHUP (old gVisor).
  if (req.url === '/close') res.writeHead(200, { connection: 'close' });
  else res.writeHead(200, { 'content-length': blob.length });
  res.end(blob);
}).listen(${SERVER_PORT}, '127.0.0.1', () => console.log('listening'));
`;

interface Outcome {
  results: Record<string, string>;
  stdout: string;
  stderr: string;
  log: string;
  dir: string;
  blobSha: string;
}

/** Builds the bundle, runs the script in a fresh sandbox to its end (bounded), returns what it reported. */
async function runInGvisor(usernetArgs: string[]): Promise<Outcome> {
  const runsc = RUNSC as string;
  const dir = mkdtempSync(join(tmpdir(), `i13g-${randomBytes(3).toString('hex')}-`));
  const c: Container = { dir, state: join(dir, 'state'), id: `i13g-${randomBytes(4).toString('hex')}` };
  containers.push(c);
  const bundle = join(dir, 'bundle');
  const w = join(dir, 'w');
  for (const d of [c.state, bundle, w]) mkdirSync(d);

  const blob = randomBytes(BLOB_BYTES);
  writeFileSync(join(w, 'blob'), blob);
  writeFileSync(join(w, 'server.cjs'), SERVER);
  writeFileSync(join(w, 'inside.sh'), insideScript(usernetArgs));
  chmodSync(join(w, 'inside.sh'), 0o755);

  const spec = run(runsc, ['spec', '--bundle', bundle]);
  if (spec.status !== 0) throw new Error(`runsc spec failed: ${spec.stderr}`);
  const config = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'));
  config.root = { path: '/', readonly: true };
  config.process.terminal = false;
  config.process.args = ['/bin/sh', '/w/inside.sh'];
  config.process.cwd = '/w';
  config.process.env = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'HOME=/w'];
  config.process.capabilities = Object.fromEntries(['bounding', 'effective', 'permitted', 'inheritable', 'ambient'].map((k) => [k, CAPS]));
  config.hostname = c.id;
  config.mounts.push(
    { destination: '/tmp', type: 'tmpfs', source: 'tmpfs' },
    { destination: '/w', type: 'bind', source: w, options: ['rbind', 'rw'] },
    // The checkout may live under /tmp (CI clones anywhere), which the tmpfs above hides.
    { destination: ROOT, type: 'bind', source: ROOT, options: ['rbind', 'ro'] },
  );
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(config, null, 1));

  const child = spawn(...privateMounts(runsc, ['--root', c.state, '--ignore-cgroups', '--network=none', 'run', '--bundle', bundle, c.id]), {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const timer = setTimeout(() => {
    stderr += `\n[test] the container ran past ${CONTAINER_TIMEOUT_MS} ms: killed\n`;
    run(...privateMounts(runsc, ['--root', c.state, 'kill', c.id, 'KILL']), 20_000);
  }, CONTAINER_TIMEOUT_MS);
  await new Promise<void>((resolve) => child.on('close', () => resolve()));
  clearTimeout(timer);

  const results: Record<string, string> = {};
  for (const m of stdout.matchAll(/^RESULT (\w+)=(.*)$/gm)) results[m[1]] = m[2];
  const logFile = join(w, 'usernet.log');
  const log = existsSync(logFile) ? readFileSync(logFile, 'utf8') : '';
  return { results, stdout, stderr, log, dir: w, blobSha: createHash('sha256').update(blob).digest('hex') };
}

function describeOutcome(o: Outcome): string {
  const file = (name: string) => (existsSync(join(o.dir, name)) ? readFileSync(join(o.dir, name), 'utf8') : '');
  return [
    `results: ${JSON.stringify(o.results)}`,
    `runsc stderr: ${o.stderr.trim()}`,
    `usernet log:\n${o.log.trim()}`,
    `curl: ${file('curl.err').trim()}`,
    `curl (close): ${file('curl-close.err').trim()}`,
    `ping: ${file('ping.out').trim()}`,
    `server: ${file('server.log').trim()}`,
  ].join('\n');
}

function expectTransfer(o: Outcome): void {
  const why = describeOutcome(o);
  expect(o.results.usernet_died, why).toBeUndefined();
  expect(o.results.tap, why).toMatch(/tap0/);
  expect(o.results.ip_addr_add, why).toBe('0');
  expect(o.results.curl, why).toBe('0');
  const got = readFileSync(join(o.dir, 'got'));
  expect(createHash('sha256').update(got).digest('hex'), why).toBe(o.blobSha);
  // The same blob ended by the server's close: the FIN must reach the client.
  expect(o.results.curl_close, why).toBe('0');
  const gotClose = readFileSync(join(o.dir, 'got-close'));
  expect(createHash('sha256').update(gotClose).digest('hex'), why).toBe(o.blobSha);
  // ICMP echo to the gateway: gVisor's ping (an ICMP datagram socket) through the tap.
  expect(o.results.ping, why).toBe('0');
  expect(readFileSync(join(o.dir, 'ping.out'), 'utf8'), why).toMatch(/3 packets transmitted, 3 received/);
  // gVisor's tap has MAC 00:00:00:00:00:00: usernet gave that guest a stand-in.
  expect(o.log, why).toMatch(/sends from MAC 00:00:00:00:00:00 .* it is [0-9a-f:]{17} here/);
  expect(o.log, why).not.toMatch(/EMSGSIZE/);
  expect(o.results.usernet_exit, why).toBe('0');
}

describe.skipIf(RUNSC === null)('usernet inside gVisor (runsc run, --network=none)', () => {
  it('plain tap (--no-offload): a client in the sandbox fetches from the sandbox loopback through the gateway, and pings it', async () => {
    const o = await runInGvisor(['--tap', 'tap0', '--no-offload', '--mtu', String(GVISOR_MTU), '--disable-dns', '--no-warm-up']);
    expectTransfer(o);
    expect(o.log).toMatch(/tap tap0: created, vnet header off$/m);
  }, 200_000);

  // No --no-offload, no --mtu: the tap is reopened without IFF_VNET_HDR when TUNSETIFF with it
  // gives EINVAL, and the probe finds that this tap counts the Ethernet header in its MTU.
  it('default options: usernet falls back to a plain tap by itself', async () => {
    const o = await runInGvisor(['--tap', 'tap0', '--disable-dns']);
    expectTransfer(o);
    expect(o.log).toMatch(/tap tap0: created, vnet header off \(EINVAL\)/);
    expect(o.log).toMatch(new RegExp(`tap tap0 counts the Ethernet header in its MTU \\(gVisor\\): usernet uses MTU ${GVISOR_MTU}`));
  }, 200_000);
});
