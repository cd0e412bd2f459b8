// The realtime head: short-term intent from a user's most recent install/uninstall events
// (TransAct-style, kept small; docs/parts/realtime-head.md). One readable file in the manner of nanoGPT's model.py.
//
//   events (oldest first, left-padded to N)          B users x N positions
//   token = W_a[app] W_in + type_emb[type] + gap_emb[bucket(now - t)]      [B, N, d]
//   L pre-LN transformer blocks, padded keys masked                          [B, N, d]
//   pool: max over valid positions ‖ the k most recent tokens                [B, (1+k) d]
//   s = l2norm(pool W_out + b_out)                                           [B, dOut]  <- short-term vector
//   training scores: logits = s (W_a W_item)^T + b_app                       [B, M]
//
// W_a is the tied app matrix of a trained AETN checkpoint (W_app + C[category]) and stays frozen:
// the head learns only small projections of it, so short-term vectors live next to the long-term
// ones in the same app geometry and an app unseen by the head still has a meaningful embedding.
//
// Choices, and why:
// - Pre-LN blocks (LN before attention/FFN, residual stream untouched, one final LN): with 1-2 layers
//   and a few epochs on small data it trains without learning-rate warmup, which post-LN needs.
// - Time-gap buckets floor(log2(1 + minutes)) instead of positions: install timing is bursty (three
//   apps in a minute, then nothing for weeks), so "how long ago" carries the recency signal and the
//   log scale spends its resolution on the recent minutes that express intent.
// - The trainable embedding tables (type, gap) are looked up by one-hot matmuls, not gathers: they are
//   tiny (3 and ~20 rows) and a matmul's gradient runs on every backend, whereas the gather gradient
//   needs an UnsortedSegmentSum kernel that wasm lacks. The frozen W_a is gathered (no gradient).
// - The output is L2-normalised: downstream the vector is compared by cosine / dot product (store,
//   rankers, HNSW), its scale should not grow with the number of events, and an inactive user (no
//   events) gets a fixed unit vector rather than a tiny one that dot products silently ignore. The
//   scale the softmax needs lives in W_item (item side), which never leaves the head.
import * as tf from '@tensorflow/tfjs-core';
import { UserError } from '../util/errors.js';

export interface RealtimeHeadConfig {
  /** M: apps in the vocabulary (rows of the frozen app matrix). */
  numApps: number;
  /** d_aetn: width of the frozen AETN app matrix. */
  appDim: number;
  /** d: transformer width. */
  dModel: number;
  heads: number;
  layers: number;
  dFf: number;
  /** N: most recent events per user fed to the head. */
  maxEvents: number;
  /** Number of log2 time-gap buckets; the last one collects everything older. */
  gapBuckets: number;
  /** k: most recent tokens concatenated to the max-pool. */
  recentK: number;
  /** Width of the short-term vector s. */
  outDim: number;
  /** Dropout on tokens, attention output and FFN during training. */
  dropout: number;
}

export function defaultHeadConfig(partial: Partial<RealtimeHeadConfig> & Pick<RealtimeHeadConfig, 'numApps' | 'appDim'>): RealtimeHeadConfig {
  const cfg: RealtimeHeadConfig = {
    dModel: 64,
    heads: 4,
    layers: 1,
    dFf: 128,
    maxEvents: 32,
    gapBuckets: 20,
    recentK: 3,
    outDim: 64,
    dropout: 0.1,
    ...partial,
  };
  validateHeadConfig(cfg);
  return cfg;
}

