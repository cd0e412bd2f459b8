// The realtime head's inference forward on the host, without tfjs ("host forward"). It computes the
// function RealtimeHead.forward(batch, false) computes (realtime-head.ts), on a different layout:
//
//   valid tokens of all B users, packed back to back, no padding           x [T, d]   T = Σ n_u
//   token = (W_a W_in + b_in)[app] + type_emb[type] + gap_emb[bucket]        [T, d]
//   L pre-LN blocks: QKV, Wo, W1, W2 as one GEMM each over all T tokens;
//     attention per user over that user's own n_u <= N tokens               [T, d]
//     (plain loops; OpenBLAS products per user from 8 tokens on when the addon is in use)
//   final LN                                                                 [T, d]
//   pool per user: max over its tokens ‖ its k most recent tokens (zeros where n_u < k)   [B, (1+k) d]
//   s = l2norm(pooled W_out + b_out), one GEMM over the B users               [B, dOut]
//
// Why: in the Kafka stream most users have 1-5 events, so the tfjs path (users grouped into widths
// 8/16/32) spends most of its time on padded positions and on tfjs's per-op overhead (~40 small
// kernels per pass). Packing valid tokens removes the padding; plain loops remove the per-op cost.
//
// Batch invariance: a user's vector must not depend on which other users share the call (the
// stream's output must not depend on how Kafka happened to batch events). Everything here is per
// token or per user except the GEMMs, and those are row-invariant: the native addon's mode 1 gives
// every row of A the same bits whatever rows surround it, and the JS fallback computes one row at a
// time; attention never mixes users. Native and JS results differ from each other (summation
// order), so one HostHead always uses one of them, whatever the batch size.
import { gapBucket, checkHeadEvent, sortedByTime, type HeadEvent, type RealtimeHead, type RealtimeHeadConfig, type RecentEvents } from './realtime-head.js';
import { loadNativeGemm, nativeGemmWanted, type GemmAddon } from './native-gemm.js';

export interface HostHeadOptions {
  /**
   * 'native': OpenBLAS through the addon in its batch-invariant mode 1; 'js': plain loops. Default:
   * native when the addon loads and AETN_NATIVE_GEMM is not off, else js.
   */
  gemm?: 'native' | 'js';
  /** Users per pass; larger calls are split to bound the scratch buffers. Default 1024. */
  maxBatch?: number;
  /**
   * The weights by variable name, read beforehand (RealtimeHead.readWeights): needed where the
   * backend cannot read synchronously (webgpu); otherwise each variable is read here.
   */
  weights?: ReadonlyMap<string, Float32Array>;
}

interface Block {
  ln1g: Float32Array; // [d]
  ln1b: Float32Array; // [d]
  Wqkv: Float32Array; // [d, 3d]
  bqkv: Float32Array; // [3d]
  Wo: Float32Array; // [d, d]
  bo: Float32Array; // [d]
  ln2g: Float32Array; // [d]
  ln2b: Float32Array; // [d]
  W1: Float32Array; // [d, dFf]
  b1: Float32Array; // [dFf]
  W2: Float32Array; // [dFf, d]
  b2: Float32Array; // [d]
}

const LN_EPS = 1e-5;
const L2_EPS = 1e-12;

export class HostHead {
  readonly cfg: RealtimeHeadConfig;
  readonly gemmKind: 'native' | 'js';
  private readonly addon: GemmAddon | null;
  private readonly maxBatch: number;
  // Frozen token tables (RealtimeHead.frozenTables): W_a W_in + b_in [M, d], type_emb [3, d], gap_emb [G, d].
  private readonly tokens: Float32Array;
  private readonly typeEmb: Float32Array;
  private readonly gapEmb: Float32Array;
  private readonly blocks: Block[] = [];
  private readonly lnfg: Float32Array; // [d]
  private readonly lnfb: Float32Array; // [d]
  private readonly outW: Float32Array; // [(1+k) d, dOut]
  private readonly outb: Float32Array; // [dOut]

