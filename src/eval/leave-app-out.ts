// The leave-app-out look-alike protocol. Every app outside the model's vocabulary (so the vectors
// never saw it) with between `minUsers` and `maxUsers` installers among the evaluated users is one
// task: half of its installers (a seeded draw) are the seeds, the other half are hidden. Each
// method ranks every non-seed user; we report the recall of the hidden users in the top 1x, 5x and
// 10x the hidden set, and the AUC of hidden vs the other non-seed users, averaged over the apps
// with their spread. Every method sees the same splits.
//
// Methods: random; activity (number of kept apps); item-kNN (each app scored by the Jaccard
// similarity of its users with the seeds, a user by the sum over the apps they keep); logistic
// regression (seeds vs every other user, L2 chosen by 4-fold cross-validation on the training
// rows) on sparse TF-IDF rows, on TF-IDF + truncated SVD vectors, and on each model's vectors; and
// the served ExtendLookalike on each set of vectors, run through the serving code: a real store
// on disk holding the vectors and the users' kept apps, the ServingBackend and lookalikeDeps of
// the AudienceService, with exact neighbour search standing in for the HNSW index (features of up
// to 100k users are scored exhaustively in serving anyway).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mulberry32 } from '../util/random.js';
import { DEFAULT_L2_GRID, fitScoring, rowLogit, vectorLayout } from '../audience/scoring.js';
import { documentFrequency, type Csr } from '../audience/tfidf-svd.js';
import { meanStd, rocAuc, type Spread } from './metrics.js';
import { deriveSeed } from '../util/hash.js';
import { Progress } from '../util/progress.js';

export interface LaoTask {
  appId: string;
  /** Rows of the seed installers and of the hidden ones. */
  seeds: Int32Array;
  hidden: Int32Array;
}

export interface LaoOptions {
  minUsers: number;
  maxUsers: number;
  seed: number;
  /** At most this many apps (a seeded sample; default all). */
  maxApps?: number;
}

/**
 * Tasks from installer lists of out-of-vocabulary apps (`installers`: appId -> rows of evaluated
 * users), apps sorted by id, installers split by a seeded shuffle.
 */
export function leaveAppOutTasks(installers: Map<string, number[]>, o: LaoOptions): LaoTask[] {
  let apps = [...installers.entries()]
    .map(([a, rows]) => [a, [...new Set(rows)].sort((x, y) => x - y)] as const)
    .filter(([, rows]) => rows.length >= o.minUsers && rows.length <= o.maxUsers)
    .sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
  if (o.maxApps !== undefined && apps.length > o.maxApps) {
    const r = mulberry32(deriveSeed(o.seed, 'lao-apps'));
    const idx = apps.map((_, i) => i);
    for (let i = idx.length - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [idx[i], idx[j]] = [idx[j]!, idx[i]!];
    }
    const keep = new Set(idx.slice(0, o.maxApps));
    apps = apps.filter((_, i) => keep.has(i));
  }
  return apps.map(([appId, rows]) => {
    const r = mulberry32(deriveSeed(o.seed, 'lao-split', appId));
    const order = rows.slice();
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    const half = Math.floor(order.length / 2);
    return {
      appId,
      seeds: Int32Array.from(order.slice(0, half)).sort(),
      hidden: Int32Array.from(order.slice(half)).sort(),
    };
  });
}

export interface LaoScore {
  /** Recall of the hidden users at each audience multiple. */
  recall: number[];
  auc: number;
}

/**
 * Metrics of one ranking: `scores` over all n rows (seed rows are ignored; NaN or -Infinity means
 * "not in the audience" and ranks last). Ties are broken by row (rows are in shard order, a hash
 * of the user id).
 */
export function laoMetrics(scores: ArrayLike<number>, n: number, task: LaoTask, multiples: readonly number[]): LaoScore {
  const isSeed = new Uint8Array(n);
  for (const r of task.seeds) isSeed[r] = 1;
  const isHidden = new Uint8Array(n);
  for (const r of task.hidden) isHidden[r] = 1;
  const cand: number[] = [];
  for (let i = 0; i < n; i++) if (!isSeed[i]) cand.push(i);
  const s = (i: number) => {
    const v = scores[i]!;
    return Number.isFinite(v) ? v : -Infinity;
  };
  cand.sort((a, b) => s(b) - s(a) || a - b);
  const h = task.hidden.length;
  const recall = multiples.map((m) => {
    const top = Math.min(cand.length, Math.round(m * h));
    let hit = 0;
    for (let i = 0; i < top; i++) hit += isHidden[cand[i]!]!;
    return h > 0 ? hit / h : NaN;
  });
  const sc = cand.map((i) => {
    const v = s(i);
    return v === -Infinity ? -1e30 : v;
  });
  const auc = rocAuc(sc, cand.map((i) => isHidden[i]!));
  return { recall, auc };
}

