/**
 * Docker's remote network driver and IPAM driver, served by the daemon
 * (`usernet docker-plugin`) on a unix socket that dockerd discovers by name:
 * /run/docker/plugins/usernet.sock makes the driver "usernet".
 *
 *   docker network create -d usernet --ipam-driver usernet NET
 *   docker run --network NET --dns N+3 [-p HOST:CTR] ...
 *
 * How it works (libnetwork's remote driver protocol: HTTP POST with JSON
 * bodies, one path per call, errors as {"Err": "..."} for the network driver
 * and {"Error": "..."} for IPAM, 404 for calls we do not know)
 * - IPAM: one pool, the daemon's network, gateway N+2. RequestAddress
 *   reserves a lease in the daemon's pool (N+100 and up), so Docker's
 *   containers, CNI guests and `usernet attach` share one set of addresses.
 *   Docker's own IPAM works too when the network is created with the
 *   daemon's subnet and gateway and its addresses fall in the pool.
 * - CreateEndpoint: the daemon creates a tap in its own namespace (Guests
 *   attach with `tap`), named usn + 12 hex digits of the endpoint id, with
 *   the MAC Docker asked for, else 52:54 + the address (returned to Docker).
 *   Join hands that name over; Docker moves the interface into the container,
 *   renames it ethN, sets the address, the default route via N+2 and brings
 *   it up. The tap fd stays with the daemon and keeps working across the move.
 * - DeleteEndpoint closes the tap (the interface vanishes wherever it is).
 * - ProgramExternalConnectivity: the container's port bindings
 *   (com.docker.network.portmap) become daemon forwards owned by the guest;
 *   RevokeExternalConnectivity and DeleteEndpoint remove them. A binding
 *   without a host port (-P, -p CTR) is skipped with a warning: the host
 *   port would be ours to choose, and Docker would not learn it.
 * - Names: Docker gives the driver neither the container's name nor its
 *   aliases; containers find each other by name through Docker's embedded
 *   DNS (127.0.0.11 on user-defined networks), which forwards the rest to
 *   `--dns` (N+3).
 * - State lives in this process only: when it restarts, its guests are gone;
 *   restart the containers.
 */
import { listenUnix } from './unix-listen.js';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { formatIpv4, parseIpv4 } from '../../stack/wire/ipv4-address.js';
import { UsernetError } from '../errors.js';
import type { Logger } from '../log.js';
import type { RuntimeOptions } from '../options.js';
import type { Runtime } from '../runtime.js';
import type { Guests } from './guests.js';

export const DEFAULT_PLUGIN_SOCKET = '/run/docker/plugins/usernet.sock';
const CONTENT_TYPE = 'application/vnd.docker.plugins.v1.2+json';
const MAX_BODY_BYTES = 1 << 20;
const GATEWAY_HOST = 2;
const FIRST_GUEST_HOST = 100;
/** libnetwork's labels (netlabel). */
const LABEL_GATEWAY = 'com.docker.network.gateway';
const LABEL_PORTMAP = 'com.docker.network.portmap';
const LABEL_ADDRESS_TYPE = 'RequestAddressType';
/** types.Protocol numbers in a port binding. */
const PROTO_TCP = 6;
const PROTO_UDP = 17;

export interface DockerPlugin {
  readonly path: string;
  close(): Promise<void>;
}

interface Endpoint {
  networkId: string;
  tap: string;
  ipv4: string;
  forwards: number[];
}

/** Docker's port binding (libnetwork types.PortBinding) as JSON. */
interface PortBinding {
  Proto?: number;
  IP?: string | null;
  Port?: number;
  HostIP?: string | null;
  HostPort?: number;
  HostPortEnd?: number;
}

/** A request usernet refuses (a network or endpoint it cannot serve); its message goes back to Docker. */
class PluginError extends UsernetError {
  constructor(message: string) {
    super('ERR_DOCKER_REQUEST', message);
  }
}

