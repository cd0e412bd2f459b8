// One model replica on one thread: the gradient of a (part of a) batch, evaluation losses and user
// vectors, all through flat Float32Arrays so that replicas in worker threads exchange plain memory.
// The trainer and the embedder talk to an `Engine`; LocalEngine runs on the calling thread and
// WorkerPool (worker-pool.ts) splits each call over several LocalEngines in worker threads.
import * as tf from '@tensorflow/tfjs-core';
import type { UserExample, Vocabulary } from '../data/types.js';
import { chunkUsers, gpuInferenceChunk, resolveMemoryBudget, type EngineMemoryOptions, type MemoryEstimate } from './memory.js';

export interface LossTensors {
  total: tf.Scalar;
  main: tf.Scalar;
  aux: tf.Scalar;
  mask: tf.Scalar;
  reg: tf.Scalar;
}

export interface LossValues {
  total: number;
  main: number;
  aux: number;
  mask: number;
  reg: number;
}

export const LOSS_KEYS = ['total', 'main', 'aux', 'mask', 'reg'] as const;

/** What the trainer needs from a model (AetnModel satisfies it). */
export interface ModelLike {
  readonly variables: tf.Variable[];
  /** Stable names for checkpoints when v.name carries a per-instance prefix (AetnModel.names). */
  readonly names?: string[];
  dispose?(): void;
  /** Per-user mean losses of the batch (the value must not depend on the batch size). */
  losses(batch: BatchLike, training: boolean): LossTensors;
  embed(batch: BatchLike): tf.Tensor2D;
  flopsPerUser(training: boolean): number;
}

export interface BatchLike {
  dispose(): void;
}

/**
 * A module that builds models. It is named by URL (not passed as an object) because worker threads
 * import it themselves. train-model.ts is the AETN factory; tests may use a small stand-in.
 */
export interface ModelFactory<C = unknown> {
  /** Short name written to the manifest, e.g. 'aetn'. */
  readonly kind: string;
  /** The full config for a vocabulary and the user's overrides (sizes, variant, ...). */
  makeConfig(vocab: Vocabulary, overrides: Record<string, unknown>, data?: { seqLen?: number; dateBuckets?: number }): C;
  createModel(cfg: C, seed: number): ModelLike;
  makeBatch(examples: UserExample[], cfg: C, opts: { training: boolean; seed: number }): BatchLike;
  /** The user-vector dimension of a config. */
  embeddingDim(cfg: C): number;
  /** The variant name of a config (manifest and feature id). */
  variantOf(cfg: C): string;
  /** Peak bytes of a call (memory.ts); without it an engine computes every call in one piece. */
  memoryEstimate?(cfg: C, numParams: number): MemoryEstimate;
}

export async function loadFactory(url: string): Promise<ModelFactory> {
  const mod = (await import(url)) as { factory?: ModelFactory; default?: ModelFactory };
  const f = mod.factory ?? mod.default;
  if (!f || typeof f.createModel !== 'function') throw new Error(`${url} exports no model factory`);
  return f;
}

/** The AETN factory module next to this file (compiled .js or, under tsx/vitest, the .ts source). */
export function defaultFactoryUrl(): string {
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  return new URL(`./train-model${ext}`, import.meta.url).href;
}

export interface VariableLayout {
  name: string;
  shape: number[];
  offset: number; // in floats
  size: number;
}

export function layoutOf(variables: readonly tf.Variable[], names?: readonly string[]): { vars: VariableLayout[]; total: number } {
  let offset = 0;
  const vars = variables.map((v, i) => {
    const size = v.size;
    const l = { name: names?.[i] ?? v.name, shape: [...v.shape], offset, size };
    offset += size;
    return l;
  });
  return { vars, total: offset };
}

export interface GradResult {
  losses: LossValues;
  n: number;
}

/** The part of an engine the training loop and the embedder use. */
export interface Engine {
  readonly numParams: number;
  readonly layout: VariableLayout[];
  readonly flopsPerUser: { training: number; inference: number };
  /** Most users one replica computes in one model call (memory budget); calls are cut to it. */
  readonly chunkUsers: { training: number; inference: number };
  /** Loads weights (flat, in layout order) into every replica. */
  setWeights(flat: Float32Array): Promise<void>;
  /** Mean gradient of the batch written into `out` (length numParams); returns its mean losses. */
  gradient(examples: UserExample[], seed: number, out: Float32Array): Promise<GradResult>;
  /** Mean losses without dropout or masking (validation). */
  evaluate(examples: UserExample[]): Promise<GradResult>;
  /** Row-major [n, dim] user vectors. */
  embed(examples: UserExample[]): Promise<Float32Array>;
  close(): Promise<void>;
}

