// Serving from the shared Cassandra store (the cluster mode): a stateless replica keeps no data
// of its own. The feature registry, tombstones and per-feature counts are a snapshot re-read by the
// poller (every serve.indexPollSeconds); vectors, installers and kept apps are read from Cassandra
// per call. Indexes: each replica copies the live generation of a feature from the store into a
// scratch directory, loads it with the same IndexHandle/SearchPool as the embedded mode, and on
// each poll looks for a newer generation, copies it and swaps (calls in flight keep the old one).
import { rmSync } from 'node:fs';
import type { Logger } from 'pino';
import type { CassandraStore } from '../store/cassandra.js';
import type { FeatureInfo, StoredVector } from '../store/types.js';
import { materializeGeneration, newIndexCacheDir } from '../index/shared.js';
import type { AnnSearcher, IndexSource, ServingStore } from './backend.js';
import { StoreIndexes, type StoreIndexesOptions } from './indexes.js';
import { CassandraStates } from '../stream/cassandra-states.js';

export class CassandraServingStore implements ServingStore {
  private byId = new Map<string, FeatureInfo>();
  private forgotten = new Set<string>();
  private seq = 0;
  private hasUserApps = 0;
  private hasUserEverApps = 0;

  /** Short-term vectors live in the realtime consumers' `states` rows (src/stream/cassandra-states.ts). */
  private readonly states: CassandraStates;

  private constructor(readonly shared: CassandraStore) {
    this.states = new CassandraStates(shared.client, shared.opts.keyspace);
  }

  get location(): string {
    return this.shared.location;
  }

  static async open(shared: CassandraStore): Promise<CassandraServingStore> {
    const s = new CassandraServingStore(shared);
    await s.refresh();
    return s;
  }

  async refresh(): Promise<void> {
    const [features, seq, apps, everApps] = await Promise.all([this.shared.features(), this.shared.forgetSeq(), this.shared.userAppsCount(), this.shared.userEverAppsCount()]);
    this.byId = new Map(features.map((f) => [f.featureId, f]));
    if (seq !== this.seq || this.forgotten.size === 0) this.forgotten = new Set(await this.shared.forgottenUsers());
    this.seq = seq;
    this.hasUserApps = apps;
    this.hasUserEverApps = everApps;
  }

  features(): FeatureInfo[] {
    return [...this.byId.values()];
  }

  /** Users in the feature's live index generation (as of the last poll). */
  count(featureId: string): number {
    return this.byId.get(featureId)?.count ?? 0;
  }

  getMany(featureId: string, userIds: readonly string[]): Promise<(StoredVector | undefined)[]> {
    if (this.byId.get(featureId)?.namespace === 'short') return this.states.vectors(featureId, userIds);
    // The dimension from the snapshot saves a registry read per call.
    return this.shared.getMany(featureId, userIds, this.byId.get(featureId)?.dim);
  }

  installersOf(appKey: string): Promise<string[] | undefined> {
    return this.shared.installersOf(appKey);
  }

  userAppsMany(userIds: readonly string[]): Promise<(string[] | undefined)[]> {
    return this.shared.userAppsMany(userIds);
  }

  appUsersMany(appIds: readonly string[]): Promise<(number | undefined)[]> {
    return this.shared.appUsersMany(appIds);
  }

  userAppsCount(): number {
    return this.hasUserApps;
  }

  userEverAppsMany(userIds: readonly string[]): Promise<(string[] | undefined)[]> {
    return this.shared.userEverAppsMany(userIds);
  }

  appEverUsersMany(appIds: readonly string[]): Promise<(number | undefined)[]> {
    return this.shared.appEverUsersMany(appIds);
  }

  userEverAppsCount(): number {
    return this.hasUserEverApps;
  }

  userIds(featureId: string): AsyncIterable<string> {
    return this.shared.userIds(featureId);
  }

  forgetSeq(): number {
    return this.seq;
  }

  forgottenUsers(): string[] {
    return [...this.forgotten];
  }

  isForgotten(userId: string): boolean {
    return this.forgotten.has(userId);
  }

  /** Whether the feature had a live index generation at the last poll. */
  hasIndex(featureId: string): boolean {
    return (this.byId.get(featureId)?.count ?? 0) > 0;
  }
}

/**
 * The IndexSource of a replica: the live generations copied from the shared store into a scratch
 * directory (deleted on close), served by StoreIndexes over that directory.
 */
export class SharedIndexes implements IndexSource {
  private readonly local: StoreIndexes;
  private readonly known = new Set<string>();

  private constructor(
    private readonly shared: CassandraStore,
    private readonly cacheDir: string,
    private readonly log: Logger,
    opts: StoreIndexesOptions,
  ) {
    this.local = new StoreIndexes(cacheDir, opts);
  }

  static create(shared: CassandraStore, opts: StoreIndexesOptions): SharedIndexes {
    return new SharedIndexes(shared, newIndexCacheDir(), opts.log, opts);
  }

  async get(featureId: string): Promise<AnnSearcher | undefined> {
    if (!this.known.has(featureId)) {
      const t0 = performance.now();
      const gen = await materializeGeneration(this.shared, this.cacheDir, featureId);
      if (gen === undefined) return undefined;
      this.known.add(featureId);
      this.log.info({ featureId, generation: gen, copyMs: Math.round(performance.now() - t0) }, 'index generation copied from the shared store');
    }
    return this.local.get(featureId);
  }

  /** Copies every newer live generation, then lets the loaded indexes swap to it. */
  async refresh(): Promise<void> {
    for (const featureId of this.known) {
      try {
        await materializeGeneration(this.shared, this.cacheDir, featureId);
      } catch (err) {
        this.log.warn({ err: (err as Error).message, featureId }, 'copying a new index generation failed; serving the loaded one');
      }
    }
    await this.local.refresh();
  }

  async close(): Promise<void> {
    await this.local.close();
    rmSync(this.cacheDir, { recursive: true, force: true });
  }
}