export async function startDockerPlugin(path: string, runtime: Runtime, guests: Guests, log: Logger): Promise<DockerPlugin> {
  const o: RuntimeOptions = runtime.options;
  const gateway = formatIpv4((o.network + GATEWAY_HOST) >>> 0);
  const poolId = `usernet:${o.cidrText}`;
  const firstGuest = (o.network + FIRST_GUEST_HOST) >>> 0;
  const lastHost = (o.network + 2 ** (32 - o.prefix) - 2) >>> 0;
  let poolHeld = false;
  const networks = new Set<string>();
  const endpoints = new Map<string, Endpoint>();

  const inPool = (ip: number) => ip >= firstGuest && ip <= lastHost;
  const inNetwork = (ip: number) => ip >= o.network && ip <= lastHost + 1;

  function endpoint(eid: unknown): Endpoint {
    const ep = typeof eid === 'string' ? endpoints.get(eid) : undefined;
    if (ep === undefined) throw new PluginError(`usernet: no endpoint ${String(eid)}`);
    return ep;
  }

  function revoke(ep: Endpoint): void {
    for (const f of ep.forwards.splice(0)) runtime.forwards.remove(f);
  }

  const calls: Record<string, (b: Record<string, unknown>) => Promise<unknown> | unknown> = {
    'Plugin.Activate': () => ({ Implements: ['NetworkDriver', 'IpamDriver'] }),

    'NetworkDriver.GetCapabilities': () => ({ Scope: 'local', ConnectivityScope: 'local' }),
    'NetworkDriver.CreateNetwork': (b) => {
      const v4 = (b.IPv4Data ?? []) as { Pool?: string; Gateway?: string }[];
      const v6 = (b.IPv6Data ?? []) as unknown[];
      if (v6.length > 0) throw new PluginError(`usernet gives IPv6 by router advertisements (SLAAC, ${o.ipv6Prefix ?? 'off'}): create the network without --ipv6`);
      for (const d of v4) {
        if (d.Pool !== o.cidrText) throw new PluginError(`this usernet network is ${o.cidrText}, not ${String(d.Pool)}: create it with --ipam-driver usernet (or --subnet ${o.cidrText} --gateway ${gateway})`);
        if (d.Gateway !== undefined && d.Gateway.split('/')[0] !== gateway) throw new PluginError(`the gateway of ${o.cidrText} is ${gateway}, not ${d.Gateway}`);
      }
      networks.add(String(b.NetworkID));
      log.info(`docker: network ${String(b.NetworkID).slice(0, 12)} created on ${o.cidrText}`);
      return {};
    },
    'NetworkDriver.DeleteNetwork': (b) => {
      networks.delete(String(b.NetworkID));
      for (const [eid, ep] of endpoints) {
        if (ep.networkId !== b.NetworkID) continue;
        revoke(ep);
        guests.detach(eid);
        endpoints.delete(eid);
      }
      return {};
    },
    'NetworkDriver.CreateEndpoint': (b) => {
      const eid = String(b.EndpointID);
      const iface = (b.Interface ?? {}) as { Address?: string; AddressIPv6?: string; MacAddress?: string };
      const address = iface.Address ?? '';
      if (address === '') throw new PluginError('usernet: Docker gave the endpoint no IPv4 address: create the network with --ipam-driver usernet');
      const ipv4 = address.split('/')[0];
      const tap = `usn${eid.slice(0, 12)}`;
      const mac = iface.MacAddress !== undefined && iface.MacAddress !== '' ? iface.MacAddress : undefined;
      const info = guests.attach({ id: eid, tap, ipv4, ...(mac === undefined ? {} : { mac }), owner: `docker-plugin:${String(b.NetworkID).slice(0, 12)}` });
      endpoints.set(eid, { networkId: String(b.NetworkID), tap, ipv4, forwards: [] });
      // Only what Docker left empty may be filled in.
      return mac === undefined ? { Interface: { MacAddress: info.mac } } : {};
    },
    'NetworkDriver.EndpointOperInfo': (b) => {
      const ep = endpoint(b.EndpointID);
      const g = guests.get(String(b.EndpointID));
      return { Value: { tap: ep.tap, ipv4: ep.ipv4, mac: g?.mac ?? '', ipv6: g?.ipv6 ?? '' } };
    },
    'NetworkDriver.DeleteEndpoint': (b) => {
      const eid = String(b.EndpointID);
      const ep = endpoints.get(eid);
      if (ep !== undefined) revoke(ep);
      endpoints.delete(eid);
      guests.detach(eid);
      return {};
    },
    'NetworkDriver.Join': (b) => {
      const ep = endpoint(b.EndpointID);
      log.info(`docker: endpoint ${String(b.EndpointID).slice(0, 12)} joins ${String(b.SandboxKey)} (${ep.tap}, ${ep.ipv4})`);
      return { InterfaceName: { SrcName: ep.tap, DstPrefix: 'eth' }, Gateway: gateway, DisableGatewayService: true };
    },
    'NetworkDriver.Leave': () => ({}),
    'NetworkDriver.ProgramExternalConnectivity': async (b) => {
      const eid = String(b.EndpointID);
      const ep = endpoint(eid);
      const g = guests.get(eid);
      const bindings = (((b.Options ?? {}) as Record<string, unknown>)[LABEL_PORTMAP] ?? []) as PortBinding[];
      try {
        for (const pb of Array.isArray(bindings) ? bindings : []) {
          const proto = pb.Proto === PROTO_TCP ? 'tcp' : pb.Proto === PROTO_UDP ? 'udp' : null;
          if (proto === null || !pb.Port) {
            log.warn(`docker: endpoint ${eid.slice(0, 12)}: port binding ${JSON.stringify(pb)} is not tcp or udp; skipped`);
            continue;
          }
          if (!pb.HostPort) {
            log.warn(`docker: endpoint ${eid.slice(0, 12)}: ${proto} port ${pb.Port} has no host port (-P, -p PORT); give -p HOST:${pb.Port}; skipped`);
            continue;
          }
          const hostAddr = pb.HostIP === undefined || pb.HostIP === null || pb.HostIP === '' ? '0.0.0.0' : pb.HostIP;
          const v6 = hostAddr.includes(':');
          const guestAddr = v6 ? g?.ipv6 : ep.ipv4;
          if (guestAddr === null || guestAddr === undefined) {
            log.warn(`docker: endpoint ${eid.slice(0, 12)}: ${hostAddr} is IPv6 and this network has no IPv6; skipped`);
            continue;
          }
          const entry = await runtime.forwards.add({ proto, hostAddr, hostPort: pb.HostPort, guestAddr, guestPort: pb.Port });
          ep.forwards.push(entry.id);
          guests.ownForward(eid, entry.id);
          log.info(`docker: endpoint ${eid.slice(0, 12)}: ${proto} ${v6 ? `[${hostAddr}]` : hostAddr}:${pb.HostPort} -> ${guestAddr}:${pb.Port}`);
        }
      } catch (err) {
        revoke(ep);
        throw err;
      }
      return {};
    },
    'NetworkDriver.RevokeExternalConnectivity': (b) => {
      const eid = String(b.EndpointID);
      const ep = endpoints.get(eid);
      if (ep !== undefined) revoke(ep);
      return {};
    },
    'NetworkDriver.DiscoverNew': () => ({}),
    'NetworkDriver.DiscoverDelete': () => ({}),

    'IpamDriver.GetCapabilities': () => ({ RequiresMACAddress: false, RequiresRequestReplay: false }),
    'IpamDriver.GetDefaultAddressSpaces': () => ({ LocalDefaultAddressSpace: 'usernet', GlobalDefaultAddressSpace: 'usernet-global' }),
    'IpamDriver.RequestPool': (b) => {
      if (b.V6 === true) throw new PluginError(`usernet gives IPv6 by router advertisements (SLAAC, ${o.ipv6Prefix ?? 'off'}): create the network without --ipv6`);
      if (b.Pool !== undefined && b.Pool !== '' && b.Pool !== o.cidrText) throw new PluginError(`this usernet network is ${o.cidrText}: leave out --subnet or give that`);
      if (b.SubPool !== undefined && b.SubPool !== '') throw new PluginError('usernet hands out its own addresses (N+100 and up): leave out --ip-range');
      // One Docker network per usernet: a second would be the same bridge under another name. This also
      // ends libnetwork's retry loop when the host has a route overlapping the pool (it asks again and again).
      if (poolHeld) throw new PluginError(`a Docker network on this usernet (${o.cidrText}) exists already; run another usernet docker-plugin (another --plugin-socket and --cidr) for a second network`);
      poolHeld = true;
      return { PoolID: poolId, Pool: o.cidrText, Data: { [LABEL_GATEWAY]: `${gateway}/${o.prefix}` } };
    },
    'IpamDriver.ReleasePool': (b) => {
      if (b.PoolID === poolId) poolHeld = false;
      return {};
    },
    'IpamDriver.RequestAddress': (b) => {
      if (b.PoolID !== poolId) throw new PluginError(`usernet: unknown pool ${String(b.PoolID)}`);
      const opts = (b.Options ?? {}) as Record<string, string>;
      const want = typeof b.Address === 'string' ? b.Address : '';
      if (opts[LABEL_ADDRESS_TYPE] === LABEL_GATEWAY) {
        if (want !== '' && want !== gateway) throw new PluginError(`the gateway of ${o.cidrText} is ${gateway}: leave out --gateway or give that`);
        return { Address: `${gateway}/${o.prefix}`, Data: {} };
      }
      if (want !== '') {
        const ip = parseIpv4(want);
        if (ip < 0 || !inNetwork(ip)) throw new PluginError(`${want} is not in ${o.cidrText}`);
        // Addresses below the pool (--aux-address) are the gateway's or unused: nothing to reserve.
        if (!inPool(ip)) return { Address: `${want}/${o.prefix}`, Data: {} };
        return { Address: `${guests.reserve(`ipam-${want}`, want)}/${o.prefix}`, Data: {} };
      }
      return { Address: `${guests.reserve(`ipam-${randomBytes(6).toString('hex')}`)}/${o.prefix}`, Data: {} };
    },
    'IpamDriver.ReleaseAddress': (b) => {
      if (typeof b.Address === 'string' && parseIpv4(b.Address) >= 0 && inPool(parseIpv4(b.Address))) guests.unreserve(b.Address);
      return {};
    },
  };

  const server: Server = createServer((req, res) => {
    void handle(req, res);
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = (req.url ?? '/').replace(/^\//, '').split('?')[0];
    const errField = method.startsWith('IpamDriver.') ? 'Error' : 'Err';
    const fn = calls[method];
    if (req.method !== 'POST' || fn === undefined) return reply(res, 404, { [errField]: `usernet does not implement ${req.method} /${method}` });
    let body: Record<string, unknown>;
    try {
      body = await readBody(req);
    } catch (err) {
      return reply(res, 400, { [errField]: (err as Error).message });
    }
    try {
      const out = await fn(body);
      log.debug(`docker: ${method} ${JSON.stringify(body)} -> ${JSON.stringify(out)}`);
      reply(res, 200, out);
    } catch (err) {
      const e = err as Error & { hint?: string };
      if (!(err instanceof UsernetError)) log.error(`docker: ${method}: ${e.stack ?? String(err)}`);
      const message = e.hint ? `${e.message} (${e.hint})` : e.message;
      log.warn(`docker: ${method} refused: ${message}`);
      reply(res, 200, { [errField]: message });
    }
  }

  await listenUnix(server, path, 0o600, 0o755);
  log.info(`docker: network and IPAM driver on ${path}`);
  return {
    path,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(path, { force: true });
    },
  };
}

function reply(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body ?? {});
  res.writeHead(status, { 'content-type': CONTENT_TYPE, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new UsernetError('ERR_TOO_LARGE', `the body is larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '' || text === 'null') return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new UsernetError('ERR_BAD_JSON', `the body is not JSON: ${(err as Error).message}`, { cause: err });
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new UsernetError('ERR_BAD_JSON', 'the body must be a JSON object');
  return v as Record<string, unknown>;
}
