// Optional native GEMM: OpenBLAS's cblas_sgemm through the N-API addon in native/gemm, registered as
// the BatchMatMul kernel of the wasm and cpu backends. Matrix products are ~70% of a training step's
// time, and XNNPACK compiled to WebAssembly reaches a fraction of the per-core rate OpenBLAS gets
// (bench/model-train.ts measures both in one run). The cpu backend keeps its pure-JS kernel: it is
// the tests' ground truth, and its naive loops give bit-identical rows however a batch is split over
// worker threads (test/model/head.test.ts relies on it); OpenBLAS's blocking does not (~3e-8 apart).
// The addon is built by `npm run build:native`
// when a compiler and libopenblas-dev are present; without it, or with AETN_NATIVE_GEMM=0, the stock
// kernels run and the backend report says so.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { runtimeSettings } from '../config/config.js';
import type { DataType, KernelConfig, TensorInfo } from '@tensorflow/tfjs-core';

export interface GemmAddon {
  /**
   * c[i] = op(a[ia]) x op(b[ib]) for i < batch (row-major, contiguous); ia = aIndex[i] when given,
   * else 0 when batchA is 1, else i (likewise b). Throws on any length or index that does not fit.
   */
  gemm(
    a: Float32Array,
    b: Float32Array,
    c: Float32Array,
    batch: number,
    m: number,
    n: number,
    k: number,
    transA: boolean,
    transB: boolean,
    batchA: number,
    batchB: number,
    aIndex?: Int32Array | null,
    bIndex?: Int32Array | null,
    invariant?: Invariance,
  ): void;
  /** Process-wide: every worker thread shares OpenBLAS's thread count. */
  setThreads(n: number): void;
  getThreads(): number;
  config(): string;
}

/**
 * 0: plain OpenBLAS calls. 1: batch-invariant rows of op(a) against one shared b (activations x
 * weights). 2: batch-invariant per product (each product belongs to one item: per-user attention,
 * gathers), single-row products summed in k order.
 */
export type Invariance = 0 | 1 | 2;

export type NativeGemm = { ok: true; addon: GemmAddon; path: string } | { ok: false; reason: string };

const require = createRequire(import.meta.url);
const ADDON = join('native', 'gemm', 'build', 'Release', 'aetn_gemm.node');

let loaded: NativeGemm | undefined;

/**
 * How products run on OpenBLAS (AETN_NATIVE_GEMM, read at every backend initialisation):
 *   'default' (unset, or '1') - every product; products outside a gradient (inference) in the addon's
 *                batch-invariant mode, products recorded for a gradient (forward under the tape, and
 *                the backward pass) in plain calls.
 *   'all'      - every product in plain calls, inference included (fastest, uses the BLAS threads,
 *                but a row's bits depend on how rows are batched).
 *   'off'      ('0') - none: the stock kernel.
 * Why inference needs the invariant mode: OpenBLAS's result for a row depends on the shape of the
 * call, the row's position in it and the thread count (measured: 1-45% of outputs differ in the last
 * bit when the same rows are multiplied inside a batch of another size). `aetn embed` needs a user's
 * vector bit-identical however users are batched: a resumed run must write the vectors an
 * uninterrupted one would (test/embed/embed-job.test.ts). The invariant mode (native/gemm/gemm.c)
 * issues rows in zero-padded blocks of one fixed shape, each a single-threaded OpenBLAS call (our own
 * threads share the blocks), and sums single-row products in k
 * order. Training has no such property to keep (a gradient sums over the batch), and repeating the
 * same step is still bit-exact.
 */
export type NativeGemmMode = 'default' | 'all' | 'off';

export function nativeGemmMode(): NativeGemmMode {
  return runtimeSettings().nativeGemm;
}

/** False when AETN_NATIVE_GEMM switches the native kernel off. */
export function nativeGemmWanted(): boolean {
  return nativeGemmMode() !== 'off';
}

/** Loads the addon once per thread; never throws (a missing addon is a normal configuration). */
export function loadNativeGemm(): NativeGemm {
  if (loaded) return loaded;
  // src/model/ under tsx/vitest, dist/src/model/ when compiled: the repo root is 2 or 3 levels up.
  const here = dirname(fileURLToPath(import.meta.url));
  const path = [join(here, '..', '..', ADDON), join(here, '..', '..', '..', ADDON)].find((p) => existsSync(p));
  if (!path) return (loaded = { ok: false, reason: 'addon not built (npm run build:native; needs a C compiler and libopenblas-dev)' });
  try {
    const addon = require(path) as GemmAddon;
    addon.setThreads(defaultThreads());
    loaded = { ok: true, addon, path };
  } catch (err) {
    loaded = { ok: false, reason: `addon does not load: ${(err instanceof Error ? err.message : String(err)).split('\n')[0]}` };
  }
  return loaded;
}

