// The model learns: on a small synthetic world with planted interest groups, a bounded number of
// Adam steps lowers the training and validation losses, and the user vector u predicts the groups' apps.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import type { UserExample } from '../../src/data/types.js';
import { AetnModel, defaultConfig, makeBatch, type Batch, type Variant } from '../../src/model/aetn.js';

const GROUPS = 3;
const PER_GROUP = 10;
const M = GROUPS * PER_GROUP + 6; // 6 apps everybody might have

/** Users of GROUPS latent interests: retention and installs mostly from their group's apps. */
function world(n: number, seed: number): { users: UserExample[]; group: number[] } {
  let s = seed;
  const rnd = (k: number) => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return (s >>> 8) % k;
  };
  const group: number[] = [];
  const users = Array.from({ length: n }, (_, u) => {
    const g = u % GROUPS;
    group.push(g);
    const own = () => g * PER_GROUP + rnd(PER_GROUP);
    const ret = new Set<number>();
    while (ret.size < 5) ret.add(own());
    ret.add(GROUPS * PER_GROUP + rnd(6));
    const ni = 3 + rnd(5);
    const installs = Int32Array.from({ length: ni }, () => (rnd(5) === 0 ? GROUPS * PER_GROUP + rnd(6) : own()));
    const installDates = Int32Array.from({ length: ni }, (_, i) => ni - 1 - i);
    const nu = rnd(3);
    return {
      userId: `w${seed}-${u}`,
      retention: Int32Array.from(ret).sort(),
      installs,
      installDates,
      installTimes: new Float64Array(ni),
      uninstalls: Int32Array.from({ length: nu }, () => rnd(M)),
      uninstallDates: Int32Array.from({ length: nu }, () => rnd(4)),
      uninstallTimes: new Float64Array(nu),
      lastActiveMs: 0,
    };
  });
  return { users, group };
}

function config(variant: Variant) {
  return defaultConfig({
    variant,
    numApps: M,
    appCategory: Array.from({ length: M }, (_, i) => (i < GROUPS * PER_GROUP ? Math.floor(i / 5) : 6)),
    dModel: 16,
    dFf: 32,
    heads: 2,
    dEmb: 8,
    aeHidden: 8,
    seqLen: 6,
    dateBuckets: 8,
  });
}

function scalar(f: () => tf.Scalar): number {
  return tf.tidy(() => f().dataSync()[0]);
}

/** Share of each user's top-5 reconstructed retention apps that belong to the user's own group. */
function groupPrecisionAt5(model: AetnModel, batch: Batch, group: number[]): number {
  const logits = tf.tidy(() => model.forward(batch, false).retLogits.arraySync() as number[][]);
  let hits = 0;
  logits.forEach((row, u) => {
    const top = row.map((z, app) => [z, app]).sort((a, b) => b[0] - a[0]).slice(0, 5);
    for (const [, app] of top) if (Math.floor(app / PER_GROUP) === group[u]) hits++;
  });
  return hits / (5 * logits.length);
}

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('AETN learns on a synthetic world', () => {
  for (const variant of ['aetn', 'dae'] as const) {
    it(`${variant}: loss falls within 40 Adam steps and u reconstructs the planted interests`, async () => {
      const cfg = config(variant);
      const model = new AetnModel(cfg, 1);
      const train = world(60, 1);
      const valid = world(30, 2);
      const vBatch = makeBatch(valid.users, cfg, { training: false, seed: 0 });
      const firstBatch = makeBatch(train.users, cfg, { training: true, seed: 0 });
      const trainStart = scalar(() => model.losses(firstBatch, true).total);
      const validStart = scalar(() => model.losses(vBatch, false).main);
      const precStart = groupPrecisionAt5(model, vBatch, valid.group);
      const opt = tf.train.adam(0.01);
      let last = trainStart;
      for (let step = 0; step < 40; step++) {
        const batch = step === 0 ? firstBatch : makeBatch(train.users, cfg, { training: true, seed: step });
        const cost = opt.minimize(() => model.losses(batch, true).total, true, model.variables);
        last = cost!.dataSync()[0];
        cost!.dispose();
        batch.dispose();
        await new Promise((r) => setImmediate(r)); // keep vitest's worker RPC responsive
      }
      const validEnd = scalar(() => model.losses(vBatch, false).main);
      const precEnd = groupPrecisionAt5(model, vBatch, valid.group);
      expect(Number.isFinite(last)).toBe(true);
      expect(last).toBeLessThan(0.6 * trainStart);
      expect(validEnd).toBeLessThan(0.75 * validStart);
      // From u alone the model now reconstructs held-out users' interests: their top-5 predicted apps
      // come mostly from their own group (chance: 10 of 36 apps).
      expect(precEnd, `precision@5 ${precStart} -> ${precEnd}`).toBeGreaterThan(0.6);
      expect(precEnd).toBeGreaterThan(precStart + 0.2);
      opt.dispose();
      vBatch.dispose();
      model.dispose();
    }, 300_000);
  }
});