/** Users per call of one replica: a fixed chunk, else what the memory budget allows. */
export function engineChunks(factory: ModelFactory, cfg: unknown, numParams: number, mem: EngineMemoryOptions = {}): { training: number; inference: number } {
  if (mem.chunkUsers !== undefined) {
    if (!Number.isInteger(mem.chunkUsers) || mem.chunkUsers < 1) throw new Error(`chunkUsers must be a positive integer (got ${mem.chunkUsers})`);
    return { training: mem.chunkUsers, inference: mem.chunkUsers };
  }
  const budget = resolveMemoryBudget(mem.memoryBudgetMiB);
  const est = factory.memoryEstimate?.(cfg, numParams);
  if (!est) return { training: Infinity, inference: Infinity };
  const inference = mem.device ? gpuInferenceChunk(mem.device, est) : chunkUsers(budget, est, false);
  return { training: chunkUsers(budget, est, true), inference };
}

/**
 * Cuts n users into the fewest calls of at most `max` users, of near-equal sizes (the heap peak is
 * set by the largest; equal sizes also let the wasm allocator reuse the same blocks every call).
 */
export function chunkRanges(n: number, max: number): Array<[number, number]> {
  if (n <= max) return n > 0 ? [[0, n]] : [];
  return splitRanges(n, Math.ceil(n / max));
}

export class LocalEngine implements Engine {
  readonly layout: VariableLayout[];
  readonly numParams: number;
  readonly flopsPerUser: { training: number; inference: number };
  readonly chunkUsers: { training: number; inference: number };
  /** One chunk's gradient while a chunked call accumulates into `out` (allocated on first use). */
  private scratch: Float32Array | undefined;

  constructor(
    private readonly factory: ModelFactory,
    private readonly cfg: unknown,
    readonly model: ModelLike,
    mem: EngineMemoryOptions = {},
  ) {
    const { vars, total } = layoutOf(model.variables, model.names);
    this.layout = vars;
    this.numParams = total;
    this.flopsPerUser = { training: model.flopsPerUser(true), inference: model.flopsPerUser(false) };
    this.chunkUsers = engineChunks(factory, cfg, total, mem);
  }

  static create(factory: ModelFactory, cfg: unknown, seed: number, mem: EngineMemoryOptions = {}): LocalEngine {
    return new LocalEngine(factory, cfg, factory.createModel(cfg, seed), mem);
  }

  /** getWeights, read back asynchronously where the backend needs it (webgpu). */
  async getWeightsAsync(): Promise<Float32Array> {
    if (!asyncReads()) return this.getWeights();
    const out = new Float32Array(this.numParams);
    for (const [i, v] of this.model.variables.entries()) out.set((await v.data()) as Float32Array, this.layout[i]!.offset);
    return out;
  }

  getWeights(): Float32Array {
    const out = new Float32Array(this.numParams);
    this.model.variables.forEach((v, i) => out.set(v.dataSync() as Float32Array, this.layout[i]!.offset));
    return out;
  }

  setWeightsSync(flat: Float32Array): void {
    if (flat.length !== this.numParams) throw new Error(`weights have ${flat.length} values, the model ${this.numParams}`);
    this.model.variables.forEach((v, i) => {
      const l = this.layout[i]!;
      tf.tidy(() => v.assign(tf.tensor(flat.subarray(l.offset, l.offset + l.size), l.shape, 'float32')));
    });
  }

  async setWeights(flat: Float32Array): Promise<void> {
    this.setWeightsSync(flat);
  }

  /**
   * Mean gradient of the users, computed in chunks of at most chunkUsers.training users: each chunk's
   * mean gradient is weighted by its share of the users (the losses are per-user means, L_reg a
   * constant), so the sum is the batch's mean gradient up to float rounding. One chunk writes `out`
   * directly, bit for bit as an unchunked call. Dropout and [MASK] draws depend on (seed, user id)
   * only, so a user's randomness does not depend on the chunking either.
   */
  gradientSync(examples: UserExample[], seed: number, out: Float32Array): GradResult {
    const ranges = chunkRanges(examples.length, this.chunkUsers.training);
    if (ranges.length <= 1) return this.gradientChunk(examples, seed, out);
    const n = examples.length;
    this.scratch ??= new Float32Array(this.numParams);
    const g = this.scratch;
    const parts: GradResult[] = [];
    ranges.forEach(([a, b], k) => {
      const r = this.gradientChunk(examples.slice(a, b), seed, k === 0 ? out : g);
      const w = (b - a) / n;
      if (k === 0) {
        for (let i = 0; i < out.length; i++) out[i] = w * out[i]!;
      } else {
        for (let i = 0; i < out.length; i++) out[i] += w * g[i]!;
      }
      parts.push(r);
    });
    return combineLosses(parts);
  }

