// AETN: the Autoencoder-coupled Transformer Network of "General-Purpose User Embeddings based on
// Mobile App Usage" (Tencent, KDD 2020), its ablations and the DAE baseline, in one file.
//
// Notation (paper §4): B users per batch, M apps, d = dModel, I = seqLen, T = 1 + 2I tokens per
// user (retention token + I installs + I uninstalls), H heads of width dh = d/H.
//
//   retention ──l2norm, dropout──▶ x0 ──W_a──▶ x1 ──▶ 256 ──▶ 512 ──W_aᵀ──▶ σ   (L_aux, autoencoder)
//                                              │
//                            r = x1 + e_ret    ▼
//   installs / uninstalls ──▶ tokens ──▶ [r; tokens] ──encoder×L──▶ r_L ──tanh W_b──▶ u (user vector)
//                                            │ masked positions ──W_aᵀ──▶ softmax   (L_mask)
//   u ──MLP──W_aᵀ──▶ σ (retention, L_main) ; [ũ; ũ + date + type] ──decoder──W_aᵀ──▶ softmax (L_main)
//   (V-AETN's decoder reads [ũ; date + type]: ũ is one prepended key/value, see forward)
//
// One tied app matrix W_a = W_app + C[category(app)] ([M, d]) is the first autoencoder layer, the
// encoder's app table and, transposed, the output layer of every head, with one shared bias b_out.
//
// Choices where the paper is silent (see docs/parts/model.md):
// - Per-token LayerNorm and an attention output projection W_o (the standard transformer). The
//   reference code normalises over the whole (T x d) block, which lets the number of padded
//   positions change every valid token's output; per-token LN keeps padding inert by construction.
// - The retention token (the bottleneck in the decoder) is itself a key, so every query has at least
//   one valid key even for a user without any install or uninstall (an all-masked softmax would
//   otherwise average padding).
// - Modified attention: K = [x_t ; r] W_K with W_K = [W_K_tok ; W_K_ret] (2d -> d), computed as
//   x_t W_K_tok + r W_K_ret so the concatenation is never materialised. Vanilla: K = x_t W_K_tok.
//   A property of the paper's design (and of the reference code): the r half of the KEY projection
//   adds the same vector to every key of a user, hence the same number q·(r W_K_ret) to every score
//   of a query, and softmax is shift-invariant, so it has no effect (zero gradient; a test shows it).
//   It is kept to stay literal. The VALUE half adds Σ_t p_t · r W_V_ret = r W_V_ret to every
//   attention output (probabilities sum to 1): that conditioning on r is what separates AETN from
//   V-AETN.
// - Losses are normalised per user (mean over users), so their value does not depend on the batch
//   size and a batch split across workers gives exactly the mean of the halves' gradients.
import * as tf from '@tensorflow/tfjs-core';
// Gradients of the tfjs ops (tfjs-core's Node bundle registers none).
import './tf-gradients.js';
import { hashString, mixSeeds, type Batch } from './batch.js';
import { VARIANT_FEATURES, validateConfig, type AetnConfig, type VariantFeatures } from './config.js';

export { VARIANTS, defaultConfig, configToJSON, configFromJSON, type AetnConfig, type Variant } from './config.js';
export { makeBatch, makeHostBatch, batchToTensors, type Batch, type HostBatch } from './batch.js';

export interface AetnLosses {
  /** main + aux + mask + reg: what the optimiser minimises. */
  total: tf.Scalar;
  /** L_main: retention reconstruction from u + install and uninstall sequence reconstruction (DAE: its reconstruction). */
  main: tf.Scalar;
  aux: tf.Scalar;
  mask: tf.Scalar;
  reg: tf.Scalar;
  /** The retention part of L_main alone: comparable across all variants, DAE included. */
  retention: tf.Scalar;
  /** The install + uninstall part of L_main (0 for DAE). */
  sequence: tf.Scalar;
}

