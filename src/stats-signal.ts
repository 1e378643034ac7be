/**
 * SIGUSR1 belongs to usernet: it asks for the counters.
 *
 * Node starts its inspector (an unauthenticated debugging port on
 * 127.0.0.1:9229, code execution in this process) when SIGUSR1 arrives and no
 * JavaScript listener is installed. So this module installs the listener when
 * it is evaluated, and the CLI entry (src/cli/main.ts) imports it before
 * anything else: from the first statement of usernet's own code on, SIGUSR1
 * is never Node's again. Node 20 still owns the signal during its own
 * bootstrap, before any script runs (about 50 ms); Node 22.14 and later have
 * --disable-sigusr1 for that window.
 *
 * A front end that can report counters registers its reporter with
 * onStatsSignal(); a signal that arrives before one is registered (during
 * start-up) is answered by the first reporter that registers.
 *
 * No imports: nothing may load before the listener is in place.
 */

let reporter: (() => void) | null = null;
let pending = false;

function onSignal(): void {
  if (reporter !== null) reporter();
  else pending = true;
}

process.on('SIGUSR1', onSignal);

/** Makes `report` the answer to SIGUSR1 until the returned function is called. */
export function onStatsSignal(report: () => void): () => void {
  reporter = report;
  if (pending) {
    pending = false;
    report();
  }
  return () => {
    if (reporter === report) reporter = null;
  };
}
