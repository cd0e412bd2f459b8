// Chunked model calls (memory.ts, LocalEngine): a replica cuts a call into chunks of users that fit
// its memory budget. The step must be the same step: the gradient, the losses, the Adam update, the
// evaluation losses and the user vectors of a chunked call equal the one-chunk call up to float
// rounding, and the same seed still gives the same weights.
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/model/backend.js';
import { aetnMemoryEstimate, chunkUsers, gpuInferenceChunk, resolveGpuMemoryBudgetMiB, resolveMemoryBudget } from '../../src/model/memory.js';
import { startEngine, train, type TrainData } from '../../src/model/train.js';
import { FlatAdam } from '../../src/model/train-adam.js';
import { LocalEngine, chunkRanges, defaultFactoryUrl } from '../../src/model/train-engine.js';
import { factory } from '../../src/model/train-model.js';
import { UserError } from '../../src/util/errors.js';
import { tinyWorld } from './train-fixture.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCheckpoint } from '../../src/model/checkpoint.js';

const TINY = { dModel: 16, dFf: 32, heads: 2, encLayers: 2, decLayers: 1, dEmb: 8, aeHidden: 8 };
const world = tinyWorld(240, 30, 9);
const cfg = factory.makeConfig(world.vocab, TINY, { seqLen: 6, dateBuckets: 52 });

/** max |a - b| / max |a|: the gradient's error relative to its largest entry. */
function relDiff(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(a[i]!));
  }
  expect(den).toBeGreaterThan(0);
  return num / den;
}

beforeAll(async () => {
  await initBackend('wasm');
});

describe('chunk sizes', () => {
  it('cut n users into the fewest near-equal calls of at most max users', () => {
    expect(chunkRanges(0, 5)).toEqual([]);
    expect(chunkRanges(5, 5)).toEqual([[0, 5]]);
    expect(chunkRanges(3, Infinity)).toEqual([[0, 3]]);
    expect(chunkRanges(11, 5)).toEqual([[0, 4], [4, 8], [8, 11]]);
    const r = chunkRanges(500, 24);
    expect(r.length).toBe(21);
    expect(Math.max(...r.map(([a, b]) => b - a))).toBeLessThanOrEqual(24);
    expect(r[r.length - 1]![1]).toBe(500);
  });

  it('follow the budget: paper size fits tens of users per training call, hundreds per embedding', () => {
    const vocab = { ...world.vocab, apps: Array.from({ length: 2000 }, (_, i) => ({ index: i, appId: `a${i}`, category: i % 4, packages: [] })) };
    const paper = factory.makeConfig(vocab, {}, { seqLen: 25, dateBuckets: 52 });
    const est = aetnMemoryEstimate(paper, 9_416_528);
    // Measured (tf.profile peakBytes, wasm): 39.3 MiB per training user at M = 2000, 6.5 per embedded user.
    expect(est.perUser.training / 2 ** 20).toBeGreaterThan(39.3);
    expect(est.perUser.training / 2 ** 20).toBeLessThan(50);
    expect(est.perUser.inference / 2 ** 20).toBeGreaterThan(6.5);
    const budget = resolveMemoryBudget(undefined, {});
    expect(budget).toBe(1536 * 2 ** 20);
    expect(chunkUsers(budget, est, true)).toBeGreaterThanOrEqual(16);
    expect(chunkUsers(budget, est, true)).toBeLessThanOrEqual(32);
    expect(chunkUsers(budget, est, false)).toBeGreaterThan(100);
    // A bigger budget, bigger chunks; the environment sets it too; nonsense is refused by name.
    expect(chunkUsers(resolveMemoryBudget(3000, {}), est, true)).toBeGreaterThan(chunkUsers(budget, est, true));
    expect(resolveMemoryBudget(undefined, { AETN_MEMORY_BUDGET_MIB: '512' })).toBe(512 * 2 ** 20);
    expect(() => resolveMemoryBudget(undefined, { AETN_MEMORY_BUDGET_MIB: 'lots' })).toThrow(/AETN_MEMORY_BUDGET_MIB/);
    expect(() => resolveMemoryBudget(10, {})).toThrow(UserError);
    // On a GPU: the device budget (4096 MiB unless set) holds two calls in flight, and no tensor
    // may pass the device's buffer binding limit (lavapipe's 128 MiB; GPUs have GiBs).
    expect(resolveGpuMemoryBudgetMiB(undefined, {})).toBe(4096);
    expect(resolveGpuMemoryBudgetMiB(undefined, { AETN_GPU_MEMORY_BUDGET_MIB: '65536' })).toBe(65536);
    expect(() => resolveGpuMemoryBudgetMiB(32, {})).toThrow(/gpuMemoryBudgetMiB .*>= 64/);
    const big = { budgetMiB: 4096, maxBufferBytes: 2 ** 32 - 1 };
    expect(gpuInferenceChunk(big, est)).toBe(Math.floor((4096 * 2 ** 20 - est.fixed.inference) / (2 * est.perUser.inference)));
    expect(gpuInferenceChunk(big, est)).toBeLessThan(chunkUsers(4096 * 2 ** 20, est, false));
    expect(gpuInferenceChunk({ ...big, budgetMiB: 65536 }, est)).toBeGreaterThan(8 * gpuInferenceChunk(big, est));
    // At paper size the largest tensor is a layer's fused projection [T = 51, 3d]: 306 KiB a user, so 214 users in 128 MiB at 2x headroom.
    expect(est.largestPerUser).toBe(4 * 51 * 3 * 512);
    expect(gpuInferenceChunk({ budgetMiB: 65536, maxBufferBytes: 128 * 2 ** 20 }, est)).toBe(Math.floor((128 * 2 ** 20) / (2 * 4 * 51 * 3 * 512)));
    // The engine takes the same numbers.
    const e = new LocalEngine(factory, cfg, factory.createModel(cfg, 1), { chunkUsers: 7 });
    expect(e.chunkUsers).toEqual({ training: 7, inference: 7 });
    void e.close();
  });
});