  // Scratch, grow-only: one stream consumer calls embed thousands of times a minute.
  private capT = 0;
  private capB = 0;
  private x = new Float32Array(0); // [T, d] residual stream
  private h = new Float32Array(0); // [T, d] LN output / attention output y
  private qkv = new Float32Array(0); // [T, 3d]
  private t = new Float32Array(0); // [T, d] GEMM output before bias + residual
  private f = new Float32Array(0); // [T, dFf]
  private pooled = new Float32Array(0); // [B, (1+k) d]
  private out = new Float32Array(0); // [B, dOut]
  private offsets = new Int32Array(1); // [B+1] first token of each user
  private readonly acc: Float64Array; // [max(3d, dFf, dOut)] one output row of the JS GEMM
  private readonly att: AttentionScratch;
  private readonly sel: (readonly HeadEvent[])[] = []; // [B] each user's events, oldest first

  constructor(head: RealtimeHead, opts: HostHeadOptions = {}) {
    this.cfg = head.cfg;
    const { dModel: d, layers, maxEvents: N } = this.cfg;
    const kind = opts.gemm ?? (nativeGemmWanted() && loadNativeGemm().ok ? 'native' : 'js');
    if (kind === 'native') {
      const g = loadNativeGemm();
      if (!g.ok) throw new Error(`realtime head host forward: native GEMM requested but ${g.reason}`);
      this.addon = g.addon;
    } else {
      this.addon = null;
    }
    this.gemmKind = kind;
    this.maxBatch = opts.maxBatch ?? 1024;
    if (!Number.isInteger(this.maxBatch) || this.maxBatch < 1) throw new Error(`realtime head host forward: maxBatch must be a positive integer, got ${this.maxBatch}`);

    // Copies, taken once: a backend's dataSync may hand out its own storage.
    const tables = head.frozenTables();
    this.tokens = tables.tokens.slice();
    this.typeEmb = tables.types.slice();
    this.gapEmb = tables.gaps.slice();
    const byName = new Map(head.namedVariables.map((p) => [p.name, p.v]));
    const w = (name: string): Float32Array => {
      const pre = opts.weights?.get(name);
      if (pre) return pre.slice();
      const v = byName.get(name);
      if (!v) throw new Error(`realtime head host forward: no variable ${name}`);
      return (v.dataSync() as Float32Array).slice();
    };
    for (let l = 0; l < layers; l++) {
      const p = `h${l}`;
      this.blocks.push({
        ln1g: w(`${p}/ln1/g`), ln1b: w(`${p}/ln1/b`),
        Wqkv: w(`${p}/attn/Wqkv`), bqkv: w(`${p}/attn/bqkv`),
        Wo: w(`${p}/attn/Wo`), bo: w(`${p}/attn/bo`),
        ln2g: w(`${p}/ln2/g`), ln2b: w(`${p}/ln2/b`),
        W1: w(`${p}/ffn/W1`), b1: w(`${p}/ffn/b1`),
        W2: w(`${p}/ffn/W2`), b2: w(`${p}/ffn/b2`),
      });
    }
    this.lnfg = w('lnf/g');
    this.lnfb = w('lnf/b');
    this.outW = w('out/W');
    this.outb = w('out/b');
    this.acc = new Float64Array(Math.max(3 * d, this.cfg.dFf, this.cfg.outDim));
    if (this.tokens.length !== this.cfg.numApps * d) throw new Error('realtime head host forward: token table does not match the config');
    const dh = d / this.cfg.heads;
    this.att = {
      p: new Float64Array(N), k: new Float64Array(N * dh), v: new Float64Array(N * dh), acc: new Float64Array(dh),
      qh: new Float32Array(N * d), kh2: new Float32Array(N * d), vh2: new Float32Array(N * d), s: new Float32Array(this.cfg.heads * N * N), yh: new Float32Array(N * d),
    };
  }

  /** Short-term vectors [dOut] of `states` at `nowMs`; what RealtimeHead.forward gives for them. */
  embed(states: readonly RecentEvents[], nowMs: number): Float32Array[] {
    const res: Float32Array[] = new Array(states.length);
    for (let i = 0; i < states.length; i += this.maxBatch) this.embedPart(states, i, Math.min(states.length, i + this.maxBatch), nowMs, res);
    return res;
  }

