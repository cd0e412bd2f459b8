// The embedding store: one LMDB environment at <dir>/lmdb, shared safely by several processes
// (batch embed writer, realtime consumer, gRPC readers). LMDB gives memory-mapped reads and
// copy-on-write commits, so a crash at any point leaves the last committed transaction intact.
//
// Layout (named sub-databases):
//   meta            format marker
//   features        featureId -> FeatureInfo (without count: counts come from LMDB's own stats)
//   vec/<featureId> userId -> [float64 updatedAtMs][float32 x dim]   (raw bytes, little-endian)
//   runs            runId -> { state, updatedAtMs }   progress markers of resumable jobs
//   installers      appKey -> userId[]                "users who installed app X" seeds
//   userApps        userId -> appKey[]                the vocabulary apps a user keeps (look-alike app features)
//   appUsers        appKey -> number                  how many users keep each app (item-kNN weights)
//   forgotten       userId -> forgottenAtMs           erased users (tombstones: no write brings them back)
//   meta            also holds `forgetSeq`, bumped by every forget/unforget (readers drop caches)
//
// One sub-database per feature id (instead of composite keys) keeps iteration a plain range scan,
// makes counts O(1) and lets `purge` drop a whole feature in one step.
import { open, type Database, type RootDatabase } from 'lmdb';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, openSync, closeSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../util/fs.js';
import { StoreError, checkFeatureId, checkKey } from './errors.js';
import type { FeatureInfo, Namespace, NewFeature, RunState, StoredVector, VectorEntry } from './types.js';
import type { Store } from './backend.js';

export { StoreError } from './errors.js';

const MARKER = 'aetn-store.json';
const FORMAT = 'aetn-embedding-store';
const VERSION = 1;
const HEADER_BYTES = 8; // float64 updatedAtMs before the vector
const MAX_DBS = 256; // LMDB scans its db table linearly; features are model versions, not users
const MAX_DIM = 65536;

type FeatureRecord = Omit<FeatureInfo, 'count'>;

export interface OpenOptions {
  /** Refuse to create a missing store (readers such as `aetn serve` should not invent one). */
  create?: boolean;
}

export interface PutOptions {
  /** Progress marker committed in the same transaction as the vectors it covers. */
  runState?: { runId: string; state: RunState };
  /** Time stamp written with every vector (default: now). */
  updatedAtMs?: number;
}

export interface IterateOptions {
  includeRetired?: boolean;
  /** Start at this user id (inclusive), in key order. */
  start?: string;
}

export interface StoredEntry {
  userId: string;
  vector: Float32Array;
  updatedAtMs: number;
}

export interface StoreStats {
  dir: string;
  fileBytes: number;
  mapBytes: number;
  usedPages: number;
  pageSize: number;
  readers: number;
  features: number;
  vectors: number;
  runs: number;
  appKeys: number;
}

export class EmbeddingStore implements Store {
  readonly backend = 'lmdb' as const;
  private readonly vecDbs = new Map<string, Database<Buffer, string>>();
  private readonly featuresDb: Database<FeatureRecord, string>;
  private readonly runsDb: Database<{ state: RunState; updatedAtMs: number }, string>;
  private readonly installersDb: Database<string[], string>;
  private readonly userAppsDb: Database<string[], string>;
  private readonly appUsersDb: Database<number, string>;
  private readonly userEverAppsDb: Database<string[], string>;
  private readonly appEverUsersDb: Database<number, string>;
  private readonly forgottenDb: Database<number, string>;
  private readonly metaDb: Database<unknown, string>;
  private txnDepth = 0;
  /** Feature records checked in the current write transaction (see putInTxn). */
  private readonly txnFeatures = new Map<string, FeatureRecord>();
  private closed = false;
  private scratch = Buffer.alloc(0);

  private constructor(
    readonly dir: string,
    /** The LMDB root, for callers that keep their own sub-databases in the same environment (and transactions). */
    readonly root: RootDatabase,
  ) {
    this.featuresDb = root.openDB({ name: 'features' });
    this.runsDb = root.openDB({ name: 'runs' });
    this.installersDb = root.openDB({ name: 'installers' });
    this.userAppsDb = root.openDB({ name: 'userApps' });
    this.appUsersDb = root.openDB({ name: 'appUsers' });
    this.userEverAppsDb = root.openDB({ name: 'userEverApps' });
    this.appEverUsersDb = root.openDB({ name: 'appEverUsers' });
    this.forgottenDb = openForgotten(root);
    this.metaDb = root.openDB({ name: 'meta' });
  }

  get location(): string {
    return this.dir;
  }

