// Synthetic user vectors and exact top-k search shared by the index and engine benchmarks.
import { mulberry32 } from '../src/util/random.js';

/**
 * Users grouped by interest, the way embeddings of real users look: Zipf-sized clusters, and within
 * a cluster variation along a few shared latent directions (low intrinsic dimension) plus a little
 * isotropic noise, each row normalised to unit length. The clusters and latent directions depend on
 * (dim, clusters) only, so data (seed 1) and queries (seed 2) share them. (Isotropic noise alone
 * would make every point's neighbours near-random, a case no ANN index and no real embedding space
 * resembles.)
 */
export function makeClusteredVectors(n: number, dim: number, seed: number, clusters = 1000, latent = 16): Float32Array {
  const struct = mulberry32(12345);
  const gs = () => Math.sqrt(-2 * Math.log(struct() + 1e-12)) * Math.cos(2 * Math.PI * struct());
  const centers = new Float32Array(clusters * dim).map(() => gs());
  const loadings = new Float32Array(dim * latent).map(() => gs() * 0.2);
  const r = mulberry32(seed);
  const g = () => Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
  const w = Array.from({ length: clusters }, (_, i) => 1 / (i + 1) ** 0.8);
  const cum: number[] = [];
  w.reduce((s, x, i) => ((cum[i] = s + x), s + x), 0);
  const total = cum[cum.length - 1];
  const out = new Float32Array(n * dim);
  const z = new Float32Array(latent);
  for (let i = 0; i < n; i++) {
    const u = r() * total;
    let lo = 0;
    let hi = clusters - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cum[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    for (let l = 0; l < latent; l++) z[l] = g();
    let norm = 0;
    for (let j = 0; j < dim; j++) {
      let x = centers[lo * dim + j] + 0.15 * g();
      for (let l = 0; l < latent; l++) x += loadings[j * latent + l] * z[l];
      out[i * dim + j] = x;
      norm += x * x;
    }
    norm = Math.sqrt(norm);
    for (let j = 0; j < dim; j++) out[i * dim + j] /= norm;
  }
  return out;
}

/** Exact top-k by dot product: blocks of 16 queries against each row of a contiguous matrix. Row indexes, best first. */
export function exactTopK(data: Float32Array, n: number, dim: number, qs: Float32Array, nq: number, k: number): Int32Array {
  if (dim % 4 !== 0) throw new Error(`exactTopK: dim ${dim} is not a multiple of 4`);
  const out = new Int32Array(nq * k);
  const B = 16;
  const sc = new Float32Array(B);
  for (let q0 = 0; q0 < nq; q0 += B) {
    const nb = Math.min(B, nq - q0);
    const topS = new Float32Array(nb * k).fill(-Infinity);
    const topI = new Int32Array(nb * k).fill(-1);
    for (let i = 0; i < n; i++) {
      const off = i * dim;
      for (let b = 0; b < nb; b++) {
        const qo = (q0 + b) * dim;
        let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (let j = 0; j < dim; j += 4) {
          s0 += data[off + j] * qs[qo + j];
          s1 += data[off + j + 1] * qs[qo + j + 1];
          s2 += data[off + j + 2] * qs[qo + j + 2];
          s3 += data[off + j + 3] * qs[qo + j + 3];
        }
        sc[b] = s0 + s1 + s2 + s3;
      }
      for (let b = 0; b < nb; b++) {
        const s = sc[b];
        const base = b * k;
        if (s <= topS[base + k - 1]) continue;
        let p = k - 1;
        while (p > 0 && topS[base + p - 1] < s) {
          topS[base + p] = topS[base + p - 1];
          topI[base + p] = topI[base + p - 1];
          p--;
        }
        topS[base + p] = s;
        topI[base + p] = i;
      }
    }
    out.set(topI.subarray(0, nb * k), q0 * k);
  }
  return out;
}
