// A small stand-in model for the training machinery tests: an app embedding table tied to a softmax
// output over apps (the same gather-in / matmul-out pattern as AETN's tied W_a), with dropout, so
// the trainer, workers, checkpoints and embedder are tested independently of the AETN code.
import * as tf from '@tensorflow/tfjs-core';
import type { UserExample, Vocabulary } from '../../src/data/types.js';
import type { BatchLike, LossTensors, ModelFactory, ModelLike } from '../../src/model/train-engine.js';

export interface TinyConfig {
  numApps: number;
  d: number;
  dEmb: number;
  seqLen: number;
  variant: string;
  l2: number;
  dropout: number;
}

interface TinyBatch extends BatchLike {
  retIdx: tf.Tensor2D; // [B, L] int32
  retW: tf.Tensor2D; // [B, L] 1/|retention| or 0 for padding
  inst: tf.Tensor2D; // [B, I] int32
  instMask: tf.Tensor2D; // [B, I] 1 valid / 0 padding
  training: boolean;
  seed: number;
}

class TinyModel implements ModelLike {
  readonly variables: tf.Variable[];
  private readonly wApp: tf.Variable;
  private readonly wU: tf.Variable;
  private readonly bias: tf.Variable;

  constructor(readonly cfg: TinyConfig, seed: number) {
    this.wApp = tf.variable(tf.randomNormal([cfg.numApps, cfg.d], 0, 0.3, 'float32', seed), true);
    this.wU = tf.variable(tf.randomNormal([cfg.d, cfg.dEmb], 0, 0.3, 'float32', seed + 1), true);
    this.bias = tf.variable(tf.zeros([cfg.numApps]), true);
    this.variables = [this.wApp, this.wU, this.bias];
  }

  private user(b: TinyBatch, training: boolean): tf.Tensor2D {
    const [B, L] = b.retIdx.shape;
    const rows = tf.gather(this.wApp, tf.reshape(b.retIdx, [B * L])).reshape([B, L, this.cfg.d]);
    let h = tf.sum(tf.mul(rows, tf.expandDims(b.retW, 2)), 1) as tf.Tensor2D;
    if (training && this.cfg.dropout > 0) h = tf.dropout(h, this.cfg.dropout, undefined, b.seed) as tf.Tensor2D;
    return tf.tanh(tf.matMul(h, this.wU));
  }

  losses(batch: BatchLike, training: boolean): LossTensors {
    const b = batch as TinyBatch;
    const u = this.user(b, training);
    // Tied output: logits = (u W_u^T) W_app^T + bias, [B, M].
    const logits = tf.add(tf.matMul(tf.matMul(u, this.wU, false, true), this.wApp, false, true), this.bias);
    const logp = tf.logSoftmax(logits); // [B, M]
    const [B, I] = b.inst.shape;
    const picked = tf.gather(tf.reshape(logp, [B * this.cfg.numApps]), tf.add(b.inst, tf.mul(tf.range(0, B, 1, 'int32').expandDims(1), this.cfg.numApps)).reshape([B * I]));
    const nll = tf.neg(tf.mul(picked.reshape([B, I]), b.instMask));
    const perUser = tf.div(tf.sum(nll, 1), tf.maximum(tf.sum(b.instMask, 1), 1));
    const main = tf.mean(perUser) as tf.Scalar;
    const reg = tf.mul(this.cfg.l2, tf.addN(this.variables.map((v) => tf.sum(tf.square(v))))) as tf.Scalar;
    const zero = tf.scalar(0);
    return { total: tf.add(main, reg) as tf.Scalar, main, aux: zero, mask: tf.clone(zero), reg };
  }

  embed(batch: BatchLike): tf.Tensor2D {
    return this.user(batch as TinyBatch, false);
  }

  flopsPerUser(training: boolean): number {
    const { d, dEmb, numApps } = this.cfg;
    const fwd = 2 * (d * dEmb * 2 + dEmb * d + d * numApps);
    return training ? 3 * fwd : 2 * d * dEmb;
  }
}

