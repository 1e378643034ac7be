#!/usr/bin/env node
// usernet as a library: a network, a namespace attached to it, an HTTP
// request from the namespace to a server on the host's loopback, the events
// and counters, then everything closed again. Needs root (ip netns add) and
// a built usernet (npm run build); run it with `node examples/basic.mjs`.
//
// USERNET_EXAMPLE_NETNS names the namespace it creates (default
// usernet-example-<random>); it is deleted at the end, also on failure.
import console from 'node:console';
import process from 'node:process';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Network } from 'usernet';

const sh = promisify(execFile);
const netnsName = process.env.USERNET_EXAMPLE_NETNS ?? `usernet-example-${randomBytes(4).toString('hex')}`;

// A server on the host's loopback: the guest reaches it at the gateway address (10.0.2.2).
const server = createServer((req, res) => res.end(`hello from the host, you asked for ${req.url}\n`));
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const port = server.address().port;

const network = await Network.create({ cidr: '10.0.2.0/24', logLevel: 'warn' });
network.on('portUp', (p) => console.log(`event portUp: ${p.kind} ${p.name}`));
network.on('portDown', (p) => console.log(`event portDown: ${p.kind} ${p.name}`));
const closedFlows = [];
network.on('flowOpened', (f) => console.log(`event flowOpened: ${f.proto} ${f.guest.address}:${f.guest.port} -> ${f.remote.address}:${f.remote.port}`));
network.on('flowClosed', (f) => {
  closedFlows.push(f);
  console.log(`event flowClosed: ${f.proto} #${f.id} ${f.reason}, ${f.bytesFromGuest} bytes out, ${f.bytesToGuest} bytes back`);
});

let created = false;
try {
  await sh('ip', ['netns', 'add', netnsName]);
  created = true;
  const guest = network.attachNamespace({ netns: `/run/netns/${netnsName}`, id: 'example' });
  console.log(`attached ${guest.ifname} in ${netnsName}: ${guest.ipv4}/${guest.prefixLength} via ${guest.gateway}, mac ${guest.mac}`);

  // The commands run asynchronously: usernet lives in this process's event loop.
  const ping = await sh('ip', ['netns', 'exec', netnsName, 'ping', '-c', '1', '-W', '5', guest.gateway]);
  console.log(`ping: ${ping.stdout.split('\n').find((l) => l.includes('bytes from')) ?? ping.stdout}`);
  const curl = await sh('ip', ['netns', 'exec', netnsName, 'curl', '-sS', '--max-time', '10', `http://${guest.gateway}:${port}/example`]);
  console.log(`curl: ${curl.stdout.trim()}`);

  // The connection's end reaches usernet a moment after curl exits.
  for (let i = 0; i < 100 && !closedFlows.some((f) => f.proto === 'tcp'); i++) await sleep(20);

  const s = network.stats();
  console.log(`stats: ${s.guests.length} guest(s), bridge forwarded ${s.bridge.forwarded}, tcp flows created ${s.nat.tcp.created}`);
  console.log(`forwards: ${network.forwards().length}`);
} finally {
  await network.close();
  if (created) await sh('ip', ['netns', 'del', netnsName]).catch((err) => console.error(`ip netns del ${netnsName}: ${err.message}`));
  server.close();
}
console.log('closed');
