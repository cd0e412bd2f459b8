// `aetn eval` end to end: read a prepared dataset, embed its users with every model (streaming,
// batches of 1000), add the non-learned floor and the realtime head's combination, run the tests
// (evaluate.ts) and write the report (report.ts). Heavy model code is imported lazily.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { basename, dirname, resolve } from 'node:path';
import type { PreparedDataset } from '../data/prepared.js';
import type { UserExample } from '../data/types.js';
import { UserError } from '../util/errors.js';
import { child } from '../util/log.js';
import { Progress } from '../util/progress.js';
import type { AudienceMethod } from './audience.js';
import { evaluate, randomProjection, type EvalTasks, type EvalUsers, type TestName, type VectorSet } from './evaluate.js';
import { cosineScores, type MatMulT } from './neighbors.js';
import { renderChart, renderJson, renderLaoChart, renderMarkdown, type DatasetStats } from './report.js';
import type { LaoKind } from './leave-app-out.js';
import { deriveSeed } from '../util/hash.js';
import { Rng } from '../util/random.js';
import { weightedUnit } from '../serve/encode.js';
import { DEFAULT_WEIGHTS } from '../serve/user-vectors.js';
import { concatRows, recentCategoryCounts } from './sequence-baseline.js';
import { takeLabels, takeRows } from './split.js';
import { withLaterFields, type AetnConfig } from '../model/config.js';

const logger = child('eval');

export interface RunEvalOptions {
  data: string;
  models: string[];
  out: string;
  seed: number;
  runs: number;
  folds: number;
  head?: string;
  maxUsers?: number;
  backend?: string;
  workers?: number;
  /** Worker threads for classifier fits. */
  fitWorkers?: number;
  batchSize: number;
  overlapSample: number;
  test2Classifier: 'gbdt' | 'mlp';
  gbdtTrees: number;
  mlpHidden: number;
  baselineDim: number;
  /** Override the niche categories / look-alike target of the dataset's ground truth. */
  niche?: string[];
  target?: string;
  skip: TestName[];
  /** Also run the serving look-alike algorithm (src/audience/lookalike.ts). */
  serving: boolean;
  notes?: string;
  command: string;
  /** 'paper' (Test #1, Test #2, audience, overlap), 'leave-app-out', or 'all' (default). */
  protocol?: 'paper' | 'leave-app-out' | 'all';
  /** Installer-count bounds of the leave-app-out apps (default 20 and 99). */
  laoMinUsers?: number;
  laoMaxUsers?: number;
  /** At most this many leave-app-out apps (a seeded sample; default all). */
  laoMaxApps?: number;
  /** Dimension of the TF-IDF + SVD baseline vectors (default 64; 0 = none). */
  svdDim?: number;
  /** Weeks of history the classical sequence baseline counts (default 4; 0 = no such baseline). */
  recentWeeks?: number;
  /**
   * Evaluate a uniform sample of this many users (seeded) instead of every user: Test #1 takes every
   * niche adopter of the dataset plus the sample (its negatives are the sample's non-adopters, so the
   * AUC stays unbiased); Test #2, the audience test, the overlap and leave-app-out use the sample alone.
   */
  sample?: number;
  /** Weights of the unit-normalised long and short parts of AETN + head (the served `combined`; default 0.8 / 0.6). */
  combinedWeights?: { long: number; short: number };
}

/** The embedding engine's surface as eval uses it (src/model/infer.ts createEmbedder). */
export interface Embedder {
  manifest: { featureId: string; variant: string; dim?: number; weights?: { numParams?: number; bytes?: number }; config?: Record<string, unknown>; vocab?: { hash?: string } };
  dim: number;
  embed(examples: UserExample[]): Promise<Float32Array[]>;
  close(): Promise<void>;
}
export type EmbedderFactory = (modelDir: string, opts: { backend?: string; workers?: number }) => Promise<Embedder>;

async function defaultEmbedderFactory(): Promise<EmbedderFactory> {
  // Imported on use: the inference engine loads tfjs, which the report-only paths do not need.
  const { createEmbedder } = await import('../model/infer.js');
  return createEmbedder;
}

export interface LoadedUsers {
  users: EvalUsers;
  rowOf: Map<string, number>;
  /** Recent events per user for the realtime head (only when asked for). */
  events?: { app: number; type: 1 | 2; timestampMs: number }[][];
  /** Week bucket of each install / uninstall, aligned with users.installs / users.uninstalls. */
  installDates: Int32Array[];
  uninstallDates: Int32Array[];
  total: number;
  /** Position of each loaded user in the dataset's example order. */
  sourceIndex: number[];
}

