// Gradient-boosted trees on logistic loss, histogram style (the paper's look-alike models were
// XGBoost): features are bucketed once into at most 32 quantile bins, each depth-limited regression
// tree is grown from per-node gradient/hessian histograms (the larger child's histogram is the
// parent's minus the smaller child's), leaves take the Newton step -G/(H+lambda). Row and column
// subsampling per tree keep it fast in plain TypeScript and act as regularisation.
import type { BinaryClassifier } from './mlp.js';
import { Rng } from '../util/random.js';

export interface GbdtOptions {
  trees?: number;
  depth?: number;
  learningRate?: number;
  bins?: number; // <= 256
  lambda?: number;
  minChildHessian?: number;
  rowSample?: number;
  colSample?: number;
  seed: number;
}

interface Node {
  feature: number; // -1 for a leaf
  bin: number; // rows with bin <= this go left
  threshold: number; // the same split on raw values: x <= threshold goes left
  left: number;
  right: number;
  value: number;
}

/** Quantile cut points per feature from (a sample of) the training rows. */
function fitCuts(X: Float32Array, d: number, bins: number, rng: Rng): Float32Array[] {
  const n = X.length / d;
  const m = Math.min(n, 20000);
  const rows = m === n ? null : rng.sample(n, m);
  const col = new Float32Array(m);
  const cuts: Float32Array[] = [];
  for (let f = 0; f < d; f++) {
    for (let i = 0; i < m; i++) col[i] = X[(rows ? rows[i] : i) * d + f];
    col.sort();
    const c: number[] = [];
    for (let b = 1; b < bins; b++) {
      const v = col[Math.min(m - 1, Math.floor((b * m) / bins))];
      // A cut at the column maximum would leave an empty right side.
      if ((c.length === 0 || v > c[c.length - 1]) && v < col[m - 1]) c.push(v);
    }
    cuts.push(Float32Array.from(c));
  }
  return cuts;
}

