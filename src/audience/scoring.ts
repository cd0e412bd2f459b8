// The per-request scoring model of a look-alike call: a logistic regression of seeds (1) against a
// uniform population sample (0), over one user's
//   [ v̂ (d) | rbf_1..rbf_K | log(1 + #apps) | tf-idf of the retained apps (A) ]
// where v̂ is the unit vector of the feature, rbf_j = exp(-(1 - cos(v, c_j)) / spread_j) the
// closeness to seed cluster j, #apps the number of apps the user keeps (activity: heavy users
// install more of everything) and the last block a sparse TF-IDF row over the apps seen in the
// training rows. The dense columns are standardised; the TF-IDF block keeps its natural units
// (rows of unit length) and is scaled as a whole so that it carries as much total variance as the
// dense block, so that one L2 penalty treats both alike.
//
// The penalty is chosen per request by stratified k-fold cross-validation on the training rows
// (the largest held-out AUC over a small grid), and the same out-of-fold scores give the advertiser
// an honest estimate of the audience's quality before buying it: the held-out AUC, and the
// expected recall at an audience as large as the hidden adopters (recall@1x), from the score
// distributions of held-out seeds and held-out population users at the seeds' prevalence.
import { auc, fitLogistic, fitLogisticHybrid, fitLogisticPath, hybridLogit, type HybridModel, type SparseRows } from './logistic.js';
import { mulberry32 } from '../util/random.js';

/** What the fitted model needs to score any user: its layout, weights and seed profile. */
export interface ScoringModel extends Layout {
  model: HybridModel;
  /** The seeds' app profile of the item-kNN column (with apps). */
  profile?: SeedProfile;
  /** The seeds' profile over every app they ever installed (the history item-kNN column). */
  historyProfile?: SeedProfile;
  l2: number;
  /** The model family the cross-validation chose. */
  family: Family;
}

export interface HeldOutEstimate {
  /** Folds of the cross-validation (0: none was run). */
  folds: number;
  /** AUC of the out-of-fold scores, seeds vs population sample. */
  auc: number;
  /** Expected recall of an audience as large as the users like the seeds that it should find. */
  recallAt1x: number;
  /** The model families and L2 penalties tried and the held-out AUC of each. */
  grid: { family: Family; l2: number; auc: number }[];
  /** Penalty of the stacking regression the cross-validation chose (NaN: a single member, or no stacking). */
  stackL2: number;
}

export const DEFAULT_L2_GRID = [0.003, 0.03, 0.3];

/**
 * L2 penalties of the stacking regression (fitScoring), chosen per request by cross-validation on
 * the members' out-of-fold scores. A weak penalty lets the stack tell apart members that say
 * almost the same (item-kNN over the kept apps and over every app ever installed), a strong one
 * pulls the weights toward each member's own strength, which is steadier with few seeds when the
 * members are alike (docs/parts/serve.md).
 */
export const STACK_L2_GRID = [0.01, 0.1, 1];

/** Smallest slope of the final calibration (fitScoring): it keeps the ensemble's order. */
export const CALIBRATION_MIN_SLOPE = 1e-3;

/** Apps kept as columns: seen in at least `minRows` training rows, the most frequent `max` of them. */
export function selectApps(apps: readonly (readonly string[] | undefined)[], minRows: number, max: number): string[] {
  const count = new Map<string, number>();
  for (const list of apps) if (list) for (const a of list) count.set(a, (count.get(a) ?? 0) + 1);
  return [...count.entries()]
    .filter(([, c]) => c >= minRows)
    .sort((x, y) => y[1] - x[1] || (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0))
    .slice(0, max)
    .map(([a]) => a);
}

/**
 * The layout of the feature rows: d vector columns, K centroid similarities, then (when apps are
 * used) activity, item-kNN and one TF-IDF column per selected app.
 */
export interface Layout {
  d: number;
  K: number;
  /** Selected apps (the TF-IDF columns) and their column offsets; empty when no family reads them. */
  appColumn: Map<string, number>;
  /** IDF of each selected app (same order as the columns), and of an app outside the selection. */
  idf: Float32Array;
  idfUnseen: number;
  /** The TF-IDF block's scale (see the file comment). */
  tfidfScale: number;
  usesApps: boolean;
  /**
   * One more column after the app columns: item-kNN over every app the user ever installed in the
   * history, kept or since uninstalled (the install sequence's apps; see SeedProfile).
   */
  history: boolean;
  /**
   * Columns after the history column: the user's TF-IDF + SVD vector of the kept apps (unit
   * length), the SVD fitted on the feature's whole population (0: none).
   */
  svd: number;
}

