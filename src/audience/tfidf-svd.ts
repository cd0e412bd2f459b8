// Classical user vectors from the kept apps: TF-IDF rows (binary term frequency, smoothed IDF,
// rows of unit length) reduced by a truncated SVD, as in latent semantic analysis. They are the
// baseline every learned vector is compared with, and a feature kind of their own where they serve
// better (small or retention-only data).
//
// The SVD is randomized (Halko, Martinsson & Tropp 2011): project the sparse matrix A [n, M] on
// k + 10 Gaussian directions, two power iterations with re-orthonormalisation, then the exact SVD
// of the small projected matrix through the eigen-decomposition of B·Bᵀ (cyclic Jacobi). No
// library on npm does sparse randomized SVD with a seeded generator, and the pieces are a few
// dozen lines over the CSR matrix, so they live here; the small dense eigen-problem is at most
// ~140 x 140.
import { mulberry32 } from '../util/random.js';

/** Compressed sparse rows of an [n, m] matrix. */
export interface Csr {
  n: number;
  m: number;
  ptr: Int32Array; // [n + 1]
  col: Int32Array; // [nnz]
  val: Float32Array; // [nnz]
}

/** Smoothed IDF from per-column document frequencies: ln((1 + n) / (1 + df)) + 1. */
export function idfOf(df: ArrayLike<number>, n: number): Float32Array {
  const out = new Float32Array(df.length);
  for (let j = 0; j < df.length; j++) out[j] = Math.log((1 + n) / (1 + df[j]!)) + 1;
  return out;
}

/** Column document frequencies of sets of column indices. */
export function documentFrequency(rows: readonly ArrayLike<number>[], m: number): Float64Array {
  const df = new Float64Array(m);
  for (const r of rows) for (let i = 0; i < r.length; i++) df[r[i]!]!++;
  return df;
}

/** TF-IDF rows of unit length (binary tf) of sets of column indices (duplicates ignored). */
export function tfidfRows(rows: readonly ArrayLike<number>[], m: number, idf: Float32Array): Csr {
  const n = rows.length;
  const ptr = new Int32Array(n + 1);
  const uniq = rows.map((r) => [...new Set(Array.from(r))].sort((a, b) => a - b));
  for (let i = 0; i < n; i++) ptr[i + 1] = ptr[i]! + uniq[i]!.length;
  const col = new Int32Array(ptr[n]!);
  const val = new Float32Array(ptr[n]!);
  for (let i = 0; i < n; i++) {
    const u = uniq[i]!;
    let norm = 0;
    for (const j of u) {
      if (!(j >= 0 && j < m)) throw new Error(`column ${j} outside [0, ${m})`);
      norm += idf[j]! * idf[j]!;
    }
    const inv = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    u.forEach((j, t) => {
      col[ptr[i]! + t] = j;
      val[ptr[i]! + t] = idf[j]! * inv;
    });
  }
  return { n, m, ptr, col, val };
}

/** Y [n, l] = A · X, X [m, l] row-major. */
function mulDense(A: Csr, X: Float64Array, l: number): Float64Array {
  const Y = new Float64Array(A.n * l);
  for (let i = 0; i < A.n; i++) {
    const yo = i * l;
    for (let t = A.ptr[i]!; t < A.ptr[i + 1]!; t++) {
      const v = A.val[t]!;
      const xo = A.col[t]! * l;
      for (let c = 0; c < l; c++) Y[yo + c]! += v * X[xo + c]!;
    }
  }
  return Y;
}

/** Z [m, l] = Aᵀ · Y, Y [n, l] row-major. */
function mulTransDense(A: Csr, Y: Float64Array, l: number): Float64Array {
  const Z = new Float64Array(A.m * l);
  for (let i = 0; i < A.n; i++) {
    const yo = i * l;
    for (let t = A.ptr[i]!; t < A.ptr[i + 1]!; t++) {
      const v = A.val[t]!;
      const zo = A.col[t]! * l;
      for (let c = 0; c < l; c++) Z[zo + c]! += v * Y[yo + c]!;
    }
  }
  return Z;
}

/**
 * Orthonormalises the l columns of Y [r, l] in place (modified Gram-Schmidt, twice for stability).
 * The columns are copied out to contiguous rows first: the same sums in the same order, without
 * striding through Y for every product.
 */
