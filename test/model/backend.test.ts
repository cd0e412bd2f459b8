import { afterAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, resolveBackendName } from '../../src/model/backend.js';
import { loadNativeGemm, nativeGemmMode } from '../../src/model/native-gemm.js';
import { LocalEngine } from '../../src/model/train-engine.js';
import { factory as aetnFactory } from '../../src/model/train-model.js';
import { UserError } from '../../src/util/errors.js';
import { tinyWorld } from './train-fixture.js';

const TINY = { dModel: 16, dFf: 32, heads: 2, encLayers: 1, decLayers: 1, dEmb: 8, seqLen: 6, aeHidden: 8 };

function maxRelDiff(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(a[i]!), Math.abs(b[i]!));
  }
  return num / Math.max(den, 1e-12);
}

describe('backend selection', () => {
  const saved = process.env.AETN_BACKEND;
  afterAll(() => {
    if (saved === undefined) delete process.env.AETN_BACKEND;
    else process.env.AETN_BACKEND = saved;
  });

  it('takes the flag first, then AETN_BACKEND, then wasm', () => {
    process.env.AETN_BACKEND = 'cpu';
    expect(resolveBackendName('wasm')).toBe('wasm');
    expect(resolveBackendName(undefined)).toBe('cpu');
    delete process.env.AETN_BACKEND;
    expect(resolveBackendName(undefined)).toBe('wasm');
    expect(resolveBackendName(' CPU ')).toBe('cpu');
  });

  it('refuses an unknown backend by name', () => {
    expect(() => resolveBackendName('cuda')).toThrow(UserError);
    expect(() => resolveBackendName('cuda')).toThrow(/unknown backend 'cuda'.*wasm, tensorflow, cpu/);
  });

  it('explains how to install tensorflow when it is absent', async () => {
    const err = await initBackend('tensorflow').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(String((err as Error).message)).toMatch(/npm install @tensorflow\/tfjs-node-gpu@4\.22\.0/);
    expect(String((err as Error).message)).toMatch(/--backend wasm/);
  });

  it('reports what runs: the backend that holds and computes new tensors, and which GEMM', async () => {
    // Computes a product and checks that its result lives on `name`'s backend (not only that the name came back).
    const product = (name: string): number[] => {
      const backend = tf.findBackend(name)!;
      const before = backend.numDataIds();
      const p = tf.matMul(tf.tensor2d([[1, 2], [3, 4]]), tf.tensor2d([[5, 6], [7, 8]]));
      expect(backend.numDataIds()).toBeGreaterThan(before);
      return Array.from(p.dataSync());
    };
    const info = await initBackend('wasm');
    expect(product('wasm')).toEqual([19, 22, 43, 50]);
    expect(info.detail).toMatch(/^wasm \((no )?simd, /);
    const native = loadNativeGemm().ok && nativeGemmMode() !== 'off';
    expect(info.gemm).toBe(native ? 'openblas' : 'stock');
    expect(info.detail).toMatch(native ? /wasm\+openblas: every BatchMatMul/ : /stock matMul: /);
    const cpu = await initBackend('cpu');
    expect(product('cpu')).toEqual([19, 22, 43, 50]);
    expect(cpu).toEqual({ name: 'cpu', detail: 'cpu (pure JS)', gemm: 'stock' });
  });
});

describe('wasm UnsortedSegmentSum', () => {
  async function segsum(backend: string): Promise<Float32Array> {
    await initBackend(backend);
    return tf.tidy(() => {
      const x = tf.tensor2d([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [6, 2]);
      // Negative and out-of-range ids are dropped; repeated ids accumulate.
      const ids = tf.tensor1d([2, 0, 2, -1, 7, 3], 'int32');
      return tf.unsortedSegmentSum(x, ids, 4).dataSync() as Float32Array;
    });
  }

  it('sums segments like the cpu kernel', async () => {
    const w = await segsum('wasm');
    const c = await segsum('cpu');
    expect(Array.from(w)).toEqual([3, 4, 0, 0, 6, 8, 11, 12]);
    expect(Array.from(w)).toEqual(Array.from(c));
  });

  it('gives the gather gradient of the cpu backend', async () => {
    async function gatherGrad(backend: string): Promise<Float32Array> {
      await initBackend(backend);
      const w = tf.variable(tf.randomNormal([30, 8], 0, 1, 'float32', 3));
      const ids = tf.tensor2d([[1, 3, 3], [29, 0, 1]], [2, 3], 'int32');
      const { grads } = tf.variableGrads(() => tf.sum(tf.square(tf.matMul(tf.reshape(tf.gather(w, ids), [6, 8]), w, false, true))) as tf.Scalar, [w]);
      const g = grads[w.name]!.dataSync() as Float32Array;
      const out = g.slice();
      tf.dispose([w, ids, grads[w.name]!]);
      return out;
    }
    const gw = await gatherGrad('wasm');
    const gc = await gatherGrad('cpu');
    expect(maxRelDiff(gw, gc)).toBeLessThan(1e-5);
    // Rows never gathered still get gradient from the matmul; gathered rows get more: not all zero.
    expect(gw.some((v) => v !== 0)).toBe(true);
  });
});

describe('wasm kernel replacements (fast transposed/batched matMul, row-copy gather)', () => {
  async function on(backend: string, f: () => tf.Tensor): Promise<Float32Array> {
    await initBackend(backend);
    return tf.tidy(() => f().dataSync() as Float32Array).slice();
  }
  const mk = (shape: number[], seed: number) => tf.randomNormal(shape, 0, 1, 'float32', seed);

  it('matMul with every transpose combination, 2-D and batched, equals cpu', async () => {
    const cases: Array<[number[], number[], boolean, boolean]> = [
      [[7, 5], [5, 3], false, false],
      [[7, 5], [3, 5], false, true],
      [[5, 7], [5, 3], true, false],
      [[5, 7], [3, 5], true, true],
      [[2, 3, 7, 5], [2, 3, 5, 4], false, false],
      [[2, 3, 7, 5], [2, 3, 4, 5], false, true],
      [[2, 3, 5, 7], [2, 3, 5, 4], true, false],
      [[4, 7, 5], [5, 6], false, false], // broadcast B: not the per-batch path
    ];
    for (const [sa, sb, ta, tb] of cases) {
      const f = () => tf.matMul(mk(sa, 1), mk(sb, 2), ta, tb);
      const w = await on('wasm', f);
      const c = await on('cpu', f);
      expect(w.length).toBe(c.length);
      expect(maxRelDiff(w, c)).toBeLessThan(1e-5);
    }
  });

  it('gather along any axis equals cpu and refuses out-of-range indices', async () => {
    const x = () => mk([4, 6, 3], 3);
    for (const axis of [0, 1, 2]) {
      const f = () => tf.gather(x(), tf.tensor2d([[0, 2], [1, 1], [2, 0]], [3, 2], 'int32'), axis);
      expect(Array.from(await on('wasm', f))).toEqual(Array.from(await on('cpu', f)));
    }
    const ints = () => tf.gather(tf.tensor1d([10, 20, 30], 'int32'), tf.tensor1d([2, 0], 'int32'));
    expect(Array.from(await on('wasm', ints))).toEqual([30, 10]);
    await initBackend('wasm');
    expect(() => tf.gather(tf.ones([3, 2]), tf.tensor1d([3], 'int32'))).toThrow(/index value 3 is not in \[0, 2\]/);
  });
});

describe('a training step of the real AETN', () => {
  it('has the same losses and gradient on wasm as on cpu', async () => {
    const { vocab, examples } = tinyWorld(24, 30, 11);
    const batch = examples.slice(0, 24);
    const run = async (backend: string) => {
      await initBackend(backend);
      const cfg = aetnFactory.makeConfig(vocab, { ...TINY, variant: 'aetn' }, { seqLen: 6, dateBuckets: 52 });
      const engine = LocalEngine.create(aetnFactory, cfg, 5);
      const grad = new Float32Array(engine.numParams);
      const r = engine.gradientSync(batch, 99, grad);
      await engine.close();
      return { r, grad };
    };
    const w = await run('wasm');
    const c = await run('cpu');
    expect(Number.isFinite(w.r.losses.total)).toBe(true);
    expect(w.r.losses.mask).toBeGreaterThan(0); // [MASK] positions were drawn and scored
    for (const k of ['total', 'main', 'aux', 'mask', 'reg'] as const) {
      expect(Math.abs(w.r.losses[k] - c.r.losses[k])).toBeLessThanOrEqual(1e-4 * Math.max(1, Math.abs(c.r.losses[k])));
    }
    expect(maxRelDiff(w.grad, c.grad)).toBeLessThan(1e-3);
    expect(w.grad.some((v) => v !== 0)).toBe(true);
  });
});

describe('wasm kernels replaced for speed (src/model/wasm-kernels.ts)', () => {
  it('Sum over leading axes gives the stock kernel\'s bits; Identity and Cast share data and keep values', async () => {
    await initBackend('wasm');
    const stock = tf.getKernel(tf.Sum, 'wasm')!;
    const x = tf.randomNormal([37, 5, 19], 0, 3, 'float32', 4);
    const cases: Array<[number | number[], boolean]> = [[0, false], [[0, 1], false], [[1, 0], true], [-3, true], [1, false], [-1, false], [[0, 1, 2], false]];
    for (const [axis, keepDims] of cases) {
      const ours = tf.sum(x, axis, keepDims);
      const ref = stock.kernelFunc({ inputs: { x }, backend: tf.backend(), attrs: { axis, keepDims } }) as tf.TensorInfo;
      expect(ours.shape, `axis ${axis}`).toEqual(ref.shape);
      const refVals = tf.backend().readSync(ref.dataId) as Float32Array;
      expect(Buffer.from((ours.dataSync() as Float32Array).buffer).equals(Buffer.from(refVals.buffer)), `axis ${axis}`).toBe(true);
      tf.backend().disposeData(ref.dataId);
      ours.dispose();
    }
    const c = tf.clone(x);
    const f = tf.cast(x, 'float32');
    const i = tf.cast(tf.mul(x, 10), 'int32');
    x.dispose();
    expect(c.dataSync().length).toBe(37 * 5 * 19);
    expect(Array.from(f.dataSync())).toEqual(Array.from(c.dataSync()));
    expect(i.dtype).toBe('int32');
    expect(Array.from(i.dataSync()).every(Number.isInteger)).toBe(true);
    tf.dispose([c, f, i]);
  });
});