/**
 * TF-IDF layout from the training rows: document frequencies from the population rows (a uniform
 * sample, so they estimate how common each app is), smoothed: idf = ln((1 + n) / (1 + df)) + 1.
 */
export function appLayout(d: number, K: number, apps: readonly (readonly string[] | undefined)[], popFrom: number, selected: string[]): Layout {
  const appColumn = new Map(selected.map((a, i) => [a, i]));
  const df = new Float64Array(selected.length);
  const nPop = apps.length - popFrom;
  for (let r = popFrom; r < apps.length; r++) for (const a of apps[r] ?? []) {
    const c = appColumn.get(a);
    if (c !== undefined) df[c]!++;
  }
  const idf = new Float32Array(selected.length);
  for (let c = 0; c < selected.length; c++) idf[c] = Math.log((1 + nPop) / (1 + df[c]!)) + 1;
  const dense = d + K + 1;
  return { d, K, appColumn, idf, idfUnseen: Math.log(1 + nPop) + 1, tfidfScale: Math.sqrt(dense), usesApps: true, history: false, svd: 0 };
}

export function vectorLayout(d: number, K: number): Layout {
  return { d, K, appColumn: new Map(), idf: new Float32Array(0), idfUnseen: 0, tfidfScale: 0, usesApps: false, history: false, svd: 0 };
}

export function columns(l: Layout): number {
  return denseColumns(l) + l.appColumn.size;
}

/** Dense columns of the layout: vector, centroid similarities, (with apps) activity and item-kNN, the history item-kNN, then the SVD vector. */
export function denseColumns(l: Layout): number {
  return svdColumn(l) + l.svd;
}

/** The first column of the TF-IDF + SVD vector (when the layout has it). */
export function svdColumn(l: Layout): number {
  return historyColumn(l) + (l.history ? 1 : 0);
}

/** The column of the history item-kNN (when the layout has it). */
export function historyColumn(l: Layout): number {
  return l.d + l.K + (l.usesApps ? 2 : 0);
}

/**
 * The seeds' app profile for the item-kNN feature: each app is weighted by the Jaccard similarity
 * of its users with the seeds, |S ∩ U_a| / |S ∪ U_a|, and a user scores the sum over the apps they
 * keep divided by (number of apps)^KNN_USER_NORM. The division keeps heavy users (many apps of
 * every kind, so a long sum) from filling the audience; at 0.3 it measured better than the plain sum
 * (0) and than 0.5 on three retention-only worlds (docs/parts/serve.md). |U_a| is estimated from
 * the population sample scaled to the population's size (exact counts replace it when the store
 * has them). A seed's own row is scored without itself (leave-one-out), or the feature would
 * reward memorising seeds.
 */
export interface SeedProfile {
  inter: Map<string, number>;
  nSeeds: number;
  users: Map<string, number>;
  /** A user's sum is divided by (number of kept apps)^userNorm (0: the plain sum). */
  userNorm: number;
}

/** Default exponent of the item-kNN score's division by the user's number of kept apps. */
export const KNN_USER_NORM = 0.3;

export function seedProfile(seedApps: readonly (readonly string[] | undefined)[], popApps: readonly (readonly string[] | undefined)[], populationSize: number): SeedProfile {
  const inter = new Map<string, number>();
  for (const list of seedApps) for (const a of new Set(list ?? [])) inter.set(a, (inter.get(a) ?? 0) + 1);
  const inPop = new Map<string, number>();
  for (const list of popApps) for (const a of new Set(list ?? [])) if (inter.has(a)) inPop.set(a, (inPop.get(a) ?? 0) + 1);
  const scale = popApps.length > 0 ? populationSize / popApps.length : 0;
  const users = new Map<string, number>();
  for (const [a, i] of inter) users.set(a, Math.max(i, (inPop.get(a) ?? 0) * scale));
  return { inter, nSeeds: seedApps.length, users, userNorm: KNN_USER_NORM };
}