/**
 * Users of the dataset (the first maxUsers in shard order: shards are by user-id hash, so a fair
 * sample), or those that `keep` picks by their position in that order and their id.
 */
export async function loadUsers(
  ds: PreparedDataset,
  maxUsers: number | undefined,
  keepEvents: boolean,
  keep?: { pick: (index: number, userId: string) => boolean },
): Promise<LoadedUsers> {
  const users: EvalUsers = { ids: [], retention: [], installs: [], uninstalls: [] };
  const rowOf = new Map<string, number>();
  const events: LoadedUsers['events'] = keepEvents ? [] : undefined;
  const installDates: Int32Array[] = [];
  const uninstallDates: Int32Array[] = [];
  const sourceIndex: number[] = [];
  const limit = maxUsers ?? Infinity;
  const bar = new Progress({ label: 'eval read users', total: keep ? ds.manifest.numUsers : Math.min(limit, ds.manifest.numUsers), unit: 'users' });
  let index = -1;
  for await (const ex of ds.examples()) {
    if (users.ids.length >= limit) break;
    index++;
    if (keep && !keep.pick(index, ex.userId)) {
      if ((index & 1023) === 1023) bar.tick(1024);
      continue;
    }
    if (rowOf.has(ex.userId)) throw new UserError(`user ${ex.userId} appears twice in ${ds.dir}`);
    sourceIndex.push(index);
    rowOf.set(ex.userId, users.ids.length);
    users.ids.push(ex.userId);
    users.retention.push(ex.retention.slice());
    users.installs.push(ex.installs.slice());
    users.uninstalls.push(ex.uninstalls.slice());
    installDates.push(ex.installDates.slice());
    uninstallDates.push(ex.uninstallDates.slice());
    if (events) {
      const ev: { app: number; type: 1 | 2; timestampMs: number }[] = [];
      for (let i = 0; i < ex.installs.length; i++) ev.push({ app: ex.installs[i], type: 1, timestampMs: ex.installTimes[i] });
      for (let i = 0; i < ex.uninstalls.length; i++) ev.push({ app: ex.uninstalls[i], type: 2, timestampMs: ex.uninstallTimes[i] });
      ev.sort((a, b) => a.timestampMs - b.timestampMs);
      events.push(ev);
    }
    if (!keep) bar.tick();
  }
  bar.finish();
  if (keep && index + 1 !== ds.manifest.numUsers) throw new Error(`eval: ${ds.dir} holds ${index + 1} users, its manifest says ${ds.manifest.numUsers}`);
  return { users, rowOf, events, installDates, uninstallDates, total: ds.manifest.numUsers, sourceIndex };
}

/** Ids of the users with a held-out install in any of the niche categories. */
export async function nicheAdopterIds(ds: PreparedDataset, niche: string[]): Promise<Set<string>> {
  const out = new Set<string>();
  if (niche.length === 0) return out;
  if (!ds.manifest.hasLabels) throw new UserError(`${ds.dir} has no held-out week (labels.ndjson): Test #1 needs one (or pass --skip test1)`);
  const cats = new Set(niche);
  for await (const l of ds.labels()) {
    for (const a of l.appIds) {
      const c = ds.catalog.categoryOf(a);
      if (c !== undefined && cats.has(c)) {
        out.add(l.userId);
        break;
      }
    }
  }
  return out;
}

/** The loaded users at the given rows (in that order), as a world of its own. */
export function subsetLoaded(l: LoadedUsers, rows: Int32Array): LoadedUsers {
  const pick = <T>(a: T[]) => Array.from(rows, (r) => a[r]!);
  const ids = pick(l.users.ids);
  return {
    users: { ids, retention: pick(l.users.retention), installs: pick(l.users.installs), uninstalls: pick(l.users.uninstalls) },
    rowOf: new Map(ids.map((id, i) => [id, i])),
    events: l.events ? pick(l.events) : undefined,
    installDates: pick(l.installDates),
    uninstallDates: pick(l.uninstallDates),
    total: l.total,
    sourceIndex: pick(l.sourceIndex),
  };
}

