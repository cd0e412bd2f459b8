// Training length in steps: small datasets get a smaller batch, a larger learning rate and more
// passes per epoch, so that a default `aetn train` takes enough Adam steps; large ones keep the
// paper's batch 1000 at lr 1e-4 and one pass per epoch.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../../src/model/backend.js';
import { readManifest } from '../../src/model/checkpoint.js';
import { DEFAULT_MIN_EPOCH_STEPS, train, trainingSchedule } from '../../src/model/train.js';
import { tinyTrainData, tinyWorld } from './train-fixture.js';

describe('trainingSchedule', () => {
  it("keeps the paper's schedule on large data", () => {
    expect(trainingSchedule({ trainUsers: 1_000_000, epochs: 10 })).toEqual({ batchSize: 1000, lr: 1e-4, minEpochSteps: DEFAULT_MIN_EPOCH_STEPS, passesPerEpoch: 1 });
    expect(trainingSchedule({ trainUsers: 32_000, epochs: 10 })).toMatchObject({ batchSize: 1000, lr: 1e-4, passesPerEpoch: 1 });
    // Unknown size (a stream without a count): the paper's.
    expect(trainingSchedule({ epochs: 10 })).toMatchObject({ batchSize: 1000, lr: 1e-4, passesPerEpoch: 1 });
  });

  it('shrinks the batch, raises the learning rate and adds passes on small data', () => {
    // 909 training users (957 less 5% validation): one step per epoch at batch 1000.
    const s = trainingSchedule({ trainUsers: 909, epochs: 10 });
    expect(s.batchSize).toBe(32);
    expect(s.lr).toBe(1e-3);
    expect(s.passesPerEpoch).toBe(2); // 29 steps a pass < 30
    expect(s.passesPerEpoch * Math.ceil(909 / s.batchSize)).toBeGreaterThanOrEqual(DEFAULT_MIN_EPOCH_STEPS);
    const mid = trainingSchedule({ trainUsers: 10_000, epochs: 10 });
    expect(mid.batchSize).toBe(312);
    expect(mid.lr).toBeCloseTo((1e-4 * 1000) / 312, 12);
    expect(mid.passesPerEpoch).toBe(1);
  });

  it('honours what the user set', () => {
    // A given batch: the epochs as asked (no extra passes) unless --min-epoch-steps is given too.
    expect(trainingSchedule({ trainUsers: 909, epochs: 10, batchSize: 1000 })).toEqual({ batchSize: 1000, lr: 1e-4, minEpochSteps: 1, passesPerEpoch: 1 });
    expect(trainingSchedule({ trainUsers: 909, epochs: 10, batchSize: 1000, minEpochSteps: 5 }).passesPerEpoch).toBe(5);
    expect(trainingSchedule({ trainUsers: 909, epochs: 10, lr: 5e-4 }).lr).toBe(5e-4);
    expect(trainingSchedule({ trainUsers: 909, epochs: 1, minEpochSteps: 100 }).passesPerEpoch).toBe(4);
  });
});

describe('train with extra passes', () => {
  const TINY = { dModel: 16, dFf: 32, heads: 2, encLayers: 1, decLayers: 1, dEmb: 8, aeHidden: 8 };
  const world = tinyWorld(120, 30, 3);
  const data = tinyTrainData(world);
  let root: string;
  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'aetn-schedule-'));
    await initBackend('wasm');
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('takes minEpochSteps steps an epoch over several passes, each user once per pass, and records the schedule', async () => {
    const out = join(root, 'passes');
    const r = await train({ data, out, sizes: TINY, epochs: 2, batchSize: 25, minEpochSteps: 10, backend: 'wasm', workers: 1, valFraction: 0.1, seed: 2, patience: 5, silentProgress: true });
    const trainUsers = r.history[0]!.users;
    const stepsPerPass = r.history[0]!.steps / 2;
    // 2 passes x ceil(~108 / 25) = 5 steps: 10 steps an epoch, every training user twice an epoch.
    expect(r.history.map((h) => h.steps)).toEqual([2 * stepsPerPass, 2 * stepsPerPass]);
    expect(2 * stepsPerPass).toBeGreaterThanOrEqual(10);
    expect(trainUsers % 2).toBe(0);
    expect(trainUsers / 2).toBe(world.examples.length - r.history[0]!.valUsers);
    const m = await readManifest(out);
    expect(m.training).toMatchObject({ batchSize: 25, minEpochSteps: 10, passesPerEpoch: 2 });
    const log = JSON.parse(readFileSync(join(out, 'train-log.json'), 'utf8')) as { steps: unknown[] };
    expect(log.steps.length).toBe(4 * stepsPerPass);
  });

  it('refuses a bad --min-epoch-steps', async () => {
    await expect(train({ data, out: join(root, 'bad'), sizes: TINY, minEpochSteps: 0, backend: 'wasm', workers: 1, silentProgress: true })).rejects.toThrow(/--min-epoch-steps must be an integer >= 1/);
  });
});
