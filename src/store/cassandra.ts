// The shared store of the cluster mode on Apache Cassandra 5 (docs/parts/scale-out.md): the same
// contract as the LMDB EmbeddingStore (store.ts) for what serving, batch embedding and the index
// build need, with the data replicated by Cassandra. aetn adds no replication or consensus.
//
// Tables (keyspace `store.cassandra.keyspace`, NetworkTopologyStrategy):
//   features       feature_id -> info (JSON of the FeatureInfo without its count)
//   vectors        ((feature_id, bucket), user_id) -> updated_ms, v (float32 little-endian)
//                  bucket = fnv1a32(user_id) % 1024: a feature scan reads 1,024 partitions in
//                  parallel; no vector index (the replicas search their own hnswlib index)
//   runs           run_id -> state (JSON), updated_ms           resumable jobs' markers
//   installers     app_key -> users (JSON list)                 look-alike seeds
//   user_apps      user_id -> apps (JSON list)                  look-alike app features
//   app_users      app_key -> n                                 users keeping each app
//   user_ever_apps user_id -> apps (JSON list)                  apps ever installed (history member)
//   app_ever_users app_key -> n                                 users who ever installed each app
//   forgotten      user_id -> at_ms                             erased users (tombstones)
//   meta           key -> value                                 forget_seq, schema version
//   states         user_id -> events, applied, feature_id, v   realtime state + short-term vector
//                  (src/stream/cassandra-states.ts writes and reads it)
//   index_files    ((feature_id, generation), name, chunk) -> bytes   an index generation's files
//   index_current  feature_id -> generation, manifest            the live generation (the swap)
//
// Writes of one vector are single-row upserts, so re-running a job (a resumed shard) rewrites the
// same bytes. Every statement runs at `store.cassandra.consistency`.
import cassandra from 'cassandra-driver';
import { closeSync, fsyncSync, openSync, readSync, statSync, writeSync } from 'node:fs';
import { fnv1a32 } from '../util/hash.js';
import { StoreError, checkFeatureId, checkKey } from './errors.js';
import type { MaybePromise, Store, StoredEntryLike } from './backend.js';
import type { FeatureInfo, Namespace, NewFeature, RunState, StoredVector, VectorEntry } from './types.js';

/** Partitions per feature in `vectors`; part of the data layout (changing it needs a re-embed). */
export const BUCKETS = 1024;
const SCHEMA_VERSION = 1;
const MAX_DIM = 65536;
/** Statements in flight per batch operation (one connection per host carries them). */
const CONCURRENCY = 64;
/** Buckets scanned at once by iterate/userIds. */
const SCAN_PARALLEL = 8;
const SCAN_PAGE = 2000;

export type CassandraConsistencyName = 'one' | 'localOne' | 'quorum' | 'localQuorum' | 'all';

export interface CassandraOptions {
  contactPoints: readonly string[];
  localDataCenter: string;
  keyspace: string;
  replicationFactor: number;
  consistency: CassandraConsistencyName;
  requestTimeoutMs: number;
}

const CONSISTENCY: Record<CassandraConsistencyName, number> = {
  one: cassandra.types.consistencies.one,
  localOne: cassandra.types.consistencies.localOne,
  quorum: cassandra.types.consistencies.quorum,
  localQuorum: cassandra.types.consistencies.localQuorum,
  all: cassandra.types.consistencies.all,
};

type FeatureRecord = Omit<FeatureInfo, 'count'>;

export function bucketOf(userId: string): number {
  return fnv1a32(userId) % BUCKETS;
}

/** Opens a driver session to the cluster (no keyspace bound: statements name `keyspace.table`). */
export async function connectCassandra(opts: CassandraOptions): Promise<cassandra.Client> {
  if (!/^[a-z][a-z0-9_]{0,47}$/.test(opts.keyspace)) throw new StoreError('INVALID_ARGUMENT', `keyspace ${JSON.stringify(opts.keyspace)} is not a lower-case CQL name`);
  if (!(opts.consistency in CONSISTENCY)) throw new StoreError('INVALID_ARGUMENT', `unknown consistency ${JSON.stringify(opts.consistency)}`);
  const client = new cassandra.Client({
    contactPoints: [...opts.contactPoints],
    localDataCenter: opts.localDataCenter,
    queryOptions: { consistency: CONSISTENCY[opts.consistency], prepare: true },
    socketOptions: { readTimeout: opts.requestTimeoutMs, connectTimeout: Math.min(opts.requestTimeoutMs, 10_000) },
    // Reads and upserts here are idempotent: the driver may retry them on another node once.
    policies: { retry: new cassandra.policies.retry.IdempotenceAwareRetryPolicy(new cassandra.policies.retry.RetryPolicy()) },
  });
  try {
    await client.connect();
  } catch (err) {
    await client.shutdown().catch(() => undefined);
    throw new StoreError(
      'FAILED_PRECONDITION',
      `cannot reach Cassandra at ${opts.contactPoints.join(', ')} (data center ${opts.localDataCenter}): ${driverMessage(err)}`,
    );
  }
  return client;
}

