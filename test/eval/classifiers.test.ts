import { describe, expect, it } from 'vitest';
import { trainGbdt } from '../../src/eval/gbdt.js';
import { rocAuc } from '../../src/eval/metrics.js';
import { trainMlp } from '../../src/eval/mlp.js';
import { crossValidatedAuc, gbdtTrainer, holdoutMlpAuc, mlpTrainer } from '../../src/eval/protocols.js';
import { Rng } from '../../src/util/random.js';
import { stratifiedKFold, stratifiedSplit, takeLabels, takeRows } from '../../src/eval/split.js';

/** n rows of d standard normals; the label rule decides what is learnable. */
function toy(n: number, d: number, seed: number, rule: (x: Float32Array, rng: Rng) => number) {
  const rng = new Rng(seed);
  const X = new Float32Array(n * d);
  const y = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const row = X.subarray(i * d, i * d + d);
    for (let j = 0; j < d; j++) row[j] = rng.normal();
    y[i] = rule(row, rng);
  }
  return { X, y };
}
const xor = (x: Float32Array) => ((x[0] > 0) !== (x[1] > 0) ? 1 : 0);
const linear = (x: Float32Array) => (x[0] + 0.5 * x[2] - x[3] > 0.3 ? 1 : 0);
const noise = (_x: Float32Array, rng: Rng) => (rng.next() < 0.2 ? 1 : 0);

describe('stratified splits', () => {
  it('keep the class ratio in every part and cover every row once', () => {
    const y = new Uint8Array(1000);
    for (let i = 0; i < 1000; i++) y[i] = i % 50 === 0 ? 1 : 0; // 20 positives
    const parts = stratifiedSplit(y, [3, 1, 1], 7);
    expect(parts.map((p) => p.length)).toEqual([600, 200, 200]);
    expect(parts.map((p) => p.reduce((s, i) => s + y[i], 0))).toEqual([12, 4, 4]);
    const all = new Set<number>();
    for (const p of parts) for (const i of p) all.add(i);
    expect(all.size).toBe(1000);
    const fold = stratifiedKFold(y, 10, 7);
    for (let f = 0; f < 10; f++) {
      let n = 0;
      let pos = 0;
      for (let i = 0; i < 1000; i++) if (fold[i] === f) (n++, (pos += y[i]));
      expect(n).toBe(100);
      expect(pos).toBe(2);
    }
    expect(stratifiedSplit(y, [3, 1, 1], 7)).toEqual(parts); // deterministic from the seed
    expect(stratifiedSplit(y, [3, 1, 1], 8)[2]).not.toEqual(parts[2]);
  });
});

describe('MLP classifier', () => {
  it('learns a non-linear separable problem (XOR) to AUC ~1', () => {
    const tr = toy(3000, 6, 1, xor);
    const va = toy(1000, 6, 2, xor);
    const te = toy(1000, 6, 3, xor);
    const m = trainMlp(tr.X, tr.y, va.X, va.y, 6, { seed: 1, hidden: 16, maxEpochs: 60, lr: 3e-3 });
    expect(rocAuc(m.predict(te.X), te.y)).toBeGreaterThan(0.97);
  });

  it('scores ~0.5 on label noise', () => {
    const { X, y } = toy(3000, 8, 4, noise);
    const r = holdoutMlpAuc(X, y, 8, 5, { hidden: 16, maxEpochs: 20 });
    expect(Math.abs(r.auc - 0.5)).toBeLessThan(0.07);
    expect(r.positives.test).toBeGreaterThan(80);
  });

  it('is deterministic from the seed', () => {
    const { X, y } = toy(1500, 6, 6, linear);
    const a = holdoutMlpAuc(X, y, 6, 9, { maxEpochs: 8, batchSize: 64, lr: 3e-3 });
    const b = holdoutMlpAuc(X, y, 6, 9, { maxEpochs: 8, batchSize: 64, lr: 3e-3 });
    const c = holdoutMlpAuc(X, y, 6, 10, { maxEpochs: 8, batchSize: 64, lr: 3e-3 });
    expect(a).toEqual(b);
    expect(c.auc).not.toBe(a.auc);
    expect(a.auc).toBeGreaterThan(0.95);
  });

  it('with rows, runs on those rows alone (the same result as on a copy of them); bad rows are refused', () => {
    const { X, y } = toy(1500, 6, 6, linear);
    const rows = Int32Array.from({ length: 700 }, (_, i) => 2 * i + 1);
    const sub = holdoutMlpAuc(X, y, 6, 9, { maxEpochs: 8, batchSize: 64 }, rows);
    const copy = holdoutMlpAuc(takeRows(X, 6, rows), takeLabels(y, rows), 6, 9, { maxEpochs: 8, batchSize: 64 });
    expect(sub).toEqual(copy);
    const all = holdoutMlpAuc(X, y, 6, 9, { maxEpochs: 8, batchSize: 64 });
    expect(sub.positives.train + sub.positives.valid + sub.positives.test).toBeLessThan(all.positives.train + all.positives.valid + all.positives.test);
    expect(() => holdoutMlpAuc(X, y, 6, 9, {}, Int32Array.from([0, 1500]))).toThrow(/row 1500 outside 0..1499/);
  });
});

describe('gradient-boosted trees', () => {
  it('learn XOR to AUC ~1', () => {
    const tr = toy(3000, 6, 11, xor);
    const te = toy(1000, 6, 12, xor);
    const m = trainGbdt(tr.X, tr.y, 6, { seed: 1, trees: 60, colSample: 1 });
    expect(m.trees).toBe(60);
    expect(rocAuc(m.predict(te.X), te.y)).toBeGreaterThan(0.97);
  });

  it('score ~0.5 on label noise under 10-fold CV, and ~1 on a separable problem', () => {
    const n = toy(3000, 8, 13, noise);
    const r = crossValidatedAuc(n.X, n.y, 8, 10, 3, gbdtTrainer({ trees: 30 }));
    expect(r.folds).toHaveLength(10);
    expect(Math.abs(r.pooledAuc - 0.5)).toBeLessThan(0.06);
    const s = toy(3000, 8, 14, linear);
    const r2 = crossValidatedAuc(s.X, s.y, 8, 10, 3, gbdtTrainer({ trees: 60 }));
    expect(r2.auc.mean).toBeGreaterThan(0.95);
    expect(r2.auc.std).toBeGreaterThan(0);
  });

  it('MLP trainer also works under CV', () => {
    const s = toy(2000, 8, 15, linear);
    const r = crossValidatedAuc(s.X, s.y, 8, 5, 3, mlpTrainer({ maxEpochs: 20, batchSize: 64, lr: 3e-3 }));
    expect(r.auc.mean).toBeGreaterThan(0.95);
  });
});