/** Number of cuts strictly below x, i.e. bin(x) <= b exactly when x <= cuts[b]. */
function binOf(c: Float32Array, x: number): number {
  let lo = 0;
  let hi = c.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (c[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export interface GbdtModel extends BinaryClassifier {
  trees: number;
}

export function trainGbdt(X: Float32Array, y: Uint8Array, d: number, opts: GbdtOptions): GbdtModel {
  const nTrees = opts.trees ?? 100;
  const maxDepth = opts.depth ?? 4;
  const eta = opts.learningRate ?? 0.1;
  const B = Math.min(256, opts.bins ?? 32);
  const lambda = opts.lambda ?? 1;
  const minH = opts.minChildHessian ?? 1;
  const rowSample = opts.rowSample ?? 0.8;
  const colSample = opts.colSample ?? 0.5;
  const rng = new Rng(opts.seed);
  const n = y.length;
  if (X.length !== n * d) throw new RangeError(`gbdt: X has ${X.length} values, expected ${n}x${d}`);

  const cuts = fitCuts(X, d, B, rng);
  const Q = new Uint8Array(n * d);
  for (let i = 0; i < n; i++) for (let f = 0; f < d; f++) Q[i * d + f] = binOf(cuts[f], X[i * d + f]);

  let pos = 0;
  for (let i = 0; i < n; i++) pos += y[i];
  const prior = Math.min(Math.max(pos / Math.max(1, n), 1e-6), 1 - 1e-6);
  const base = Math.log(prior / (1 - prior));
  const F = new Float64Array(n).fill(base);
  const G = new Float64Array(n);
  const Hs = new Float64Array(n);
  const forest: Node[][] = [];
  const nCols = Math.max(1, Math.round(d * colSample));

  for (let t = 0; t < nTrees; t++) {
    for (let i = 0; i < n; i++) {
      const p = 1 / (1 + Math.exp(-F[i]));
      G[i] = p - y[i];
      Hs[i] = Math.max(p * (1 - p), 1e-12);
    }
    const cols = Int32Array.from(rng.sample(d, nCols)).sort();
    const rootRows: number[] = [];
    for (let i = 0; i < n; i++) if (rowSample >= 1 || rng.next() < rowSample) rootRows.push(i);
    const nodes: Node[] = [];

    const histOf = (rows: Int32Array): Float64Array => {
      const hist = new Float64Array(nCols * B * 2);
      for (let r = 0; r < rows.length; r++) {
        const i = rows[r];
        const o = i * d;
        const g = G[i];
        const h = Hs[i];
        for (let c = 0; c < nCols; c++) {
          const k = (c * B + Q[o + cols[c]]) * 2;
          hist[k] += g;
          hist[k + 1] += h;
        }
      }
      return hist;
    };

    const grow = (rows: Int32Array, hist: Float64Array, depth: number): number => {
      let Gt = 0;
      let Ht = 0;
      for (let b = 0; b < B; b++) {
        Gt += hist[b * 2];
        Ht += hist[b * 2 + 1];
      }
      const id = nodes.length;
      nodes.push({ feature: -1, bin: 0, threshold: 0, left: -1, right: -1, value: (-Gt / (Ht + lambda)) * eta });
      if (depth >= maxDepth || rows.length < 2) return id;
      const parentScore = (Gt * Gt) / (Ht + lambda);
      let bestGain = 1e-9;
      let bestC = -1;
      let bestBin = -1;
      for (let c = 0; c < nCols; c++) {
        let gl = 0;
        let hl = 0;
        const nb = cuts[cols[c]].length; // bins 0..nb; splitting after bin nb leaves nothing right
        for (let b = 0; b < nb; b++) {
          const k = (c * B + b) * 2;
          gl += hist[k];
          hl += hist[k + 1];
          const hr = Ht - hl;
          if (hl < minH || hr < minH) continue;
          const gr = Gt - gl;
          const gain = (gl * gl) / (hl + lambda) + (gr * gr) / (hr + lambda) - parentScore;
          if (gain > bestGain) {
            bestGain = gain;
            bestC = c;
            bestBin = b;
          }
        }
      }
      if (bestC < 0) return id;
      const f = cols[bestC];
      let nl = 0;
      for (let r = 0; r < rows.length; r++) if (Q[rows[r] * d + f] <= bestBin) nl++;
      const L = new Int32Array(nl);
      const R = new Int32Array(rows.length - nl);
      let a = 0;
      let z = 0;
      for (let r = 0; r < rows.length; r++) {
        const i = rows[r];
        if (Q[i * d + f] <= bestBin) L[a++] = i;
        else R[z++] = i;
      }
      const smallIsLeft = L.length <= R.length;
      const hs = histOf(smallIsLeft ? L : R);
      const hb = hist; // reuse the parent's buffer for the larger child
      for (let k = 0; k < hb.length; k++) hb[k] -= hs[k];
      const node = nodes[id];
      node.feature = f;
      node.bin = bestBin;
      node.threshold = cuts[f][bestBin];
      node.left = grow(L, smallIsLeft ? hs : hb, depth + 1);
      node.right = grow(R, smallIsLeft ? hb : hs, depth + 1);
      return id;
    };

    const root = Int32Array.from(rootRows);
    grow(root, histOf(root), 0);
    forest.push(nodes);
    for (let i = 0; i < n; i++) {
      let k = 0;
      while (nodes[k].feature >= 0) k = Q[i * d + nodes[k].feature] <= nodes[k].bin ? nodes[k].left : nodes[k].right;
      F[i] += nodes[k].value;
    }
  }

  return {
    trees: forest.length,
    predict(Xt: Float32Array): Float32Array {
      const m = Xt.length / d;
      const out = new Float32Array(m);
      for (let i = 0; i < m; i++) {
        let s = base;
        const o = i * d;
        for (const nodes of forest) {
          let k = 0;
          while (nodes[k].feature >= 0) k = Xt[o + nodes[k].feature] <= nodes[k].threshold ? nodes[k].left : nodes[k].right;
          s += nodes[k].value;
        }
        out[i] = s;
      }
      return out;
    },
  };
}