/** Every intermediate a test may want to look at (shapes in comments). */
export interface AetnOutputs {
  x1: tf.Tensor2D; // [B, d] first autoencoder layer (= retention token before e_ret)
  aeLogits?: tf.Tensor2D; // [B, M] autoencoder output (variants with L_aux)
  encoderOut?: tf.Tensor3D; // [B, T, d] last encoder layer; [B, 1, d] (r_L only) when no [MASK] head runs
  u: tf.Tensor2D; // [B, dEmb] the user vector
  retLogits: tf.Tensor2D; // [B, M] retention reconstruction from u
  decoderOut?: tf.Tensor3D; // [B, T, d]
  seqHidden?: tf.Tensor2D; // [Nv, d] decoder output at every valid install/uninstall position (batch.targetFlat order)
  seqLogits?: tf.Tensor2D; // [Nv, M]
  maskHidden?: tf.Tensor2D; // [Nm, d] encoder output at every [MASK] position (batch.maskFlat order)
  maskLogits?: tf.Tensor2D; // [Nm, M]
  appMatrix: tf.Tensor2D; // [M, d] W_a as used in this pass
}

interface LayerParams {
  Wq: tf.Variable; // [d, d]
  Wk: tf.Variable; // [d, d]   token half of the 2d -> d key projection
  Wv: tf.Variable; // [d, d]
  WkRet?: tf.Variable; // [d, d] retention/bottleneck half (modified attention only)
  WvRet?: tf.Variable; // [d, d]
  Wo: tf.Variable; // [d, d]
  ln1g: tf.Variable; // [d]
  ln1b: tf.Variable;
  Wff1: tf.Variable; // [d, dFf]
  bff1: tf.Variable; // [dFf]
  Wff2: tf.Variable; // [dFf, d]
  bff2: tf.Variable; // [d]
  ln2g: tf.Variable;
  ln2b: tf.Variable;
}

let instances = 0;

export class AetnModel {
  readonly cfg: AetnConfig;
  readonly features: VariantFeatures;
  /** Every trainable weight in a stable order; names[i] is the stable name of variables[i]. */
  readonly variables: tf.Variable[] = [];
  /** Stable checkpoint names ('W_app', 'enc0.Wq', ...). tfjs needs globally unique variable names, so
   *  v.name is `aetn<instance>/<stable name>`; use these for checkpoints. */
  readonly names: string[] = [];
  private readonly byName = new Map<string, tf.Variable>();
  private readonly prefix: string;
  private readonly appCategory: tf.Tensor1D; // int32 [M], a constant
  private readonly seed: number;

  // ---- parameters (names from the paper) ----
  readonly W_app: tf.Variable; // [M, d]  per-app part of W_a
  readonly C: tf.Variable; // [numCategories, d]  per-category part of W_a
  readonly b_out: tf.Variable; // [M]  the one output bias shared by every head
  readonly ae_b1: tf.Variable; // [d]  first autoencoder layer bias (its weight is W_a)
  readonly ae_W2?: tf.Variable; // [d, aeHidden]
  readonly ae_b2?: tf.Variable;
  readonly ae_W3?: tf.Variable; // [aeHidden, d]
  readonly ae_b3?: tf.Variable;
  readonly e_ret?: tf.Variable; // [1, d]  retention-token embedding
  readonly e_mask?: tf.Variable; // [1, d]  the [MASK] row of the app table
  readonly e_date?: tf.Variable; // [dateBuckets, d]
  readonly e_install?: tf.Variable; // [1, d] behaviour-type embeddings
  readonly e_uninstall?: tf.Variable; // [1, d]
  readonly enc: LayerParams[] = [];
  readonly W_b: tf.Variable; // [d, dEmb]  bottleneck
  readonly b_b: tf.Variable; // [dEmb]
  readonly W_ud?: tf.Variable; // [dEmb, d]  u -> decoder width (ũ)
  readonly b_ud?: tf.Variable;
  readonly dec: LayerParams[] = [];
  readonly W_ru: tf.Variable; // [dEmb, d]  retention reconstruction MLP from u
  readonly b_ru: tf.Variable; // [d]

