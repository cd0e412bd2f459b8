// The embedding engine of the batch embed job (and of evaluation): loads a checkpoint once, then
// turns users into their long-term vectors u. Inference only: no dropout, no [MASK], no output
// heads. Large calls are cut into chunks and spread over worker threads (both cores); for the same
// inputs, backend and worker count the vectors are bit-identical.
import { availableParallelism } from 'node:os';
import type { UserExample } from '../data/types.js';
import { UserError } from '../util/errors.js';
import { child } from '../util/log.js';
import { initBackend, type BackendInfo } from './backend.js';
import { checkLayout, configFromJson, loadCheckpoint, type CheckpointManifest } from './checkpoint.js';
import { defaultFactoryUrl } from './train-engine.js';
import { startEngine } from './train.js';

const logger = child('embed');

export interface EmbedderOptions {
  backend?: string;
  /** Worker threads (default: the number of cores). 1 runs on the calling thread. */
  workers?: number;
  /** Refuse the model unless it was trained on this vocabulary (hash from the prepared data). */
  vocabHash?: string;
  /** Users per request to each worker (default 500); each worker cuts it further to its memory budget. */
  chunk?: number;
  /** Memory per engine (wasm heap), MiB; default AETN_MEMORY_BUDGET_MIB or 1536 (memory.ts). */
  memoryBudgetMiB?: number;
  /** Device memory for the webgpu engine, MiB; default runtime.gpuMemoryBudgetMiB or 4096 (memory.ts). */
  gpuMemoryBudgetMiB?: number;
  /** Users per device call on webgpu, overriding the GPU budget (tests, comparisons). */
  gpuChunkUsers?: number;
  /** On webgpu: build and dispatch the next chunk while the device computes this one (default true). */
  overlap?: boolean;
  /** Model factory module for non-AETN checkpoints (tests). */
  factoryUrl?: string;
}

export interface Embedder {
  manifest: CheckpointManifest;
  dim: number;
  backend: BackendInfo;
  workers: number;
  /** FLOPs of one user's embedding (for throughput reports). */
  flopsPerUser: number;
  /** Most users one engine computes in one model call (memory budget; on webgpu the device's). */
  chunkUsers: number;
  /**
   * Users per embed() call that suit this engine: 1000 on the CPU backends; on webgpu four device
   * chunks (at least 1000), so the device is fed a few chunks per call. `aetn embed`'s default batch.
   */
  batchUsers: number;
  embed(examples: UserExample[]): Promise<Float32Array[]>;
  close(): Promise<void>;
}

export async function createEmbedder(modelDir: string, opts: EmbedderOptions = {}): Promise<Embedder> {
  const { manifest, weights, layout } = await loadCheckpoint(modelDir, { vocabHash: opts.vocabHash });
  const backend = await initBackend(opts.backend);
  // On the native GEMM one engine already uses every core (its batch-invariant calls are shared out
  // over its own threads), and one engine with both cores embedded 1.3-1.6x faster than two engines
  // with one each in bench/model-train.ts; the stock kernel is single-threaded, so there one engine
  // per core wins.
  // On webgpu one engine drives the one device (a worker each would compete for it).
  const workers = opts.workers ?? (backend.gemm === 'openblas' || backend.name === 'webgpu' ? 1 : Math.max(1, availableParallelism()));
  if (!Number.isInteger(workers) || workers < 1) throw new UserError(`workers must be a positive integer (got ${workers})`);
  const factoryUrl = opts.factoryUrl ?? (manifest.modelKind === 'aetn' ? defaultFactoryUrl() : undefined);
  if (!factoryUrl) throw new UserError(`model kind '${manifest.modelKind}' of ${modelDir} has no model factory in this build`);
  const cfg = configFromJson(manifest.config);
  // The seed only sets initial weights, which the checkpoint replaces.
  const gpu = backend.name === 'webgpu';
  const memory = gpu && opts.gpuChunkUsers !== undefined ? { chunkUsers: opts.gpuChunkUsers } : { memoryBudgetMiB: opts.memoryBudgetMiB, gpuMemoryBudgetMiB: opts.gpuMemoryBudgetMiB };
  const { engine, local } = await startEngine({ factoryUrl, cfg, seed: manifest.seed, backend: backend.name, workers, memory });
  local.pipelined = opts.overlap ?? true;
  try {
    checkLayout(layout, local.layout, modelDir);
    await engine.setWeights(weights);
  } catch (err) {
    await engine.close();
    if (engine !== local) await local.close();
    throw err;
  }
  const dim = manifest.dim;
  // On webgpu the one engine gets whole calls: it cuts them into device chunks and pipelines those.
  const chunk = gpu && opts.chunk === undefined ? Infinity : Math.max(1, opts.chunk ?? 500) * workers;
  const chunkUsers = engine.chunkUsers.inference;
  const batchUsers = gpu && Number.isFinite(chunkUsers) ? Math.max(1000, 4 * chunkUsers) : 1000;
  logger.debug({ featureId: manifest.featureId, backend: backend.name, workers, dim, chunkUsers, batchUsers }, 'embedder ready');
  let closed = false;
  return {
    manifest,
    dim,
    backend,
    workers,
    flopsPerUser: engine.flopsPerUser.inference,
    chunkUsers,
    batchUsers,
    async embed(examples: UserExample[]): Promise<Float32Array[]> {
      if (closed) throw new Error('embedder is closed');
      const out: Float32Array[] = [];
      for (let i = 0; i < examples.length; i += chunk) {
        const part = examples.slice(i, i + chunk);
        const flat = await engine.embed(part);
        if (flat.length !== part.length * dim) throw new Error(`model returned ${flat.length} values for ${part.length} users x ${dim}`);
        for (let k = 0; k < part.length; k++) out.push(flat.slice(k * dim, (k + 1) * dim));
      }
      return out;
    },
    async close() {
      if (closed) return;
      closed = true;
      await engine.close();
      if (engine !== local) await local.close();
    },
  };
}
