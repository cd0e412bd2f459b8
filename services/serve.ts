// The serving process: store + indexes + both gRPC services + metrics endpoint, with graceful
// shutdown on SIGTERM/SIGINT. Wiring only; the behaviour lives in src/serve.
import { registerHeadFeature } from './head-feature.js';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { AetnConfig } from '../src/config/config.js';
import { EmbeddingStore } from '../src/store/store.js';
import { CassandraStore } from '../src/store/cassandra.js';
import type { FeatureInfo } from '../src/store/types.js';
import { CassandraServingStore, SharedIndexes } from '../src/serve/shared.js';
import type { ServingStore } from '../src/serve/backend.js';
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
  /** Poll interval for new features and rebuilt indexes (default 2 s; with the Cassandra store serve.indexPollSeconds). */
  pollMs?: number;
  /** Install SIGTERM/SIGINT handlers that drain and exit (the CLI does; tests do not). */
  handleSignals?: boolean;
  /** tfjs backend of the realtime head behind EventService (default wasm). */
  headBackend?: string;
  /** The serving clock (tests move it to check the short-term horizon); default Date.now. */
  now?: () => number;
}

export interface ServeProcess {
  server: RunningServer;
  metricsUrl: string | null;
  stop(): Promise<void>;
}

/** The store and indexes a replica serves from: the LMDB directory, or the shared Cassandra keyspace. */
interface Opened {
  store: ServingStore;
  lmdb: EmbeddingStore | undefined;
  indexes: StoreIndexes | SharedIndexes;
  defaultLong: FeatureInfo | undefined;
  pollMs: number;
  hasIndex?: (featureId: string) => boolean;
  close(): Promise<void>;
}

async function openStoreAndIndexes(cfg: AetnConfig, opts: ServeOptions, log: Logger): Promise<Opened> {
  const threads = opts.searchThreads ?? 0;
  if (cfg.store.backend === 'cassandra') {
    const shared = await CassandraStore.open(cfg.store.cassandra, { create: false });
    try {
      const store = await CassandraServingStore.open(shared);
      const indexes = SharedIndexes.create(shared, { threads, log, dimOf: (id) => store.features().find((f) => f.featureId === id)?.dim });
      const defaultLong = store
        .features()
        .filter((f) => f.namespace === 'long' && !f.retired)
        .sort((a, b) => b.createdAtMs - a.createdAtMs || (a.featureId < b.featureId ? 1 : -1))
        .find((f) => store.hasIndex(f.featureId));
      return {
        store,
        lmdb: undefined,
        indexes,
        defaultLong,
        pollMs: opts.pollMs ?? cfg.serve.indexPollSeconds * 1000,
        hasIndex: (id) => store.hasIndex(id),
        close: async () => {
          await indexes.close();
          await shared.close();
        },
      };
    } catch (err) {
      await shared.close();
      throw err;
    }
  }
  const store = EmbeddingStore.open(cfg.storeDir, { create: false });
  const indexes = new StoreIndexes(cfg.storeDir, {
    threads,
    log,
    dimOf: (id) => store.getFeature(id)?.dim,
  });
  return { store, lmdb: store, indexes, defaultLong: store.defaultFeature('long'), pollMs: opts.pollMs ?? 2000, close: () => store.close() };
}