/** The CQL that creates the keyspace and every table; idempotent (IF NOT EXISTS everywhere). */
export function schemaStatements(keyspace: string, localDataCenter: string, replicationFactor: number): string[] {
  const ks = keyspace;
  return [
    `CREATE KEYSPACE IF NOT EXISTS ${ks} WITH replication = {'class': 'NetworkTopologyStrategy', '${localDataCenter.replace(/'/g, "''")}': ${replicationFactor}}`,
    `CREATE TABLE IF NOT EXISTS ${ks}.meta (key text PRIMARY KEY, value text)`,
    `CREATE TABLE IF NOT EXISTS ${ks}.features (feature_id text PRIMARY KEY, info text)`,
    `CREATE TABLE IF NOT EXISTS ${ks}.vectors (feature_id text, bucket int, user_id text, updated_ms bigint, v blob, PRIMARY KEY ((feature_id, bucket), user_id))`,
    `CREATE TABLE IF NOT EXISTS ${ks}.runs (run_id text PRIMARY KEY, state text, updated_ms bigint)`,
    `CREATE TABLE IF NOT EXISTS ${ks}.installers (app_key text PRIMARY KEY, users text)`,
    `CREATE TABLE IF NOT EXISTS ${ks}.user_apps (user_id text PRIMARY KEY, apps text)`,
    `CREATE TABLE IF NOT EXISTS ${ks}.app_users (app_key text PRIMARY KEY, n int)`,
    `CREATE TABLE IF NOT EXISTS ${ks}.user_ever_apps (user_id text PRIMARY KEY, apps text)`,
    `CREATE TABLE IF NOT EXISTS ${ks}.app_ever_users (app_key text PRIMARY KEY, n int)`,
    `CREATE TABLE IF NOT EXISTS ${ks}.forgotten (user_id text PRIMARY KEY, at_ms bigint)`,
    `CREATE TABLE IF NOT EXISTS ${ks}.states (user_id text PRIMARY KEY, events blob, applied map<int, bigint>, feature_id text, v blob)`,
    `CREATE TABLE IF NOT EXISTS ${ks}.index_files (feature_id text, generation int, name text, chunk int, bytes blob, PRIMARY KEY ((feature_id, generation), name, chunk))`,
    `CREATE TABLE IF NOT EXISTS ${ks}.index_current (feature_id text PRIMARY KEY, generation int, manifest text)`,
  ];
}

/**
 * Creates the keyspace (replication factor from the options, only when it does not exist yet) and
 * every table, then records the schema version; refuses a keyspace written by another layout.
 */
export async function ensureSchema(client: cassandra.Client, opts: Pick<CassandraOptions, 'keyspace' | 'localDataCenter' | 'replicationFactor'>): Promise<void> {
  if (!Number.isInteger(opts.replicationFactor) || opts.replicationFactor < 1) {
    throw new StoreError('INVALID_ARGUMENT', `replication factor must be a positive integer, got ${String(opts.replicationFactor)}`);
  }
  // DDL at ALL would fail with a node down; schema changes go through the driver's schema agreement.
  for (const q of schemaStatements(opts.keyspace, opts.localDataCenter, opts.replicationFactor)) await client.execute(q, [], { prepare: false });
  const row = (await client.execute(`SELECT value FROM ${opts.keyspace}.meta WHERE key = 'schema'`)).first();
  if (!row) {
    await client.execute(`INSERT INTO ${opts.keyspace}.meta (key, value) VALUES ('schema', ?) IF NOT EXISTS`, [JSON.stringify({ format: 'aetn-cassandra-store', version: SCHEMA_VERSION, buckets: BUCKETS })]);
    return;
  }
  const v = JSON.parse(row.get('value') as string) as { format?: string; version?: number; buckets?: number };
  if (v.format !== 'aetn-cassandra-store' || v.version !== SCHEMA_VERSION || v.buckets !== BUCKETS) {
    throw new StoreError('FAILED_PRECONDITION', `keyspace ${opts.keyspace} holds ${JSON.stringify(v)}; this build reads aetn-cassandra-store v${SCHEMA_VERSION} with ${BUCKETS} buckets`);
  }
}

export interface IndexGenerationRow {
  generation: number;
  manifest: string;
}

export class CassandraStore implements Store {
  readonly backend = 'cassandra' as const;
  readonly location: string;
  private closed = false;
  private readonly ks: string;