  /** Opens (and by default creates) a store; refuses directories that are not stores or are damaged. */
  static open(dir: string, opts: OpenOptions = {}): EmbeddingStore {
    const create = opts.create ?? true;
    const markerPath = join(dir, MARKER);
    const lmdbDir = join(dir, 'lmdb');
    if (existsSync(dir) && !statSync(dir).isDirectory()) {
      throw new StoreError('INVALID_ARGUMENT', `${dir} is a file, not an embedding store directory`);
    }
    const entries = existsSync(dir) ? readdirSync(dir) : [];
    if (!entries.includes(MARKER)) {
      if (entries.length > 0) {
        throw new StoreError(
          'FAILED_PRECONDITION',
          `${dir} is not an AETN embedding store (no ${MARKER}, and the directory is not empty); use a new or empty directory`,
        );
      }
      if (!create) throw new StoreError('NOT_FOUND', `no embedding store at ${dir}`);
      mkdirSync(dir, { recursive: true });
      // The marker goes first: a crash before LMDB exists leaves a directory holding only the
      // marker, which the next open completes instead of calling it corrupt.
      writeFileAtomic(markerPath, JSON.stringify({ format: FORMAT, version: VERSION, createdAtMs: Date.now() }, null, 2) + '\n');
    } else {
      let marker: { format?: unknown; version?: unknown };
      try {
        marker = JSON.parse(readFileSync(markerPath, 'utf8')) as typeof marker;
      } catch (err) {
        throw new StoreError('FAILED_PRECONDITION', `store marker ${markerPath} is unreadable (${(err as Error).message}); the store is damaged`);
      }
      if (marker.format !== FORMAT) {
        throw new StoreError('FAILED_PRECONDITION', `${markerPath} does not describe an AETN embedding store (format ${JSON.stringify(marker.format)})`);
      }
      if (marker.version !== VERSION) {
        throw new StoreError('FAILED_PRECONDITION', `store ${dir} has format version ${String(marker.version)}; this build reads version ${VERSION}`);
      }
      const onlyMarker = entries.length === 1;
      if (!onlyMarker && !existsSync(join(lmdbDir, 'data.mdb'))) {
        throw new StoreError('FAILED_PRECONDITION', `store ${dir} is damaged: ${join(lmdbDir, 'data.mdb')} is missing`);
      }
    }
    checkLmdbHeader(join(lmdbDir, 'data.mdb'));
    let root: RootDatabase;
    try {
      // overlappingSync off: a resolved write means the data is on disk (fsync'd), which the
      // resumable-run markers rely on.
      root = open({ path: lmdbDir, maxDbs: MAX_DBS, overlappingSync: false, noSync: false });
    } catch (err) {
      throw new StoreError('FAILED_PRECONDITION', `cannot open the LMDB environment at ${lmdbDir}: ${(err as Error).message}`);
    }
    try {
      const meta = root.openDB<{ format: string; version: number }, string>({ name: 'meta' });
      const fmt = meta.get('format');
      if (fmt === undefined) {
        root.transactionSync(() => meta.putSync('format', { format: FORMAT, version: VERSION }));
      } else if (fmt.format !== FORMAT || fmt.version !== VERSION) {
        throw new StoreError('FAILED_PRECONDITION', `LMDB environment at ${lmdbDir} holds ${JSON.stringify(fmt)}, not an ${FORMAT} v${VERSION}`);
      }
      return new EmbeddingStore(dir, root);
    } catch (err) {
      void root.close();
      if (err instanceof StoreError) throw err;
      throw new StoreError('FAILED_PRECONDITION', `store ${dir} is damaged: ${(err as Error).message}`);
    }
  }

  // ---------------------------------------------------------------- feature registry

