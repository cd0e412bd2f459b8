// The comparison lines of the report: the gap between two Test #1 rows against their spreads.
import { describe, expect, it } from 'vitest';
import type { EvalResults, Test1Row } from '../../src/eval/evaluate.js';
import { gapLine, orderingFindings, pairedGap } from '../../src/eval/report.js';

const row = (model: string, mean: number, std: number): Test1Row => ({ model, perCategory: [], average: { mean, std, min: mean, max: mean, n: 3 }, runs: [], seconds: 0 });

/** A row with per-run AUCs for two categories (run r: [c0, c1]). */
function runsRow(model: string, perRun: [number, number][]): Test1Row {
  const runs = perRun.flatMap(([a, b], r) => [
    { category: 'c0', run: r, auc: a, validAuc: a, epochs: 1 },
    { category: 'c1', run: r, auc: b, validAuc: b, epochs: 1 },
  ]);
  const avg = perRun.map(([a, b]) => (a + b) / 2);
  const mean = avg.reduce((s, x) => s + x, 0) / avg.length;
  const std = Math.sqrt(avg.reduce((s, x) => s + (x - mean) ** 2, 0) / (avg.length - 1));
  return { model, perCategory: [], average: { mean, std, min: Math.min(...avg), max: Math.max(...avg), n: avg.length }, runs, seconds: 0 };
}

describe('pairedGap', () => {
  it('takes the spread from the per-run differences, which removes the split noise both rows share', () => {
    // Both rows swing together with the split (run averages 0.6, 0.8, 0.7 and 0.65, 0.85, 0.75 + noise);
    // each row's own spread is ~0.1, the differences are 0.05, 0.06, 0.04 -> mean 0.05, std 0.01.
    const a = runsRow('a', [[0.6, 0.6], [0.8, 0.8], [0.7, 0.7]]);
    const b = runsRow('b', [[0.55, 0.55], [0.74, 0.74], [0.66, 0.66]]);
    const g = pairedGap(a, b);
    expect(g.paired).toBe(true);
    expect(g.runs).toBe(3);
    expect(g.diff).toBeCloseTo(0.05, 10);
    expect(g.spread).toBeCloseTo(0.01, 10);
    expect(Math.hypot(a.average.std, b.average.std)).toBeGreaterThan(0.1);
    expect(gapLine(a, b, 'A', 'B')).toBe('A − B = +0.0500; spread of the difference 0.0100 (sample std of the 3 paired per-run differences; 5.0 spreads): A is ahead by more than two spreads.');
  });

  it('pairs by run number and skips undefined AUCs (a category without positives in a split)', () => {
    const a = runsRow('a', [[0.9, NaN], [0.8, 0.8], [0.7, 0.7]]);
    const b = runsRow('b', [[0.8, 0.1], [0.75, 0.75], [0.6, 0.6]]);
    const g = pairedGap(a, b);
    // run 0: a = 0.9 (c1 undefined), b = 0.45 -> 0.45; runs 1, 2: 0.05, 0.1.
    expect(g.diff).toBeCloseTo((0.45 + 0.05 + 0.1) / 3, 10);
  });
});

describe('gapLine', () => {
  it('without per-run values, falls back to the combined spread (hypot of the two) and says so', () => {
    expect(gapLine(row('a', 0.79, 0.03), row('b', 0.7, 0.04), 'A', 'B')).toBe(
      'A − B = +0.0900; spread of the difference 0.0500 (the two run-to-run spreads combined; 1.8 spreads): A is ahead by one to two spreads.',
    );
    expect(gapLine(row('a', 0.811, 0.03), row('b', 0.7, 0.04), 'A', 'B')).toMatch(/A is ahead by more than two spreads\.$/);
    expect(gapLine(row('a', 0.77, 0.03), row('b', 0.7, 0.04), 'A', 'B')).toMatch(/= \+0\.0700; .* 0\.0500 .*: A is ahead by one to two spreads\.$/);
    expect(gapLine(row('a', 0.68, 0.03), row('b', 0.7, 0.04), 'A', 'B')).toMatch(/= -0\.0200; .*: within one spread of each other\.$/);
    expect(gapLine(row('a', 0.6, 0.03), row('b', 0.7, 0.04), 'A', 'B')).toMatch(/A is behind by more than one spread\.$/);
  });
});

describe('orderingFindings', () => {
  it('with two AETN trainings and a head, compares the head with its own base and names the rows', () => {
    const rows = [
      runsRow('dae', [[0.6, 0.6], [0.62, 0.62], [0.61, 0.61]]),
      runsRow('aetn', [[0.8, 0.8], [0.82, 0.82], [0.81, 0.81]]),
      runsRow('aetn (b)', [[0.7, 0.7], [0.73, 0.73], [0.71, 0.71]]),
      runsRow('aetn (b) + realtime (served combined)', [[0.79, 0.79], [0.83, 0.83], [0.8, 0.8]]),
    ];
    const res = {
      seed: 1,
      users: 10,
      models: [
        { name: 'dae', variant: 'dae', featureId: 'f-dae', dim: 4, info: {} },
        { name: 'aetn', variant: 'aetn', featureId: 'f-a', dim: 4, info: {} },
        { name: 'aetn (b)', variant: 'aetn', featureId: 'f-b', dim: 4, info: {} },
        { name: 'aetn (b) + realtime (served combined)', variant: 'aetn+realtime', featureId: 'f-b+rt-1', dim: 8, info: {} },
      ],
      test1: { categories: [], runs: 3, split: '3:1:1', classifier: 'mlp', rows },
    } as unknown as EvalResults;
    const lines = orderingFindings(res);
    const head = lines.find((l) => l.includes('realtime'))!;
    // Against its base 'aetn (b)': +0.09, +0.10, +0.09; against the first AETN it would be -0.01.
    expect(head.startsWith('aetn (b) + realtime (served combined) − aetn (b) = +0.0933')).toBe(true);
    expect(head.endsWith('is ahead by more than two spreads.')).toBe(true);
    // A single AETN keeps the plain labels.
    const one = orderingFindings({ ...res, models: res.models.slice(0, 2), test1: { ...res.test1!, rows: rows.slice(0, 2) } });
    expect(one.some((l) => l.startsWith('AETN − DAE = +0.2000'))).toBe(true);
  });
});
