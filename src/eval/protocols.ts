// The two classifier protocols of the paper: a 3:1:1 train/valid/test hold-out with an MLP
// (Test #1) and k-fold cross-validation of a look-alike classifier (Test #2).
import { trainGbdt, type GbdtOptions } from './gbdt.js';
import { meanStd, rocAuc, type Spread } from './metrics.js';
import { trainMlp, type BinaryClassifier, type MlpOptions } from './mlp.js';
import { deriveSeed } from './rng.js';
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

/** Paper Test #1 protocol for one run: stratified 3:1:1 split, MLP early-stopped on valid, AUC on test. */
export function holdoutMlpAuc(X: Float32Array, y: Uint8Array, d: number, seed: number, mlp: Partial<MlpOptions> = {}): HoldoutResult {
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

/** Stratified k-fold cross-validated AUC. */
export function crossValidatedAuc(X: Float32Array, y: Uint8Array, d: number, k: number, seed: number, train: Trainer, onFold?: (fold: number) => void): CvResult {
  const fold = stratifiedKFold(y, k, deriveSeed(seed, 'folds'));
  const oof = new Float32Array(y.length);
  const aucs: number[] = [];
  for (let f = 0; f < k; f++) {
    const tr: number[] = [];
    const te: number[] = [];
    for (let i = 0; i < y.length; i++) (fold[i] === f ? te : tr).push(i);
    const model = train(takeRows(X, d, tr), takeLabels(y, tr), d, deriveSeed(seed, 'fold', f));
    const s = model.predict(takeRows(X, d, te));
    for (let i = 0; i < te.length; i++) oof[te[i]] = s[i];
    aucs.push(rocAuc(s, takeLabels(y, te)));
    onFold?.(f);
  }
  return { folds: aucs, auc: meanStd(aucs), pooledAuc: rocAuc(oof, y) };
}