  private constructor(
    readonly client: cassandra.Client,
    readonly opts: CassandraOptions,
  ) {
    this.ks = opts.keyspace;
    this.location = `cassandra://${opts.contactPoints.join(',')}/${opts.keyspace}`;
  }

  /**
   * Connects and (unless `create` is false) creates the keyspace and tables. With create false, a
   * keyspace that has not been set up is refused, as an LMDB reader refuses a missing store.
   */
  static async open(opts: CassandraOptions, o: { create?: boolean } = {}): Promise<CassandraStore> {
    const client = await connectCassandra(opts);
    try {
      if (o.create ?? true) await ensureSchema(client, opts);
      else if (!client.metadata.keyspaces[opts.keyspace] || !(await client.execute(`SELECT value FROM ${opts.keyspace}.meta WHERE key = 'schema'`).catch(() => undefined))?.first()) {
        throw new StoreError('NOT_FOUND', `no aetn store in keyspace ${opts.keyspace} at ${opts.contactPoints.join(', ')}; run \`aetn store init --store-backend cassandra\` or an embed job first`);
      }
      return new CassandraStore(client, opts);
    } catch (err) {
      await client.shutdown().catch(() => undefined);
      throw err;
    }
  }

  private q(table: string): string {
    return `${this.ks}.${table}`;
  }

  private checkOpen(): void {
    if (this.closed) throw new Error('the Cassandra store is closed');
  }

  // ---------------------------------------------------------------- feature registry

  async registerFeature(info: NewFeature): Promise<FeatureInfo> {
    this.checkOpen();
    const featureId = checkFeatureId(info.featureId);
    if (info.namespace !== 'long' && info.namespace !== 'short') throw new StoreError('INVALID_ARGUMENT', `namespace must be 'long' or 'short', got ${JSON.stringify(info.namespace)}`);
    if (!Number.isInteger(info.dim) || info.dim < 1 || info.dim > MAX_DIM) throw new StoreError('INVALID_ARGUMENT', `dim must be an integer in 1..${MAX_DIM}, got ${String(info.dim)}`);
    if (typeof info.variant !== 'string' || info.variant.length === 0) throw new StoreError('INVALID_ARGUMENT', 'variant must be a non-empty string (e.g. "aetn")');
    if (info.baseFeatureId !== undefined) {
      const base = await this.record(checkFeatureId(info.baseFeatureId));
      if (!base) throw new StoreError('NOT_FOUND', `base feature ${info.baseFeatureId} is not registered`);
      if (base.namespace !== 'long') throw new StoreError('INVALID_ARGUMENT', `base feature ${info.baseFeatureId} is not a long-term feature`);
    }
    const rec: FeatureRecord = {
      featureId,
      namespace: info.namespace,
      dim: info.dim,
      variant: info.variant,
      createdAtMs: info.createdAtMs ?? Date.now(),
      retired: false,
      ...(info.baseFeatureId !== undefined ? { baseFeatureId: info.baseFeatureId } : {}),
      ...(info.meta !== undefined ? { meta: info.meta } : {}),
    };
    // A lightweight transaction: two shards registering the same id at once agree on one record.
    const r = await this.client.execute(`INSERT INTO ${this.q('features')} (feature_id, info) VALUES (?, ?) IF NOT EXISTS`, [featureId, JSON.stringify(rec)]);
    if (r.wasApplied()) return { ...rec, count: 0 };
    const existing = JSON.parse(r.first().get('info') as string) as FeatureRecord;
    if (existing.retired) throw new StoreError('FAILED_PRECONDITION', `feature ${featureId} is retired; a new model needs a new feature id`);
    if (existing.namespace !== info.namespace || existing.dim !== info.dim || existing.variant !== info.variant) {
      throw new StoreError(
        'FAILED_PRECONDITION',
        `feature ${featureId} is already registered as ${existing.namespace}/${existing.variant}/${existing.dim}-d; ` +
          `refusing ${info.namespace}/${info.variant}/${info.dim}-d (vectors of two models never share an id)`,
      );
    }
    return { ...existing, count: await this.countOf(existing.featureId) };
  }

  private async record(featureId: string): Promise<FeatureRecord | undefined> {
    const row = (await this.client.execute(`SELECT info FROM ${this.q('features')} WHERE feature_id = ?`, [featureId])).first();
    return row ? (JSON.parse(row.get('info') as string) as FeatureRecord) : undefined;
  }

