// Clustered unit vectors (a stand-in for user embeddings: users group by interest) and an exact
// cosine k-NN to measure recall against.
import { mulberry32 } from '../../src/util/random.js';
function gauss(r: () => number): number {
  return Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
}

export function clustered(n: number, dim: number, clusters: number, seed = 1, spread = 0.35): Float32Array[] {
  const r = mulberry32(seed);
  const centers = Array.from({ length: clusters }, () => Float32Array.from({ length: dim }, () => gauss(r)));
  return Array.from({ length: n }, () => {
    const c = centers[Math.floor(r() * clusters)];
    const v = new Float32Array(dim);
    let norm = 0;
    for (let j = 0; j < dim; j++) {
      v[j] = c[j] + spread * gauss(r);
      norm += v[j] * v[j];
    }
    norm = Math.sqrt(norm);
    for (let j = 0; j < dim; j++) v[j] /= norm;
    return v;
  });
}

export function exactKnn(data: Float32Array[], q: Float32Array, k: number, exclude?: number): number[] {
  let qn = 0;
  for (let j = 0; j < q.length; j++) qn += q[j] * q[j];
  qn = Math.sqrt(qn);
  const scored: [number, number][] = [];
  for (let i = 0; i < data.length; i++) {
    if (i === exclude) continue;
    const d = data[i];
    let s = 0;
    let n = 0;
    for (let j = 0; j < q.length; j++) {
      s += d[j] * q[j];
      n += d[j] * d[j];
    }
    scored.push([s / (Math.sqrt(n) * qn), i]);
  }
  scored.sort((a, b) => b[0] - a[0]);
  return scored.slice(0, k).map((x) => x[1]);
}

export const uid = (i: number) => `user-${String(i).padStart(6, '0')}`;
