// Backend selection for every tfjs computation (training, embedding, the realtime head).
// The model code is written once against tfjs-core; the backend decides where the kernels run:
//   wasm       - default on CPU hosts: XNNPACK SIMD kernels, single-threaded in Node (no cross-origin
//                isolation), so both cores are used through worker threads (see worker.ts).
//   tensorflow - libtensorflow through @tensorflow/tfjs-node-gpu (CUDA) or @tensorflow/tfjs-node.
//                Optional: they download libtensorflow at install, which these machines cannot do.
//   cpu        - pure JS reference kernels: slow, used by tests as the ground truth.
//   webgpu     - @tensorflow/tfjs-backend-webgpu on Dawn's Node bindings (npm 'webgpu'): a GPU through
//                its Vulkan driver, or Mesa's software Vulkan (lavapipe) on CPU-only hosts. One
//                engine per process (one device); reads back asynchronously only (train-engine.ts asyncReads).
// On wasm, BatchMatMul (~70% of a training step) runs OpenBLAS through the optional addon in
// native/gemm when it is built (src/model/native-gemm.ts); the detail then says 'wasm+openblas'.
// AETN_NATIVE_GEMM=0 keeps the stock kernel. cpu stays pure JS (the reference; see native-gemm.ts).
import { mkdtempSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { isMainThread } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import { runtimeSettings } from '../config/config.js';
import { UserError } from '../util/errors.js';
import { child } from '../util/log.js';
import { loadNativeGemm, nativeGemmMode, nativeGemmSummary, nativeMatMulMode, useNativeMatMul } from './native-gemm.js';
import { registerWasmKernels } from './wasm-kernels.js';
import { registerWebgpuKernels } from './webgpu-kernels.js';
// Side effect: registers every op gradient. tfjs-core's Node bundle registers none, and its
// register_all_gradients.js is extensionless ESM that Node cannot load: `npm run gen:gradients`
// bundles it with esbuild into src/gen/ at build time. The bundled helpers share tfjs-core's global
// engine and gradient registry, so the gradients land where tf.grads looks.
import '../gen/tf-gradients.js';

export type BackendName = 'wasm' | 'tensorflow' | 'cpu' | 'webgpu';
export const BACKENDS: readonly BackendName[] = ['wasm', 'tensorflow', 'cpu', 'webgpu'];

export interface BackendInfo {
  name: BackendName;
  /**
   * What actually runs, e.g. 'wasm (simd, 1 thread; wasm+openblas: BatchMatMul on OpenBLAS 0.3.21 Zen, 2 threads ...)',
   * 'wasm (simd, 1 thread; stock matMul: addon not built ...)' or 'tensorflow (@tensorflow/tfjs-node-gpu)'.
   */
  detail: string;
  /**
   * Which GEMM runs BatchMatMul: 'openblas' (native addon; inference in its batch-invariant mode
   * unless AETN_NATIVE_GEMM=all, see native-gemm.ts) or 'stock' (the backend's own kernel).
   */
  gemm: 'openblas' | 'stock';
}

const logger = child('backend');
const require = createRequire(import.meta.url);

/** Resolves the requested backend name: explicit argument, else runtime.backend (AETN_BACKEND; default wasm). */
export function resolveBackendName(requested?: string): BackendName {
  const name = (requested ?? runtimeSettings().backend).trim().toLowerCase();
  if (!(BACKENDS as readonly string[]).includes(name)) {
    throw new UserError(`unknown backend '${name}': choose one of ${BACKENDS.join(', ')} (flag --backend or env AETN_BACKEND)`);
  }
  return name as BackendName;
}

let current: BackendInfo | undefined;

/**
 * Makes `name` the active tfjs backend of this thread (idempotent). Each worker thread calls it for
 * itself: a tfjs engine lives per thread.
 */
export async function initBackend(requested?: string): Promise<BackendInfo> {
  const name = resolveBackendName(requested);
  // The native GEMM switch is read every time, so one process can compare both (bench/model-train.ts).
  const mode = name === 'wasm' ? nativeGemmMode() : 'off';
  if (current?.name === name && tf.getBackend() === name && nativeMatMulMode(name) === (mode !== 'off' && loadNativeGemm().ok ? mode : 'off')) return current;
  let detail: string;
  if (name === 'cpu') {
    await import('@tensorflow/tfjs-backend-cpu');
    detail = 'cpu (pure JS)';
  } else if (name === 'wasm') {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    // In Node the .wasm binaries are read from disk next to the package's dist files.
    const dist = dirname(require.resolve('@tensorflow/tfjs-backend-wasm'));
    wasm.setWasmPaths(join(dist, '/'));
    registerWasmKernels();
    detail = 'wasm';
  } else if (name === 'webgpu') {
    detail = await loadWebgpu();
  } else {
    detail = await loadTensorflow();
  }
  // Registered before setBackend: the replaced kernel's setupFunc then still runs at initialisation.
  const native = name === 'wasm' && useNativeMatMul(name, mode);
  // Production mode: no debug checks, and no console banner from the cpu backend.
  tf.enableProdMode();
  const ok = await tf.setBackend(name);
  if (!ok) throw new UserError(`backend '${name}' failed to initialise`);
  await tf.ready();
  if (name === 'wasm') {
    const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
    const threads = tf.env().getBool('WASM_HAS_MULTITHREAD_SUPPORT');
    detail = `wasm (${simd ? 'simd' : 'no simd'}, ${threads ? 'multi-threaded' : '1 thread'})`;
  }
  if (native) {
    // Kept in the form '<name> (...)' that logs and tests parse; the tag says which GEMM runs.
    const what = mode === 'all' ? 'every BatchMatMul (plain calls: inference bits depend on batching)' : 'every BatchMatMul (inference: batch-invariant blocks)';
    detail = detail.replace(/\)$/, `; ${name}+openblas: ${what} on ${nativeGemmSummary()})`);
  } else if (name === 'wasm') {
    const g = loadNativeGemm();
    const why = mode === 'off' ? 'AETN_NATIVE_GEMM=0' : g.ok ? 'no BatchMatMul kernel to replace' : g.reason;
    detail = detail.replace(/\)$/, `; stock matMul: ${why})`);
  }
  const first = current === undefined;
  current = { name, detail, gemm: native ? 'openblas' : 'stock' };
  // Info once per main thread (every command's log then says which GEMM runs); workers log at debug.
  const log = first && isMainThread ? logger.info.bind(logger) : logger.debug.bind(logger);
  log({ backend: name, detail, gemm: current.gemm }, 'tfjs backend ready');
  return current;
}

