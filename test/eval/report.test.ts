// The comparison lines of the report: the gap between two Test #1 rows against their spreads.
import { describe, expect, it } from 'vitest';
import type { Test1Row } from '../../src/eval/evaluate.js';
import { gapLine } from '../../src/eval/report.js';

const row = (model: string, mean: number, std: number): Test1Row => ({ model, perCategory: [], average: { mean, std, min: mean, max: mean, n: 3 }, runs: [], seconds: 0 });

describe('gapLine', () => {
  it('states the gap, the combined spread (hypot of the two) and the verdict', () => {
    expect(gapLine(row('a', 0.8, 0.03), row('b', 0.7, 0.04), 'A', 'B')).toBe('A − B = +0.1000; run-to-run spread of the difference ≈ 0.0500: A is ahead by more than two spreads.');
    expect(gapLine(row('a', 0.77, 0.03), row('b', 0.7, 0.04), 'A', 'B')).toMatch(/= \+0\.0700; .* ≈ 0\.0500: A is ahead by one to two spreads\.$/);
    expect(gapLine(row('a', 0.68, 0.03), row('b', 0.7, 0.04), 'A', 'B')).toMatch(/= -0\.0200; .*: within one spread of each other\.$/);
    expect(gapLine(row('a', 0.6, 0.03), row('b', 0.7, 0.04), 'A', 'B')).toMatch(/A is behind by more than one spread\.$/);
  });
});
