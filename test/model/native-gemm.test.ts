// The native (OpenBLAS) BatchMatMul against the stock kernels and a float64 reference. Skipped, with
// the reason in the test name, only when the addon is not built (no compiler or libopenblas-dev).
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../src/model/backend.js';
import { planBatchMatMul, stockKernel, useNativeMatMul } from '../../src/model/native-gemm.js';
import { availableParallelism } from 'node:os';
import { startEngine } from '../../src/model/train.js';
import { LocalEngine, defaultFactoryUrl } from '../../src/model/train-engine.js';
import { factory as aetnFactory } from '../../src/model/train-model.js';
import { tinyWorld } from './train-fixture.js';
import { native, restoreNativeGemmEnvAfterAll, why } from './native-fixture.js';

restoreNativeGemmEnvAfterAll();

type Case = [aShape: number[], bShape: number[], transposeA: boolean, transposeB: boolean];

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296;
}

function randomData(n: number, r: () => number): Float32Array {
  return Float32Array.from({ length: n }, () => r() * 2 - 1);
}

/** float64 product and, per element, sum_k |a||b| (the scale of float32 rounding error). */
function reference(a: Float32Array, as: number[], b: Float32Array, bs: number[], ta: boolean, tb: boolean): { c: Float64Array; scale: Float64Array; shape: number[] } {
  const p = planBatchMatMul(as, bs, ta, tb);
  const { m, n, k, batch } = p;
  const c = new Float64Array(batch * m * n);
  const scale = new Float64Array(batch * m * n);
  for (let i = 0; i < batch; i++) {
    const ai = p.aIndex ? p.aIndex[i]! : p.batchA === 1 ? 0 : i;
    const bi = p.bIndex ? p.bIndex[i]! : p.batchB === 1 ? 0 : i;
    for (let r = 0; r < m; r++) {
      for (let col = 0; col < n; col++) {
        let sum = 0;
        let abs = 0;
        for (let t = 0; t < k; t++) {
          const x = a[ai * m * k + (ta ? t * m + r : r * k + t)]!;
          const y = b[bi * k * n + (tb ? col * k + t : t * n + col)]!;
          sum += x * y;
          abs += Math.abs(x * y);
        }
        c[i * m * n + r * n + col] = sum;
        scale[i * m * n + r * n + col] = abs;
      }
    }
  }
  return { c, scale, shape: p.outShape };
}

// Stated tolerance: |c - exact| <= 2 k eps32 sum_k |a||b| + 1e-30, the textbook bound for a float32
// dot product of length k (any summation order), so both kernels must meet it.
const EPS32 = 2 ** -23;
function worstRatio(got: ArrayLike<number>, ref: { c: Float64Array; scale: Float64Array }, k: number): number {
  let worst = 0;
  for (let i = 0; i < ref.c.length; i++) {
    const bound = 2 * Math.max(k, 1) * EPS32 * ref.scale[i]! + 1e-30;
    worst = Math.max(worst, Math.abs(got[i]! - ref.c[i]!) / bound);
  }
  return worst;
}

async function product(backend: 'wasm' | 'cpu', nativeOn: boolean, c: Case, a: Float32Array, b: Float32Array): Promise<{ values: Float32Array; shape: number[] }> {
  // 'all': these are inference products, which the default mode leaves to the stock kernel.
  process.env.AETN_NATIVE_GEMM = nativeOn ? 'all' : '0';
  const info = await initBackend(backend);
  // cpu stays pure JS whatever the switch says (the reference kernels).
  expect(info.gemm).toBe(nativeOn && backend === 'wasm' ? 'openblas' : 'stock');
  return tf.tidy(() => {
    const out = tf.matMul(tf.tensor(a, c[0]), tf.tensor(b, c[1]), c[2], c[3]);
    return { values: (out.dataSync() as Float32Array).slice(), shape: out.shape };
  });
}