  private embedPart(states: readonly RecentEvents[], from: number, to: number, nowMs: number, res: Float32Array[]): void {
    const { dModel: d, heads: H, dFf, maxEvents: N, recentK: k, outDim, gapBuckets: G } = this.cfg;
    const B = to - from;

    // select: the newest N events of each user, oldest first, checked (fillHeadRow's rules)
    this.ensureUsers(B);
    const off = this.offsets;
    const sel = this.sel;
    off[0] = 0;
    for (let u = 0; u < B; u++) {
      const evs = sortedByTime(states[from + u]!.events);
      const n = Math.min(N, evs.length);
      for (let i = evs.length - n; i < evs.length; i++) checkHeadEvent(evs[i]!, this.cfg);
      sel[u] = evs;
      off[u + 1] = off[u]! + n;
    }
    const T = off[B]!;
    this.ensureTokens(T);
    const { x, h, qkv, t, f, pooled, out } = this;

    // token embedding, summed in the order RealtimeHead.hostTokens sums                  x [T, d]
    for (let u = 0; u < B; u++) {
      const evs = sel[u]!;
      const n = off[u + 1]! - off[u]!;
      for (let i = 0; i < n; i++) {
        const e = evs[evs.length - n + i]!;
        const o = (off[u]! + i) * d;
        const a = e.app * d;
        const ty = e.type * d;
        const g = gapBucket(nowMs - e.timestampMs, G) * d;
        for (let j = 0; j < d; j++) x[o + j] = this.tokens[a + j]! + this.typeEmb[ty + j]! + this.gapEmb[g + j]!;
      }
      sel[u] = EMPTY; // drop the reference: the caller's events must not outlive the call here
    }

    // Elementwise passes cost more than the GEMMs here (scalar JS), so they are fused: the qkv bias
    // is added where attention reads q/k/v, and each residual add runs in the row loop of the
    // LayerNorm that follows it.
    const blocks = this.blocks;
    layerNorm(x, null, null, blocks[0]!.ln1g, blocks[0]!.ln1b, h, T, d); //              [T, d]
    for (let l = 0; l < blocks.length; l++) {
      const blk = blocks[l]!;
      // attention: h = ln1(x) is ready                                                    [T, d]
      this.gemm(h, blk.Wqkv, qkv, T, d, 3 * d); //                        qkv without bias [T, 3d]
      // per user and head: softmax(q_i . k_j / sqrt(dh)) over the user's own n keys, y_i = Σ_j att_j v_j
      // (h is free again: y goes there)                                                  y [T, d]
      const y = h;
      for (let u = 0; u < B; u++) this.attendUser(qkv, blk.bqkv, y, off[u]!, off[u + 1]! - off[u]!);
      this.gemm(y, blk.Wo, t, T, d, d); //                                                  [T, d]
      // x += y Wo + bo; h = ln2(x)                                                         [T, d]
      layerNorm(x, t, blk.bo, blk.ln2g, blk.ln2b, h, T, d);
      // feed-forward
      this.gemm(h, blk.W1, f, T, d, dFf); //                                             [T, dFf]
      for (let r = 0; r < T; r++) {
        const o = r * dFf;
        for (let j = 0; j < dFf; j++) {
          const z = f[o + j]! + blk.b1[j]!;
          f[o + j] = z > 0 ? z : 0;
        }
      }
      this.gemm(f, blk.W2, t, T, dFf, d); //                                               [T, d]
      // x += relu(h2 W1 + b1) W2 + b2; h = the next block's ln1(x), or after the last block lnf(x)
      const next = blocks[l + 1];
      layerNorm(x, t, blk.b2, next ? next.ln1g : this.lnfg, next ? next.ln1b : this.lnfb, h, T, d); // [T, d]
    }

    // pool: max over the user's tokens (zeros without any) ‖ its k most recent tokens, the oldest
    // of the k first, zeros where the user has fewer than k                          [B, (1+k) d]
    const P = (1 + k) * d;
    pooled.fill(0, 0, B * P);
    for (let u = 0; u < B; u++) {
      const t0 = off[u]!;
      const n = off[u + 1]! - t0;
      const po = u * P;
      if (n > 0) {
        for (let j = 0; j < d; j++) pooled[po + j] = h[t0 * d + j]!;
        for (let i = 1; i < n; i++) {
          const o = (t0 + i) * d;
          for (let j = 0; j < d; j++) if (h[o + j]! > pooled[po + j]!) pooled[po + j] = h[o + j]!;
        }
      }
      for (let r = 0; r < k; r++) {
        const i = n - k + r;
        if (i < 0) continue;
        pooled.set(h.subarray((t0 + i) * d, (t0 + i + 1) * d), po + (1 + r) * d);
      }
    }

    // out projection and L2 normalisation                                              [B, dOut]
    this.gemm(pooled, this.outW, out, B, P, outDim);
    for (let u = 0; u < B; u++) {
      const o = u * outDim;
      let ss = 0;
      for (let j = 0; j < outDim; j++) {
        const z = Math.fround(out[o + j]! + this.outb[j]!);
        out[o + j] = z;
        ss += z * z;
      }
      const inv = 1 / Math.sqrt(ss + L2_EPS);
      const v = new Float32Array(outDim);
      for (let j = 0; j < outDim; j++) v[j] = out[o + j]! * inv;
      res[from + u] = v;
    }
  }

