// The serving process: store + indexes + both gRPC services + metrics endpoint, with graceful
// shutdown on SIGTERM/SIGINT. Wiring only; the behaviour lives in src/serve.
import { readFileSync } from 'node:fs';
import type { AetnConfig } from '../src/config/config.js';
import { EmbeddingStore } from '../src/store/store.js';
import { ApiKeyAuth } from '../src/serve/auth.js';
import { ServingBackend } from '../src/serve/backend.js';
import { StoreIndexes } from '../src/serve/indexes.js';
import { RpcMetrics } from '../src/serve/metrics.js';
import { startServer, type RunningServer } from '../src/serve/server.js';
import { startMetricsServer, type MetricsServer } from '../src/util/metrics-http.js';
import { child } from '../src/util/log.js';
import { UserError } from '../src/util/errors.js';

export interface ServeOptions {
  /** Worker threads per feature index (0 = search on the serving thread). */
  searchThreads?: number;
  /** Poll interval for new features and rebuilt indexes. */
  pollMs?: number;
  /** Install SIGTERM/SIGINT handlers that drain and exit (the CLI does; tests do not). */
  handleSignals?: boolean;
}

export interface ServeProcess {
  server: RunningServer;
  metricsUrl: string | null;
  stop(): Promise<void>;
}

export async function runServe(cfg: AetnConfig, opts: ServeOptions = {}): Promise<ServeProcess> {
  const log = child('serve');
  const store = EmbeddingStore.open(cfg.storeDir, { create: false });
  const auth = new ApiKeyAuth(cfg.serve.apiKeys, cfg.serve.authDisabled);
  if (auth.disabled) log.warn('authentication is DISABLED: every caller has every scope (local demos only)');
  else if (auth.keyCount === 0) log.warn('no API keys configured: every call will be refused (set serve.apiKeys or AETN_API_KEYS)');
  let tls: { cert: Buffer; key: Buffer } | undefined;
  if (cfg.serve.tlsCert && cfg.serve.tlsKey) {
    try {
      tls = { cert: readFileSync(cfg.serve.tlsCert), key: readFileSync(cfg.serve.tlsKey) };
    } catch (err) {
      await store.close();
      throw new UserError(`cannot read the TLS certificate or key: ${(err as Error).message}`);
    }
  }
  const indexes = new StoreIndexes(cfg.storeDir, {
    threads: opts.searchThreads ?? 0,
    log,
    dimOf: (id) => store.getFeature(id)?.dim,
  });
  const backend = new ServingBackend(store, indexes, { log, pollMs: opts.pollMs ?? 2000 });
  const metrics = new RpcMetrics();
  let server: RunningServer;
  try {
    server = await startServer({ backend, auth, host: cfg.serve.host, port: cfg.serve.port, ...(tls ? { tls } : {}), metrics, log });
  } catch (err) {
    await backend.stop();
    await store.close();
    throw new UserError(`cannot listen on ${cfg.serve.host}:${cfg.serve.port}: ${(err as Error).message}`);
  }
  let metricsServer: MetricsServer | undefined;
  if (cfg.metrics.port !== null) metricsServer = await startMetricsServer({ host: cfg.metrics.host, port: cfg.metrics.port, registries: [metrics.registry] });

  // Warm up the default feature's index and population sample so the first audience call is not slow.
  const def = backend.resolve('long', '', 'feature_id');
  if (def) {
    void indexes
      .get(def.featureId)
      .then(() => backend.population(def.featureId, 1, 'warmup'))
      .catch((err: Error) => log.warn({ err: err.message, featureId: def.featureId }, 'warm-up failed; the first audience call will retry'));
  }

  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      await server.shutdown(cfg.serve.drainTimeoutMs);
      await metricsServer?.close();
      await store.close();
    })());

  if (opts.handleSignals) {
    const onSignal = (sig: NodeJS.Signals) => {
      log.info({ signal: sig }, 'shutting down');
      stop().then(
        () => process.exit(0),
        (err: Error) => {
          log.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  }
  return { server, metricsUrl: metricsServer?.url ?? null, stop };
}
