import type { Command } from 'commander';

interface Opts {
  store?: string;
  port?: string;
  host?: string;
  config?: string;
  tlsCert?: string;
  tlsKey?: string;
  insecureNoAuth?: boolean;
  searchThreads: string;
  metricsPort?: string;
  drainTimeoutMs?: string;
}

export function register(program: Command): void {
  program
    .command('serve')
    .description('Serve UserVectorService and AudienceService over gRPC (with health checking and reflection) from a store and its indexes.')
    .option('--store <dir>', 'embedding store directory (default: storeDir from the config)')
    .option('--port <n>', 'gRPC port (0 = any free port; default 50051)')
    .option('--host <addr>', 'address to listen on (default 127.0.0.1)')
    .option('--config <file>', 'JSON configuration file (default: $AETN_CONFIG); API keys go in serve.apiKeys: {"<key>": ["vectors:read"]}')
    .option('--tls-cert <file>', 'PEM certificate chain: serve TLS (with --tls-key)')
    .option('--tls-key <file>', 'PEM private key')
    .option('--insecure-no-auth', 'accept calls without an API key (local demos only)')
    .option('--search-threads <n>', 'worker threads per HNSW index (0 = search on the serving thread)', '1')
    .option('--metrics-port <n>', 'Prometheus /metrics port, or "off" (default 9464)')
    .option('--drain-timeout-ms <n>', 'on SIGTERM, wait this long for calls in flight (default 10000)')
    .addHelpText(
      'after',
      `
Example:
  AETN_API_KEYS='ranker-key-123=vectors:read;ads-key-4567=audience:write' \\
    aetn serve --store aetn-data/store --port 50051
  grpcurl -plaintext -H 'x-api-key: ranker-key-123' -d '{"user_id":"u42"}' \\
    127.0.0.1:50051 aetn.v1.UserVectorService/GetUserVector`,
    )
    .action(async (opts: Opts) => {
      const { loadConfig } = await import('../../../src/config/config.js');
      const { runServe } = await import('../../serve.js');
      const { UserError } = await import('../../../src/util/errors.js');
      const threads = Number(opts.searchThreads);
      if (!Number.isInteger(threads) || threads < 0 || threads > 64) throw new UserError(`--search-threads must be an integer 0..64, got ${opts.searchThreads}`);
      const cfg = loadConfig({
        file: opts.config ?? null,
        overrides: {
          storeDir: opts.store,
          'serve.port': opts.port,
          'serve.host': opts.host,
          'serve.tlsCert': opts.tlsCert,
          'serve.tlsKey': opts.tlsKey,
          'serve.authDisabled': opts.insecureNoAuth ? true : undefined,
          'metrics.port': opts.metricsPort,
          'serve.drainTimeoutMs': opts.drainTimeoutMs,
        },
      });
      const p = await runServe(cfg, { searchThreads: threads, handleSignals: true });
      const auth = cfg.serve.authDisabled ? 'auth off' : `auth on (${Object.keys(cfg.serve.apiKeys).length} keys)`;
      process.stdout.write(
        `aetn serve: listening on ${p.server.address} (${cfg.serve.tlsCert ? 'TLS' : 'plaintext'}, ${auth}${p.metricsUrl ? `, metrics ${p.metricsUrl}` : ''})\n`,
      );
    });
}
