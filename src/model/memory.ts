// Memory budget of one model engine, and the chunk of users it computes at once.
//
// The wasm backend has one 4 GiB heap per thread, and a tfjs gradient keeps every forward
// intermediate of the batch alive until the backward pass ends, so memory grows linearly with the
// users in one call: ~40 MiB per user at paper size (measured), i.e. 500 users (batch 1000 over 2
// workers) would need ~20 GiB and the heap aborts. Every engine (train-engine.ts) therefore cuts its
// calls into chunks of at most `chunkUsers(...)` users, sized from an estimate of bytes per user, and
// sums the chunks' gradients weighted by their user counts: the step is the same step (up to float
// rounding) whatever the chunking.
import { runtimeSettings } from '../config/config.js';
import { UserError } from '../util/errors.js';
import { VARIANT_FEATURES, type AetnConfig } from './config.js';

/** Per engine (one wasm heap): well under wasm's 4 GiB, which also leaves room for heap growth. */
export const DEFAULT_MEMORY_BUDGET_MIB = 1536;
export const MEMORY_BUDGET_ENV = 'AETN_MEMORY_BUDGET_MIB';

/** Bytes a call needs: `fixed` once (weights, their gradients, vocabulary-wide tables) + per user. */
export interface MemoryEstimate {
  fixed: { training: number; inference: number };
  perUser: { training: number; inference: number };
  /** Bytes per user of the largest single tensor of an inference call (a GPU binds each as one buffer). */
  largestPerUser?: number;
}

/** Device memory of the webgpu engine when embedding (runtime.gpuMemoryBudgetMiB): small enough for any discrete GPU. */
export const DEFAULT_GPU_MEMORY_BUDGET_MIB = 4096;
export const GPU_MEMORY_BUDGET_ENV = 'AETN_GPU_MEMORY_BUDGET_MIB';

/** Where the engine runs on a GPU (webgpu): its memory budget and the device's largest buffer binding. */
export interface DeviceMemory {
  /** Device memory for embedding, MiB. */
  budgetMiB: number;
  /** The device's maxStorageBufferBindingSize in bytes: no tensor may be larger. */
  maxBufferBytes: number;
}

/** How an engine bounds its memory: a budget in MiB, or (tests, benchmarks) a fixed chunk. */
export interface EngineMemoryOptions {
  /** Per engine; default AETN_MEMORY_BUDGET_MIB or DEFAULT_MEMORY_BUDGET_MIB. */
  memoryBudgetMiB?: number;
  /** Users per model call, overriding the budget (both training and inference). */
  chunkUsers?: number;
  /** On webgpu: device memory for embedding, MiB; default runtime.gpuMemoryBudgetMiB or 4096. */
  gpuMemoryBudgetMiB?: number;
  /** On a GPU (set by startEngine): inference chunks come from the device's budget and buffer limit (gpuInferenceChunk). */
  device?: DeviceMemory;
}

/** The budget in bytes: the option, else the environment, else the default; validated. */
export function resolveMemoryBudget(mib?: number, env: NodeJS.ProcessEnv = process.env): number {
  let v = mib;
  let from = 'the memory budget (--memory-budget, memoryBudgetMiB)';
  const configured = v === undefined ? runtimeSettings(env).memoryBudgetMiB : null;
  if (configured !== null) {
    v = configured;
    from = `runtime.memoryBudgetMiB (${MEMORY_BUDGET_ENV})`;
  }
  v ??= DEFAULT_MEMORY_BUDGET_MIB;
  if (!Number.isFinite(v) || v < 64) throw new UserError(`${from} must be a number of MiB >= 64 (got ${v})`);
  return v * 2 ** 20;
}

/** The GPU budget in MiB: the option, else runtime.gpuMemoryBudgetMiB (AETN_GPU_MEMORY_BUDGET_MIB), else 4096; validated. */
export function resolveGpuMemoryBudgetMiB(mib?: number, env: NodeJS.ProcessEnv = process.env): number {
  const v = mib ?? runtimeSettings(env).gpuMemoryBudgetMiB ?? DEFAULT_GPU_MEMORY_BUDGET_MIB;
  if (!Number.isFinite(v) || v < 64) throw new UserError(`runtime.gpuMemoryBudgetMiB (${GPU_MEMORY_BUDGET_ENV}) must be a number of MiB >= 64 (got ${v})`);
  return v;
}

/**
 * Users per inference call on a GPU. The engine keeps two calls in flight (it builds and dispatches
 * the next chunk while the device computes this one, see LocalEngine.embed), so each gets half the
 * budget; and no single tensor may exceed the device's buffer binding limit (128 MiB on lavapipe),
 * with a factor 2 of headroom for users longer than the estimate's typical retention.
 */