/** A method: scores of all n rows for one task (seed rows may hold anything). */
export type LaoScorer = (task: LaoTask) => ArrayLike<number> | Promise<ArrayLike<number>>;

/**
 * What a row is, for the report's paired comparison: `served` rows (the look-alike users get) are
 * compared with the best `classical` row; `floor` rows (random, random projection) and `model` rows
 * (logistic regression on learned vectors) are shown but never the bar to beat.
 */
export type LaoKind = 'floor' | 'classical' | 'model' | 'served';

export interface LaoMethod {
  name: string;
  vectors: string;
  kind: LaoKind;
  scorer: LaoScorer;
  close?: () => Promise<void>;
}

export interface LaoRow {
  method: string;
  vectors: string;
  kind: LaoKind;
  recall: Spread[];
  auc: Spread;
  /** Standard errors of the means over apps. */
  recallSe: number[];
  aucSe: number;
  seconds: number;
  /** Each app's values, in the order of `LaoResults.appIds` (recall[k][i]: multiple k, app i), for paired comparisons across rows and runs. */
  perApp: { recall: number[][]; auc: number[] };
}

export interface LaoResults {
  minUsers: number;
  maxUsers: number;
  apps: number;
  multiples: number[];
  meanSeeds: number;
  meanHidden: number;
  /** The apps of the tasks, in order: every row's perApp values follow it. */
  appIds: string[];
  rows: LaoRow[];
}

/** Mean over apps and the standard error of that mean (NaN with fewer than two values). */
function meanSe(xs: readonly number[]): { mean: number; se: number } {
  const s = meanStd(xs);
  return { mean: s.mean, se: s.n > 1 ? s.std / Math.sqrt(s.n) : NaN };
}

export async function runLeaveAppOut(tasks: LaoTask[], n: number, methods: LaoMethod[], multiples: number[], o: { minUsers: number; maxUsers: number }): Promise<LaoResults> {
  const rows: LaoRow[] = [];
  const bar = new Progress({ label: 'leave-app-out', total: tasks.length * methods.length, unit: 'apps' });
  for (const m of methods) {
    const t0 = performance.now();
    const per: LaoScore[] = [];
    try {
      for (const t of tasks) {
        per.push(laoMetrics(await m.scorer(t), n, t, multiples));
        bar.tick();
      }
    } finally {
      await m.close?.();
    }
    const se = (xs: number[]) => meanSe(xs).se;
    rows.push({
      method: m.name,
      vectors: m.vectors,
      kind: m.kind,
      recall: multiples.map((_, k) => meanStd(per.map((p) => p.recall[k]!))),
      auc: meanStd(per.map((p) => p.auc)),
      recallSe: multiples.map((_, k) => se(per.map((p) => p.recall[k]!))),
      aucSe: se(per.map((p) => p.auc)),
      seconds: (performance.now() - t0) / 1000,
      perApp: { recall: multiples.map((_, k) => per.map((p) => p.recall[k]!)), auc: per.map((p) => p.auc) },
    });
  }
  bar.finish();
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  return {
    minUsers: o.minUsers,
    maxUsers: o.maxUsers,
    apps: tasks.length,
    multiples,
    meanSeeds: mean(tasks.map((t) => t.seeds.length)),
    meanHidden: mean(tasks.map((t) => t.hidden.length)),
    appIds: tasks.map((t) => t.appId),
    rows,
  };
}

export interface LaoPaired {
  /** The classical row with the best mean of this metric. */
  baseline: LaoRow;
  /** Mean over apps of (row − baseline), and the standard error of that mean (paired: same apps, same splits). */
  diff: number;
  se: number;
}

/**
 * A row against the best classical row of one metric (`k` = index into `multiples` for recall@k,
 * or 'auc'), paired app by app. Undefined when there is no classical row or no app.
 */
export function pairedAgainstBestClassical(x: LaoResults, row: LaoRow, metric: number | 'auc'): LaoPaired | undefined {
  const val = (r: LaoRow) => (metric === 'auc' ? r.perApp.auc : r.perApp.recall[metric]!);
  const mean = (r: LaoRow) => (metric === 'auc' ? r.auc.mean : r.recall[metric]!.mean);
  const classical = x.rows.filter((r) => r.kind === 'classical');
  if (classical.length === 0 || x.apps === 0) return undefined;
  const baseline = classical.reduce((b, r) => (mean(r) > mean(b) ? r : b));
  const a = val(row);
  const b = val(baseline);
  const d = meanSe(a.map((v, i) => v - b[i]!));
  return { baseline, diff: d.mean, se: d.se };
}

