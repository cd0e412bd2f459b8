// A small MLP binary classifier in plain TypeScript (the paper's Test #1 classifier): standardised
// inputs -> one ReLU hidden layer -> logit; logistic loss, Adam, mini-batches, early stopping on the
// validation AUC (the metric we report, and robust to the heavy class imbalance of niche installs).
// Deterministic from the seed; no tfjs, so evaluation never competes with the embedder's backend.
import { rocAuc } from './metrics.js';
import { Rng } from '../util/random.js';

export interface MlpOptions {
  hidden?: number;
  lr?: number;
  batchSize?: number;
  maxEpochs?: number;
  /** Epochs without a better validation AUC before stopping. */
  patience?: number;
  /** L2 on the weights (not biases). */
  l2?: number;
  seed: number;
}

export interface BinaryClassifier {
  /** Scores (logits) for the rows of X; higher = more likely positive. */
  predict(X: Float32Array): Float32Array;
}

export interface MlpModel extends BinaryClassifier {
  epochs: number;
  bestValidAuc: number;
}

/** Per-column mean and inverse std fitted on training rows; constant columns pass through centred. */
export class Standardizer {
  readonly mean: Float64Array;
  readonly inv: Float64Array;
  constructor(X: Float32Array, readonly d: number) {
    const n = X.length / d;
    this.mean = new Float64Array(d);
    this.inv = new Float64Array(d);
    const sq = new Float64Array(d);
    for (let i = 0; i < n; i++) {
      const o = i * d;
      for (let j = 0; j < d; j++) {
        const v = X[o + j];
        this.mean[j] += v;
        sq[j] += v * v;
      }
    }
    for (let j = 0; j < d; j++) {
      const m = this.mean[j] / Math.max(1, n);
      this.mean[j] = m;
      const variance = sq[j] / Math.max(1, n) - m * m;
      this.inv[j] = variance > 1e-12 ? 1 / Math.sqrt(variance) : 1;
    }
  }
  apply(X: Float32Array): Float32Array {
    const out = new Float32Array(X.length);
    const d = this.d;
    for (let o = 0; o < X.length; o += d) for (let j = 0; j < d; j++) out[o + j] = (X[o + j] - this.mean[j]) * this.inv[j];
    return out;
  }
}

class Adam {
  private readonly m: Float32Array;
  private readonly v: Float32Array;
  private t = 0;
  constructor(private readonly w: Float32Array, private readonly lr: number) {
    this.m = new Float32Array(w.length);
    this.v = new Float32Array(w.length);
  }
  step(g: Float32Array): void {
    const b1 = 0.9;
    const b2 = 0.999;
    this.t++;
    const c1 = 1 - Math.pow(b1, this.t);
    const c2 = 1 - Math.pow(b2, this.t);
    const { w, m, v, lr } = this;
    for (let i = 0; i < w.length; i++) {
      const gi = g[i];
      m[i] = b1 * m[i] + (1 - b1) * gi;
      v[i] = b2 * v[i] + (1 - b2) * gi * gi;
      w[i] -= (lr * (m[i] / c1)) / (Math.sqrt(v[i] / c2) + 1e-8);
    }
  }
}

/** Weights of the network on standardised inputs. */
class Net {
  readonly W1: Float32Array; // [d, H]
  readonly b1: Float32Array; // [H]
  readonly w2: Float32Array; // [H]
  readonly b2 = new Float32Array(1);
  constructor(readonly d: number, readonly H: number, rng: Rng) {
    this.W1 = new Float32Array(d * H);
    this.b1 = new Float32Array(H);
    this.w2 = new Float32Array(H);
    const s1 = Math.sqrt(2 / d); // He init for the ReLU layer
    for (let i = 0; i < this.W1.length; i++) this.W1[i] = rng.normal() * s1;
    const s2 = Math.sqrt(1 / H);
    for (let i = 0; i < H; i++) this.w2[i] = rng.normal() * s2;
  }
  clone(): Float32Array[] {
    return [this.W1.slice(), this.b1.slice(), this.w2.slice(), this.b2.slice()];
  }
  restore(s: Float32Array[]): void {
    this.W1.set(s[0]);
    this.b1.set(s[1]);
    this.w2.set(s[2]);
    this.b2.set(s[3]);
  }
  /** Logits of standardised rows. */
  logits(Z: Float32Array): Float32Array {
    const { d, H, W1, b1, w2 } = this;
    const n = Z.length / d;
    const out = new Float32Array(n);
    const h = new Float32Array(H);
    for (let i = 0; i < n; i++) {
      h.set(b1);
      const o = i * d;
      for (let j = 0; j < d; j++) {
        const x = Z[o + j];
        if (x === 0) continue;
        const r = j * H;
        for (let k = 0; k < H; k++) h[k] += x * W1[r + k];
      }
      let z = this.b2[0];
      for (let k = 0; k < H; k++) if (h[k] > 0) z += h[k] * w2[k];
      out[i] = z;
    }
    return out;
  }
}