// Shapes of our models (attention Q K^T at 25 positions x 8 heads, the output layer X W_a^T, the
// backward products with transposes) plus edge cases: 1x1, odd sizes, batch broadcast either side.
const FIXED: Case[] = [
  [[1, 1], [1, 1], false, false],
  [[3, 5], [5, 7], false, false],
  [[7, 3], [7, 4], true, false],
  [[4, 6], [5, 6], false, true],
  [[6, 4], [5, 6], true, true],
  [[33, 129], [129, 65], false, false],
  [[2, 3, 5, 4], [2, 3, 4, 6], false, false],
  [[2, 8, 25, 16], [2, 8, 25, 16], false, true], // attention scores
  [[2, 8, 25, 16], [2, 8, 25, 25], true, false], // their gradient
  [[4, 5, 6], [6, 3], false, false], // b broadcast (rank 2)
  [[1, 5, 6], [4, 6, 3], false, false], // a broadcast (batch 1)
  [[4, 6, 5], [1, 3, 6], true, true],
  [[2, 3, 4, 5], [3, 5, 2], false, false], // b broadcast over the leading dim
  [[1, 2, 1], [1, 1, 3], false, false], // k = 1
  [[17, 1, 9], [17, 9, 1], false, false], // m = n = 1, batch 17
];

function randomCases(count: number, seed: number): Case[] {
  const r = rng(seed);
  const dim = () => 1 + Math.floor(r() * 40);
  const cases: Case[] = [];
  for (let i = 0; i < count; i++) {
    const [m, n, k] = [dim(), dim(), dim()];
    const ta = r() < 0.5;
    const tb = r() < 0.5;
    const batch = r() < 0.4 ? [] : [1 + Math.floor(r() * 4)];
    const mode = Math.floor(r() * 3); // 0: both batched, 1: a batch 1, 2: b unbatched
    const aBatch = mode === 1 && batch.length ? [1] : batch;
    const bBatch = mode === 2 ? [] : batch;
    cases.push([[...aBatch, ...(ta ? [k, m] : [m, k])], [...bBatch, ...(tb ? [n, k] : [k, n])], ta, tb]);
  }
  return cases;
}