  constructor(cfg: AetnConfig, seed: number) {
    validateConfig(cfg);
    this.cfg = cfg;
    this.features = VARIANT_FEATURES[cfg.variant];
    this.seed = seed >>> 0;
    this.prefix = `aetn${++instances}`;
    const { numApps: M, dModel: d, dEmb, aeHidden } = cfg;
    const f = this.features;
    this.appCategory = tf.tensor1d(cfg.appCategory, 'int32');

    this.W_app = this.glorot('W_app', [M, d]);
    this.C = this.glorot('C', [cfg.numCategories, d]);
    this.b_out = this.zeros('b_out', [M]);
    this.ae_b1 = this.zeros('ae.b1', [d]);
    if (f.aux) {
      this.ae_W2 = this.glorot('ae.W2', [d, aeHidden]);
      this.ae_b2 = this.zeros('ae.b2', [aeHidden]);
      this.ae_W3 = this.glorot('ae.W3', [aeHidden, d]);
      this.ae_b3 = this.zeros('ae.b3', [d]);
    }
    if (f.attention !== 'none') {
      this.e_ret = this.glorot('e_ret', [1, d]);
      if (f.mask) this.e_mask = this.glorot('e_mask', [1, d]);
      this.e_date = this.glorot('e_date', [cfg.dateBuckets, d]);
      this.e_install = this.glorot('e_install', [1, d]);
      this.e_uninstall = this.glorot('e_uninstall', [1, d]);
      for (let l = 0; l < cfg.encLayers; l++) this.enc.push(this.layer(`enc${l}`));
    }
    this.W_b = this.glorot('W_b', [d, dEmb]);
    this.b_b = this.zeros('b_b', [dEmb]);
    if (f.attention !== 'none') {
      this.W_ud = this.glorot('W_ud', [dEmb, d]);
      this.b_ud = this.zeros('b_ud', [d]);
      for (let l = 0; l < cfg.decLayers; l++) this.dec.push(this.layer(`dec${l}`));
    }
    this.W_ru = this.glorot('W_ru', [dEmb, d]);
    this.b_ru = this.zeros('b_ru', [d]);
  }

  /** The variable with this stable name (checkpoint loading). */
  variable(name: string): tf.Variable {
    const v = this.byName.get(name);
    if (!v) throw new Error(`model has no variable '${name}'`);
    return v;
  }

  dispose(): void {
    for (const v of this.variables) v.dispose();
    this.appCategory.dispose();
  }

  /** W_a = W_app + C[category(app)]: [M, d]. Recomputed per forward pass (M·d adds, cheap). */
  appMatrix(): tf.Tensor2D {
    return tf.add(this.W_app, gatherRows(this.C, this.appCategory)) as tf.Tensor2D;
  }

  // ---- forward ----------------------------------------------------------------------------------

