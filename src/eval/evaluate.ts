// The evaluation core: given users (their app sets), the tasks' ground truth and one vector set per
// model, run the paper's tests and return every number. It knows nothing about files or models: the
// CLI loads a prepared dataset and embeds users (load.ts), tests hand in a tiny world and fake vectors.
import { child } from '../util/log.js';
import { Progress } from '../util/progress.js';
import {
  centroidAudience,
  evaluateAudience,
  popularAudience,
  randomAudience,
  splitAdopters,
  type AudienceContext,
  type AudienceMethod,
  type AudienceRow,
} from './audience.js';
import type { GbdtOptions } from './gbdt.js';
import { meanStd, nanMean, overlapRate, type Spread } from './metrics.js';
import type { MlpOptions } from './mlp.js';
import { nearestOther, normalizeRows, type MatMulT } from './neighbors.js';
import { FitPool } from './fit-pool.js';
import { combineFolds, type FoldResult, type HoldoutResult } from './protocols.js';
import { deriveSeed } from '../util/hash.js';
import { Rng } from '../util/random.js';

const logger = child('eval');

/** Users as rows 0..n-1 with their app sets (vocabulary indices). */
export interface EvalUsers {
  ids: string[];
  retention: Int32Array[];
  installs: Int32Array[];
  uninstalls: Int32Array[];
}

export interface BinaryTask {
  name: string;
  /** 1 = positive, per user row. */
  labels: Uint8Array;
  /**
   * Rows that take part (default: all). Test #1 on a sampled world: every positive plus the users of
   * a uniform sample, so the negatives are a uniform sample of the non-adopters.
   */
  rows?: Int32Array;
}

export interface EvalTasks {
  /** Test #1: "installs an app of niche category c in the held-out week", one task per category. */
  niche: BinaryTask[];
  /** Test #2: adopters of the look-alike target app (kept out of the vocabulary). */
  lookalike?: BinaryTask;
}

export type TestName = 'test1' | 'test2' | 'audience' | 'overlap';

export interface VectorSet {
  name: string;
  variant: string;
  featureId?: string;
  dim: number;
  /** Row-major [n, dim], aligned with EvalUsers rows. */
  vectors: Float32Array;
  /** Which tests to run on this set (default: all). */
  tests?: TestName[];
  /** Free-form facts for the report (parameter count, checkpoint size, embedding time...). */
  info?: Record<string, unknown>;
}

export interface EvalOptions {
  seed: number;
  /** Test #1 runs (each a new split and initialisation). */
  runs?: number;
  /** Test #2 folds. */
  folds?: number;
  test2Classifier?: 'gbdt' | 'mlp';
  mlp?: Partial<MlpOptions>;
  gbdt?: Partial<GbdtOptions>;
  /** Users sampled for the §5.5 nearest-neighbour overlap. */
  overlapSample?: number;
  /** Share of adopters hidden in the audience test. */
  hideFraction?: number;
  /** Audience sizes as multiples of the hidden set. */
  audienceMultiples?: number[];
  /** Vector-based look-alike methods besides the built-in baselines (e.g. the serving algorithm). */
  audienceMethods?: AudienceMethod[];
  /** Worker threads for the classifier fits (default 1: inline). Results do not depend on it. */
  workers?: number;
  /** A fast matrix product for the big neighbour scan (optional: plain JS otherwise). */
  matmulT?: MatMulT;
  /** Users the evaluated rows stand for (the per-million rates of Test #1; default: the rows). */
  population?: number;
}

export interface Test1Row {
  model: string;
  /** Per category (same order as categories), over runs. */
  perCategory: Spread[];
  /** Per run: the average over categories; then mean and spread over runs. */
  average: Spread;
  runs: { category: string; run: number; auc: number; validAuc: number; epochs: number }[];
  seconds: number;
}

export interface Test2Row {
  model: string;
  classifier: string;
  auc: Spread;
  pooledAuc: number;
  folds: number[];
  seconds: number;
}

export interface OverlapRow {
  model: string;
  retention: number;
  installs: number;
  uninstalls: number;
  /** Mean cosine similarity of each sampled user to its nearest neighbour. */
  meanNeighborCosine?: number;
  seconds: number;
}

