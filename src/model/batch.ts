// UserExample[] -> padded batch. Two stages so that worker threads can receive plain typed arrays
// (structured clone) and build the tensors on their own tfjs engine:
//   makeHostBatch  - host arrays only: padding, [MASK] selection, per-user random seeds
//   batchToTensors - tensors on the current backend
// Every random choice (which apps are masked, dropout masks in aetn.ts) is drawn from a per-user
// stream seeded by (step seed, user id), never by the user's position in the batch: the same user in
// the same step gets the same masks whether the batch is processed whole or split across workers,
// so data-parallel gradients equal single-thread ones exactly.
import * as tf from '@tensorflow/tfjs-core';
import type { UserExample } from '../data/types.js';
import { UserError } from '../util/errors.js';
import { combineSeeds, fnv1a32Units } from '../util/hash.js';
import { Mulberry32 } from '../util/random.js';
import { VARIANT_FEATURES, type AetnConfig } from './config.js';

// Streams of one user: distinct constants keep the [MASK] draws independent of the dropout draws
// (aetn.ts numbers its dropout sites from 0 upward).
const STREAM_MASK_INSTALL = 0x4d41534b; // 'MASK'
const STREAM_MASK_UNINSTALL = 0x4d41534c;

// ---- the batch -----------------------------------------------------------------------------------

/**
 * Host arrays of one batch. Sequence positions: T = 1 + 2I tokens per user, position 0 is the
 * retention token (r in the encoder, u in the decoder), 1..I the installs, I+1..2I the uninstalls;
 * valid tokens first within each half, padding after.
 */
export interface HostBatch {
  size: number; // B
  numApps: number; // M
  seqLen: number; // I
  userIds: string[];
  /** Per-user seed of this step (dropout masks in aetn.ts). */
  userSeeds: Uint32Array; // [B]
  /** Whether [MASK] positions were drawn (training batch of a variant with L_mask). */
  masked: boolean;
  /** R = longest retention in the batch (>= 1). */
  retWidth: number;
  retIds: Int32Array; // [B*R] app index, 0 at padding
  retWeights: Float32Array; // [B*R] l2-normalised multi-hot weight 1/sqrt(|retention|), 0 at padding
  /** b*M + app for every retained app: positives of the sigmoid retention losses. */
  retPosFlat: Int32Array; // [Nr]
  /** Token app ids: app index, M = padding (zero row). Never contains [MASK]: see seqIdsMasked. */
  seqIds: Int32Array; // [B*2I]
  /** seqIds with M+1 ([MASK], learned row) at the drawn positions; equals seqIds when !masked. The
   *  model reads it only when training, so an inference pass over a training batch sees every app. */
  seqIdsMasked: Int32Array; // [B*2I]
  seqDates: Int32Array; // [B*2I] week bucket, 0 at padding
  seqValid: Float32Array; // [B*2I] 1 valid, 0 padding
  /** Flat index b*T + position of every valid install/uninstall token (reconstruction targets). */
  targetFlat: Int32Array; // [Nv]
  targetApps: Int32Array; // [Nv]
  /** Flat index b*T + position of every [MASK] token and the app it hides. */
  maskFlat: Int32Array; // [Nm]
  maskApps: Int32Array; // [Nm]
}

export interface Batch {
  host: HostBatch;
  size: number;
  retIds: tf.Tensor2D; // int32 [B, R]
  retWeights: tf.Tensor2D; // [B, R]
  /** Multi-hot retention [B, M]: the sigmoid losses' targets, dense so that no gradient has to
   *  scatter into a [B·M] tensor (the cpu backend's UnsortedSegmentSum is quadratic). */
  retTarget: tf.Tensor2D;
  seqIds: tf.Tensor2D; // int32 [B, 2I]
  seqIdsMasked: tf.Tensor2D; // int32 [B, 2I]
  seqDates: tf.Tensor2D; // int32 [B, 2I]
  seqValid: tf.Tensor3D; // [B, 2I, 1]
  /** Additive attention mask over keys: 0 valid, -1e9 padding; position 0 is always valid. */
  keyBias: tf.Tensor4D; // [B, 1, 1, T]
  targetFlat: tf.Tensor1D;
  targetApps: tf.Tensor1D;
  maskFlat: tf.Tensor1D;
  maskApps: tf.Tensor1D;
  dispose(): void;
}

