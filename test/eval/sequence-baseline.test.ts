// The classical sequence baseline of Test #1 and the served AETN + head combination, on hand-made
// inputs with known answers, then the sequence baseline on a generated world with and without
// in-market intent (the generator's --sequence-signal).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generate } from '../../src/data/generate.js';
import { prepare } from '../../src/data/prepare.js';
import { runEval, servedCombination } from '../../src/eval/run.js';
import { concatRows, recentCategoryCounts } from '../../src/eval/sequence-baseline.js';
import { weightedUnit } from '../../src/serve/encode.js';

const i32 = (...x: number[]) => Int32Array.from(x);

describe('recentCategoryCounts', () => {
  // apps 0,1 -> category 0; app 2 -> category 1; app 3 -> category 2
  const cat = i32(0, 0, 1, 2);
  it('counts installs and uninstalls per category inside the window, log(1 + count)', () => {
    const V = recentCategoryCounts(
      {
        installs: [i32(0, 1, 2, 3), i32()],
        installDates: [i32(9, 3, 0, 4), i32()],
        uninstalls: [i32(1, 1), i32(3)],
        uninstallDates: [i32(0, 1), i32(3)],
      },
      cat,
      3,
      4,
    );
    expect(V.length).toBe(2 * 6);
    // user 0: installs in weeks < 4: app 1 (cat 0, week 3), app 2 (cat 1, week 0); app 0 (week 9) and app 3 (week 4) are out
    expect(Array.from(V.subarray(0, 6))).toEqual([Math.fround(Math.log1p(1)), Math.fround(Math.log1p(1)), 0, Math.fround(Math.log1p(2)), 0, 0]);
    // user 1: only an uninstall of app 3 (cat 2) in week 3
    expect(Array.from(V.subarray(6, 12))).toEqual([0, 0, 0, 0, 0, Math.fround(Math.log1p(1))]);
    const one = recentCategoryCounts({ installs: [i32(1)], installDates: [i32(1)], uninstalls: [i32()], uninstallDates: [i32()] }, cat, 3, 1);
    expect(Array.from(one)).toEqual([0, 0, 0, 0, 0, 0]);
  });
  it('refuses bad input clearly', () => {
    const seq = { installs: [i32(0)], installDates: [i32(0)], uninstalls: [i32()], uninstallDates: [i32()] };
    expect(() => recentCategoryCounts(seq, cat, 3, 0)).toThrow(/recent weeks must be an integer >= 1, got 0/);
    expect(() => recentCategoryCounts(seq, cat, 0, 4)).toThrow(/no categories/);
    expect(() => recentCategoryCounts({ ...seq, installDates: [i32()] }, cat, 3, 4)).toThrow(/1 events and 0 dates/);
    expect(() => recentCategoryCounts({ ...seq, uninstalls: [] }, cat, 3, 4)).toThrow(/uninstalls holds 0 users/);
    expect(() => recentCategoryCounts({ ...seq, installs: [i32(9)] }, cat, 3, 4)).toThrow(/app 9 has no category/);
  });
  it('concatRows puts two aligned sets side by side', () => {
    expect(Array.from(concatRows(Float32Array.of(1, 2, 3, 4), 2, Float32Array.of(5, 6), 1))).toEqual([1, 2, 5, 3, 4, 6]);
    expect(() => concatRows(Float32Array.of(1, 2), 1, Float32Array.of(1, 2, 3), 1)).toThrow(/2 rows against 3/);
  });
});

describe('servedCombination (AETN + head as served)', () => {
  it('is [w_l·long/|long| ‖ w_s·short/|short|], the serving encoder row by row', () => {
    const L = Float32Array.of(3, 4, 0, 2);
    const S = Float32Array.of(10, 0, 0, 0);
    const C = servedCombination(L, 2, S, 2, { long: 0.8, short: 0.6 });
    expect(Array.from(C.subarray(0, 4)).map((x) => +x.toFixed(6))).toEqual([0.48, 0.64, 0.6, 0]);
    // a zero short part stays zero; the long part is still unit length times its weight
    expect(Array.from(C.subarray(4, 8)).map((x) => +x.toFixed(6))).toEqual([0, 0.8, 0, 0]);
    for (let i = 0; i < 2; i++) {
      expect(Array.from(C.subarray(i * 4, i * 4 + 2))).toEqual(Array.from(weightedUnit(L.subarray(i * 2, i * 2 + 2), 0.8)));
    }
    expect(() => servedCombination(L, 2, Float32Array.of(1, 2), 2, { long: 1, short: 1 })).toThrow(/2 long vectors against 1 short/);
  });
});

describe('the sequence baseline on generated worlds', () => {
  const dir = mkdtempSync(join(tmpdir(), 'aetn-seqbase-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function recentAuc(signal: number): Promise<{ recent: number; svd: number; combo: number }> {
    const w = join(dir, `s${signal}`);
    await generate({ users: 2500, seed: 2, out: join(w, 'raw'), apps: 800, topics: 10, nicheScale: 100, sequenceSignal: signal, labelWeeks: 1, progress: false });
    await prepare({ input: join(w, 'raw'), out: join(w, 'prep'), shards: 2, progress: false });
    const out = join(w, 'out', 'r.md');
    await runEval({
      data: join(w, 'prep'),
      models: [],
      out,
      seed: 1,
      runs: 1,
      folds: 2,
      batchSize: 1000,
      overlapSample: 100,
      test2Classifier: 'gbdt',
      gbdtTrees: 5,
      mlpHidden: 16,
      baselineDim: 0,
      skip: ['test2', 'audience', 'overlap'],
      serving: false,
      protocol: 'paper',
      recentWeeks: 4,
      command: 'test',
    });
    const j = JSON.parse(readFileSync(out.replace(/\.md$/, '.json'), 'utf8'));
    const avg = (name: string) => j.results.test1.rows.find((r: { model: string }) => r.model === name).average.mean as number;
    expect(j.results.models.map((m: { name: string }) => m.name)).toEqual([
      'activity (classical)',
      'TF-IDF + SVD (classical)',
      'recent events by category (classical)',
      'TF-IDF + SVD ‖ recent events (classical)',
    ]);
    return { recent: avg('recent events by category (classical)'), svd: avg('TF-IDF + SVD (classical)'), combo: avg('TF-IDF + SVD ‖ recent events (classical)') };
  }

  it('predicts next-week adoption from recent behaviour when the world plants in-market intent, and much less in the control', async () => {
    const signal = await recentAuc(1);
    const control = await recentAuc(0);
    console.log('Test #1 average AUC, signal 1 / control 0:', JSON.stringify({ signal, control }));
    expect(signal.recent).toBeGreaterThan(0.7);
    expect(signal.recent).toBeGreaterThan(control.recent + 0.1);
    // with intent the two halves add up: retention and recent sequences together beat retention alone
    expect(signal.combo).toBeGreaterThan(signal.svd);
  }, 900_000);
});