export function knnScore(p: SeedProfile, apps: readonly string[] | undefined, isSeed: boolean): number {
  const self = isSeed ? 1 : 0;
  const nS = p.nSeeds - self;
  let s = 0;
  const uniq = new Set(apps ?? []);
  for (const a of uniq) {
    const i = (p.inter.get(a) ?? 0) - self;
    if (i <= 0) continue;
    s += i / (nS + p.users.get(a)! - self - i);
  }
  // A seed scored without itself is measured against one seed fewer than everyone else: scale
  // back to the full seed count so seeds and other users are on the same footing.
  if (p.userNorm !== 0 && uniq.size > 0) s /= Math.pow(uniq.size, p.userNorm);
  return isSeed && p.nSeeds > 1 ? (s * p.nSeeds) / (p.nSeeds - 1) : s;
}

/**
 * The app part of one row: activity (log(1 + #apps)) and the sparse TF-IDF entries. The row's
 * norm counts every kept app (unselected ones at the unseen IDF) so heavy users are not
 * over-weighted.
 */
export function appRow(l: Layout, apps: readonly string[] | undefined): { activity: number; cols: number[]; vals: number[] } {
  const list = apps ?? [];
  const cols: number[] = [];
  const vals: number[] = [];
  let norm = 0;
  for (const a of list) {
    const c = l.appColumn.get(a);
    const w = c === undefined ? l.idfUnseen : l.idf[c]!;
    norm += w * w;
  }
  if (norm > 0) {
    const s = l.tfidfScale / Math.sqrt(norm);
    for (const a of new Set(list)) {
      const c = l.appColumn.get(a);
      if (c !== undefined) {
        cols.push(c);
        vals.push(l.idf[c]! * s);
      }
    }
  }
  return { activity: Math.log1p(list.length), cols, vals };
}

/** Sparse rows of the app block for training rows. */
export function appRows(l: Layout, apps: readonly (readonly string[] | undefined)[]): { rows: SparseRows; activity: Float32Array } {
  const ptr = new Int32Array(apps.length + 1);
  const cols: number[] = [];
  const vals: number[] = [];
  const activity = new Float32Array(apps.length);
  apps.forEach((list, i) => {
    const r = appRow(l, list);
    activity[i] = r.activity;
    cols.push(...r.cols);
    vals.push(...r.vals);
    ptr[i + 1] = cols.length;
  });
  return { rows: { ps: l.appColumn.size, ptr, col: Int32Array.from(cols), val: Float32Array.from(vals) }, activity };
}

/** The app part of a logit for one user (activity and TF-IDF weights of a fitted model). */
export function appLogit(m: ScoringModel, apps: readonly string[] | undefined): number {
  if (!m.usesApps) return 0;
  const list = apps ?? [];
  const base = m.d + m.K;
  const w = m.model.weights;
  let z = w[base]! * Math.log1p(list.length) + (m.profile ? w[base + 1]! * knnScore(m.profile, list, false) : 0);
  if (m.appColumn.size === 0) return z;
  let norm = 0;
  let dotw = 0;
  for (const a of list) {
    const c = m.appColumn.get(a);
    const idf = c === undefined ? m.idfUnseen : m.idf[c]!;
    norm += idf * idf;
  }
  const sparseFrom = denseColumns(m);
  for (const a of new Set(list)) {
    const c = m.appColumn.get(a);
    if (c !== undefined) dotw += w[sparseFrom + c]! * m.idf[c]!;
  }
  if (norm > 0) z += (dotw * m.tfidfScale) / Math.sqrt(norm);
  return z;
}

/**
 * Each seed app's item-kNN weight for a user who is not a seed, |S ∩ U_a| / |S ∪ U_a| (the terms
 * knnScore adds up, computed once): what scores thousands of candidates or training rows against
 * one profile. Read the profile's counts when called: make it after the last change to `users`.
 */
export function knnWeights(p: SeedProfile): Map<string, number> {
  const w = new Map<string, number>();
  for (const [a, i] of p.inter) if (i > 0) w.set(a, i / (p.nSeeds + p.users.get(a)! - 0 - i));
  return w;
}

/** knnScore(p, apps, false) from knnWeights(p): the same number, one map look-up per app. */
export function knnScoreFrom(weights: Map<string, number>, userNorm: number, apps: readonly string[] | undefined): number {
  if (!apps || apps.length === 0) return 0;
  const uniq = new Set(apps);
  let s = 0;
  for (const a of uniq) {
    const w = weights.get(a);
    if (w !== undefined) s += w;
  }
  if (userNorm !== 0) s /= Math.pow(uniq.size, userNorm);
  return s;
}