/** OPENBLAS_NUM_THREADS when set, else one thread per core. */
function defaultThreads(): number {
  const env = Number(process.env.OPENBLAS_NUM_THREADS);
  return Number.isInteger(env) && env >= 1 ? env : Math.max(1, availableParallelism());
}

/**
 * Sets OpenBLAS's thread count (process-wide). Worker pools call it with 1 per worker: the workers
 * already fill the cores, and extra BLAS threads would only contend with them.
 */
export function setNativeGemmThreads(n: number): void {
  const g = loadNativeGemm();
  if (g.ok) g.addon.setThreads(Math.max(1, Math.floor(n)));
}

/** Back to the default (cores, or OPENBLAS_NUM_THREADS) once no worker pool holds the cores. */
export function resetNativeGemmThreads(): void {
  if (loaded?.ok) loaded.addon.setThreads(defaultThreads());
}

/**
 * E.g. 'OpenBLAS 0.3.21 Zen, 2 threads (2 cores / workers in a worker pool)' when the addon is
 * loaded, else undefined. The count is this thread's setting; worker pools lower it (worker-pool.ts).
 */
export function nativeGemmSummary(): string | undefined {
  const g = loadNativeGemm();
  if (!g.ok) return undefined;
  const cfg = g.addon.config();
  const version = /OpenBLAS (\S+)/.exec(cfg)?.[1] ?? '?';
  const core = /core (\S+)/.exec(cfg)?.[1] ?? '?';
  const t = g.addon.getThreads();
  return `OpenBLAS ${version} ${core}, ${t} thread${t === 1 ? '' : 's'} (${availableParallelism()} cores / workers in a worker pool)`;
}

const size = (shape: number[]) => shape.reduce((x, y) => x * y, 1);

interface Plan {
  outShape: number[];
  batch: number;
  m: number;
  n: number;
  k: number;
  batchA: number;
  batchB: number;
  aIndex: Int32Array | null;
  bIndex: Int32Array | null;
}

/**
 * Shapes of a BatchMatMul: the batch dims broadcast numpy-style (a dim of 1 broadcasts). When each
 * operand's batch is either 1 or the whole output batch, the addon indexes directly; any other
 * broadcast ([2,1] x [1,3]) gets explicit per-product indices.
 */
export function planBatchMatMul(aShape: number[], bShape: number[], transposeA: boolean, transposeB: boolean): Plan {
  if (aShape.length < 2 || bShape.length < 2) throw new Error(`BatchMatMul needs operands of rank >= 2, got shapes [${aShape}] and [${bShape}]`);
  const ra = aShape.length;
  const rb = bShape.length;
  const m = transposeA ? aShape[ra - 1]! : aShape[ra - 2]!;
  const ka = transposeA ? aShape[ra - 2]! : aShape[ra - 1]!;
  const kb = transposeB ? bShape[rb - 1]! : bShape[rb - 2]!;
  const n = transposeB ? bShape[rb - 2]! : bShape[rb - 1]!;
  if (ka !== kb) {
    throw new Error(`Error in matMul: inner shapes (${ka}) and (${kb}) of Tensors with shapes ${aShape} and ${bShape} and transposeA=${transposeA} and transposeB=${transposeB} must match.`);
  }
  const outerA = aShape.slice(0, -2);
  const outerB = bShape.slice(0, -2);
  const outer = tf.broadcast_util.assertAndGetBroadcastShape(outerA, outerB);
  const batch = size(outer);
  const batchA = size(outerA);
  const batchB = size(outerB);
  const direct = (bx: number) => bx === 1 || bx === batch;
  let aIndex: Int32Array | null = null;
  let bIndex: Int32Array | null = null;
  if (!direct(batchA) || !direct(batchB)) {
    aIndex = broadcastIndex(outer, outerA);
    bIndex = broadcastIndex(outer, outerB);
  }
  return { outShape: [...outer, m, n], batch, m, n, k: ka, batchA, batchB, aIndex, bIndex };
}

/** For each flat index of `outer`, the flat index of the (right-aligned, broadcast) operand dims. */
function broadcastIndex(outer: number[], dims: number[]): Int32Array {
  const total = size(outer);
  const idx = new Int32Array(total);
  const off = outer.length - dims.length;
  for (let i = 0; i < total; i++) {
    let rest = i;
    let src = 0;
    let stride = 1;
    for (let d = outer.length - 1; d >= 0; d--) {
      const coord = rest % outer[d]!;
      rest = Math.floor(rest / outer[d]!);
      const od = d - off;
      if (od >= 0) {
        if (dims[od] !== 1) src += coord * stride;
        stride *= dims[od]!;
      }
    }
    idx[i] = src;
  }
  return idx;
}

