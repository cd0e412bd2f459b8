// The realtime pipeline: consume `app-events`, keep each user's most recent events, run the
// short-term head for the users a batch touched, and write states + vectors durably.
//
// Delivery: Kafka offsets are resolved only after the LMDB transaction holding the states, the
// vectors and the partition's applied offset has committed, so a crash replays and never loses.
// Replays are idempotent: messages at or below the applied offset recorded in LMDB are skipped,
// and an event id already in a user's window is not applied again.
//
// Lifecycle in the manner of kafkajs: connect() -> run() -> stop()/disconnect(). Failures of the
// broker are retried with backoff and the consumer restarts; any other failure (store, head) stops
// the pipeline and rejects `done` — nothing is swallowed.
import { Partitioners, type Admin, type Batch, type Consumer, type EachBatchPayload, type KafkaConfig, type KafkaMessage, type Message, type Producer } from 'kafkajs';
import type { RootDatabase } from 'lmdb';
import { child } from '../util/log.js';
import { UserError } from '../util/errors.js';
import { decodeEvent, isRejection, DEFAULT_MAX_FUTURE_MS } from './codec.js';
import { dlqMessage } from './dlq.js';
import { createKafka, ensureTopics, DEFAULT_DLQ_TOPIC, DEFAULT_GROUP_ID, DEFAULT_TOPIC, RETRY } from './kafka.js';
import { StreamMetrics } from './metrics.js';
import { applyEvents, StateDb, DEFAULT_MAX_EVENTS } from './state.js';
import type { DlqReason, HeadFn, RecentEvents, ValidEvent } from './types.js';

const log = child('stream');

/** What the pipeline needs of the embedding store (src/store/store.ts EmbeddingStore has it). */
export interface PipelineStore {
  readonly root: RootDatabase;
  transaction<T>(fn: () => T): Promise<T>;
  putInTxn(featureId: string, userId: string, vector: Float32Array): void;
}

/** Passed to hooks.afterDurable once a chunk's effects are committed (before the Kafka offset is). */
export interface DurableInfo {
  topic: string;
  partition: number;
  firstOffset: number;
  lastOffset: number;
  applied: number;
  duplicates: number;
  dlq: number;
  skipped: number;
  users: string[];
  /** Kafka produce time of each message that was applied (for freshness measurements). */
  produceTimesMs: number[];
  durableAtMs: number;
}

export interface PipelineOptions {
  brokers: string | string[];
  store: PipelineStore;
  head: HeadFn;
  /** The short-term feature id the vectors are written under (registered in the store). */
  featureId: string;
  /** Package name -> app index. */
  vocab: ReadonlyMap<string, number>;
  topic?: string;
  dlqTopic?: string;
  groupId?: string;
  clientId?: string;
  maxEvents?: number;
  /** Partitions processed at once (kafkajs partitionsConsumedConcurrently). */
  partitionsConcurrently?: number;
  /** A partition batch is processed in chunks of this many messages (bounds latency per commit). */
  chunkSize?: number;
  maxFutureMs?: number;
  /** Where a group with no committed offset starts. */
  fromBeginning?: boolean;
  /** Create the topics when missing (partitions, replication). */
  createTopics?: boolean;
  numPartitions?: number;
  metrics?: StreamMetrics;
  /** Extra kafkajs client settings (e.g. a faster retry in tests). */
  kafka?: Omit<Partial<KafkaConfig>, 'brokers' | 'clientId'>;
  sessionTimeoutMs?: number;
  hooks?: {
    /** Called when a chunk starts (benchmarks time from here). */
    beforeChunk?: (topic: string, partition: number, messages: number) => void;
    afterDurable?: (info: DurableInfo) => void | Promise<void>;
  };
}

export interface PipelineStats {
  consumed: number;
  applied: number;
  duplicates: number;
  dlq: number;
  skipped: number;
  chunks: number;
  usersUpdated: number;
  restarts: number;
  /** Most partition chunks in flight at the same time (parallelism actually reached). */
  maxConcurrentChunks: number;
  dlqByReason: Partial<Record<DlqReason, number>>;
}

class ConflictError extends Error {}