function orthonormalize(Y: Float64Array, r: number, l: number): void {
  const C = new Float64Array(l * r);
  for (let i = 0; i < r; i++) for (let c = 0; c < l; c++) C[c * r + i] = Y[i * l + c]!;
  for (let pass = 0; pass < 2; pass++) {
    for (let c = 0; c < l; c++) {
      const co = c * r;
      for (let p = 0; p < c; p++) {
        const po = p * r;
        let d = 0;
        for (let i = 0; i < r; i++) d += C[co + i]! * C[po + i]!;
        for (let i = 0; i < r; i++) C[co + i]! -= d * C[po + i]!;
      }
      let nn = 0;
      for (let i = 0; i < r; i++) nn += C[co + i]! * C[co + i]!;
      const inv = nn > 1e-24 ? 1 / Math.sqrt(nn) : 0;
      for (let i = 0; i < r; i++) C[co + i]! *= inv;
    }
  }
  for (let i = 0; i < r; i++) for (let c = 0; c < l; c++) Y[i * l + c] = C[c * r + i]!;
}

/** Eigen-decomposition of a symmetric [l, l] matrix (cyclic Jacobi): eigenvalues descending, vectors as columns. */
export function symmetricEigen(S: Float64Array, l: number): { values: Float64Array; vectors: Float64Array } {
  const a = S.slice();
  const v = new Float64Array(l * l);
  for (let i = 0; i < l; i++) v[i * l + i] = 1;
  for (let sweep = 0; sweep < 60; sweep++) {
    let off = 0;
    for (let p = 0; p < l; p++) for (let q = p + 1; q < l; q++) off += a[p * l + q]! * a[p * l + q]!;
    if (off < 1e-22) break;
    for (let p = 0; p < l; p++)
      for (let q = p + 1; q < l; q++) {
        const apq = a[p * l + q]!;
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (a[q * l + q]! - a[p * l + p]!) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < l; k++) {
          const akp = a[k * l + p]!;
          const akq = a[k * l + q]!;
          a[k * l + p] = c * akp - s * akq;
          a[k * l + q] = s * akp + c * akq;
        }
        for (let k = 0; k < l; k++) {
          const apk = a[p * l + k]!;
          const aqk = a[q * l + k]!;
          a[p * l + k] = c * apk - s * aqk;
          a[q * l + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < l; k++) {
          const vkp = v[k * l + p]!;
          const vkq = v[k * l + q]!;
          v[k * l + p] = c * vkp - s * vkq;
          v[k * l + q] = s * vkp + c * vkq;
        }
      }
  }
  const order = Array.from({ length: l }, (_, i) => i).sort((x, y) => a[y * l + y]! - a[x * l + x]!);
  const values = Float64Array.from(order, (i) => a[i * l + i]!);
  const vectors = new Float64Array(l * l);
  order.forEach((src, dst) => {
    for (let k = 0; k < l; k++) vectors[k * l + dst] = v[k * l + src]!;
  });
  return { values, vectors };
}

export interface TruncatedSvd {
  k: number;
  /** Singular values, descending. */
  sigma: Float64Array;
  /** Right singular vectors V [m, k] row-major: a row's reduced vector is x · V. */
  V: Float32Array;
}