/** Ground truth of the tests from the held-out week and the out-of-vocabulary installs. */
export async function loadTasks(ds: PreparedDataset, rowOf: Map<string, number>, niche: string[], target: string | undefined): Promise<EvalTasks> {
  const n = rowOf.size;
  const nicheIdx = new Map(niche.map((c, i) => [c, i]));
  const nicheLabels = niche.map(() => new Uint8Array(n));
  if (niche.length > 0) {
    if (!ds.manifest.hasLabels) throw new UserError(`${ds.dir} has no held-out week (labels.ndjson): Test #1 needs one (or pass --skip test1)`);
    for await (const l of ds.labels()) {
      const row = rowOf.get(l.userId);
      if (row === undefined) continue;
      for (const a of l.appIds) {
        const c = ds.catalog.categoryOf(a);
        const j = c === undefined ? undefined : nicheIdx.get(c);
        if (j !== undefined) nicheLabels[j][row] = 1;
      }
    }
  }
  const tasks: EvalTasks = { niche: niche.map((name, j) => ({ name, labels: nicheLabels[j] })) };
  if (target) {
    const entry = ds.catalog.byId.get(target);
    if (!entry) throw new UserError(`look-alike target app '${target}' is not in the catalog of ${ds.dir}`);
    if (entry.vocabIndex >= 0) logger.warn({ target }, 'the look-alike target app is IN the vocabulary: the vectors saw its installs, so Test #2 is optimistic');
    const y = new Uint8Array(n);
    const { installersOf } = await import('../data/prepared.js');
    const who = (await installersOf(ds, [target])).get(target) ?? [];
    for (const u of who) {
      const row = rowOf.get(u);
      if (row !== undefined) y[row] = 1;
    }
    tasks.lookalike = { name: target, labels: y };
  }
  return tasks;
}

/**
 * AETN + realtime head as the serving layer combines them: each part scaled to unit length, times its
 * weight, side by side ([w_l·long/|long| ‖ w_s·short/|short|]; a zero part stays zero).
 */
export function servedCombination(L: Float32Array, dl: number, S: Float32Array, ds: number, w: { long: number; short: number }): Float32Array {
  const n = L.length / dl;
  if (S.length / ds !== n) throw new Error(`servedCombination: ${n} long vectors against ${S.length / ds} short ones`);
  const d = dl + ds;
  const C = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    C.set(weightedUnit(L.subarray(i * dl, (i + 1) * dl), w.long), i * d);
    C.set(weightedUnit(S.subarray(i * ds, (i + 1) * ds), w.short), i * d + dl);
  }
  return C;
}

/** Embed every loaded user with one model, streaming the shards again in batches. */
async function embedAll(ds: PreparedDataset, emb: Embedder, rowOf: Map<string, number>, batchSize: number, label: string): Promise<{ vectors: Float32Array; seconds: number }> {
  const n = rowOf.size;
  const dim = emb.dim;
  const V = new Float32Array(n * dim);
  const seen = new Uint8Array(n);
  const bar = new Progress({ label: `embed ${label}`, total: n, unit: 'users' });
  const t0 = performance.now();
  let batch: UserExample[] = [];
  let done = 0;
  const flush = async () => {
    if (batch.length === 0) return;
    const out = await emb.embed(batch);
    if (out.length !== batch.length) throw new Error(`embedder returned ${out.length} vectors for ${batch.length} users`);
    for (let i = 0; i < batch.length; i++) {
      const row = rowOf.get(batch[i].userId)!;
      if (out[i].length !== dim) throw new Error(`embedder returned a ${out[i].length}-d vector, its manifest says ${dim}`);
      V.set(out[i], row * dim);
      seen[row] = 1;
    }
    done += batch.length;
    bar.tick(batch.length);
    batch = [];
  };
  for await (const ex of ds.examples()) {
    if (done + batch.length >= n) break;
    if (!rowOf.has(ex.userId)) continue;
    batch.push(ex);
    if (batch.length >= batchSize) await flush();
  }
  await flush();
  bar.finish();
  const missing = seen.reduce((s, x) => s + (x ? 0 : 1), 0);
  if (missing > 0) throw new Error(`${missing} users were not embedded by ${label}`);
  return { vectors: V, seconds: (performance.now() - t0) / 1000 };
}

/** k largest scores (excluding rows where skip is set), best first. */
function topK(scores: Float32Array, k: number): number[] {
  const n = scores.length;
  if (k >= n) return Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[b] - scores[a] || a - b);
  // Threshold by selection on a copy, then sort only the survivors.
  const copy = scores.slice();
  let lo = 0;
  let hi = n - 1;
  const kth = n - k; // index of the k-th largest in ascending order
  while (lo < hi) {
    const pivot = copy[(lo + hi) >> 1];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (copy[i] < pivot) i++;
      while (copy[j] > pivot) j--;
      if (i <= j) {
        const t = copy[i];
        copy[i] = copy[j];
        copy[j] = t;
        i++;
        j--;
      }
    }
    if (kth <= j) hi = j;
    else if (kth >= i) lo = i;
    else break;
  }
  const thr = copy[kth];
  const out: number[] = [];
  for (let i = 0; i < n; i++) if (scores[i] > thr) out.push(i);
  for (let i = 0; i < n && out.length < k; i++) if (scores[i] === thr) out.push(i);
  return out.sort((a, b) => scores[b] - scores[a] || a - b);
}