  /**
   * Registers a feature id. Re-registering the same id with the same namespace, dim and variant is
   * a no-op (re-runs of an embed job); any conflict, or a retired id, is refused.
   */
  registerFeature(info: NewFeature): FeatureInfo {
    this.checkOpen();
    const featureId = checkFeatureId(info.featureId);
    if (info.namespace !== 'long' && info.namespace !== 'short') {
      throw new StoreError('INVALID_ARGUMENT', `namespace must be 'long' or 'short', got ${JSON.stringify(info.namespace)}`);
    }
    if (!Number.isInteger(info.dim) || info.dim < 1 || info.dim > MAX_DIM) {
      throw new StoreError('INVALID_ARGUMENT', `dim must be an integer in 1..${MAX_DIM}, got ${String(info.dim)}`);
    }
    if (typeof info.variant !== 'string' || info.variant.length === 0) {
      throw new StoreError('INVALID_ARGUMENT', 'variant must be a non-empty string (e.g. "aetn")');
    }
    if (info.baseFeatureId !== undefined) {
      const base = this.featuresDb.get(checkFeatureId(info.baseFeatureId));
      if (!base) throw new StoreError('NOT_FOUND', `base feature ${info.baseFeatureId} is not registered`);
      if (base.namespace !== 'long') throw new StoreError('INVALID_ARGUMENT', `base feature ${info.baseFeatureId} is not a long-term feature`);
    }
    return this.transactionSync(() => {
      const existing = this.featuresDb.get(featureId);
      if (existing) {
        if (existing.retired) {
          throw new StoreError('FAILED_PRECONDITION', `feature ${featureId} is retired; a new model needs a new feature id`);
        }
        if (existing.namespace !== info.namespace || existing.dim !== info.dim || existing.variant !== info.variant) {
          throw new StoreError(
            'FAILED_PRECONDITION',
            `feature ${featureId} is already registered as ${existing.namespace}/${existing.variant}/${existing.dim}-d; ` +
              `refusing ${info.namespace}/${info.variant}/${info.dim}-d (vectors of two models never share an id)`,
          );
        }
        return this.withCount(existing);
      }
      if (this.featuresDb.getKeysCount() >= MAX_DBS - 8) {
        throw new StoreError('FAILED_PRECONDITION', `too many feature ids (limit ${MAX_DBS - 8}); purge retired ones first`);
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
      this.featuresDb.putSync(featureId, rec);
      this.vecDb(featureId); // create the sub-database inside this transaction
      return { ...rec, count: 0 };
    });
  }

  /** All registered features (retired ones included, flagged), oldest first. */
  features(): FeatureInfo[] {
    this.checkOpen();
    const out: FeatureInfo[] = [];
    for (const { value } of this.featuresDb.getRange()) out.push(this.withCount(value));
    return out.sort((a, b) => a.createdAtMs - b.createdAtMs || a.featureId.localeCompare(b.featureId));
  }

  getFeature(featureId: string): FeatureInfo | undefined {
    this.checkOpen();
    const rec = this.featuresDb.get(checkFeatureId(featureId));
    return rec ? this.withCount(rec) : undefined;
  }

  /** The newest non-retired feature of a namespace (what serving uses when no id is asked for). */
  defaultFeature(namespace: Namespace): FeatureInfo | undefined {
    let best: FeatureRecord | undefined;
    for (const { value } of this.featuresDb.getRange()) {
      if (value.namespace !== namespace || value.retired) continue;
      if (!best || value.createdAtMs > best.createdAtMs || (value.createdAtMs === best.createdAtMs && value.featureId > best.featureId)) best = value;
    }
    return best ? this.withCount(best) : undefined;
  }

  /** Marks a feature retired: no more reads or writes; its vectors stay on disk until `purge`. */
  async retire(featureId: string): Promise<FeatureInfo> {
    this.checkOpen();
    return this.transactionSync(() => {
      const rec = this.featuresDb.get(checkFeatureId(featureId));
      if (!rec) throw new StoreError('NOT_FOUND', `feature ${featureId} is not registered`);
      if (rec.retired) return this.withCount(rec);
      const next: FeatureRecord = { ...rec, retired: true, retiredAtMs: Date.now() };
      this.featuresDb.putSync(featureId, next);
      return this.withCount(next);
    });
  }

  /** Deletes the vectors of a retired feature; the registry entry stays so the id is never reused. */
  async purge(featureId: string): Promise<FeatureInfo> {
    this.checkOpen();
    return this.transactionSync(() => {
      const rec = this.featuresDb.get(checkFeatureId(featureId));
      if (!rec) throw new StoreError('NOT_FOUND', `feature ${featureId} is not registered`);
      if (!rec.retired) throw new StoreError('FAILED_PRECONDITION', `feature ${featureId} is not retired; retire it before purging`);
      this.vecDb(featureId).clearSync();
      const next: FeatureRecord = { ...rec, purgedAtMs: rec.purgedAtMs ?? Date.now() };
      this.featuresDb.putSync(featureId, next);
      return { ...next, count: 0 };
    });
  }

  // ---------------------------------------------------------------- vectors

  get(featureId: string, userId: string): StoredVector | undefined {
    return this.getMany(featureId, [userId])[0];
  }

  /**
   * Batch read. All gets run synchronously in one turn of the event loop, hence in one LMDB read
   * snapshot: a batch never mixes two commits. Unknown users come back as `undefined`.
   */
  getMany(featureId: string, userIds: readonly string[]): (StoredVector | undefined)[] {
    const rec = this.readable(featureId);
    const db = this.vecDb(featureId);
    const dim = rec.dim;
    const out: (StoredVector | undefined)[] = new Array(userIds.length);
    for (let i = 0; i < userIds.length; i++) {
      const userId = userIds[i];
      if (typeof userId !== 'string' || userId.length === 0 || userId.length > 512) checkKey('user id', userId);
      const buf = db.getBinaryFast(userId);
      if (buf === undefined) {
        out[i] = undefined;
        continue;
      }
      const { vector, updatedAtMs } = decode(buf, dim, featureId, userId);
      out[i] = { featureId, vector, updatedAtMs };
    }
    return out;
  }

  /**
   * Writes vectors in one durable transaction (committed and fsync'd when the promise resolves),
   * optionally with a run-progress marker. Everything is validated before anything is written.
   * Forgotten users (see `forget`) are not written; returns how many were skipped for that reason.
   */
  async putMany(featureId: string, entries: readonly VectorEntry[], opts: PutOptions = {}): Promise<number> {
    const rec = this.writable(featureId);
    for (const e of entries) {
      checkKey('user id', e?.userId);
      checkVector(e.vector, rec.dim, featureId, e.userId);
    }
    if (opts.runState) checkKey('run id', opts.runState.runId);
    const now = opts.updatedAtMs ?? Date.now();
    return this.transactionSync(() => {
      const db = this.vecDb(featureId);
      let skipped = 0;
      for (const e of entries) {
        // Checked inside the transaction: a forget that commits first always wins.
        if (this.forgottenDb.doesExist(e.userId)) skipped++;
        else db.putSync(e.userId, this.encode(e.vector, now));
      }
      if (opts.runState) this.runsDb.putSync(opts.runState.runId, { state: opts.runState.state, updatedAtMs: now });
      return skipped;
    });
  }

  /**
   * Writes one vector inside a transaction opened with `transaction`/`transactionSync`. A
   * forgotten user's vector is not written (returns false).
   */
  putInTxn(featureId: string, userId: string, vector: Float32Array, updatedAtMs = Date.now()): boolean {
    if (this.txnDepth === 0) throw new Error('putInTxn must be called inside store.transaction(...)');
    // The feature record is read once per transaction, not per vector: the realtime writer puts
    // thousands of vectors per transaction, and each read also decoded the record (measured as a
    // large share of the write time). A retire commits in its own transaction, so the check per
    // transaction is as strict as the check per put.
    let rec = this.txnFeatures.get(featureId);
    if (!rec) {
      rec = this.writable(featureId);
      this.txnFeatures.set(featureId, rec);
    }
    checkKey('user id', userId);
    checkVector(vector, rec.dim, featureId, userId);
    if (this.forgottenDb.doesExist(userId)) return false;
    this.vecDb(featureId).putSync(userId, this.encode(vector, updatedAtMs));
    return true;
  }

  /** Deletes users' vectors of one feature; returns how many existed. */
  async deleteUsers(featureId: string, userIds: readonly string[]): Promise<number> {
    this.writable(featureId);
    for (const u of userIds) checkKey('user id', u);
    return this.transactionSync(() => {
      const db = this.vecDb(featureId);
      let n = 0;
      for (const u of userIds) if (db.removeSync(u)) n++;
      return n;
    });
  }

  /** Vectors of one feature in user-id order, from one read snapshot (for index builds). */
  *iterate(featureId: string, opts: IterateOptions = {}): Generator<StoredEntry> {
    const rec = opts.includeRetired ? this.known(featureId) : this.readable(featureId);
    const dim = rec.dim;
    const range = this.vecDb(featureId).getRange({ snapshot: true, ...(opts.start !== undefined ? { start: opts.start } : {}) });
    for (const { key, value } of range) {
      const { vector, updatedAtMs } = decode(value, dim, featureId, key);
      yield { userId: key, vector, updatedAtMs };
    }
  }

  /** User ids of one feature in key order (cheap: values are not read). */
  *userIds(featureId: string, opts: IterateOptions = {}): Generator<string> {
    if (opts.includeRetired) this.known(featureId);
    else this.readable(featureId);
    yield* this.vecDb(featureId).getKeys({ snapshot: true, ...(opts.start !== undefined ? { start: opts.start } : {}) });
  }

  count(featureId: string): number {
    this.known(featureId);
    return entryCount(this.vecDb(featureId));
  }

  // ---------------------------------------------------------------- transactions

  /**
   * Runs `fn` in one synchronous LMDB write transaction: every write made in it (putInTxn,
   * setRunStateInTxn, or puts on sub-databases opened from `root`) commits together and durably,
   * or, if `fn` throws, none does. `fn` must not await: writes after an await would escape.
   */
  transactionSync<T>(fn: () => T): T {
    this.checkOpen();
    if (this.txnDepth > 0) return fn(); // nested: join the outer transaction
    return this.root.transactionSync(() => this.runInTxn(fn));
  }

  /**
   * Asynchronous form: `fn` runs (synchronously, on this thread) inside an abortable child of
   * lmdb-js's batched write transaction, and the promise resolves once that batch has committed
   * durably (fsync'd: the store is opened with overlappingSync off). Transactions queued while a
   * commit is in progress are grouped into the next batch, so many writers share one fsync, and
   * the commit itself runs on lmdb-js's write thread instead of blocking the event loop. If `fn`
   * throws, only its own writes are rolled back and the promise rejects; the others in the
   * batch still commit. Use it for throughput; `transactionSync` where the caller must not yield.
   */
  transaction<T>(fn: () => T): Promise<T> {
    this.checkOpen();
    if (this.txnDepth > 0) {
      // Nested: join the transaction already running on this thread, as transactionSync does.
      try {
        return Promise.resolve(this.runInTxn(fn));
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return this.root.childTransaction(() => this.runInTxn(fn)) as Promise<T>;
  }

  private runInTxn<T>(fn: () => T): T {
    this.txnDepth++;
    try {
      const r = fn();
      if (r !== null && typeof r === 'object' && typeof (r as { then?: unknown }).then === 'function') {
        throw new Error('store.transaction callback returned a promise; it must be synchronous (the transaction was rolled back)');
      }
      return r;
    } finally {
      this.txnDepth--;
      if (this.txnDepth === 0) this.txnFeatures.clear();
    }
  }

  get inTransaction(): boolean {
    return this.txnDepth > 0;
  }

  // ---------------------------------------------------------------- resumable runs

  async setRunState(runId: string, state: RunState): Promise<void> {
    checkKey('run id', runId);
    this.transactionSync(() => this.runsDb.putSync(runId, { state, updatedAtMs: Date.now() }));
  }

  setRunStateInTxn(runId: string, state: RunState): void {
    if (this.txnDepth === 0) throw new Error('setRunStateInTxn must be called inside store.transaction(...)');
    checkKey('run id', runId);
    this.runsDb.putSync(runId, { state, updatedAtMs: Date.now() });
  }

  getRunState<S extends RunState = RunState>(runId: string): S | undefined {
    this.checkOpen();
    return this.runsDb.get(checkKey('run id', runId))?.state as S | undefined;
  }

  async deleteRunState(runId: string): Promise<boolean> {
    checkKey('run id', runId);
    return this.transactionSync(() => this.runsDb.removeSync(runId));
  }

  // ---------------------------------------------------------------- installers (look-alike seeds)

  /** Replaces the installer list of one app (catalog app id; apps outside the model vocabulary too). */
  async putInstallers(appKey: string, userIds: readonly string[]): Promise<void> {
    await this.putInstallersMany([[appKey, userIds]]);
  }

  /** Replaces several installer lists in one transaction. */
  async putInstallersMany(lists: Iterable<readonly [string, readonly string[]]>): Promise<void> {
    this.putKeyLists(this.installersDb, lists, 'app key', 'user id', (k) => `installers of ${k} must be an array of user ids`, 'items');
  }

  /**
   * Replaces key -> list-of-keys entries in one transaction, every key and list checked before
   * anything is written; duplicates in a list are dropped.
   */
  private putKeyLists(
    db: Database<string[], string>,
    lists: Iterable<readonly [string, readonly string[]]>,
    keyName: string,
    itemName: string,
    notArray: (key: string) => string,
    /** Which side holds user ids: forgotten users are dropped from it (tombstones win). */
    users: 'keys' | 'items',
  ): void {
    const all = [...lists];
    for (const [key, items] of all) {
      checkKey(keyName, key);
      if (!Array.isArray(items)) throw new StoreError('INVALID_ARGUMENT', notArray(key));
      for (const x of items) checkKey(itemName, x);
    }
    this.transactionSync(() => {
      const gone = (u: string) => this.forgottenDb.doesExist(u);
      const noForgotten = this.forgottenDb.getKeysCount() === 0;
      for (const [key, items] of all) {
        if (users === 'keys' && !noForgotten && gone(key)) continue;
        const list = [...new Set(items)];
        db.putSync(key, users === 'items' && !noForgotten ? list.filter((u) => !gone(u)) : list);
      }
    });
  }

  installersOf(appKey: string): string[] | undefined {
    this.checkOpen();
    return this.installersDb.get(checkKey('app key', appKey));
  }

  /**
   * Replaces the kept apps of several users in one transaction (the vocabulary apps of the model's
   * dataset; the look-alike's scoring model reads them as activity and TF-IDF features).
   */
  async putUserAppsMany(lists: Iterable<readonly [string, readonly string[]]>): Promise<void> {
    this.putKeyLists(this.userAppsDb, lists, 'user id', 'app key', (k) => `apps of ${k} must be an array of app ids`, 'keys');
  }

  /** Replaces the number of users keeping each of these apps (one transaction). */
  async putAppUsersMany(counts: Iterable<readonly [string, number]>): Promise<void> {
    this.putCounts(this.appUsersDb, counts);
  }

  /**
   * Replaces, for several users in one transaction, every vocabulary app they ever installed in the
   * history: kept, or installed and since uninstalled (the look-alike's history item-kNN reads them).
   */
  async putUserEverAppsMany(lists: Iterable<readonly [string, readonly string[]]>): Promise<void> {
    this.putKeyLists(this.userEverAppsDb, lists, 'user id', 'app key', (k) => `apps ever installed by ${k} must be an array of app ids`, 'keys');
  }

  /** Replaces the number of users who ever installed each of these apps (one transaction). */
  async putAppEverUsersMany(counts: Iterable<readonly [string, number]>): Promise<void> {
    this.putCounts(this.appEverUsersDb, counts);
  }

  /** Apps each user ever installed (undefined: none recorded). */
  userEverAppsMany(userIds: readonly string[]): (string[] | undefined)[] {
    this.checkOpen();
    return userIds.map((u) => this.userEverAppsDb.get(u));
  }

  /** How many users ever installed each app (undefined: not recorded). */
  appEverUsersMany(appIds: readonly string[]): (number | undefined)[] {
    this.checkOpen();
    return appIds.map((a) => this.appEverUsersDb.get(a));
  }

  /** Users with a list of apps ever installed. */
  userEverAppsCount(): number {
    this.checkOpen();
    return (this.userEverAppsDb.getStats() as { entryCount: number }).entryCount;
  }

  private putCounts(db: Database<number, string>, counts: Iterable<readonly [string, number]>): void {
    const all = [...counts];
    for (const [appId, c] of all) {
      checkKey('app key', appId);
      if (!Number.isInteger(c) || c < 0) throw new StoreError('INVALID_ARGUMENT', `user count of ${appId} must be a non-negative integer, got ${String(c)}`);
    }
    this.transactionSync(() => {
      for (const [appId, c] of all) db.putSync(appId, c);
    });
  }

  /** How many users keep each app (undefined: not recorded). */
  appUsersMany(appIds: readonly string[]): (number | undefined)[] {
    this.checkOpen();
    return appIds.map((a) => this.appUsersDb.get(a));
  }

  /** Kept apps of each user (undefined: none recorded). */
  userAppsMany(userIds: readonly string[]): (string[] | undefined)[] {
    this.checkOpen();
    return userIds.map((u) => this.userAppsDb.get(u));
  }

  /** Users with a kept-apps list. */
  userAppsCount(): number {
    this.checkOpen();
    return (this.userAppsDb.getStats() as { entryCount: number }).entryCount;
  }

  appKeys(): string[] {
    this.checkOpen();
    return [...this.installersDb.getKeys()];
  }

  // ---------------------------------------------------------------- erasure (right to be forgotten)

  /**
   * Erases users from the store in one durable transaction: their vectors in every feature
   * (retired ones too), their realtime state, their kept-apps list and list of apps ever installed
   * (decrementing the apps' user counts) and every installer list; then records a tombstone so no later write (batch embed over
   * old data, realtime events) brings them back, until `unforget`. Indexes are files next to the
   * store: src/index/erase.ts marks the users deleted there.
   */
  async forget(userIds: readonly string[]): Promise<ForgetCounts> {
    this.checkOpen();
    for (const u of userIds) checkKey('user id', u);
    const ids = [...new Set(userIds)];
    const set = new Set(ids);
    const features = [...this.featuresDb.getRange()].map((e) => e.value);
    return this.transactionSync(() => {
      const c: ForgetCounts = { users: ids.length, newlyForgotten: 0, vectorsRemoved: 0, installerEntriesRemoved: 0, keptAppListsRemoved: 0, realtimeStatesRemoved: 0 };
      for (const f of features) {
        const db = this.vecDb(f.featureId);
        for (const u of ids) if (db.removeSync(u)) c.vectorsRemoved++;
      }
      const states = this.root.openDB<Buffer, string>({ name: REALTIME_STATE_DB, encoding: 'binary' });
      for (const u of ids) if (states.removeSync(u)) c.realtimeStatesRemoved++;
      // Kept-app lists (counted) and lists of apps ever installed, each with its per-app user counts.
      for (const [lists, counts, counted] of [[this.userAppsDb, this.appUsersDb, true], [this.userEverAppsDb, this.appEverUsersDb, false]] as const) {
        for (const u of ids) {
          const apps = lists.get(u);
          if (!apps) continue;
          lists.removeSync(u);
          if (counted) c.keptAppListsRemoved++;
          for (const a of apps) {
            const n = counts.get(a);
            if (n !== undefined && n > 0) counts.putSync(a, n - 1);
          }
        }
      }
      for (const { key, value } of this.installersDb.getRange()) {
        if (!value.some((u) => set.has(u))) continue;
        const kept = value.filter((u) => !set.has(u));
        c.installerEntriesRemoved += value.length - kept.length;
        this.installersDb.putSync(key, kept);
      }
      const now = Date.now();
      for (const u of ids) {
        if (!this.forgottenDb.doesExist(u)) c.newlyForgotten++;
        this.forgottenDb.putSync(u, now);
      }
      this.bumpForgetSeq();
      return c;
    });
  }

  /** Removes tombstones: the users may be written again (their erased data does not come back). */
  async unforget(userIds: readonly string[]): Promise<number> {
    this.checkOpen();
    for (const u of userIds) checkKey('user id', u);
    return this.transactionSync(() => {
      let n = 0;
      for (const u of new Set(userIds)) if (this.forgottenDb.removeSync(u)) n++;
      this.bumpForgetSeq();
      return n;
    });
  }

  isForgotten(userId: string): boolean {
    this.checkOpen();
    return this.forgottenDb.doesExist(userId);
  }

  /** Every forgotten user id (tombstones), in key order. */
  forgottenUsers(): string[] {
    this.checkOpen();
    return [...this.forgottenDb.getKeys()];
  }

  /** Changes with every forget/unforget: readers that cache user ids compare it to know when to drop them. */
  forgetSeq(): number {
    this.checkOpen();
    return (this.metaDb.get('forgetSeq') as number | undefined) ?? 0;
  }

  private bumpForgetSeq(): void {
    this.metaDb.putSync('forgetSeq', this.forgetSeq() + 1);
  }

  // ---------------------------------------------------------------- misc

  stats(): StoreStats {
    this.checkOpen();
    const env = this.root.getStats() as { mapSize: number; lastPageNumber: number; pageSize: number; numReaders: number };
    const feats = this.features();
    return {
      dir: this.dir,
      fileBytes: statSync(join(this.dir, 'lmdb', 'data.mdb')).size,
      mapBytes: env.mapSize,
      usedPages: env.lastPageNumber + 1,
      pageSize: env.pageSize,
      readers: env.numReaders,
      features: feats.length,
      vectors: feats.reduce((s, f) => s + f.count, 0),
      runs: this.runsDb.getKeysCount(),
      appKeys: this.installersDb.getKeysCount(),
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.vecDbs.clear();
    await this.root.close();
  }

  // ---------------------------------------------------------------- internals

  private checkOpen(): void {
    if (this.closed) throw new Error('the embedding store is closed');
  }

  private known(featureId: string): FeatureRecord {
    this.checkOpen();
    const rec = this.featuresDb.get(checkFeatureId(featureId));
    if (!rec) throw new StoreError('NOT_FOUND', `unknown feature id ${featureId}; registered: ${this.featureIdList()}`);
    return rec;
  }

  private readable(featureId: string): FeatureRecord {
    const rec = this.known(featureId);
    if (rec.retired) throw new StoreError('FAILED_PRECONDITION', `feature ${featureId} is retired`);
    return rec;
  }

  private writable(featureId: string): FeatureRecord {
    const rec = this.known(featureId);
    if (rec.retired) throw new StoreError('FAILED_PRECONDITION', `feature ${featureId} is retired; it accepts no more writes`);
    return rec;
  }

  private featureIdList(): string {
    const ids = [...this.featuresDb.getKeys()];
    return ids.length ? ids.slice(0, 20).join(', ') + (ids.length > 20 ? ', ...' : '') : '(none)';
  }

  private withCount(rec: FeatureRecord): FeatureInfo {
    return { ...rec, count: entryCount(this.vecDb(rec.featureId)) };
  }

  private vecDb(featureId: string): Database<Buffer, string> {
    let db = this.vecDbs.get(featureId);
    if (!db) {
      db = this.root.openDB<Buffer, string>({ name: `vec/${featureId}`, encoding: 'binary' });
      this.vecDbs.set(featureId, db);
    }
    return db;
  }

  /** Encodes into a reused scratch buffer: putSync copies it into the LMDB page at once. */
  private encode(vector: Float32Array, updatedAtMs: number): Buffer {
    const n = HEADER_BYTES + vector.byteLength;
    if (this.scratch.length !== n) this.scratch = Buffer.alloc(n);
    this.scratch.writeDoubleLE(updatedAtMs, 0);
    this.scratch.set(new Uint8Array(vector.buffer, vector.byteOffset, vector.byteLength), HEADER_BYTES);
    return this.scratch;
  }
}

export interface ForgetCounts {
  /** Distinct user ids given. */
  users: number;
  /** Of them, users without a tombstone before. */
  newlyForgotten: number;
  vectorsRemoved: number;
  installerEntriesRemoved: number;
  keptAppListsRemoved: number;
  realtimeStatesRemoved: number;
}

/** The realtime state's sub-database (src/stream/state.ts STATE_DB); named here to keep the store free of stream imports. */
const REALTIME_STATE_DB = 'recent-events';

/** The tombstones' sub-database, for writers that share the LMDB environment (the realtime processor). */
export function openForgotten(root: RootDatabase): Database<number, string> {
  return root.openDB<number, string>({ name: 'forgotten' });
}

function entryCount(db: Database<Buffer, string>): number {
  return (db.getStats() as { entryCount: number }).entryCount;
}

function checkVector(vector: unknown, dim: number, featureId: string, userId: string): asserts vector is Float32Array {
  if (!(vector instanceof Float32Array)) {
    throw new StoreError('INVALID_ARGUMENT', `vector of user ${userId} must be a Float32Array`);
  }
  if (vector.length !== dim) {
    throw new StoreError('INVALID_ARGUMENT', `vector of user ${userId} has ${vector.length} dimensions; feature ${featureId} has ${dim}`);
  }
  for (let i = 0; i < dim; i++) {
    if (!Number.isFinite(vector[i])) {
      throw new StoreError('INVALID_ARGUMENT', `vector of user ${userId} has a non-finite value (${vector[i]}) at index ${i}`);
    }
  }
}

function decode(buf: Buffer, dim: number, featureId: string, userId: string): { vector: Float32Array; updatedAtMs: number } {
  if (buf.length !== HEADER_BYTES + 4 * dim) {
    throw new StoreError('FAILED_PRECONDITION', `stored vector of user ${userId} in feature ${featureId} has ${buf.length} bytes, expected ${HEADER_BYTES + 4 * dim}: the store is damaged`);
  }
  const vector = new Float32Array(dim);
  new Uint8Array(vector.buffer).set(buf.subarray(HEADER_BYTES, HEADER_BYTES + 4 * dim));
  return { vector, updatedAtMs: buf.readDoubleLE(0) };
}

/**
 * LMDB trusts its file: a garbled meta page crashes the process inside mdb_env_open instead of
 * returning an error. Check both meta pages' magic first so a damaged store gets a clear error.
 * (Damage deeper in the file is not detectable this cheaply: LMDB pages carry no checksums.)
 */
function checkLmdbHeader(file: string): void {
  if (!existsSync(file)) return; // a new store
  const size = statSync(file).size;
  const fd = openSync(file, 'r');
  try {
    const head = Buffer.alloc(64);
    const bad = (why: string) => new StoreError('FAILED_PRECONDITION', `store file ${file} is damaged (${why}); restore it from a backup or re-embed into a new store`);
    if (size < 2 * 512 || readSync(fd, head, 0, 64, 0) < 64) throw bad('too short');
    if (head.readUInt32LE(24) !== LMDB_MAGIC) throw bad('bad magic in meta page 0');
    const pageSize = head.readUInt32LE(48);
    if (pageSize < 512 || pageSize > 65536 || (pageSize & (pageSize - 1)) !== 0 || size < 2 * pageSize) throw bad('bad page size');
    if (readSync(fd, head, 0, 64, pageSize) < 64 || head.readUInt32LE(24) !== LMDB_MAGIC) throw bad('bad magic in meta page 1');
  } finally {
    closeSync(fd);
  }
}

const LMDB_MAGIC = 0xbeefc0de;