/** Rank-k randomized SVD of a CSR matrix (seeded: same input, same factors). */
export function randomizedSvd(A: Csr, k: number, seed: number, powerIterations = 2): TruncatedSvd {
  const kk = Math.min(k, A.m, A.n);
  const l = Math.min(kk + 10, A.m, A.n);
  const r = mulberry32(seed);
  const gauss = () => {
    const u = Math.max(r(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
  };
  const Omega = new Float64Array(A.m * l);
  for (let i = 0; i < Omega.length; i++) Omega[i] = gauss();
  let Y = mulDense(A, Omega, l); // [n, l]
  orthonormalize(Y, A.n, l);
  for (let q = 0; q < powerIterations; q++) {
    const Z = mulTransDense(A, Y, l); // [m, l]
    orthonormalize(Z, A.m, l);
    Y = mulDense(A, Z, l);
    orthonormalize(Y, A.n, l);
  }
  // B = Qᵀ A [l, m], kept transposed as Bt [m, l] = Aᵀ Q.
  const Bt = mulTransDense(A, Y, l);
  // B Bᵀ [l, l] = Btᵀ Bt.
  const G = new Float64Array(l * l);
  for (let j = 0; j < A.m; j++) {
    const o = j * l;
    for (let a = 0; a < l; a++) {
      const x = Bt[o + a]!;
      if (x === 0) continue;
      for (let b = a; b < l; b++) G[a * l + b]! += x * Bt[o + b]!;
    }
  }
  for (let a = 0; a < l; a++) for (let b = 0; b < a; b++) G[a * l + b] = G[b * l + a]!;
  const { values, vectors } = symmetricEigen(G, l);
  // B = Ũ Σ Vᵀ: V = Bᵀ Ũ Σ⁻¹ = Bt · Ũ[:, :k] / σ.
  const sigma = new Float64Array(kk);
  const V = new Float32Array(A.m * kk);
  const u = new Float64Array(l);
  for (let c = 0; c < kk; c++) {
    const s = Math.sqrt(Math.max(values[c]!, 0));
    sigma[c] = s;
    if (s < 1e-12) continue;
    for (let a = 0; a < l; a++) u[a] = vectors[a * l + c]!;
    for (let j = 0; j < A.m; j++) {
      const o = j * l;
      let acc = 0;
      for (let a = 0; a < l; a++) acc += Bt[o + a]! * u[a]!;
      V[j * kk + c] = acc / s;
    }
  }
  return { k: kk, sigma, V };
}

/** Reduced vectors [n, k] = A · V of CSR rows (the truncated SVD's transform). */
export function project(A: Csr, svd: TruncatedSvd): Float32Array {
  const k = svd.k;
  const out = new Float32Array(A.n * k);
  for (let i = 0; i < A.n; i++)
    for (let t = A.ptr[i]!; t < A.ptr[i + 1]!; t++) {
      const v = A.val[t]!;
      const o = A.col[t]! * k;
      for (let c = 0; c < k; c++) out[i * k + c]! += v * svd.V[o + c]!;
    }
  return out;
}

/**
 * TF-IDF + SVD fitted on users' app lists (app ids rather than vocabulary indices), to project
 * any user's apps: the look-alike's svd member, fitted by the serving backend on every user of a
 * small feature (ServingBackend.appSvd).
 */
export interface AppSvd {
  /** Column of each app seen in the fitting rows. */
  column: Map<string, number>;
  idf: Float32Array;
  svd: TruncatedSvd;
}

/** Fits TF-IDF (smoothed IDF from these rows) and a rank-k randomized SVD on app lists. */
export function fitAppSvd(rows: readonly (readonly string[] | undefined)[], k: number, seed: number): AppSvd {
  const column = new Map<string, number>();
  const idx = rows.map((r) => {
    const out: number[] = [];
    for (const a of new Set(r ?? [])) {
      let c = column.get(a);
      if (c === undefined) column.set(a, (c = column.size));
      out.push(c);
    }
    return out;
  });
  const idf = idfOf(documentFrequency(idx, column.size), rows.length);
  const svd = randomizedSvd(tfidfRows(idx, column.size, idf), k, seed);
  return { column, idf, svd };
}

/**
 * One user's reduced vector, of unit length (zeros when none of the apps was seen in the fit):
 * the TF-IDF row times V, normalised. The TF-IDF row's own normalisation is a scale factor, so it
 * cancels and is skipped. Written into out (length k).
 */
export function projectApps(m: AppSvd, apps: readonly string[] | undefined, out: Float32Array): Float32Array {
  const k = m.svd.k;
  out.fill(0);
  if (!apps) return out;
  const V = m.svd.V;
  const seen = apps.length > 1 ? new Set<string>() : undefined;
  for (const a of apps) {
    if (seen) {
      if (seen.has(a)) continue;
      seen.add(a);
    }
    const c = m.column.get(a);
    if (c === undefined) continue;
    const w = m.idf[c]!;
    const o = c * k;
    for (let j = 0; j < k; j++) out[j]! += w * V[o + j]!;
  }
  let nn = 0;
  for (let j = 0; j < k; j++) nn += out[j]! * out[j]!;
  if (nn > 0) {
    const inv = 1 / Math.sqrt(nn);
    for (let j = 0; j < k; j++) out[j]! *= inv;
  }
  return out;
}