export function validateHeadConfig(cfg: RealtimeHeadConfig): void {
  const ints: (keyof RealtimeHeadConfig)[] = ['numApps', 'appDim', 'dModel', 'heads', 'layers', 'dFf', 'maxEvents', 'gapBuckets', 'recentK', 'outDim'];
  for (const k of ints) {
    const v = cfg[k];
    if (!Number.isInteger(v) || v < 1) throw new UserError(`realtime head config: ${k} must be a positive integer, got ${v}`);
  }
  if (cfg.dModel % cfg.heads !== 0) throw new UserError(`realtime head config: dModel ${cfg.dModel} is not divisible by heads ${cfg.heads}`);
  if (cfg.recentK > cfg.maxEvents) throw new UserError(`realtime head config: recentK ${cfg.recentK} > maxEvents ${cfg.maxEvents}`);
  if (!(cfg.dropout >= 0 && cfg.dropout < 1)) throw new UserError(`realtime head config: dropout must be in [0, 1), got ${cfg.dropout}`);
}

/** Behaviour type as in the AppEvent proto: 1 install, 2 uninstall (0 = padding). */
export type EventType = 1 | 2;

export interface HeadEvent {
  app: number;
  type: EventType;
  timestampMs: number;
}

export interface RecentEvents {
  events: HeadEvent[];
}

/** Time-gap bucket of an event `ageMs` old: floor(log2(1 + minutes)), capped at buckets - 1. */
export function gapBucket(ageMs: number, buckets: number): number {
  // Clock skew can put an event slightly in the future: treat it as "just now".
  const minutes = ageMs > 0 ? ageMs / 60_000 : 0;
  const b = Math.floor(Math.log2(1 + minutes));
  return b < buckets - 1 ? b : buckets - 1;
}

/**
 * Host-side batch: B users x N positions, left-padded so the most recent event is at position N-1.
 * `valid` is 1 at real events and 0 at padding; padded positions carry app 0 / type 0 / gap 0.
 */
export interface HeadBatch {
  size: number;
  maxEvents: number;
  apps: Int32Array; // [B*N]
  types: Int32Array; // [B*N] 0 pad, 1 install, 2 uninstall
  gaps: Int32Array; // [B*N]
  valid: Float32Array; // [B*N]
}

export function emptyHeadBatch(size: number, maxEvents: number): HeadBatch {
  const n = size * maxEvents;
  return { size, maxEvents, apps: new Int32Array(n), types: new Int32Array(n), gaps: new Int32Array(n), valid: new Float32Array(n) };
}

/** `events` oldest first: the array itself when already sorted by timestamp, else a sorted copy. */
export function sortedByTime(events: readonly HeadEvent[]): readonly HeadEvent[] {
  for (let i = 1; i < events.length; i++) {
    if (events[i]!.timestampMs < events[i - 1]!.timestampMs) return [...events].sort((a, b) => a.timestampMs - b.timestampMs);
  }
  return events;
}

/** Throws UserError on an event the head cannot embed (app outside the vocabulary, bad type or time). */
export function checkHeadEvent(e: HeadEvent, cfg: RealtimeHeadConfig): void {
  if (!Number.isInteger(e.app) || e.app < 0 || e.app >= cfg.numApps) {
    throw new UserError(`realtime head: app index ${e.app} is outside the vocabulary [0, ${cfg.numApps})`);
  }
  if (e.type !== 1 && e.type !== 2) throw new UserError(`realtime head: event type must be 1 (install) or 2 (uninstall), got ${String(e.type)}`);
  if (!Number.isFinite(e.timestampMs)) throw new UserError(`realtime head: event timestamp ${String(e.timestampMs)} is not a number`);
}

/**
 * Writes one user's events (any order; the newest N are kept) into row `row` of `batch`,
 * time gaps measured from `nowMs`. Throws UserError on an app index or type the head cannot embed.
 * The host forward (realtime-head-host.ts) selects and checks events with the same two helpers.
 */
