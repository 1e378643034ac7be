/**
 * A file of random bytes and an HTTP server for it, for transfer tests:
 * GET /blob serves the file, PUT (any path) answers "<sha256> <bytes>" of
 * what it received, GET /peer answers the client's address as the server
 * sees it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, createReadStream, openSync, writeSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

export interface BlobServer {
  /** The file on disk (for uploads). */
  path: string;
  sha256: string;
  bytes: number;
  port: number;
  close(): Promise<void>;
}

export async function startBlobServer(dir: string, bytes: number, host: string): Promise<BlobServer> {
  const path = join(dir, 'blob');
  const fd = openSync(path, 'w');
  const hash = createHash('sha256');
  for (let done = 0; done < bytes; done += 1 << 20) {
    const chunk = randomBytes(Math.min(1 << 20, bytes - done));
    hash.update(chunk);
    writeSync(fd, chunk);
  }
  closeSync(fd);
  const sha256 = hash.digest('hex');
  const server: Server = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/blob') {
      res.writeHead(200, { 'content-length': bytes });
      createReadStream(path).pipe(res);
    } else if (req.method === 'GET' && req.url === '/peer') {
      res.end(`${req.socket.remoteAddress}\n`);
    } else if (req.method === 'PUT') {
      const h = createHash('sha256');
      let n = 0;
      req.on('data', (d: Buffer) => {
        h.update(d);
        n += d.length;
      });
      req.on('end', () => res.end(`${h.digest('hex')} ${n}\n`));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  const port = (server.address() as AddressInfo).port;
  return { path, sha256, bytes, port, close: () => new Promise<void>((r) => server.close(() => r())) };
}