export async function runServe(cfg: AetnConfig, opts: ServeOptions = {}): Promise<ServeProcess> {
  const log = child('serve');
  let tls: { cert: Buffer; key: Buffer } | undefined;
  if (cfg.serve.tlsCert && cfg.serve.tlsKey) {
    try {
      tls = { cert: readFileSync(cfg.serve.tlsCert), key: readFileSync(cfg.serve.tlsKey) };
    } catch (err) {
      throw new UserError(`cannot read the TLS certificate or key: ${(err as Error).message}`);
    }
  }
  if (cfg.store.backend === 'cassandra' && cfg.realtime.headDir && cfg.kafka.brokers.length === 0) {
    throw new UserError('with store.backend = cassandra, EventService needs kafka.brokers (events go to the Kafka topic and the realtime consumers); the direct path writes to a local store');
  }
  const opened = await openStoreAndIndexes(cfg, opts, log);
  const { store, indexes, defaultLong } = opened;
  const auth = new ApiKeyAuth(cfg.serve.apiKeys, cfg.serve.authDisabled);
  if (auth.disabled) log.warn('authentication is DISABLED: every caller has every scope (local demos only)');
  else if (auth.keyCount === 0) log.warn('no API keys configured: every call will be refused (set serve.apiKeys or AETN_API_KEYS)');
  // Load the default feature's index before listening: with search threads, loading it on the
  // first audience call made that call wait ~2 s at 200k users while every worker read the file.
  if (defaultLong) {
    const t0 = performance.now();
    try {
      const searcher = await indexes.get(defaultLong.featureId);
      if (searcher) log.info({ featureId: defaultLong.featureId, ms: Math.round(performance.now() - t0) }, 'index preloaded');
    } catch (err) {
      // A refused index is reported per call (and rebuilt by `aetn index`); vectors still serve.
      log.warn({ featureId: defaultLong.featureId, err: (err as Error).message }, 'index not preloaded');
    }
  }
  const backend = new ServingBackend(store, indexes, { log, pollMs: opened.pollMs, exhaustiveMaxUsers: cfg.serve.lookalikeExhaustiveMaxUsers, appSvdMaxUsers: cfg.serve.lookalikeSvdMaxUsers, ...(opened.hasIndex ? { hasIndex: opened.hasIndex } : {}) });
  const metrics = new RpcMetrics();
  let events: Awaited<ReturnType<typeof openEventService>>;
  try {
    events = await openEventService(cfg, opened.lmdb, store, opts, log);
  } catch (err) {
    await backend.stop();
    await opened.close();
    throw err;
  }
  let server: RunningServer;
  try {
    const vectors = {
      weights: { long: cfg.serve.combinedLongWeight, short: cfg.serve.combinedShortWeight },
      shortTermHorizonMs: cfg.serve.shortTermHorizonMs,
      ...(opts.now ? { now: opts.now } : {}),
    };
    const audience = { minSeeds: cfg.serve.lookalikeMinSeeds, minAudience: cfg.serve.lookalikeMinAudience };
    server = await startServer({ backend, auth, host: cfg.serve.host, port: cfg.serve.port, ...(tls ? { tls } : {}), metrics, log, vectors, audience, ...(events ? { extraServices: events.extraServices(auth) } : {}) });
  } catch (err) {
    await events?.close();
    await backend.stop();
    await opened.close();
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
      // After the drain: every acknowledged event batch is already durable in its sink.
      await events?.close();
      await metricsServer?.close();
      // The poller and the search threads go before the store: the shared store's poller reads
      // Cassandra, and a search pool's worker threads would keep the process alive.
      await backend.stop();
      await opened.close();
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

/**
 * EventService (app events over gRPC) when a realtime head is configured (realtime.headDir): to the
 * Kafka topic when kafka.brokers is set, otherwise straight into the realtime head through the same
 * processing code as the Kafka consumer (EventProcessor), durable before the acknowledgement.
 */
async function openEventService(cfg: AetnConfig, lmdb: EmbeddingStore | undefined, store: ServingStore, opts: ServeOptions, log: Logger) {
  if (!cfg.realtime.headDir) return undefined;
  const { loadHeadPool } = await import('../src/model/head-pool.js');
  const { registerEventService } = await import('../src/serve/events.js');
  const { EventService } = await import('../src/gen/aetn/v1/event_service_pb.js');
  const { DirectSink, KafkaSink } = await import('../src/stream/sinks.js');
  const { EventProcessor } = await import('../src/stream/processor.js');
  // On a worker thread: the head's forward pass would otherwise stall every ranker call that
  // arrives while a batch of events is being embedded.
  const head = await loadHeadPool(cfg.realtime.headDir, { backend: opts.headBackend, workers: 1 });
  let sink: import('../src/stream/sinks.js').EventSink;
  try {
    if (cfg.kafka.brokers.length > 0) {
      sink = await KafkaSink.open({ brokers: cfg.kafka.brokers, topic: cfg.kafka.topic, clientId: cfg.kafka.clientId });
    } else {
      if (!lmdb) throw new UserError('EventService without kafka.brokers writes to the local LMDB store');
      registerHeadFeature(lmdb, head, log);
      const embed = head.embed.bind(head);
      sink = new DirectSink(new EventProcessor({ store: lmdb, head: (states, nowMs) => embed(states, nowMs), featureId: head.featureId, maxEvents: Math.max(cfg.realtime.maxEvents, head.maxEvents) }));
    }
  } catch (err) {
    await head.close();
    throw err;
  }
  log.info({ sink: sink.kind, headFeatureId: head.featureId }, 'EventService enabled');
  return {
    extraServices: (auth: ApiKeyAuth) => ({
      register: (server: import('@grpc/grpc-js').Server) => registerEventService(server, { auth, sink, vocab: head.appIndexOfPackage, log, isForgotten: (u: string) => store.isForgotten(u) }),
      services: [EventService],
    }),
    close: async () => {
      await sink.close();
      await head.close();
    },
  };
}
