/**
 * The host's DNS servers, from resolv.conf(5), read the way glibc and musl
 * read it: only lines that start with the keyword `nameserver` followed by
 * a blank count, the first word after it is the address, anything after
 * that is ignored, lines starting with '#' or ';' are comments, and at most
 * three servers are kept (glibc's MAXNS). Addresses that are not plain IPv4
 * or IPv6 are skipped. An IPv6 zone ("fe80::1%eth0") is dropped: the
 * forwarder's upstream list carries addresses only.
 *
 * A loopback server (127.0.0.53 of systemd-resolved, a local dnsmasq) is
 * fine: the forwarder runs on the host and reaches it there.
 */
import { readFileSync } from 'node:fs';
import { isIPv4, isIPv6 } from 'node:net';

export const RESOLV_CONF_PATH = '/etc/resolv.conf';
/** glibc's MAXNS: servers after the third are ignored. */
export const RESOLV_MAX_NAMESERVERS = 3;
const DNS_PORT = 53;

export interface Nameserver {
  ip: string;
  port: number;
}

export interface ResolvConf {
  nameservers: Nameserver[];
}

/** Parses resolv.conf text; never throws. */
export function parseResolvConf(text: string): ResolvConf {
  const nameservers: Nameserver[] = [];
  for (const raw of text.split('\n')) {
    if (nameservers.length === RESOLV_MAX_NAMESERVERS) break;
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    const m = /^nameserver[ \t]+([^ \t#;]+)/.exec(line);
    if (m === null) continue;
    let addr = m[1];
    const zone = addr.indexOf('%');
    if (zone >= 0) addr = addr.slice(0, zone);
    if (isIPv4(addr) || isIPv6(addr)) nameservers.push({ ip: addr, port: DNS_PORT });
  }
  return { nameservers };
}

/**
 * The host's nameservers from `path`. Like the C libraries, falls back to
 * 127.0.0.1 when the file is missing, unreadable or names none.
 */
export function defaultUpstreams(path: string = RESOLV_CONF_PATH): Nameserver[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    text = '';
  }
  const { nameservers } = parseResolvConf(text);
  return nameservers.length > 0 ? nameservers : [{ ip: '127.0.0.1', port: DNS_PORT }];
}

/**
 * The resolv.conf a guest namespace sees: usernet's forwarder addresses as its
 * nameservers, and the host's `search`, `domain` and `options` lines kept so
 * short names resolve as they do on the host.
 */
export function guestResolvConf(hostText: string, nameservers: readonly string[]): string {
  const kept = hostText
    .split('\n')
    .map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l))
    .filter((l) => /^(search|domain|options)[ \t]/.test(l));
  const lines = ['# usernet: DNS goes to its forwarder on the gateway network', ...nameservers.map((ns) => `nameserver ${ns}`), ...kept];
  return `${lines.join('\n')}\n`;
}