  /**
   * Every registered feature, oldest first. `count` is the number of users in the feature's live
   * index generation (0 before its first index): counting rows would scan the whole feature.
   */
  async features(): Promise<FeatureInfo[]> {
    this.checkOpen();
    const rows = (await this.client.execute(`SELECT info FROM ${this.q('features')}`, [], { fetchSize: 10_000 })).rows;
    const counts = await this.indexCounts();
    return rows
      .map((r) => JSON.parse(r.get('info') as string) as FeatureRecord)
      .map((rec) => ({ ...rec, count: counts.get(rec.featureId) ?? 0 }))
      .sort((a, b) => a.createdAtMs - b.createdAtMs || a.featureId.localeCompare(b.featureId));
  }

  async getFeature(featureId: string): Promise<FeatureInfo | undefined> {
    this.checkOpen();
    const rec = await this.record(checkFeatureId(featureId));
    return rec ? { ...rec, count: await this.countOf(featureId) } : undefined;
  }

  async defaultFeature(namespace: Namespace): Promise<FeatureInfo | undefined> {
    let best: FeatureInfo | undefined;
    for (const f of await this.features()) {
      if (f.namespace !== namespace || f.retired) continue;
      if (!best || f.createdAtMs > best.createdAtMs || (f.createdAtMs === best.createdAtMs && f.featureId > best.featureId)) best = f;
    }
    return best;
  }

  async retire(featureId: string): Promise<FeatureInfo> {
    const rec = await this.record(checkFeatureId(featureId));
    if (!rec) throw new StoreError('NOT_FOUND', `feature ${featureId} is not registered`);
    if (rec.retired) return { ...rec, count: await this.countOf(featureId) };
    const next: FeatureRecord = { ...rec, retired: true, retiredAtMs: Date.now() };
    await this.client.execute(`INSERT INTO ${this.q('features')} (feature_id, info) VALUES (?, ?)`, [featureId, JSON.stringify(next)]);
    return { ...next, count: await this.countOf(featureId) };
  }

  private async indexCounts(): Promise<Map<string, number>> {
    const rows = (await this.client.execute(`SELECT feature_id, manifest FROM ${this.q('index_current')}`, [], { fetchSize: 10_000 })).rows;
    return new Map(rows.map((r) => [r.get('feature_id') as string, (JSON.parse(r.get('manifest') as string) as { count: number }).count]));
  }

  private async countOf(featureId: string): Promise<number> {
    const row = (await this.client.execute(`SELECT manifest FROM ${this.q('index_current')} WHERE feature_id = ?`, [featureId])).first();
    return row ? (JSON.parse(row.get('manifest') as string) as { count: number }).count : 0;
  }

  /** Users with a vector in the feature: what the live index holds (see `features`). */
  count(featureId: string): Promise<number> {
    this.checkOpen();
    return this.countOf(checkFeatureId(featureId));
  }

  /** Counts the stored rows themselves (one COUNT per bucket partition): exact, but reads the feature. */
  async countRows(featureId: string): Promise<number> {
    let n = 0;
    await forEachLimit(range(BUCKETS), CONCURRENCY, async (b) => {
      const row = (await this.client.execute(`SELECT COUNT(*) AS n FROM ${this.q('vectors')} WHERE feature_id = ? AND bucket = ?`, [featureId, b])).first();
      n += Number(row.get('n'));
    });
    return n;
  }

  private async readable(featureId: string): Promise<FeatureRecord> {
    this.checkOpen();
    const rec = await this.record(checkFeatureId(featureId));
    if (!rec) throw new StoreError('NOT_FOUND', `unknown feature id ${featureId}`);
    if (rec.retired) throw new StoreError('FAILED_PRECONDITION', `feature ${featureId} is retired`);
    return rec;
  }

  // ---------------------------------------------------------------- vectors

  /** Batch read: the ids of one bucket go in one query (user_id IN ...), buckets in parallel. */
  async getMany(featureId: string, userIds: readonly string[], dimHint?: number): Promise<(StoredVector | undefined)[]> {
    const dim = dimHint ?? (await this.readable(featureId)).dim;
    for (const u of userIds) if (typeof u !== 'string' || u.length === 0 || u.length > 512) checkKey('user id', u);
    const byBucket = new Map<number, string[]>();
    for (const u of new Set(userIds)) {
      const b = bucketOf(u);
      let l = byBucket.get(b);
      if (!l) byBucket.set(b, (l = []));
      l.push(u);
    }
    const found = new Map<string, StoredVector>();
    await forEachLimit([...byBucket], CONCURRENCY, async ([b, ids]) => {
      for (let i = 0; i < ids.length; i += 100) {
        const part = ids.slice(i, i + 100);
        const rs = await this.client.execute(`SELECT user_id, updated_ms, v FROM ${this.q('vectors')} WHERE feature_id = ? AND bucket = ? AND user_id IN ?`, [featureId, b, part]);
        for (const r of rs.rows) {
          const u = r.get('user_id') as string;
          found.set(u, { featureId, vector: decodeVector(r.get('v') as Buffer, dim, featureId, u), updatedAtMs: Number(r.get('updated_ms')) });
        }
      }
    });
    return userIds.map((u) => found.get(u));
  }

