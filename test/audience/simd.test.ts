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

describe('gemmRows', () => {
  it('is available on this Node (WebAssembly SIMD)', () => {
    expect(simdAvailable()).toBe(true);
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
