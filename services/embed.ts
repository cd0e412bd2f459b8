// The batch embedding job (paper §7): a trained checkpoint turns every user of a prepared dataset
// (or only those active since a date: "feature updating") into long-term vectors, written to the
// store under the checkpoint's feature id. Wiring only: data, model and store do the work.
//
// Crash safety: each batch of vectors is committed in one LMDB transaction together with the run's
// progress marker (shard, position), so after a crash the store holds exactly the batches before the
// marker and a re-run resumes after it. On the Cassandra store (`cassandra` option) the marker is
// written after every vector of its batch is acknowledged: after a crash the store holds at least
// the batches before the marker, and the re-run rewrites the rest with the same bits. Re-running a finished run embeds again from the start
// (overwriting the same users with bit-identical vectors), which is what "feature updating" wants.
import { createHash } from 'node:crypto';
import { runtimeSettings } from '../src/config/config.js';
import { openPrepared } from '../src/data/prepared.js';
import type { UserExample } from '../src/data/types.js';
import { resolveBackendName } from '../src/model/backend.js';
import { createEmbedder } from '../src/model/infer.js';
import { documentFrequency, idfOf, project, randomizedSvd, tfidfRows } from '../src/audience/tfidf-svd.js';
import { EmbeddingStore } from '../src/store/store.js';
import { CassandraStore, type CassandraOptions } from '../src/store/cassandra.js';
import type { Store } from '../src/store/backend.js';
import { UserError } from '../src/util/errors.js';
import { fnv1a32 } from '../src/util/hash.js';
import { child } from '../src/util/log.js';
import { Progress } from '../src/util/progress.js';

const log = child('embed-job');

export interface EmbedJobOptions {
  modelDir: string;
  dataDir: string;
  storeDir: string;
  /** Write into this Cassandra keyspace instead of the LMDB store in storeDir (the cluster mode). */
  cassandra?: CassandraOptions;
  /** YYYY-MM-DD: embed only users with a kept event on or after this day (UTC). */
  activeSince?: string;
  backend?: string;
  workers?: number;
  /** Users per model call and per store transaction (default: 1000; on webgpu the embedder's batchUsers). */
  batchSize?: number;
  /**
   * Read and decode the next batch, and commit the previous one, while this one embeds (and on
   * webgpu dispatch the next device chunk while one computes). Default runtime.embedOverlap, 'auto':
   * on webgpu only. Off: one stage after the other. The vectors are the same bits.
   */
  overlap?: boolean;
  /** Device memory of the webgpu engine, MiB (default runtime.gpuMemoryBudgetMiB or 4096). */
  gpuMemoryBudgetMiB?: number;
  /** Also (re)write the "installers of app X" lists used by look-alike seeds (default true). */
  installers?: boolean;
  /** Ignore a previous unfinished run's progress and start over. */
  restart?: boolean;
  /** Stop after this many users (tests of crash and resume). */
  maxUsers?: number;
  /**
   * Only the users with fnv1a32(userId) % count === index (`--shard i/n`), so that n machines split
   * one run; each shard resumes on its own, and the union of the n shards equals the unsharded run.
   */
  shard?: { index: number; count: number };
}

/** What every embed run reports, with a model or without one. */
export interface EmbedRunSummary {
  featureId: string;
  variant: string;
  dim: number;
  /** Users written in this run. */
  users: number;
  seconds: number;
  usersPerSecond: number;
  installerApps: number;
  /** Users per store transaction. */
  batchSize: number;
}

export interface EmbedJobResult extends EmbedRunSummary {
  skippedInactive: number;
  resumedFrom: { shard: number; position: number } | null;
  /** `i/n` when the run embedded one user shard; null for the whole dataset. */
  userShard: string | null;
  /** Users left to the other user shards. */
  otherShards: number;
  gflopsPerSecond: number;
  backend: string;
  workers: number;
  /** Users per device call of the engine (batchSize is also the users per model call). */
  chunkUsers: number;
  overlap: boolean;
  /**
   * Seconds the job waited on each stage: reading/decoding the next batch, the model, committing to
   * the store. Without overlap they add up to the run; with it, the host stages' time is what was
   * not hidden behind the model.
   */
  waited: { read: number; embed: number; write: number };
}

interface RunProgress {
  [key: string]: unknown;
  shard: number; // shard being worked on
  position: number; // examples of that shard already handled (embedded or skipped)
  users: number; // users embedded so far in this run
  done: boolean;
}