export interface EvalResults {
  seed: number;
  users: number;
  test1?: {
    categories: { name: string; positives: number; perMillion: number; rows?: number }[];
    runs: number;
    split: string;
    classifier: string;
    rows: Test1Row[];
  };
  test2?: { target: string; adopters: number; rate: number; folds: number; classifier: string; rows: Test2Row[] };
  audience?: {
    target: string;
    seeds: number;
    hidden: number;
    sizes: number[];
    multiples: number[];
    baselines: AudienceRow[];
    rows: (AudienceRow & { model: string })[];
  };
  overlap?: { sampled: number; metric: string; rows: OverlapRow[] };
  models: { name: string; variant: string; featureId?: string; dim: number; info?: Record<string, unknown> }[];
  seconds: number;
}

function wants(set: VectorSet, t: TestName): boolean {
  return !set.tests || set.tests.includes(t);
}

/** Positives of a task among its rows. */
function taskPositives(t: BinaryTask): number {
  if (!t.rows) return positives(t.labels);
  let s = 0;
  for (let i = 0; i < t.rows.length; i++) s += t.labels[t.rows[i]];
  return s;
}

function positives(y: Uint8Array): number {
  let s = 0;
  for (let i = 0; i < y.length; i++) s += y[i];
  return s;
}

export async function evaluate(users: EvalUsers, tasks: EvalTasks, sets: VectorSet[], opts: EvalOptions): Promise<EvalResults> {
  const t0 = performance.now();
  const n = users.ids.length;
  for (const s of sets) {
    if (s.vectors.length !== n * s.dim) throw new Error(`vector set '${s.name}' has ${s.vectors.length} values, expected ${n} users x ${s.dim}`);
    for (let i = 0; i < s.vectors.length; i++) if (!Number.isFinite(s.vectors[i])) throw new Error(`vector set '${s.name}' has a non-finite value at user row ${Math.floor(i / s.dim)}`);
  }
  const results: EvalResults = {
    seed: opts.seed,
    users: n,
    models: sets.map((s) => ({ name: s.name, variant: s.variant, featureId: s.featureId, dim: s.dim, info: s.info })),
    seconds: 0,
  };

  const pool = new FitPool(opts.workers ?? 1);
  try {
    return await runTests(users, tasks, sets, opts, results, pool, t0);
  } finally {
    await pool.close();
  }
}

