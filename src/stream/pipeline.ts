// The realtime pipeline: consume `app-events`, decode and validate (bad messages to the DLQ), and
// hand each chunk to the EventProcessor (processor.ts) — the same code the EventService's direct
// path uses — which dedupes, updates each user's recent events, runs the short-term head and
// writes states + vectors + the partition's applied offset in one LMDB transaction.
//
// Delivery: a chunk's Kafka offset is resolved only after its transaction is durable, so a crash
// replays and never loses. Replays are idempotent: messages at or below the applied offset
// recorded in LMDB are skipped, and an event id already in a user's window is not applied again.
// Chunks are pipelined (several in flight per partition, all partitions' transactions grouped
// into shared commits on lmdb-js's write thread), so the event loop never waits on an fsync.
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
import { EventProcessor, type UnitProcessor, type UnitResult } from './processor.js';
import { DEFAULT_MAX_EVENTS } from './state.js';
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
  /** The embedded store (state, vectors and per-partition offsets in LMDB); or give `processor`. */
  store?: PipelineStore;
  /**
   * The processing to use instead of an EventProcessor over `store`: a SharedStateProcessor when
   * the consumers of the group share their state (src/stream/shared-processor.ts).
   */
  processor?: UnitProcessor;
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
  /** A partition batch is processed in chunks of this many messages (one head call and one unit of durability each). */
  chunkSize?: number;
  /**
   * Chunks of one partition submitted before the oldest is durable (default 4): decoding and the
   * head of the next chunks overlap with the commit, and the bound keeps memory and latency finite.
   */
  chunksInFlight?: number;
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

export const DEFAULT_CHUNK_SIZE = 10_000;

interface Prepared {
  topic: string;
  partition: number;
  events: ValidEvent[];
  produceTimes: number[];
  offsets: number[];
  dlq: Message[];
  dlqReasons: DlqReason[];
  skipped: number;
  firstOffset: number;
  lastOffset: number;
  highWatermark: number;
}

