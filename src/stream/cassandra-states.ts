// The realtime state of the cluster mode in Cassandra's `states` table (docs/parts/scale-out.md):
//
//   states (user_id text PRIMARY KEY, events blob, applied map<int, bigint>, feature_id text, v blob)
//
// (created with the rest of the store's schema: src/store/cassandra.ts, `aetn store init`).
// One row per user holds the recent-events window (`events`, the blob of shared-state.ts), the
// offsets of the user's events applied per Kafka partition, and the short-term vector with its
// feature id. A row is written whole by one INSERT, a single-partition write that Cassandra
// applies atomically and in isolation, `USING TIMESTAMP <version>` where the version is the Kafka
// offset of the newest event in it: Cassandra keeps, per cell, the write with the highest
// timestamp, which is the last-version-wins rule SharedStateStore asks for, without a read before
// the write and without lightweight transactions. A zombie's older unit carries an older
// timestamp and loses. The version of a stored row is WRITETIME(events).
//
// Consequences of timestamps taken from offsets: a deletion at wall-clock time (erasing a user)
// outranks every offset, so an erased user's row cannot be written again by a late event; and a
// topic that is recreated (offsets from 0 again) needs the table truncated first.
import cassandra from 'cassandra-driver';
import { bytesVector, decodeEvents, encodeEvents, updatedAtOf, vectorBytes, type SharedStateStore, type SharedUserRow } from './shared-state.js';
import { UserError } from '../util/errors.js';
import { child } from '../util/log.js';
import { withRetry } from '../util/retry.js';
import type { StoredVector } from '../store/types.js';

const { Long } = cassandra.types;
const log = child('stream');

/**
 * Failures that say nothing about the statement, only that the cluster could not answer it now:
 * a request that timed out (client or coordinator side), too few replicas alive, an overloaded or
 * bootstrapping coordinator, no host reachable. Every statement here is idempotent (a row is
 * written whole under its version), so repeating one is safe.
 */
export function isTransientCassandraError(err: unknown): boolean {
  const e = cassandra.errors;
  if (err instanceof e.OperationTimedOutError || err instanceof e.NoHostAvailableError || err instanceof e.BusyConnectionError) return true;
  if (err instanceof e.ResponseError) {
    const c = cassandra.types.responseErrorCodes;
    return [c.unavailableException, c.overloaded, c.isBootstrapping, c.writeTimeout, c.readTimeout].includes(err.code);
  }
  return false;
}

export interface CassandraStatesOptions {
  /**
   * How long a read or write of the realtime consumer (read, write) keeps retrying transient
   * failures, with backoff, before it fails (default 0: no retry, as on the serving path).
   */
  retryBudgetMs?: number;
  /** Told of each retried failure (metrics). */
  onRetry?: (err: unknown) => void;
}

/** Statements in flight per read or write of a unit. */
const CONCURRENCY = 64;

export class CassandraStates implements SharedStateStore {
  readonly kind = 'cassandra';
  private readonly qRead: string;
  private readonly qWrite: string;
  private readonly qVector: string;
  /** Retries since the last warning (one warning a second at most, however many statements wait). */
  private retriesUnlogged = 0;
  private lastWarnMs = 0;

  /** `client` is an open driver session (the store's); the table is created by the store's schema. */
  constructor(
    private readonly client: cassandra.Client,
    readonly keyspace: string,
    private readonly opts: CassandraStatesOptions = {},
  ) {
    if (!/^[a-z][a-z0-9_]{0,47}$/.test(keyspace)) throw new UserError(`keyspace ${JSON.stringify(keyspace)} is not a lower-case CQL name`);
    this.qRead = `SELECT events, applied, feature_id, v, WRITETIME(events) AS version FROM ${keyspace}.states WHERE user_id = ?`;
    this.qWrite = `INSERT INTO ${keyspace}.states (user_id, events, applied, feature_id, v) VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?`;
    this.qVector = `SELECT feature_id, v, events FROM ${keyspace}.states WHERE user_id = ?`;
  }

  async read(userIds: readonly string[]): Promise<Map<string, SharedUserRow>> {
    const out = new Map<string, SharedUserRow>();
    await forEachLimit(userIds, CONCURRENCY, async (userId) => {
      const r = (await this.retrying('read', () => this.client.execute(this.qRead, [userId], { prepare: true, isIdempotent: true }))).first();
      if (!r || r.get('events') === null) return;
      const applied = new Map<number, number>();
      for (const [k, v] of Object.entries((r.get('applied') ?? {}) as Record<string, cassandra.types.Long>)) applied.set(Number(k), Number(v));
      out.set(userId, {
        state: decodeEvents(userId, r.get('events') as Buffer),
        applied,
        vector: r.get('v') ? bytesVector(r.get('v') as Buffer) : new Float32Array(0),
        version: Number(r.get('version')),
      });
    });
    return out;
  }

  async write(featureId: string, rows: readonly SharedUserRow[]): Promise<void> {
    await forEachLimit(rows, CONCURRENCY, async (row) => {
      if (!Number.isSafeInteger(row.version) || row.version < 0) throw new Error(`state version of user ${row.state.userId} is ${row.version}: not a Kafka offset`);
      const applied: Record<number, cassandra.types.Long> = {};
      for (const [p, o] of row.applied) applied[p] = Long.fromNumber(o);
      const params = [row.state.userId, encodeEvents(row.state), applied, featureId, vectorBytes(row.vector), Long.fromNumber(row.version)];
      await this.retrying('write', () => this.client.execute(this.qWrite, params, { prepare: true, isIdempotent: true }));
    });
  }

  async vectors(featureId: string, userIds: readonly string[]): Promise<(StoredVector | undefined)[]> {
    const out: (StoredVector | undefined)[] = new Array(userIds.length).fill(undefined);
    await forEachLimit([...userIds.keys()], CONCURRENCY, async (i) => {
      const r = (await this.client.execute(this.qVector, [userIds[i]!], { prepare: true, isIdempotent: true })).first();
      if (r && r.get('feature_id') === featureId && r.get('v') && r.get('events')) out[i] = { featureId, vector: bytesVector(r.get('v') as Buffer), updatedAtMs: updatedAtOf(r.get('events') as Buffer) };
    });
    return out;
  }

  private retrying<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const budgetMs = this.opts.retryBudgetMs ?? 0;
    if (budgetMs <= 0) return fn();
    return withRetry(fn, {
      budgetMs,
      isTransient: isTransientCassandraError,
      onRetry: (err, attempt) => {
        this.opts.onRetry?.(err);
        this.retriesUnlogged++;
        if (Date.now() - this.lastWarnMs < 1000) return;
        log.warn({ err: (err as Error).message, name: (err as Error).name, attempt, what, retries: this.retriesUnlogged, budgetMs }, 'Cassandra states: transient failures, retrying');
        this.retriesUnlogged = 0;
        this.lastWarnMs = Date.now();
      },
    });
  }

  /** The session belongs to the store that opened it; closing it is the store's. */
  async close(): Promise<void> {}
}

async function forEachLimit<T>(items: readonly T[], limit: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