  /**
   * Self-attention of one user over its own n tokens (rows t0..t0+n of qkv, q | k | v, head hd in
   * columns hd*dh..): a user's rows never meet another user's, which is the padded forward's key
   * mask. Short users run plain loops; from NATIVE_ATTENTION_MIN tokens on, with the addon, the
   * n x n products go to OpenBLAS (mode 2, one product per head): in JS they were 70% of a
   * full-window pass. The choice depends on the user's own n only, so it cannot break invariance.
   */
  private attendUser(qkv: Float32Array, bqkv: Float32Array, y: Float32Array, t0: number, n: number): void {
    const { dModel: d, heads: H } = this.cfg;
    if (n === 0) return;
    if (this.addon && n >= NATIVE_ATTENTION_MIN) attentionNative(this.addon, qkv, bqkv, y, t0, n, d, H, this.att);
    else attentionJs(qkv, bqkv, y, t0, n, d, H, this.att);
  }

  /** c [rows, n] = a [rows, kd] b [kd, n], every row's bits independent of the other rows. */
  private gemm(a: Float32Array, b: Float32Array, c: Float32Array, rows: number, kd: number, n: number): void {
    if (rows === 0) return;
    if (this.addon) {
      // Buffers may be longer than rows x ...: the addon checks lengths as lower bounds.
      this.addon.gemm(a, b, c, 1, rows, n, kd, false, false, 1, 1, null, null, 1);
      return;
    }
    gemmJs(a, b, c, rows, kd, n, this.acc);
  }

  private ensureTokens(T: number): void {
    if (T <= this.capT) return;
    const cap = Math.max(T, Math.ceil(this.capT * 1.5), 64);
    const { dModel: d, dFf } = this.cfg;
    this.x = new Float32Array(cap * d);
    this.h = new Float32Array(cap * d);
    this.qkv = new Float32Array(cap * 3 * d);
    this.t = new Float32Array(cap * d);
    this.f = new Float32Array(cap * dFf);
    this.capT = cap;
  }

  private ensureUsers(B: number): void {
    if (B <= this.capB) return;
    const cap = Math.max(B, Math.ceil(this.capB * 1.5), 16);
    const { dModel: d, recentK: k, outDim } = this.cfg;
    this.pooled = new Float32Array(cap * (1 + k) * d);
    this.out = new Float32Array(cap * outDim);
    this.offsets = new Int32Array(cap + 1);
    this.capB = cap;
  }
}

const EMPTY: readonly HeadEvent[] = [];

