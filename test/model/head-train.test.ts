// Training the realtime head on a synthetic world where the next installs follow from the recent
// ones. Runs on wasm (the product's default backend; the cpu backend gives the same losses here but
// is ~3x slower), and checks that wasm and cpu agree on the head's forward pass.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../src/model/backend.js';
import { RealtimeHead, defaultHeadConfig, type HeadEvent, type RealtimeHeadConfig } from '../../src/model/realtime-head.js';
import { trainHead, type HeadTrainResult } from '../../src/model/train-head.js';
import { MIN, T0, DAY, cosine, makeWorld, sourceOf, type World, tfjsVectors, maxAbsDiff } from './head-fixtures.js';

const vectors = (head: RealtimeHead, users: HeadEvent[][], nowMs: number) => tfjsVectors(head, users.map((events) => ({ events })), nowMs);

const NOW = T0 + 60 * DAY;
const ev = (app: number, minutesAgo: number, type: 1 | 2 = 1): HeadEvent => ({ app, type, timestampMs: NOW - minutesAgo * MIN });

function tinyCfg(world: { numApps: number; appDim: number }, over: Partial<RealtimeHeadConfig> = {}): RealtimeHeadConfig {
  return defaultHeadConfig({ numApps: world.numApps, appDim: world.appDim, dModel: 16, heads: 2, dFf: 32, maxEvents: 8, outDim: 12, recentK: 3, dropout: 0.05, ...over });
}



const TRAIN = { epochs: 4, batchSize: 32, lr: 1e-2, cutsPerUser: 3, nextK: 3, valPercent: 20, seed: 5, progress: false, maskWindowMs: 10 * MIN } as const;

describe('training on a synthetic world', () => {
  let world: World;
  let result: HeadTrainResult;
  beforeAll(async () => {
    await initBackend('wasm');
    world = makeWorld({ users: 400, seed: 11 });
    result = await trainHead(sourceOf(world.users), world.appMatrix, tinyCfg(world), TRAIN);
  }, 120_000);
  afterAll(() => result?.head.dispose());

  test('the loss falls and recall@10 of next installs beats the popularity baseline', () => {
    const h = result.history;
    const m = result.metrics;
    expect(h).toHaveLength(4);
    // Untrained, the head scores by the log-popularity bias alone: at most about log(M).
    expect(m.initialLoss).toBeLessThan(Math.log(world.numApps) + 0.1);
    expect(m.initialLoss).toBeGreaterThan(Math.log(world.numApps) - 1);
    expect(h[3]!.trainLoss).toBeLessThan(m.initialLoss - 0.4);
    expect(h[3]!.valLoss).toBeLessThan(m.initialLoss - 0.6);
    expect(h[3]!.valLoss).toBeLessThan(h[0]!.valLoss);
    expect(m.valSamples).toBeGreaterThan(40);
    expect(m.recallAt10).toBeGreaterThan(m.popularityRecallAt10 + 0.2);
  });

  test('the most recent events matter: three camera installs now pull the vector toward camera users', () => {
    const head = result.head;
    const camera = [0, 1, 2, 3, 4]; // cluster 0
    const games = [30, 31, 32, 33, 34, 35]; // cluster 3
    // A long game history, the last of it three weeks ago.
    const history = games.map((a, i) => ev(a, (21 + i) * 24 * 60));
    const before = vectors(head, [history], NOW)[0]!;
    const after = vectors(head, [[...history, ev(camera[0]!, 9), ev(camera[1]!, 5), ev(camera[2]!, 2)]], NOW)[0]!;
    // Camera users: a recent camera session over different older histories.
    const camUsers = [5, 10, 20, 40, 50].map((other, i) => [ev(other, 9000), ev(other + 1, 8000), ev(camera[(i + 1) % 5]!, 30), ev(camera[(i + 3) % 5]!, 10)]);
    const camVecs = vectors(head, camUsers, NOW);
    const mean = new Float32Array(head.cfg.outDim);
    for (const v of camVecs) v.forEach((x, j) => (mean[j]! += x / camVecs.length));
    expect(cosine(after, mean)).toBeGreaterThan(cosine(before, mean) + 0.2);
    // And the head ranks the other camera apps higher after the burst.
    const cameraScore = (s: Float32Array) =>
      tf.tidy(() => {
        const { items, bias } = head.itemSide();
        const l = tf.add(tf.matMul(tf.tensor2d(s, [1, s.length]), items, false, true), bias).dataSync() as Float32Array;
        return (l[3]! + l[4]!) / 2;
      });
    expect(cameraScore(after)).toBeGreaterThan(cameraScore(before));
  });

  test('wasm and cpu agree on the forward pass', async () => {
    const users = [[ev(1, 3), ev(2, 1)], [ev(40, 100), ev(41, 50, 2), ev(12, 9)], []];
    const onWasm = vectors(result.head, users, NOW);
    await initBackend('cpu');
    try {
      const onCpu = vectors(result.head, users, NOW);
      onCpu.forEach((v, i) => expect(maxAbsDiff(v, onWasm[i]!)).toBeLessThan(1e-5));
    } finally {
      await initBackend('wasm');
    }
  });

  test('training is deterministic for a seed', async () => {
    const small = world.users.slice(0, 80);
    const opts = { ...TRAIN, epochs: 1, seed: 9, valPercent: 10 };
    const a = await trainHead(sourceOf(small), world.appMatrix, tinyCfg(world, { dropout: 0.1 }), opts);
    const b = await trainHead(sourceOf(small), world.appMatrix, tinyCfg(world, { dropout: 0.1 }), opts);
    expect(a.history[0]!.trainLoss).toBe(b.history[0]!.trainLoss);
    a.head.variables.forEach((v, i) => expect(maxAbsDiff(v.dataSync() as Float32Array, b.head.variables[i]!.dataSync() as Float32Array)).toBe(0));
    const c = await trainHead(sourceOf(small), world.appMatrix, tinyCfg(world, { dropout: 0.1 }), { ...opts, seed: 10 });
    expect(c.history[0]!.trainLoss).not.toBe(a.history[0]!.trainLoss);
    for (const r of [a, b, c]) r.head.dispose();
  });

  test('sampled softmax (batch targets + uniform negatives) trains too', async () => {
    const r = await trainHead(sourceOf(world.users.slice(0, 200)), world.appMatrix, tinyCfg(world), { ...TRAIN, epochs: 2, negatives: 20 });
    expect(r.history[1]!.trainLoss).toBeLessThan(r.metrics.initialLoss - 0.2);
    expect(r.metrics.recallAt10).toBeGreaterThan(r.metrics.popularityRecallAt10);
    r.head.dispose();
  });
});
