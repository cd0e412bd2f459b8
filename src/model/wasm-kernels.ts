// Kernels the wasm backend lacks but our backward pass needs, written in JS over the wasm heap.
// tfjs-backend-wasm 4.22 has no UnsortedSegmentSum, and the gradient of tf.gather (every embedding
// lookup: app table, dates, behaviour types) is an UnsortedSegmentSum of the upstream gradient.
// All other kernels of the AETN forward and backward pass exist in wasm (checked by a training step
// of the real model in test/model/backend.test.ts).
import * as tf from '@tensorflow/tfjs-core';
import type { KernelConfig, TensorInfo, DataType } from '@tensorflow/tfjs-core';
import { runtimeSettings } from '../config/config.js';

// The parts of the wasm backend object we use (its class is not exported from the package index).
interface WasmBackendLike {
  readSync(dataId: unknown): ArrayLike<number>;
  makeOutput(shape: number[], dtype: DataType): TensorInfo;
  typedArrayFromHeap(t: TensorInfo): Float32Array | Int32Array | Uint8Array;
}

function unsortedSegmentSum(args: { inputs: Record<string, TensorInfo>; backend: unknown; attrs?: Record<string, unknown> }): TensorInfo {
  const backend = args.backend as WasmBackendLike;
  const x = args.inputs.x!;
  const segmentIds = args.inputs.segmentIds!;
  const numSegments = Number(args.attrs?.numSegments);
  const innerShape = x.shape.slice(segmentIds.shape.length);
  const inner = innerShape.reduce((a, b) => a * b, 1);
  const out = backend.makeOutput([numSegments, ...innerShape], x.dtype);
  // Views are taken after the allocation: growing the heap would detach earlier ones.
  const xv = backend.typedArrayFromHeap(x);
  const ids = backend.typedArrayFromHeap(segmentIds);
  const o = backend.typedArrayFromHeap(out);
  o.fill(0);
  const n = ids.length;
  for (let i = 0; i < n; i++) {
    const id = ids[i]!;
    // Negative or out-of-range ids are dropped, as in TensorFlow's kernel.
    if (id < 0 || id >= numSegments) continue;
    const src = i * inner;
    const dst = id * inner;
    for (let j = 0; j < inner; j++) o[dst + j] += xv[src + j]!;
  }
  return out;
}

// tfjs-backend-wasm's BatchMatMul runs XNNPACK's fast GEMM only for untransposed operands; with
// transposeA or transposeB it falls back to a naive loop measured 10-20x slower here (bench/
// model-train.ts). Backward passes are full of transposed products (dX = dY W^T, dW = X^T dY) and
// attention computes Q K^T, so transposing the operand explicitly (a memory-bound copy) and then
// running the fast kernel wins by far. When the native OpenBLAS GEMM is built (native-gemm.ts), it
// replaces this kernel, which then stays the fallback and the benchmark's 'stock' comparison.
function fastTransposedMatMul(orig: KernelConfig, transpose: KernelConfig): KernelConfig['kernelFunc'] {
  return (args) => {
    const attrs = (args.attrs ?? {}) as { transposeA?: boolean; transposeB?: boolean };
    const inputs0 = args.inputs as Record<string, TensorInfo>;
    if (!attrs.transposeA && !attrs.transposeB && !batched(inputs0.a!, inputs0.b!)) return orig.kernelFunc(args);
    const backend = args.backend as { disposeData(id: unknown): boolean };
    const inputs = args.inputs as Record<string, TensorInfo>;
    const temps: TensorInfo[] = [];
    const flip = (t: TensorInfo): TensorInfo => {
      const r = t.shape.length;
      const perm = Array.from({ length: r }, (_, i) => i);
      perm[r - 1] = r - 2;
      perm[r - 2] = r - 1;
      const out = transpose.kernelFunc({ inputs: { x: t }, backend: args.backend, attrs: { perm } }) as TensorInfo;
      temps.push(out);
      return out;
    };
    const a = attrs.transposeA ? flip(inputs.a!) : inputs.a!;
    const b = attrs.transposeB ? flip(inputs.b!) : inputs.b!;
    try {
      const plain = { ...args, inputs: { ...inputs, a, b }, attrs: { ...attrs, transposeA: false, transposeB: false } };
      return batched(a, b) ? perBatchMatMul(orig, plain, a, b) : orig.kernelFunc(plain);
    } finally {
      for (const t of temps) backend.disposeData(t.dataId);
    }
  };
}