export class RealtimePipeline {
  readonly metrics: StreamMetrics;
  readonly topic: string;
  readonly dlqTopic: string;
  readonly groupId: string;
  /** The processing shared with the EventService's direct path (dedupe, state, head, write). */
  readonly processor: UnitProcessor;
  private readonly chunkSize: number;
  private readonly chunksInFlight: number;
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
    // 10,000 (about what one 1 MB partition fetch holds): under a backlog a bigger unit touches
    // each user once for several events (fewer head rows and puts); measured 1.2x (stand-in) to
    // 2x (real head on a worker) the throughput of 2,000. Under a light load fetches are smaller
    // than this anyway, so it does not add latency there.
    this.chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
    this.chunksInFlight = opts.chunksInFlight ?? 4;
    if (!Number.isInteger(this.chunkSize) || this.chunkSize < 1) throw new UserError(`chunkSize must be a positive integer, got ${opts.chunkSize}`);
    if (!Number.isInteger(this.chunksInFlight) || this.chunksInFlight < 1) throw new UserError(`chunksInFlight must be a positive integer, got ${opts.chunksInFlight}`);
    this.metrics = opts.metrics ?? new StreamMetrics();
    if (opts.processor) this.processor = opts.processor;
    else if (opts.store) this.processor = new EventProcessor({ store: opts.store, head: opts.head, featureId: opts.featureId, maxEvents: opts.maxEvents ?? DEFAULT_MAX_EVENTS });
    else throw new UserError('the realtime pipeline needs a store or a processor');
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
    // A rejoin may have moved partitions: the processor drops what it cached from before.
    this.consumer.on(this.consumer.events.GROUP_JOIN, () => this.processor.newAssignment?.());
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
    let from = 0;
    for (let attempt = 0; ; attempt++) {
      let conflictAt: number | undefined;
      try {
        conflictAt = await this.runChunks(p, from);
      } catch (err) {
        // kafkajs retries whatever eachBatch throws; only broker trouble deserves that. Our own
        // failures are marked non-retriable so that they end the pipeline at once.
        if (err instanceof Error && !isKafkaError(rootCause(err))) (err as Error & { retriable?: boolean }).retriable = false;
        throw err;
      }
      if (conflictAt === undefined) break;
      // Another writer applied this partition concurrently (a rebalance overlap): re-read and redo.
      this.processor.clearConflict(batch.topic, batch.partition);
      if (attempt >= 5) {
        const err = new Error(`partition ${batch.topic}/${batch.partition} kept being applied concurrently by another writer`) as Error & { retriable?: boolean };
        err.retriable = false;
        throw err;
      }
      log.warn({ topic: batch.topic, partition: batch.partition, attempt }, 'partition chunk applied concurrently elsewhere; re-reading');
      from = conflictAt;
    }
    if (!p.isRunning()) await p.commitOffsetsIfNecessary(p.uncommittedOffsets());
  }

  /**
   * Processes the batch's messages from index `from` in chunks. Chunks are submitted to the
   * processor without waiting for the previous one to be durable (up to `chunksInFlight`), so
   * decoding and the head overlap with the commits; each chunk's offset is resolved, in order,
   * only once that chunk is durable. Returns the index of the first chunk that met a conflict.
   */
  private async runChunks(p: EachBatchPayload, from: number): Promise<number | undefined> {
    const { batch } = p;
    const { topic, partition } = batch;
    const msgs = batch.messages;
    // No unit of this partition is in flight here (kafkajs hands a partition to one eachBatch
    // at a time, and we drain before returning), so the stored offset is current.
    let appliedBefore = this.processor.appliedOffset(topic, partition);
    type Pending = { start: number; size: number; t0: number; prep: Prepared; unit: Promise<UnitResult> | null };
    const inflight: Pending[] = [];
    let conflictAt: number | undefined;
    const settleOldest = async () => {
      const f = inflight.shift()!;
      let r: UnitResult | null;
      try {
        r = f.unit ? await f.unit : null;
      } finally {
        if (f.unit) this.inFlight--;
      }
      if (r?.conflict) conflictAt ??= f.start;
      if (conflictAt !== undefined) return; // nothing after a conflict is resolved; it is redone
      await this.chunkDone(p, f.prep, r, f.size, f.t0);
      // Only now may Kafka learn that these offsets are done.
      p.resolveOffset(String(f.prep.lastOffset));
      await p.heartbeat();
      if (p.isRunning()) await p.commitOffsetsIfNecessary();
    };
    try {
      for (let i = from; i < msgs.length; i += this.chunkSize) {
        if (!p.isRunning() || p.isStale() || conflictAt !== undefined) break;
        const chunk = msgs.slice(i, i + this.chunkSize);
        this.opts.hooks?.beforeChunk?.(topic, partition, chunk.length);
        const t0 = performance.now();
        const prep = this.prepare(batch, chunk, appliedBefore);
        let unit: Promise<UnitResult> | null = null;
        if (prep.lastOffset > appliedBefore) {
          // Dead letters first: once the offset below commits they are never looked at again.
          if (prep.dlq.length > 0) await this.producer.send({ topic: this.dlqTopic, messages: prep.dlq, acks: -1 });
          unit = this.processor.submit({ events: prep.events, produceTimesMs: prep.produceTimes, offsets: prep.offsets, offset: { topic, partition, appliedBefore, lastOffset: prep.lastOffset } });
          unit.catch(() => undefined); // awaited in order by settleOldest
          this.inFlight++;
          this.counters.maxConcurrentChunks = Math.max(this.counters.maxConcurrentChunks, this.inFlight);
          appliedBefore = prep.lastOffset;
        } // else: the whole chunk was applied before a crash; a replay, nothing to write
        inflight.push({ start: i, size: chunk.length, t0, prep, unit });
        while (inflight.length >= this.chunksInFlight) await settleOldest();
      }
      while (inflight.length > 0) await settleOldest();
    } finally {
      // On a failure (or a rebalance error from heartbeat/commit), the units still in flight
      // settle on their own: those that become durable are still counted and reported, but their
      // offsets are left unresolved (a redelivery skips them by the applied offset in LMDB).
      for (const f of inflight) {
        if (!f.unit) continue;
        f.unit
          .finally(() => this.inFlight--)
          .then((r) => (r.conflict ? undefined : this.chunkDone(p, f.prep, r, f.size, f.t0)))
          .catch(() => undefined);
      }
    }
    return conflictAt;
  }

  /** Decodes and validates a chunk: events to apply, dead letters, replayed messages skipped. */
  private prepare(batch: Batch, chunk: KafkaMessage[], appliedBefore: number): Prepared {
    const { topic, partition } = batch;
    const nowMs = Date.now();
    const events: ValidEvent[] = [];
    const produceTimes: number[] = [];
    const offsets: number[] = [];
    const dlq: Message[] = [];
    const dlqReasons: DlqReason[] = [];
    let skipped = 0;
    let lastOffset = -1;
    const decodeOpts = { vocab: this.opts.vocab, nowMs, maxFutureMs: this.opts.maxFutureMs ?? DEFAULT_MAX_FUTURE_MS, isForgotten: (u: string) => this.processor.isForgotten(u) };
    for (const m of chunk) {
      const offset = Number(m.offset);
      lastOffset = offset;
      if (offset <= appliedBefore) {
        skipped++;
        continue;
      }
      const r = decodeEvent(m.value, m.key, decodeOpts);
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
      events.push(r);
      produceTimes.push(Number(m.timestamp));
      offsets.push(offset);
    }
    return { events, produceTimes, offsets, dlq, dlqReasons, skipped, firstOffset: Number(chunk[0]!.offset), lastOffset, highWatermark: Number(batch.highWatermark), topic, partition };
  }

  /** Counters, metrics and the afterDurable hook of a chunk that is durable (or was all replay). */
  private async chunkDone(_p: EachBatchPayload, prep: Prepared, r: UnitResult | null, size: number, t0: number): Promise<void> {
    const { topic, partition, skipped } = prep;
    this.counters.skipped += skipped;
    if (skipped > 0) this.metrics.replaySkipped.inc(skipped);
    if (!r) return; // a replay of what was applied before a crash: nothing else happened
    if (r.skipped) {
      // Per-user offsets (shared state): redelivered events found already applied.
      this.counters.skipped += r.skipped;
      this.metrics.replaySkipped.inc(r.skipped);
    }
    const durableAtMs = r.durableAtMs;
    this.counters.chunks++;
    this.counters.consumed += size - skipped - (r.skipped ?? 0);
    this.counters.applied += r.applied;
    this.counters.duplicates += r.duplicates;
    this.counters.dlq += prep.dlq.length;
    this.counters.usersUpdated += r.users.length;
    for (const reason of prep.dlqReasons) {
      this.counters.dlqByReason[reason] = (this.counters.dlqByReason[reason] ?? 0) + 1;
      this.metrics.dlq.inc({ reason });
    }
    this.metrics.events.inc({ result: 'applied' }, r.applied);
    if (r.duplicates) this.metrics.events.inc({ result: 'duplicate' }, r.duplicates);
    if (prep.dlq.length) this.metrics.events.inc({ result: 'dlq' }, prep.dlq.length);
    this.metrics.usersUpdated.inc(r.users.length);
    this.metrics.batchEvents.observe(size);
    this.metrics.batchSeconds.observe((performance.now() - t0) / 1000);
    this.metrics.lag.set({ partition: String(partition) }, Math.max(0, prep.highWatermark - 1 - prep.lastOffset));
    for (const t of r.produceTimesMs) this.metrics.freshness.observe(Math.max(0, durableAtMs - t) / 1000);
    if (prep.dlq.length > 0) log.warn({ partition, count: prep.dlq.length, reasons: countBy(prep.dlqReasons) }, 'messages sent to the dead-letter topic');

    await this.opts.hooks?.afterDurable?.({
      topic,
      partition,
      firstOffset: prep.firstOffset,
      lastOffset: prep.lastOffset,
      applied: r.applied,
      duplicates: r.duplicates,
      dlq: prep.dlq.length,
      skipped,
      users: r.users,
      produceTimesMs: r.produceTimesMs,
      durableAtMs,
    });
  }

  /** A user's current recent-event state (read-only view for tools and tests). */
  recentEvents(userId: string): RecentEvents | undefined {
    return this.processor.state(userId);
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
