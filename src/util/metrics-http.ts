// Prometheus exposition over HTTP. Every component registers its metrics on the shared registry
// (prom-client's default, plus any extra registries passed in), so one port serves the whole process.
import { createServer, type Server } from 'node:http';
import client, { type Registry } from 'prom-client';
import { child } from './log.js';

const log = child('metrics');
let defaultsCollected = false;

export interface MetricsServer {
  url: string;
  close(): Promise<void>;
}

export async function startMetricsServer(opts: { host: string; port: number; registries?: Registry[] }): Promise<MetricsServer> {
  if (!defaultsCollected) {
    client.collectDefaultMetrics();
    defaultsCollected = true;
  }
  const registry = client.Registry.merge([client.register, ...(opts.registries ?? [])]);
  const server: Server = createServer((req, res) => {
    if (req.url === '/metrics') {
      registry
        .metrics()
        .then((body) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(body);
        })
        .catch((err: Error) => {
          log.error({ err: err.message }, 'metrics collection failed');
          res.writeHead(500).end(err.message);
        });
    } else if (req.url === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('see /metrics\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;
  const url = `http://${opts.host}:${port}/metrics`;
  log.info({ url }, 'metrics listening');
  return {
    url,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