  /**
   * The whole network. opts.heads = false stops at u (embedding); opts.allTokens forces the last
   * encoder layer to compute every token even when no head reads them (tests compare both paths).
   */
  forward(batch: Batch, training: boolean, opts: { heads?: boolean; allTokens?: boolean } = {}): AetnOutputs {
    const heads = opts.heads ?? true;
    const cfg = this.cfg;
    const B = batch.size;
    const I = cfg.seqLen;
    const T = 1 + 2 * I;
    const d = cfg.dModel;
    const drop = new Dropout(training ? batch.host.userSeeds : null);
    const leaky = (x: tf.Tensor) => tf.leakyRelu(x, cfg.leakyAlpha);
    const Wa = this.appMatrix(); // [M, d]
    const out = (h: tf.Tensor): tf.Tensor2D => tf.add(tf.matMul(h as tf.Tensor2D, Wa, false, true), this.b_out); // [N, d] -> [N, M]

    // Retention autoencoder, first layer. x0 = dropout(l2norm(multi-hot)) is sparse: x0 W_a is the
    // weighted sum of the retained apps' rows of W_a.
    const w0 = drop.apply(batch.retWeights, cfg.dropoutInput); // [B, R]
    const rows = gatherRows(Wa, batch.retIds); // [B, R, d]
    const x0Wa = tf.reshape(tf.matMul(tf.expandDims(w0, 1) as tf.Tensor3D, rows), [B, d]); // [B, 1, R] x [B, R, d] -> [B, d]
    const x1 = leaky(tf.add(x0Wa, this.ae_b1)) as tf.Tensor2D; // [B, d]

    const res: Partial<AetnOutputs> = { x1, appMatrix: Wa };
    if (this.features.aux && heads) {
      const x2 = leaky(tf.add(tf.matMul(x1, this.ae_W2!), this.ae_b2!)); // [B, aeHidden]
      const x3 = leaky(tf.add(tf.matMul(x2 as tf.Tensor2D, this.ae_W3!), this.ae_b3!)); // [B, d]
      res.aeLogits = out(x3); // [B, M]
    }

    let u: tf.Tensor2D;
    if (this.features.attention === 'none') {
      // DAE: the bottleneck sits directly on the autoencoder's first layer.
      u = tf.tanh(tf.add(tf.matMul(x1, this.W_b), this.b_b)) as tf.Tensor2D; // [B, dEmb]
    } else {
      // Encoder tokens. App table = [W_a ; zero padding row ; [MASK] row]: [M + 2, d].
      const tableRows = [Wa, tf.zeros([1, d]), this.e_mask ?? tf.zeros([1, d])];
      const appTable = tf.concat(tableRows, 0);
      const masking = training && batch.host.masked;
      const appEmb = gatherRows(appTable, masking ? batch.seqIdsMasked : batch.seqIds); // [B, 2I, d]
      const typeEmb = tf.concat([tf.tile(this.e_install!, [I, 1]), tf.tile(this.e_uninstall!, [I, 1])], 0); // [2I, d]
      // date + behaviour type, zero at padding; the decoder queries reuse it.
      const ctx = tf.mul(tf.add(gatherRows(this.e_date!, batch.seqDates), typeEmb), batch.seqValid); // [B, 2I, d]
      const tokens = tf.add(tf.mul(appEmb, batch.seqValid), ctx); // [B, 2I, d]; padding = 0 whatever its id
      const r0 = tf.add(x1, this.e_ret!); // [B, d] retention token
      let X = tf.concat([tf.expandDims(r0, 1), tokens], 1) as tf.Tensor3D; // [B, T, d]
      // Only the masked-app head reads the last layer's token outputs; without it that layer
      // computes its retention query alone (~40 % less encoder work when embedding).
      const maskHead = heads && masking && batch.host.maskFlat.length > 0;
      this.enc.forEach((p, l) => {
        X = this.transformerLayer(X, p, batch.keyBias, drop, maskHead || opts.allTokens === true || l < this.enc.length - 1);
      });
      res.encoderOut = X; // [B, T, d], or [B, 1, d] when only r_L was computed
      const rL = tf.reshape(tf.slice(X, [0, 0, 0], [B, 1, d]), [B, d]); // [B, d] retention token after L layers
      u = tf.tanh(tf.add(tf.matMul(rL, this.W_b), this.b_b)) as tf.Tensor2D; // [B, dEmb]

      if (heads) {
        // Masked-app prediction from the encoder output at [MASK] positions.
        if (maskHead) {
          res.maskHidden = gatherRows(tf.reshape(X, [B * T, d]), batch.maskFlat) as tf.Tensor2D; // [Nm, d]
          res.maskLogits = out(res.maskHidden); // [Nm, M]
        }
        // Non-autoregressive decoder: each position is queried by its date and behaviour type.
        // AETN (modified attention): the bottleneck plays the role of r, and ũ is also added to every
        // position's token. V-AETN (the paper's vanilla decoder): the tokens are [ũ; date + type],
        // so ũ reaches the positions only as the one prepended key/value.
        const uTilde = tf.add(tf.matMul(u, this.W_ud!), this.b_ud!); // [B, d]
        const uT = tf.expandDims(uTilde, 1); // [B, 1, d]
        const positions = this.features.attention === 'vanilla' ? ctx : tf.add(uT, ctx); // [B, 2I, d]
        let Y = tf.concat([uT, positions], 1) as tf.Tensor3D; // [B, T, d]
        for (const p of this.dec) Y = this.transformerLayer(Y, p, batch.keyBias, drop, true);
        res.decoderOut = Y;
        res.seqHidden = gatherRows(tf.reshape(Y, [B * T, d]), batch.targetFlat) as tf.Tensor2D; // [Nv, d]
        res.seqLogits = out(res.seqHidden); // [Nv, M]
      }
    }
    res.u = u;
    // Retention reconstruction from u (L_main; the DAE's own decoder).
    res.retLogits = heads ? out(leaky(tf.add(tf.matMul(u, this.W_ru), this.b_ru))) : undefined;
    return res as AetnOutputs;
  }