export function parseActiveSince(s: string): number {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(s) || Number.isNaN(Date.parse(`${s}T00:00:00Z`))) {
    throw new UserError(`--active-since must be a date YYYY-MM-DD, got '${s}'`);
  }
  return Date.parse(`${s}T00:00:00Z`);
}

/** Parses `--shard i/n` (0 <= i < n). */
export function parseShard(s: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(s.trim());
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || !(count >= 1) || !(index < count) || !Number.isSafeInteger(count)) {
    throw new UserError(`--shard must be i/n with 0 <= i < n (e.g. 0/4), got '${s}'`);
  }
  return { index, count };
}

/** One batch of the job: its users and the run's progress once they are committed. */
interface JobBatch {
  examples: UserExample[];
  next: RunProgress;
}

export async function runEmbedJob(opts: EmbedJobOptions): Promise<EmbedJobResult> {
  const sinceMs = opts.activeSince !== undefined ? parseActiveSince(opts.activeSince) : null;
  if (opts.batchSize !== undefined && (!Number.isInteger(opts.batchSize) || opts.batchSize < 1)) throw new UserError(`batch size must be a positive integer, got ${opts.batchSize}`);
  const setting = opts.overlap === undefined ? runtimeSettings().embedOverlap : opts.overlap ? 'on' : 'off';
  // auto: on webgpu only, where the host and the device are two processors. On the CPU backends the
  // host stages are ~3% of a run and overlapping them measured no gain (docs/parts/backends.md).
  const overlap = setting === 'auto' ? resolveBackendName(opts.backend) === 'webgpu' : setting === 'on';
  const userShard = opts.shard;
  if (userShard !== undefined) parseShard(`${userShard.index}/${userShard.count}`);
  const ds = await openPrepared(opts.dataDir);
  const embedder = await createEmbedder(opts.modelDir, { vocabHash: ds.vocab.hash, backend: opts.backend, workers: opts.workers, gpuMemoryBudgetMiB: opts.gpuMemoryBudgetMiB, overlap });
  const batchSize = opts.batchSize ?? embedder.batchUsers;
  let store: Store;
  try {
    store = await openJobStore(opts);
  } catch (err) {
    await embedder.close();
    throw err;
  }
  const started = performance.now();
  try {
    const { manifest } = embedder;
    const featureId = manifest.featureId;
    await store.registerFeature({
      featureId,
      namespace: 'long',
      dim: embedder.dim,
      variant: manifest.variant,
      meta: { modelDir: opts.modelDir, vocabHash: manifest.vocab.hash, dataDir: opts.dataDir, backend: embedder.backend.name },
    });
    // One run id per (model, dataset, activity filter, user shard): a re-run of the same job resumes it.
    const shardKey = userShard ? `|shard ${userShard.index}/${userShard.count}` : '';
    const runId = `embed:${featureId}:${createHash('sha256').update(`${ds.manifest.vocabHash}|${JSON.stringify(ds.manifest.shards)}|${opts.activeSince ?? ''}${shardKey}`).digest('hex').slice(0, 16)}`;
    let prog = (await store.getRunState(runId)) as RunProgress | undefined;
    if (!prog || prog.done || opts.restart) prog = { shard: 0, position: 0, users: 0, done: false };
    const resumedFrom = prog.shard > 0 || prog.position > 0 ? { shard: prog.shard, position: prog.position } : null;
    if (resumedFrom) log.info({ runId, ...resumedFrom, users: prog.users }, 'resuming an unfinished embed run');

    const total = sinceMs === null && !userShard ? ds.manifest.numUsers : undefined;
    const bar = new Progress({ label: `embed ${featureId}${userShard ? ` shard ${userShard.index}/${userShard.count}` : ''}`, total, unit: 'users' });
    if (total !== undefined) bar.set(prog.users);
    let skipped = 0;
    let otherShards = 0;
    const start = prog;
    const shards = ds.manifest.shards.length;

    // Stage 1: the shards, read and decoded into batches. Each batch carries the progress marker
    // committed with it; a shard's end commits a marker even when no user is left to embed.
    async function* batches(): AsyncGenerator<JobBatch> {
      let users = start.users;
      let pending: UserExample[] = [];
      for (let shard = start.shard; shard < shards; shard++) {
        let position = 0;
        const skipTo = shard === start.shard ? start.position : 0;
        for await (const ex of ds.examples({ shard })) {
          position++;
          if (position <= skipTo) continue;
          if (userShard && fnv1a32(ex.userId) % userShard.count !== userShard.index) {
            otherShards++;
            continue;
          }
          if (sinceMs !== null && ex.lastActiveMs < sinceMs) {
            skipped++;
          } else {
            pending.push(ex);
            users++;
          }
          const stop = opts.maxUsers !== undefined && users >= opts.maxUsers;
          if (pending.length >= batchSize || stop) {
            yield { examples: pending, next: { shard, position, users, done: false } };
            pending = [];
          }
          if (stop) return;
        }
        yield { examples: pending, next: { shard: shard + 1, position: 0, users, done: false } };
        pending = [];
      }
    }

    // Stage 3: one commit at a time, in order: the vectors with the marker in one transaction.
    const commit = async (b: JobBatch, vecs: Float32Array[] | null): Promise<void> => {
      if (vecs) {
        const erased = await store.putMany(
          featureId,
          b.examples.map((ex, i) => ({ userId: ex.userId, vector: vecs[i]! })),
          { runState: { runId, state: b.next } },
        );
        // Users erased with `aetn store forget` are in old prepared data; the store keeps them out.
        if (erased > 0) log.info({ featureId, skipped: erased }, 'forgotten users skipped (tombstones)');
        bar.tick(b.examples.length, `${((bar.rate * embedder.flopsPerUser) / 1e9).toFixed(1)} GFLOP/s`);
      } else {
        await store.setRunState(runId, b.next);
      }
    };

    // Stage 2, the model, between them. With overlap the next batch is read while this one embeds
    // (the async reads and decoding run whenever the model waits on its device or workers), and
    // this batch commits while the next one embeds; without it every stage waits for the last.
    const waited = { read: 0, embed: 0, write: 0 };
    // A promise already running (the read ahead, the commit in flight): the time spent waiting for
    // it. A function: started here, so synchronous model work (wasm's readback) is counted too.
    const timed = async <T>(k: keyof typeof waited, p: Promise<T> | (() => Promise<T>)): Promise<T> => {
      const t = performance.now();
      try {
        return await (typeof p === 'function' ? p() : p);
      } finally {
        waited[k] += (performance.now() - t) / 1000;
      }
    };
    let state: RunProgress = prog;
    const it = batches();
    let nextRead: Promise<IteratorResult<JobBatch>> | undefined = it.next();
    let writing: Promise<void> = Promise.resolve();
    try {
      for (;;) {
        const r: IteratorResult<JobBatch> = await timed('read', nextRead!);
        nextRead = undefined;
        if (r.done) break;
        const b = r.value;
        if (overlap) {
          nextRead = it.next();
          // Handled here, awaited at the top of the loop (or dropped on an error below).
          nextRead.catch(() => {});
        }
        const vecs = b.examples.length > 0 ? await timed('embed', () => embedder.embed(b.examples)) : null;
        await timed('write', writing);
        writing = commit(b, vecs);
        writing.catch(() => {});
        state = b.next;
        if (!overlap) {
          await timed('write', writing);
          nextRead = it.next();
        }
      }
      await timed('write', writing);
    } finally {
      // On an error: let the batch being read and the commit in flight settle before the store closes.
      await Promise.allSettled([nextRead, writing]);
      await it.return(undefined).catch(() => {});
    }
    const users = state.users;
    const finished = state.shard >= shards;
    if (finished) await store.setRunState(runId, { ...state, done: true });
    bar.finish();

    let installerApps = 0;
    // Installer lists cover every user, so one user shard (0) writes them for all.
    if (finished && (opts.installers ?? true) && (userShard?.index ?? 0) === 0) installerApps = await writeInstallers(store, ds);

    const seconds = (performance.now() - started) / 1000;
    const embedded = users - prog.users;
    const result: EmbedJobResult = {
      featureId,
      variant: manifest.variant,
      dim: embedder.dim,
      users: embedded,
      skippedInactive: skipped,
      resumedFrom,
      userShard: userShard ? `${userShard.index}/${userShard.count}` : null,
      otherShards,
      seconds,
      usersPerSecond: embedded / seconds,
      gflopsPerSecond: (embedded * embedder.flopsPerUser) / seconds / 1e9,
      backend: embedder.backend.name,
      workers: embedder.workers,
      installerApps,
      batchSize,
      chunkUsers: embedder.chunkUsers,
      overlap,
      waited,
    };
    log.info(result, finished ? 'embed run finished' : 'embed run stopped early (resumable)');
    return result;
  } finally {
    await embedder.close();
    await store.close();
  }
}