/**
 * Train on (Xtrain, ytrain), early-stopping on the AUC of (Xvalid, yvalid); returns the weights of
 * the best validation epoch. Rows are row-major with `d` columns.
 */
export function trainMlp(
  Xtrain: Float32Array,
  ytrain: Uint8Array,
  Xvalid: Float32Array,
  yvalid: Uint8Array,
  d: number,
  opts: MlpOptions,
): MlpModel {
  const H = opts.hidden ?? 32;
  const lr = opts.lr ?? 2e-3;
  const B = opts.batchSize ?? 128;
  const maxEpochs = opts.maxEpochs ?? 40;
  const patience = opts.patience ?? 4;
  const l2 = opts.l2 ?? 1e-4;
  const rng = new Rng(opts.seed);
  const scaler = new Standardizer(Xtrain, d);
  const Z = scaler.apply(Xtrain);
  const Zv = scaler.apply(Xvalid);
  const n = ytrain.length;
  const net = new Net(d, H, rng);
  const gW1 = new Float32Array(d * H);
  const gb1 = new Float32Array(H);
  const gw2 = new Float32Array(H);
  const gb2 = new Float32Array(1);
  const opt = [new Adam(net.W1, lr), new Adam(net.b1, lr), new Adam(net.w2, lr), new Adam(net.b2, lr)];
  // Start the output bias at the class prior's log-odds so early epochs are not spent learning it.
  let pos = 0;
  for (let i = 0; i < n; i++) pos += ytrain[i];
  const prior = Math.min(Math.max(pos / Math.max(1, n), 1e-4), 1 - 1e-4);
  net.b2[0] = Math.log(prior / (1 - prior));

  const h = new Float32Array(H);
  const dh = new Float32Array(H);
  let best = -Infinity;
  let bestAuc = Number.NaN;
  let bestState = net.clone();
  let bestEpoch = 0;
  let epoch = 0;
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  for (epoch = 1; epoch <= maxEpochs; epoch++) {
    rng.shuffle(order);
    for (let start = 0; start < n; start += B) {
      const end = Math.min(n, start + B);
      const inv = 1 / (end - start);
      gW1.fill(0);
      gb1.fill(0);
      gw2.fill(0);
      gb2[0] = 0;
      for (let t = start; t < end; t++) {
        const i = order[t];
        const o = i * d;
        h.set(net.b1);
        for (let j = 0; j < d; j++) {
          const x = Z[o + j];
          if (x === 0) continue;
          const r = j * H;
          for (let k = 0; k < H; k++) h[k] += x * net.W1[r + k];
        }
        let z = net.b2[0];
        for (let k = 0; k < H; k++) if (h[k] > 0) z += h[k] * net.w2[k];
        const p = 1 / (1 + Math.exp(-z));
        const dz = (p - ytrain[i]) * inv;
        gb2[0] += dz;
        for (let k = 0; k < H; k++) {
          if (h[k] > 0) {
            gw2[k] += dz * h[k];
            dh[k] = dz * net.w2[k];
            gb1[k] += dh[k];
          } else dh[k] = 0;
        }
        for (let j = 0; j < d; j++) {
          const x = Z[o + j];
          if (x === 0) continue;
          const r = j * H;
          for (let k = 0; k < H; k++) gW1[r + k] += x * dh[k];
        }
      }
      if (l2 > 0) {
        for (let i = 0; i < gW1.length; i++) gW1[i] += l2 * net.W1[i];
        for (let k = 0; k < H; k++) gw2[k] += l2 * net.w2[k];
      }
      opt[0].step(gW1);
      opt[1].step(gb1);
      opt[2].step(gw2);
      opt[3].step(gb2);
    }
    const auc = rocAuc(net.logits(Zv), yvalid);
    // A validation part without both classes cannot guide stopping: train the full budget instead.
    const score = Number.isNaN(auc) ? epoch : auc;
    if (score > best) {
      best = score;
      bestAuc = auc;
      bestState = net.clone();
      bestEpoch = epoch;
    } else if (!Number.isNaN(auc) && epoch - bestEpoch >= patience) break;
  }
  net.restore(bestState);
  return {
    epochs: Math.min(epoch, maxEpochs),
    bestValidAuc: bestAuc,
    predict: (X: Float32Array) => net.logits(scaler.apply(X)),
  };
}