describe(`native GEMM (OpenBLAS) BatchMatMul${why}`, () => {
  const cases = [...FIXED, ...randomCases(25, 4242)];

  it.skipIf(!native.ok)(`wasm: native, stock wasm and cpu kernels agree with the float64 product within 2k*eps32*sum|ab| on ${cases.length} shapes`, async () => {
    const r = rng(7);
    for (const c of cases) {
      const a = randomData(c[0].reduce((x, y) => x * y, 1), r);
      const b = randomData(c[1].reduce((x, y) => x * y, 1), r);
      const ref = reference(a, c[0], b, c[1], c[2], c[3]);
      const k = planBatchMatMul(c[0], c[1], c[2], c[3]).k;
      const label = `${JSON.stringify(c)}`;
      for (const [name, got] of [
        ['native', await product('wasm', true, c, a, b)],
        ['stock wasm', await product('wasm', false, c, a, b)],
        ['cpu', await product('cpu', true, c, a, b)],
      ] as const) {
        expect(got.shape, `${name} ${label}`).toEqual(ref.shape);
        expect(worstRatio(got.values, ref, k), `${name} ${label}`).toBeLessThanOrEqual(1);
      }
    }
  });

  it.skipIf(!native.ok)('broadcasts batch dims the stock kernels cannot ([2,1] x [1,3]) and handles k = 0', async () => {
    const r = rng(3);
    const c: Case = [[2, 1, 3, 4], [1, 3, 4, 2], false, false];
    const a = randomData(24, r);
    const b = randomData(24, r);
    const ref = reference(a, c[0], b, c[1], false, false);
    const nat = await product('wasm', true, c, a, b);
    expect(nat.shape).toEqual([2, 3, 3, 2]);
    expect(worstRatio(nat.values, ref, 4)).toBeLessThanOrEqual(1);
    const empty = await product('wasm', true, [[3, 0], [0, 4], false, false], new Float32Array(0), new Float32Array(0));
    expect(empty.shape).toEqual([3, 4]);
    expect(Array.from(empty.values)).toEqual(new Array(12).fill(0));
  });

  it.skipIf(!native.ok)('writes the right place after the wasm heap grows (views taken at call time)', async () => {
    process.env.AETN_NATIVE_GEMM = 'all';
    await initBackend('wasm');
    const r = rng(5);
    const [m, k, n] = [1500, 64, 1500];
    const a = randomData(m * k, r);
    const b = randomData(k * n, r);
    // Each 9 MB output forces the heap past its previous size at least once.
    const outs = tf.tidy(() => [0, 1, 2].map(() => tf.matMul(tf.tensor2d(a, [m, k]), tf.tensor2d(b, [k, n]))));
    for (const o of outs) {
      const v = o.dataSync();
      for (const [i, j] of [[0, 0], [m - 1, n - 1], [700, 3], [3, 1499]] as const) {
        let s = 0;
        for (let t = 0; t < k; t++) s += a[i * k + t]! * b[t * n + j]!;
        expect(Math.abs(v[i * n + j]! - s)).toBeLessThan(1e-4);
      }
    }
    tf.dispose(outs);
  });

  it.skipIf(!native.ok)('refuses operands that do not fit their shapes instead of writing out of bounds', () => {
    if (!native.ok) return;
    const g = native.addon;
    const f = (n: number) => new Float32Array(n);
    expect(() => g.gemm(f(5), f(6), f(4), 1, 2, 2, 3, false, false, 1, 1)).toThrow(/a is shorter/);
    expect(() => g.gemm(f(6), f(6), f(3), 1, 2, 2, 3, false, false, 1, 1)).toThrow(/c is shorter/);
    expect(() => g.gemm(f(12), f(6), f(8), 2, 2, 2, 3, false, false, 2, 1, Int32Array.from([0, 2]), Int32Array.from([0, 0]))).toThrow(/index out of range/);
    expect(() => g.gemm(f(6), f(12), f(8), 2, 2, 2, 3, false, false, 2, 2)).toThrow(/a is shorter/);
    expect(() => g.gemm(new Float64Array(6) as unknown as Float32Array, f(6), f(4), 1, 2, 2, 3, false, false, 1, 1)).toThrow(/Float32Array/);
    expect(() => g.gemm(f(6), f(6), f(4), 1, -2, 2, 3, false, false, 1, 1)).toThrow(/negative/);
    expect(() => tf.matMul(tf.ones([2, 3]), tf.ones([4, 2]))).toThrow(/inner shapes \(3\) and \(4\)/);
  });

  it.skipIf(!native.ok)('the backend report names the GEMM, and AETN_NATIVE_GEMM=0 restores the stock kernel', async () => {
    // This test switches the GEMM through the environment: put back what the next test expects.
    const saved = process.env.AETN_NATIVE_GEMM;
    try {
      delete process.env.AETN_NATIVE_GEMM;
      const on = await initBackend('wasm');
      expect(on.gemm).toBe('openblas');
      expect(on.detail).toMatch(/^wasm \(.*wasm\+openblas: every BatchMatMul \(inference: batch-invariant blocks\) on OpenBLAS \d/);
      process.env.AETN_NATIVE_GEMM = 'all';
      expect((await initBackend('wasm')).detail).toMatch(/wasm\+openblas: every BatchMatMul \(plain calls.*\) on OpenBLAS \d/);
      const replaced = tf.getKernel(tf.BatchMatMul, 'wasm');
      expect(stockKernel('wasm')).toBeDefined();
      process.env.AETN_NATIVE_GEMM = '0';
      const off = await initBackend('wasm');
      expect(off.gemm).toBe('stock');
      expect(off.detail).toMatch(/stock matMul: AETN_NATIVE_GEMM=0/);
      expect(tf.getKernel(tf.BatchMatMul, 'wasm')?.kernelFunc).not.toBe(replaced?.kernelFunc);
      expect(stockKernel('wasm')).toBeUndefined();
      process.env.AETN_NATIVE_GEMM = '1';
      expect(useNativeMatMul('wasm', 'default')).toBe(true);
      const cpu = await initBackend('cpu');
      expect(cpu.gemm).toBe('stock');
      expect(cpu.detail).toBe('cpu (pure JS)');
    } finally {
      if (saved === undefined) delete process.env.AETN_NATIVE_GEMM;
      else process.env.AETN_NATIVE_GEMM = saved;
    }
  });

  it.skipIf(!native.ok)('default mode: products under a gradient run in plain OpenBLAS calls, inference products in batch-invariant ones', async () => {
    const r = rng(11);
    // An output-layer shape where OpenBLAS and XNNPACK round differently somewhere.
    const [m, k, n] = [150, 64, 257];
    const a = randomData(m * k, r);
    const b = randomData(k * n, r);
    const run = async (env: string) => {
      process.env.AETN_NATIVE_GEMM = env;
      await initBackend('wasm');
      const plain = tf.tidy(() => tf.matMul(tf.tensor2d(a, [m, k]), tf.tensor2d(b, [k, n])).dataSync().slice());
      // Rows 37..39 multiplied on their own: in the invariant mode, the bits rows 37..39 get above.
      const part = tf.tidy(() => tf.matMul(tf.tensor2d(a.slice(37 * k, 40 * k), [3, k]), tf.tensor2d(b, [k, n])).dataSync().slice());
      const x = tf.variable(tf.tensor2d(a, [m, k]));
      let taped = new Float32Array(0);
      const { value, grads } = tf.variableGrads(() => {
        const y = tf.matMul(x, tf.tensor2d(b, [k, n]));
        taped = y.dataSync().slice() as Float32Array;
        return tf.sum(y) as tf.Scalar;
      }, [x]);
      const g = grads[x.name]!.dataSync().slice();
      tf.dispose([x, value, grads[x.name]!]);
      return { plain, part, taped, g };
    };
    const stockRun = await run('0');
    const allRun = await run('all');
    const dflt = await run('1');
    const same = (p: ArrayLike<number>, q: ArrayLike<number>) => Buffer.from(new Float32Array(p).buffer).equals(Buffer.from(new Float32Array(q).buffer));
    // The shape does tell the kernels apart, else this test could not fail.
    expect(same(stockRun.plain, allRun.plain)).toBe(false);
    expect(same(dflt.plain.slice(37 * n, 40 * n), dflt.part)).toBe(true);
    expect(same(allRun.plain.slice(37 * n, 40 * n), allRun.part)).toBe(false);
    let worst = 0;
    for (let i = 0; i < m * n; i++) worst = Math.max(worst, Math.abs(dflt.plain[i]! - stockRun.plain[i]!));
    expect(worst).toBeLessThan(1e-4);
    expect(same(dflt.taped, allRun.taped)).toBe(true);
    expect(same(dflt.g, allRun.g)).toBe(true);
  });

  it.skipIf(!native.ok)('AETN training step: native gradient equals stock within 1e-4, bit-exact run to run, and in 2 worker threads', async () => {
    const { vocab, examples } = tinyWorld(24, 30, 11);
    const batch = examples.slice(0, 24);
    const sizes = { dModel: 16, dFf: 32, heads: 2, encLayers: 1, decLayers: 1, dEmb: 8, seqLen: 6, aeHidden: 8, variant: 'aetn' };
    const cfg = () => aetnFactory.makeConfig(vocab, sizes, { seqLen: 6, dateBuckets: 52 });
    const step = async (nativeOn: boolean) => {
      process.env.AETN_NATIVE_GEMM = nativeOn ? 'all' : '0';
      await initBackend('wasm');
      const engine = LocalEngine.create(aetnFactory, cfg(), 5);
      const grad = new Float32Array(engine.numParams);
      const res = engine.gradientSync(batch, 99, grad);
      await engine.close();
      return { res, grad };
    };
    const n1 = await step(true);
    const n2 = await step(true);
    const s = await step(false);
    expect(Array.from(n1.grad)).toEqual(Array.from(n2.grad));
    let num = 0;
    let den = 0;
    for (let i = 0; i < s.grad.length; i++) {
      num = Math.max(num, Math.abs(n1.grad[i]! - s.grad[i]!));
      den = Math.max(den, Math.abs(s.grad[i]!));
    }
    expect(num / den).toBeLessThan(1e-4);
    expect(Math.abs(n1.res.losses.total - s.res.losses.total)).toBeLessThan(1e-4 * Math.abs(s.res.losses.total));
    // Worker threads load their own instance of the addon (context-aware); BLAS threads = cores / workers.
    process.env.AETN_NATIVE_GEMM = 'all';
    await initBackend('wasm');
    const { engine, local } = await startEngine({ factoryUrl: defaultFactoryUrl(), cfg: cfg(), seed: 5, backend: 'wasm', workers: 2 });
    try {
      const grad = new Float32Array(local.numParams);
      await engine.setWeights(local.getWeights());
      const r = await engine.gradient(batch, 99, grad);
      expect(Math.abs(r.losses.total - n1.res.losses.total)).toBeLessThan(1e-4 * Math.abs(n1.res.losses.total));
      let d = 0;
      for (let i = 0; i < grad.length; i++) d = Math.max(d, Math.abs(grad[i]! - n1.grad[i]!));
      expect(d / den).toBeLessThan(1e-4);
      if (native.ok) expect(native.addon.getThreads()).toBe(Math.max(1, Math.floor(availableParallelism() / 2)));
    } finally {
      await engine.close();
      await local.close();
    }
    // The main thread alone gets every core again once the pool is gone.
    if (native.ok && !process.env.OPENBLAS_NUM_THREADS) expect(native.addon.getThreads()).toBe(availableParallelism());
  });
});