  async putMany(featureId: string, entries: readonly VectorEntry[], opts: { runState?: { runId: string; state: RunState }; updatedAtMs?: number } = {}): Promise<number> {
    this.checkOpen();
    const rec = await this.readable(featureId);
    for (const e of entries) {
      checkKey('user id', e?.userId);
      checkVector(e.vector, rec.dim, featureId, e.userId);
    }
    if (opts.runState) checkKey('run id', opts.runState.runId);
    const now = opts.updatedAtMs ?? Date.now();
    const forgotten = await this.forgottenSet();
    const keep = forgotten.size === 0 ? entries : entries.filter((e) => !forgotten.has(e.userId));
    const q = `INSERT INTO ${this.q('vectors')} (feature_id, bucket, user_id, updated_ms, v) VALUES (?, ?, ?, ?, ?)`;
    await forEachLimit(keep, CONCURRENCY, async (e) => {
      await this.client.execute(q, [featureId, bucketOf(e.userId), e.userId, cassandra.types.Long.fromNumber(now), encodeVector(e.vector)], { isIdempotent: true });
    });
    // After every vector it covers is acknowledged: a resumed run never skips an unwritten user.
    if (opts.runState) await this.setRunState(opts.runState.runId, opts.runState.state);
    return entries.length - keep.length;
  }

  /** Every vector of the feature, bucket after bucket (a few buckets read ahead in parallel). */
  async *iterate(featureId: string): AsyncGenerator<StoredEntryLike> {
    const { dim } = await this.readable(featureId);
    const q = `SELECT user_id, updated_ms, v FROM ${this.q('vectors')} WHERE feature_id = ? AND bucket = ?`;
    for await (const rows of this.scanBuckets(featureId, q)) {
      for (const r of rows) {
        const u = r.get('user_id') as string;
        yield { userId: u, vector: decodeVector(r.get('v') as Buffer, dim, featureId, u), updatedAtMs: Number(r.get('updated_ms')) };
      }
    }
  }

  async *userIds(featureId: string): AsyncGenerator<string> {
    await this.readable(featureId);
    const q = `SELECT user_id FROM ${this.q('vectors')} WHERE feature_id = ? AND bucket = ?`;
    for await (const rows of this.scanBuckets(featureId, q)) for (const r of rows) yield r.get('user_id') as string;
  }

  /** The rows of each bucket partition in turn, SCAN_PARALLEL buckets fetched ahead. */
  private async *scanBuckets(featureId: string, query: string): AsyncGenerator<cassandra.types.Row[]> {
    const fetchBucket = async (b: number): Promise<cassandra.types.Row[]> => {
      const out: cassandra.types.Row[] = [];
      let pageState: string | undefined;
      do {
        const rs = await this.client.execute(query, [featureId, b], { fetchSize: SCAN_PAGE, ...(pageState ? { pageState } : {}) });
        for (const r of rs.rows) out.push(r);
        pageState = rs.pageState ?? undefined;
      } while (pageState);
      return out;
    };
    const ahead: Promise<cassandra.types.Row[]>[] = [];
    let next = 0;
    const fill = () => {
      while (ahead.length < SCAN_PARALLEL && next < BUCKETS) {
        const p = fetchBucket(next++);
        p.catch(() => undefined); // awaited in order below; avoids an unhandled rejection meanwhile
        ahead.push(p);
      }
    };
    fill();
    while (ahead.length > 0) {
      const rows = await ahead.shift()!;
      fill();
      yield rows;
    }
  }

  // ---------------------------------------------------------------- runs

  async getRunState<S extends RunState = RunState>(runId: string): Promise<S | undefined> {
    this.checkOpen();
    const row = (await this.client.execute(`SELECT state FROM ${this.q('runs')} WHERE run_id = ?`, [checkKey('run id', runId)])).first();
    return row ? (JSON.parse(row.get('state') as string) as S) : undefined;
  }

  async setRunState(runId: string, state: RunState): Promise<void> {
    this.checkOpen();
    await this.client.execute(`INSERT INTO ${this.q('runs')} (run_id, state, updated_ms) VALUES (?, ?, ?)`, [checkKey('run id', runId), JSON.stringify(state), cassandra.types.Long.fromNumber(Date.now())]);
  }