/**
 * appLogit of a fitted model as a function of one user's apps, with the per-request work done once
 * (the item-kNN weights): what the candidate loop calls for every candidate.
 */
export function appScorer(m: ScoringModel): (apps: readonly string[] | undefined, everApps?: readonly string[]) => number {
  if (!m.usesApps) return () => 0;
  const base = m.d + m.K;
  const w = m.model.weights;
  const wAct = w[base]!;
  const wKnn = m.profile ? w[base + 1]! : 0;
  const kw = m.profile ? knnWeights(m.profile) : undefined;
  const norm = m.profile?.userNorm ?? 0;
  const hp = m.history ? m.historyProfile : undefined;
  const wHist = hp ? w[historyColumn(m)]! : 0;
  const hw = hp ? knnWeights(hp) : undefined;
  const hNorm = hp?.userNorm ?? 0;
  const history = (everApps: readonly string[] | undefined) => (hw && wHist !== 0 ? wHist * knnScoreFrom(hw, hNorm, everApps) : 0);
  if (m.appColumn.size > 0) return (apps, everApps) => appLogit(m, apps) + history(everApps);
  return (apps, everApps) => {
    let z = wAct * Math.log1p(apps?.length ?? 0);
    if (kw && wKnn !== 0) z += wKnn * knnScoreFrom(kw, norm, apps);
    return z + history(everApps);
  };
}

/** Stratified fold of each row (positives and negatives dealt round-robin after a seeded shuffle). */
export function stratifiedFolds(y: Uint8Array, k: number, seed: number): Int32Array {
  const r = mulberry32(seed);
  const fold = new Int32Array(y.length);
  for (const cls of [1, 0]) {
    const idx: number[] = [];
    for (let i = 0; i < y.length; i++) if (y[i] === cls) idx.push(i);
    for (let i = idx.length - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [idx[i], idx[j]] = [idx[j]!, idx[i]!];
    }
    idx.forEach((row, i) => (fold[row] = i % k));
  }
  return fold;
}

/** The training rows whose fold is (or is not) f: dense rows copied, sparse rows re-packed. */
function subsetRows(Xd: Float32Array, pd: number, sp: SparseRows | undefined, keep: number[]): { Xd: Float32Array; sp: SparseRows | undefined } {
  const out = new Float32Array(keep.length * pd);
  keep.forEach((r, i) => out.set(Xd.subarray(r * pd, r * pd + pd), i * pd));
  if (!sp) return { Xd: out, sp: undefined };
  const ptr = new Int32Array(keep.length + 1);
  let nnz = 0;
  keep.forEach((r, i) => {
    nnz += sp.ptr[r + 1]! - sp.ptr[r]!;
    ptr[i + 1] = nnz;
  });
  const col = new Int32Array(nnz);
  const val = new Float32Array(nnz);
  keep.forEach((r, i) => {
    col.set(sp.col.subarray(sp.ptr[r]!, sp.ptr[r + 1]!), ptr[i]!);
    val.set(sp.val.subarray(sp.ptr[r]!, sp.ptr[r + 1]!), ptr[i]!);
  });
  return { Xd: out, sp: { ps: sp.ps, ptr, col, val } };
}

/** Logit of training row r (dense row r of Xd, sparse row r of sp). */
export function rowLogit(m: HybridModel, Xd: Float32Array, sp: SparseRows | undefined, r: number): number {
  if (!sp) return hybridLogit(m, Xd, r * m.pd, [], []);
  return hybridLogit(m, Xd, r * m.pd, sp.col.subarray(sp.ptr[r]!, sp.ptr[r + 1]!), sp.val.subarray(sp.ptr[r]!, sp.ptr[r + 1]!));
}

/**
 * Expected recall when the audience is as large as the positives it should find, in a population
 * where a fraction `prevalence` is positive: the threshold t where
 * prevalence·P(s+ > t) + (1 − prevalence)·P(s− > t) = prevalence, read off the held-out scores.
 */