interface AttentionScratch {
  p: Float64Array; // [N] one query's attention weights
  k: Float64Array; // [N, dh] one user's keys of one head, contiguous
  v: Float64Array; // [N, dh] its values
  acc: Float64Array; // [dh]
  qh: Float32Array; // [H, N, dh] native path: q, k, v head-major
  kh2: Float32Array;
  vh2: Float32Array;
  s: Float32Array; // [H, N, N] scores, then weights
  yh: Float32Array; // [H, N, dh]
}

/** Users with at least this many tokens get OpenBLAS attention when the addon is in use. */
const NATIVE_ATTENTION_MIN = 8;

/** Attention of one user in plain loops (see HostHead.attendUser).                         y [n, d] */
function attentionJs(qkv: Float32Array, bqkv: Float32Array, y: Float32Array, t0: number, n: number, d: number, H: number, sc: AttentionScratch): void {
  const dh = d / H;
  const D3 = 3 * d;
  const scale = 1 / Math.sqrt(dh);
  const { p: att, k: kh, v: vh, acc } = sc;
  for (let hd = 0; hd < H; hd++) {
    // this head's keys and values with their biases, contiguous                     [n, dh] each
    const ko = d + hd * dh;
    const vo = 2 * d + hd * dh;
    for (let j = 0; j < n; j++) {
      const r = (t0 + j) * D3;
      for (let c = 0; c < dh; c++) {
        kh[j * dh + c] = qkv[r + ko + c]! + bqkv[ko + c]!;
        vh[j * dh + c] = qkv[r + vo + c]! + bqkv[vo + c]!;
      }
    }
    const qo = hd * dh;
    for (let i = 0; i < n; i++) {
      const qi = (t0 + i) * D3 + qo;
      for (let c = 0; c < dh; c++) acc[c] = qkv[qi + c]! + bqkv[qo + c]!;
      let max = -Infinity;
      for (let j = 0; j < n; j++) {
        const kj = j * dh;
        let s = 0;
        for (let c = 0; c < dh; c++) s += acc[c]! * kh[kj + c]!;
        s *= scale;
        att[j] = s;
        if (s > max) max = s;
      }
      let sum = 0;
      for (let j = 0; j < n; j++) sum += att[j] = Math.exp(att[j]! - max);
      acc.fill(0);
      for (let j = 0; j < n; j++) {
        const pj = att[j]!;
        const vj = j * dh;
        for (let c = 0; c < dh; c++) acc[c] += pj * vh[vj + c]!;
      }
      const yo = (t0 + i) * d + qo;
      for (let c = 0; c < dh; c++) y[yo + c] = acc[c]! / sum;
    }
  }
}

/**
 * Attention of one user on OpenBLAS: q, k, v (with biases) copied head-major, S = q k^T and
 * y = softmax(S) v as H products each (addon mode 2: per-product, bits independent of the batch).
 */
function attentionNative(addon: GemmAddon, qkv: Float32Array, bqkv: Float32Array, y: Float32Array, t0: number, n: number, d: number, H: number, sc: AttentionScratch): void {
  const dh = d / H;
  const D3 = 3 * d;
  const scale = 1 / Math.sqrt(dh);
  const { qh, kh2: kh, vh2: vh, s: S, yh } = sc;
  // head-major copies                                                               [H, n, dh] each
  for (let i = 0; i < n; i++) {
    const r = (t0 + i) * D3;
    for (let hd = 0; hd < H; hd++) {
      const o = (hd * n + i) * dh;
      const c0 = hd * dh;
      for (let c = 0; c < dh; c++) {
        qh[o + c] = qkv[r + c0 + c]! + bqkv[c0 + c]!;
        kh[o + c] = qkv[r + d + c0 + c]! + bqkv[d + c0 + c]!;
        vh[o + c] = qkv[r + 2 * d + c0 + c]! + bqkv[2 * d + c0 + c]!;
      }
    }
  }
  addon.gemm(qh, kh, S, H, n, n, dh, false, true, H, H, null, null, 2); //              S [H, n, n]
  // softmax over each row's n keys                                                     [H, n, n]
  for (let r = 0; r < H * n; r++) {
    const o = r * n;
    let max = -Infinity;
    for (let j = 0; j < n; j++) {
      const z = S[o + j]! * scale;
      if (z > max) max = z;
    }
    let sum = 0;
    for (let j = 0; j < n; j++) sum += S[o + j] = Math.exp(S[o + j]! * scale - max);
    const inv = 1 / sum;
    for (let j = 0; j < n; j++) S[o + j] = S[o + j]! * inv;
  }
  addon.gemm(S, vh, yh, H, n, dh, n, false, false, H, H, null, null, 2); //           yh [H, n, dh]
  // back to token-major                                                                 y [n, d]
  for (let i = 0; i < n; i++) {
    const yo = (t0 + i) * d;
    for (let hd = 0; hd < H; hd++) {
      const o = (hd * n + i) * dh;
      for (let c = 0; c < dh; c++) y[yo + hd * dh + c] = yh[o + c]!;
    }
  }
}

