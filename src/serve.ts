/**
 * `usernet --tap tap0 [--tap tap1 ...]`: attach to taps in this namespace and
 * bridge them with the gateway until SIGINT or SIGTERM. SIGUSR1 logs counters.
 */
import type { Logger } from './log.js';
import type { MainCommand } from './options.js';
import type { TapHandle } from './native/types.js';
import { formatIpv4 } from '../stack/wire/ipv4-address.js';
import { onStatsSignal } from './stats-signal.js';
import { networkInternals, openNetwork } from './network.js';
import { startMetrics } from './metrics-endpoint.js';
import { native } from './native/addon.js';
import { OFFLOADS } from './native/types.js';
import { multiqueueRefused, ShardSet, workerCount } from './shards/shard-set.js';
import { runtimeOptionsForTaps } from './tap-report.js';

export async function serveTaps(cmd: MainCommand, log: Logger): Promise<number> {
  const o = cmd.options;
  const workers = workerCount(cmd.workers, o, cmd.taps.length, log);
  if (workers > 1) {
    const handle = native.openTap({ name: cmd.taps[0], vnetHdr: o.offload, offloads: o.offload ? OFFLOADS : 0, queues: workers });
    if ((handle.queueFds ?? []).length > 0) return await serveShards(cmd, handle, log);
    multiqueueRefused(handle, cmd.workers !== null, log);
    return await serveNetwork(cmd, log, { handles: [handle] });
  }
  return await serveNetwork(cmd, log, { taps: cmd.taps });
}

/** `--workers N` with a multi-queue tap: a shard per queue (src/shards/). */
async function serveShards(cmd: MainCommand, handle: TapHandle, log: Logger): Promise<number> {
  const o = cmd.options;
  const shards = await ShardSet.open(runtimeOptionsForTaps(o, [handle], log), log, handle);
  const stopStats = onStatsSignal(() => shards.logStats());
  try {
    await shards.startPorts();
  } catch (err) {
    stopStats();
    await shards.close();
    throw err;
  }
  log.info(
    `gateway ${formatIpv4((o.network + 2) >>> 0)} and DNS ${formatIpv4((o.network + 3) >>> 0)} on ${o.cidrText}, mtu ${o.mtu}, ${shards.size} shards`,
  );
  return new Promise((resolve, reject) => {
    const end = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      stopStats();
    };
    const stop = (sig: NodeJS.Signals) => {
      log.info(`${sig}: stopping`);
      end();
      void shards.close().then(() => resolve(0));
    };
    shards.onFatal = (err) => {
      end();
      void shards.close().then(() => reject(err));
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

async function serveNetwork(cmd: MainCommand, log: Logger, taps: { taps?: string[]; handles?: TapHandle[] }): Promise<number> {
  const o = cmd.options;
  // Taps, then the runtime (following what the taps do), forwards and socket ports: all closed again on a failure.
  const network = await openNetwork(o, log, taps);
  const internals = networkInternals(network);
  const stopStats = onStatsSignal(() => internals.runtime.logStats());
  log.info(
    `gateway ${formatIpv4((o.network + 2) >>> 0)} and DNS ${formatIpv4((o.network + 3) >>> 0)} on ${o.cidrText}, mtu ${o.mtu}`,
  );
  let metrics;
  try {
    metrics = await startMetrics(o, internals.runtime, log);
  } catch (err) {
    stopStats();
    await network.close();
    throw err;
  }
  // The guests may already be talking: the warm-up's steps interleave with theirs for about a second.
  internals.startWarmUp();
  return new Promise((resolve) => {
    const stop = (sig: NodeJS.Signals) => {
      log.info(`${sig}: stopping`);
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      stopStats();
      // The metrics endpoint, the warm-up, then the socket ports, then the runtime.
      void (metrics?.close() ?? Promise.resolve()).then(() => network.close()).then(() => resolve(0));
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
