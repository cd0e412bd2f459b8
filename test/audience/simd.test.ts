// The WebAssembly SIMD kernel against plain JS dot products: same results (to float32 rounding)
// for multiples of 4 (SIMD) and other widths (JS fallback), and across calls that grow its memory.
import { describe, expect, it } from 'vitest';
import { gemmRows, simdAvailable } from '../../src/audience/simd.js';
import { dot } from '../../src/audience/linalg.js';
import { mulberry32 } from '../../src/util/random.js';

function check(n: number, R: number, d: number, seed: number): void {
  const r = mulberry32(seed);
  const x = Float32Array.from({ length: n * d }, () => r() * 2 - 1);
  const w = Float32Array.from({ length: R * d }, () => r() * 2 - 1);
  const out = new Float32Array(n * R).fill(NaN);
  gemmRows(x, n, w, R, d, out);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < R; j++) {
      const want = dot(x, i * d, w, j * d, d);
      expect(Math.abs(out[i * R + j]! - want)).toBeLessThan(1e-4 * Math.sqrt(d));
    }
}

/** The kernel's arithmetic in JS: four float32 lanes over i = l, l+4, ..., then lane0+lane1+lane2+lane3 in float32. */
function f32x4Dot(x: Float32Array, xo: number, w: Float32Array, wo: number, d: number): number {
  const acc = [0, 0, 0, 0];
  for (let i = 0; i < d; i += 4) for (let l = 0; l < 4; l++) acc[l] = Math.fround(acc[l]! + Math.fround(x[xo + i + l]! * w[wo + i + l]!));
  return Math.fround(Math.fround(Math.fround(acc[0]! + acc[1]!) + acc[2]!) + acc[3]!);
}

describe('gemmRows', () => {
  it('runs the assembled SIMD kernel for widths that are multiples of 4 (bit for bit its float32 lane sums), plain JS otherwise', () => {
    expect(simdAvailable()).toBe(true);
    const r = mulberry32(11);
    for (const d of [4, 8, 36, 128]) {
      const x = Float32Array.from({ length: 3 * d }, () => r() * 2 - 1);
      const w = Float32Array.from({ length: 2 * d }, () => r() * 2 - 1);
      const out = new Float32Array(6);
      gemmRows(x, 3, w, 2, d, out);
      for (let i = 0; i < 3; i++) for (let j = 0; j < 2; j++) expect(out[i * 2 + j]).toBe(f32x4Dot(x, i * d, w, j * d, d));
    }
    // d = 30: the JS fallback, which is dot() exactly.
    const x = Float32Array.from({ length: 30 }, () => r() * 2 - 1);
    const w = Float32Array.from({ length: 30 }, () => r() * 2 - 1);
    const out = new Float32Array(1);
    gemmRows(x, 1, w, 1, 30, out);
    expect(out[0]).toBe(Math.fround(dot(x, 0, w, 0, 30)));
  });
  it('matches JS dot products: SIMD widths, fallback widths, small and memory-growing sizes', () => {
    check(1, 1, 4, 1);
    check(7, 3, 128, 2);
    check(5, 21, 132, 3);
    check(9, 2, 30, 4); // not a multiple of 4: JS path
    check(3000, 21, 128, 5); // > 64 KiB: memory grows
    check(2, 1, 148, 6); // smaller again after growing
  });
  it('handles n = 0 without touching out', () => {
    const out = new Float32Array(2).fill(7);
    gemmRows(new Float32Array(0), 0, new Float32Array(8), 2, 4, out);
    expect(Array.from(out)).toEqual([7, 7]);
  });
});
