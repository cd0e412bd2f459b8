// Small dense helpers over row-major Float32Array matrices (rows = vectors). Plain loops: the
// sizes here (thousands of rows, 100-300 columns) are far below where a BLAS would pay off.

export function dot(a: Float32Array, ao: number, b: Float32Array, bo: number, d: number): number {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  let i = 0;
  for (; i + 3 < d; i += 4) {
    s0 += a[ao + i]! * b[bo + i]!;
    s1 += a[ao + i + 1]! * b[bo + i + 1]!;
    s2 += a[ao + i + 2]! * b[bo + i + 2]!;
    s3 += a[ao + i + 3]! * b[bo + i + 3]!;
  }
  for (; i < d; i++) s0 += a[ao + i]! * b[bo + i]!;
  return s0 + s1 + s2 + s3;
}

/** Copies vectors into one contiguous matrix, each row scaled to unit length (zero rows stay zero). */
export function normalizedMatrix(vectors: readonly Float32Array[], d: number): Float32Array {
  const m = new Float32Array(vectors.length * d);
  for (let r = 0; r < vectors.length; r++) {
    const v = vectors[r]!;
    let n = 0;
    for (let i = 0; i < d; i++) n += v[i]! * v[i]!;
    const inv = n > 0 ? 1 / Math.sqrt(n) : 0;
    for (let i = 0; i < d; i++) m[r * d + i] = v[i]! * inv;
  }
  return m;
}

export function normalizeInPlace(v: Float32Array, off = 0, d = v.length): void {
  let n = 0;
  for (let i = 0; i < d; i++) n += v[off + i]! * v[off + i]!;
  if (n === 0) return;
  const inv = 1 / Math.sqrt(n);
  for (let i = 0; i < d; i++) v[off + i]! *= inv;
}