  /**
   * One post-LN transformer layer with the paper's modified attention: keys/values are every token
   * concatenated with the layer's current position-0 token (r in the encoder, the bottleneck in the
   * decoder) and projected 2d -> d; the vanilla variant's keys/values are the T tokens alone.
   * Queries are all T tokens, or (allQueries = false) position 0 alone, which returns [B, 1, d].
   */
  private transformerLayer(X: tf.Tensor3D, p: LayerParams, keyBias: tf.Tensor4D, drop: Dropout, allQueries: boolean): tf.Tensor3D {
    const [B, T, d] = X.shape;
    const Tq = allQueries ? T : 1;
    const H = this.cfg.heads;
    const dh = d / H;
    const X2 = tf.reshape(X, [B * T, d]); // [B·T, d]
    const r = tf.reshape(tf.slice(X, [0, 0, 0], [B, 1, d]), [B, d]); // [B, d] position 0
    const split = (t: tf.Tensor, n: number) => tf.transpose(tf.reshape(t, [B, n, H, dh]), [0, 2, 1, 3]); // -> [B, H, n, dh]
    let K = tf.reshape(tf.matMul(X2, p.Wk), [B, T, d]); // [B, T, d]
    let V = tf.reshape(tf.matMul(X2, p.Wv), [B, T, d]);
    if (p.WkRet && p.WvRet) {
      K = tf.add(K, tf.expandDims(tf.matMul(r, p.WkRet), 1)); // + r W_K_ret, broadcast over T
      V = tf.add(V, tf.expandDims(tf.matMul(r, p.WvRet), 1));
    }
    const Xq = allQueries ? X2 : r; // [B·Tq, d]
    const Q = split(tf.matMul(Xq, p.Wq), Tq); // [B, H, Tq, dh]
    const scores = tf.add(tf.mul(tf.matMul(Q, split(K, T), false, true), 1 / Math.sqrt(dh)), keyBias); // [B, H, Tq, T]
    const probs = drop.apply(tf.softmax(scores), this.cfg.dropoutAttention); // [B, H, Tq, T]
    const heads = tf.matMul(probs, split(V, T)); // [B, H, Tq, dh]
    const merged = tf.reshape(tf.transpose(heads, [0, 2, 1, 3]), [B * Tq, d]); // [B·Tq, d]
    const h1 = this.layerNorm(tf.add(Xq, tf.matMul(merged, p.Wo)), p.ln1g, p.ln1b); // [B·Tq, d]
    let f = tf.relu(tf.add(tf.matMul(h1, p.Wff1), p.bff1)); // [B·Tq, dFf]
    f = drop.apply(f, this.cfg.dropoutFfn);
    const f2 = tf.add(tf.matMul(f as tf.Tensor2D, p.Wff2), p.bff2); // [B·Tq, d]
    return tf.reshape(this.layerNorm(tf.add(h1, f2), p.ln2g, p.ln2b), [B, Tq, d]);
  }

  private layerNorm(x: tf.Tensor, g: tf.Variable, b: tf.Variable): tf.Tensor2D {
    const mean = tf.mean(x, -1, true);
    const xc = tf.sub(x, mean);
    const variance = tf.mean(tf.square(xc), -1, true);
    return tf.add(tf.mul(tf.mul(xc, tf.rsqrt(tf.add(variance, this.cfg.layerNormEps))), g), b) as tf.Tensor2D;
  }

  // ---- losses ---------------------------------------------------------------------------------

