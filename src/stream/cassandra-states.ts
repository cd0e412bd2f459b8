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
import type { StoredVector } from '../store/types.js';

const { Long } = cassandra.types;

/** Statements in flight per read or write of a unit. */
const CONCURRENCY = 64;

export class CassandraStates implements SharedStateStore {
  readonly kind = 'cassandra';
  private readonly qRead: string;
  private readonly qWrite: string;
  private readonly qVector: string;

  /** `client` is an open driver session (the store's); the table is created by the store's schema. */
  constructor(
    private readonly client: cassandra.Client,
    readonly keyspace: string,
  ) {
    if (!/^[a-z][a-z0-9_]{0,47}$/.test(keyspace)) throw new UserError(`keyspace ${JSON.stringify(keyspace)} is not a lower-case CQL name`);
    this.qRead = `SELECT events, applied, feature_id, v, WRITETIME(events) AS version FROM ${keyspace}.states WHERE user_id = ?`;
    this.qWrite = `INSERT INTO ${keyspace}.states (user_id, events, applied, feature_id, v) VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?`;
    this.qVector = `SELECT feature_id, v, events FROM ${keyspace}.states WHERE user_id = ?`;
  }

  async read(userIds: readonly string[]): Promise<Map<string, SharedUserRow>> {
    const out = new Map<string, SharedUserRow>();
    await forEachLimit(userIds, CONCURRENCY, async (userId) => {
      const r = (await this.client.execute(this.qRead, [userId], { prepare: true, isIdempotent: true })).first();
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
      await this.client.execute(this.qWrite, [row.state.userId, encodeEvents(row.state), applied, featureId, vectorBytes(row.vector), Long.fromNumber(row.version)], { prepare: true, isIdempotent: true });
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