export interface BatchOptions {
  /** Draw [MASK] positions (only for variants with L_mask). */
  training: boolean;
  /** Step seed: with the user id it fixes this user's masks and dropout. */
  seed: number;
}

export function makeHostBatch(examples: UserExample[], cfg: AetnConfig, opts: BatchOptions): HostBatch {
  const B = examples.length;
  if (B === 0) throw new UserError('cannot make a batch of 0 users');
  const M = cfg.numApps;
  const I = cfg.seqLen;
  const T = 1 + 2 * I;
  const masked = opts.training && VARIANT_FEATURES[cfg.variant].mask && cfg.maskCount > 0;

  const retentions: Int32Array[] = examples.map((ex) => checkedRetention(ex, M));
  let R = 1;
  let Nr = 0;
  for (const r of retentions) {
    R = Math.max(R, r.length);
    Nr += r.length;
  }

  const userIds = new Array<string>(B);
  const userSeeds = new Uint32Array(B);
  const retIds = new Int32Array(B * R);
  const retWeights = new Float32Array(B * R);
  const retPosFlat = new Int32Array(Nr);
  const seqIds = new Int32Array(B * 2 * I).fill(M);
  const seqIdsMasked = new Int32Array(B * 2 * I).fill(M);
  const seqDates = new Int32Array(B * 2 * I);
  const seqValid = new Float32Array(B * 2 * I);
  const targetFlat: number[] = [];
  const targetApps: number[] = [];
  const maskFlat: number[] = [];
  const maskApps: number[] = [];
  if (B * M >= 2 ** 31) throw new UserError(`batch too large: ${B} users x ${M} apps overflows int32 indices; use a smaller batch`);

  let p = 0;
  for (let b = 0; b < B; b++) {
    const ex = examples[b];
    userIds[b] = ex.userId;
    userSeeds[b] = combineSeeds(opts.seed >>> 0, fnv1a32Units(ex.userId));
    const ret = retentions[b];
    const w = ret.length > 0 ? 1 / Math.sqrt(ret.length) : 0;
    for (let j = 0; j < ret.length; j++) {
      retIds[b * R + j] = ret[j];
      retWeights[b * R + j] = w;
      retPosFlat[p++] = b * M + ret[j];
    }
    const halves: [Int32Array, Int32Array, string, number][] = [
      [ex.installs, ex.installDates, 'installs', STREAM_MASK_INSTALL],
      [ex.uninstalls, ex.uninstallDates, 'uninstalls', STREAM_MASK_UNINSTALL],
    ];
    for (let h = 0; h < 2; h++) {
      const [apps, dates, what, stream] = halves[h];
      if (apps.length !== dates.length) {
        throw new UserError(`user ${ex.userId}: ${what} has ${apps.length} apps but ${dates.length} dates`);
      }
      // The most recent events are last: keep the latest I.
      const start = Math.max(0, apps.length - I);
      const n = apps.length - start;
      const base = b * 2 * I + h * I; // index into the [B, 2I] arrays
      for (let k = 0; k < n; k++) {
        const app = apps[start + k];
        if (!Number.isInteger(app) || app < 0 || app >= M) {
          throw new UserError(`user ${ex.userId}: ${what} app index ${app} is outside the vocabulary [0, ${M})`);
        }
        const d = dates[start + k];
        seqIds[base + k] = app;
        seqIdsMasked[base + k] = app;
        seqDates[base + k] = Math.min(cfg.dateBuckets - 1, Math.max(0, d | 0));
        seqValid[base + k] = 1;
        targetFlat.push(b * T + 1 + h * I + k);
        targetApps.push(app);
      }
      if (masked && n > 0) {
        const rng = new Mulberry32(combineSeeds(userSeeds[b], stream));
        for (const k of choose(Math.min(cfg.maskCount, n), n, rng)) {
          maskFlat.push(b * T + 1 + h * I + k);
          maskApps.push(seqIds[base + k]);
          seqIdsMasked[base + k] = M + 1; // date and type stay: the model must infer the app from context
        }
      }
    }
  }
  return {
    size: B,
    numApps: M,
    seqLen: I,
    userIds,
    userSeeds,
    masked,
    retWidth: R,
    retIds,
    retWeights,
    retPosFlat,
    seqIds,
    seqIdsMasked,
    seqDates,
    seqValid,
    targetFlat: Int32Array.from(targetFlat),
    targetApps: Int32Array.from(targetApps),
    maskFlat: Int32Array.from(maskFlat),
    maskApps: Int32Array.from(maskApps),
  };
}

