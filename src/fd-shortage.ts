/**
 * Out of file descriptors: every host socket (a TCP connection, a UDP or ICMP
 * flow, a DNS upstream) costs one, and at RLIMIT_NOFILE the kernel says
 * EMFILE (ENFILE at the system's limit). The proxies refuse the guest's
 * attempt cleanly (TCP: an ICMP unreachable for the SYN, counted as a dial
 * failure; UDP and ICMP: the flow's datagrams dropped and counted) and tell
 * this module, which warns once per interval with what was refused since the
 * last warning, not once per connection: a guest that opens thousands of
 * connections must not flood the log too.
 */
import type { Logger } from './log.js';

/** At most one warning per this long. */
export const FD_SHORTAGE_LOG_INTERVAL_MS = 10_000;

export type FdUser = 'tcp' | 'udp' | 'icmp' | 'dns';

class FdShortage {
  private readonly refused: Record<FdUser, number> = { tcp: 0, udp: 0, icmp: 0, dns: 0 };
  private lastLog = -Infinity;
  private suppressed = false;
  constructor(private readonly log: Logger) {}

  note(what: FdUser, now: number): void {
    this.refused[what]++;
    if (now - this.lastLog < FD_SHORTAGE_LOG_INTERVAL_MS) {
      this.suppressed = true;
      return;
    }
    const r = this.refused;
    const parts = (['tcp', 'udp', 'icmp', 'dns'] as const).filter((k) => r[k] > 0).map((k) => `${r[k]} ${k === 'tcp' ? 'TCP connection' : k === 'dns' ? 'DNS upstream socket' : `${k.toUpperCase()} flow`}${r[k] === 1 ? '' : 's'}`);
    this.log.warn(
      `out of file descriptors (EMFILE): refused ${parts.join(', ')}${this.suppressed || this.lastLog > -Infinity ? ` in the last ${Math.round(Math.min(now - this.lastLog, 3_600_000) / 1000)} s` : ''}; ` +
        'raise the descriptor limit (ulimit -n) or lower --limit tcp-flows / udp-flows (next report in 10 s at the earliest)',
    );
    this.lastLog = now;
    this.suppressed = false;
    r.tcp = r.udp = r.icmp = r.dns = 0;
  }
}

const byLogger = new WeakMap<Logger, FdShortage>();

/** Whether a negative errno or an error code says the process (or system) has no descriptor left. */
export function isFdShortage(code: number | string | undefined): boolean {
  return code === -24 || code === -23 || code === 'EMFILE' || code === 'ENFILE';
}

/** Counts one refusal for lack of descriptors and warns if the interval allows (one report per logger). */
export function noteFdShortage(log: Logger, what: FdUser, now: number): void {
  let s = byLogger.get(log);
  if (s === undefined) {
    s = new FdShortage(log);
    byLogger.set(log, s);
  }
  s.note(what, now);
}
