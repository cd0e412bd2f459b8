// Data parallelism over worker threads: every call splits its users into contiguous near-equal
// parts, one per worker, and combines the answers (gradients weighted by each part's user count, so
// the result equals the full-batch mean gradient up to float rounding).
import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { spawnWorker, whenReady } from '../util/worker.js';
import type { UserExample } from '../data/types.js';
import {
  combineLosses,
  splitRanges,
  concatFloat32,
  type Engine,
  type GradResult,
  type VariableLayout,
} from './train-engine.js';
import type { EngineMemoryOptions } from './memory.js';
import type { WorkerInit, WorkerReply, WorkerRequest } from './worker.js';
import { resetNativeGemmThreads } from './native-gemm.js';

// OpenBLAS's thread count is process-wide and each pool's workers lower it; the main thread gets its
// default back when the last pool closes.
let openPools = 0;

interface Pending {
  resolve: (r: WorkerReply) => void;
  reject: (e: Error) => void;
}

type Dist<T> = T extends unknown ? Omit<T, 'id' | 'version'> : never;

class WorkerHandle {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private failure: Error | undefined;
  readonly grad: Float32Array;
  readonly ready: Promise<void>;

  constructor(readonly worker: Worker, gradSab: SharedArrayBuffer) {
    this.grad = new Float32Array(gradSab);
    this.ready = new Promise((resolve, reject) => {
      const onFirst = (msg: { ready?: boolean; fatal?: string }) => {
        if (msg.fatal) reject(new Error(`model worker failed to start: ${msg.fatal}`));
        else if (msg.ready) resolve();
      };
      worker.once('message', onFirst);
      worker.once('error', reject);
    });
    worker.on('message', (msg: WorkerReply & { fatal?: string }) => {
      if (msg.fatal) return this.fail(new Error(`model worker: ${msg.fatal}`));
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      p.resolve(msg);
    });
    worker.on('error', (err) => this.fail(err));
    worker.on('exit', (code) => this.fail(new Error(`model worker exited with code ${code}`)));
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  call(req: Dist<WorkerRequest>, version: number): Promise<WorkerReply> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise<WorkerReply>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...req, id, version } as WorkerRequest);
    }).then((r) => {
      if (!r.ok) throw new Error(`model worker: ${r.error}`);
      return r;
    });
  }

  async terminate(): Promise<void> {
    this.worker.removeAllListeners('exit');
    this.failure ??= new Error('model worker pool closed');
    await this.worker.terminate();
  }
}

export interface WorkerPoolOptions {
  factoryUrl: string;
  cfg: unknown;
  seed: number;
  backend: string;
  workers: number;
  numParams: number;
  layout: VariableLayout[];
  flopsPerUser: { training: number; inference: number };
  /** Each worker's memory budget: every replica cuts its part of a call into chunks that fit. */
  memory?: EngineMemoryOptions;
  /** The replicas' chunk sizes (the same config and budget give the same in every worker). */
  chunkUsers: { training: number; inference: number };
}

export class WorkerPool implements Engine {
  readonly numParams: number;
  readonly layout: VariableLayout[];
  readonly flopsPerUser: { training: number; inference: number };
  readonly chunkUsers: { training: number; inference: number };
  private readonly weights: Float32Array;
  private readonly handles: WorkerHandle[];
  private version = 0;
  private closed = false;

  private constructor(opts: WorkerPoolOptions) {
    this.numParams = opts.numParams;
    this.layout = opts.layout;
    this.flopsPerUser = opts.flopsPerUser;
    this.chunkUsers = opts.chunkUsers;
    const weightsSab = new SharedArrayBuffer(opts.numParams * 4);
    this.weights = new Float32Array(weightsSab);
    this.handles = [];
    // The workers already fill the cores: OpenBLAS (process-wide) gets the cores left per worker,
    // 1 on this 2-core machine with 2 workers, so BLAS threads do not contend with the workers.
    const blasThreads = Math.max(1, Math.floor(availableParallelism() / opts.workers));
    openPools++;
    for (let i = 0; i < opts.workers; i++) {
      const gradSab = new SharedArrayBuffer(opts.numParams * 4);
      const init: WorkerInit = { factoryUrl: opts.factoryUrl, cfg: opts.cfg, seed: opts.seed, backend: opts.backend, weights: weightsSab, grad: gradSab, blasThreads, memory: opts.memory ?? {} };
      const worker = spawnWorker(import.meta.url, './worker', { workerData: init });
      this.handles.push(new WorkerHandle(worker, gradSab));
    }
  }

  static async start(opts: WorkerPoolOptions): Promise<WorkerPool> {
    const pool = new WorkerPool(opts);
    return whenReady(pool, pool.handles.map((h) => h.ready));
  }

  get size(): number {
    return this.handles.length;
  }

  async setWeights(flat: Float32Array): Promise<void> {
    if (flat.length !== this.numParams) throw new Error(`weights have ${flat.length} values, the model ${this.numParams}`);
    this.weights.set(flat);
    // Workers reload lazily when a request carries a newer version.
    this.version++;
  }

  // Every part gets the same step seed: the model draws dropout and [MASK] per user from (seed, user
  // id), so a user's randomness does not depend on which worker computes it.
  async gradient(examples: UserExample[], seed: number, out: Float32Array): Promise<GradResult> {
    const ranges = splitRanges(examples.length, this.handles.length);
    const replies = await Promise.all(
      ranges.map(([a, b], k) => this.handles[k]!.call({ op: 'gradient', examples: examples.slice(a, b), seed }, this.version)),
    );
    const parts = replies.map((r) => r.result!);
    const n = examples.length;
    if (parts.length === 2) {
      // The common case (2 cores) in one pass over the 9.4 M values instead of a fill and two
      // passes; the same float32 operations in the same order as the general loop below.
      const w0 = parts[0]!.n / n;
      const w1 = parts[1]!.n / n;
      const g0 = this.handles[0]!.grad;
      const g1 = this.handles[1]!.grad;
      for (let i = 0; i < out.length; i++) out[i] = Math.fround(0 + w0 * g0[i]!) + w1 * g1[i]!;
      return combineLosses(parts);
    }
    out.fill(0);
    parts.forEach((p, k) => {
      const w = p.n / n;
      const g = this.handles[k]!.grad;
      for (let i = 0; i < out.length; i++) out[i] += w * g[i]!;
    });
    return combineLosses(parts);
  }

  async evaluate(examples: UserExample[]): Promise<GradResult> {
    const ranges = splitRanges(examples.length, this.handles.length);
    const replies = await Promise.all(ranges.map(([a, b], k) => this.handles[k]!.call({ op: 'evaluate', examples: examples.slice(a, b) }, this.version)));
    return combineLosses(replies.map((r) => r.result!));
  }

  async embed(examples: UserExample[]): Promise<Float32Array> {
    const ranges = splitRanges(examples.length, this.handles.length);
    const replies = await Promise.all(ranges.map(([a, b], k) => this.handles[k]!.call({ op: 'embed', examples: examples.slice(a, b) }, this.version)));
    return concatFloat32(replies.map((r) => r.vectors!));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.handles.map((h) => h.terminate()));
    if (--openPools === 0) resetNativeGemmThreads();
  }
}
