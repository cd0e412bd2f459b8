// End to end on the product path: generate a small world, prepare it, train a tiny AETN, then
// `trainHeadCommand` (what `aetn train --head realtime` runs) against that AETN checkpoint.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../src/model/backend.js';
import { generate } from '../../src/data/generate.js';
import { prepare } from '../../src/data/prepare.js';
import { openPrepared } from '../../src/data/prepared.js';
import { train } from '../../src/model/train.js';
import { configFromJson, loadCheckpoint } from '../../src/model/checkpoint.js';
import { AetnModel, type AetnConfig } from '../../src/model/aetn.js';
import { trainHeadCommand } from '../../src/model/train-head.js';
import { appMatrixFromAetnCheckpoint, readHeadCheckpoint } from '../../src/model/head-checkpoint.js';
import { loadHead } from '../../src/model/head-forward.js';
import { UserError } from '../../src/util/errors.js';

describe('aetn train --head realtime, end to end', () => {
  let dir: string;
  let aetnFeature: string;
  beforeAll(async () => {
    await initBackend('wasm');
    dir = await mkdtemp(join(tmpdir(), 'aetn-head-e2e-'));
    await generate({ users: 600, seed: 3, out: join(dir, 'raw'), apps: 400, topics: 8, progress: false });
    await prepare({ input: join(dir, 'raw'), out: join(dir, 'prep'), shards: 2, minInstalls: 3, progress: false });
    const r = await train({ data: join(dir, 'prep'), out: join(dir, 'aetn'), sizes: { dModel: 16, dFf: 32, heads: 2, dEmb: 8 }, epochs: 1, batchSize: 100, lr: 1e-3, workers: 1, maxStepsPerEpoch: 2, backend: 'wasm', silentProgress: true });
    aetnFeature = r.manifest.featureId;
  }, 240_000);
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('the frozen app matrix equals the AETN model\'s W_a = W_app + C[category]', async () => {
    const base = await appMatrixFromAetnCheckpoint(join(dir, 'aetn'));
    const { manifest, weights, layout } = await loadCheckpoint(join(dir, 'aetn'));
    const model = new AetnModel(configFromJson<AetnConfig>(manifest.config), 1);
    layout.forEach((l, i) => model.variables[i]!.assign(tf.tensor(weights.subarray(l.offset, l.offset + l.size), l.shape)));
    const wa = tf.tidy(() => model.appMatrix());
    const want = wa.dataSync() as Float32Array;
    expect(base.featureId).toBe(aetnFeature);
    expect([base.numApps, base.appDim]).toEqual(wa.shape);
    let max = 0;
    for (let i = 0; i < want.length; i++) max = Math.max(max, Math.abs(want[i]! - base.appMatrix[i]!));
    expect(max).toBeLessThan(1e-6);
    wa.dispose();
    // A different vocabulary is refused.
    await expect(appMatrixFromAetnCheckpoint(join(dir, 'aetn'), { vocabHash: 'other' })).rejects.toThrow(UserError);
  });

  test('trains, writes a checkpoint tied to the AETN feature, and serves through loadHead', async () => {
    const out = join(dir, 'rt');
    // The train command's flag names (--base-model, --val-fraction, --heads, ...).
    const res = await trainHeadCommand({ data: join(dir, 'prep'), baseModel: join(dir, 'aetn'), out, epochs: 1, batchSize: 128, lr: 3e-3, backend: 'wasm', dModel: 16, heads: 2, dFf: 32, maxEvents: 16, valFraction: 0.1, progress: false, quiet: true });
    expect(res.featureId).toMatch(/^rt-\d{8}-[0-9a-f]{8}$/);
    expect(res.baseFeatureId).toBe(aetnFeature);
    expect(res.history).toHaveLength(1);
    expect(Number.isFinite(res.metrics.valLoss)).toBe(true);
    const ck = await readHeadCheckpoint(out, { expectBaseFeatureId: aetnFeature });
    const base = await appMatrixFromAetnCheckpoint(join(dir, 'aetn'));
    expect(ck.manifest.baseAppMatrixSha256).toBe(base.sha256);
    const ds = await openPrepared(join(dir, 'prep'));
    expect(ck.manifest.vocabHash).toBe(ds.vocab.hash);

    const head = await loadHead(out, { backend: 'wasm', expectBaseFeatureId: aetnFeature, expectAppMatrixSha256: base.sha256 });
    expect(head.dim).toBe(64);
    const [pkg, idx] = [...head.appIndexOfPackage.entries()][5]!;
    expect(ds.vocab.apps[idx]!.packages).toContain(pkg);
    const now = Date.now();
    const v = head.embed([{ events: [{ app: idx, type: 1, timestampMs: now - 60_000 }] }, { events: [] }], now);
    expect(v).toHaveLength(2);
    expect(v[0]!.length).toBe(64);
    expect(Math.hypot(...v[0]!)).toBeCloseTo(1, 4);
    head.dispose();
    await expect(loadHead(out, { backend: 'wasm', expectBaseFeatureId: 'aetn-aetn-20200101-00000000' })).rejects.toThrow(/retrain/);
    await expect(trainHeadCommand({ data: join(dir, 'prep'), out: join(dir, 'rt2') })).rejects.toThrow(/--base-model/);
  });
});
