import type { Command } from 'commander';

interface Opts {
  store?: string;
  storeBackend?: string;
  indexPollSeconds?: string;
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
    .option('--store-backend <backend>', 'lmdb (the store directory) or cassandra (a stateless replica of the shared keyspace store.cassandra.*); default store.backend from the config')
    .option('--index-poll-seconds <n>', 'cassandra backend: how often to look for new features and index generations (default serve.indexPollSeconds, 10)')
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
  # a replica of the shared store (cluster mode): any number of them, behind round robin
  AETN_CASSANDRA_CONTACT_POINTS=10.0.0.1,10.0.0.2 aetn serve --store-backend cassandra --host 0.0.0.0
  grpcurl -plaintext -H 'x-api-key: ranker-key-123' -d '{"user_id":"u42"}' \\
    127.0.0.1:50051 aetn.v1.UserVectorService/GetUserVector`,
    )
    .action(async (opts: Opts) => {
      const { loadConfig } = await import('../../../src/config/config.js');
      const { runServe } = await import('../../serve.js');
      const { UserError } = await import('../../../src/util/errors.js');
      if (opts.store !== undefined && opts.storeBackend === 'cassandra') throw new UserError('--store names an LMDB directory; with --store-backend cassandra the store is the keyspace of store.cassandra.* (drop --store)');
      const threads = Number(opts.searchThreads);
      if (!Number.isInteger(threads) || threads < 0 || threads > 64) throw new UserError(`--search-threads must be an integer 0..64, got ${opts.searchThreads}`);
      const cfg = loadConfig({
        file: opts.config ?? null,
        overrides: {
          storeDir: opts.store,
          'store.backend': opts.storeBackend,
          'serve.indexPollSeconds': opts.indexPollSeconds,
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
        `aetn serve: listening on ${p.server.address} (${cfg.store.backend === 'cassandra' ? `replica of keyspace ${cfg.store.cassandra.keyspace} at ${cfg.store.cassandra.contactPoints.join(',')}, ` : ''}${cfg.serve.tlsCert ? 'TLS' : 'plaintext'}, ${auth}${p.metricsUrl ? `, metrics ${p.metricsUrl}` : ''})\n`,
      );
    });
}