/**
 * The serving look-alike algorithm (src/audience/lookalike.ts) run over the in-memory vectors with an
 * exact neighbour search, so the evaluation measures the method rather than the index's recall.
 */
export async function servingLookalikeMethod(ids: string[]): Promise<AudienceMethod> {
  const { extendLookalike } = await import('../audience/lookalike.js');
  return {
    name: 'ExtendLookalike (serving method, exact search)',
    needsVectors: true,
    prefixConsistent: false,
    async audience(ctx, size) {
      const { U, d, n } = ctx;
      if (!U) throw new Error('serving look-alike needs vectors');
      const rowOf = new Map(ids.map((id, i) => [id, i]));
      const vec = (r: number) => U.subarray(r * d, r * d + d);
      const rng = new Rng(deriveSeed(ctx.seed, 'population', size));
      const res = await extendLookalike(
        Array.from(ctx.seeds, (r) => ids[r]),
        { audienceSize: size },
        {
          dim: d,
          getVectors: (userIds) => userIds.map((u) => {
            const r = rowOf.get(u);
            return r === undefined ? undefined : vec(r);
          }),
          search: (q, k) => topK(cosineScores(U, d, q), Math.min(k, n)).map((r) => ({ userId: ids[r], score: 0 })),
          samplePopulation: (m) => {
            const rows = rng.sample(n, Math.min(m, n));
            return { userIds: Array.from(rows, (r) => ids[r]), vectors: Array.from(rows, (r) => vec(r)) };
          },
          maxSearchK: n,
        },
      );
      return Int32Array.from(res.users.map((u) => rowOf.get(u.userId)!));
    },
  };
}

/** The leave-app-out protocol (leave-app-out.ts) over the loaded users, with every baseline. */
async function runLeaveAppOutProtocol(ds: PreparedDataset, loaded: LoadedUsers, sets: VectorSet[], tfidf: import('../audience/tfidf-svd.js').Csr, o: RunEvalOptions) {
  const lao = await import('./leave-app-out.js');
  const { users, rowOf } = loaded;
  const n = users.ids.length;
  const installers = new Map<string, number[]>();
  for await (const r of ds.outOfVocab()) {
    const row = rowOf.get(r.userId);
    if (row === undefined) continue;
    for (const a of new Set(r.appIds)) {
      const e = ds.catalog.byId.get(a);
      if (!e || e.universal || e.preinstalled) continue;
      let l = installers.get(a);
      if (!l) installers.set(a, (l = []));
      l.push(row);
    }
  }
  const minUsers = o.laoMinUsers ?? 20;
  const maxUsers = o.laoMaxUsers ?? 99;
  const tasks = lao.leaveAppOutTasks(installers, { minUsers, maxUsers, seed: o.seed, maxApps: o.laoMaxApps });
  if (tasks.length === 0) {
    logger.warn({ minUsers, maxUsers }, 'leave-app-out: no out-of-vocabulary app has that many installers; prepare with --leave-out-apps MIN:MAX');
  }
  const appIdOf = ds.vocab.apps.map((a) => a.appId);
  const appIds = users.retention.map((r) => Array.from(r, (i) => appIdOf[i]!));
  const numApps = ds.vocab.apps.length;
  // Every vocabulary app a user ever installed (kept, or installed and uninstalled in the history):
  // the served look-alike's history member reads them, and so does the matching classical row. The
  // left-out apps are outside the vocabulary, so no list holds them.
  const ever = users.retention.map((r, i) => Int32Array.from(new Set([...r, ...users.installs[i]!, ...users.uninstalls[i]!])));
  const hasHistory = ever.some((e, i) => e.length > new Set(users.retention[i]!).size);
  const methods: import('./leave-app-out.js').LaoMethod[] = [
    { name: 'random', vectors: '–', kind: 'floor', scorer: lao.randomScorer(n, o.seed) },
    { name: 'activity (number of kept apps)', vectors: '–', kind: 'classical', scorer: lao.activityScorer(users.retention) },
    { name: 'item-kNN (Jaccard over kept apps)', vectors: '–', kind: 'classical', scorer: lao.itemKnnScorer(users.retention, numApps) },
    ...(hasHistory ? [{ name: 'item-kNN (Jaccard over apps ever installed)', vectors: '–', kind: 'classical' as const, scorer: lao.itemKnnScorer(ever, numApps) }] : []),
    { name: 'logistic regression', vectors: 'sparse TF-IDF of kept apps', kind: 'classical', scorer: lao.sparseLrScorer(tfidf, o.seed) },
  ];
  const everIds = hasHistory ? ever.map((e) => Array.from(e, (i) => appIdOf[i]!)) : undefined;
  // Sets made for Test #1 alone (the head, the sequence baselines) stay out of the look-alike methods.
  const test1Only = new Set(['realtime', 'aetn+realtime', 'recent', 'tfidf-svd+recent']);
  const vecSets = sets.filter((s) => s.dim > 1 && !test1Only.has(s.variant));
  const lrKind = (variant: string): LaoKind => (variant === 'tfidf-svd' ? 'classical' : variant === 'projection' ? 'floor' : 'model');
  for (const s of vecSets) methods.push({ name: 'logistic regression', vectors: s.name, kind: lrKind(s.variant), scorer: lao.vectorLrScorer(s.vectors, s.dim, n, o.seed) });
  if (o.serving) {
    for (const s of vecSets) {
      if (s.variant === 'projection') continue;
      methods.push(await lao.servedScorer(users.ids, s.vectors, s.dim, appIds, s.name, o.seed, everIds));
    }
  }
  return lao.runLeaveAppOut(tasks, n, methods, [1, 5, 10], { minUsers, maxUsers });
}