  private gradientChunk(examples: UserExample[], seed: number, out: Float32Array): GradResult {
    const batch = this.factory.makeBatch(examples, this.cfg, { training: true, seed });
    try {
      let parts: tf.Scalar[] = [];
      const { value, grads } = tf.variableGrads(() => {
        const l = this.model.losses(batch, true);
        parts = [l.main, l.aux, l.mask, l.reg].map((t) => tf.keep(t));
        return l.total;
      }, this.model.variables);
      const vals = [value, ...parts].map((t) => t.dataSync()[0]!);
      tf.dispose([value, ...parts]);
      this.model.variables.forEach((v, i) => {
        const l = this.layout[i]!;
        const g = grads[v.name];
        if (g) {
          out.set(g.dataSync() as Float32Array, l.offset);
          g.dispose();
        } else {
          // A variable the loss does not reach (e.g. the [MASK] row in the no-mask variant).
          out.fill(0, l.offset, l.offset + l.size);
        }
      });
      return { losses: toLosses(vals), n: examples.length };
    } finally {
      batch.dispose();
    }
  }

  async gradient(examples: UserExample[], seed: number, out: Float32Array): Promise<GradResult> {
    if (!asyncReads()) return this.gradientSync(examples, seed, out);
    // webgpu: gradientSync's chunks and weighting, each chunk read back with data().
    const ranges = chunkRanges(examples.length, this.chunkUsers.training);
    if (ranges.length <= 1) return this.gradientChunkAsync(examples, seed, out);
    const n = examples.length;
    this.scratch ??= new Float32Array(this.numParams);
    const g = this.scratch;
    const parts: GradResult[] = [];
    for (const [k, [a, b]] of ranges.entries()) {
      const r = await this.gradientChunkAsync(examples.slice(a, b), seed, k === 0 ? out : g);
      const w = (b - a) / n;
      if (k === 0) {
        for (let i = 0; i < out.length; i++) out[i] = w * out[i]!;
      } else {
        for (let i = 0; i < out.length; i++) out[i] += w * g[i]!;
      }
      parts.push(r);
    }
    return combineLosses(parts);
  }

  private async gradientChunkAsync(examples: UserExample[], seed: number, out: Float32Array): Promise<GradResult> {
    const batch = this.factory.makeBatch(examples, this.cfg, { training: true, seed });
    try {
      let parts: tf.Scalar[] = [];
      const { value, grads } = tf.variableGrads(() => {
        const l = this.model.losses(batch, true);
        parts = [l.main, l.aux, l.mask, l.reg].map((t) => tf.keep(t));
        return l.total;
      }, this.model.variables);
      try {
        const vals: number[] = [];
        for (const t of [value, ...parts]) vals.push((await t.data())[0]!);
        for (const [i, v] of this.model.variables.entries()) {
          const l = this.layout[i]!;
          const gv = grads[v.name];
          if (gv) out.set((await gv.data()) as Float32Array, l.offset);
          else out.fill(0, l.offset, l.offset + l.size);
        }
        return { losses: toLosses(vals), n: examples.length };
      } finally {
        tf.dispose([value, ...parts, ...Object.values(grads)]);
      }
    } finally {
      batch.dispose();
    }
  }

  /** Mean losses, in chunks of at most chunkUsers.training users (the output heads run too). */
  evaluateSync(examples: UserExample[]): GradResult {
    const ranges = chunkRanges(examples.length, this.chunkUsers.training);
    if (ranges.length <= 1) return this.evaluateChunk(examples);
    return combineLosses(ranges.map(([a, b]) => this.evaluateChunk(examples.slice(a, b))));
  }

  private evaluateChunk(examples: UserExample[]): GradResult {
    const batch = this.factory.makeBatch(examples, this.cfg, { training: false, seed: 0 });
    try {
      const vals = tf.tidy(() => {
        const l = this.model.losses(batch, false);
        return [l.total, l.main, l.aux, l.mask, l.reg].map((t) => t.dataSync()[0]!);
      });
      return { losses: toLosses(vals), n: examples.length };
    } finally {
      batch.dispose();
    }
  }

  async evaluate(examples: UserExample[]): Promise<GradResult> {
    if (!asyncReads()) return this.evaluateSync(examples);
    const parts: GradResult[] = [];
    for (const [a, b] of chunkRanges(examples.length, this.chunkUsers.training)) {
      const batch = this.factory.makeBatch(examples.slice(a, b), this.cfg, { training: false, seed: 0 });
      try {
        const ts = tf.tidy(() => {
          const l = this.model.losses(batch, false);
          return [l.total, l.main, l.aux, l.mask, l.reg];
        });
        try {
          const vals: number[] = [];
          for (const t of ts) vals.push((await t.data())[0]!);
          parts.push({ losses: toLosses(vals), n: b - a });
        } finally {
          tf.dispose(ts);
        }
      } finally {
        batch.dispose();
      }
    }
    return parts.length === 1 ? parts[0]! : combineLosses(parts);
  }

