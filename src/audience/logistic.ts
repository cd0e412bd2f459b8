// L2-regularised logistic regression by Nesterov-accelerated gradient descent on standardised
// features with class-balanced weights. Full batch, fixed iteration count and zero start: the same
// data always gives the same model. Sizes here are a few thousand rows by a few hundred columns, so
// a first-order method with a step from a power-iteration estimate of the curvature converges in
// ~100 steps without a line search.
import { dot } from './linalg.js';
import { gemmRows } from './simd.js';

export interface LogisticModel {
  readonly p: number;
  /** Weights on raw (unstandardised) features and the bias: logit(x) = weights . x + bias. */
  readonly weights: Float32Array;
  readonly bias: number;
  /** Logit of row `off/p` of a raw (unstandardised) feature matrix. */
  logit(x: Float32Array, off: number): number;
}

export interface FitOptions {
  l2?: number;
  iterations?: number;
}

export function fitLogistic(x: Float32Array, y: Uint8Array, n: number, p: number, opts: FitOptions = {}): LogisticModel {
  const l2 = opts.l2 ?? 1e-3;
  const iters = opts.iterations ?? 120;
  let npos = 0;
  for (let i = 0; i < n; i++) npos += y[i]!;
  if (npos === 0 || npos === n) throw new Error('logistic regression needs both classes');
  const wPos = n / (2 * npos);
  const wNeg = n / (2 * (n - npos));

  // Standardise columns so one step size suits every feature.
  const mean = new Float64Array(p);
  const sd = new Float64Array(p);
  for (let i = 0; i < n; i++) for (let j = 0; j < p; j++) mean[j]! += x[i * p + j]!;
  for (let j = 0; j < p; j++) mean[j]! /= n;
  for (let i = 0; i < n; i++)
    for (let j = 0; j < p; j++) {
      const t = x[i * p + j]! - mean[j]!;
      sd[j]! += t * t;
    }
  const inv = new Float32Array(p);
  for (let j = 0; j < p; j++) {
    const s = Math.sqrt(sd[j]! / n);
    inv[j] = s > 1e-12 ? 1 / s : 0;
  }
  // Standardised rows in both layouts, zero-padded to multiples of 4 for the SIMD kernel: the
  // forward pass is Z·w (rows of z) and the gradient is Zᵀ·r (rows of zt); both are gemmRows.
  const pp = (p + 3) & ~3;
  const np = (n + 3) & ~3;
  const z = new Float32Array(n * pp);
  const zt = new Float32Array(pp * np);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < p; j++) {
      const v = (x[i * p + j]! - mean[j]!) * inv[j]!;
      z[i * pp + j] = v;
      zt[j * np + i] = v;
    }
  const sw = new Float64Array(n);
  for (let i = 0; i < n; i++) sw[i] = (y[i] ? wPos : wNeg) / n;
  const sv = new Float32Array(n);
  const rv = new Float32Array(np);

  // Curvature bound: 0.25 * largest eigenvalue of Z^T diag(sw) Z (power iteration), plus l2; +1 for the bias.
  const v = new Float32Array(pp).fill(1 / Math.sqrt(p));
  for (let j = p; j < pp; j++) v[j] = 0;
  let lam = 1;
  const tmp = new Float32Array(p);
  for (let it = 0; it < 12; it++) {
    gemmRows(z, n, v, 1, pp, sv);
    for (let i = 0; i < n; i++) rv[i] = sv[i]! * sw[i]!;
    gemmRows(zt, p, rv, 1, np, tmp);
    let norm = 0;
    for (let j = 0; j < p; j++) norm += tmp[j]! * tmp[j]!;
    norm = Math.sqrt(norm);
    if (norm === 0) break;
    lam = norm;
    for (let j = 0; j < p; j++) v[j] = tmp[j]! / norm;
  }
  const step = 1 / (0.25 * (lam * 1.1 + 1) + l2);

  // Nesterov: w = look-ahead point, wPrev for momentum.
  let w = new Float32Array(p);
  let wPrev = new Float32Array(p);
  let b = 0;
  let bPrev = 0;
  const look = new Float32Array(pp);
  const g = new Float32Array(p);
  for (let t = 1; t <= iters; t++) {
    const mom = (t - 1) / (t + 2);
    for (let j = 0; j < p; j++) look[j] = w[j]! + mom * (w[j]! - wPrev[j]!);
    const lb = b + mom * (b - bPrev);
    gemmRows(z, n, look, 1, pp, sv);
    let gb = 0;
    for (let i = 0; i < n; i++) {
      const pr = 1 / (1 + Math.exp(-(sv[i]! + lb)));
      const r = (pr - y[i]!) * sw[i]!;
      gb += r;
      rv[i] = r;
    }
    gemmRows(zt, p, rv, 1, np, g);
    wPrev = w;
    w = new Float32Array(p);
    for (let j = 0; j < p; j++) w[j] = look[j]! - step * (g[j]! + l2 * look[j]!);
    bPrev = b;
    b = lb - step * gb;
  }
  // Fold the standardisation into the weights: logit(x) = sum_j w_j inv_j (x_j - mean_j) + b.
  const wr = new Float32Array(p);
  let br = b;
  for (let j = 0; j < p; j++) {
    wr[j] = w[j]! * inv[j]!;
    br -= wr[j]! * mean[j]!;
  }
  return { p, weights: wr, bias: br, logit: (xx, off) => dot(xx, off, wr, 0, p) + br };
}

/** ROC AUC with ties counted half (Mann-Whitney). */
export function auc(scores: ArrayLike<number>, labels: ArrayLike<number>): number {
  const idx = Array.from({ length: scores.length }, (_, i) => i).sort((a, b) => scores[a]! - scores[b]!);
  let rankSumPos = 0;
  let npos = 0;
  for (let i = 0; i < idx.length; ) {
    let j = i;
    while (j + 1 < idx.length && scores[idx[j + 1]!] === scores[idx[i]!]) j++;
    const avgRank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) if (labels[idx[k]!]) {
      rankSumPos += avgRank;
      npos++;
    }
    i = j + 1;
  }
  const nneg = scores.length - npos;
  if (npos === 0 || nneg === 0) return NaN;
  return (rankSumPos - (npos * (npos + 1)) / 2) / (npos * nneg);
}
