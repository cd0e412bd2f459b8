import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../../src/model/backend.js';
import { readManifest } from '../../src/model/checkpoint.js';
import { createEmbedder } from '../../src/model/infer.js';
import { isValidationUser, startEngine, train, trainBatches, type TrainData } from '../../src/model/train.js';
import { FlatAdam } from '../../src/model/train-adam.js';
import { defaultFactoryUrl, splitRanges } from '../../src/model/train-engine.js';
import { factory } from '../../src/model/train-model.js';
import { UserError } from '../../src/util/errors.js';
import { tinyTrainData, tinyWorld } from './train-fixture.js';

const TINY = { dModel: 16, dFf: 32, heads: 2, encLayers: 1, decLayers: 1, dEmb: 8, aeHidden: 8 };
const world = tinyWorld(240, 30, 9);
const data: TrainData = tinyTrainData(world);
const base = { data, sizes: TINY, batchSize: 60, lr: 3e-3, backend: 'wasm', workers: 1, valFraction: 0.15, seed: 4, silentProgress: true };

let root: string;
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'aetn-train-'));
  await initBackend('wasm');
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('data pipeline', () => {
  it('splits validation users stably by id hash', () => {
    const ids = Array.from({ length: 20000 }, (_, i) => `user-${i}`);
    const val = ids.filter((id) => isValidationUser(id, 0.05));
    expect(val.length / ids.length).toBeGreaterThan(0.04);
    expect(val.length / ids.length).toBeLessThan(0.06);
    expect(ids.filter((id) => isValidationUser(id, 0.05))).toEqual(val);
    expect(ids.some((id) => isValidationUser(id, 0))).toBe(false);
  });

  it('shuffles each epoch differently, deterministically, covering every training user once', async () => {
    const o = { batchSize: 50, shuffleBuffer: 80, valFraction: 0.15, seed: 4 };
    const epoch = async (e: number) => {
      const ids: string[] = [];
      for await (const b of trainBatches(data, o, e)) ids.push(...b.map((x) => x.userId));
      return ids;
    };
    const e0 = await epoch(0);
    const want = world.examples.map((x) => x.userId).filter((id) => !isValidationUser(id, 0.15));
    expect([...e0].sort()).toEqual([...want].sort());
    expect(await epoch(0)).toEqual(e0);
    expect(await epoch(1)).not.toEqual(e0);
    expect(e0).not.toEqual(want);
  });

  it('splits batches across workers into contiguous parts', () => {
    expect(splitRanges(10, 3)).toEqual([[0, 4], [4, 7], [7, 10]]);
    expect(splitRanges(1, 2)).toEqual([[0, 1]]);
  });

  it('applies Adam like the textbook formula', () => {
    const adam = new FlatAdam(2);
    const w = Float32Array.from([1, -1]);
    adam.apply(w, Float32Array.from([0.5, -2]), 0.1);
    // First step: m_hat = g, v_hat = g^2, so each weight moves by lr * sign(g).
    expect(w[0]).toBeCloseTo(0.9, 5);
    expect(w[1]).toBeCloseTo(-0.9, 5);
  });
});

