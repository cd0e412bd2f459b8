// The realtime process: Kafka app-events -> per-user recent events -> short-term head -> store,
// plus a metrics endpoint, with graceful shutdown on SIGTERM/SIGINT (stop fetching, finish the
// chunk in flight, commit, disconnect). Wiring only; the behaviour lives in src/stream.
import { registerHeadFeature, registerHeadFeatureIn } from './head-feature.js';
import type { AetnConfig } from '../src/config/config.js';
import { EmbeddingStore } from '../src/store/store.js';
import { RealtimePipeline } from '../src/stream/pipeline.js';
import { SharedStateProcessor } from '../src/stream/shared-processor.js';
import { CassandraStates } from '../src/stream/cassandra-states.js';
import { StreamMetrics } from '../src/stream/metrics.js';
import { CassandraStore } from '../src/store/cassandra.js';
import { parseBrokers } from '../src/stream/kafka.js';
import type { RecentEvents } from '../src/stream/types.js';
import { startMetricsServer, type MetricsServer } from '../src/util/metrics-http.js';
import { child } from '../src/util/log.js';
import { UserError } from '../src/util/errors.js';

/** The head as the process needs it (src/model/head-forward.ts LoadedHead has this shape). */
export interface StreamHead {
  featureId: string;
  baseFeatureId: string;
  dim: number;
  maxEvents: number;
  appIndexOfPackage: Map<string, number>;
  embed(states: readonly RecentEvents[], nowMs: number): Float32Array[] | Promise<Float32Array[]>;
  dispose?(): void;
  /** Worker pools (loadHeadPool) end their threads here. */
  close?(): Promise<void>;
}

export interface RealtimeOptions {
  /** tfjs backend for the head (wasm default). */
  backend?: string;
  partitionsConcurrently?: number;
  chunkSize?: number;
  fromBeginning?: boolean;
  numPartitions?: number;
  /** Install SIGTERM/SIGINT handlers that drain and exit (the CLI does; tests do not). */
  handleSignals?: boolean;
  /** Use this head instead of loading cfg.realtime.headDir (benchmarks with a stand-in head). */
  head?: StreamHead;
  /**
   * Worker threads running the head (loadHeadPool); 0 runs it on the main thread. Default
   * DEFAULT_HEAD_WORKERS: on the main thread its forward pass blocks Kafka fetches, decoding
   * and the commit bookkeeping; on a worker they overlap (bench/stream-realtime.ts measures both).
   */
  headWorkers?: number;
  /** Chunks of one partition in flight before the oldest is durable (see PipelineOptions). */
  chunksInFlight?: number;
}

export const DEFAULT_HEAD_WORKERS = 1;

export interface RealtimeProcess {
  pipeline: RealtimePipeline;
  /** Where the state goes: the LMDB directory, or the Cassandra keyspace's `states` table. */
  location: string;
  head: StreamHead;
  metricsUrl: string | null;
  stop(): Promise<void>;
}