export function gpuInferenceChunk(device: DeviceMemory, est: MemoryEstimate): number {
  const budget = device.budgetMiB * 2 ** 20;
  const byBudget = Math.floor((budget - est.fixed.inference) / (2 * est.perUser.inference));
  const byBuffer = est.largestPerUser ? Math.floor(device.maxBufferBytes / (2 * est.largestPerUser)) : Infinity;
  return Math.max(1, Math.min(byBudget, byBuffer));
}

/** Users per call that fit the budget (at least 1: a single user is always attempted). */
export function chunkUsers(budgetBytes: number, est: MemoryEstimate, training: boolean): number {
  const mode = training ? 'training' : 'inference';
  return Math.max(1, Math.floor((budgetBytes - est.fixed[mode]) / est.perUser[mode]));
}

/**
 * AETN's peak bytes on the wasm backend, from the model sizes. The structure counts the tensors a
 * forward pass creates (per token per transformer layer: ~22 d-wide, 5 FFN-wide and 7 attention-row
 * (H·T) values; per user the M-wide logits rows of the output heads); the constants come from tfjs's
 * measured peak (tf.profile peakBytes, which is >= the wasm heap actually grown) of one call at
 * several batch sizes, paper size (d 512, FFN 1024, 8 heads, 2+1 layers, I = 25):
 *   training  M = 200: 36.7 MiB/user + 266 MiB; M = 2000: 39.3 MiB/user + 351 MiB
 *   inference M = 2000: 6.5 MiB/user + ~50 MiB
 * and at d 64 (FFN 128, 4 heads) 8.5 MiB/user training (estimate 10.2); the DAE 0.6 MiB/user.
 * The backward pass holds about 3x the forward's tensors (gradients of every intermediate plus the
 * forward values they need); inference keeps the forward pass until the call's tidy ends. The
 * estimate is rounded up (~10-15% over the measurements) so chunks stay under the budget.
 */
export function aetnMemoryEstimate(cfg: AetnConfig, numParams: number): MemoryEstimate {
  const f = VARIANT_FEATURES[cfg.variant];
  const { dModel: d, dFf, heads: H, numApps: M, seqLen: I } = cfg;
  const T = 1 + 2 * I;
  // Longest retention in a chunk (the batch pads to it): a generous typical value.
  const R = 128;
  const tokenLayer = 22 * d + 5 * dFf + 7 * H * T; // floats per token per full layer (forward)
  // The retention gather; with a transformer also the token and date embeddings and their masks.
  const inputs = R * d * 3 + (f.attention !== 'none' ? T * 8 * d : 0);
  let trainFwd = inputs + 6 * d;
  let inferFwd = inputs + 6 * d;
  if (f.attention !== 'none') {
    trainFwd += T * tokenLayer * (cfg.encLayers + cfg.decLayers);
    // Inference: every encoder layer but the last over all tokens; the last computes K and V over
    // all tokens and the rest for the retention query alone.
    inferFwd += T * tokenLayer * (cfg.encLayers - 1) + T * 6 * d + tokenLayer;
  }
  // M-wide rows of the training heads per user: retention, AE reconstruction, every install and
  // uninstall token, the [MASK] tokens; ~7 M-wide tensors each (logits, softmax, their gradients).
  const rowsM = 1 + (f.aux ? 1 : 0) + (f.attention !== 'none' ? 2 * I + (f.mask ? 2 * cfg.maskCount : 0) : 0);
  const perUserTraining = 4 * (3.2 * trainFwd + 7 * rowsM * M);
  const perUserInference = 4 * 1.2 * inferFwd;
  // Weights, their gradients and copies, L_reg's squares, W_a and the dense gather gradients [M, d].
  const fixedTraining = 4 * (9 * numParams + 18 * M * d) + 32 * 2 ** 20;
  const fixedInference = 4 * (1.5 * numParams + 4 * M * d) + 32 * 2 ** 20;
  // The largest single tensor of an inference pass, per user: the retention gather [R, d], a
  // layer's token-wide FFN or fused projections [T, max(dFf, 3d)], the attention scores [H, T, T],
  // the dense retention targets [M].
  const largest = Math.max(R * d, T * Math.max(dFf, 3 * d), H * T * T, M);
  return {
    fixed: { training: fixedTraining, inference: fixedInference },
    perUser: { training: perUserTraining, inference: perUserInference },
    largestPerUser: 4 * largest,
  };
}
