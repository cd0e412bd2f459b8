// The batch embedding job (paper §7): a trained checkpoint turns every user of a prepared dataset
// (or only those active since a date: "feature updating") into long-term vectors, written to the
// store under the checkpoint's feature id. Wiring only: data, model and store do the work.
//
// Crash safety: each batch of vectors is committed in one LMDB transaction together with the run's
// progress marker (shard, position), so after a crash the store holds exactly the batches before the
// marker and a re-run resumes after it. Re-running a finished run embeds again from the start
// (overwriting the same users with bit-identical vectors), which is what "feature updating" wants.
import { createHash } from 'node:crypto';
import { openPrepared } from '../src/data/prepared.js';
import type { UserExample } from '../src/data/types.js';
import { createEmbedder } from '../src/model/infer.js';
import { EmbeddingStore } from '../src/store/store.js';
import { UserError } from '../src/util/errors.js';
import { fnv1a32 } from '../src/util/hash.js';
import { child } from '../src/util/log.js';
import { Progress } from '../src/util/progress.js';

const log = child('embed-job');

export interface EmbedJobOptions {
  modelDir: string;
  dataDir: string;
  storeDir: string;
  /** YYYY-MM-DD: embed only users with a kept event on or after this day (UTC). */
  activeSince?: string;
  backend?: string;
  workers?: number;
  /** Users per model call and per store transaction. */
  batchSize?: number;
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

export interface EmbedJobResult {
  featureId: string;
  variant: string;
  dim: number;
  users: number;
  skippedInactive: number;
  resumedFrom: { shard: number; position: number } | null;
  /** `i/n` when the run embedded one user shard; null for the whole dataset. */
  userShard: string | null;
  /** Users left to the other user shards. */
  otherShards: number;
  seconds: number;
  usersPerSecond: number;
  gflopsPerSecond: number;
  backend: string;
  workers: number;
  installerApps: number;
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

export async function runEmbedJob(opts: EmbedJobOptions): Promise<EmbedJobResult> {
  const sinceMs = opts.activeSince !== undefined ? parseActiveSince(opts.activeSince) : null;
  const batchSize = opts.batchSize ?? 1000;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new UserError(`batch size must be a positive integer, got ${batchSize}`);
  const userShard = opts.shard;
  if (userShard !== undefined) parseShard(`${userShard.index}/${userShard.count}`);
  const ds = await openPrepared(opts.dataDir);
  const embedder = await createEmbedder(opts.modelDir, { vocabHash: ds.vocab.hash, backend: opts.backend, workers: opts.workers });
  const store = EmbeddingStore.open(opts.storeDir);
  const started = performance.now();
  try {
    const { manifest } = embedder;
    const featureId = manifest.featureId;
    store.registerFeature({
      featureId,
      namespace: 'long',
      dim: embedder.dim,
      variant: manifest.variant,
      meta: { modelDir: opts.modelDir, vocabHash: manifest.vocab.hash, dataDir: opts.dataDir, backend: embedder.backend.name },
    });
    // One run id per (model, dataset, activity filter, user shard): a re-run of the same job resumes it.
    const shardKey = userShard ? `|shard ${userShard.index}/${userShard.count}` : '';
    const runId = `embed:${featureId}:${createHash('sha256').update(`${ds.manifest.vocabHash}|${JSON.stringify(ds.manifest.shards)}|${opts.activeSince ?? ''}${shardKey}`).digest('hex').slice(0, 16)}`;
    let prog = store.getRunState<RunProgress>(runId);
    if (!prog || prog.done || opts.restart) prog = { shard: 0, position: 0, users: 0, done: false };
    const resumedFrom = prog.shard > 0 || prog.position > 0 ? { shard: prog.shard, position: prog.position } : null;
    if (resumedFrom) log.info({ runId, ...resumedFrom, users: prog.users }, 'resuming an unfinished embed run');

    const total = sinceMs === null && !userShard ? ds.manifest.numUsers : undefined;
    const bar = new Progress({ label: `embed ${featureId}${userShard ? ` shard ${userShard.index}/${userShard.count}` : ''}`, total, unit: 'users' });
    if (total !== undefined) bar.set(prog.users);
    let users = prog.users;
    let skipped = 0;
    let otherShards = 0;
    let pending: UserExample[] = [];
    let state: RunProgress = prog;
    const flush = async (next: RunProgress): Promise<void> => {
      if (pending.length > 0) {
        const vecs = await embedder.embed(pending);
        const erased = await store.putMany(
          featureId,
          pending.map((ex, i) => ({ userId: ex.userId, vector: vecs[i]! })),
          { runState: { runId, state: next } },
        );
        // Users erased with `aetn store forget` are in old prepared data; the store keeps them out.
        if (erased > 0) log.info({ featureId, skipped: erased }, 'forgotten users skipped (tombstones)');
        bar.tick(pending.length, `${((bar.rate * embedder.flopsPerUser) / 1e9).toFixed(1)} GFLOP/s`);
      } else {
        await store.setRunState(runId, next);
      }
      pending = [];
      state = next;
    };

    const shards = ds.manifest.shards.length;
    outer: for (let shard = prog.shard; shard < shards; shard++) {
      let position = 0;
      const skipTo = shard === prog.shard ? prog.position : 0;
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
        if (pending.length >= batchSize) await flush({ shard, position, users, done: false });
        if (opts.maxUsers !== undefined && users >= opts.maxUsers) {
          await flush({ shard, position, users, done: false });
          break outer;
        }
      }
      await flush({ shard: shard + 1, position: 0, users, done: false });
    }
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
    };
    log.info(result, finished ? 'embed run finished' : 'embed run stopped early (resumable)');
    return result;
  } finally {
    await embedder.close();
    await store.close();
  }
}

/**
 * "Users who installed app X" for every catalog app, in or out of the vocabulary: the look-alike
 * seeds of the AudienceService. One pass over the prepared data; user id strings are shared, so
 * memory is one pointer per (user, app).
 */
async function writeInstallers(store: EmbeddingStore, ds: Awaited<ReturnType<typeof openPrepared>>): Promise<number> {
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
  for await (const ex of ds.examples()) {
    const seen = new Set<number>();
    for (const arr of [ex.retention, ex.installs]) for (const i of arr) seen.add(i);
    for (const i of seen) add(appIdOf[i]!, ex.userId);
    const apps = [...new Set(Array.from(ex.retention, (i) => appIdOf[i]!))];
    kept.push([ex.userId, apps]);
    for (const a of apps) keptBy.set(a, (keptBy.get(a) ?? 0) + 1);
    if (kept.length >= 5000) {
      await store.putUserAppsMany(kept);
      kept = [];
    }
  }
  if (kept.length > 0) await store.putUserAppsMany(kept);
  await store.putAppUsersMany(keptBy);
  for await (const o of ds.outOfVocab()) for (const a of new Set(o.appIds)) add(a, o.userId);
  const all = [...lists.entries()];
  for (let i = 0; i < all.length; i += 500) await store.putInstallersMany(all.slice(i, i + 500));
  return all.length;
}
