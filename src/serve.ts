/**
 * `usernet --tap tap0 [--tap tap1 ...]`: attach to taps in this namespace and
 * bridge them with the gateway until SIGINT or SIGTERM. SIGUSR1 logs counters.
 */
import type { Logger } from './log.js';
import type { MainCommand } from './options.js';
import { Runtime } from './runtime.js';
import { native } from './native/addon.js';
import { OFFLOADS } from './run.js';
import { formatIpv4 } from '../stack/wire/ipv4-address.js';
import { startWarmUp } from './warm-up.js';
import { onStatsSignal } from './stats-signal.js';
import { runtimeOptionsForTaps } from './tap-report.js';
import { SocketPorts } from './socket-ports.js';
import { startMetrics, type MetricsServer } from './metrics-endpoint.js';

export async function serveTaps(cmd: MainCommand, log: Logger): Promise<number> {
  const o = cmd.options;
  const handles = [];
  try {
    for (const name of cmd.taps) {
      handles.push(native.openTap({ name, vnetHdr: o.offload, offloads: o.offload ? OFFLOADS : 0 }));
    }
  } catch (err) {
    for (const h of handles) native.closeFd(h.fd);
    throw err;
  }
  const runtime = new Runtime(runtimeOptionsForTaps(o, handles, log), log);
  const stopStats = onStatsSignal(() => runtime.logStats());
  for (const h of handles) runtime.addTap(h);
  log.info(
    `gateway ${formatIpv4((o.network + 2) >>> 0)} and DNS ${formatIpv4((o.network + 3) >>> 0)} on ${o.cidrText}, mtu ${o.mtu}`,
  );
  const sockets = new SocketPorts(runtime, log);
  let metrics: MetricsServer | null = null;
  try {
    await runtime.startForwards();
    await sockets.start(o.sockets);
    metrics = await startMetrics(o, runtime, log);
  } catch (err) {
    stopStats();
    await sockets.close();
    runtime.close();
    throw err;
  }
  // The guests may already be talking: the warm-up's steps interleave with theirs for about a second.
  const warm = startWarmUp(runtime.options, log);
  return new Promise((resolve) => {
    const stop = (sig: NodeJS.Signals) => {
      log.info(`${sig}: stopping`);
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      stopStats();
      void (warm?.stop() ?? Promise.resolve()).then(async () => {
        await metrics?.close();
        await sockets.close();
        runtime.close();
        resolve(0);
      });
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