export function expectedRecallAt1x(pos: readonly number[], neg: readonly number[], prevalence: number): number {
  if (pos.length === 0 || neg.length === 0) return NaN;
  const pi = Math.min(1, Math.max(1e-9, prevalence));
  const all = [...pos.map((s) => [s, 1] as const), ...neg.map((s) => [s, 0] as const)].sort((a, b) => b[0] - a[0]);
  let tp = 0;
  let fp = 0;
  let tpr0 = 0;
  let share0 = 0;
  for (let i = 0; i < all.length; ) {
    let j = i;
    while (j < all.length && all[j]![0] === all[i]![0]) {
      if (all[j]![1]) tp++;
      else fp++;
      j++;
    }
    const tpr = tp / pos.length;
    // Share of the population selected down to this score.
    const share = pi * tpr + (1 - pi) * (fp / neg.length);
    if (share >= pi) {
      // Linear inside the step (a tie group is taken in part, at random).
      const frac = share > share0 ? (pi - share0) / (share - share0) : 1;
      return tpr0 + frac * (tpr - tpr0);
    }
    tpr0 = tpr;
    share0 = share;
    i = j;
  }
  return tpr0;
}

export interface FitScoringOptions {
  folds: number;
  grid: readonly number[];
  iterations: number;
  seed: number;
  /** Share of the population that is like the seeds (for the recall estimate). */
  prevalence: number;
  /** Model families to choose among (default: all the layout allows). */
  families?: Family[];
  /**
   * The dense rows as they must be seen when only `trainRows` are the training rows (features
   * built from the seeds, such as seed-cluster similarities, rebuilt from the training fold's
   * seeds); default: Xd as given.
   */
  foldDense?: (trainRows: number[]) => Float32Array;
  /** L2 penalties the stacking regression chooses among (default STACK_L2_GRID; one value: fixed). */
  stackGrid?: readonly number[];
}

/**
 * The stacking regression's penalty: the one of `grid` whose stack, fitted on k-1 folds of the
 * members' standardised out-of-fold scores zOof [n, F] and applied to the k-th (negative weights
 * cut, as in the fit itself), ranks the rows best (AUC over all rows). Ties keep the weaker
 * penalty, whatever the order of the grid. Cheap: F is a handful of columns.
 */
export function chooseStackPenalty(zOof: Float32Array, y: Uint8Array, n: number, F: number, k: number, seed: number, grid: readonly number[]): number {
  if (grid.length === 1) return grid[0]!;
  // Weakest first: a later penalty must do strictly better to be kept.
  const l2s = [...grid].sort((a, b) => a - b);
  const fold = stratifiedFolds(y, k, seed);
  // score[g]: the stack's held-out score of every row at penalty g.
  const score = l2s.map(() => new Float64Array(n));
  for (let f = 0; f < k; f++) {
    const tr: number[] = [];
    const te: number[] = [];
    for (let i = 0; i < n; i++) (fold[i] === f ? te : tr).push(i);
    // Every penalty in one batched pass (the same models as one fit each).
    const models = fitLogisticPath(subsetRows(zOof, F, undefined, tr).Xd, Uint8Array.from(tr, (i) => y[i]!), tr.length, F, l2s, { iterations: 100 });
    models.forEach((m, g) => {
      for (const i of te) {
        let z = 0;
        for (let j = 0; j < F; j++) z += Math.max(0, m.weights[j]!) * zOof[i * F + j]!;
        score[g]![i] = z;
      }
    });
  }
  let best = 0;
  let bestAuc = -1;
  l2s.forEach((_, g) => {
    const a = auc(score[g]!, y);
    if (a > bestAuc + 1e-9) (bestAuc = a), (best = g);
  });
  return l2s[best]!;
}

/**
 * A family of models the cross-validation chooses among: which dense columns it reads (a range of
 * the layout's dense block) and whether it reads the sparse app columns.
 *   vector: the vector and the centroid similarities;
 *   apps:   activity and the item-kNN score (two columns: robust with very few seeds);
 *   hybrid: everything;
 *   knn, activity: the fixed item-kNN and activity scores;
 *   tfidf: the sparse TF-IDF app columns alone (a stacked member on request; measured: AUC up by
 *   ~0.005, recall@1x not, at 3-5x the fit's cost, so not a default);
 *   history: the fixed item-kNN score over every app the user ever installed (kept or since
 *   uninstalled): the install sequence's apps, which the kept set no longer shows;
 *   svd: a logistic regression on the user's TF-IDF + SVD vector of the kept apps (the classical
 *   user vector, the SVD fitted on the whole population): a second, classical view beside the
 *   feature's learned vectors.
 */
