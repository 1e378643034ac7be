/**
 * Echo servers the check's probe reaches through usernet's gateway: TCP and
 * UDP on 127.0.0.1 (the guest dials N+2) and on ::1 (the guest dials P::2).
 * TCP echoes each connection's bytes and closes after the client's FIN; UDP
 * sends every datagram back. Ports are the kernel's choice. A family the host
 * cannot bind (IPv6 disabled) is reported, not thrown.
 */
import { createSocket, type Socket } from 'node:dgram';
import { createServer, type Server } from 'node:net';

export interface EchoPorts {
  tcp: number;
  udp: number;
}

export interface EchoServers {
  v4: EchoPorts | { error: string };
  v6: EchoPorts | { error: string };
  close(): void;
}

export async function startEchoServers(): Promise<EchoServers> {
  const closers: (() => void)[] = [];
  const start = async (host: string): Promise<EchoPorts | { error: string }> => {
    try {
      const tcp = await tcpEcho(host);
      closers.push(() => tcp.close());
      const udp = await udpEcho(host);
      closers.push(() => udp.close());
      return { tcp: (tcp.address() as { port: number }).port, udp: udp.address().port };
    } catch (err) {
      return { error: (err as Error).message };
    }
  };
  const v4 = await start('127.0.0.1');
  const v6 = await start('::1');
  return { v4, v6, close: () => closers.forEach((c) => c()) };
}

function tcpEcho(host: string): Promise<Server> {
  const server = createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => s.destroy());
    s.on('data', (d) => s.write(d));
    s.on('end', () => s.end());
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

function udpEcho(host: string): Promise<Socket> {
  const sock = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  sock.on('message', (msg, rinfo) => sock.send(msg, rinfo.port, rinfo.address));
  return new Promise((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(0, host, () => {
      sock.off('error', reject);
      sock.on('error', () => {});
      resolve(sock);
    });
  });
}
