// Kernel fixes the webgpu backend needs for our backward pass. tfjs-backend-webgpu 4.22's AddN binds
// every input as its own storage buffer in one shader, and a device allows only
// maxStorageBuffersPerShaderStage of them (8 unless more are requested; lavapipe offers 16): the
// gradient of a weight used many times (the tied app matrix, every layer's LayerNorm inputs) sums
// up to ~50 terms, and Dawn then refuses the pipeline ("The number of storage buffers (48) in the
// Compute stage exceeds the maximum per-stage limit (8)") and the sum silently reads as zeros.
// Concat already splits its inputs by that limit; AddN is made to do the same here.
import * as tf from '@tensorflow/tfjs-core';
import type { KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';

interface WebgpuBackendLike {
  device: { limits: { maxStorageBuffersPerShaderStage: number } };
  disposeData(dataId: object): boolean;
}

let registered = false;

/** Replaces the webgpu AddN by one that sums in groups that fit the device's buffer limit. */
export function registerWebgpuKernels(): void {
  if (registered) return;
  const stock = tf.getKernel(tf.AddN, 'webgpu');
  if (!stock) return;
  registered = true;
  const orig: KernelConfig = { ...stock };
  const addN: KernelFunc = (args) => {
    const backend = args.backend as unknown as WebgpuBackendLike;
    // One storage buffer is the output.
    const max = Math.max(2, backend.device.limits.maxStorageBuffersPerShaderStage - 1);
    let terms = args.inputs as unknown as TensorInfo[];
    if (terms.length <= max) return orig.kernelFunc(args);
    // Sums of groups, then sums of those sums: every intermediate is freed once summed.
    const made: TensorInfo[] = [];
    while (terms.length > max) {
      const next: TensorInfo[] = [];
      for (let i = 0; i < terms.length; i += max) {
        const group = terms.slice(i, i + max);
        if (group.length === 1) {
          next.push(group[0]!);
          continue;
        }
        const s = orig.kernelFunc({ ...args, inputs: group as unknown as tf.NamedTensorInfoMap }) as TensorInfo;
        made.push(s);
        next.push(s);
      }
      terms = next;
    }
    const out = orig.kernelFunc({ ...args, inputs: terms as unknown as tf.NamedTensorInfoMap }) as TensorInfo;
    for (const t of made) backend.disposeData(t.dataId);
    return out;
  };
  tf.unregisterKernel(tf.AddN, 'webgpu');
  tf.registerKernel({ ...orig, kernelFunc: addN });
}
