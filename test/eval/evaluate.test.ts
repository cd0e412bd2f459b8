import { describe, expect, it } from 'vitest';
import { evaluate, randomProjection, type VectorSet } from '../../src/eval/evaluate.js';
import { nearestOther, normalizeRows } from '../../src/eval/neighbors.js';
import { Rng } from '../../src/util/random.js';
import { randomVectors, tinyWorld, topicVectors } from './world.js';

describe('nearest neighbour scan', () => {
  it('finds the most similar other row, never the row itself', async () => {
    const d = 5;
    const rng = new Rng(1);
    const V = Float32Array.from({ length: 300 * d }, () => rng.normal());
    const U = normalizeRows(V, d);
    const q = Int32Array.from([0, 7, 299]);
    const got = await nearestOther(U, d, q);
    for (let k = 0; k < q.length; k++) {
      let best = -Infinity;
      let bi = -1;
      for (let i = 0; i < 300; i++) {
        if (i === q[k]) continue;
        let s = 0;
        for (let j = 0; j < d; j++) s += U[q[k] * d + j] * U[i * d + j];
        if (s > best) (best = s), (bi = i);
      }
      expect(got.index[k]).toBe(bi);
      expect(got.score[k]).toBeCloseTo(best, 5);
    }
  });
});

describe('evaluate() on a planted world', () => {
  const w = tinyWorld(3000, 42);
  const n = w.users.ids.length;
  const sets: VectorSet[] = [
    { name: 'random', variant: 'none', dim: 8, vectors: randomVectors(n, 8, 5) },
    { name: 'good', variant: 'oracle', dim: 8, vectors: topicVectors(w, 8, 0.3, 6) },
    { name: 'projection', variant: 'baseline', dim: 16, vectors: randomProjection(w.users, w.numApps, 16, 7) },
  ];
  let res: Awaited<ReturnType<typeof evaluate>>;

  it('runs every test and ranks a good embedding above a random one', async () => {
    res = await evaluate(w.users, w.tasks, sets, { seed: 1, runs: 2, folds: 5, gbdt: { trees: 30 }, overlapSample: 500 });
    const t1 = Object.fromEntries(res.test1!.rows.map((r) => [r.model, r.average.mean]));
    expect(res.test1!.categories.map((c) => c.name)).toEqual(['niche-a', 'niche-b']);
    expect(t1.good).toBeGreaterThan(0.8);
    expect(Math.abs(t1.random - 0.5)).toBeLessThan(0.1);
    expect(t1.good).toBeGreaterThan(t1.random + 0.2);
    expect(res.test1!.rows[0].runs).toHaveLength(4);

    const t2 = Object.fromEntries(res.test2!.rows.map((r) => [r.model, r.auc.mean]));
    expect(res.test2!.rows[0].folds).toHaveLength(5);
    expect(t2.good).toBeGreaterThan(0.8);
    expect(t2.good).toBeGreaterThan(t2.random + 0.2);

    const a = res.audience!;
    expect(a.sizes).toEqual([1, 5, 10].map((m) => Math.round(m * a.hidden)));
    const random = a.baselines.find((b) => b.method === 'random')!;
    const good = a.rows.find((r) => r.model === 'good')!;
    const rnd = a.rows.find((r) => r.model === 'random')!;
    expect(good.recall[0]).toBeGreaterThan(2 * random.recall[0]);
    expect(good.precision[0]).toBeGreaterThan(rnd.precision[0] + 0.2);
    // Random audiences find hidden adopters at about their base rate.
    expect(random.precision[2]).toBeLessThan(0.2);
    for (const r of [...a.rows, ...a.baselines]) for (let i = 1; i < r.recall.length; i++) expect(r.recall[i]).toBeGreaterThanOrEqual(r.recall[i - 1]);

    const ov = Object.fromEntries(res.overlap!.rows.map((r) => [r.model, r]));
    expect(ov.good.retention).toBeGreaterThan(ov.random.retention + 0.05);
    expect(ov['random pair (floor)'].retention).toBeLessThan(ov.good.retention);
    // Retention is what the projection encodes: its neighbours share the most retained apps.
    expect(ov.projection.retention).toBeGreaterThan(ov.good.retention);
  });

  it('is deterministic with a seed, whether fits run inline or on worker threads', async () => {
    const again = await evaluate(w.users, w.tasks, sets.slice(0, 2), { seed: 1, runs: 2, folds: 5, gbdt: { trees: 30 }, overlapSample: 500, workers: 2 });
    expect(again.test1!.rows[1].runs).toEqual(res.test1!.rows[1].runs);
    expect(again.test1!.rows[1].average).toEqual(res.test1!.rows[1].average);
    expect(again.test2!.rows[1].folds).toEqual(res.test2!.rows[1].folds);
    expect(again.overlap!.rows[2]).toMatchObject({ retention: res.overlap!.rows[2].retention });
  });

  it('refuses misaligned or non-finite vectors', async () => {
    await expect(evaluate(w.users, w.tasks, [{ name: 'x', variant: 'x', dim: 8, vectors: new Float32Array(10) }], { seed: 1 })).rejects.toThrow(/expected 3000 users/);
    const bad = new Float32Array(n * 2);
    bad[5] = Number.NaN;
    await expect(evaluate(w.users, w.tasks, [{ name: 'x', variant: 'x', dim: 2, vectors: bad }], { seed: 1 })).rejects.toThrow(/non-finite/);
  });
});