describe('a chunked call is the same call', () => {
  // Tolerances: float32 sums in another order; measured ~1e-7 relative (gradient) on this model.
  const GRAD_TOL = 1e-5;

  it('gradient, losses and the Adam update: 41 users in one chunk vs chunks of 7 (6 calls) and 20 (3 calls)', async () => {
    const whole = LocalEngine.create(factory, cfg, 2, { chunkUsers: 1000 });
    const w = whole.getWeights();
    const batch = world.examples.slice(0, 41);
    const g1 = new Float32Array(w.length);
    const r1 = whole.gradientSync(batch, 77, g1);
    for (const size of [7, 20]) {
      const chunked = LocalEngine.create(factory, cfg, 2, { chunkUsers: size });
      chunked.setWeightsSync(w);
      const g2 = new Float32Array(w.length);
      const r2 = chunked.gradientSync(batch, 77, g2);
      expect(r2.n).toBe(41);
      for (const k of ['total', 'main', 'aux', 'mask', 'reg'] as const) expect(Math.abs(r2.losses[k] - r1.losses[k])).toBeLessThan(1e-5 * Math.max(1, Math.abs(r1.losses[k])));
      expect(relDiff(g1, g2)).toBeLessThan(GRAD_TOL);
      // Bit-exact on repeat (the scratch buffer carries nothing from one call to the next).
      const g3 = new Float32Array(w.length);
      chunked.gradientSync(batch, 77, g3);
      expect(Buffer.from(g3.buffer).equals(Buffer.from(g2.buffer))).toBe(true);
      // The Adam step from either gradient moves the weights alike: |Δ| < 1e-3 lr. Adam's first step
      // is ~lr·g/|g| per entry, so entries whose gradient is rounding noise (|g| < 1e-6 of the largest:
      // the W_K_ret rows, whose true gradient is 0 because a key shift common to all tokens does not
      // change the softmax) move by up to ±lr either way; they are left out (exact zeros in both,
      // e.g. date rows no user has, stay in: both updates are 0).
      const lr = 1e-2;
      const wa = w.slice();
      const wb = w.slice();
      new FlatAdam(w.length).apply(wa, g1, lr);
      new FlatAdam(w.length).apply(wb, g2, lr);
      const gMax = g1.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      let maxW = 0;
      let noiseG2 = 0;
      for (let i = 0; i < w.length; i++) {
        if (Math.abs(g1[i]!) < 1e-6 * gMax && (g1[i] !== 0 || g2[i] !== 0)) noiseG2 = Math.max(noiseG2, Math.abs(g2[i]!));
        else maxW = Math.max(maxW, Math.abs(wa[i]! - wb[i]!));
      }
      expect(noiseG2).toBeLessThan(1e-5 * gMax); // noise in one is noise in the other
      expect(maxW).toBeLessThan(1e-3 * lr);
      await chunked.close();
    }
    // Not vacuous: chunks of the wrong weight (plain mean of chunk means) would differ (chunks of 20
    // are 20, 21 users: a small difference; chunks of 7 are 7 and 6).
    const other = new Float32Array(w.length);
    whole.gradientSync(batch.slice(0, 20), 77, other);
    expect(relDiff(g1, other)).toBeGreaterThan(1e-3);
    await whole.close();
  });

  it('evaluation losses and user vectors', async () => {
    const whole = LocalEngine.create(factory, cfg, 3, { chunkUsers: 1000 });
    const chunked = LocalEngine.create(factory, cfg, 3, { chunkUsers: 9 });
    const users = world.examples.slice(50, 90);
    const e1 = whole.evaluateSync(users);
    const e2 = chunked.evaluateSync(users);
    for (const k of ['total', 'main', 'aux', 'mask', 'reg'] as const) expect(Math.abs(e2.losses[k] - e1.losses[k])).toBeLessThan(1e-5 * Math.max(1, Math.abs(e1.losses[k])));
    const v1 = whole.embedSync(users);
    const v2 = chunked.embedSync(users);
    expect(v2.length).toBe(40 * 8);
    for (let i = 0; i < v1.length; i++) expect(Math.abs(v1[i]! - v2[i]!)).toBeLessThan(1e-5);
    await whole.close();
    await chunked.close();
  });

  it('in two workers with chunks: the one-thread, one-chunk gradient', async () => {
    const one = await startEngine({ factoryUrl: defaultFactoryUrl(), cfg, seed: 2, backend: 'wasm', workers: 1, memory: { chunkUsers: 1000 } });
    const two = await startEngine({ factoryUrl: defaultFactoryUrl(), cfg, seed: 2, backend: 'wasm', workers: 2, memory: { chunkUsers: 6 } });
    try {
      expect(two.engine.chunkUsers.training).toBe(6);
      const w = one.local.getWeights();
      await two.engine.setWeights(w);
      const batch = world.examples.slice(0, 41);
      const g1 = new Float32Array(w.length);
      const g2 = new Float32Array(w.length);
      await one.engine.gradient(batch, 5, g1);
      await two.engine.gradient(batch, 5, g2);
      expect(relDiff(g1, g2)).toBeLessThan(GRAD_TOL);
    } finally {
      await one.engine.close();
      await two.engine.close();
      await two.local.close();
    }
  });
});

