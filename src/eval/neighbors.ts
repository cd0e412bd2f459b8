// Exact cosine neighbour search over the evaluation's in-memory vectors. Evaluation wants the true
// nearest neighbour (an approximate index would blur the comparison between models), so it scans.
// For many queries (§5.5: 10k users against all) the scan is a blocked matrix product: through a
// handed-in matrix product (tfjs matMul on wasm SIMD is far faster than plain JS), else in plain JS.
/** Q [qn, d] times DB [bn, d]^T -> [qn, bn], e.g. a tfjs matMul on the wasm backend. */
export type MatMulT = (Q: Float32Array, qn: number, DB: Float32Array, bn: number, d: number) => Float32Array;

/** Rows scaled to unit L2 norm (zero rows stay zero), as a new matrix. */
export function normalizeRows(V: Float32Array, d: number): Float32Array {
  const out = new Float32Array(V.length);
  for (let o = 0; o < V.length; o += d) {
    let s = 0;
    for (let j = 0; j < d; j++) s += V[o + j] * V[o + j];
    const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
    for (let j = 0; j < d; j++) out[o + j] = V[o + j] * inv;
  }
  return out;
}

/** Cosine of one query (need not be normalised) with every row of a row-normalised matrix. */
export function cosineScores(U: Float32Array, d: number, query: ArrayLike<number>): Float32Array {
  let qq = 0;
  for (let j = 0; j < d; j++) qq += query[j] * query[j];
  const inv = qq > 0 ? 1 / Math.sqrt(qq) : 0;
  const q = new Float32Array(d);
  for (let j = 0; j < d; j++) q[j] = query[j] * inv;
  const n = U.length / d;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const o = i * d;
    let s = 0;
    for (let j = 0; j < d; j++) s += U[o + j] * q[j];
    out[i] = s;
  }
  return out;
}

/** Indices of `scores` sorted by descending score (ties by index, so results are deterministic). */
export function rankDescending(scores: ArrayLike<number>, keep?: (i: number) => boolean): Int32Array {
  const idx: number[] = [];
  for (let i = 0; i < scores.length; i++) if (!keep || keep(i)) idx.push(i);
  idx.sort((a, b) => scores[b] - scores[a] || a - b);
  return Int32Array.from(idx);
}

/**
 * For each query row index, the index of its most similar other row (cosine), and that similarity.
 * `U` must be row-normalised. A row never matches itself; rows that are exact duplicates of the
 * query do match (they are other users).
 */
export async function nearestOther(
  U: Float32Array,
  d: number,
  queries: Int32Array,
  matmulT?: MatMulT,
): Promise<{ index: Int32Array; score: Float32Array }> {
  const n = U.length / d;
  const index = new Int32Array(queries.length).fill(-1);
  const score = new Float32Array(queries.length).fill(-Infinity);
  const qBlock = 512;
  const dbBlock = matmulT ? 16384 : 4096;
  for (let q0 = 0; q0 < queries.length; q0 += qBlock) {
    const qn = Math.min(qBlock, queries.length - q0);
    const Q = new Float32Array(qn * d);
    for (let i = 0; i < qn; i++) Q.set(U.subarray(queries[q0 + i] * d, queries[q0 + i] * d + d), i * d);
    for (let b0 = 0; b0 < n; b0 += dbBlock) {
      const bn = Math.min(dbBlock, n - b0);
      let S: Float32Array;
      if (matmulT) {
        S = matmulT(Q, qn, U.subarray(b0 * d, (b0 + bn) * d), bn, d);
      } else {
        S = new Float32Array(qn * bn);
        for (let i = 0; i < qn; i++) {
          const qo = i * d;
          for (let r = 0; r < bn; r++) {
            const ro = (b0 + r) * d;
            let s = 0;
            for (let j = 0; j < d; j++) s += Q[qo + j] * U[ro + j];
            S[i * bn + r] = s;
          }
        }
      }
      for (let i = 0; i < qn; i++) {
        const self = queries[q0 + i];
        let best = score[q0 + i];
        let bi = index[q0 + i];
        const so = i * bn;
        for (let r = 0; r < bn; r++) {
          const s = S[so + r];
          if (s > best && b0 + r !== self) {
            best = s;
            bi = b0 + r;
          }
        }
        score[q0 + i] = best;
        index[q0 + i] = bi;
      }
    }
  }
  return { index, score };
}