async function loadTensorflow(): Promise<string> {
  const errors: string[] = [];
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      // A variable specifier keeps TypeScript from requiring the optional packages at compile time.
      const spec: string = pkg;
      await import(spec);
      if (!tf.findBackend('tensorflow')) {
        throw new Error(`${pkg} loaded but registered no 'tensorflow' backend with this @tensorflow/tfjs-core (version mismatch: install ${pkg}@${tf.version_core})`);
      }
      return `tensorflow (${pkg})`;
    } catch (err) {
      errors.push(`${pkg}: ${firstLine(err)}`);
    }
  }
  throw new UserError(
    `backend 'tensorflow' needs @tensorflow/tfjs-node-gpu (CUDA) or @tensorflow/tfjs-node, and neither loads here ` +
      `(${errors.join('; ')}). Install one matching tfjs-core ${tf.version_core}, e.g. ` +
      `'npm install @tensorflow/tfjs-node-gpu@${tf.version_core}', or use --backend wasm.`,
  );
}

/** What the WebGPU adapter request answered: the adapter's description, or why there is none. */
export interface WebgpuProbe {
  ok: boolean;
  /** e.g. 'llvmpipe: Mesa 25.0.7-2~bpo12+1 (LLVM 15.0.6) (mesa, software)', or the reason for none. */
  detail: string;
  /** What requestAdapter answered, verbatim: 'an adapter', 'null', or 'threw: <message>'. */
  answer?: string;
  /** The adapter's info (vendor, architecture, device, description) and two of its limits. */
  adapter?: { vendor: string; architecture: string; device: string; description: string; maxStorageBufferBindingSize: number; maxBufferSize: number };
}

const LAVAPIPE_HINT =
  "on a CPU-only Debian bookworm host install Mesa's software Vulkan driver: " +
  "'apt-get install -t bookworm-backports mesa-vulkan-drivers' (bookworm's own Mesa 22.3 is refused by Dawn); " +
  "on a GPU host, the GPU's Vulkan driver";