export class RealtimePipeline {
  readonly metrics: StreamMetrics;
  readonly topic: string;
  readonly dlqTopic: string;
  readonly groupId: string;
  private readonly stateDb: StateDb;
  private readonly maxEvents: number;
  private readonly chunkSize: number;
  private readonly consumer: Consumer;
  private readonly producer: Producer;
  private readonly admin: Admin;
  private state: 'new' | 'connected' | 'running' | 'stopping' | 'stopped' | 'failed' = 'new';
  private inFlight = 0;
  private settle!: { resolve: () => void; reject: (e: Error) => void };
  /** Resolves when the pipeline stops cleanly, rejects with the cause when it fails for good. */
  readonly done: Promise<void>;
  private readonly counters: PipelineStats = {
    consumed: 0,
    applied: 0,
    duplicates: 0,
    dlq: 0,
    skipped: 0,
    chunks: 0,
    usersUpdated: 0,
    restarts: 0,
    maxConcurrentChunks: 0,
    dlqByReason: {},
  };

  constructor(private readonly opts: PipelineOptions) {
    this.topic = opts.topic ?? DEFAULT_TOPIC;
    this.dlqTopic = opts.dlqTopic ?? DEFAULT_DLQ_TOPIC;
    this.groupId = opts.groupId ?? DEFAULT_GROUP_ID;
    this.maxEvents = opts.maxEvents ?? DEFAULT_MAX_EVENTS;
    if (!Number.isInteger(this.maxEvents) || this.maxEvents < 1 || this.maxEvents > 255) {
      throw new UserError(`maxEvents must be an integer in 1..255, got ${opts.maxEvents}`);
    }
    this.chunkSize = opts.chunkSize ?? 2000;
    this.metrics = opts.metrics ?? new StreamMetrics();
    this.stateDb = new StateDb(opts.store.root);
    const retry = { ...RETRY, ...(opts.kafka?.retry ?? {}) };
    const kafka = createKafka({ brokers: opts.brokers, clientId: opts.clientId ?? 'aetn-realtime', ...opts.kafka, retry });
    this.admin = kafka.admin();
    this.producer = kafka.producer({ allowAutoTopicCreation: false, retry, createPartitioner: Partitioners.DefaultPartitioner });
    this.consumer = kafka.consumer({
      groupId: this.groupId,
      allowAutoTopicCreation: false,
      // Short fetch waits keep freshness low when traffic is light; full batches come anyway under load.
      maxWaitTimeInMs: 100,
      // 10 s (kafkajs default 30 s): after a crash the restarted consumer waits this long for the
      // dead member to expire before it gets the partitions back.
      sessionTimeout: opts.sessionTimeoutMs ?? 10_000,
      heartbeatInterval: Math.min(3000, Math.floor((opts.sessionTimeoutMs ?? 10_000) / 4)),
      retry: {
        ...retry,
        // Broker trouble (any KafkaJS error) restarts the consumer with backoff; our own failures
        // (store, head, bugs) do not: they end the pipeline and surface through `done`.
        restartOnFailure: async (err: Error) => isKafkaError(rootCause(err)),
      },
    });
    this.done = new Promise<void>((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    this.done.catch(() => undefined); // callers observe it; never an unhandled rejection
    this.consumer.on(this.consumer.events.CRASH, ({ payload }) => {
      const cause = rootCause(payload.error);
      if (payload.restart) {
        this.counters.restarts++;
        this.metrics.restarts.inc();
        log.warn({ err: cause.message, name: cause.name }, 'consumer crashed on a Kafka error; restarting with backoff');
      } else if (this.state !== 'stopping' && this.state !== 'stopped') {
        this.state = 'failed';
        log.error({ err: cause.message, name: cause.name }, 'realtime pipeline failed');
        this.settle.reject(cause);
      }
    });
  }

  /** Connects the clients and creates the topics if asked to. */
  async connect(): Promise<void> {
    if (this.state !== 'new') throw new Error(`connect() called in state ${this.state}`);
    await this.admin.connect();
    try {
      if (this.opts.createTopics ?? true) {
        await ensureTopics(this.admin, [
          { topic: this.topic, numPartitions: this.opts.numPartitions },
          { topic: this.dlqTopic, numPartitions: this.opts.numPartitions },
        ]);
      }
    } finally {
      await this.admin.disconnect();
    }
    await this.producer.connect();
    await this.consumer.connect();
    await this.consumer.subscribe({ topic: this.topic, fromBeginning: this.opts.fromBeginning ?? true });
    this.state = 'connected';
  }

  /** Starts consuming; returns once the consumer runs (watch `done` for the end). */
  async run(): Promise<void> {
    if (this.state !== 'connected') throw new Error(`run() called in state ${this.state}`);
    this.state = 'running';
    await this.consumer.run({
      eachBatchAutoResolve: false,
      autoCommit: true,
      autoCommitInterval: 1000,
      partitionsConsumedConcurrently: this.opts.partitionsConcurrently ?? 4,
      eachBatch: (payload) => this.eachBatch(payload),
    });
    log.info({ topic: this.topic, groupId: this.groupId, featureId: this.opts.featureId }, 'realtime pipeline running');
  }

  /**
   * Graceful stop: no new fetches, the in-flight chunks finish and commit, resolved offsets are
   * committed, the clients disconnect. Safe to call more than once.
   */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    const wasFailed = this.state === 'failed';
    this.state = 'stopping';
    try {
      await this.consumer.stop();
      await this.consumer.disconnect();
    } finally {
      await this.producer.disconnect();
      this.state = 'stopped';
      if (!wasFailed) this.settle.resolve();
    }
    log.info({ ...this.stats(), dlqByReason: undefined }, 'realtime pipeline stopped');
  }

  async disconnect(): Promise<void> {
    await this.stop();
  }

  stats(): PipelineStats {
    return { ...this.counters, dlqByReason: { ...this.counters.dlqByReason } };
  }

  private async eachBatch(p: EachBatchPayload): Promise<void> {
    const { batch } = p;
    const msgs = batch.messages;
    for (let i = 0; i < msgs.length; i += this.chunkSize) {
      if (!p.isRunning() || p.isStale()) break;
      const chunk = msgs.slice(i, i + this.chunkSize);
      this.opts.hooks?.beforeChunk?.(batch.topic, batch.partition, chunk.length);
      this.inFlight++;
      this.counters.maxConcurrentChunks = Math.max(this.counters.maxConcurrentChunks, this.inFlight);
      try {
        await this.processChunk(batch, chunk);
      } catch (err) {
        // kafkajs retries whatever eachBatch throws; only broker trouble deserves that. Our own
        // failures are marked non-retriable so that they end the pipeline at once.
        if (err instanceof Error && !isKafkaError(rootCause(err))) (err as Error & { retriable?: boolean }).retriable = false;
        throw err;
      } finally {
        this.inFlight--;
      }
      // Only now may Kafka learn that these offsets are done.
      p.resolveOffset(chunk[chunk.length - 1]!.offset);
      await p.heartbeat();
      if (p.isRunning()) await p.commitOffsetsIfNecessary();
    }
    if (!p.isRunning()) await p.commitOffsetsIfNecessary(p.uncommittedOffsets());
  }

  private async processChunk(batch: Batch, chunk: KafkaMessage[]): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.processChunkOnce(batch, chunk);
        return;
      } catch (err) {
        // Another writer applied this partition concurrently (a rebalance overlap): re-read and redo.
        if (err instanceof ConflictError && attempt < 5) {
          log.warn({ topic: batch.topic, partition: batch.partition, attempt }, 'partition chunk applied concurrently elsewhere; re-reading');
          continue;
        }
        throw err;
      }
    }
  }

  private async processChunkOnce(batch: Batch, chunk: KafkaMessage[]): Promise<void> {
    const t0 = performance.now();
    const { topic, partition } = batch;
    const nowMs = Date.now();
    const appliedBefore = this.stateDb.appliedOffset(topic, partition);
    const byUser = new Map<string, ValidEvent[]>();
    const produceTimes = new Map<string, number[]>();
    const dlq: Message[] = [];
    const dlqReasons: DlqReason[] = [];
    let skipped = 0;
    let lastOffset = -1;
    for (const m of chunk) {
      const offset = Number(m.offset);
      lastOffset = offset;
      if (offset <= appliedBefore) {
        skipped++;
        continue;
      }
      const r = decodeEvent(m.value, m.key, { vocab: this.opts.vocab, nowMs, maxFutureMs: this.opts.maxFutureMs ?? DEFAULT_MAX_FUTURE_MS });
      if (isRejection(r)) {
        dlqReasons.push(r.reason);
        dlq.push(
          dlqMessage(
            {
              reason: r.reason,
              detail: r.detail,
              source: { topic, partition, offset: m.offset, timestampMs: Number(m.timestamp) },
              key: m.key ? m.key.toString('utf8') : null,
              valueBase64: m.value ? m.value.toString('base64') : '',
              failedAtMs: nowMs,
              consumerGroup: this.groupId,
            },
            m.key,
          ),
        );
        continue;
      }
      let list = byUser.get(r.userId);
      if (!list) {
        list = [];
        byUser.set(r.userId, list);
        produceTimes.set(r.userId, []);
      }
      list.push(r);
      produceTimes.get(r.userId)!.push(Number(m.timestamp));
    }
    if (lastOffset <= appliedBefore) {
      // The whole chunk was applied before a crash: a replay, nothing to do.
      this.counters.skipped += skipped;
      this.metrics.replaySkipped.inc(skipped);
      return;
    }

    // Dead letters first: once the offset below commits they are never looked at again.
    if (dlq.length > 0) await this.producer.send({ topic: this.dlqTopic, messages: dlq, acks: -1 });

    const changed: RecentEvents[] = [];
    const changedTimes: number[] = [];
    let applied = 0;
    let duplicates = 0;
    for (const [userId, events] of byUser) {
      const res = applyEvents(this.stateDb.get(userId), userId, events, this.maxEvents, nowMs);
      applied += res.applied;
      duplicates += res.duplicates;
      if (res.applied > 0) {
        changed.push(res.state);
        for (const t of produceTimes.get(userId)!) changedTimes.push(t);
      }
    }
    const vectors = changed.length > 0 ? await this.opts.head(changed, nowMs) : [];
    if (!Array.isArray(vectors) || vectors.length !== changed.length) {
      throw new Error(`realtime head returned ${Array.isArray(vectors) ? vectors.length : typeof vectors} vectors for ${changed.length} users`);
    }
    const { featureId } = this.opts;
    await this.opts.store.transaction(() => {
      // Serialised with every other writer: if the partition moved on since we read it, redo.
      if (this.stateDb.appliedOffset(topic, partition) !== appliedBefore) throw new ConflictError('partition applied concurrently');
      for (let i = 0; i < changed.length; i++) {
        this.stateDb.putInTxn(changed[i]!);
        this.opts.store.putInTxn(featureId, changed[i]!.userId, vectors[i]!);
      }
      this.stateDb.setAppliedOffsetInTxn(topic, partition, lastOffset);
    });
    const durableAtMs = Date.now();

    this.counters.chunks++;
    this.counters.consumed += chunk.length - skipped;
    this.counters.skipped += skipped;
    if (skipped > 0) this.metrics.replaySkipped.inc(skipped);
    this.counters.applied += applied;
    this.counters.duplicates += duplicates;
    this.counters.dlq += dlq.length;
    this.counters.usersUpdated += changed.length;
    for (const r of dlqReasons) {
      this.counters.dlqByReason[r] = (this.counters.dlqByReason[r] ?? 0) + 1;
      this.metrics.dlq.inc({ reason: r });
    }
    this.metrics.events.inc({ result: 'applied' }, applied);
    if (duplicates) this.metrics.events.inc({ result: 'duplicate' }, duplicates);
    if (dlq.length) this.metrics.events.inc({ result: 'dlq' }, dlq.length);
    this.metrics.usersUpdated.inc(changed.length);
    this.metrics.batchEvents.observe(chunk.length);
    this.metrics.batchSeconds.observe((performance.now() - t0) / 1000);
    this.metrics.lag.set({ partition: String(partition) }, Math.max(0, Number(batch.highWatermark) - 1 - lastOffset));
    for (const t of changedTimes) this.metrics.freshness.observe(Math.max(0, durableAtMs - t) / 1000);
    if (dlq.length > 0) log.warn({ partition, count: dlq.length, reasons: countBy(dlqReasons) }, 'messages sent to the dead-letter topic');

    await this.opts.hooks?.afterDurable?.({
      topic,
      partition,
      firstOffset: Number(chunk[0]!.offset),
      lastOffset,
      applied,
      duplicates,
      dlq: dlq.length,
      skipped,
      users: changed.map((s) => s.userId),
      produceTimesMs: changedTimes,
      durableAtMs,
    });
  }

  /** A user's current recent-event state (read-only view for tools and tests). */
  recentEvents(userId: string): RecentEvents | undefined {
    return this.stateDb.get(userId);
  }
}

function countBy(xs: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}

function rootCause(err: unknown): Error {
  let e = err as Error & { cause?: unknown };
  for (let i = 0; i < 10 && e && e.cause instanceof Error; i++) e = e.cause as Error & { cause?: unknown };
  return e instanceof Error ? e : new Error(String(err));
}

function isKafkaError(err: Error): boolean {
  return typeof err.name === 'string' && err.name.startsWith('KafkaJS');
}
