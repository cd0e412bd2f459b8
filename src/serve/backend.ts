// What the handlers read: the embedding store (vectors, features, installers) and one ANN index
// per long-term feature. Feature lookups are served from a cache refreshed by polling, so the hot
// path does not scan the feature registry; indexes are polled for swaps (a rebuilt index is picked
// up while calls are in flight: a call keeps the searcher it started with).
import type { Logger } from 'pino';
import type { MaybePromise } from '../store/backend.js';
import type { FeatureInfo, Namespace, StoredVector } from '../store/types.js';
import { RpcError, notFound, invalid } from './errors.js';
import { status } from '@grpc/grpc-js';
import { hashStrings } from '../util/hash.js';
import { mulberry32 } from '../util/random.js';
import { fitAppSvd, type AppSvd } from '../audience/tfidf-svd.js';
import { featureIndexDir, readCurrent } from '../index/layout.js';

export interface Neighbour {
  userId: string;
  /** Cosine similarity (higher is nearer). */
  score: number;
}

export interface AnnSearcher {
  /** Points in the index. */
  readonly size: number;
  search(vector: Float32Array, k: number, ef?: number): Neighbour[] | Promise<Neighbour[]>;
}

export interface IndexSource {
  /** The current index of a feature, or undefined when none is built. */
  get(featureId: string): AnnSearcher | undefined | Promise<AnnSearcher | undefined>;
  /** Picks up rebuilt/swapped indexes; called by the poller. */
  refresh?(): void | Promise<void>;
  close?(): void | Promise<void>;
}

/**
 * What serving reads from a store. The LMDB EmbeddingStore is one as it is (every read
 * synchronous); the Cassandra store is served through CassandraServingStore (cassandra.ts here),
 * which keeps the registry, tombstones and counts as a snapshot refreshed by the poller and reads
 * vectors, installers and kept apps from Cassandra per call.
 */
export interface ServingStore {
  /** Where it lives (a directory, or cassandra://...), for messages. */
  readonly location: string;
  /** The LMDB directory (its indexes live under it); absent for a shared store. */
  readonly dir?: string;
  features(): FeatureInfo[];
  count(featureId: string): number;
  getMany(featureId: string, userIds: readonly string[]): MaybePromise<(StoredVector | undefined)[]>;
  installersOf(appKey: string): MaybePromise<string[] | undefined>;
  userAppsMany(userIds: readonly string[]): MaybePromise<(string[] | undefined)[]>;
  appUsersMany(appIds: readonly string[]): MaybePromise<(number | undefined)[]>;
  userAppsCount(): number;
  userEverAppsMany(userIds: readonly string[]): MaybePromise<(string[] | undefined)[]>;
  appEverUsersMany(appIds: readonly string[]): MaybePromise<(number | undefined)[]>;
  userEverAppsCount(): number;
  userIds(featureId: string): Iterable<string> | AsyncIterable<string>;
  forgetSeq(): number;
  forgottenUsers(): string[];
  isForgotten(userId: string): boolean;
  /** Re-reads what the synchronous methods answer from (called by the poller before anything else). */
  refresh?(): Promise<void>;
}

export interface BackendOptions {
  /** How often to re-read the feature registry and look for new indexes. */
  pollMs?: number;
  log: Logger;
  /** Population sample kept per feature for look-alike negatives. */
  populationCache?: number;
  /**
   * Features of at most this many users keep every id in memory and look-alike calls score them
   * all (default 100,000; 0 = always search candidates in the index).
   */
  exhaustiveMaxUsers?: number;
  /** Whether a feature has a published index (default: an index generation under the LMDB store's directory). */
  hasIndex?: (featureId: string) => boolean;
  /** Largest feature the look-alike's TF-IDF + SVD member is fitted for (default APP_SVD_MAX_USERS). */
  appSvdMaxUsers?: number;
}

const FEATURE_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/** Keys read between two yields to the event loop while drawing a population sample (~2-5 ms). */
const POPULATION_YIELD_EVERY = 4096;

/** Default largest feature the look-alike's TF-IDF + SVD member is fitted for (backend.appSvd; serve.lookalikeSvdMaxUsers). */
export const APP_SVD_MAX_USERS = 5000;

interface Population {
  count: number;
  atMs: number;
  userIds: string[];
}

export class ServingBackend {
  private byId = new Map<string, FeatureInfo>();
  private defaults: Partial<Record<Namespace, FeatureInfo>> = {};
  private timer: NodeJS.Timeout | undefined;
  private readonly populations = new Map<string, Population>();
  private readonly populationDraws = new Map<string, Promise<Population>>();
  /** The look-alike's classical member: TF-IDF + SVD fitted once per population sample. */
  private readonly appSvds = new WeakMap<Population, Map<number, Promise<AppSvd | undefined>>>();
  private polling = false;
  /** Tombstoned users (store.forget), reloaded when the store's forget sequence changes. */
  private forgotten: ReadonlySet<string> = new Set();
  private forgetSeq = -1;

