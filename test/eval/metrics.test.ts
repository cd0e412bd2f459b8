import { describe, expect, it } from 'vitest';
import { coverageRate, meanStd, overlapRate, precisionAtN, recallAtN, rocAuc } from '../../src/eval/metrics.js';
import { Rng } from '../../src/util/random.js';

/** The definition itself: compare every positive with every negative, ties worth one half. */
function pairwiseAuc(s: number[], y: number[]): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < s.length; i++)
    for (let j = 0; j < s.length; j++)
      if (y[i] === 1 && y[j] === 0) {
        den++;
        num += s[i] > s[j] ? 1 : s[i] === s[j] ? 0.5 : 0;
      }
  return num / den;
}

describe('rocAuc', () => {
  it('matches hand-worked examples', () => {
    // 4 pairs (pos 0.35, 0.8 vs neg 0.1, 0.4): 0.35>0.1, 0.35<0.4, 0.8>both -> 3/4.
    expect(rocAuc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])).toBeCloseTo(0.75, 12);
    expect(rocAuc([1, 2, 3, 4], [0, 0, 1, 1])).toBe(1);
    expect(rocAuc([4, 3, 2, 1], [0, 0, 1, 1])).toBe(0);
  });

  it('counts ties as one half (average ranks)', () => {
    expect(rocAuc([0.5, 0.5], [1, 0])).toBe(0.5);
    // pos {2,3} vs neg {1,2}: 1 + 0.5 + 1 + 1 = 3.5 of 4.
    expect(rocAuc([1, 2, 2, 3], [0, 1, 0, 1])).toBeCloseTo(0.875, 12);
    // A constant scorer knows nothing.
    expect(rocAuc([7, 7, 7, 7, 7], [1, 0, 0, 1, 0])).toBe(0.5);
  });

  it('agrees with the pairwise definition on random inputs with many ties', () => {
    const rng = new Rng(3);
    for (let t = 0; t < 20; t++) {
      const n = 5 + rng.int(60);
      const s = Array.from({ length: n }, () => rng.int(6));
      const y = Array.from({ length: n }, (_, i) => (i === 0 ? 1 : i === 1 ? 0 : rng.next() < 0.3 ? 1 : 0));
      expect(rocAuc(s, y)).toBeCloseTo(pairwiseAuc(s, y), 12);
    }
  });

  it('is NaN when a class is missing and rejects bad input', () => {
    expect(rocAuc([1, 2], [1, 1])).toBeNaN();
    expect(rocAuc([1, 2], [0, 0])).toBeNaN();
    expect(() => rocAuc([1, 2], [0])).toThrow(/labels/);
    expect(() => rocAuc([1, Number.NaN], [0, 1])).toThrow(/NaN/);
  });
});

describe('recall@N and precision@N of a hidden set', () => {
  const ranked = ['a', 'b', 'c', 'd', 'e'];
  const hidden = new Set(['b', 'd', 'x']);
  it('counts hits in the first N', () => {
    expect(recallAtN(ranked, hidden, 1)).toBe(0);
    expect(recallAtN(ranked, hidden, 2)).toBeCloseTo(1 / 3, 12);
    expect(recallAtN(ranked, hidden, 4)).toBeCloseTo(2 / 3, 12);
    expect(precisionAtN(ranked, hidden, 2)).toBe(0.5);
    expect(precisionAtN(ranked, hidden, 4)).toBe(0.5);
    expect(precisionAtN(ranked, hidden, 3)).toBeCloseTo(1 / 3, 12);
  });
  it('judges a short audience on what it returned', () => {
    expect(recallAtN(ranked, hidden, 10)).toBeCloseTo(2 / 3, 12);
    expect(precisionAtN(ranked, hidden, 10)).toBeCloseTo(2 / 5, 12);
    expect(precisionAtN([], hidden, 10)).toBeNaN();
    expect(recallAtN(ranked, new Set<string>(), 3)).toBeNaN();
  });
});

describe('app overlap rate', () => {
  it('is |A∩B|/|A∪B| and symmetric', () => {
    expect(overlapRate([1, 2, 3], [2, 3, 4])).toBe(0.5);
    expect(overlapRate([2, 3, 4], [1, 2, 3])).toBe(0.5);
    expect(overlapRate([1, 2], [1, 2])).toBe(1);
    expect(overlapRate([1, 2], [3])).toBe(0);
    expect(overlapRate([], [3])).toBe(0);
    expect(overlapRate([], [])).toBeNaN();
    // Repeated installs of one app count once.
    expect(overlapRate([5, 5, 6], [5])).toBe(0.5);
  });
  it('coverage is |A∩B|/|A|', () => {
    expect(coverageRate([1, 2, 3], [2, 3, 4])).toBeCloseTo(2 / 3, 12);
    expect(coverageRate([], [1])).toBeNaN();
  });
});

describe('meanStd', () => {
  it('gives mean, sample std, range and ignores NaN runs', () => {
    const s = meanStd([1, 2, 3, 4, Number.NaN]);
    expect(s.mean).toBe(2.5);
    expect(s.std).toBeCloseTo(Math.sqrt(5 / 3), 12);
    expect([s.min, s.max, s.n]).toEqual([1, 4, 4]);
    expect(meanStd([0.7]).std).toBe(0);
    expect(meanStd([]).mean).toBeNaN();
  });
});