describe('training with chunks', () => {
  it('is deterministic (same seed, same weights) and follows the one-chunk run', async () => {
    const root = mkdtempSync(join(tmpdir(), 'aetn-chunks-'));
    try {
      const data: TrainData = { vocab: world.vocab, seqLen: 6, dateBuckets: 52, numUsers: 240, source: 'memory', async *examples() { yield* world.examples; } };
      const base = { data, sizes: TINY, batchSize: 60, lr: 3e-3, backend: 'wasm', workers: 1, valFraction: 0.15, seed: 4, silentProgress: true, epochs: 1 };
      const a = await train({ ...base, out: join(root, 'a'), chunkUsers: 13 });
      const b = await train({ ...base, out: join(root, 'b'), chunkUsers: 13 });
      const c = await train({ ...base, out: join(root, 'c') });
      expect(a.manifest.training.chunkUsers).toBe(13);
      const wa = (await loadCheckpoint(join(root, 'a'))).weights;
      const wb = (await loadCheckpoint(join(root, 'b'))).weights;
      const wc = (await loadCheckpoint(join(root, 'c'))).weights;
      expect(Buffer.from(wa.buffer).equals(Buffer.from(wb.buffer))).toBe(true);
      // Four Adam steps of lr 3e-3 from the same start: every variable stays within a small fraction
      // of a step, except W_K_ret, whose gradient is rounding noise (see above) that Adam scales to ~lr.
      const { layout } = await loadCheckpoint(join(root, 'c'));
      for (const v of layout) {
        if (v.name.includes('Wk_ret')) continue;
        let maxW = 0;
        for (let i = v.offset; i < v.offset + v.size; i++) maxW = Math.max(maxW, Math.abs(wa[i]! - wc[i]!));
        expect(maxW).toBeLessThan(1e-2 * 3e-3);
      }
      expect(Math.abs(a.history[0]!.train.total - c.history[0]!.train.total)).toBeLessThan(1e-4);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
