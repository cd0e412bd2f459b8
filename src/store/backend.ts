// The store as serving, batch embedding and index building see it, whichever backend holds it:
//   lmdb       EmbeddingStore (store.ts): one LMDB environment on this host, the embedded default;
//   cassandra  CassandraStore (cassandra.ts): the shared store of the cluster mode.
// Reads of the LMDB store are synchronous and those of Cassandra are not, so every method may
// return a promise and callers `await` them (an awaited plain value costs one microtask).
import type { FeatureInfo, Namespace, NewFeature, RunState, StoredVector, VectorEntry } from './types.js';

export type MaybePromise<T> = T | Promise<T>;

export type StoreBackendKind = 'lmdb' | 'cassandra';

export interface StoredEntryLike {
  userId: string;
  vector: Float32Array;
  updatedAtMs: number;
}

export interface Store {
  readonly backend: StoreBackendKind;
  /** Where it lives, for messages: a directory, or `cassandra://host:port/keyspace`. */
  readonly location: string;

  registerFeature(info: NewFeature): MaybePromise<FeatureInfo>;
  features(): MaybePromise<FeatureInfo[]>;
  getFeature(featureId: string): MaybePromise<FeatureInfo | undefined>;
  defaultFeature(namespace: Namespace): MaybePromise<FeatureInfo | undefined>;

  getMany(featureId: string, userIds: readonly string[]): MaybePromise<(StoredVector | undefined)[]>;
  /** Writes vectors (forgotten users skipped; returns how many), then the optional run marker. */
  putMany(featureId: string, entries: readonly VectorEntry[], opts?: { runState?: { runId: string; state: RunState }; updatedAtMs?: number }): Promise<number>;
  /** Every vector of a feature (LMDB: key order; Cassandra: bucket by bucket). */
  iterate(featureId: string): Iterable<StoredEntryLike> | AsyncIterable<StoredEntryLike>;
  userIds(featureId: string): Iterable<string> | AsyncIterable<string>;
  count(featureId: string): MaybePromise<number>;

  getRunState(runId: string): MaybePromise<RunState | undefined>;
  setRunState(runId: string, state: RunState): Promise<void>;

  putInstallersMany(lists: Iterable<readonly [string, readonly string[]]>): Promise<void>;
  installersOf(appKey: string): MaybePromise<string[] | undefined>;
  putUserAppsMany(lists: Iterable<readonly [string, readonly string[]]>): Promise<void>;
  putAppUsersMany(counts: Iterable<readonly [string, number]>): Promise<void>;
  userAppsMany(userIds: readonly string[]): MaybePromise<(string[] | undefined)[]>;
  appUsersMany(appIds: readonly string[]): MaybePromise<(number | undefined)[]>;
  userAppsCount(): MaybePromise<number>;
  putUserEverAppsMany(lists: Iterable<readonly [string, readonly string[]]>): Promise<void>;
  putAppEverUsersMany(counts: Iterable<readonly [string, number]>): Promise<void>;
  userEverAppsMany(userIds: readonly string[]): MaybePromise<(string[] | undefined)[]>;
  appEverUsersMany(appIds: readonly string[]): MaybePromise<(number | undefined)[]>;
  userEverAppsCount(): MaybePromise<number>;

  isForgotten(userId: string): MaybePromise<boolean>;
  forgottenUsers(): MaybePromise<string[]>;
  forgetSeq(): MaybePromise<number>;

  close(): Promise<void>;
}