/**
 * c [rows, n] = a [rows, kd] b [kd, n] in plain JS, one row at a time (i-k-j), k unrolled by 8 into
 * a float64 row accumulator: the unrolling cuts the accumulator's loads and stores 8-fold (2.5 vs
 * 0.8 GFLOP/s measured), and a row's bits depend only on that row.
 */
function gemmJs(a: Float32Array, b: Float32Array, c: Float32Array, rows: number, kd: number, n: number, acc: Float64Array): void {
  for (let i = 0; i < rows; i++) {
    const ao = i * kd;
    acc.fill(0, 0, n);
    let p = 0;
    for (; p + 8 <= kd; p += 8) {
      const a0 = a[ao + p]!, a1 = a[ao + p + 1]!, a2 = a[ao + p + 2]!, a3 = a[ao + p + 3]!;
      const a4 = a[ao + p + 4]!, a5 = a[ao + p + 5]!, a6 = a[ao + p + 6]!, a7 = a[ao + p + 7]!;
      const b0 = p * n, b1 = b0 + n, b2 = b1 + n, b3 = b2 + n, b4 = b3 + n, b5 = b4 + n, b6 = b5 + n, b7 = b6 + n;
      for (let j = 0; j < n; j++) {
        acc[j] = acc[j]! + a0 * b[b0 + j]! + a1 * b[b1 + j]! + a2 * b[b2 + j]! + a3 * b[b3 + j]! + a4 * b[b4 + j]! + a5 * b[b5 + j]! + a6 * b[b6 + j]! + a7 * b[b7 + j]!;
      }
    }
    for (; p < kd; p++) {
      const av = a[ao + p]!;
      const bo = p * n;
      for (let j = 0; j < n; j++) acc[j] = acc[j]! + av * b[bo + j]!;
    }
    const co = i * n;
    for (let j = 0; j < n; j++) c[co + j] = acc[j]!;
  }
}

/**
 * out[r] = LN(x[r]) * g + b over rows of width d (tf.moments' biased variance), after the residual
 * add x[r] += t[r] + tb when t is given (t + tb rounded to float32 first, as tfjs adds them).
 */
function layerNorm(x: Float32Array, t: Float32Array | null, tb: Float32Array | null, g: Float32Array, b: Float32Array, out: Float32Array, rows: number, d: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * d;
    let mean = 0;
    if (t && tb) {
      for (let j = 0; j < d; j++) {
        const z = x[o + j]! + Math.fround(t[o + j]! + tb[j]!);
        x[o + j] = z;
        mean += Math.fround(z);
      }
    } else {
      for (let j = 0; j < d; j++) mean += x[o + j]!;
    }
    mean /= d;
    let v = 0;
    for (let j = 0; j < d; j++) {
      const c = x[o + j]! - mean;
      v += c * c;
    }
    const inv = 1 / Math.sqrt(v / d + LN_EPS);
    for (let j = 0; j < d; j++) out[o + j] = (x[o + j]! - mean) * inv * g[j]! + b[j]!;
  }
}