export interface SvdEmbedJobOptions {
  dataDir: string;
  storeDir: string;
  /** Write into this Cassandra keyspace instead of the LMDB store in storeDir. */
  cassandra?: CassandraOptions;
  /** Dimensions of the reduced vectors (default 64; at most the number of users or apps). */
  dim?: number;
  /** Seed of the randomized SVD (same data and seed: bit-identical vectors). */
  seed?: number;
  /** Users per store transaction. */
  batchSize?: number;
  /** Also (re)write the installer lists and kept apps (default true). */
  installers?: boolean;
}

export interface SvdEmbedJobResult extends EmbedRunSummary {
  method: 'svd';
  /** Users whose TF-IDF row is empty (no kept app): written without a vector. */
  skippedEmpty: number;
  /** Share of the TF-IDF matrix's squared norm the kept dimensions hold. */
  explainedShare: number;
}

export const SVD_WHAT = 'classical: TF-IDF of the kept apps (binary tf, smoothed idf, unit rows) -> randomized truncated SVD -> rows of unit length';

/**
 * The classical feature kind (`aetn embed --method svd`): no trained model, the user vectors are
 * the TF-IDF rows of the users' kept apps reduced by a randomized truncated SVD
 * (src/audience/tfidf-svd.ts) and scaled to unit length: the baseline of `aetn eval`, written to
 * the store as a feature like any model's, so it can be indexed, served and searched. The feature
 * id names the method, dimension and a hash of the data and seed (`svd-64-<hash>`), and its
 * metadata says it is classical. The SVD is fitted on all users of the dataset at once (in
 * memory: one list of app indices per user), so the job is not resumable and has no
 * --active-since: re-run it on new data (a new feature id).
 */
