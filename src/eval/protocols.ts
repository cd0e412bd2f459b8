// The two classifier protocols of the paper: a 3:1:1 train/valid/test hold-out with an MLP
// (Test #1) and k-fold cross-validation of a look-alike classifier (Test #2).
import { trainGbdt, type GbdtOptions } from './gbdt.js';
import { meanStd, rocAuc, type Spread } from './metrics.js';
import { trainMlp, type BinaryClassifier, type MlpOptions } from './mlp.js';
import { deriveSeed } from '../util/hash.js';
import { stratifiedKFold, stratifiedSplit, takeLabels, takeRows } from './split.js';

export interface HoldoutResult {
  auc: number;
  validAuc: number;
  epochs: number;
  positives: { train: number; valid: number; test: number };
}

function count(y: Uint8Array): number {
  let s = 0;
  for (let i = 0; i < y.length; i++) s += y[i];
  return s;
}

/**
 * Paper Test #1 protocol for one run: stratified 3:1:1 split, MLP early-stopped on valid, AUC on test.
 * `rows` (optional) restricts the task to those rows of X and y (e.g. every adopter plus a uniform
 * sample of the others); the split is drawn over them alone.
 */
export function holdoutMlpAuc(X: Float32Array, y: Uint8Array, d: number, seed: number, mlp: Partial<MlpOptions> = {}, rows?: Int32Array): HoldoutResult {
  if (rows) {
    for (let i = 0; i < rows.length; i++) if (rows[i] < 0 || rows[i] >= y.length) throw new RangeError(`holdout: row ${rows[i]} outside 0..${y.length - 1}`);
    return holdoutMlpAuc(takeRows(X, d, rows), takeLabels(y, rows), d, seed, mlp);
  }
  const [tr, va, te] = stratifiedSplit(y, [3, 1, 1], deriveSeed(seed, 'split'));
  const ytr = takeLabels(y, tr);
  const yva = takeLabels(y, va);
  const yte = takeLabels(y, te);
  const model = trainMlp(takeRows(X, d, tr), ytr, takeRows(X, d, va), yva, d, { ...mlp, seed: deriveSeed(seed, 'init') });
  return {
    auc: rocAuc(model.predict(takeRows(X, d, te)), yte),
    validAuc: model.bestValidAuc,
    epochs: model.epochs,
    positives: { train: count(ytr), valid: count(yva), test: count(yte) },
  };
}

export type Trainer = (X: Float32Array, y: Uint8Array, d: number, seed: number) => BinaryClassifier;

export const gbdtTrainer =
  (opts: Partial<GbdtOptions> = {}): Trainer =>
  (X, y, d, seed) =>
    trainGbdt(X, y, d, { ...opts, seed });

/**
 * An MLP as a k-fold trainer: it still needs a validation part for early stopping, so it takes a
 * stratified quarter of the training folds for that.
 */
export const mlpTrainer =
  (opts: Partial<MlpOptions> = {}): Trainer =>
  (X, y, d, seed) => {
    const [tr, va] = stratifiedSplit(y, [3, 1], deriveSeed(seed, 'valid'));
    return trainMlp(takeRows(X, d, tr), takeLabels(y, tr), takeRows(X, d, va), takeLabels(y, va), d, { ...opts, seed });
  };

export interface CvResult {
  folds: number[];
  /** Mean and spread of the per-fold AUCs. */
  auc: Spread;
  /** AUC of all out-of-fold scores pooled (each row scored by the model that did not see it). */
  pooledAuc: number;
}

export interface FoldResult {
  fold: number;
  /** Rows of the held-out fold and their scores. */
  test: Int32Array;
  scores: Float32Array;
  auc: number;
}

/** One fold of stratified k-fold CV: the fold assignment depends only on (labels, k, seed). */
export function crossValidationFold(X: Float32Array, y: Uint8Array, d: number, k: number, seed: number, f: number, train: Trainer, fold?: Int32Array): FoldResult {
  const assignment = fold ?? stratifiedKFold(y, k, deriveSeed(seed, 'folds'));
  const tr: number[] = [];
  const te: number[] = [];
  for (let i = 0; i < y.length; i++) (assignment[i] === f ? te : tr).push(i);
  const model = train(takeRows(X, d, tr), takeLabels(y, tr), d, deriveSeed(seed, 'fold', f));
  const scores = model.predict(takeRows(X, d, te));
  return { fold: f, test: Int32Array.from(te), scores, auc: rocAuc(scores, takeLabels(y, te)) };
}

/** Per-fold AUCs, their spread, and the AUC of all out-of-fold scores pooled. */
export function combineFolds(folds: FoldResult[], y: Uint8Array): CvResult {
  const oof = new Float32Array(y.length);
  const sorted = [...folds].sort((a, b) => a.fold - b.fold);
  for (const f of sorted) for (let i = 0; i < f.test.length; i++) oof[f.test[i]] = f.scores[i];
  const aucs = sorted.map((f) => f.auc);
  return { folds: aucs, auc: meanStd(aucs), pooledAuc: rocAuc(oof, y) };
}

/** Stratified k-fold cross-validated AUC (in this thread; FitPool runs the folds in parallel). */
export function crossValidatedAuc(X: Float32Array, y: Uint8Array, d: number, k: number, seed: number, train: Trainer, onFold?: (fold: number) => void): CvResult {
  const assignment = stratifiedKFold(y, k, deriveSeed(seed, 'folds'));
  const out: FoldResult[] = [];
  for (let f = 0; f < k; f++) {
    out.push(crossValidationFold(X, y, d, k, seed, f, train, assignment));
    onFold?.(f);
  }
  return combineFolds(out, y);
}

/** A unit of classifier work that a worker thread can run given the shared matrix. */
export type FitJob =
  | { kind: 'holdout'; d: number; labels: Uint8Array; seed: number; mlp?: Partial<MlpOptions>; rows?: Int32Array }
  | { kind: 'cvfold'; d: number; labels: Uint8Array; k: number; seed: number; fold: number; classifier: 'gbdt' | 'mlp'; gbdt?: Partial<GbdtOptions>; mlp?: Partial<MlpOptions> };

export type FitResult = HoldoutResult | FoldResult;

export function runFitJob(X: Float32Array, job: FitJob): FitResult {
  if (job.kind === 'holdout') return holdoutMlpAuc(X, job.labels, job.d, job.seed, job.mlp, job.rows);
  const trainer = job.classifier === 'gbdt' ? gbdtTrainer(job.gbdt) : mlpTrainer(job.mlp);
  return crossValidationFold(X, job.labels, job.d, job.k, job.seed, job.fold, trainer);
}