  /** All losses of one batch. Call inside tf.tidy / tf.variableGrads. */
  losses(batch: Batch, training: boolean): AetnLosses {
    const cfg = this.cfg;
    const B = batch.size;
    const o = this.forward(batch, training);
    const zero = tf.scalar(0);
    const retention = tf.div(weightedSigmoidCE(o.retLogits, batch.retTarget, cfg.posWeight), B * cfg.numApps) as tf.Scalar;
    // Each valid token counts 1/I of a user: a user with full sequences weighs like the reference code's
    // token average, padding weighs nothing.
    const sequence = o.seqLogits
      ? (tf.div(softmaxCE(o.seqLogits, o.seqHidden!, batch.targetApps, o.appMatrix, this.b_out as tf.Tensor1D), B * cfg.seqLen) as tf.Scalar)
      : zero;
    const main = tf.add(retention, sequence) as tf.Scalar;
    const aux = o.aeLogits
      ? (tf.div(weightedSigmoidCE(o.aeLogits, batch.retTarget, cfg.posWeight), B * cfg.numApps) as tf.Scalar)
      : zero;
    const mask =
      o.maskLogits && cfg.maskCount > 0
        ? (tf.div(softmaxCE(o.maskLogits, o.maskHidden!, batch.maskApps, o.appMatrix, this.b_out as tf.Tensor1D), B * cfg.maskCount) as tf.Scalar)
        : zero;
    const reg = this.l2();
    const total = tf.addN([main, aux, mask, reg]) as tf.Scalar;
    return { total, main, aux, mask, reg, retention, sequence };
  }

  /** L_reg = l2 · Σ w² / 2 over every trainable variable (the reference code skipped the transformer's). */
  l2(): tf.Scalar {
    return l2Penalty(this.variables, this.cfg.l2);
  }

  /** The user vectors u: [B, dEmb]. Inference: no dropout, no [MASK], no output heads. */
  embed(batch: Batch): tf.Tensor2D {
    return tf.tidy(() => this.forward(batch, false, { heads: false }).u);
  }

  // ---- cost model ----------------------------------------------------------------------------

  /**
   * FLOPs (2 × multiply-adds) of one user's forward pass, ×3 for forward + backward when training.
   * Defaults assume full sequences (2I valid tokens), 50 retained apps and maskCount masks per
   * sequence; pass measured averages for an exact count (flopsForBatch does).
   */
  flopsPerUser(training: boolean, avg: { retention?: number; tokens?: number; masked?: number } = {}): number {
    const cfg = this.cfg;
    const { numApps: M, dModel: d, dFf, dEmb, aeHidden } = cfg;
    const f = this.features;
    const T = 1 + 2 * cfg.seqLen;
    const R = avg.retention ?? 50;
    const tokens = avg.tokens ?? 2 * cfg.seqLen;
    const masked = training && f.mask ? (avg.masked ?? 2 * cfg.maskCount) : 0;
    const heads = training; // inference (embed) skips the output heads
    let mac = R * d; // x0 W_a (sparse)
    if (f.aux && heads) mac += d * aeHidden + aeHidden * d + d * M;
    if (f.attention !== 'none') {
      const modified = f.attention === 'modified';
      // K and V over all T tokens; Q, W_o, attention and FFN over Tq queries (T, or 1 for r alone).
      const layer = (Tq: number) => 2 * T * d * d + (modified ? 2 * d * d : 0) + 2 * Tq * d * d + 2 * Tq * T * d + 2 * Tq * d * dFf;
      const lastFull = heads && masked > 0;
      mac += (cfg.encLayers - 1) * layer(T) + layer(lastFull ? T : 1) + d * dEmb;
      if (heads) mac += dEmb * d + cfg.decLayers * layer(T) + (tokens + masked) * (d * M + d);
    } else {
      mac += d * dEmb;
    }
    if (heads) mac += dEmb * d + d * M;
    return 2 * mac * (training ? 3 : 1);
  }

  /** flopsPerUser × B with this batch's actual retention sizes, valid tokens and masks. */
  flopsForBatch(batch: Batch, training: boolean): number {
    const h = batch.host;
    const B = h.size;
    return B * this.flopsPerUser(training, {
      retention: h.retPosFlat.length / B,
      tokens: h.targetFlat.length / B,
      masked: h.maskFlat.length / B,
    });
  }

  // ---- parameter creation --------------------------------------------------------------------

  private register(name: string, init: tf.Tensor): tf.Variable {
    if (this.byName.has(name)) throw new Error(`duplicate variable ${name}`);
    const v = tf.variable(init, true, `${this.prefix}/${name}`);
    init.dispose();
    this.variables.push(v);
    this.names.push(name);
    this.byName.set(name, v);
    return v;
  }