export function fillHeadRow(batch: HeadBatch, row: number, events: readonly HeadEvent[], nowMs: number, cfg: RealtimeHeadConfig): void {
  const N = batch.maxEvents;
  const evs = sortedByTime(events);
  const n = Math.min(N, evs.length);
  const start = evs.length - n;
  const base = row * N;
  for (let p = 0; p < N - n; p++) {
    batch.apps[base + p] = 0;
    batch.types[base + p] = 0;
    batch.gaps[base + p] = 0;
    batch.valid[base + p] = 0;
  }
  for (let i = 0; i < n; i++) {
    const e = evs[start + i]!;
    checkHeadEvent(e, cfg);
    const p = base + N - n + i;
    batch.apps[p] = e.app;
    batch.types[p] = e.type;
    batch.gaps[p] = gapBucket(nowMs - e.timestampMs, cfg.gapBuckets);
    batch.valid[p] = 1;
  }
}

/** `width` (default cfg.maxEvents) may be smaller when no user has more events: see narrowWidth. */
export function encodeHeadBatch(states: readonly RecentEvents[], nowMs: number, cfg: RealtimeHeadConfig, width = cfg.maxEvents): HeadBatch {
  const batch = emptyHeadBatch(states.length, width);
  for (let i = 0; i < states.length; i++) fillHeadRow(batch, i, states[i]!.events, nowMs, cfg);
  return batch;
}

/**
 * The narrowest batch width that holds `events` events: a power of two from 8 (at least recentK),
 * capped at cfg.maxEvents. Grouping users by it lets inference skip most padded positions.
 */
export function narrowWidth(events: number, cfg: RealtimeHeadConfig): number {
  const need = Math.max(Math.min(events, cfg.maxEvents), cfg.recentK);
  let w = 8;
  while (w < need) w *= 2;
  return Math.min(Math.max(w, cfg.recentK), cfg.maxEvents);
}

interface Param {
  name: string;
  v: tf.Variable;
}

let instanceCounter = 0;

export class RealtimeHead {
  readonly cfg: RealtimeHeadConfig;
  /** Frozen AETN app matrix W_a [M, dA] (a constant: never trained here). */
  readonly appMatrix: tf.Tensor2D;
  private readonly params: Param[] = [];
  private readonly byName = new Map<string, tf.Variable>();
  /** Host copies for inference (see freeze()): W_a W_in + b_in [M, d], type_emb [3, d], gap_emb [G, d]. */
  private frozen: { tokens: Float32Array; types: Float32Array; gaps: Float32Array } | null = null;

  constructor(cfg: RealtimeHeadConfig, appEmbeddings: Float32Array, seed: number) {
    validateHeadConfig(cfg);
    if (appEmbeddings.length !== cfg.numApps * cfg.appDim) {
      throw new UserError(`realtime head: app matrix has ${appEmbeddings.length} values, expected numApps ${cfg.numApps} x appDim ${cfg.appDim}`);
    }
    this.cfg = cfg;
    this.appMatrix = tf.keep(tf.tensor2d(appEmbeddings, [cfg.numApps, cfg.appDim]));
    const { appDim: dA, dModel: d, dFf, gapBuckets: G, recentK: k, outDim, numApps: M } = cfg;
    // Every tfjs variable name must be unique in the process; the checkpoint uses `name` instead.
    const tag = `rt${instanceCounter++}`;
    let s = seed >>> 0;
    const normal = (shape: number[], std: number) => tf.randomNormal(shape, 0, std, 'float32', (s = (s + 1) >>> 0));
    const add = (name: string, init: tf.Tensor) => {
      const v = tf.variable(init, true, `${tag}/${name}`);
      init.dispose();
      this.params.push({ name, v });
      this.byName.set(name, v);
    };
    // W_a rows have roughly unit scale per coordinate or less; 1/sqrt(dA) keeps tokens O(1).
    add('in/W', normal([dA, d], 1 / Math.sqrt(dA)));
    add('in/b', tf.zeros([d]));
    add('type_emb', normal([3, d], 0.02));
    add('gap_emb', normal([G, d], 0.02));
    for (let l = 0; l < cfg.layers; l++) {
      const p = `h${l}`;
      add(`${p}/ln1/g`, tf.ones([d]));
      add(`${p}/ln1/b`, tf.zeros([d]));
      add(`${p}/attn/Wqkv`, normal([d, 3 * d], 0.02));
      add(`${p}/attn/bqkv`, tf.zeros([3 * d]));
      // GPT-2's residual scaling: projections into the residual stream start smaller with depth.
      add(`${p}/attn/Wo`, normal([d, d], 0.02 / Math.sqrt(2 * cfg.layers)));
      add(`${p}/attn/bo`, tf.zeros([d]));
      add(`${p}/ln2/g`, tf.ones([d]));
      add(`${p}/ln2/b`, tf.zeros([d]));
      add(`${p}/ffn/W1`, normal([d, dFf], 0.02));
      add(`${p}/ffn/b1`, tf.zeros([dFf]));
      add(`${p}/ffn/W2`, normal([dFf, d], 0.02 / Math.sqrt(2 * cfg.layers)));
      add(`${p}/ffn/b2`, tf.zeros([d]));
    }
    add('lnf/g', tf.ones([d]));
    add('lnf/b', tf.zeros([d]));
    add('out/W', normal([(1 + k) * d, outDim], 1 / Math.sqrt((1 + k) * d)));
    add('out/b', tf.zeros([outDim]));
    // Item side of the training softmax only: W_a W_item scores apps against s. Small at init so the
    // untrained head scores by the (log-popularity initialised) bias, not by noise.
    add('item/W', normal([dA, outDim], 0.1 / Math.sqrt(dA)));
    add('item/b', tf.zeros([M]));
  }