async function runTests(users: EvalUsers, tasks: EvalTasks, sets: VectorSet[], opts: EvalOptions, results: EvalResults, pool: FitPool, t0: number): Promise<EvalResults> {
  const n = users.ids.length;
  const runs = opts.runs ?? 5;
  const folds = opts.folds ?? 10;
  const seed = opts.seed;
  // Test #1: next-week installation prediction per niche category (MLP, 3:1:1, several runs).
  const niche = tasks.niche.filter((t) => taskPositives(t) >= 5);
  for (const t of tasks.niche) if (!niche.includes(t)) logger.warn({ category: t.name, positives: taskPositives(t) }, 'too few next-week adopters: category skipped in Test #1');
  const t1sets = sets.filter((s) => wants(s, 'test1'));
  if (niche.length > 0 && t1sets.length > 0) {
    const bar = new Progress({ label: 'eval test#1', total: t1sets.length * niche.length * runs, unit: 'fits' });
    const rows: Test1Row[] = [];
    for (const s of t1sets) {
      const ts = performance.now();
      const id = pool.share(s.vectors);
      const jobs: Promise<Test1Row['runs'][number]>[] = [];
      for (const task of niche) {
        for (let r = 0; r < runs; r++) {
          // The same split seed for every model: they are compared on identical users.
          const job = { kind: 'holdout' as const, d: s.dim, labels: task.labels, seed: deriveSeed(seed, 'test1', task.name, r), mlp: opts.mlp, rows: task.rows };
          jobs.push(
            pool.run(id, job).then((res) => {
              const h = res as HoldoutResult;
              bar.tick(1, `${s.name} ${task.name} auc ${h.auc.toFixed(4)}`);
              return { category: task.name, run: r, auc: h.auc, validAuc: h.validAuc, epochs: h.epochs };
            }),
          );
        }
      }
      const runsOut = await Promise.all(jobs);
      pool.release(id);
      const perCategory = niche.map((task) => meanStd(runsOut.filter((x) => x.category === task.name).map((x) => x.auc)));
      const perRunAvg: number[] = [];
      for (let r = 0; r < runs; r++) perRunAvg.push(nanMean(runsOut.filter((x) => x.run === r).map((x) => x.auc)));
      rows.push({ model: s.name, perCategory, average: meanStd(perRunAvg), runs: runsOut, seconds: (performance.now() - ts) / 1000 });
      logger.info({ model: s.name, avgAuc: rows[rows.length - 1].average.mean }, 'test #1 done');
    }
    bar.finish();
    results.test1 = {
      categories: niche.map((t) => ({
        name: t.name,
        positives: taskPositives(t),
        perMillion: (taskPositives(t) / (opts.population ?? n)) * 1e6,
        ...(t.rows ? { rows: t.rows.length } : {}),
      })),
      runs,
      split: '3:1:1 stratified train/valid/test',
      classifier: `MLP (1 hidden ReLU layer of ${opts.mlp?.hidden ?? 32}, Adam, early stop on valid AUC)`,
      rows,
    };
  }

  // Test #2: look-alike classifier, k-fold cross-validated AUC.
  const target = tasks.lookalike;
  const t2sets = sets.filter((s) => wants(s, 'test2'));
  const clf = opts.test2Classifier ?? 'gbdt';
  if (target && positives(target.labels) >= folds && t2sets.length > 0) {
    const bar = new Progress({ label: 'eval test#2', total: t2sets.length * folds, unit: 'folds' });
    const rows: Test2Row[] = [];
    for (const s of t2sets) {
      const ts = performance.now();
      const id = pool.share(s.vectors);
      const cvSeed = deriveSeed(seed, 'test2');
      const foldJobs: Promise<FoldResult>[] = [];
      for (let f = 0; f < folds; f++) {
        const job = { kind: 'cvfold' as const, d: s.dim, labels: target.labels, k: folds, seed: cvSeed, fold: f, classifier: clf, gbdt: opts.gbdt, mlp: opts.mlp };
        foldJobs.push(pool.run(id, job).then((r) => (bar.tick(1, s.name), r as FoldResult)));
      }
      const cv = combineFolds(await Promise.all(foldJobs), target.labels);
      pool.release(id);
      rows.push({ model: s.name, classifier: clf, auc: cv.auc, pooledAuc: cv.pooledAuc, folds: cv.folds, seconds: (performance.now() - ts) / 1000 });
      logger.info({ model: s.name, auc: cv.auc.mean }, 'test #2 done');
    }
    bar.finish();
    const a = positives(target.labels);
    results.test2 = {
      target: target.name,
      adopters: a,
      rate: a / n,
      folds,
      classifier: clf === 'gbdt' ? `gradient-boosted trees (${opts.gbdt?.trees ?? 100} trees, depth ${opts.gbdt?.depth ?? 4})` : 'MLP',
      rows,
    };
  } else if (target && t2sets.length > 0) {
    logger.warn({ adopters: positives(target.labels) }, 'too few look-alike target adopters: Test #2 skipped');
  }

  // Audience extension with hidden adopters: baselines once, vector methods per model.
  const audSets = sets.filter((s) => wants(s, 'audience'));
  if (target && positives(target.labels) >= 4 && audSets.length > 0) {
    const { seeds, hidden } = splitAdopters(target.labels, opts.hideFraction ?? 0.5, deriveSeed(seed, 'audience'));
    const multiples = opts.audienceMultiples ?? [1, 5, 10];
    const sizes = multiples.map((m) => Math.min(n - seeds.length, Math.round(m * hidden.size)));
    const isSeed = new Uint8Array(n);
    for (const s of seeds) isSeed[s] = 1;
    const activity = new Float64Array(n);
    for (let i = 0; i < n; i++) activity[i] = users.retention[i].length;
    const base: AudienceContext = { n, U: null, d: 0, seeds, isSeed, activity, seed: deriveSeed(seed, 'audience-methods') };
    const baselines: AudienceRow[] = [];
    for (const m of [randomAudience, popularAudience]) baselines.push(await evaluateAudience(m, base, hidden, sizes));
    const rows: (AudienceRow & { model: string })[] = [];
    const methods = [centroidAudience, ...(opts.audienceMethods ?? [])];
    for (const s of audSets) {
      const ctx: AudienceContext = { ...base, U: normalizeRows(s.vectors, s.dim), d: s.dim };
      for (const m of methods) {
        const row = await evaluateAudience(m, ctx, hidden, sizes);
        rows.push({ model: s.name, ...row });
        logger.info({ model: s.name, method: m.name, recall: row.recall }, 'audience method done');
      }
    }
    results.audience = { target: target.name, seeds: seeds.length, hidden: hidden.size, sizes, multiples, baselines, rows };
  }

  // §5.5: overlap of app sets between sampled users and their nearest neighbour by vector.
  const ovSets = sets.filter((s) => wants(s, 'overlap'));
  if (ovSets.length > 0 && n >= 2) {
    const m = Math.min(opts.overlapSample ?? 10000, n);
    const sample = new Rng(deriveSeed(seed, 'overlap')).sample(n, m).sort();
    const rows: OverlapRow[] = [];
    const overlapOf = (partner: (k: number) => number): Omit<OverlapRow, 'model' | 'seconds'> => {
      const r: number[] = [];
      const ins: number[] = [];
      const un: number[] = [];
      for (let k = 0; k < sample.length; k++) {
        const a = sample[k];
        const b = partner(k);
        r.push(overlapRate(users.retention[a], users.retention[b]));
        ins.push(overlapRate(users.installs[a], users.installs[b]));
        un.push(overlapRate(users.uninstalls[a], users.uninstalls[b]));
      }
      return { retention: nanMean(r), installs: nanMean(ins), uninstalls: nanMean(un) };
    };
    {
      const ts = performance.now();
      const rng = new Rng(deriveSeed(seed, 'overlap-random'));
      const partners = Array.from(sample, (a) => {
        let b = rng.int(n - 1);
        if (b >= a) b++;
        return b;
      });
      rows.push({ model: 'random pair (floor)', ...overlapOf((k) => partners[k]), seconds: (performance.now() - ts) / 1000 });
    }
    const bar = new Progress({ label: 'eval overlap', total: ovSets.length, unit: 'models' });
    for (const s of ovSets) {
      const ts = performance.now();
      const U = normalizeRows(s.vectors, s.dim);
      const nn = await nearestOther(U, s.dim, sample, opts.matmulT);
      rows.push({ model: s.name, ...overlapOf((k) => nn.index[k]), meanNeighborCosine: nanMean(Array.from(nn.score)), seconds: (performance.now() - ts) / 1000 });
      bar.tick(1, s.name);
    }
    bar.finish();
    results.overlap = { sampled: m, metric: 'Jaccard |A∩B|/|A∪B| of the two users\' app sets, averaged over sampled users (pairs where both sets are empty skipped)', rows };
  }

  results.seconds = (performance.now() - t0) / 1000;
  return results;
}

/**
 * A non-learned floor: each user's retention multi-hot times a fixed Gaussian random matrix
 * [M, dim] (Johnson-Lindenstrauss), scaled by 1/sqrt(|retention|). It keeps the raw co-install
 * information a classifier could use but learns nothing about apps.
 */
export function randomProjection(users: EvalUsers, numApps: number, dim: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const R = new Float32Array(numApps * dim);
  for (let i = 0; i < R.length; i++) R[i] = rng.normal();
  const n = users.ids.length;
  const out = new Float32Array(n * dim);
  for (let u = 0; u < n; u++) {
    const apps = users.retention[u];
    if (apps.length === 0) continue;
    const s = 1 / Math.sqrt(apps.length);
    const o = u * dim;
    for (const a of apps) {
      if (a < 0 || a >= numApps) throw new RangeError(`app index ${a} outside the vocabulary of ${numApps}`);
      const r = a * dim;
      for (let j = 0; j < dim; j++) out[o + j] += R[r + j] * s;
    }
  }
  return out;
}