// ---------------------------------------------------------------- classical methods

export function randomScorer(n: number, seed: number): LaoScorer {
  return (t) => {
    const r = mulberry32(deriveSeed(seed, 'lao-random', t.appId));
    return Float64Array.from({ length: n }, () => r());
  };
}

export function activityScorer(retention: readonly Int32Array[]): LaoScorer {
  const s = Float64Array.from(retention, (r) => r.length);
  return () => s;
}

/** Item-kNN: sim(app) = Jaccard(users of app, seeds); a user's score = sum over the apps they keep. */
export function itemKnnScorer(retention: readonly Int32Array[], numApps: number): LaoScorer {
  const df = documentFrequency(retention, numApps);
  return (t) => {
    const inter = new Float64Array(numApps);
    for (const r of t.seeds) for (const a of retention[r]!) inter[a]!++;
    const sim = new Float64Array(numApps);
    for (let a = 0; a < numApps; a++) if (inter[a]! > 0) sim[a] = inter[a]! / (t.seeds.length + df[a]! - inter[a]!);
    return Float64Array.from(retention, (apps) => {
      let s = 0;
      for (const a of apps) s += sim[a]!;
      return s;
    });
  };
}

/** Negatives for a fitted method: every non-seed row, or a seeded sample of `maxNeg` of them. */
function negatives(n: number, t: LaoTask, maxNeg: number, seed: number): number[] {
  const isSeed = new Set(t.seeds);
  const all: number[] = [];
  for (let i = 0; i < n; i++) if (!isSeed.has(i)) all.push(i);
  if (all.length <= maxNeg) return all;
  const r = mulberry32(deriveSeed(seed, 'lao-neg', t.appId));
  for (let i = 0; i < maxNeg; i++) {
    const j = i + Math.floor(r() * (all.length - i));
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  return all.slice(0, maxNeg).sort((a, b) => a - b);
}

/** Logistic regression on dense vectors (standardised, L2 by 4-fold CV): seeds vs the other users. */
export function vectorLrScorer(V: Float32Array, d: number, n: number, seed: number, maxNeg = 5000): LaoScorer {
  return (t) => {
    const neg = negatives(n, t, maxNeg, seed);
    const rowsIdx = [...t.seeds, ...neg];
    const X = new Float32Array(rowsIdx.length * d);
    rowsIdx.forEach((r, i) => X.set(V.subarray(r * d, r * d + d), i * d));
    const y = new Uint8Array(rowsIdx.length);
    y.fill(1, 0, t.seeds.length);
    const { scoring } = fitScoring(X, undefined, y, rowsIdx.length, vectorLayout(d, 0), { folds: 4, grid: DEFAULT_L2_GRID, iterations: 60, seed: deriveSeed(seed, 'lao-cv', t.appId), prevalence: t.seeds.length / n });
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) out[i] = rowLogit(scoring.model, V, undefined, i);
    return out;
  };
}

/**
 * Logistic regression on sparse TF-IDF rows (columns: the apps kept by at least two training
 * rows; rows of unit length, not standardised; L2 by 4-fold CV): seeds vs the other users.
 */
export function sparseLrScorer(A: Csr, seed: number, maxNeg = 5000): LaoScorer {
  return (t) => {
    const neg = negatives(A.n, t, maxNeg, seed);
    const rowsIdx = [...t.seeds, ...neg];
    const cnt = new Int32Array(A.m);
    for (const r of rowsIdx) for (let k = A.ptr[r]!; k < A.ptr[r + 1]!; k++) cnt[A.col[k]!]!++;
    const colOf = new Int32Array(A.m).fill(-1);
    let p = 0;
    for (let j = 0; j < A.m; j++) if (cnt[j]! >= 2) colOf[j] = p++;
    const ptr = new Int32Array(rowsIdx.length + 1);
    const col: number[] = [];
    const val: number[] = [];
    rowsIdx.forEach((r, i) => {
      for (let k = A.ptr[r]!; k < A.ptr[r + 1]!; k++) {
        const c = colOf[A.col[k]!]!;
        if (c >= 0) {
          col.push(c);
          val.push(A.val[k]!);
        }
      }
      ptr[i + 1] = col.length;
    });
    const sp = { ps: Math.max(p, 1), ptr, col: Int32Array.from(col), val: Float32Array.from(val) };
    const y = new Uint8Array(rowsIdx.length);
    y.fill(1, 0, t.seeds.length);
    // No dense block: a layout of 0 dense columns and the sparse block as given.
    const layout = { ...vectorLayout(0, 0) };
    const { scoring } = fitScoring(new Float32Array(0), sp, y, rowsIdx.length, layout, {
      folds: 4,
      grid: SPARSE_L2_GRID,
      iterations: 100,
      seed: deriveSeed(seed, 'lao-sparse-cv', t.appId),
      prevalence: t.seeds.length / A.n,
      families: ['hybrid'],
    });
    const m = scoring.model;
    const out = new Float64Array(A.n);
    for (let i = 0; i < A.n; i++) {
      let z = m.bias;
      for (let k = A.ptr[i]!; k < A.ptr[i + 1]!; k++) {
        const c = colOf[A.col[k]!]!;
        if (c >= 0) z += m.weights[c]! * A.val[k]!;
      }
      out[i] = z;
    }
    return out;
  };
}