  /** Glorot-uniform from (model seed, name): deterministic and independent of creation order. */
  private glorot(name: string, shape: number[], fanShape: number[] = shape): tf.Variable {
    const [fanIn, fanOut] = fanShape.length === 2 ? fanShape : [fanShape[0], fanShape[0]];
    const limit = Math.sqrt(6 / (fanIn + fanOut));
    const seed = mixSeeds(this.seed, hashString(name));
    return this.register(name, tf.randomUniform(shape, -limit, limit, 'float32', seed));
  }

  private zeros(name: string, shape: number[]): tf.Variable {
    return this.register(name, tf.zeros(shape));
  }

  private ones(name: string, shape: number[]): tf.Variable {
    return this.register(name, tf.ones(shape));
  }

  private layer(prefix: string): LayerParams {
    const { dModel: d, dFf } = this.cfg;
    const modified = this.features.attention === 'modified';
    // The modified key/value projections read 2d inputs: Glorot over the concatenated [2d, d].
    const kvFan = modified ? [2 * d, d] : [d, d];
    return {
      Wq: this.glorot(`${prefix}.Wq`, [d, d]),
      Wk: this.glorot(`${prefix}.Wk`, [d, d], kvFan),
      Wv: this.glorot(`${prefix}.Wv`, [d, d], kvFan),
      WkRet: modified ? this.glorot(`${prefix}.Wk_ret`, [d, d], kvFan) : undefined,
      WvRet: modified ? this.glorot(`${prefix}.Wv_ret`, [d, d], kvFan) : undefined,
      Wo: this.glorot(`${prefix}.Wo`, [d, d]),
      ln1g: this.ones(`${prefix}.ln1.g`, [d]),
      ln1b: this.zeros(`${prefix}.ln1.b`, [d]),
      Wff1: this.glorot(`${prefix}.Wff1`, [d, dFf]),
      bff1: this.zeros(`${prefix}.bff1`, [dFf]),
      Wff2: this.glorot(`${prefix}.Wff2`, [dFf, d]),
      bff2: this.zeros(`${prefix}.bff2`, [d]),
      ln2g: this.ones(`${prefix}.ln2.g`, [d]),
      ln2b: this.zeros(`${prefix}.ln2.b`, [d]),
    };
  }
}

// ---- losses ------------------------------------------------------------------------------------

/**
 * l2/2 · Σ w² over the variables, with its gradient as one product per variable. The generic
 * backward pass of the same expression (sum, square, addN, mul) runs ~7 full passes over every
 * weight (9.4 M at paper size) per chunk: a broadcast of dy, 2·w, dy·2w and their copies, ~10% of
 * a paper-size step. This one computes d/dw = (2·(dy·l2/2))·w: the same float32 value as the generic
 * pass (scaling by 2 is exact, so both are round(2·fround(dy·l2/2)·w)), reaching each variable at the
 * same point of the backward pass, so gradients and seeded runs are bit-identical to it.
 */
export function l2Penalty(vars: readonly tf.Variable[], l2: number): tf.Scalar {
  const half = l2 / 2;
  const penalty = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const xs = args.slice(0, vars.length) as tf.Tensor[];
    return {
      value: tf.mul(tf.addN(xs.map((v) => tf.sum(tf.square(v)))), half) as tf.Scalar,
      gradFunc: (dy: tf.Tensor) => {
        const c = tf.mul(tf.mul(dy, half), 2); // [] 2·fround(dy·l2/2)
        return xs.map((v) => tf.mul(v, c));
      },
    };
  });
  return (penalty as (...xs: tf.Tensor[]) => tf.Scalar)(...vars);
}

/**
 * Σ over all B·M entries of the positive-weighted sigmoid cross-entropy
 *   w·(softplus(z) − y·z),  w = posWeight where y = 1, else 1
 * (softplus is the stable log(1 + eˣ); softplus(z) − z = softplus(−z) for the positives).
 */
export function weightedSigmoidCE(logits: tf.Tensor2D, target: tf.Tensor2D, posWeight: number): tf.Scalar {
  const w = tf.add(tf.mul(target, posWeight - 1), 1); // [B, M]
  return tf.sum(tf.mul(w, tf.sub(tf.softplus(logits), tf.mul(target, logits)))) as tf.Scalar;
}