export const factory: ModelFactory<TinyConfig> = {
  kind: 'tiny',
  makeConfig(vocab: Vocabulary, o: Record<string, unknown>, data) {
    return {
      numApps: vocab.apps.length,
      d: Number(o.dModel ?? 16),
      dEmb: Number(o.dEmb ?? 8),
      seqLen: Number(o.seqLen ?? data?.seqLen ?? 25),
      variant: String(o.variant ?? 'aetn'),
      l2: 1e-4,
      dropout: 0.1,
    };
  },
  createModel: (cfg, seed) => new TinyModel(cfg, seed),
  makeBatch(examples: UserExample[], cfg, opts): TinyBatch {
    const B = examples.length;
    const L = Math.max(1, ...examples.map((e) => e.retention.length));
    const I = cfg.seqLen;
    const ri = new Int32Array(B * L);
    const rw = new Float32Array(B * L);
    const ii = new Int32Array(B * I);
    const im = new Float32Array(B * I);
    examples.forEach((e, b) => {
      e.retention.forEach((a, j) => {
        ri[b * L + j] = a;
        rw[b * L + j] = 1 / e.retention.length;
      });
      const inst = e.installs.slice(-I);
      inst.forEach((a, j) => {
        ii[b * I + j] = a;
        im[b * I + j] = 1;
      });
    });
    const t = {
      retIdx: tf.tensor2d(ri, [B, L], 'int32'),
      retW: tf.tensor2d(rw, [B, L]),
      inst: tf.tensor2d(ii, [B, I], 'int32'),
      instMask: tf.tensor2d(im, [B, I]),
    };
    return { ...t, training: opts.training, seed: opts.seed, dispose: () => tf.dispose(Object.values(t)) };
  },
  embeddingDim: (cfg) => cfg.dEmb,
  variantOf: (cfg) => cfg.variant,
};

/** A deterministic toy world: users prefer one of a few app groups, install apps of their group. */
export function tinyWorld(numUsers: number, numApps = 40, seed = 7): { vocab: Vocabulary; examples: UserExample[] } {
  let s = seed >>> 0;
  const rnd = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  const groups = 4;
  const vocab: Vocabulary = {
    hash: `tiny-${numApps}-${seed}`,
    categories: Array.from({ length: groups }, (_, g) => `cat${g}`),
    apps: Array.from({ length: numApps }, (_, i) => ({ index: i, appId: `app${i}`, category: i % groups, packages: [`com.app${i}`] })),
  };
  const examples: UserExample[] = [];
  for (let u = 0; u < numUsers; u++) {
    const g = Math.floor(rnd() * groups);
    const pick = () => g + groups * Math.floor(rnd() * Math.floor((numApps - 1 - g) / groups + 1));
    const ret = new Set<number>();
    const nr = 1 + Math.floor(rnd() * 6);
    for (let j = 0; j < nr; j++) ret.add(pick());
    const ni = Math.floor(rnd() * 5);
    const installs = Int32Array.from({ length: ni }, () => pick());
    const nu = Math.floor(rnd() * 3);
    const uninstalls = Int32Array.from({ length: nu }, () => Math.floor(rnd() * numApps));
    examples.push({
      userId: `u${u}`,
      retention: Int32Array.from([...ret].sort((a, b) => a - b)),
      installs,
      installDates: Int32Array.from({ length: ni }, () => Math.floor(rnd() * 52)),
      installTimes: Float64Array.from({ length: ni }, () => 1.7e12),
      uninstalls,
      uninstallDates: Int32Array.from({ length: nu }, () => Math.floor(rnd() * 52)),
      uninstallTimes: Float64Array.from({ length: nu }, () => 1.7e12),
      lastActiveMs: 1.7e12,
    });
  }
  return { vocab, examples };
}

/** A tiny world as the trainer's in-memory data source (what `openTrainData` gives for a prepared dir). */
export function tinyTrainData(world: { vocab: Vocabulary; examples: UserExample[] }): import('../../src/model/train.js').TrainData {
  return {
    vocab: world.vocab,
    seqLen: 6,
    dateBuckets: 52,
    numUsers: world.examples.length,
    source: 'memory',
    async *examples() {
      yield* world.examples;
    },
  };
}
