/**
 * `usernet daemon`: one long-running bridge, gateway and NAT (a Network,
 * src/network.ts) that many network namespaces attach to at run time through the control API
 * (api.ts); `usernet attach|detach|ls|publish|unpublish` are its clients
 * (cli.ts).
 *
 * Start-up: the runtime, then the API socket, then --pid-file and the ready
 * fd ("1", then closed), so a supervisor that waits for either can attach at
 * once. SIGTERM/SIGINT: the API stops taking requests, every guest is
 * detached (their taps vanish from their namespaces), host sockets close,
 * the socket and pid file are removed. SIGUSR1 prints the counters.
 */
import { closeSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import type { Logger } from '../log.js';
import type { RuntimeOptions } from '../options.js';
import { onStatsSignal } from '../stats-signal.js';
import { startApi, type ApiServer } from './api.js';
import type { DockerPlugin } from './docker-plugin.js';
import { networkInternals, openNetwork } from '../network.js';
import { startMetrics, type MetricsServer } from '../metrics-endpoint.js';

export interface DaemonCommand {
  options: RuntimeOptions;
  apiSocket: string;
  socketMode: number;
  readyFd: number;
  pidFile: string | null;
  /** `usernet docker-plugin`: also serve Docker's remote network and IPAM driver there. */
  dockerPluginSocket?: string | null;
}

export async function runDaemon(cmd: DaemonCommand, log: Logger): Promise<number> {
  // The runtime (with the names the DNS forwarder answers for guests), forwards and socket ports.
  const network = await openNetwork(cmd.options, log);
  const { runtime, guests, sockets, startWarmUp } = networkInternals(network);
  const stopStats = onStatsSignal(() => runtime.logStats());
  let api: ApiServer;
  let plugin: DockerPlugin | null = null;
  let metrics: MetricsServer | null = null;
  try {
    metrics = await startMetrics(cmd.options, runtime, log, () => guests.size);
    api = await startApi(cmd.apiSocket, cmd.socketMode, runtime, guests, sockets, log);
    if (cmd.dockerPluginSocket) {
      const { startDockerPlugin } = await import('./docker-plugin.js');
      const server = api;
      plugin = await startDockerPlugin(cmd.dockerPluginSocket, runtime, guests, log).catch(async (err: unknown) => {
        await server.close();
        throw err;
      });
    }
  } catch (err) {
    stopStats();
    await metrics?.close();
    await network.close();
    throw err;
  }
  if (cmd.pidFile !== null) writeFileSync(cmd.pidFile, `${process.pid}\n`);
  log.info(`daemon: API on ${api.path}; network ${cmd.options.cidrText}, mtu ${cmd.options.mtu}`);
  if (cmd.readyFd >= 0) {
    writeSync(cmd.readyFd, '1');
    closeSync(cmd.readyFd);
  }
  startWarmUp();
  return new Promise<number>((resolve) => {
    const stop = (sig: NodeJS.Signals) => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      log.info(`${sig}: detaching ${guests.size} guest(s) and stopping`);
      void (async () => {
        await plugin?.close();
        await api.close();
        await metrics?.close();
        // The warm-up, every guest, the socket ports, then the runtime.
        await network.close();
        stopStats();
        if (cmd.pidFile !== null) rmSync(cmd.pidFile, { force: true });
        resolve(0);
      })();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
