/**
 * `usernet --tap tap0 [--tap tap1 ...]`: attach to taps in this namespace and
 * bridge them with the gateway until SIGINT or SIGTERM. SIGUSR1 logs counters.
 */
import type { Logger } from './log.js';
import type { MainCommand } from './options.js';
import { formatIpv4 } from '../stack/wire/ipv4-address.js';
import { onStatsSignal } from './stats-signal.js';
import { networkInternals, openNetwork } from './network.js';
import { startMetrics } from './metrics-endpoint.js';

export async function serveTaps(cmd: MainCommand, log: Logger): Promise<number> {
  const o = cmd.options;
  // Taps, then the runtime (following what the taps do), forwards and socket ports: all closed again on a failure.
  const network = await openNetwork(o, log, { taps: cmd.taps });
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