let webgpuProbe: Promise<WebgpuProbe> | undefined;

/**
 * Sets up WebGPU in this thread once: Dawn's globals (GPUBufferUsage, ...) on globalThis and
 * navigator.gpu = create([]), then asks for an adapter. Never throws: the answer says what is missing.
 * Tests use it to skip when no adapter can be had.
 */
export function probeWebgpu(): Promise<WebgpuProbe> {
  webgpuProbe ??= (async (): Promise<WebgpuProbe> => {
    // Dawn warns "XDG_RUNTIME_DIR is invalid" on every start unless it names a private directory.
    if (!process.env.XDG_RUNTIME_DIR) process.env.XDG_RUNTIME_DIR = mkdtempSync(join(tmpdir(), 'aetn-xdg-'));
    let mod: { create: (flags: string[]) => unknown; globals: Record<string, unknown> };
    try {
      const spec: string = 'webgpu';
      mod = (await import(spec)) as typeof mod;
    } catch (err) {
      return { ok: false, detail: `the npm package 'webgpu' (Dawn's Node bindings) does not load: ${firstLine(err)}; run 'npm install'` };
    }
    Object.assign(globalThis, mod.globals);
    const gpu = mod.create([]) as { requestAdapter(o?: object): Promise<{ info?: Record<string, string>; limits?: Record<string, number> } | null> };
    const g = globalThis as { navigator?: Record<string, unknown> };
    if (g.navigator) Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true, writable: true });
    else Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
    let adapter: { info?: Record<string, string>; limits?: Record<string, number> } | null;
    try {
      adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    } catch (err) {
      return { ok: false, answer: `threw: ${firstLine(err)}`, detail: `the WebGPU adapter request failed: ${firstLine(err)}; ${LAVAPIPE_HINT}` };
    }
    if (!adapter) return { ok: false, answer: String(adapter), detail: `no WebGPU adapter (Dawn found no usable Vulkan driver): ${LAVAPIPE_HINT}` };
    const i = adapter.info ?? {};
    const what = [i.vendor, i.architecture].filter((x) => x).join(', ');
    const info = {
      vendor: i.vendor ?? '',
      architecture: i.architecture ?? '',
      device: i.device ?? '',
      description: i.description ?? '',
      maxStorageBufferBindingSize: adapter.limits?.maxStorageBufferBindingSize ?? 0,
      maxBufferSize: adapter.limits?.maxBufferSize ?? 0,
    };
    return { ok: true, answer: 'an adapter', adapter: info, detail: `${i.description || i.device || 'unnamed adapter'}${what ? ` (${what})` : ''}` };
  })();
  return webgpuProbe;
}

async function loadWebgpu(): Promise<string> {
  const probe = await probeWebgpu();
  if (!probe.ok) throw new UserError(`backend 'webgpu' cannot start: ${probe.detail}. Or use --backend wasm.`);
  // The package registers its backend at import time, and only when navigator.gpu exists (set above).
  await import('@tensorflow/tfjs-backend-webgpu');
  if (!tf.findBackendFactory('webgpu')) throw new UserError("backend 'webgpu': @tensorflow/tfjs-backend-webgpu registered no backend (navigator.gpu missing at import)");
  registerWebgpuKernels();
  return `webgpu (${probe.detail})`;
}

/**
 * The webgpu device's largest storage buffer binding in bytes (maxStorageBufferBindingSize: 128 MiB
 * on lavapipe, GiBs on most GPUs). tfjs-backend-webgpu asks for the adapter's limit. Needs
 * initBackend('webgpu') first.
 */
export function webgpuMaxBufferBytes(): number {
  const b = tf.findBackend('webgpu') as unknown as { device?: { limits?: { maxStorageBufferBindingSize?: number } } } | undefined;
  const v = b?.device?.limits?.maxStorageBufferBindingSize;
  if (!v) throw new Error("webgpuMaxBufferBytes: the webgpu backend is not initialised (call initBackend('webgpu') first)");
  return v;
}

function firstLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split('\n')[0] ?? msg;
}

/** The backend this thread runs on, once initBackend was called. */
export function currentBackend(): BackendInfo | undefined {
  return current;
}

export { tf };