export type Family = 'vector' | 'apps' | 'hybrid' | 'knn' | 'activity' | 'tfidf' | 'history' | 'svd' | 'ensemble';

/**
 * The members of the default ensemble: the vector (when there is one), item-kNN and activity (with
 * apps), and the history item-kNN (when the layout has that column).
 */
export function defaultFamilies(l: Layout): Family[] {
  const f: Family[] = l.usesApps ? (l.d > 0 ? ['vector', 'knn', 'activity'] : ['knn', 'activity']) : ['vector'];
  if (l.history) f.push('history');
  if (l.svd > 0) f.push('svd');
  return f;
}

/** Families that are a fixed score of one column (no fit, no penalty): item-kNN, activity, history item-kNN. */
const FIXED: Partial<Record<Family, number>> = { activity: 0, knn: 1, history: 2 };

function familyColumns(l: Layout, f: Family): { from: number; to: number; sparse: boolean } {
  const dv = l.d + l.K;
  if (f === 'vector') return { from: 0, to: dv, sparse: false };
  if (f === 'apps') return { from: dv, to: dv + 2, sparse: false };
  if (f === 'activity') return { from: dv, to: dv + 1, sparse: false };
  if (f === 'knn') return { from: dv + 1, to: dv + 2, sparse: false };
  if (f === 'tfidf') return { from: dv + 2, to: dv + 2, sparse: true };
  if (f === 'history') return { from: historyColumn(l), to: historyColumn(l) + 1, sparse: false };
  if (f === 'svd') return { from: svdColumn(l), to: svdColumn(l) + l.svd, sparse: false };
  if (f === 'ensemble') throw new Error('an ensemble is not a single family');
  return { from: 0, to: denseColumns(l), sparse: true };
}

/** Dense columns [from, to) of every row. */
function sliceColumns(Xd: Float32Array, pd: number, n: number, from: number, to: number): Float32Array {
  if (from === 0 && to === pd) return Xd;
  const w = to - from;
  const out = new Float32Array(n * w);
  for (let i = 0; i < n; i++) out.set(Xd.subarray(i * pd + from, i * pd + to), i * w);
  return out;
}

/** A family's model as a model over the full layout (zero weights on the columns it does not read). */
function widen(m: HybridModel, l: Layout, c: { from: number; to: number; sparse: boolean }, ps: number): HybridModel {
  const pd = denseColumns(l);
  const weights = new Float32Array(pd + ps);
  weights.set(m.weights.subarray(0, c.to - c.from), c.from);
  if (c.sparse) weights.set(m.weights.subarray(c.to - c.from), pd);
  return { pd, ps, weights, bias: m.bias };
}

/** Mean and standard deviation of the scores of the negative rows (the population sample). */
function negStats(scores: Float64Array, y: Uint8Array, n: number): { mean: number; std: number } {
  let m = 0;
  let c = 0;
  for (let i = 0; i < n; i++) if (!y[i]) (m += scores[i]!), c++;
  m /= Math.max(1, c);
  let v = 0;
  for (let i = 0; i < n; i++) if (!y[i]) v += (scores[i]! - m) ** 2;
  const std = Math.sqrt(v / Math.max(1, c));
  return { mean: m, std: std > 1e-12 ? std : 1 };
}

/**
 * Fits the scoring model on training rows (dense block Xd [n, pd], sparse block sp).
 *
 * The model is an ensemble of logistic regressions, one per family (by default 'vector' and,
 * with apps, 'apps'), each with its own L2 penalty chosen by k-fold cross-validation (largest
 * held-out AUC). Their logits are put on one scale (standardised over the population rows) and
 * added with weights from stacking: a logistic regression of the labels on the members'
 * standardised out-of-fold scores (negative weights cut to 0), so a member that carries nothing
 * (vectors of an undertrained model) counts for little. A one-dimensional logistic fit turns the
 * sum into a probability. Every step is linear, so the ensemble is again one linear model over
 * the full layout and scores candidates exactly like a single fit. With very few seeds one family
 * alone is noisy in a way the other is not (a handful of seed vectors vs a handful of seed app
 * lists); combining them measured better than choosing one by cross-validation
 * (docs/parts/serve.md).
 *
 * The out-of-fold scores of the same procedure give the held-out estimate. Without enough
 * positives for two folds, each family is fitted at the middle of the grid and no estimate is made.
 */
