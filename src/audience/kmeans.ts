// Spherical k-means (cosine) with k-means++ seeding and a fixed PRNG: deterministic for a given
// input. Used to split a seed audience into modes before searching the index, so a multi-modal
// seed set (e.g. gamers + new parents) is not averaged into a centroid that resembles neither.
import { normalizeInPlace } from './linalg.js';
import { mulberry32 } from '../util/random.js';
import { gemmRows } from './simd.js';

export interface KMeansResult {
  /** k x d, unit rows. */
  centroids: Float32Array;
  k: number;
  /** Cluster of each input row. */
  assignment: Int32Array;
  /** Rows per cluster. */
  sizes: number[];
}

/**
 * `x`: n x d unit rows. Empty clusters are dropped, so the result may have fewer than `k`.
 * `maxIter` Lloyd steps at most; stops early when no assignment changes.
 */
export function sphericalKMeans(x: Float32Array, n: number, d: number, k: number, seed: number, maxIter = 15): KMeansResult {
  k = Math.max(1, Math.min(k, n));
  const rand = mulberry32(seed);
  const c = new Float32Array(k * d);
  // k-means++ on cosine distance (1 - cos).
  const first = Math.floor(rand() * n);
  c.set(x.subarray(first * d, first * d + d), 0);
  const best = new Float64Array(n).fill(Infinity);
  const simNew = new Float32Array(n);
  for (let j = 1; j < k; j++) {
    let total = 0;
    gemmRows(x, n, c.subarray((j - 1) * d, j * d), 1, d, simNew);
    for (let r = 0; r < n; r++) {
      const dist = Math.max(0, 1 - simNew[r]!);
      if (dist < best[r]!) best[r] = dist;
      total += best[r]! * best[r]!;
    }
    let pick = 0;
    if (total > 0) {
      let t = rand() * total;
      for (pick = 0; pick < n - 1; pick++) {
        t -= best[pick]! * best[pick]!;
        if (t <= 0) break;
      }
    } else pick = Math.floor(rand() * n);
    c.set(x.subarray(pick * d, pick * d + d), j * d);
  }
  const assignment = new Int32Array(n).fill(-1);
  const sims = new Float32Array(n * k);
  for (let it = 0; it < maxIter; it++) {
    let changed = 0;
    gemmRows(x, n, c, k, d, sims);
    for (let r = 0; r < n; r++) {
      let bj = 0;
      let bs = -Infinity;
      for (let j = 0; j < k; j++) {
        const s = sims[r * k + j]!;
        if (s > bs) {
          bs = s;
          bj = j;
        }
      }
      if (assignment[r] !== bj) {
        assignment[r] = bj;
        changed++;
      }
    }
    if (changed === 0 && it > 0) break;
    c.fill(0);
    for (let r = 0; r < n; r++) {
      const o = assignment[r]! * d;
      for (let i = 0; i < d; i++) c[o + i]! += x[r * d + i]!;
    }
    for (let j = 0; j < k; j++) normalizeInPlace(c, j * d, d);
  }
  // Drop empty clusters and renumber.
  const sizes = new Array<number>(k).fill(0);
  for (let r = 0; r < n; r++) sizes[assignment[r]!]!++;
  const keep = sizes.map((s, j) => (s > 0 ? j : -1)).filter((j) => j >= 0);
  if (keep.length === k) return { centroids: c, k, assignment, sizes };
  const remap = new Int32Array(k).fill(-1);
  const out = new Float32Array(keep.length * d);
  keep.forEach((j, i) => {
    remap[j] = i;
    out.set(c.subarray(j * d, j * d + d), i * d);
  });
  for (let r = 0; r < n; r++) assignment[r] = remap[assignment[r]!]!;
  return { centroids: out, k: keep.length, assignment, sizes: keep.map((j) => sizes[j]!) };
}