export async function runSvdEmbedJob(opts: SvdEmbedJobOptions): Promise<SvdEmbedJobResult> {
  const dim = opts.dim ?? 64;
  const seed = opts.seed ?? 1;
  const batchSize = opts.batchSize ?? 1000;
  if (!Number.isInteger(dim) || dim < 1 || dim > 1024) throw new UserError(`--dim must be an integer in 1..1024, got ${dim}`);
  if (!Number.isInteger(seed) || seed < 0) throw new UserError(`--seed must be a non-negative integer, got ${seed}`);
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new UserError(`batch size must be a positive integer, got ${batchSize}`);
  const ds = await openPrepared(opts.dataDir);
  const started = performance.now();
  const ids: string[] = [];
  const rows: Int32Array[] = [];
  const readBar = new Progress({ label: 'svd: read users', total: ds.manifest.numUsers, unit: 'users' });
  for await (const ex of ds.examples()) {
    ids.push(ex.userId);
    rows.push(ex.retention);
    readBar.tick();
  }
  readBar.finish();
  const n = ids.length;
  const m = ds.vocab.apps.length;
  if (n < 2 || m < 2) throw new UserError(`the dataset has ${n} users and ${m} vocabulary apps: an SVD needs at least 2 of each`);
  const k = Math.min(dim, n, m);
  if (k < dim) log.warn({ dim, used: k }, 'fewer users or apps than --dim: the vectors have fewer dimensions');
  const A = tfidfRows(rows, m, idfOf(documentFrequency(rows, m), n));
  const svdBar = new Progress({ label: `svd: randomized SVD to ${k}`, total: 1, unit: 'fits' });
  const svd = randomizedSvd(A, k, seed);
  svdBar.tick();
  svdBar.finish();
  const V = project(A, svd);
  let total = 0;
  for (let t = 0; t < A.val.length; t++) total += A.val[t]! * A.val[t]!;
  let kept = 0;
  for (const s of svd.sigma) kept += s * s;
  const hash = createHash('sha256').update(`${ds.manifest.vocabHash}|${JSON.stringify(ds.manifest.shards)}|svd|${k}|${seed}`).digest('hex').slice(0, 8);
  const featureId = `svd-${k}-${hash}`;
  const store = await openJobStore(opts);
  let written = 0;
  let skippedEmpty = 0;
  let installerApps = 0;
  try {
    await store.registerFeature({
      featureId,
      namespace: 'long',
      dim: k,
      variant: 'tfidf-svd',
      meta: { classical: true, method: 'svd', what: SVD_WHAT, svdSeed: seed, vocabHash: ds.manifest.vocabHash, dataDir: opts.dataDir },
    });
    const bar = new Progress({ label: `embed ${featureId}`, total: n, unit: 'users' });
    for (let s = 0; s < n; s += batchSize) {
      const entries: { userId: string; vector: Float32Array }[] = [];
      for (let i = s; i < Math.min(n, s + batchSize); i++) {
        const v = V.slice(i * k, i * k + k);
        let nn = 0;
        for (let j = 0; j < k; j++) nn += v[j]! * v[j]!;
        if (!(nn > 1e-24)) {
          skippedEmpty++;
          continue;
        }
        const inv = 1 / Math.sqrt(nn);
        for (let j = 0; j < k; j++) v[j]! *= inv;
        entries.push({ userId: ids[i]!, vector: v });
      }
      const erased = await store.putMany(featureId, entries);
      if (erased > 0) log.info({ featureId, skipped: erased }, 'forgotten users skipped (tombstones)');
      written += entries.length - erased;
      bar.tick(Math.min(n, s + batchSize) - s);
    }
    bar.finish();
    if (opts.installers ?? true) installerApps = await writeInstallers(store, ds);
  } finally {
    await store.close();
  }
  const seconds = (performance.now() - started) / 1000;
  const result: SvdEmbedJobResult = {
    method: 'svd',
    featureId,
    variant: 'tfidf-svd',
    dim: k,
    users: written,
    skippedEmpty,
    seconds,
    usersPerSecond: written / seconds,
    batchSize,
    installerApps,
    explainedShare: total > 0 ? kept / total : 0,
  };
  log.info(result, 'svd embed run finished');
  return result;
}