const size = (shape: number[]) => shape.reduce((x, y) => x * y, 1);

/** Both operands carry the same batch of > 1 matrices (attention: [B, H, T, .] x [B, H, ., T]). */
function batched(a: TensorInfo, b: TensorInfo): boolean {
  const ba = a.shape.slice(0, -2);
  const bb = b.shape.slice(0, -2);
  return size(ba) > 1 && ba.length === bb.length && ba.every((d, i) => d === bb[i]);
}

// The wasm kernel's batched path (more than one matrix per operand) is the slow loop too; one fast
// 2-D product per batch entry, through scratch tensors in the wasm heap, is ~5x faster at
// attention sizes (51 x 64 x 51).
function perBatchMatMul(orig: KernelConfig, args: Parameters<KernelConfig['kernelFunc']>[0], a: TensorInfo, b: TensorInfo): TensorInfo {
  const backend = args.backend as unknown as WasmBackendLike & { disposeData(id: unknown): boolean };
  const r = a.shape.length;
  const [m, k] = [a.shape[r - 2]!, a.shape[r - 1]!];
  const n = b.shape[r - 1]!;
  const count = size(a.shape.slice(0, -2));
  const out = backend.makeOutput([...a.shape.slice(0, -2), m, n], 'float32');
  for (let i = 0; i < count; i++) {
    const ai = backend.makeOutput([m, k], 'float32');
    const bi = backend.makeOutput([k, n], 'float32');
    // Views are taken after every allocation: growing the heap detaches older views.
    backend.typedArrayFromHeap(ai).set(backend.typedArrayFromHeap(a).subarray(i * m * k, (i + 1) * m * k));
    backend.typedArrayFromHeap(bi).set(backend.typedArrayFromHeap(b).subarray(i * k * n, (i + 1) * k * n));
    const oi = orig.kernelFunc({ ...args, inputs: { a: ai, b: bi } }) as TensorInfo;
    backend.typedArrayFromHeap(out).set(backend.typedArrayFromHeap(oi), i * m * n);
    backend.disposeData(ai.dataId);
    backend.disposeData(bi.dataId);
    backend.disposeData(oi.dataId);
  }
  return out;
}

// tfjs-backend-wasm's GatherV2 copies element by element (~48 ms for 2000 rows of 512 floats here);
// the tied app matrix W_a = W_app + C[category] gathers M rows every step. Row copies with
// TypedArray.set are ~20x faster. Only batchDims = 0 (all our gathers) takes this path.
function fastGather(orig: KernelConfig): KernelConfig['kernelFunc'] {
  return (args) => {
    const attrs = (args.attrs ?? {}) as { axis?: number; batchDims?: number };
    if (attrs.batchDims) return orig.kernelFunc(args);
    const backend = args.backend as WasmBackendLike;
    const x = args.inputs.x as TensorInfo;
    const indices = args.inputs.indices as TensorInfo;
    const axis = (attrs.axis ?? 0) < 0 ? x.shape.length + (attrs.axis ?? 0) : (attrs.axis ?? 0);
    const dim = x.shape[axis]!;
    const outer = size(x.shape.slice(0, axis));
    const inner = size(x.shape.slice(axis + 1));
    const n = size(indices.shape);
    const out = backend.makeOutput([...x.shape.slice(0, axis), ...indices.shape, ...x.shape.slice(axis + 1)], x.dtype);
    const xv = backend.typedArrayFromHeap(x);
    const iv = backend.typedArrayFromHeap(indices);
    const ov = backend.typedArrayFromHeap(out);
    for (let j = 0; j < n; j++) {
      const id = iv[j]!;
      if (id < 0 || id >= dim) throw new Error(`GatherV2: the index value ${id} is not in [0, ${dim - 1}]`);
    }
    for (let o = 0; o < outer; o++) {
      for (let j = 0; j < n; j++) {
        const src = (o * dim + iv[j]!) * inner;
        ov.set(xv.subarray(src, src + inner), (o * n + j) * inner);
      }
    }
    return out;
  };
}

// tfjs-backend-wasm's Identity, and its Cast to the same dtype, copy the whole tensor. The backward
// pass calls them for every product (the Multiply gradient casts both operands to float32) and for
// every gradient passed through unchanged: ~400 copies per paper-size training chunk, ~7% of its
// time. Like the cpu backend's Identity and the wasm Reshape, these return the same data with one
// more reference: no kernel writes into its inputs, so sharing is safe and the values are the same.
function aliasKernel(orig: KernelConfig, sameDtype: (args: Parameters<KernelConfig['kernelFunc']>[0]) => boolean): KernelConfig['kernelFunc'] {
  return (args) => {
    const x = args.inputs.x as TensorInfo;
    if (x.dtype === 'string' || !sameDtype(args)) return orig.kernelFunc(args);
    (args.backend as unknown as { incRef(id: unknown): void }).incRef(x.dataId);
    return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
  };
}