/** Tensors of a host batch on the current backend. */
export function batchToTensors(h: HostBatch): Batch {
  const B = h.size;
  const I = h.seqLen;
  const T = 1 + 2 * I;
  const retTarget = new Float32Array(B * h.numApps);
  for (let i = 0; i < h.retPosFlat.length; i++) retTarget[h.retPosFlat[i]] = 1;
  const keyBias = new Float32Array(B * T);
  for (let b = 0; b < B; b++) {
    for (let k = 0; k < 2 * I; k++) if (h.seqValid[b * 2 * I + k] === 0) keyBias[b * T + 1 + k] = -1e9;
  }
  const t = {
    retIds: tf.tensor2d(h.retIds, [B, h.retWidth], 'int32'),
    retWeights: tf.tensor2d(h.retWeights, [B, h.retWidth]),
    retTarget: tf.tensor2d(retTarget, [B, h.numApps]),
    seqIds: tf.tensor2d(h.seqIds, [B, 2 * I], 'int32'),
    seqIdsMasked: tf.tensor2d(h.seqIdsMasked, [B, 2 * I], 'int32'),
    seqDates: tf.tensor2d(h.seqDates, [B, 2 * I], 'int32'),
    seqValid: tf.tensor3d(h.seqValid, [B, 2 * I, 1]),
    keyBias: tf.tensor4d(keyBias, [B, 1, 1, T]),
    targetFlat: tf.tensor1d(h.targetFlat, 'int32'),
    targetApps: tf.tensor1d(h.targetApps, 'int32'),
    maskFlat: tf.tensor1d(h.maskFlat, 'int32'),
    maskApps: tf.tensor1d(h.maskApps, 'int32'),
  };
  return {
    host: h,
    size: B,
    ...t,
    dispose() {
      for (const x of Object.values(t)) x.dispose();
    },
  };
}

/** UserExample[] -> batch tensors. Call `dispose()` when done. */
export function makeBatch(examples: UserExample[], cfg: AetnConfig, opts: BatchOptions): Batch {
  return batchToTensors(makeHostBatch(examples, cfg, opts));
}

function checkedRetention(ex: UserExample, M: number): Int32Array {
  const r = ex.retention;
  let sortedUnique = true;
  for (let i = 0; i < r.length; i++) {
    const a = r[i];
    if (!Number.isInteger(a) || a < 0 || a >= M) {
      throw new UserError(`user ${ex.userId}: retention app index ${a} is outside the vocabulary [0, ${M})`);
    }
    if (i > 0 && a <= r[i - 1]) sortedUnique = false;
  }
  // The contract says sorted unique; a duplicate would count an app twice in the positives.
  return sortedUnique ? r : Int32Array.from(new Set(r)).sort();
}

/** k distinct values of [0, n), partial Fisher-Yates. */
function choose(k: number, n: number, rng: Mulberry32): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < k; i++) {
    const j = i + rng.int(n - i);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a.slice(0, k);
}