/** Penalties for unit-length TF-IDF rows (not standardised, so much smaller than for dense ones). */
export const SPARSE_L2_GRID = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2];


// ---------------------------------------------------------------- the served method

/**
 * The served ExtendLookalike on one set of vectors: a store on disk (temporary) with the vectors
 * and every user's kept apps, read through the ServingBackend and lookalikeDeps that the
 * AudienceService uses; the audience asked for is every non-seed user, so the whole ranking is
 * measured.
 */
export async function servedScorer(ids: string[], V: Float32Array, d: number, appIds: readonly string[][] | undefined, label: string, seed: number, everIds?: readonly string[][]): Promise<LaoMethod> {
  const { EmbeddingStore } = await import('../store/store.js');
  const { ServingBackend } = await import('../serve/backend.js');
  const { lookalikeDeps } = await import('../serve/audience.js');
  const { extendLookalike } = await import('../audience/lookalike.js');
  const { child } = await import('../util/log.js');
  const { normalizeRows, cosineScores } = await import('./neighbors.js');
  const dir = mkdtempSync(join(tmpdir(), 'aetn-lao-'));
  const store = EmbeddingStore.open(dir);
  const n = ids.length;
  const featureId = `eval-${deriveSeed(seed, label).toString(16)}`;
  store.registerFeature({ featureId, namespace: 'long', dim: d, variant: 'eval' });
  for (let s = 0; s < n; s += 5000) {
    const entries = [];
    for (let i = s; i < Math.min(n, s + 5000); i++) entries.push({ userId: ids[i]!, vector: V.slice(i * d, i * d + d) });
    await store.putMany(featureId, entries);
  }
  if (appIds) {
    for (let s = 0; s < n; s += 5000) await store.putUserAppsMany(ids.slice(s, s + 5000).map((u, k) => [u, appIds[s + k]!] as const));
    const keptBy = new Map<string, number>();
    for (const list of appIds) for (const a of new Set(list)) keptBy.set(a, (keptBy.get(a) ?? 0) + 1);
    await store.putAppUsersMany(keptBy);
  }
  if (everIds) {
    // As aetn embed writes them: a list for each user whose history holds more than they keep, and
    // every app's count of users who ever installed it.
    const longer = (i: number) => everIds[i]!.length > new Set(appIds?.[i] ?? []).size;
    for (let s = 0; s < n; s += 5000) {
      const part: [string, string[]][] = [];
      for (let i = s; i < Math.min(n, s + 5000); i++) if (longer(i)) part.push([ids[i]!, everIds[i]!]);
      if (part.length > 0) await store.putUserEverAppsMany(part);
    }
    const everBy = new Map<string, number>();
    for (const list of everIds) for (const a of new Set(list)) everBy.set(a, (everBy.get(a) ?? 0) + 1);
    await store.putAppEverUsersMany(everBy);
  }
  const U = normalizeRows(V, d);
  const exact = {
    size: n,
    search: (q: Float32Array, k: number) => {
      const sc = cosineScores(U, d, q);
      const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => sc[b]! - sc[a]! || a - b);
      return order.slice(0, k).map((i) => ({ userId: ids[i]!, score: sc[i]! }));
    },
  };
  const backend = new ServingBackend(store, { get: () => exact }, { log: child('eval'), pollMs: 3_600_000 });
  const rowOf = new Map(ids.map((u, i) => [u, i]));
  const f = store.getFeature(featureId)!;
  return {
    name: 'ExtendLookalike (served)',
    vectors: label,
    kind: 'served',
    scorer: async (t) => {
      const deps = lookalikeDeps(backend, f, exact, `lao-${t.appId}`);
      const seeds = Array.from(t.seeds, (r) => ids[r]!);
      const res = await extendLookalike(seeds, { audienceSize: n - t.seeds.length }, deps);
      const out = new Float64Array(n).fill(-Infinity);
      // The audience's own order (its probabilities can round to the same value at the top).
      res.users.forEach((u, k) => (out[rowOf.get(u.userId)!] = res.users.length - k));
      return out;
    },
    close: async () => {
      await backend.stop();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