export async function runRealtime(cfg: AetnConfig, opts: RealtimeOptions = {}): Promise<RealtimeProcess> {
  const log = child('realtime');
  if (cfg.kafka.brokers.length === 0) throw new UserError('no Kafka brokers: pass --brokers host:port or set kafka.brokers / AETN_KAFKA_BROKERS');
  parseBrokers(cfg.kafka.brokers);
  let head = opts.head;
  if (!head) {
    if (!cfg.realtime.headDir) throw new UserError('no realtime head: pass --head <model dir> (from `aetn train --head realtime`) or set realtime.headDir');
    const workers = opts.headWorkers ?? DEFAULT_HEAD_WORKERS;
    if (!Number.isInteger(workers) || workers < 0) throw new UserError(`head workers must be a non-negative integer, got ${workers}`);
    const { loadHead } = await import('../src/model/head-forward.js');
    const { loadHeadPool } = await import('../src/model/head-pool.js');
    if (workers > 0) head = await loadHeadPool(cfg.realtime.headDir, { backend: opts.backend, workers });
    else {
      const h = await loadHead(cfg.realtime.headDir, { backend: opts.backend });
      const { currentBackend } = await import('../src/model/backend.js');
      // webgpu reads back asynchronously only: on the main thread the head then embeds through embedAsync.
      head = currentBackend()?.name === 'webgpu' ? { ...h, embed: (states, nowMs) => h.embedAsync(states, nowMs) } : h;
    }
  }
  const closeHead = async (h: StreamHead) => {
    h.dispose?.();
    await h.close?.();
  };
  // lmdb: state, vectors and per-partition offsets in this host's store (one consumer per store).
  // cassandra: every consumer of the group shares the states table; offsets are checked per user.
  let store: { close(): Promise<void> };
  let location: string;
  let pipeline: RealtimePipeline;
  const embed = head.embed.bind(head);
  const common = {
    brokers: cfg.kafka.brokers,
    clientId: cfg.kafka.clientId,
    topic: cfg.kafka.topic,
    dlqTopic: cfg.kafka.dlqTopic,
    groupId: cfg.kafka.groupId,
    head: (states: RecentEvents[], nowMs: number) => embed(states, nowMs),
    featureId: head.featureId,
    vocab: head.appIndexOfPackage,
    maxEvents: Math.max(cfg.realtime.maxEvents, head.maxEvents),
    partitionsConcurrently: opts.partitionsConcurrently,
    chunkSize: opts.chunkSize,
    chunksInFlight: opts.chunksInFlight,
    fromBeginning: opts.fromBeginning,
    numPartitions: opts.numPartitions,
  };
  try {
    if (cfg.store.backend === 'cassandra') {
      const cs = await CassandraStore.open(cfg.store.cassandra, { create: false });
      store = cs;
      location = `${cs.location} (table states)`;
      await registerHeadFeatureIn(cs, head, log);
      const metrics = new StreamMetrics();
      const states = new CassandraStates(cs.client, cfg.store.cassandra.keyspace, { retryBudgetMs: cfg.realtime.storeRetryMs, onRetry: () => metrics.storeRetries.inc() });
      const processor = new SharedStateProcessor({ states, head: common.head, featureId: head.featureId, maxEvents: common.maxEvents });
      pipeline = new RealtimePipeline({ ...common, processor, metrics });
    } else {
      const es = EmbeddingStore.open(cfg.storeDir);
      store = es;
      location = cfg.storeDir;
      registerHeadFeature(es, head, log);
      pipeline = new RealtimePipeline({ ...common, store: es });
    }
  } catch (err) {
    if (!opts.head) await closeHead(head);
    throw err;
  }
  try {
    await pipeline.connect();
    await pipeline.run();
  } catch (err) {
    await store.close();
    if (!opts.head) await closeHead(head);
    throw err;
  }
  let metricsServer: MetricsServer | undefined;
  if (cfg.metrics.port !== null) {
    metricsServer = await startMetricsServer({ host: cfg.metrics.host, port: cfg.metrics.port, registries: [pipeline.metrics.registry] });
  }
  log.info({ featureId: head.featureId, topic: cfg.kafka.topic, groupId: cfg.kafka.groupId, store: location }, 'realtime consumer started');

  let stopped: Promise<void> | undefined;
  const stop = () =>
    (stopped ??= (async () => {
      try {
        await pipeline.stop();
      } finally {
        await metricsServer?.close();
        await store.close();
        await closeHead(head);
      }
    })());

  if (opts.handleSignals) {
    const onSignal = (sig: NodeJS.Signals) => {
      log.info({ signal: sig }, 'shutting down: finishing the batch in flight');
      stop().then(
        () => process.exit(0),
        (err: Error) => {
          log.error({ err: err.message }, 'shutdown failed');
          process.exit(1);
        },
      );
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
    pipeline.done.catch((err: Error) => {
      log.fatal({ err: err.message, stack: err.stack }, 'realtime consumer failed');
      stop().finally(() => process.exit(1));
    });
  }
  return { pipeline, location, head, metricsUrl: metricsServer?.url ?? null, stop };
}