  /** Every run marker whose id starts with `prefix` (the runs table is small: one row per job). */
  async runStates(prefix: string): Promise<{ runId: string; state: RunState }[]> {
    this.checkOpen();
    const out: { runId: string; state: RunState }[] = [];
    let pageState: string | undefined;
    do {
      const rs = await this.client.execute(`SELECT run_id, state FROM ${this.q('runs')}`, [], { fetchSize: 1000, ...(pageState ? { pageState } : {}) });
      for (const r of rs.rows) {
        const id = r.get('run_id') as string;
        if (id.startsWith(prefix)) out.push({ runId: id, state: JSON.parse(r.get('state') as string) as RunState });
      }
      pageState = rs.pageState ?? undefined;
    } while (pageState);
    return out.sort((a, b) => (a.runId < b.runId ? -1 : 1));
  }

  async deleteRunState(runId: string): Promise<boolean> {
    const had = (await this.getRunState(runId)) !== undefined;
    await this.client.execute(`DELETE FROM ${this.q('runs')} WHERE run_id = ?`, [checkKey('run id', runId)]);
    return had;
  }

  // ---------------------------------------------------------------- installers, kept apps

  async putInstallersMany(lists: Iterable<readonly [string, readonly string[]]>): Promise<void> {
    await this.putLists('installers', 'app_key', 'users', lists, 'app key', 'user id', (k) => `installers of ${k} must be an array of user ids`, 'items');
  }

  async putUserAppsMany(lists: Iterable<readonly [string, readonly string[]]>): Promise<void> {
    await this.putLists('user_apps', 'user_id', 'apps', lists, 'user id', 'app key', (k) => `apps of ${k} must be an array of app ids`, 'keys');
  }

  /** Every vocabulary app each user ever installed (kept, or installed and since uninstalled). */
  async putUserEverAppsMany(lists: Iterable<readonly [string, readonly string[]]>): Promise<void> {
    await this.putLists('user_ever_apps', 'user_id', 'apps', lists, 'user id', 'app key', (k) => `apps ever installed by ${k} must be an array of app ids`, 'keys');
  }

  private async putLists(
    table: string,
    keyCol: string,
    valCol: string,
    lists: Iterable<readonly [string, readonly string[]]>,
    keyName: string,
    itemName: string,
    notArray: (key: string) => string,
    users: 'keys' | 'items',
  ): Promise<void> {
    this.checkOpen();
    const all = [...lists];
    for (const [key, items] of all) {
      checkKey(keyName, key);
      if (!Array.isArray(items)) throw new StoreError('INVALID_ARGUMENT', notArray(key));
      for (const x of items) checkKey(itemName, x);
    }
    const gone = await this.forgottenSet();
    const q = `INSERT INTO ${this.q(table)} (${keyCol}, ${valCol}) VALUES (?, ?)`;
    await forEachLimit(all, CONCURRENCY, async ([key, items]) => {
      if (users === 'keys' && gone.has(key)) return;
      const list = [...new Set(items)];
      await this.client.execute(q, [key, JSON.stringify(users === 'items' && gone.size > 0 ? list.filter((u) => !gone.has(u)) : list)], { isIdempotent: true });
    });
  }

  async installersOf(appKey: string): Promise<string[] | undefined> {
    this.checkOpen();
    const row = (await this.client.execute(`SELECT users FROM ${this.q('installers')} WHERE app_key = ?`, [checkKey('app key', appKey)])).first();
    return row ? (JSON.parse(row.get('users') as string) as string[]) : undefined;
  }

  async putAppUsersMany(counts: Iterable<readonly [string, number]>): Promise<void> {
    await this.putCounts('app_users', counts);
  }

  /** How many users ever installed each app. */
  async putAppEverUsersMany(counts: Iterable<readonly [string, number]>): Promise<void> {
    await this.putCounts('app_ever_users', counts);
  }

  private async putCounts(table: 'app_users' | 'app_ever_users', counts: Iterable<readonly [string, number]>): Promise<void> {
    this.checkOpen();
    const all = [...counts];
    for (const [appId, c] of all) {
      checkKey('app key', appId);
      if (!Number.isInteger(c) || c < 0) throw new StoreError('INVALID_ARGUMENT', `user count of ${appId} must be a non-negative integer, got ${String(c)}`);
    }
    const q = `INSERT INTO ${this.q(table)} (app_key, n) VALUES (?, ?)`;
    await forEachLimit(all, CONCURRENCY, async ([a, c]) => void (await this.client.execute(q, [a, c], { isIdempotent: true })));
  }

  async userAppsMany(userIds: readonly string[]): Promise<(string[] | undefined)[]> {
    return this.lookupMany(userIds, `SELECT apps FROM ${this.q('user_apps')} WHERE user_id = ?`, (r) => JSON.parse(r.get('apps') as string) as string[]);
  }

  async appUsersMany(appIds: readonly string[]): Promise<(number | undefined)[]> {
    return this.lookupMany(appIds, `SELECT n FROM ${this.q('app_users')} WHERE app_key = ?`, (r) => r.get('n') as number);
  }