export function fitScoring(Xd: Float32Array, sp: SparseRows | undefined, y: Uint8Array, n: number, layout: Layout, o: FitScoringOptions, profile?: SeedProfile, historyProfile?: SeedProfile): { scoring: ScoringModel; estimate: HeldOutEstimate } {
  const pd = denseColumns(layout);
  const ps = sp?.ps ?? 0;
  const families: Family[] = o.families ?? defaultFamilies(layout);
  let npos = 0;
  for (let i = 0; i < n; i++) npos += y[i]!;
  const k = Math.min(o.folds, npos, n - npos);
  const grid: { family: Family; l2: number; auc: number }[] = [];
  const chosenL2 = families.map(() => o.grid[Math.floor(o.grid.length / 2)] ?? 0.03);
  // Weight of each member in the sum (equal unless stacking on held-out scores sets them).
  const memberWeight: number[] = families.map(() => 1);
  let estimate: HeldOutEstimate = { folds: 0, auc: NaN, recallAt1x: NaN, grid, stackL2: NaN };
  let stackL2 = NaN;
  const fitFamily = (f: Family, X: Float32Array, s: SparseRows | undefined, yy: Uint8Array, nn: number, l2: number) => {
    const c = familyColumns(layout, f);
    if (FIXED[f] !== undefined) return widen({ pd: 1, ps: 0, weights: Float32Array.of(1), bias: 0 }, layout, c, ps);
    const Xf = sliceColumns(X, pd, nn, c.from, c.to);
    const w = c.to - c.from;
    // Dense-only families go through the SIMD kernel (the same model, batched dot products).
    const m: HybridModel = c.sparse ? fitLogisticHybrid(Xf, w, s, yy, nn, { l2, iterations: o.iterations }) : (({ weights, bias }) => ({ pd: w, ps: 0, weights, bias }))(fitLogistic(Xf, yy, nn, w, { l2, iterations: o.iterations }));
    return widen(m, layout, c, ps);
  };
  // A family at every penalty of the grid: a fixed score once (it has no penalty), a dense family
  // in one batched fit (fitLogisticPath: the same models as one fit per penalty, at a fraction of
  // the cost), a sparse one penalty by penalty.
  const fitFamilyGrid = (f: Family, X: Float32Array, s: SparseRows | undefined, yy: Uint8Array, nn: number): HybridModel[] => {
    const c = familyColumns(layout, f);
    if (FIXED[f] !== undefined) return o.grid.map(() => fitFamily(f, X, s, yy, nn, 0));
    if (c.sparse) return o.grid.map((l2) => fitFamily(f, X, s, yy, nn, l2));
    const w = c.to - c.from;
    const Xf = sliceColumns(X, pd, nn, c.from, c.to);
    return fitLogisticPath(Xf, yy, nn, w, o.grid, { iterations: o.iterations }).map(({ weights, bias }) => widen({ pd: w, ps: 0, weights, bias }, layout, c, ps));
  };
  if (k >= 2 && o.grid.length > 0) {
    const fold = stratifiedFolds(y.subarray(0, n), k, o.seed);
    // oof[f][g]: out-of-fold logits of family f at penalty g.
    const oof = families.map(() => o.grid.map(() => new Float64Array(n)));
    for (let f = 0; f < k; f++) {
      const trIdx: number[] = [];
      const teIdx: number[] = [];
      for (let i = 0; i < n; i++) (fold[i] === f ? teIdx : trIdx).push(i);
      const XdF = o.foldDense ? o.foldDense(trIdx) : Xd;
      const tr = subsetRows(XdF, pd, sp, trIdx);
      const ytr = Uint8Array.from(trIdx, (i) => y[i]!);
      families.forEach((fam, fi) => {
        const fixed = FIXED[fam] !== undefined;
        fitFamilyGrid(fam, tr.Xd, tr.sp, ytr, trIdx.length).forEach((m, g) => {
          // A fixed score is the same at every penalty: computed once, copied.
          if (fixed && g > 0) for (const row of teIdx) oof[fi]![g]![row] = oof[fi]![0]![row]!;
          else for (const row of teIdx) oof[fi]![g]![row] = rowLogit(m, XdF, sp, row);
        });
      });
    }
    const yy = y.subarray(0, n);
    const ens = new Float64Array(n);
    const zOof = new Float32Array(n * families.length);
    families.forEach((fam, fi) => {
      let bestG = 0;
      let best = -1;
      o.grid.forEach((l2, g) => {
        const a = auc(oof[fi]![g]!, yy);
        grid.push({ family: fam, l2, auc: a });
        if (a > best) (best = a), (bestG = g);
      });
      chosenL2[fi] = o.grid[bestG]!;
      const st = negStats(oof[fi]![bestG]!, yy, n);
      for (let i = 0; i < n; i++) zOof[i * families.length + fi] = (oof[fi]![bestG]![i]! - st.mean) / st.std;
    });
    // Stacking: how much each member's held-out score is worth, from a logistic regression of the
    // labels on the members' standardised out-of-fold scores (a member that carries nothing, e.g.
    // vectors of an undertrained model, gets a small weight; negative weights are cut to 0). Its
    // penalty is chosen by cross-validation on those same scores.
    if (families.length > 1) {
      stackL2 = chooseStackPenalty(zOof, yy, n, families.length, k, o.seed + 7, o.stackGrid ?? STACK_L2_GRID);
      const st = fitLogistic(zOof, yy, n, families.length, { l2: stackL2, iterations: 100 });
      families.forEach((_, fi) => (memberWeight[fi] = Math.max(0, st.weights[fi]!)));
      if (!memberWeight.some((w) => w > 0)) memberWeight.fill(1);
    }
    for (let i = 0; i < n; i++) for (let fi = 0; fi < families.length; fi++) ens[i]! += memberWeight[fi]! * zOof[i * families.length + fi]!;
    const pos: number[] = [];
    const neg: number[] = [];
    for (let i = 0; i < n; i++) (y[i] ? pos : neg).push(ens[i]!);
    estimate = { folds: k, auc: auc(ens, yy), recallAt1x: expectedRecallAt1x(pos, neg, o.prevalence), grid, stackL2 };
  }
  // The members on all rows, put on one scale and summed into one linear model.
  const W = new Float32Array(pd + ps);
  let B = 0;
  const sum = new Float64Array(n);
  families.forEach((fam, fi) => {
    const m = fitFamily(fam, Xd, sp, y, n, chosenL2[fi]!);
    const sc = new Float64Array(n);
    for (let i = 0; i < n; i++) sc[i] = rowLogit(m, Xd, sp, i);
    const st = negStats(sc, y, n);
    const a = memberWeight[fi]! / st.std;
    for (let j = 0; j < W.length; j++) W[j]! += m.weights[j]! * a;
    B += (m.bias - st.mean) * a;
    for (let i = 0; i < n; i++) sum[i]! += (sc[i]! - st.mean) * a;
  });
  // Calibration: probability = sigmoid(a * sum + b), fitted on the training rows. It maps the
  // ensemble's sum to a probability and must not reorder users: the members' directions were
  // chosen above (penalties and stacking weights by held-out AUC, negative weights cut). Fitted
  // freely, the slope turns negative when the seeds score below the population on the training
  // rows (a fixed member with few seeds that share little, its seeds scored leave-one-out), and
  // the audience comes out upside down (measured: AUC 0.25 and 0.30 on 2 of 100 leave-app-out
  // apps of a 20k-user world, where the member alone gave 0.75 and 0.70). A slope at or below 0
  // is therefore raised to CALIBRATION_MIN_SLOPE: the order is the sum's, the probabilities flat.
  const cal = fitLogisticHybrid(Float32Array.from(sum), 1, undefined, y, n, { l2: 1e-3, iterations: 60 });
  const a = Math.max(cal.weights[0]!, CALIBRATION_MIN_SLOPE);
  const model: HybridModel = { pd, ps, weights: W.map((w) => w * a), bias: a * B + cal.bias };
  const family: Family = families.length === 1 ? families[0]! : 'ensemble';
  return {
    scoring: { ...layout, model, ...(profile ? { profile } : {}), ...(historyProfile ? { historyProfile } : {}), l2: chosenL2[0]!, family },
    estimate,
  };
}