/**
 * "Users who installed app X" for every catalog app, in or out of the vocabulary: the look-alike
 * seeds of the AudienceService. One pass over the prepared data; user id strings are shared, so
 * memory is one pointer per (user, app).
 */
function openJobStore(opts: { storeDir: string; cassandra?: CassandraOptions }): Promise<Store> | Store {
  return opts.cassandra ? CassandraStore.open(opts.cassandra) : EmbeddingStore.open(opts.storeDir);
}

async function writeInstallers(store: Store, ds: Awaited<ReturnType<typeof openPrepared>>): Promise<number> {
  const lists = new Map<string, string[]>();
  const add = (appId: string, user: string) => {
    let l = lists.get(appId);
    if (!l) lists.set(appId, (l = []));
    if (l[l.length - 1] !== user) l.push(user);
  };
  const appIdOf = ds.vocab.apps.map((a) => a.appId);
  // The kept vocabulary apps of each user, for the look-alike's app features, in the same pass.
  let kept: [string, string[]][] = [];
  const keptBy = new Map<string, number>();
  // Every app each user ever installed (kept, or installed and uninstalled in the history), for the
  // look-alike's history item-kNN; written only for users whose history holds more than they keep.
  let ever: [string, string[]][] = [];
  const everBy = new Map<string, number>();
  for await (const ex of ds.examples()) {
    const seen = new Set<number>();
    for (const arr of [ex.retention, ex.installs]) for (const i of arr) seen.add(i);
    for (const i of seen) add(appIdOf[i]!, ex.userId);
    const apps = [...new Set(Array.from(ex.retention, (i) => appIdOf[i]!))];
    kept.push([ex.userId, apps]);
    for (const a of apps) keptBy.set(a, (keptBy.get(a) ?? 0) + 1);
    const everApps = [...new Set([...apps, ...Array.from(ex.installs, (i) => appIdOf[i]!), ...Array.from(ex.uninstalls, (i) => appIdOf[i]!)])];
    if (everApps.length > apps.length) ever.push([ex.userId, everApps]);
    for (const a of everApps) everBy.set(a, (everBy.get(a) ?? 0) + 1);
    if (kept.length >= 5000) {
      await store.putUserAppsMany(kept);
      kept = [];
    }
    if (ever.length >= 5000) {
      await store.putUserEverAppsMany(ever);
      ever = [];
    }
  }
  if (kept.length > 0) await store.putUserAppsMany(kept);
  await store.putAppUsersMany(keptBy);
  if (ever.length > 0) await store.putUserEverAppsMany(ever);
  await store.putAppEverUsersMany(everBy);
  for await (const o of ds.outOfVocab()) for (const a of new Set(o.appIds)) add(a, o.userId);
  const all = [...lists.entries()];
  for (let i = 0; i < all.length; i += 500) await store.putInstallersMany(all.slice(i, i + 500));
  return all.length;
}