export interface RunEvalResult {
  report: string;
  json: string;
  chart: string;
}

export async function runEval(o: RunEvalOptions, factory?: EmbedderFactory): Promise<RunEvalResult> {
  const startedAt = new Date().toISOString();
  const t0 = performance.now();
  const timings: Record<string, number> = {};
  const { openPrepared } = await import('../data/prepared.js');
  const ds = await openPrepared(o.data);
  const niche = o.niche ?? ds.nicheCategories;
  const target = o.target ?? ds.lookalikeTargets[0];
  const protocol = o.protocol ?? 'all';
  const skip = new Set(protocol === 'leave-app-out' ? (['test1', 'test2', 'audience', 'overlap'] as TestName[]) : o.skip);
  if (niche.length === 0 && !skip.has('test1')) logger.warn('no niche categories (the dataset has no ground truth and --niche was not given): Test #1 skipped');
  if (!target && !(skip.has('test2') && skip.has('audience'))) logger.warn('no look-alike target (no ground truth and no --target): Test #2 and the audience test skipped');
  for (const c of niche) if (!ds.catalog.apps.some((a) => a.category === c)) throw new UserError(`niche category '${c}' has no app in the catalog of ${o.data}`);

  // With --sample: a seeded uniform sample of the dataset's users, plus (for Test #1) every niche adopter.
  const total = ds.manifest.numUsers;
  let keep: Parameters<typeof loadUsers>[3];
  let chosen: Uint8Array | undefined;
  if (o.sample !== undefined) {
    if (!Number.isInteger(o.sample) || o.sample < 20) throw new UserError(`--sample must be an integer >= 20, got ${o.sample}`);
    if (o.maxUsers !== undefined) throw new UserError('--sample and --max-users exclude each other: --sample already draws a uniform sample of all users');
    if (o.sample < total) {
      chosen = new Uint8Array(total);
      for (const i of new Rng(deriveSeed(o.seed, 'eval-sample')).sample(total, o.sample)) chosen[i] = 1;
      const adopters = await nicheAdopterIds(ds, skip.has('test1') ? [] : niche);
      const c = chosen;
      keep = { pick: (i, id) => (i < total && c[i] === 1) || adopters.has(id) };
    }
  }
  const loaded = await loadUsers(ds, o.maxUsers, Boolean(o.head), keep);
  const n = loaded.users.ids.length;
  if (n < 20) throw new UserError(`${o.data} holds only ${n} users: too few to evaluate`);
  const tasks = await loadTasks(ds, loaded.rowOf, skip.has('test1') ? [] : niche, target);
  // Rows of the uniform sample (all rows without --sample).
  const uniformRows = chosen ? Int32Array.from(loaded.sourceIndex.flatMap((src, row) => (chosen![src] === 1 ? [row] : []))) : undefined;
  if (uniformRows) {
    const inUniform = new Uint8Array(n);
    for (const r of uniformRows) inUniform[r] = 1;
    for (const t of tasks.niche) {
      const rows: number[] = [];
      for (let r = 0; r < n; r++) if (inUniform[r] === 1 || t.labels[r] === 1) rows.push(r);
      t.rows = Int32Array.from(rows);
    }
  }
  timings['read data'] = (performance.now() - t0) / 1000;

  const allTests: TestName[] = ['test1', 'test2', 'audience', 'overlap'];
  const tests = allTests.filter((t) => !skip.has(t));
  const sets: VectorSet[] = [];
  const tEmbed = performance.now();
  const make = factory ?? (await defaultEmbedderFactory());
  for (const dir of o.models) {
    const emb = await make(dir, { backend: o.backend, workers: o.workers });
    try {
      const m = emb.manifest;
      if (m.vocab && m.vocab.hash !== ds.vocab.hash) {
        throw new UserError(`model ${dir} was trained on vocabulary ${m.vocab.hash}, ${o.data} has ${ds.vocab.hash}`);
      }
      const name = sets.some((s) => s.name === (m.variant ?? basename(dir))) ? `${m.variant} (${basename(dir)})` : (m.variant ?? basename(dir));
      const { vectors, seconds } = await embedAll(ds, emb, loaded.rowOf, o.batchSize, name);
      const cfg = (m.config ?? {}) as Record<string, unknown>;
      // The model's own reading of a checkpoint config (fields it predates take the value it trained with).
      const sized = m.variant !== 'dae' ? (withLaterFields(cfg as unknown as AetnConfig) as unknown as Record<string, unknown>) : cfg;
      const keys = ['dModel', 'dFf', 'heads', 'encLayers', 'decLayers', ...(m.variant !== 'dae' ? ['retentionWeight'] : [])];
      const size = keys.filter((k) => typeof sized[k] === 'number').map((k) => `${k} ${sized[k] as number}`).join(', ');
      sets.push({
        name,
        variant: m.variant,
        featureId: m.featureId,
        dim: emb.dim,
        vectors,
        tests,
        info: {
          ...(m.weights?.numParams ? { params: m.weights.numParams } : {}),
          ...(m.weights?.bytes ? { 'weights MB': m.weights.bytes / 1e6 } : {}),
          ...(size ? { size } : {}),
          'embed users/s': n / seconds,
        },
      });
    } finally {
      await emb.close();
    }
  }
  timings.embed = (performance.now() - tEmbed) / 1000;

  if (o.head) {
    const tHead = performance.now();
    const { loadHead } = await import('../model/head-forward.js');
    const head = await loadHead(o.head, { backend: o.backend, expectVocabHash: ds.vocab.hash });
    try {
      // "Now" = the end of the reference day: the held-out week starts there.
      const nowMs = Date.parse(`${ds.manifest.referenceDate}T00:00:00Z`) + 86_400_000;
      const S = new Float32Array(n * head.dim);
      const bar = new Progress({ label: 'embed realtime head', total: n, unit: 'users' });
      for (let s = 0; s < n; s += 1000) {
        const states = loaded.events!.slice(s, s + 1000).map((ev) => ({ events: ev.slice(-head.maxEvents) }));
        const out = head.embed(states, nowMs);
        for (let i = 0; i < out.length; i++) S.set(out[i], (s + i) * head.dim);
        bar.tick(out.length);
      }
      bar.finish();
      const base = sets.find((x) => x.featureId === head.baseFeatureId) ?? sets.find((x) => x.variant === 'aetn');
      sets.push({ name: 'realtime head alone', variant: 'realtime', featureId: head.featureId, dim: head.dim, vectors: S, tests: ['test1'], info: { 'base feature': head.baseFeatureId } });
      if (base) {
        // The vector the serving layer returns as `combined` (src/serve/encode.ts).
        const w = o.combinedWeights ?? DEFAULT_WEIGHTS;
        const d = base.dim + head.dim;
        const C = servedCombination(base.vectors, base.dim, S, head.dim, w);
        sets.push({
          name: `${base.name} + realtime (served combined)`,
          variant: 'aetn+realtime',
          featureId: `${base.featureId}+${head.featureId}`,
          dim: d,
          vectors: C,
          tests: ['test1'],
          info: { what: `[${w.long}·long/|long| ‖ ${w.short}·short/|short|], as served` },
        });
        if (base.featureId !== head.baseFeatureId) logger.warn({ head: head.baseFeatureId, base: base.featureId }, 'the realtime head was trained on another AETN checkpoint than the one it is combined with');
      } else logger.warn('no AETN model among --models: the long ‖ short combination is skipped');
    } finally {
      head.dispose();
    }
    timings['realtime head'] = (performance.now() - tHead) / 1000;
  }

  if (o.baselineDim > 0) {
    const seed = deriveSeed(o.seed, 'projection');
    sets.unshift({
      name: 'random projection (floor)',
      variant: 'projection',
      dim: o.baselineDim,
      vectors: randomProjection(loaded.users, ds.vocab.apps.length, o.baselineDim, seed),
      tests,
      info: { what: `retention multi-hot x Gaussian [M, ${o.baselineDim}]` },
    });
  }

  // Classical baselines as vector sets, beside the models in every test: TF-IDF + truncated SVD of
  // the kept apps, and activity (the number of kept apps) for the classifier tests.
  const svdDim = o.svdDim ?? 64;
  const tClassical = performance.now();
  const { documentFrequency, idfOf, tfidfRows, randomizedSvd, project } = await import('../audience/tfidf-svd.js');
  const numApps = ds.vocab.apps.length;
  // The classical sequence baseline (Test #1 only): recent installs and uninstalls per category.
  const recentWeeks = o.recentWeeks ?? 4;
  let recent: { vectors: Float32Array; dim: number } | undefined;
  if (recentWeeks > 0 && !skip.has('test1')) {
    const categoryOfApp = Int32Array.from(ds.vocab.apps, (a) => a.category);
    const seq = { installs: loaded.users.installs, installDates: loaded.installDates, uninstalls: loaded.users.uninstalls, uninstallDates: loaded.uninstallDates };
    recent = { vectors: recentCategoryCounts(seq, categoryOfApp, ds.vocab.categories.length, recentWeeks), dim: 2 * ds.vocab.categories.length };
  }
  // IDF and SVD are fitted on the uniform sample (every row without --sample), then applied to every row.
  const fitRetention = uniformRows ? Array.from(uniformRows, (r) => loaded.users.retention[r]!) : loaded.users.retention;
  const idf = idfOf(documentFrequency(fitRetention, numApps), fitRetention.length);
  const tfidf = tfidfRows(loaded.users.retention, numApps, idf);
  const tfidfFit = uniformRows ? tfidfRows(fitRetention, numApps, idf) : tfidf;
  if (svdDim > 0) {
    const svd = randomizedSvd(tfidfFit, svdDim, deriveSeed(o.seed, 'svd'));
    const SV = project(tfidf, svd);
    const { normalizeRows } = await import('./neighbors.js');
    const svdVectors = normalizeRows(SV, svd.k);
    sets.unshift({
      name: 'TF-IDF + SVD (classical)',
      variant: 'tfidf-svd',
      dim: svd.k,
      vectors: svdVectors,
      tests,
      info: { what: `TF-IDF of the kept apps, randomized truncated SVD to ${svd.k}, rows of unit length` },
    });
    if (recent) {
      sets.splice(1, 0, {
        name: 'TF-IDF + SVD ‖ recent events (classical)',
        variant: 'tfidf-svd+recent',
        dim: svd.k + recent!.dim,
        vectors: concatRows(svdVectors, svd.k, recent!.vectors, recent!.dim),
        tests: ['test1'],
        info: { what: 'the two classical rows above side by side: retention and recent sequences' },
      });
    }
  }
  if (recent) {
    sets.splice(svdDim > 0 ? 1 : 0, 0, {
      name: 'recent events by category (classical)',
      variant: 'recent',
      dim: recent.dim,
      vectors: recent.vectors,
      tests: ['test1'],
      info: { what: `log(1 + installs) and log(1 + uninstalls) per app category in the last ${recentWeeks} weeks of history (no retained set)` },
    });
  }
  sets.unshift({
    name: 'activity (classical)',
    variant: 'activity',
    dim: 1,
    vectors: Float32Array.from(loaded.users.retention, (r) => Math.log1p(r.length)),
    tests: tests.filter((t) => t === 'test1' || t === 'test2'),
    info: { what: 'log(1 + number of kept apps)' },
  });
  timings.classical = (performance.now() - tClassical) / 1000;

  let matmulT: MatMulT | undefined;
  if (!skip.has('overlap')) {
    const b = await import('../model/backend.js');
    await b.initBackend(o.backend);
    const tf = b.tf;
    matmulT = (Q, qn, DB, bn, d) => {
      const t = tf.tidy(() => tf.matMul(tf.tensor2d(Q, [qn, d]), tf.tensor2d(DB, [bn, d]), false, true));
      const out = t.dataSync() as Float32Array;
      t.dispose();
      return out;
    };
  }
  // With --sample, Test #1 runs on every row (each category: its adopters + the sample) and the other
  // tests on the uniform sample alone, as a world of its own.
  const uniform = uniformRows ? subsetLoaded(loaded, uniformRows) : loaded;
  const uniformSets = uniformRows ? sets.map((s) => ({ ...s, vectors: takeRows(s.vectors, s.dim, uniformRows) })) : sets;
  const uniformTasks: EvalTasks = uniformRows
    ? { niche: [], ...(tasks.lookalike ? { lookalike: { name: tasks.lookalike.name, labels: takeLabels(tasks.lookalike.labels, uniformRows) } } : {}) }
    : tasks;
  const audienceMethods = o.serving && !skip.has('audience') ? [await servingLookalikeMethod(uniform.users.ids)] : [];
  const tEval = performance.now();
  const evalOptions = {
    seed: o.seed,
    runs: o.runs,
    folds: o.folds,
    test2Classifier: o.test2Classifier,
    gbdt: { trees: o.gbdtTrees },
    mlp: { hidden: o.mlpHidden },
    overlapSample: o.overlapSample,
    audienceMethods,
    matmulT,
    workers: o.fitWorkers ?? 1,
    population: uniformRows ? total : undefined,
  };
  let results: Awaited<ReturnType<typeof evaluate>>;
  if (!uniformRows) results = await evaluate(loaded.users, tasks, sets, evalOptions);
  else {
    const only = (s: VectorSet, keepTest1: boolean): VectorSet => ({ ...s, tests: (s.tests ?? tests).filter((t) => (t === 'test1') === keepTest1) });
    const first = await evaluate(loaded.users, { niche: tasks.niche }, sets.map((s) => only(s, true)), evalOptions);
    const rest = await evaluate(uniform.users, uniformTasks, uniformSets.map((s) => only(s, false)), evalOptions);
    results = { ...rest, test1: first.test1, users: n, models: first.models, seconds: first.seconds + rest.seconds };
  }
  timings.tests = (performance.now() - tEval) / 1000;

  let leaveAppOut: import('./leave-app-out.js').LaoResults | undefined;
  if (protocol !== 'paper') {
    const tLao = performance.now();
    leaveAppOut = await runLeaveAppOutProtocol(ds, uniform, uniformSets, tfidfFit, o);
    timings['leave-app-out'] = (performance.now() - tLao) / 1000;
  }
  timings.total = (performance.now() - t0) / 1000;

  const nApps = (k: 'retention' | 'installs' | 'uninstalls') => loaded.users[k].reduce((s, a) => s + a.length, 0) / n;
  const dataset: DatasetStats = {
    path: o.data,
    users: n,
    usersTotal: loaded.total,
    apps: ds.vocab.apps.length,
    categories: ds.vocab.categories.length,
    referenceDate: ds.manifest.referenceDate,
    catalogApps: ds.catalog.apps.length,
    meanRetention: nApps('retention'),
    meanInstalls: nApps('installs'),
    meanUninstalls: nApps('uninstalls'),
    labelWeeks: ds.labelWeeks,
    ...(uniformRows ? { sample: { uniform: uniformRows.length, adoptersAdded: n - uniformRows.length, total } } : {}),
  };
  const chartPath = o.out.replace(/\.md$/i, '') + '.svg';
  const jsonPath = o.out.replace(/\.md$/i, '') + '.json';
  const laoChartPath = o.out.replace(/\.md$/i, '') + '-lao.svg';
  const hasLao = leaveAppOut !== undefined && leaveAppOut.apps > 0;
  const notes = o.notes ? readFileSync(o.notes, 'utf8') : undefined;
  const input = {
    command: o.command,
    startedAt,
    machine: `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}`,
    dataset,
    results,
    notes,
    chartHref: basename(chartPath),
    ...(hasLao ? { laoChartHref: basename(laoChartPath) } : {}),
    timings,
    leaveAppOut,
  };
  const report = renderMarkdown(input);
  const chart = renderChart(results);
  const json = renderJson(input);
  mkdirSync(dirname(resolve(o.out)), { recursive: true });
  writeFileSync(o.out, report);
  // The Test #1 chart only where Test #1 ran (a leave-app-out run has its own chart).
  if (results.test1 && results.test1.rows.length > 0) writeFileSync(chartPath, chart);
  else rmSync(chartPath, { force: true });
  writeFileSync(jsonPath, json);
  if (hasLao) writeFileSync(laoChartPath, renderLaoChart(leaveAppOut!));
  else rmSync(laoChartPath, { force: true });
  logger.info({ out: o.out, chart: chartPath, json: jsonPath, seconds: timings.total }, 'evaluation report written');
  return { report, json, chart };
}
