import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, truncateSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../../src/model/backend.js';
import { checkLayout, configFromJson, configToJson, loadCheckpoint, newFeatureId, readManifest, saveCheckpoint, type ManifestDraft } from '../../src/model/checkpoint.js';
import { createEmbedder } from '../../src/model/infer.js';
import { LocalEngine } from '../../src/model/train-engine.js';
import { factory } from '../../src/model/train-model.js';
import { UserError } from '../../src/util/errors.js';
import { tinyWorld } from './train-fixture.js';

const TINY = { dModel: 16, dFf: 32, heads: 2, encLayers: 1, decLayers: 1, dEmb: 8, seqLen: 6, aeHidden: 8 };
const { vocab, examples } = tinyWorld(40, 30, 5);

let root: string;
let modelDir: string;
let weights: Float32Array;

function draft(cfg: unknown): ManifestDraft {
  return {
    featureId: newFeatureId('aetn'),
    modelKind: 'aetn',
    variant: 'aetn',
    config: configToJson(cfg),
    dim: 8,
    vocab: { hash: vocab.hash, numApps: vocab.apps.length, numCategories: vocab.categories.length },
    backend: 'wasm',
    workers: 1,
    seed: 3,
    createdAt: new Date().toISOString(),
    updatedAt: new Date().toISOString(),
    metrics: {},
    training: {},
  };
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'aetn-ckpt-'));
  await initBackend('wasm');
  const cfg = factory.makeConfig(vocab, { ...TINY }, {});
  const engine = LocalEngine.create(factory, cfg, 3);
  // Train one step so the weights are not just the seeded initialisation.
  const g = new Float32Array(engine.numParams);
  engine.gradientSync(examples, 1, g);
  weights = engine.getWeights().map((w, i) => w - 0.01 * g[i]!);
  modelDir = join(root, 'model');
  await saveCheckpoint(modelDir, draft(cfg), engine.layout, weights);
  await engine.close();
});

afterAll(() => rmSync(root, { recursive: true, force: true }));

function copyModel(name: string): string {
  const dir = join(root, name);
  rmSync(dir, { recursive: true, force: true });
  const files = readdirSync(modelDir);
  mkdirSync(dir, { recursive: true });
  for (const f of files) {
    const dst = join(dir, f);
    if (f.endsWith('.tmp')) continue;
    writeFileSync(dst, readFileSync(join(modelDir, f)), { flag: 'w' });
  }
  return dir;
}

describe('checkpoint', () => {
  it('round-trips weights bit-exactly and keeps the config', async () => {
    const loaded = await loadCheckpoint(modelDir, { vocabHash: vocab.hash });
    expect(loaded.weights.length).toBe(weights.length);
    expect(Buffer.from(loaded.weights.buffer).equals(Buffer.from(weights.buffer))).toBe(true);
    const cfg = configFromJson<{ appCategory: Int32Array; dModel: number }>(loaded.manifest.config);
    expect(cfg.appCategory).toBeInstanceOf(Int32Array);
    expect(Array.from(cfg.appCategory)).toEqual(vocab.apps.map((a) => a.category));
    expect(cfg.dModel).toBe(16);
    expect(loaded.manifest.featureId).toMatch(/^aetn-aetn-\d{8}-[0-9a-f]{8}$/);
    expect(loaded.layout.map((l) => l.name)).toContain('W_app');
    // Loading into a model built from the stored config reproduces the same weights.
    const engine = LocalEngine.create(factory, cfg, 99);
    checkLayout(loaded.layout, engine.layout, modelDir);
    engine.setWeightsSync(loaded.weights);
    expect(Buffer.from(engine.getWeights().buffer).equals(Buffer.from(weights.buffer))).toBe(true);
    await engine.close();
    // Atomic writes leave no temp files behind.
    expect(readdirSync(modelDir).filter((f) => f.includes('.tmp'))).toEqual([]);
  });

  it('gives every model a new feature id', () => {
    const ids = new Set(Array.from({ length: 50 }, () => newFeatureId('dae')));
    expect(ids.size).toBe(50);
  });

  it('refuses another vocabulary', async () => {
    const err = await loadCheckpoint(modelDir, { vocabHash: 'other-hash' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(/trained on vocabulary .* but the data uses vocabulary other-hash/);
    await expect(createEmbedder(modelDir, { backend: 'wasm', workers: 1, vocabHash: 'other-hash' })).rejects.toThrow(/vocabulary/);
  });

  it('refuses a truncated weights file', async () => {
    const dir = copyModel('truncated');
    const m = await readManifest(dir);
    const path = join(dir, m.weights.file);
    truncateSync(path, statSync(path).size - 10);
    await expect(loadCheckpoint(dir)).rejects.toThrow(UserError);
    await expect(loadCheckpoint(dir)).rejects.toThrow(/truncated or damaged/);
  });

  it('refuses a corrupted byte', async () => {
    const dir = copyModel('corrupt');
    const m = await readManifest(dir);
    const path = join(dir, m.weights.file);
    const buf = readFileSync(path);
    buf[buf.length - 7] ^= 0x40;
    writeFileSync(path, buf);
    await expect(loadCheckpoint(dir)).rejects.toThrow(/corrupt: sha256/);
  });

  it('refuses a missing or unreadable manifest and a missing weights file', async () => {
    await expect(loadCheckpoint(join(root, 'nothing-here'))).rejects.toThrow(/no model checkpoint .*manifest.json missing/);
    const dir = copyModel('badjson');
    writeFileSync(join(dir, 'manifest.json'), '{"format": "aetn-checkpoint", ');
    await expect(loadCheckpoint(dir)).rejects.toThrow(/not valid JSON/);
    const dir2 = copyModel('noweights');
    const m = await readManifest(dir2);
    rmSync(join(dir2, m.weights.file));
    await expect(loadCheckpoint(dir2)).rejects.toThrow(/incomplete: .* is missing/);
  });

  it('refuses weights that do not fit the model of the config', async () => {
    const loaded = await loadCheckpoint(modelDir);
    const cfg = factory.makeConfig(vocab, { ...TINY, dModel: 8, dFf: 16 }, {});
    const engine = LocalEngine.create(factory, cfg, 1);
    expect(() => checkLayout(loaded.layout, engine.layout, modelDir)).toThrow(/does not fit the model/);
    await engine.close();
  });

  it('loads on wasm and cpu with matching embeddings, bit-exact on repeat', async () => {
    const users = examples.slice(0, 12);
    const w = await createEmbedder(modelDir, { backend: 'wasm', workers: 1 });
    const v1 = await w.embed(users);
    const v2 = await w.embed(users);
    await w.close();
    expect(v1.length).toBe(12);
    expect(v1[0]!.length).toBe(8);
    for (let i = 0; i < v1.length; i++) expect(Buffer.from(v1[i]!.buffer).equals(Buffer.from(v2[i]!.buffer))).toBe(true);
    const c = await createEmbedder(modelDir, { backend: 'cpu', workers: 1 });
    const vc = await c.embed(users);
    await c.close();
    let maxDiff = 0;
    for (let i = 0; i < v1.length; i++) for (let j = 0; j < 8; j++) maxDiff = Math.max(maxDiff, Math.abs(v1[i]![j]! - vc[i]![j]!));
    // Stated tolerance: 1e-4 absolute on tanh outputs in [-1, 1] (float32 kernels differ in order).
    expect(maxDiff).toBeLessThan(1e-4);
    // Not trivially equal: the users get different vectors.
    expect(v1[0]!.some((x, j) => Math.abs(x - v1[1]![j]!) > 1e-3)).toBe(true);
  });
});