describe('training', () => {
  let straight: Awaited<ReturnType<typeof train>>;

  it('trains, lowers the loss and writes manifest, weights, loss.svg and train-log.json', async () => {
    const out = join(root, 'straight');
    straight = await train({ ...base, out, epochs: 3, patience: 3 });
    const h = straight.history;
    expect(h.length).toBe(3);
    expect(h[2]!.train.main).toBeLessThan(h[0]!.train.main);
    expect(h[2]!.val!.main).toBeLessThan(h[0]!.val!.main);
    expect(h[1]!.lr).toBeCloseTo(3e-3 * 0.8, 10);
    const m = await readManifest(out);
    expect(m.featureId).toMatch(/^aetn-aetn-/);
    expect(m.variant).toBe('aetn');
    expect(m.backend).toBe('wasm');
    expect(m.vocab.hash).toBe(world.vocab.hash);
    expect((m.config as { dModel: number }).dModel).toBe(16);
    expect(m.metrics.bestEpoch).toBe(3);
    expect(existsSync(join(out, m.weights.file))).toBe(true);
    const svg = readFileSync(join(out, 'loss.svg'), 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('validation');
    expect((svg.match(/<path /g) ?? []).length).toBe(3); // step curve, train and validation epochs
    const log = JSON.parse(readFileSync(join(out, 'train-log.json'), 'utf8')) as { epochs: Array<{ train: Record<string, number>; usersPerSec: number }>; steps: number[][] };
    expect(log.epochs.length).toBe(3);
    for (const k of ['total', 'main', 'aux', 'mask', 'reg']) expect(Number.isFinite(log.epochs[0]!.train[k])).toBe(true);
    expect(log.epochs[0]!.train.mask).toBeGreaterThan(0);
    expect(log.steps.length).toBe(3 * h[0]!.steps);
  });

  it('is deterministic with a seed, and a resumed run equals an uninterrupted one', async () => {
    const out = join(root, 'resumed');
    const first = await train({ ...base, out, epochs: 1, patience: 3 });
    const again = await train({ ...base, out: join(root, 'again'), epochs: 1, patience: 3 });
    expect(again.manifest.weights.sha256).toBe(first.manifest.weights.sha256);
    expect(again.manifest.featureId).not.toBe(first.manifest.featureId);
    const other = await train({ ...base, seed: 5, out: join(root, 'other-seed'), epochs: 1, patience: 3 });
    expect(other.manifest.weights.sha256).not.toBe(first.manifest.weights.sha256);

    // Without --resume an existing model directory is refused, nothing is overwritten.
    await expect(train({ ...base, out, epochs: 3 })).rejects.toThrow(/already holds a model: pass --resume/);
    // Changed hyperparameters cannot be resumed.
    await expect(train({ ...base, lr: 1e-3, out, epochs: 3, patience: 3, resume: true })).rejects.toThrow(/lr differ/);

    const resumed = await train({ ...base, out, epochs: 3, patience: 3, resume: true });
    expect(resumed.history.map((x) => x.epoch)).toEqual([1, 2, 3]);
    expect(resumed.manifest.featureId).toBe(first.manifest.featureId);
    expect(resumed.manifest.weights.sha256).toBe(straight.manifest.weights.sha256);
  });

  it('stops early when validation L_main stops improving', async () => {
    // A vanishing learning rate leaves the weights unchanged: no epoch after the first improves.
    const r = await train({ ...base, lr: 1e-30, out: join(root, 'early'), epochs: 5, patience: 2 });
    expect(r.stoppedEarly).toBe(true);
    expect(r.history.length).toBe(3);
    expect(r.manifest.metrics.bestEpoch).toBe(1);
  });

  it('refuses bad options clearly', async () => {
    await expect(train({ ...base, out: join(root, 'bad'), epochs: 0 })).rejects.toThrow(UserError);
    await expect(train({ ...base, out: join(root, 'bad'), variant: 'bert' })).rejects.toThrow(/unknown variant 'bert'/);
    await expect(train({ ...base, out: join(root, 'bad'), resume: true })).rejects.toThrow(/holds no resume state/);
  });
});

describe('two workers', () => {
  it('compute the gradient of one worker (training mode, dropout and masks included)', async () => {
    const cfg = factory.makeConfig(world.vocab, TINY, { seqLen: 6, dateBuckets: 52 });
    const one = await startEngine({ factoryUrl: defaultFactoryUrl(), cfg, seed: 2, backend: 'wasm', workers: 1 });
    const two = await startEngine({ factoryUrl: defaultFactoryUrl(), cfg, seed: 2, backend: 'wasm', workers: 2 });
    try {
      const w = one.local.getWeights();
      await two.engine.setWeights(w);
      const batch = world.examples.slice(0, 41);
      const g1 = new Float32Array(w.length);
      const g2 = new Float32Array(w.length);
      const r1 = await one.engine.gradient(batch, 77, g1);
      const r2 = await two.engine.gradient(batch, 77, g2);
      expect(r2.n).toBe(41);
      // Relative: the total carries the retention term x retentionWeight (30), ~200 here, in float32.
      for (const k of ['total', 'main', 'aux', 'mask'] as const) expect(Math.abs(r2.losses[k] - r1.losses[k]), k).toBeLessThan(1e-5 * Math.max(1, Math.abs(r1.losses[k])));
      let num = 0;
      let den = 0;
      for (let i = 0; i < w.length; i++) {
        num = Math.max(num, Math.abs(g1[i]! - g2[i]!));
        den = Math.max(den, Math.abs(g1[i]!));
      }
      expect(den).toBeGreaterThan(0);
      expect(num / den).toBeLessThan(1e-4);
      // Another step seed draws other masks: the gradient changes (the comparison above is not vacuous).
      const g3 = new Float32Array(w.length);
      await two.engine.gradient(batch, 78, g3);
      expect(g3.some((v, i) => Math.abs(v - g2[i]!) > 1e-6)).toBe(true);
    } finally {
      await one.engine.close();
      await two.engine.close();
      await two.local.close();
    }
  });

  it('embed like one worker, in input order, bit-exact on repeat', async () => {
    const dir = join(root, 'straight');
    const users = world.examples.slice(0, 25);
    const e1 = await createEmbedder(dir, { backend: 'wasm', workers: 1 });
    const e2 = await createEmbedder(dir, { backend: 'wasm', workers: 2, chunk: 7 });
    try {
      expect(e2.dim).toBe(8);
      const a = await e1.embed(users);
      const b = await e2.embed(users);
      const c = await e2.embed(users);
      expect(b.length).toBe(25);
      for (let i = 0; i < 25; i++) {
        for (let j = 0; j < 8; j++) expect(Math.abs(a[i]![j]! - b[i]![j]!)).toBeLessThan(1e-5);
        expect(Buffer.from(b[i]!.buffer).equals(Buffer.from(c[i]!.buffer))).toBe(true);
      }
    } finally {
      await e1.close();
      await e2.close();
    }
  });
});
