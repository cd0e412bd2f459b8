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
  /**
   * Columns from this index on are used as given (not centred or scaled): a sparse block whose
   * natural units already carry meaning (e.g. TF-IDF rows of unit length, scaled as a block by the
   * caller). Default p: every column is standardised.
   */
  rawFrom?: number;
}

/**
 * Class-balanced weights (each class carries half of the total) and, for standardising the p
 * columns of x [n, p], their means and inverse standard deviations (0 for a constant column).
 */
function balanceAndScale(x: Float32Array, y: Uint8Array, n: number, p: number): { wPos: number; wNeg: number; mean: Float64Array; inv: Float64Array } {
  let npos = 0;
  for (let i = 0; i < n; i++) npos += y[i]!;
  if (npos === 0 || npos === n) throw new Error('logistic regression needs both classes');
  const mean = new Float64Array(p);
  const sd = new Float64Array(p);
  for (let i = 0; i < n; i++) for (let j = 0; j < p; j++) mean[j]! += x[i * p + j]!;
  for (let j = 0; j < p; j++) mean[j]! /= n;
  for (let i = 0; i < n; i++)
    for (let j = 0; j < p; j++) {
      const t = x[i * p + j]! - mean[j]!;
      sd[j]! += t * t;
    }
  const inv = new Float64Array(p);
  for (let j = 0; j < p; j++) {
    const s = Math.sqrt(sd[j]! / n);
    inv[j] = s > 1e-12 ? 1 / s : 0;
  }
  return { wPos: n / (2 * npos), wNeg: n / (2 * (n - npos)), mean, inv };
}

export function fitLogistic(x: Float32Array, y: Uint8Array, n: number, p: number, opts: FitOptions = {}): LogisticModel {
  return fitLogisticPath(x, y, n, p, [opts.l2 ?? 1e-3], opts)[0]!;
}

/**
 * fitLogistic at several L2 penalties at once: one model per entry of `l2s`, each exactly the model
 * fitLogistic gives at that penalty (the same steps in the same float32 order), but the
 * standardisation, the transposed copy and the curvature estimate are made once, and every step's
 * forward and backward passes run for all penalties in one batched pass over the rows (the rows
 * are read, and copied to the SIMD kernel, once per step instead of once per penalty). This is
 * what a cross-validation over a penalty grid costs per fold.
 */