  async userEverAppsMany(userIds: readonly string[]): Promise<(string[] | undefined)[]> {
    return this.lookupMany(userIds, `SELECT apps FROM ${this.q('user_ever_apps')} WHERE user_id = ?`, (r) => JSON.parse(r.get('apps') as string) as string[]);
  }

  async appEverUsersMany(appIds: readonly string[]): Promise<(number | undefined)[]> {
    return this.lookupMany(appIds, `SELECT n FROM ${this.q('app_ever_users')} WHERE app_key = ?`, (r) => r.get('n') as number);
  }

  private async lookupMany<T>(keys: readonly string[], q: string, f: (r: cassandra.types.Row) => T): Promise<(T | undefined)[]> {
    this.checkOpen();
    const out: (T | undefined)[] = new Array(keys.length);
    await forEachLimit(range(keys.length), CONCURRENCY, async (i) => {
      const row = (await this.client.execute(q, [keys[i]])).first();
      out[i] = row ? f(row) : undefined;
    });
    return out;
  }

  /** Whether any user's kept apps are recorded (the look-alike's app features need them). */
  async userAppsCount(): Promise<number> {
    this.checkOpen();
    return (await this.client.execute(`SELECT user_id FROM ${this.q('user_apps')} LIMIT 1`)).rowLength;
  }

  /** Whether any user's apps ever installed are recorded (the look-alike's history member needs them). */
  async userEverAppsCount(): Promise<number> {
    this.checkOpen();
    return (await this.client.execute(`SELECT user_id FROM ${this.q('user_ever_apps')} LIMIT 1`)).rowLength;
  }

  // ---------------------------------------------------------------- erasure (as serving needs it)

  private async forgottenSet(): Promise<Set<string>> {
    return new Set(await this.forgottenUsers());
  }

  async forgottenUsers(): Promise<string[]> {
    this.checkOpen();
    const out: string[] = [];
    let pageState: string | undefined;
    do {
      const rs = await this.client.execute(`SELECT user_id FROM ${this.q('forgotten')}`, [], { fetchSize: 5000, ...(pageState ? { pageState } : {}) });
      for (const r of rs.rows) out.push(r.get('user_id') as string);
      pageState = rs.pageState ?? undefined;
    } while (pageState);
    return out.sort();
  }

  async isForgotten(userId: string): Promise<boolean> {
    this.checkOpen();
    return (await this.client.execute(`SELECT user_id FROM ${this.q('forgotten')} WHERE user_id = ?`, [checkKey('user id', userId)])).rowLength > 0;
  }

  async forgetSeq(): Promise<number> {
    this.checkOpen();
    const row = (await this.client.execute(`SELECT value FROM ${this.q('meta')} WHERE key = 'forget_seq'`)).first();
    return row ? Number(row.get('value')) : 0;
  }

  // ---------------------------------------------------------------- index generations

  /** The live index generation of a feature (undefined before the first `aetn index`). */
  async indexCurrent(featureId: string): Promise<IndexGenerationRow | undefined> {
    this.checkOpen();
    const row = (await this.client.execute(`SELECT generation, manifest FROM ${this.q('index_current')} WHERE feature_id = ?`, [checkFeatureId(featureId)])).first();
    return row ? { generation: row.get('generation') as number, manifest: row.get('manifest') as string } : undefined;
  }

  /**
   * Writes one file of a generation as chunks (each an idempotent row), read from `path` one chunk
   * at a time: an index of several GB is never held in memory whole.
   */
  async putIndexFile(featureId: string, generation: number, name: string, path: string, chunkBytes: number): Promise<number> {
    const q = `INSERT INTO ${this.q('index_files')} (feature_id, generation, name, chunk, bytes) VALUES (?, ?, ?, ?, ?)`;
    const size = statSync(path).size;
    const n = Math.max(1, Math.ceil(size / chunkBytes));
    const fd = openSync(path, 'r');
    try {
      // Two at a time: each chunk is a multi-MB mutation.
      await forEachLimit(range(n), 2, async (i) => {
        const len = Math.min(chunkBytes, size - i * chunkBytes);
        const buf = Buffer.alloc(Math.max(0, len));
        if (len > 0 && readSync(fd, buf, 0, len, i * chunkBytes) !== len) throw new StoreError('FAILED_PRECONDITION', `short read of ${path}`);
        await this.client.execute(q, [featureId, generation, name, i, buf], { isIdempotent: true });
      });
    } finally {
      closeSync(fd);
    }
    return n;
  }