  /** Row-major user vectors, in chunks of at most chunkUsers.inference users. */
  embedSync(examples: UserExample[]): Float32Array {
    const ranges = chunkRanges(examples.length, this.chunkUsers.inference);
    if (ranges.length <= 1) return this.embedChunk(examples);
    return concatFloat32(ranges.map(([a, b]) => this.embedChunk(examples.slice(a, b))));
  }

  private embedChunk(examples: UserExample[]): Float32Array {
    if (examples.length === 0) return new Float32Array(0);
    const batch = this.factory.makeBatch(examples, this.cfg, { training: false, seed: 0 });
    try {
      return tf.tidy(() => this.model.embed(batch).dataSync() as Float32Array).slice();
    } finally {
      batch.dispose();
    }
  }

  /**
   * On webgpu, overlap the host and the device inside one embed call: the next chunk's batch is
   * built (host) and its kernels dispatched while the device still computes the current one, whose
   * vectors are read back after. Two chunks are then in flight, which gpuInferenceChunk budgets for.
   * The chunks and their order are the same either way, so the vectors are the same bits.
   */
  pipelined = true;

  async embed(examples: UserExample[]): Promise<Float32Array> {
    // WebGPU in Node reads back only asynchronously: the same chunks, each read with data().
    if (!asyncReads()) return this.embedSync(examples);
    const parts: Float32Array[] = [];
    let inFlight: { t: tf.Tensor; read: Promise<Float32Array> } | undefined;
    // data() submits the queued kernels at once and resolves when the device has finished them.
    const collect = async (f: { t: tf.Tensor; read: Promise<Float32Array> }): Promise<void> => {
      try {
        parts.push((await f.read).slice());
      } finally {
        f.t.dispose();
      }
    };
    try {
      for (const [a, b] of chunkRanges(examples.length, this.chunkUsers.inference)) {
        const batch = this.factory.makeBatch(examples.slice(a, b), this.cfg, { training: false, seed: 0 });
        try {
          const t = tf.tidy(() => this.model.embed(batch));
          const next = { t, read: t.data() as Promise<Float32Array> };
          // Mark the read as handled now: it is awaited below, after the previous chunk's.
          next.read.catch(() => {});
          if (inFlight) {
            const prev = inFlight;
            inFlight = undefined;
            await collect(prev);
          }
          if (this.pipelined) inFlight = next;
          else await collect(next);
        } finally {
          batch.dispose();
        }
      }
      if (inFlight) {
        const last = inFlight;
        inFlight = undefined;
        await collect(last);
      }
    } finally {
      if (inFlight) {
        await inFlight.read.catch(() => {});
        inFlight.t.dispose();
      }
    }
    return parts.length === 1 ? parts[0]! : concatFloat32(parts);
  }

  async close(): Promise<void> {
    if (this.model.dispose) this.model.dispose();
    else tf.dispose(this.model.variables);
  }
}

/**
 * True on a backend that cannot read tensors synchronously: WebGPU in Node (its dataSync stages
 * through an OffscreenCanvas, which Node lacks). Kept here, not imported from backend.ts, so the
 * engine does not load the backends.
 */
function asyncReads(): boolean {
  return tf.getBackend() === 'webgpu';
}

function toLosses(v: number[]): LossValues {
  return { total: v[0]!, main: v[1]!, aux: v[2]!, mask: v[3]!, reg: v[4]! };
}

/** Weighted mean of per-part losses (each part's losses are per-user means over its n users). */
export function combineLosses(parts: GradResult[]): GradResult {
  const n = parts.reduce((a, p) => a + p.n, 0);
  const out: LossValues = { total: 0, main: 0, aux: 0, mask: 0, reg: 0 };
  for (const p of parts) for (const k of LOSS_KEYS) out[k] += (p.losses[k] * p.n) / Math.max(1, n);
  return { losses: out, n };
}

/** Splits `n` items into `k` contiguous near-equal ranges (deterministic), skipping empty ones. */
/** The arrays one after the other in one new array. */
export function concatFloat32(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function splitRanges(n: number, k: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  const base = Math.floor(n / k);
  let rem = n % k;
  let start = 0;
  for (let i = 0; i < k; i++) {
    const len = base + (rem > 0 ? 1 : 0);
    if (rem > 0) rem--;
    if (len > 0) out.push([start, start + len]);
    start += len;
  }
  return out;
}