export function fitLogisticPath(x: Float32Array, y: Uint8Array, n: number, p: number, l2s: readonly number[], opts: Omit<FitOptions, 'l2'> = {}): LogisticModel[] {
  const L = l2s.length;
  if (L === 0) return [];
  const iters = opts.iterations ?? 120;
  // Standardise columns so one step size suits every feature (the SIMD passes run in float32).
  const bs = balanceAndScale(x, y, n, p);
  const { wPos, wNeg, mean } = bs;
  const inv = Float32Array.from(bs.inv);
  for (let j = Math.min(p, opts.rawFrom ?? p); j < p; j++) {
    mean[j] = 0;
    inv[j] = 1;
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
  const sv = new Float32Array(n * L);
  const rv = new Float32Array(np * L);

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
  rv.fill(0);
  const step = l2s.map((l2) => 1 / (0.25 * (lam * 1.1 + 1) + l2));

  // Nesterov: w = look-ahead point, wPrev for momentum; row l of each matrix is penalty l.
  let w = new Float32Array(L * p);
  let wPrev = new Float32Array(L * p);
  const b = new Float64Array(L);
  const bPrev = new Float64Array(L);
  const lb = new Float64Array(L);
  const look = new Float32Array(L * pp);
  const g = new Float32Array(p * L);
  for (let t = 1; t <= iters; t++) {
    const mom = (t - 1) / (t + 2);
    for (let l = 0; l < L; l++) {
      for (let j = 0; j < p; j++) look[l * pp + j] = w[l * p + j]! + mom * (w[l * p + j]! - wPrev[l * p + j]!);
      lb[l] = b[l]! + mom * (b[l]! - bPrev[l]!);
    }
    gemmRows(z, n, look, L, pp, sv);
    const gb = new Float64Array(L);
    for (let i = 0; i < n; i++)
      for (let l = 0; l < L; l++) {
        const pr = 1 / (1 + Math.exp(-(sv[i * L + l]! + lb[l]!)));
        const r = (pr - y[i]!) * sw[i]!;
        gb[l]! += r;
        rv[l * np + i] = r;
      }
    gemmRows(zt, p, rv, L, np, g);
    wPrev = w;
    w = new Float32Array(L * p);
    for (let l = 0; l < L; l++) {
      const l2 = l2s[l]!;
      for (let j = 0; j < p; j++) w[l * p + j] = look[l * pp + j]! - step[l]! * (g[j * L + l]! + l2 * look[l * pp + j]!);
      bPrev[l] = b[l]!;
      b[l] = lb[l]! - step[l]! * gb[l]!;
    }
  }
  // Fold the standardisation into the weights: logit(x) = sum_j w_j inv_j (x_j - mean_j) + b.
  return l2s.map((_, l) => {
    const wr = new Float32Array(p);
    let br = b[l]!;
    for (let j = 0; j < p; j++) {
      wr[j] = w[l * p + j]! * inv[j]!;
      br -= wr[j]! * mean[j]!;
    }
    return { p, weights: wr, bias: br, logit: (xx: Float32Array, off: number) => dot(xx, off, wr, 0, p) + br };
  });
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

/** Sparse rows [n, ps] in compressed form (column indices into the sparse block). */
export interface SparseRows {
  ps: number;
  ptr: Int32Array; // [n + 1]
  col: Int32Array;
  val: Float32Array;
}

export interface HybridModel {
  readonly pd: number;
  readonly ps: number;
  /** Weights on raw dense features [pd], then on the sparse columns [ps]. */
  readonly weights: Float32Array;
  readonly bias: number;
}

/** Logit of one row: dense part at xd[off..off+pd), sparse part from (cols, vals). */
export function hybridLogit(m: HybridModel, xd: Float32Array, off: number, cols: ArrayLike<number>, vals: ArrayLike<number>): number {
  let z = m.bias + (m.pd > 0 ? dot(xd, off, m.weights, 0, m.pd) : 0);
  for (let k = 0; k < cols.length; k++) z += m.weights[m.pd + cols[k]!]! * vals[k]!;
  return z;
}

/**
 * The same L2-regularised, class-balanced logistic regression as fitLogistic over rows made of a
 * dense block xd [n, pd] (standardised) and a sparse block (used as given), so that thousands of
 * sparse columns (e.g. TF-IDF over apps) cost their non-zeros rather than n x ps per step.
 * Zero start, fixed iterations, Nesterov steps from a power-iteration curvature bound.
 */
export function fitLogisticHybrid(xd: Float32Array, pd: number, sp: SparseRows | undefined, y: Uint8Array, n: number, opts: FitOptions = {}): HybridModel {
  const l2 = opts.l2 ?? 1e-3;
  const iters = opts.iterations ?? 120;
  const ps = sp?.ps ?? 0;
  const p = pd + ps;
  const { wPos, wNeg, mean, inv } = balanceAndScale(xd, y, n, pd);
  const z = new Float32Array(n * pd);
  for (let i = 0; i < n; i++) for (let j = 0; j < pd; j++) z[i * pd + j] = (xd[i * pd + j]! - mean[j]!) * inv[j]!;
  const sw = new Float64Array(n);
  for (let i = 0; i < n; i++) sw[i] = (y[i] ? wPos : wNeg) / n;
  // Z·w and Zᵀ·r over both blocks.
  const forward = (w: Float64Array, out: Float64Array) => {
    for (let i = 0; i < n; i++) {
      let s = 0;
      const o = i * pd;
      for (let j = 0; j < pd; j++) s += z[o + j]! * w[j]!;
      if (sp) for (let k = sp.ptr[i]!; k < sp.ptr[i + 1]!; k++) s += sp.val[k]! * w[pd + sp.col[k]!]!;
      out[i] = s;
    }
  };
  const backward = (r: Float64Array, out: Float64Array) => {
    out.fill(0);
    for (let i = 0; i < n; i++) {
      const ri = r[i]!;
      if (ri === 0) continue;
      const o = i * pd;
      for (let j = 0; j < pd; j++) out[j]! += z[o + j]! * ri;
      if (sp) for (let k = sp.ptr[i]!; k < sp.ptr[i + 1]!; k++) out[pd + sp.col[k]!]! += sp.val[k]! * ri;
    }
  };
  const sv = new Float64Array(n);
  const rv = new Float64Array(n);
  const tmp = new Float64Array(p);
  let v = new Float64Array(p).fill(1 / Math.sqrt(Math.max(1, p)));
  let lam = 1;
  for (let it = 0; it < 12; it++) {
    forward(v, sv);
    for (let i = 0; i < n; i++) rv[i] = sv[i]! * sw[i]!;
    backward(rv, tmp);
    let norm = 0;
    for (let j = 0; j < p; j++) norm += tmp[j]! * tmp[j]!;
    norm = Math.sqrt(norm);
    if (norm === 0) break;
    lam = norm;
    v = Float64Array.from(tmp, (x) => x / norm);
  }
  const step = 1 / (0.25 * (lam * 1.1 + 1) + l2);
  let w = new Float64Array(p);
  let wPrev = new Float64Array(p);
  let b = 0;
  let bPrev = 0;
  const look = new Float64Array(p);
  const g = new Float64Array(p);
  for (let t = 1; t <= iters; t++) {
    const mom = (t - 1) / (t + 2);
    for (let j = 0; j < p; j++) look[j] = w[j]! + mom * (w[j]! - wPrev[j]!);
    const lb = b + mom * (b - bPrev);
    forward(look, sv);
    let gb = 0;
    for (let i = 0; i < n; i++) {
      const pr = 1 / (1 + Math.exp(-(sv[i]! + lb)));
      const r = (pr - y[i]!) * sw[i]!;
      gb += r;
      rv[i] = r;
    }
    backward(rv, g);
    wPrev = w;
    w = new Float64Array(p);
    for (let j = 0; j < p; j++) w[j] = look[j]! - step * (g[j]! + l2 * look[j]!);
    bPrev = b;
    b = lb - step * gb;
  }
  const weights = new Float32Array(p);
  let bias = b;
  for (let j = 0; j < pd; j++) {
    weights[j] = w[j]! * inv[j]!;
    bias -= weights[j]! * mean[j]!;
  }
  for (let j = pd; j < p; j++) weights[j] = w[j]!;
  return { pd, ps, weights, bias };
}