  /** Copies one file of a generation to `path` chunk by chunk; false when the store has none of it. */
  async getIndexFile(featureId: string, generation: number, name: string, path: string): Promise<boolean> {
    let next = 0;
    let pageState: string | undefined;
    const fd = openSync(path, 'w');
    try {
      do {
        // One chunk per page: a page of several multi-MB chunks would be one very large response.
        const rs = await this.client.execute(`SELECT chunk, bytes FROM ${this.q('index_files')} WHERE feature_id = ? AND generation = ? AND name = ?`, [featureId, generation, name], { fetchSize: 1, ...(pageState ? { pageState } : {}) });
        for (const r of rs.rows) {
          if ((r.get('chunk') as number) !== next) throw new StoreError('FAILED_PRECONDITION', `index file ${name} of ${featureId} generation ${generation} misses chunk ${next}`);
          const bytes = r.get('bytes') as Buffer;
          writeSync(fd, bytes, 0, bytes.length);
          next++;
        }
        pageState = rs.pageState ?? undefined;
      } while (pageState);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    return next > 0;
  }

  /** The highest generation that has any file (written or being written), 0 when none. */
  async maxIndexGeneration(featureId: string, current: number): Promise<number> {
    // Generations are dense from 1; probe upwards from the live one for abandoned or newer ones.
    let g = current;
    for (;;) {
      const rs = await this.client.execute(`SELECT chunk FROM ${this.q('index_files')} WHERE feature_id = ? AND generation = ? LIMIT 1`, [featureId, g + 1]);
      if (rs.rowLength === 0) return g;
      g++;
    }
  }

  /**
   * Makes `generation` live if the live one is still `expected` (a lightweight transaction: two
   * builds racing cannot both win, and a replica sees the old generation or the new one).
   */
  async flipIndexCurrent(featureId: string, expected: number | undefined, generation: number, manifest: string): Promise<boolean> {
    const r =
      expected === undefined
        ? await this.client.execute(`INSERT INTO ${this.q('index_current')} (feature_id, generation, manifest) VALUES (?, ?, ?) IF NOT EXISTS`, [featureId, generation, manifest])
        : await this.client.execute(`UPDATE ${this.q('index_current')} SET generation = ?, manifest = ? WHERE feature_id = ? IF generation = ?`, [generation, manifest, featureId, expected]);
    return r.wasApplied();
  }

  /** Deletes one generation's files (an older one, once a newer one is live). */
  async deleteIndexGeneration(featureId: string, generation: number): Promise<void> {
    await this.client.execute(`DELETE FROM ${this.q('index_files')} WHERE feature_id = ? AND generation = ?`, [featureId, generation]);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.client.shutdown();
  }
}

export function encodeVector(v: Float32Array): Buffer {
  const b = Buffer.allocUnsafe(v.byteLength);
  for (let i = 0; i < v.length; i++) b.writeFloatLE(v[i]!, 4 * i);
  return b;
}

function decodeVector(buf: Buffer, dim: number, featureId: string, userId: string): Float32Array {
  if (buf.length !== 4 * dim) {
    throw new StoreError('FAILED_PRECONDITION', `stored vector of user ${userId} in feature ${featureId} has ${buf.length} bytes, expected ${4 * dim}: the store is damaged`);
  }
  const out = new Float32Array(dim);
  for (let i = 0; i < dim; i++) out[i] = buf.readFloatLE(4 * i);
  return out;
}

function checkVector(vector: unknown, dim: number, featureId: string, userId: string): asserts vector is Float32Array {
  if (!(vector instanceof Float32Array)) throw new StoreError('INVALID_ARGUMENT', `vector of user ${userId} must be a Float32Array`);
  if (vector.length !== dim) throw new StoreError('INVALID_ARGUMENT', `vector of user ${userId} has ${vector.length} dimensions; feature ${featureId} has ${dim}`);
  for (let i = 0; i < dim; i++) {
    if (!Number.isFinite(vector[i])) throw new StoreError('INVALID_ARGUMENT', `vector of user ${userId} has a non-finite value (${vector[i]}) at index ${i}`);
  }
}

/** One line per host for the driver's "no host available" error (its message embeds stack traces). */
function driverMessage(err: unknown): string {
  const inner = (err as { innerErrors?: Record<string, Error> }).innerErrors;
  if (inner && Object.keys(inner).length > 0) return Object.entries(inner).map(([h, e]) => `${h}: ${e.message.split('\n')[0]}`).join('; ');
  return (err as Error).message.split('\n')[0]!;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** Runs `fn` over the items with at most `limit` in flight; the first failure is thrown. */
export async function forEachLimit<T>(items: readonly T[], limit: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown;
  const worker = async () => {
    while (failed === undefined && next < items.length) {
      const x = items[next++]!;
      try {
        await fn(x);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failed !== undefined) throw failed;
}

export type { MaybePromise };