/**
 * Σ_n [logSumExp(z_n) − z_n[target_n]] over rows. The target logit is recomputed as h·W_a[target] +
 * b[target] from the rows' inputs instead of gathered from the [N, M] logits, which keeps the
 * backward pass free of a dense [N·M] scatter; logits = h W_aᵀ + b so both agree.
 */
function softmaxCE(logits: tf.Tensor2D, h: tf.Tensor2D, targets: tf.Tensor1D, Wa: tf.Tensor2D, bias: tf.Tensor1D): tf.Scalar {
  if (targets.size === 0) return tf.scalar(0);
  const lse = logSumExp(logits); // [N]
  const zt = tf.add(tf.sum(tf.mul(h, gatherRows(Wa, targets)), -1), gatherRows(bias, targets)); // [N]
  return tf.sum(tf.sub(lse, zt)) as tf.Scalar;
}

/** Row-wise log Σ exp over the last axis with the softmax as its gradient (stable: max-shifted). */
const logSumExp = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const z = args[0] as tf.Tensor;
  const save = args[1] as tf.GradSaveFunc;
  const m = tf.max(z, -1, true); // [N, 1]
  const l = tf.add(m, tf.log(tf.sum(tf.exp(tf.sub(z, m)), -1, true))); // [N, 1]
  save([z, l]);
  return {
    value: tf.reshape(l, [-1]) as tf.Tensor, // [N]
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [zs, ls] = saved;
      return tf.mul(tf.expandDims(dy, 1), tf.exp(tf.sub(zs, ls))); // dy · softmax(z)
    },
  };
}) as (z: tf.Tensor2D) => tf.Tensor1D;

/**
 * tf.gather(table, ids) along axis 0 whose gradient is a ScatterNd (duplicates summed) instead of
 * tfjs's UnsortedSegmentSum: the cpu backend runs that one as one masked sum per segment
 * (quadratic: seconds per step on a tiny model when the segments are the B·T token rows) and wasm
 * lacks it, while ScatterNd is linear on cpu and native on wasm and tensorflow.
 */
export function gatherRows(table: tf.Tensor, ids: tf.Tensor): tf.Tensor {
  const flat = ids.rank === 1 ? ids : tf.reshape(ids, [-1]);
  const gather = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const x = args[0] as tf.Tensor;
    return {
      value: tf.gather(x, flat),
      gradFunc: (dy: tf.Tensor) => tf.scatterND(tf.expandDims(flat, 1), dy, x.shape),
    };
  });
  const rows = gather(table);
  return ids.rank === 1 ? rows : tf.reshape(rows, [...ids.shape, ...table.shape.slice(1)]);
}

// ---- dropout -----------------------------------------------------------------------------------

/**
 * Inverted dropout with masks drawn per user from (user seed, site number): a user's masks do not
 * depend on the other users in the batch (see batch.ts). Sites are numbered in call order, which is
 * fixed by the code path; the first dimension of every tensor passed in groups the users.
 */
class Dropout {
  private site = 0;
  constructor(private readonly seeds: Uint32Array | null) {}

  apply<R extends tf.Rank>(x: tf.Tensor<R>, rate: number): tf.Tensor<R> {
    const site = this.site++;
    if (this.seeds === null || rate <= 0) return x;
    const B = this.seeds.length;
    const per = x.size / B;
    const mask = new Float32Array(x.size);
    const scale = 1 / (1 - rate);
    const threshold = rate * 4294967296;
    for (let b = 0; b < B; b++) {
      let s = mixSeeds(this.seeds[b], site);
      const base = b * per;
      for (let i = 0; i < per; i++) {
        // mulberry32, inlined: this loop fills ~10⁵ values per user at paper size.
        s = (s + 0x6d2b79f5) >>> 0;
        let t = s;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        mask[base + i] = ((t ^ (t >>> 14)) >>> 0) >= threshold ? scale : 0;
      }
    }
    return tf.mul(x, tf.tensor(mask, x.shape)) as tf.Tensor<R>;
  }
}
