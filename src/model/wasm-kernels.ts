// Kernels the wasm backend lacks but our backward pass needs, written in JS over the wasm heap.
// tfjs-backend-wasm 4.22 has no UnsortedSegmentSum, and the gradient of tf.gather (every embedding
// lookup: app table, dates, behaviour types) is an UnsortedSegmentSum of the upstream gradient.
// All other kernels of the AETN forward and backward pass exist in wasm (checked by a training step
// of the real model in test/model/backend.test.ts).
import * as tf from '@tensorflow/tfjs-core';
import type { KernelConfig, TensorInfo, DataType } from '@tensorflow/tfjs-core';

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
  // readSync copies out of the heap, so the values stay valid when makeOutput grows the heap.
  const xv = backend.readSync(x.dataId);
  const ids = backend.readSync(segmentIds.dataId);
  const innerShape = x.shape.slice(segmentIds.shape.length);
  const inner = innerShape.reduce((a, b) => a * b, 1);
  const out = backend.makeOutput([numSegments, ...innerShape], x.dtype);
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

let registered = false;

export function registerWasmKernels(): void {
  if (registered) return;
  registered = true;
  const have = new Set(tf.getKernelsForBackend('wasm').map((k) => k.kernelName));
  const kernels: KernelConfig[] = [
    { kernelName: tf.UnsortedSegmentSum, backendName: 'wasm', kernelFunc: unsortedSegmentSum as unknown as KernelConfig['kernelFunc'] },
  ];
  for (const k of kernels) if (!have.has(k.kernelName)) tf.registerKernel(k);
}