  constructor(
    readonly store: ServingStore,
    readonly indexes: IndexSource,
    private readonly opts: BackendOptions,
  ) {
    this.refreshFeatures();
  }

  start(): void {
    const ms = this.opts.pollMs ?? 2000;
    this.timer = setInterval(() => void this.poll(), ms);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.indexes.close?.();
  }

  async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      await this.store.refresh?.();
      this.refreshFeatures();
      await this.indexes.refresh?.();
    } catch (err) {
      this.opts.log.warn({ err }, 'refresh of features/indexes failed; serving the previous ones');
    } finally {
      this.polling = false;
    }
  }

  /**
   * Re-reads the tombstones when a forget or unforget happened (in this process or another one,
   * e.g. `aetn store forget`): answers are filtered through them until the indexes are reloaded,
   * and cached population samples, which may name forgotten users, are dropped. One LMDB read when
   * nothing changed; called by the poller and at the start of every audience call.
   */
  syncForgotten(): void {
    const seq = this.store.forgetSeq();
    if (seq === this.forgetSeq) return;
    this.forgotten = new Set(this.store.forgottenUsers());
    this.populations.clear();
    this.forgetSeq = seq;
    if (seq > 0) this.opts.log.info({ forgotten: this.forgotten.size }, 'forgotten users reloaded');
  }

  /** Whether a user was forgotten (erased): never part of an answer. */
  isForgotten(userId: string): boolean {
    return this.forgotten.size > 0 && this.forgotten.has(userId);
  }

  refreshFeatures(): void {
    this.syncForgotten();
    const list = this.store.features();
    const before = this.defaults;
    this.byId = new Map(list.map((f) => [f.featureId, f]));
    this.defaults = {};
    for (const ns of ['long', 'short'] as const) {
      const d = this.pickDefault(ns, list);
      if (d) this.defaults[ns] = d;
      if (d?.featureId !== before[ns]?.featureId && d) this.opts.log.info({ namespace: ns, featureId: d.featureId }, 'default feature changed');
    }
  }

  /**
   * The newest active feature of a namespace that is ready to serve. A feature is registered before
   * its vectors are written, so "newest registered" would switch callers to an empty feature in
   * the middle of an embed run. Ready means: for long-term features, an index has been published
   * (built after the embed finished); for short-term ones, at least one vector. Without any ready
   * feature, the newest active one.
   */
  private pickDefault(ns: Namespace, list: FeatureInfo[]): FeatureInfo | undefined {
    const active = list.filter((f) => f.namespace === ns && !f.retired).sort((a, b) => b.createdAtMs - a.createdAtMs || (a.featureId < b.featureId ? 1 : -1));
    const ready = active.find((f) => (ns === 'long' ? this.hasIndex(f.featureId) : f.count > 0));
    return ready ?? active[0];
  }

  private hasIndex(featureId: string): boolean {
    if (this.opts.hasIndex) return this.opts.hasIndex(featureId);
    if (this.store.dir === undefined) return false;
    try {
      return readCurrent(featureIndexDir(this.store.dir, featureId)) !== undefined;
    } catch {
      return false;
    }
  }

  features(): FeatureInfo[] {
    return [...this.byId.values()];
  }

  /**
   * The feature to read for a namespace: the requested id, or the newest active one. Returns
   * undefined when nothing was requested and the namespace has no feature at all.
   */
  resolve(ns: Namespace, requested: string, field: string): FeatureInfo | undefined {
    if (!requested) return this.defaults[ns];
    // Feature ids are at most 128 characters of [A-Za-z0-9._:-]: anything else is refused without
    // echoing it (an unbounded id quoted back overflowed clients' metadata limits).
    if (!FEATURE_ID.test(requested)) {
      throw invalid(`${field} is not a feature id (${requested.length} characters; feature ids are 1-128 characters from [A-Za-z0-9._:-])`);
    }
    let f = this.byId.get(requested);
    if (!f) {
      // Maybe registered since the last poll.
      this.refreshFeatures();
      f = this.byId.get(requested);
    }
    const active = () =>
      [...this.byId.values()]
        .filter((x) => x.namespace === ns && !x.retired)
        .map((x) => x.featureId)
        .join(', ') || 'none';
    if (!f) throw notFound(`${field} "${requested}" is not a known feature id; active ${ns}-term features: ${active()}`);
    if (f.namespace !== ns) throw invalid(`${field} "${requested}" is a ${f.namespace}-term feature; give a ${ns}-term one (active: ${active()})`);
    if (f.retired) throw notFound(`${field} "${requested}" is retired; active ${ns}-term features: ${active()}`);
    return f;
  }

  /** Like `resolve`, but a namespace without any feature is an error. */
  require(ns: Namespace, requested: string, field: string): FeatureInfo {
    const f = this.resolve(ns, requested, field);
    if (!f) throw new RpcError(status.FAILED_PRECONDITION, `the store has no active ${ns}-term feature yet: embed users first`);
    return f;
  }

  /**
   * Runs `fn` on the resolved feature. When the caller asked for the default and `fn` fails with a
   * store error (the default feature was retired between our last poll and the read), the
   * registry is re-read and `fn` runs once more on the new default: a swap never fails a call.
   */
  async withFeature<T>(ns: Namespace, requested: string, field: string, fn: (f: FeatureInfo) => T | Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const f = this.require(ns, requested, field);
      try {
        return await fn(f);
      } catch (err) {
        if (attempt > 0 || requested || err instanceof RpcError || typeof (err as { code?: unknown }).code !== 'string') throw err;
        this.refreshFeatures();
        if (this.defaults[ns]?.featureId === f.featureId) throw err;
      }
    }
  }

  getMany(featureId: string, userIds: readonly string[]): MaybePromise<(StoredVector | undefined)[]> {
    return this.store.getMany(featureId, userIds);
  }

  installersOf(appId: string): MaybePromise<string[] | undefined> {
    return this.store.installersOf(appId);
  }

  async index(feature: FeatureInfo): Promise<AnnSearcher> {
    const idx = await this.indexes.get(feature.featureId);
    if (!idx) {
      throw new RpcError(status.FAILED_PRECONDITION, `no index is built for feature ${feature.featureId}: run \`aetn index --store <dir> --feature ${feature.featureId}\``);
    }
    return idx;
  }

  /**
   * About n users drawn uniformly from the feature, with their vectors. The id sample is a
   * reservoir over the whole feature, kept (up to `populationCache` ids) until the feature's size
   * changes by 5% or 10 minutes pass; each call takes a different deterministic slice of it.
   *
   * Drawing the reservoir reads every key of the feature (seconds at millions of users), so it
   * never runs in one go on the serving thread: it yields to the event loop every few thousand
   * keys, and a stale sample keeps answering while its replacement is drawn (only the very first
   * call for a feature waits for it). Rankers' calls are not held up by an audience call's refresh.
   */
  async population(featureId: string, n: number, salt: string): Promise<{ userIds: string[]; vectors: Float32Array[] }> {
    const count = this.store.count(featureId);
    let pop = this.populations.get(featureId);
    const stale = !pop || Math.abs(pop.count - count) > 0.05 * pop.count || Date.now() - pop.atMs > 600_000;
    if (stale) {
      const refresh = this.refreshPopulation(featureId, count);
      if (!pop) pop = await refresh;
      else refresh.catch((err: unknown) => this.opts.log.warn({ err: (err as Error).message, featureId }, 'population sample refresh failed; the old sample stays in use'));
    }
    return this.slice(featureId, pop!, n, salt);
  }

  /** One reservoir draw per feature at a time; concurrent callers share it. */
  private refreshPopulation(featureId: string, count: number): Promise<Population> {
    let p = this.populationDraws.get(featureId);
    if (!p) {
      p = this.drawPopulation(featureId, count).finally(() => this.populationDraws.delete(featureId));
      this.populationDraws.set(featureId, p);
    }
    return p;
  }

  private async drawPopulation(featureId: string, count: number): Promise<Population> {
    // Small features keep every id, so that look-alike calls can score everyone.
    const keep = count <= (this.opts.exhaustiveMaxUsers ?? 100_000) ? Math.max(count, this.opts.populationCache ?? 20_000) : (this.opts.populationCache ?? 20_000);
    const r = mulberry32(hashStrings([featureId, String(count)]));
    const res: string[] = [];
    let i = 0;
    const take = (id: string) => {
      if (res.length < keep) res.push(id);
      else {
        const j = Math.floor(r() * (i + 1));
        if (j < keep) res[j] = id;
      }
    };
    const ids = this.store.userIds(featureId);
    if (Symbol.asyncIterator in ids) {
      // A shared store reads bucket by bucket (each read yields to the event loop by itself), in
      // hash order: the ids are sorted first so that the sample is the one the LMDB store's key
      // order gives (the same answers as the embedded mode). Ids only: ~60 bytes per user.
      const all: string[] = [];
      for await (const id of ids) all.push(id);
      all.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      for (const id of all) {
        take(id);
        i++;
      }
    } else {
      // A snapshot read: the sample is of one consistent state of the feature however long it takes.
      for (const id of ids) {
        take(id);
        if (++i % POPULATION_YIELD_EVERY === 0) await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
    // Shuffle: below `keep` users the reservoir is in key order, and slices of it must not be.
    for (let k = res.length - 1; k > 0; k--) {
      const j = Math.floor(r() * (k + 1));
      [res[k], res[j]] = [res[j]!, res[k]!];
    }
    const pop = { count, atMs: Date.now(), userIds: res };
    this.populations.set(featureId, pop);
    return pop;
  }

  /** Users with a vector in the feature. */
  count(featureId: string): number {
    return this.store.count(featureId);
  }

  /** Every user of the feature when it is small enough to score exhaustively (else undefined). */
  async allUsers(featureId: string): Promise<readonly string[] | undefined> {
    const max = this.opts.exhaustiveMaxUsers ?? 100_000;
    const count = this.store.count(featureId);
    if (count > max || count === 0) return undefined;
    await this.population(featureId, 0, '');
    const pop = this.populations.get(featureId);
    if (!pop || pop.userIds.length !== pop.count) return undefined;
    return this.forgotten.size > 0 ? pop.userIds.filter((u) => !this.forgotten.has(u)) : pop.userIds;
  }

  /**
   * TF-IDF + SVD of the kept apps of every user of the feature, for the look-alike's classical
   * member; kept as long as the feature's population sample is (a refresh, or an erasure, refits
   * it). Only for features of at most `appSvdMaxUsers` users: the fit runs on the serving thread
   * (~70 ms at 3,000 users), and with a sample instead of everyone the sampled users would sit in
   * the SVD's span and the others outside it, which the member would learn instead of the seeds.
   * Undefined otherwise, or when the store records no kept apps.
   */
  async appSvd(featureId: string, rank: number): Promise<AppSvd | undefined> {
    if (!this.hasUserApps()) return undefined;
    const everyone = await this.allUsers(featureId);
    const pop = this.populations.get(featureId);
    if (!everyone || !pop || everyone.length > (this.opts.appSvdMaxUsers ?? APP_SVD_MAX_USERS) || everyone.length < 2) return undefined;
    let cached = this.appSvds.get(pop);
    if (!cached) this.appSvds.set(pop, (cached = new Map()));
    let p = cached.get(rank);
    if (!p) {
      p = (async () => {
        const m = fitAppSvd(await this.userApps(everyone), rank, hashStrings([featureId, 'app-svd']));
        return m.svd.k > 0 ? m : undefined;
      })();
      cached.set(rank, p);
    }
    return p;
  }

  /** The kept vocabulary apps of each user (look-alike app features); undefined where not recorded. */
  userApps(userIds: readonly string[]): MaybePromise<(string[] | undefined)[]> {
    return this.store.userAppsMany(userIds);
  }

  /** How many users keep each app (undefined where not recorded). */
  appUsers(appIds: readonly string[]): MaybePromise<(number | undefined)[]> {
    return this.store.appUsersMany(appIds);
  }

  /** Every app each user ever installed, kept or since uninstalled (undefined where not recorded). */
  userEverApps(userIds: readonly string[]): MaybePromise<(string[] | undefined)[]> {
    return this.store.userEverAppsMany(userIds);
  }

  /** How many users ever installed each app (undefined where not recorded). */
  appEverUsers(appIds: readonly string[]): MaybePromise<(number | undefined)[]> {
    return this.store.appEverUsersMany(appIds);
  }

  /** Whether the store records the apps users ever installed (stores embedded before they were recorded, or from data without install events, do not). */
  hasUserEverApps(): boolean {
    return this.store.userEverAppsCount() > 0;
  }

  /** Whether the store records users' kept apps at all (stores embedded before they were recorded do not). */
  hasUserApps(): boolean {
    return this.store.userAppsCount() > 0;
  }

  private async slice(featureId: string, pop: Population, n: number, salt: string): Promise<{ userIds: string[]; vectors: Float32Array[] }> {
    const ids = pop.userIds;
    const m = Math.min(n, ids.length);
    const start = ids.length > 0 ? hashStrings([salt]) % ids.length : 0;
    const pick: string[] = new Array(m);
    for (let i = 0; i < m; i++) pick[i] = ids[(start + i) % ids.length]!;
    const vecs = await this.store.getMany(featureId, pick);
    const userIds: string[] = [];
    const vectors: Float32Array[] = [];
    vecs.forEach((v, i) => {
      if (v) {
        userIds.push(pick[i]!);
        vectors.push(v.vector);
      }
    });
    return { userIds, vectors };
  }
}
