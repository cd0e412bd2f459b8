// Stratified splits: rare positives (a niche category installs at well under 1% of users) must land
// in every part in proportion, or a test fold may hold no positive at all and its AUC be undefined.
import { Rng } from '../util/random.js';

function byClass(labels: ArrayLike<number>, rng: Rng): Int32Array[] {
  const pos: number[] = [];
  const neg: number[] = [];
  for (let i = 0; i < labels.length; i++) (labels[i] > 0 ? pos : neg).push(i);
  return [rng.shuffle(Int32Array.from(pos)), rng.shuffle(Int32Array.from(neg))];
}

/**
 * Split row indices into parts with the given weights (e.g. [3, 1, 1] for train/valid/test), each
 * class split separately so every part keeps the class ratio. Indices inside a part are sorted.
 */
export function stratifiedSplit(labels: ArrayLike<number>, weights: number[], seed: number): Int32Array[] {
  const rng = new Rng(seed);
  const total = weights.reduce((a, b) => a + b, 0);
  const parts: number[][] = weights.map(() => []);
  for (const cls of byClass(labels, rng)) {
    let start = 0;
    let acc = 0;
    for (let p = 0; p < weights.length; p++) {
      acc += weights[p];
      const end = p === weights.length - 1 ? cls.length : Math.round((cls.length * acc) / total);
      for (let i = start; i < end; i++) parts[p].push(cls[i]);
      start = end;
    }
  }
  return parts.map((p) => Int32Array.from(p).sort());
}

/** Stratified k-fold: fold index of every row; each class is dealt round-robin after a shuffle. */
export function stratifiedKFold(labels: ArrayLike<number>, k: number, seed: number): Int32Array {
  if (k < 2) throw new RangeError(`k-fold needs k >= 2, got ${k}`);
  const rng = new Rng(seed);
  const fold = new Int32Array(labels.length);
  for (const cls of byClass(labels, rng)) {
    // Start each class at a random fold so small folds do not always come last.
    const off = rng.int(k);
    for (let i = 0; i < cls.length; i++) fold[cls[i]] = (i + off) % k;
  }
  return fold;
}

/** Rows of X (row-major, d columns) picked by `idx`, copied into a new contiguous matrix. */
export function takeRows(X: Float32Array, d: number, idx: ArrayLike<number>): Float32Array {
  const out = new Float32Array(idx.length * d);
  for (let i = 0; i < idx.length; i++) out.set(X.subarray(idx[i] * d, idx[i] * d + d), i * d);
  return out;
}

export function takeLabels(y: ArrayLike<number>, idx: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(idx.length);
  for (let i = 0; i < idx.length; i++) out[i] = y[idx[i]] > 0 ? 1 : 0;
  return out;
}