  /** Every trainable weight in a stable order with stable checkpoint names. */
  get variables(): tf.Variable[] {
    return this.params.map((p) => p.v);
  }

  get namedVariables(): readonly { name: string; v: tf.Variable }[] {
    return this.params;
  }

  private w(name: string): tf.Variable {
    const v = this.byName.get(name);
    if (!v) throw new Error(`realtime head: no variable ${name}`);
    return v;
  }

  /**
   * Caches the token tables on the host for inference: W_a W_in + b_in (so no dA-wide projection
   * per event, the largest matmul otherwise) and the type / gap tables. Inference then builds the
   * [B*N, d] token block in JS (row copies and adds), which beats the backend's gather and one-hot
   * kernels several times over. Call again after the weights change; training never uses it.
   */
  freeze(): void {
    this.frozen = null;
    this.frozenTables();
  }

  /** freeze() for backends that read back only asynchronously (webgpu): the same tables via data(). */
  async freezeAsync(): Promise<void> {
    this.frozen = null;
    const tokens = tf.tidy(() => tf.add(tf.matMul(this.appMatrix, this.w('in/W') as tf.Tensor2D), this.w('in/b')));
    try {
      this.frozen = {
        tokens: (await tokens.data()) as Float32Array,
        types: (await this.w('type_emb').data()) as Float32Array,
        gaps: (await this.w('gap_emb').data()) as Float32Array,
      };
    } finally {
      tokens.dispose();
    }
  }