// tfjs-backend-wasm's Sum reduces innermost axes only: a sum over the leading axes (every bias
// gradient, dy summed over the rows [N, d] -> [d]) first transposes the whole input. Summing rows
// into one accumulator row reads it once, in place. Each output is the same float32 sequence of
// additions as the wasm kernel's (x[0] + x[1] + ... in row order, from 0), so the bits are equal.
function leadingAxesSum(orig: KernelConfig): KernelConfig['kernelFunc'] {
  return (args) => {
    const x = args.inputs.x as TensorInfo;
    const attrs = (args.attrs ?? {}) as { axis?: number | number[]; keepDims?: boolean };
    const rank = x.shape.length;
    if (attrs.axis === undefined || attrs.axis === null || x.dtype !== 'float32') return orig.kernelFunc(args);
    const axes = [...new Set((Array.isArray(attrs.axis) ? attrs.axis : [attrs.axis]).map((a) => (a < 0 ? a + rank : a)))].sort((a, b) => a - b);
    const leading = axes.length > 0 && axes.length < rank && axes.every((a, i) => a === i);
    if (!leading) return orig.kernelFunc(args);
    const backend = args.backend as WasmBackendLike;
    const rows = size(x.shape.slice(0, axes.length));
    const kept = x.shape.slice(axes.length);
    const cols = size(kept);
    const out = backend.makeOutput(attrs.keepDims ? [...axes.map(() => 1), ...kept] : kept, 'float32');
    const xv = backend.typedArrayFromHeap(x) as Float32Array;
    const ov = backend.typedArrayFromHeap(out) as Float32Array;
    ov.fill(0);
    for (let r = 0; r < rows; r++) {
      const base = r * cols;
      for (let c = 0; c < cols; c++) ov[c] += xv[base + c]!;
    }
    return out;
  };
}

let registered = false;

export function registerWasmKernels(): void {
  if (registered) return;
  registered = true;
  const have = new Set(tf.getKernelsForBackend('wasm').map((k) => k.kernelName));
  const kernels: KernelConfig[] = [
    { kernelName: tf.UnsortedSegmentSum, backendName: 'wasm', kernelFunc: unsortedSegmentSum as unknown as KernelConfig['kernelFunc'] },
  ];
  for (const k of kernels) if (!have.has(k.kernelName)) tf.registerKernel(k);
  const gather = tf.getKernel(tf.GatherV2, 'wasm');
  if (gather) {
    const orig = { ...gather };
    tf.unregisterKernel(tf.GatherV2, 'wasm');
    tf.registerKernel({ ...orig, kernelFunc: fastGather(orig) });
  }
  for (const [name, same] of [
    [tf.Identity, () => true],
    [tf.Cast, (a: Parameters<KernelConfig['kernelFunc']>[0]) => (a.attrs as { dtype?: string } | undefined)?.dtype === (a.inputs.x as TensorInfo).dtype],
  ] as const) {
    const k = tf.getKernel(name, 'wasm');
    if (!k || process.env.AETN_WASM_COPY_IDENTITY === '1') continue;
    const orig = { ...k };
    tf.unregisterKernel(name, 'wasm');
    tf.registerKernel({ ...orig, kernelFunc: aliasKernel(orig, same) });
  }
  const sum = tf.getKernel(tf.Sum, 'wasm');
  if (sum && process.env.AETN_WASM_STOCK_SUM !== '1') {
    const orig = { ...sum };
    tf.unregisterKernel(tf.Sum, 'wasm');
    tf.registerKernel({ ...orig, kernelFunc: leadingAxesSum(orig) });
  }
  const mm = tf.getKernel(tf.BatchMatMul, 'wasm');
  const tr = tf.getKernel(tf.Transpose, 'wasm');
  if (mm && tr && !runtimeSettings().wasmNaiveTransposedMatmul) {
    const orig = { ...mm };
    tf.unregisterKernel(tf.BatchMatMul, 'wasm');
    tf.registerKernel({ ...orig, kernelFunc: fastTransposedMatMul(orig, tr) });
  }
}