// The parts of the backend objects we use (their classes are not exported from the package index).
interface WasmBackendLike {
  makeOutput(shape: number[], dtype: DataType): TensorInfo;
  typedArrayFromHeap(t: TensorInfo): Float32Array | Int32Array | Uint8Array;
}

type KernelArgs = Parameters<KernelConfig['kernelFunc']>[0];

function attrsOf(args: KernelArgs) {
  const attrs = (args.attrs ?? {}) as { transposeA?: boolean; transposeB?: boolean };
  return { transposeA: !!attrs.transposeA, transposeB: !!attrs.transposeB };
}

interface EngineStateLike {
  gradientDepth: number;
  activeTape: unknown[] | null | undefined;
}

/** Whether tfjs is recording or back-propagating a gradient right now (see nativeGemmMode). */
function inGradient(): boolean {
  const state = (tf.engine() as unknown as { state: EngineStateLike }).state;
  // The forward pass runs with gradientDepth > 0; the backward pass after it, with the tape still set.
  return state.gradientDepth > 0 || state.activeTape != null;
}

/**
 * Which invariance a product gets (see NativeGemmMode). A rank-2 b is a weight matrix shared by every
 * row of a, rows that belong to different users; a b with batch dims pairs each user's own matrices
 * (attention, the retention gather), whose rows never mix users, so per-product invariance suffices.
 * Decided by rank, not by sizes: a batch of one user must take the path a batch of many takes.
 */
export function invarianceFor(mode: NativeGemmMode, bShape: number[], gradient: boolean): Invariance {
  if (mode === 'all' || gradient) return 0;
  return bShape.length === 2 ? 1 : 2;
}

/**
 * BatchMatMul for the wasm backend: reads both operands and writes the output in place in the wasm
 * heap, one native call for all products of the batch.
 */
export function wasmNativeMatMul(addon: GemmAddon, mode: NativeGemmMode): KernelConfig['kernelFunc'] {
  return (args) => {
    const { a, b } = args.inputs as { a: TensorInfo; b: TensorInfo };
    if (a.dtype !== 'float32' || b.dtype !== 'float32') throw new Error('BatchMatMul for non-float32 tensors is not supported');
    const { transposeA, transposeB } = attrsOf(args);
    const p = planBatchMatMul(a.shape, b.shape, transposeA, transposeB);
    const backend = args.backend as unknown as WasmBackendLike;
    const out = backend.makeOutput(p.outShape, 'float32');
    // Views are taken after the allocation: growing the heap replaces its buffer.
    const av = backend.typedArrayFromHeap(a) as Float32Array;
    const bv = backend.typedArrayFromHeap(b) as Float32Array;
    const ov = backend.typedArrayFromHeap(out) as Float32Array;
    const inv = invarianceFor(mode, b.shape, mode === 'all' ? false : inGradient());
    addon.gemm(av, bv, ov, p.batch, p.m, p.n, p.k, transposeA, transposeB, p.batchA, p.batchB, p.aIndex, p.bIndex, inv);
    return out;
  };
}

const stock = new Map<string, KernelConfig>();
let activeMode: NativeGemmMode = 'off';

/**
 * Makes `backendName`'s BatchMatMul the native one (enabled and the addon loads) or the kernel it
 * replaced (idempotent both ways). Returns whether the native kernel is now active. The replaced
 * kernel stays reachable through stockKernel() for comparisons.
 */
export function useNativeMatMul(backendName: 'wasm', mode: NativeGemmMode): boolean {
  const active = stock.get(backendName);
  if (active && activeMode === mode) return true;
  if (active) {
    // Another mode, or off: the stock kernel goes back first.
    tf.unregisterKernel(tf.BatchMatMul, backendName);
    tf.registerKernel(active);
    stock.delete(backendName);
    activeMode = 'off';
  }
  if (mode === 'off') return false;
  const g = loadNativeGemm();
  if (!g.ok) return false;
  const current = tf.getKernel(tf.BatchMatMul, backendName);
  if (!current) return false;
  stock.set(backendName, { ...current });
  activeMode = mode;
  tf.unregisterKernel(tf.BatchMatMul, backendName);
  tf.registerKernel({
    // setupFunc is kept: it binds the wasm export the stock kernel calls, so switching back later
    // (benchmarks, tests) finds it set up even when the native kernel was registered first.
    ...current,
    kernelFunc: wasmNativeMatMul(g.addon, mode),
  });
  return true;
}

/** The BatchMatMul kernel that was registered before useNativeMatMul replaced it. */
export function stockKernel(backendName: 'wasm'): KernelConfig | undefined {
  return stock.get(backendName);
}

/** The native kernel's mode in this thread ('off' when the stock kernel is registered). */
export function nativeMatMulMode(backendName: string): NativeGemmMode {
  return stock.has(backendName) ? activeMode : 'off';
}