  /** Every variable's values by checkpoint name, read asynchronously (for HostHead on webgpu). */
  async readWeights(): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    for (const p of this.params) out.set(p.name, ((await p.v.data()) as Float32Array).slice());
    return out;
  }

  /** The host tables freeze() caches (computed on first use); the host forward copies them. */
  frozenTables(): { tokens: Float32Array; types: Float32Array; gaps: Float32Array } {
    if (this.frozen) return this.frozen;
    const tokens = tf.tidy(() => tf.add(tf.matMul(this.appMatrix, this.w('in/W') as tf.Tensor2D), this.w('in/b')));
    this.frozen = {
      tokens: tokens.dataSync() as Float32Array,
      types: this.w('type_emb').dataSync() as Float32Array,
      gaps: this.w('gap_emb').dataSync() as Float32Array,
    };
    tokens.dispose();
    return this.frozen;
  }

  /** Token block [B*N, d] on the host from the frozen tables; padded positions stay zero. */
  private hostTokens(batch: HeadBatch): Float32Array {
    const f = this.frozen!;
    const d = this.cfg.dModel;
    const n = batch.size * batch.maxEvents;
    const x = new Float32Array(n * d);
    for (let p = 0; p < n; p++) {
      if (batch.valid[p] === 0) continue;
      const o = p * d;
      const a = batch.apps[p]! * d;
      const t = batch.types[p]! * d;
      const g = batch.gaps[p]! * d;
      for (let j = 0; j < d; j++) x[o + j] = f.tokens[a + j]! + f.types[t + j]! + f.gaps[g + j]!;
    }
    return x;
  }

  /** Host batch -> the short-term vectors s [B, outDim]. Call inside tf.tidy / variableGrads. */
  forward(batch: HeadBatch, training: boolean, seed = 0): tf.Tensor2D {
    const { dModel: d, heads: H, gapBuckets: G, recentK: k, layers } = this.cfg;
    // N is the batch's width, not cfg.maxEvents: a batch of users with few events may be encoded
    // narrower (padding changes nothing), which saves the work on padded positions.
    const N = batch.maxEvents;
    const B = batch.size;
    if (N < k || N > this.cfg.maxEvents) throw new Error(`realtime head: batch width ${N} outside [recentK ${k}, maxEvents ${this.cfg.maxEvents}]`);
    const dh = d / H;
    const rate = training ? this.cfg.dropout : 0;
    let dropSeed = seed * 7919 + 17;
    const drop = (x: tf.Tensor): tf.Tensor => (rate > 0 ? tf.dropout(x, rate, undefined, dropSeed++) : x);

    const valid = tf.tensor2d(batch.valid, [B * N, 1]); // [B*N, 1]
    // token embedding; padding tokens are exactly zero                         [B*N, d]
    let x: tf.Tensor;
    if (!training && this.frozen) {
      x = tf.tensor2d(this.hostTokens(batch), [B * N, d]);
    } else {
      const appTok = tf.matMul(tf.gather(this.appMatrix, tf.tensor1d(batch.apps, 'int32')), this.w('in/W'));
      const typeOh = tf.cast(tf.oneHot(tf.tensor1d(batch.types, 'int32'), 3), 'float32') as tf.Tensor2D; // [B*N, 3]
      const gapOh = tf.cast(tf.oneHot(tf.tensor1d(batch.gaps, 'int32'), G), 'float32') as tf.Tensor2D; // [B*N, G]
      x = tf.add(tf.addN([appTok, tf.matMul(typeOh, this.w('type_emb')), tf.matMul(gapOh, this.w('gap_emb'))]), this.w('in/b'));
      x = tf.mul(drop(x), valid);
    }

    // additive key mask: 0 at events, -1e9 at padding                         [B, 1, 1, N]
    const keyBias = tf.reshape(tf.mul(tf.sub(1, tf.tensor2d(batch.valid, [B, N])), -1e9), [B, 1, 1, N]);
    const scale = 1 / Math.sqrt(dh);
    for (let l = 0; l < layers; l++) {
      const p = `h${l}`;
      // attention                                                           [B*N, d]
      const h = layerNorm(x, this.w(`${p}/ln1/g`), this.w(`${p}/ln1/b`));
      // q, k, v from column slices of the packed weights: slicing [d, 3d] weights is cheap, splitting
      // the [B*N, 3d] activations is a large copy.
      const Wqkv = this.w(`${p}/attn/Wqkv`);
      const bqkv = this.w(`${p}/attn/bqkv`);
      const [q, kk, v] = [0, 1, 2].map((i) => {
        const t = tf.add(tf.matMul(h as tf.Tensor2D, tf.slice(Wqkv, [0, i * d], [d, d]) as tf.Tensor2D), tf.slice(bqkv, [i * d], [d])); // [B*N, d]
        return tf.transpose(tf.reshape(t, [B, N, H, dh]), [0, 2, 1, 3]); // [B, H, N, dh]
      });
      const att = tf.softmax(tf.add(tf.mul(tf.matMul(q!, kk!, false, true), scale), keyBias)); // [B, H, N, N]
      const y = tf.reshape(tf.transpose(tf.matMul(att, v!), [0, 2, 1, 3]), [B * N, d]); // [B*N, d]
      x = tf.add(x, drop(tf.add(tf.matMul(y, this.w(`${p}/attn/Wo`)), this.w(`${p}/attn/bo`))));
      // feed-forward                                                        [B*N, d]
      const h2 = layerNorm(x, this.w(`${p}/ln2/g`), this.w(`${p}/ln2/b`));
      const f = drop(tf.relu(tf.add(tf.matMul(h2 as tf.Tensor2D, this.w(`${p}/ffn/W1`)), this.w(`${p}/ffn/b1`)))); // [B*N, dFf]
      x = tf.add(x, tf.add(tf.matMul(f as tf.Tensor2D, this.w(`${p}/ffn/W2`)), this.w(`${p}/ffn/b2`)));
    }
    // Padded rows get nonzero values from the biases; they are masked out of both poolings below.
    x = layerNorm(x, this.w('lnf/g'), this.w('lnf/b')); //                     [B*N, d]
    const x3 = tf.reshape(x, [B, N, d]);
    const valid3 = tf.reshape(valid, [B, N, 1]);
    // max over valid positions; a user without events pools to zeros        [B, d]
    const maxPool = tf.mul(tf.max(tf.add(x3, tf.mul(tf.sub(1, valid3), -1e9)), 1), tf.minimum(tf.sum(valid3, 1), 1));
    // the k most recent positions (left padding puts them last), zero where padded   [B, k*d]
    const recent = tf.reshape(tf.mul(tf.slice(x3, [0, N - k, 0], [B, k, d]), tf.slice(valid3, [0, N - k, 0], [B, k, 1])), [B, k * d]);
    const pooled = tf.concat([maxPool, recent], 1); //                           [B, (1+k) d]
    const out = tf.add(tf.matMul(pooled, this.w('out/W')), this.w('out/b')) as tf.Tensor2D; // [B, dOut]
    return l2normalize(out);
  }

  /** Item embeddings for the training softmax: W_a[rows] W_item [C, dOut] and their biases [C]. */
  itemSide(candidates?: tf.Tensor1D): { items: tf.Tensor2D; bias: tf.Tensor1D } {
    if (!candidates) return { items: tf.matMul(this.appMatrix, this.w('item/W')), bias: this.w('item/b') as tf.Tensor1D };
    return {
      items: tf.matMul(tf.gather(this.appMatrix, candidates), this.w('item/W')),
      bias: tf.gather(this.w('item/b'), candidates) as tf.Tensor1D,
    };
  }

  /**
   * Multiply-adds x2 of one frozen inference forward per user at the full window (for GFLOP/s in
   * the benchmark). Tokens come from host tables (adds only), so only the matmuls count.
   */
  flopsPerUser(): number {
    const { dModel: d, dFf, maxEvents: N, layers, recentK: k, outDim } = this.cfg;
    const perLayer = N * d * 3 * d + 2 * N * N * d + N * d * d + 2 * N * d * dFf;
    return 2 * (layers * perLayer + (1 + k) * d * outDim);
  }

  dispose(): void {
    this.frozen = null;
    this.appMatrix.dispose();
    for (const p of this.params) p.v.dispose();
  }
}

function layerNorm(x: tf.Tensor, g: tf.Tensor, b: tf.Tensor): tf.Tensor {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, 1e-5))), g), b);
}

function l2normalize(x: tf.Tensor2D): tf.Tensor2D {
  return tf.mul(x, tf.rsqrt(tf.add(tf.sum(tf.square(x), 1, true), 1e-12)));
}
