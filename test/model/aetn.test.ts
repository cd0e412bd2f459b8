// Structure and invariants of the AETN model on the pure-JS cpu backend, tiny sizes.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { beforeAll, describe, expect, it } from 'vitest';
import type { UserExample } from '../../src/data/types.js';
import {
  AetnModel,
  VARIANTS,
  batchToTensors,
  configFromJSON,
  configToJSON,
  defaultConfig,
  makeBatch,
  l2Penalty,
  makeHostBatch,
  type AetnConfig,
  type AetnLosses,
  type AetnOutputs,
  type Batch,
  type Variant,
} from '../../src/model/aetn.js';
import { UserError } from '../../src/util/errors.js';

const M = 23;
const CATS = 4;

function tinyConfig(variant: Variant, over: Partial<AetnConfig> = {}): AetnConfig {
  return defaultConfig({
    variant,
    numApps: M,
    appCategory: Array.from({ length: M }, (_, i) => (i * 7) % CATS),
    dModel: 12,
    dFf: 20,
    heads: 3,
    dEmb: 6,
    aeHidden: 5,
    seqLen: 6,
    dateBuckets: 8,
    ...over,
  });
}

/** Deterministic pseudo-random users of varied lengths (some with empty sequences). */
function users(n: number, seed = 1): UserExample[] {
  let s = seed;
  const rnd = (k: number) => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return (s >>> 8) % k;
  };
  const seq = (len: number) => {
    const apps = Int32Array.from({ length: len }, () => rnd(M));
    const dates = Int32Array.from({ length: len }, () => rnd(10)); // some beyond dateBuckets: clamped
    return [apps, dates, new Float64Array(len)] as const;
  };
  return Array.from({ length: n }, (_, u) => {
    const ret = Int32Array.from(new Set(Array.from({ length: 1 + rnd(8) }, () => rnd(M)))).sort();
    const [ia, id, it] = seq(u % 5 === 4 ? 0 : 1 + rnd(9));
    const [ua, ud, ut] = seq(rnd(4));
    return {
      userId: `u${seed}-${u}`,
      retention: ret,
      installs: ia,
      installDates: id,
      installTimes: it,
      uninstalls: ua,
      uninstallDates: ud,
      uninstallTimes: ut,
      lastActiveMs: 0,
    };
  });
}

function values(l: AetnLosses): Record<string, number> {
  return Object.fromEntries(Object.entries(l).map(([k, v]) => [k, (v as tf.Scalar).dataSync()[0]]));
}

function lossValues(model: AetnModel, batch: Batch, training: boolean): Record<string, number> {
  return tf.tidy(() => values(model.losses(batch, training)));
}

/** Copies every variable of `from` that `to` also has (by stable name). */
function copyShared(from: AetnModel, to: AetnModel): void {
  to.names.forEach((n, i) => {
    if (from.names.includes(n)) to.variables[i].assign(from.variable(n));
  });
}

function arr(t: tf.Tensor | undefined): Float32Array {
  if (!t) throw new Error('missing tensor');
  return t.dataSync() as Float32Array;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

beforeAll(async () => {
  await tf.setBackend('cpu');
});

describe('config', () => {
  it('defaults are the paper sizes', () => {
    const c = defaultConfig({ numApps: 10 });
    expect([c.dModel, c.dFf, c.heads, c.encLayers, c.decLayers, c.dEmb, c.aeHidden, c.seqLen, c.dateBuckets]).toEqual([
      512, 1024, 8, 2, 1, 128, 256, 25, 52,
    ]);
    expect([c.l2, c.posWeight, c.maskCount, c.dropoutInput, c.dropoutAttention, c.dropoutFfn]).toEqual([1.5e-7, 100, 3, 0.05, 0.1, 0.1]);
  });

  it('rejects bad configs with a clear UserError and round-trips through JSON', () => {
    expect(() => tinyConfig('aetn', { heads: 5 })).toThrow(/dModel \(12\) must be divisible by heads \(5\)/);
    expect(() => defaultConfig({ numApps: 3, appCategory: [0, 1] })).toThrow(UserError);
    expect(() => defaultConfig({ numApps: 3, variant: 'bert' as Variant })).toThrow(/variant/);
    const c = tinyConfig('vanilla');
    const back = configFromJSON(JSON.parse(JSON.stringify(configToJSON(c))));
    expect(back).toEqual(c);
    expect(() => configFromJSON({ ...configToJSON(c), dModel: -1 })).toThrow(/dModel/);
  });

  it('retentionWeight: 30 by default (DAE 1), 1 for checkpoints written before it existed; negative refused', () => {
    expect(tinyConfig('aetn').retentionWeight).toBe(30);
    expect(tinyConfig('vanilla').retentionWeight).toBe(30);
    expect(tinyConfig('dae').retentionWeight).toBe(1);
    const { retentionWeight: _dropped, ...old } = configToJSON(tinyConfig('aetn', { retentionWeight: 7 }));
    expect(configFromJSON(old).retentionWeight).toBe(1);
    expect(configFromJSON(configToJSON(tinyConfig('aetn', { retentionWeight: 7 }))).retentionWeight).toBe(7);
    // A checkpoint's config is read back generically (checkpoint.ts) and handed to the model as it is.
    const legacy = { ...tinyConfig('aetn') } as Partial<AetnConfig>;
    delete legacy.retentionWeight;
    const model = new AetnModel(legacy as AetnConfig, 1);
    expect(model.cfg.retentionWeight).toBe(1);
    model.dispose();
    expect(() => tinyConfig('aetn', { retentionWeight: -1 })).toThrow(/retentionWeight must be a finite number >= 0/);
    expect(() => tinyConfig('aetn', { retentionWeight: Number.NaN })).toThrow(UserError);
  });
});

describe('batch', () => {
  it('pads, truncates to the latest I events, clamps dates and rejects bad input', () => {
    const cfg = tinyConfig('aetn');
    const u = users(1)[0];
    const long: UserExample = {
      ...u,
      installs: Int32Array.from({ length: 9 }, (_, i) => i),
      installDates: Int32Array.from({ length: 9 }, (_, i) => 20 - i),
      installTimes: new Float64Array(9),
    };
    const h = makeHostBatch([long], cfg, { training: false, seed: 1 });
    expect(Array.from(h.seqIds.slice(0, 6))).toEqual([3, 4, 5, 6, 7, 8]); // latest 6, oldest first
    expect(Array.from(h.seqDates.slice(0, 6))).toEqual([7, 7, 7, 7, 7, 7]); // 17..12 clamped to 7
    expect(h.maskFlat.length).toBe(0);
    expect(() => makeHostBatch([{ ...u, retention: Int32Array.from([M]) }], cfg, { training: false, seed: 1 })).toThrow(UserError);
    expect(() => makeHostBatch([{ ...u, installs: Int32Array.from([-1]), installDates: Int32Array.from([0]) }], cfg, { training: false, seed: 1 })).toThrow(
      /outside the vocabulary/,
    );
    expect(() => makeHostBatch([{ ...u, installDates: new Int32Array(0) }], cfg, { training: false, seed: 1 })).toThrow(/dates/);
    expect(() => makeHostBatch([], cfg, { training: false, seed: 1 })).toThrow(UserError);
  });

  it('draws min(maskCount, n) distinct [MASK] positions per sequence, only for variants with L_mask', () => {
    const ex = users(30);
    const cfg = tinyConfig('aetn');
    const h = makeHostBatch(ex, cfg, { training: true, seed: 5 });
    const T = 1 + 2 * cfg.seqLen;
    let expected = 0;
    for (const u of ex) expected += Math.min(3, Math.min(u.installs.length, 6)) + Math.min(3, Math.min(u.uninstalls.length, 6));
    expect(h.maskFlat.length).toBe(expected);
    expect(new Set(h.maskFlat).size).toBe(expected);
    for (let i = 0; i < h.maskFlat.length; i++) {
      const b = Math.floor(h.maskFlat[i] / T);
      const pos = (h.maskFlat[i] % T) - 1;
      expect(h.seqValid[b * 2 * cfg.seqLen + pos]).toBe(1);
      expect(h.seqIdsMasked[b * 2 * cfg.seqLen + pos]).toBe(M + 1);
      expect(h.seqIds[b * 2 * cfg.seqLen + pos]).toBe(h.maskApps[i]);
    }
    // Per-user draws: a user's masks do not depend on who else is in the batch.
    const alone = makeHostBatch([ex[7]], cfg, { training: true, seed: 5 });
    const inBatch = Array.from(h.maskFlat).filter((f) => Math.floor(f / T) === 7).map((f) => f - 7 * T);
    expect(Array.from(alone.maskFlat)).toEqual(inBatch);
    expect(makeHostBatch(ex, tinyConfig('no-mask'), { training: true, seed: 5 }).maskFlat.length).toBe(0);
    expect(makeHostBatch(ex, tinyConfig('dae'), { training: true, seed: 5 }).maskFlat.length).toBe(0);
  });
});

describe('AetnModel', () => {
  it('every output has its documented shape, for every variant', () => {
    const ex = users(7);
    for (const variant of VARIANTS) {
      const cfg = tinyConfig(variant);
      const model = new AetnModel(cfg, 3);
      const batch = makeBatch(ex, cfg, { training: true, seed: 2 });
      const h = batch.host;
      const T = 1 + 2 * cfg.seqLen;
      tf.tidy(() => {
        const o = model.forward(batch, true);
        expect(o.x1.shape).toEqual([7, 12]);
        expect(o.u.shape).toEqual([7, 6]);
        expect(o.retLogits.shape).toEqual([7, M]);
        expect(o.appMatrix.shape).toEqual([M, 12]);
        if (variant === 'dae') {
          expect([o.encoderOut, o.decoderOut, o.seqLogits, o.maskLogits, o.aeLogits]).toEqual([undefined, undefined, undefined, undefined, undefined]);
        } else {
          // The last encoder layer computes all tokens only for the [MASK] head.
          expect(o.encoderOut!.shape).toEqual(variant === 'no-mask' ? [7, 1, 12] : [7, T, 12]);
          expect(o.decoderOut!.shape).toEqual([7, T, 12]);
          expect(o.seqLogits!.shape).toEqual([h.targetFlat.length, M]);
          expect(h.targetFlat.length).toBeGreaterThan(0);
          if (variant === 'no-mask') expect(o.maskLogits).toBeUndefined();
          else expect(o.maskLogits!.shape).toEqual([h.maskFlat.length, M]);
          if (variant === 'no-aux') expect(o.aeLogits).toBeUndefined();
          else expect(o.aeLogits!.shape).toEqual([7, M]);
        }
        const l = model.losses(batch, true);
        for (const v of Object.values(l)) expect(v.shape).toEqual([]);
        const lv = values(l);
        for (const v of Object.values(lv)) expect(Number.isFinite(v)).toBe(true);
        expect(lv.total).toBeCloseTo(cfg.retentionWeight * lv.retention + lv.sequence + lv.aux + lv.mask + lv.reg, 3);
        expect(lv.main).toBeCloseTo(lv.retention + lv.sequence, 4);
      });
      const e = model.embed(batch);
      expect(e.shape).toEqual([7, cfg.dEmb]);
      e.dispose();
      batch.dispose();
      model.dispose();
    }
  });

  it('retentionWeight scales only the retention part of the objective; the reported losses stay unweighted', () => {
    const ex = users(9);
    for (const variant of ['aetn', 'dae'] as const) {
      const plain = new AetnModel(tinyConfig(variant, { retentionWeight: 1 }), 3);
      const heavy = new AetnModel(tinyConfig(variant, { retentionWeight: 5 }), 3);
      const batch = makeBatch(ex, plain.cfg, { training: true, seed: 2 });
      const a = lossValues(plain, batch, true);
      const b = lossValues(heavy, batch, true);
      for (const k of ['main', 'aux', 'mask', 'reg', 'retention', 'sequence']) expect(b[k], `${variant} ${k}`).toBeCloseTo(a[k], 6);
      expect(a.retention).toBeGreaterThan(0.01);
      expect(a.total).toBeCloseTo(a.retention + a.sequence + a.aux + a.mask + a.reg, 5);
      expect(b.total).toBeCloseTo(5 * b.retention + b.sequence + b.aux + b.mask + b.reg, 5);
      batch.dispose();
      plain.dispose();
      heavy.dispose();
    }
  });

  it('leaks no tensors from losses, gradients or embed', () => {
    const cfg = tinyConfig('aetn');
    const model = new AetnModel(cfg, 3);
    const batch = makeBatch(users(5), cfg, { training: true, seed: 2 });
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      model.losses(batch, true);
    });
    const { value, grads } = tf.variableGrads(() => model.losses(batch, true).total, model.variables);
    value.dispose();
    tf.dispose(Object.values(grads));
    model.embed(batch).dispose();
    expect(tf.memory().numTensors).toBe(before);
    batch.dispose();
    model.dispose();
  });

  it('padding changes nothing: padded ids/dates/retention slots, batch companions and duplicates', () => {
    const cfg = tinyConfig('aetn');
    const model = new AetnModel(cfg, 4);
    const ex = users(6);
    for (const training of [false, true]) {
      const base = makeHostBatch(ex, cfg, { training, seed: 9 });
      // Scribble over every padded slot: sequence ids (valid apps and [MASK]), dates, retention ids.
      const dirty = structuredClone(base);
      let k = 0;
      for (let i = 0; i < dirty.seqValid.length; i++) {
        if (dirty.seqValid[i] === 0) {
          dirty.seqIds[i] = k % (M + 2);
          dirty.seqIdsMasked[i] = (k * 5) % (M + 2);
          dirty.seqDates[i] = k % cfg.dateBuckets;
          k++;
        }
      }
      for (let i = 0; i < dirty.retWeights.length; i++) if (dirty.retWeights[i] === 0) dirty.retIds[i] = (i * 3) % M;
      expect(k).toBeGreaterThan(10);
      const a = batchToTensors(base);
      const b = batchToTensors(dirty);
      tf.tidy(() => {
        const oa = model.forward(a, training);
        const ob = model.forward(b, training);
        for (const key of ['u', 'retLogits', 'aeLogits', 'seqLogits', 'maskLogits'] as const) {
          if (!training && key === 'maskLogits') continue;
          expect(maxAbsDiff(arr(oa[key]), arr(ob[key])), key).toBe(0);
        }
        expect(values(model.losses(a, training))).toEqual(values(model.losses(b, training)));
      });
      a.dispose();
      b.dispose();
    }
    // A user's outputs do not depend on the other users of the batch (their lengths set the padding
    // width R), and losses are per-user means: a batch and the same batch twice have equal losses.
    const all = makeBatch(ex, cfg, { training: true, seed: 9 });
    const small = ex.reduce((best, u, i) => (u.retention.length < ex[best].retention.length ? i : best), 0);
    const one = makeBatch([ex[small]], cfg, { training: true, seed: 9 });
    const twice = makeBatch([...ex, ...ex], cfg, { training: true, seed: 9 });
    expect(one.host.retWidth).toBeLessThan(all.host.retWidth);
    tf.tidy(() => {
      const ua = arr(model.forward(all, true).u).slice(small * cfg.dEmb, (small + 1) * cfg.dEmb);
      const u1 = arr(model.forward(one, true).u);
      expect(maxAbsDiff(ua, u1)).toBeLessThan(1e-6);
      const l1 = values(model.losses(all, true));
      const l2 = values(model.losses(twice, true));
      for (const key of Object.keys(l1)) expect(l2[key]).toBeCloseTo(l1[key], 5);
    });
    for (const x of [all, one, twice]) x.dispose();
    model.dispose();
  });

  it('[MASK] hides the masked app from every output and affects only the L_mask targets', () => {
    const cfg = tinyConfig('aetn', { dropoutAttention: 0, dropoutFfn: 0, dropoutInput: 0 });
    const model = new AetnModel(cfg, 5);
    const ex = users(4);
    const h = makeHostBatch(ex, cfg, { training: true, seed: 11 });
    const T = 1 + 2 * cfg.seqLen;
    // The first masked install of some user: change that app in the raw example.
    const i = Array.from(h.maskFlat).findIndex((f) => (f % T) - 1 < cfg.seqLen);
    const b = Math.floor(h.maskFlat[i] / T);
    const pos = (h.maskFlat[i] % T) - 1;
    const start = Math.max(0, ex[b].installs.length - cfg.seqLen);
    const changed = ex.map((u) => ({ ...u, installs: u.installs.slice() }));
    const old = changed[b].installs[start + pos];
    changed[b].installs[start + pos] = (old + 1) % M;
    const ba = makeBatch(ex, cfg, { training: true, seed: 11 });
    const bb = makeBatch(changed, cfg, { training: true, seed: 11 });
    expect(Array.from(bb.host.maskFlat)).toEqual(Array.from(h.maskFlat)); // masks do not depend on app ids
    tf.tidy(() => {
      const oa = model.forward(ba, true);
      const ob = model.forward(bb, true);
      for (const key of ['encoderOut', 'u', 'decoderOut', 'maskLogits', 'retLogits'] as const) {
        expect(maxAbsDiff(arr(oa[key]), arr(ob[key])), key).toBe(0);
      }
      const la = values(model.losses(ba, true));
      const lb = values(model.losses(bb, true));
      expect(lb.mask).not.toBe(la.mask); // the hidden target changed
      expect(lb.sequence).not.toBe(la.sequence); // and so did the reconstruction target
      expect(lb.retention).toBe(la.retention);
      // Without training the app is visible: the user's vector changes.
      const ea = arr(model.forward(ba, false).u);
      const eb = arr(model.forward(bb, false).u);
      expect(maxAbsDiff(ea.slice(b * 6, b * 6 + 6), eb.slice(b * 6, b * 6 + 6))).toBeGreaterThan(1e-5);
      // embed ignores [MASK] even when handed a training batch.
      const plain = makeBatch(ex, cfg, { training: false, seed: 11 });
      expect(maxAbsDiff(arr(model.embed(ba)), arr(model.embed(plain)))).toBe(0);
      plain.dispose();
    });
    ba.dispose();
    bb.dispose();
    model.dispose();
  });

  it('the retention-only last encoder layer gives the same u as the full one', () => {
    for (const variant of ['aetn', 'vanilla'] as const) {
      const model = new AetnModel(tinyConfig(variant), 12);
      const batch = makeBatch(users(6), model.cfg, { training: false, seed: 1 });
      tf.tidy(() => {
        const short = model.forward(batch, false, { heads: false });
        const full = model.forward(batch, false, { heads: false, allTokens: true });
        expect(short.encoderOut!.shape).toEqual([6, 1, 12]);
        expect(full.encoderOut!.shape).toEqual([6, 13, 12]);
        expect(maxAbsDiff(arr(short.u), arr(full.u))).toBeLessThan(1e-6);
        expect(maxAbsDiff(arr(short.encoderOut), arr(tf.slice(full.encoderOut!, [0, 0, 0], [6, 1, 12])))).toBeLessThan(1e-6);
      });
      batch.dispose();
      model.dispose();
    }
  });

  it('modified attention: the key half is inert, the value half is exactly what separates it from vanilla', () => {
    const mod = new AetnModel(tinyConfig('aetn'), 6);
    const van = new AetnModel(tinyConfig('vanilla'), 7);
    copyShared(mod, van);
    const batch = makeBatch(users(5), mod.cfg, { training: false, seed: 1 });
    const retNames = mod.names.filter((n) => /\.W[kv]_ret$/.test(n));
    expect(retNames).toEqual(['enc0.Wk_ret', 'enc0.Wv_ret', 'enc1.Wk_ret', 'enc1.Wv_ret', 'dec0.Wk_ret', 'dec0.Wv_ret']);
    expect(van.names).toEqual(mod.names.filter((n) => !retNames.includes(n)));
    // The encoder (every token) isolates the attention: the two decoders also differ in their input
    // tokens (V-AETN's do not carry ũ; see the next test).
    const out = (m: AetnModel) => tf.tidy(() => Array.from(arr(m.forward(batch, false, { allTokens: true }).encoderOut)));
    const vanilla = out(van);
    const modified = out(mod);
    expect(maxAbsDiff(vanilla, modified)).toBeGreaterThan(1e-3);
    // Zero the value half: only the key half remains, and softmax's shift invariance cancels it.
    for (const n of retNames.filter((n) => n.includes('Wv'))) mod.variable(n).assign(tf.zerosLike(mod.variable(n)));
    expect(maxAbsDiff(vanilla, out(mod))).toBeLessThan(2e-5);
    // Zero both halves: the layers coincide exactly.
    for (const n of retNames) mod.variable(n).assign(tf.zerosLike(mod.variable(n)));
    expect(maxAbsDiff(vanilla, out(mod))).toBeLessThan(1e-6);
    batch.dispose();
    mod.dispose();
    van.dispose();
  });

  it("V-AETN's decoder is a plain transformer over [ũ; date + type]: equal to a reference written out in JS", () => {
    // The paper's vanilla decoder: queries from each position's date + type embedding, keys and
    // values the 1 + 2I tokens [ũ; date + type]; ũ reaches a position only as the prepended token.
    const cfg = tinyConfig('vanilla', { dropoutAttention: 0, dropoutFfn: 0, dropoutInput: 0, decLayers: 2 });
    const model = new AetnModel(cfg, 31);
    const ex = users(5, 3);
    const batch = makeBatch(ex, cfg, { training: false, seed: 1 });
    const { seqLen: I, dModel: d, heads: H } = cfg;
    const T = 1 + 2 * I;
    const dh = d / H;
    const v = (name: string) => Array.from(arr(model.variable(name)));
    const matVec = (x: number[], W: number[], cols: number, b?: number[]) =>
      Array.from({ length: cols }, (_, j) => x.reduce((s, xi, i) => s + xi * W[i * cols + j], b ? b[j] : 0));
    const layerNorm = (x: number[], g: number[], b: number[]) => {
      const mean = x.reduce((s, a) => s + a, 0) / x.length;
      const vr = x.reduce((s, a) => s + (a - mean) ** 2, 0) / x.length;
      return x.map((a, i) => ((a - mean) / Math.sqrt(vr + cfg.layerNormEps)) * g[i] + b[i]);
    };
    const { u, decoderOut } = tf.tidy(() => {
      const o = model.forward(batch, false);
      return { u: Array.from(arr(o.u)), decoderOut: Array.from(arr(o.decoderOut)) };
    });
    const h = batch.host;
    const [eDate, eIns, eUni, Wud, bud] = ['e_date', 'e_install', 'e_uninstall', 'W_ud', 'b_ud'].map(v);
    let maxDiff = 0;
    for (let b = 0; b < ex.length; b++) {
      const uTilde = matVec(u.slice(b * cfg.dEmb, (b + 1) * cfg.dEmb), Wud, d, bud);
      // Tokens: ũ, then date + type at every valid position (zero at padding, which no key sees).
      const valid = [true, ...Array.from({ length: 2 * I }, (_, k) => h.seqValid[b * 2 * I + k] === 1)];
      let Y: number[][] = [uTilde];
      for (let k = 0; k < 2 * I; k++) {
        const date = h.seqDates[b * 2 * I + k];
        const type = k < I ? eIns : eUni;
        Y.push(valid[k + 1] ? Array.from({ length: d }, (_, j) => eDate[date * d + j] + type[j]) : new Array<number>(d).fill(0));
      }
      expect(Y.length).toBe(T);
      for (let l = 0; l < cfg.decLayers; l++) {
        const [Wq, Wk, Wv, Wo, g1, b1, Wf1, bf1, Wf2, bf2, g2, b2] = [
          'Wq', 'Wk', 'Wv', 'Wo', 'ln1.g', 'ln1.b', 'Wff1', 'bff1', 'Wff2', 'bff2', 'ln2.g', 'ln2.b',
        ].map((n) => v(`dec${l}.${n}`));
        const Q = Y.map((y) => matVec(y, Wq, d));
        const K = Y.map((y) => matVec(y, Wk, d));
        const V = Y.map((y) => matVec(y, Wv, d));
        const keys = Array.from({ length: T }, (_, t) => t).filter((t) => valid[t]); // 1 + valid positions
        expect(keys[0]).toBe(0);
        Y = Y.map((y, q) => {
          const merged = new Array<number>(d).fill(0);
          for (let hd = 0; hd < H; hd++) {
            const sl = (x: number[]) => x.slice(hd * dh, (hd + 1) * dh);
            const sc = keys.map((t) => sl(Q[q]).reduce((s, a, i) => s + a * sl(K[t])[i], 0) / Math.sqrt(dh));
            const mx = Math.max(...sc);
            const e = sc.map((z) => Math.exp(z - mx));
            const z = e.reduce((s, a) => s + a, 0);
            keys.forEach((t, i) => {
              for (let j = 0; j < dh; j++) merged[hd * dh + j] += (e[i] / z) * V[t][hd * dh + j];
            });
          }
          const h1 = layerNorm(matVec(merged, Wo, d).map((a, j) => a + y[j]), g1, b1);
          const f = matVec(h1, Wf1, cfg.dFf, bf1).map((a) => Math.max(0, a));
          return layerNorm(matVec(f, Wf2, d, bf2).map((a, j) => a + h1[j]), g2, b2);
        });
      }
      for (let t = 0; t < T; t++) for (let j = 0; j < d; j++) maxDiff = Math.max(maxDiff, Math.abs(Y[t][j] - decoderOut[(b * T + t) * d + j]));
    }
    expect(maxDiff).toBeLessThan(1e-4);
    // ũ enters only as that one token: with W_ud and b_ud zeroed, ũ = 0 for everyone and the decoder
    // output no longer depends on the user's retention (only on dates and types), unlike AETN's.
    const noRet = ex.map((e) => ({ ...e, retention: Int32Array.from([(e.retention[0] + 1) % M]) }));
    const batch2 = makeBatch(noRet, cfg, { training: false, seed: 1 });
    for (const n of ['W_ud', 'b_ud']) model.variable(n).assign(tf.zerosLike(model.variable(n)));
    const dec = (bt: Batch) => tf.tidy(() => Array.from(arr(model.forward(bt, false).decoderOut)));
    expect(maxAbsDiff(dec(batch), dec(batch2))).toBe(0);
    batch.dispose();
    batch2.dispose();
    model.dispose();
  });

  it('W_a is one variable W_app plus one category table, used by the AE, the encoder and every head', () => {
    const cfg = tinyConfig('aetn', { dropoutAttention: 0, dropoutFfn: 0, dropoutInput: 0 });
    const model = new AetnModel(cfg, 8);
    const appRows = model.variables.filter((v) => v.shape[0] === M && v.shape.length === 2);
    expect(appRows).toEqual([model.W_app]);
    expect(model.variables.filter((v) => v.shape[0] === CATS && v.shape.length === 2)).toEqual([model.C]);
    expect(model.variables.filter((v) => v.shape.length === 1 && v.shape[0] === M)).toEqual([model.b_out]);
    const batch = makeBatch(users(6), cfg, { training: true, seed: 3 });
    // Every loss term on its own sends gradient into W_app, C and the shared bias.
    for (const part of ['retention', 'sequence', 'aux', 'mask'] as const) {
      const { grads } = tf.variableGrads(() => model.losses(batch, true)[part], [model.W_app, model.C, model.b_out]);
      for (const [name, g] of Object.entries(grads)) {
        expect(tf.tidy(() => tf.norm(g).dataSync()[0]), `${part} -> ${name}`).toBeGreaterThan(1e-4);
        g.dispose();
      }
    }
    // Moving one row of W_app moves that app's column in every head and the encoder's input.
    const app = batch.host.targetApps[0];
    const before = tf.tidy(() => model.forward(batch, true) as unknown as tf.TensorContainer) as unknown as AetnOutputs;
    const snapshot = (o: AetnOutputs) => ({
      ae: arr(o.aeLogits).slice(),
      ret: arr(o.retLogits).slice(),
      seq: arr(o.seqLogits).slice(),
      mask: arr(o.maskLogits).slice(),
      enc: arr(o.encoderOut).slice(),
    });
    const s0 = snapshot(before);
    tf.dispose(before as unknown as tf.TensorContainer);
    const delta = tf.tidy(() => tf.mul(tf.reshape(tf.oneHot(tf.tensor1d([app], 'int32'), M), [M, 1]), tf.fill([1, cfg.dModel], 0.5)));
    model.W_app.assign(tf.add(model.W_app, delta));
    const after = tf.tidy(() => model.forward(batch, true) as unknown as tf.TensorContainer) as unknown as AetnOutputs;
    const s1 = snapshot(after);
    tf.dispose(after as unknown as tf.TensorContainer);
    const col = (x: Float32Array, rows: number, j: number) => Array.from({ length: rows }, (_, r) => x[r * M + j]);
    const rowsOf = { ae: 6, ret: 6, seq: batch.host.targetFlat.length, mask: batch.host.maskFlat.length } as const;
    for (const k of ['ae', 'ret', 'seq', 'mask'] as const) {
      expect(maxAbsDiff(col(s0[k], rowsOf[k], app), col(s1[k], rowsOf[k], app)), k).toBeGreaterThan(1e-3);
    }
    expect(maxAbsDiff(s0.enc, s1.enc)).toBeGreaterThan(1e-3);
    delta.dispose();
    batch.dispose();
    model.dispose();
  });

  it('L_reg\'s own backward pass gives the gradient of the generic one bit for bit', () => {
    const cfg = tinyConfig('aetn', { l2: 0.01 });
    const model = new AetnModel(cfg, 4);
    const batch = makeBatch(users(5), cfg, { training: true, seed: 2 });
    const generic = () => tf.mul(tf.addN(model.variables.map((v) => tf.sum(tf.square(v)))), cfg.l2 / 2) as tf.Scalar;
    const run = (reg: () => tf.Scalar) => {
      model.l2 = reg;
      const { value, grads } = tf.variableGrads(() => model.losses(batch, true).total, model.variables);
      const out = { value: value.dataSync()[0], grads: model.variables.map((v) => grads[v.name]!.dataSync().slice()) };
      tf.dispose([value, ...Object.values(grads)]);
      return out;
    };
    const a = run(() => l2Penalty(model.variables, cfg.l2));
    const b = run(generic);
    model.l2 = AetnModel.prototype.l2;
    expect(a.value).toBe(b.value);
    a.grads.forEach((g, i) => expect(Buffer.from(g.buffer).equals(Buffer.from(b.grads[i]!.buffer)), model.names[i]).toBe(true));
  });

  it('L_reg covers every trainable variable (transformer included) and every variable is trained', () => {
    const cfg = tinyConfig('aetn', { l2: 0.01 });
    const model = new AetnModel(cfg, 9);
    const expected = tf.tidy(() => model.variables.reduce((s, v) => s + tf.sum(tf.square(v)).dataSync()[0], 0) * 0.005);
    const batch = makeBatch(users(6), cfg, { training: true, seed: 3 });
    const lv = lossValues(model, batch, true);
    expect(lv.reg).toBeCloseTo(expected, 5);
    // d reg / d v = l2 · v for every variable.
    const { value, grads } = tf.variableGrads(() => model.l2(), model.variables);
    value.dispose();
    model.variables.forEach((v) => {
      const g = grads[v.name];
      expect(g, v.name).toBeDefined();
      expect(tf.tidy(() => tf.max(tf.abs(tf.sub(g, tf.mul(v, 0.01)))).dataSync()[0]), v.name).toBeLessThan(1e-7);
    });
    tf.dispose(Object.values(grads));
    // The data losses reach every variable except the key half of the modified attention, which is
    // inert by construction (see the attention test).
    const data = tf.variableGrads(() => {
      const l = model.losses(batch, true);
      return tf.sub(l.total, l.reg) as tf.Scalar;
    }, model.variables);
    data.value.dispose();
    model.variables.forEach((v, i) => {
      const n = tf.tidy(() => tf.norm(data.grads[v.name]).dataSync()[0]);
      if (/Wk_ret$/.test(model.names[i])) expect(n, model.names[i]).toBeLessThan(1e-4);
      else expect(n, model.names[i]).toBeGreaterThan(1e-4);
    });
    tf.dispose(Object.values(data.grads));
    batch.dispose();
    model.dispose();
  });

  it('variants differ only in what they should', () => {
    const zeroDrop = { dropoutAttention: 0, dropoutFfn: 0, dropoutInput: 0 };
    const m = Object.fromEntries(VARIANTS.map((v, i) => [v, new AetnModel(tinyConfig(v, zeroDrop), 20 + i)])) as Record<Variant, AetnModel>;
    for (const v of VARIANTS) if (v !== 'aetn') copyShared(m.aetn, m[v]);
    const full = m.aetn.names;
    const without = (re: RegExp) => full.filter((n) => !re.test(n));
    expect(m['no-aux'].names).toEqual(without(/^ae\.(W|b)[23]$/));
    expect(m['no-mask'].names).toEqual(without(/^e_mask$/));
    expect(m.vanilla.names).toEqual(without(/\.W[kv]_ret$/));
    expect(m.dae.names).toEqual(['W_app', 'C', 'b_out', 'ae.b1', 'W_b', 'b_b', 'W_ru', 'b_ru']);

    const ex = users(8);
    const batchFor = (v: Variant) => makeBatch(ex, m[v].cfg, { training: true, seed: 4 });
    const b = Object.fromEntries(VARIANTS.map((v) => [v, batchFor(v)])) as Record<Variant, Batch>;
    const L = Object.fromEntries(VARIANTS.map((v) => [v, lossValues(m[v], b[v], true)])) as Record<Variant, Record<string, number>>;
    const evalAetn = lossValues(m.aetn, b.aetn, false);
    // no-aux: the same model minus L_aux.
    expect(L['no-aux'].main).toBeCloseTo(L.aetn.main, 5);
    expect(L['no-aux'].mask).toBeCloseTo(L.aetn.mask, 5);
    expect(L['no-aux'].aux).toBe(0);
    expect(L.aetn.aux).toBeGreaterThan(0);
    // no-mask: training sees unmasked tokens, exactly like AETN outside training.
    expect(L['no-mask'].mask).toBe(0);
    expect(L['no-mask'].main).toBeCloseTo(evalAetn.main, 5);
    expect(L['no-mask'].aux).toBeCloseTo(L.aetn.aux, 5);
    // vanilla: same autoencoder, different attention.
    expect(L.vanilla.aux).toBeCloseTo(L.aetn.aux, 5);
    expect(Math.abs(L.vanilla.sequence - L.aetn.sequence)).toBeGreaterThan(1e-4);
    // dae: the retention path only.
    expect([L.dae.sequence, L.dae.aux, L.dae.mask]).toEqual([0, 0, 0]);
    expect(L.dae.main).toBe(L.dae.retention);
    // DAE's embedding is the autoencoder bottleneck: it ignores installs and uninstalls entirely.
    const noSeq = ex.map((u) => ({ ...u, installs: new Int32Array(0), installDates: new Int32Array(0), uninstalls: new Int32Array(0), uninstallDates: new Int32Array(0) }));
    const bs = makeBatch(noSeq, m.dae.cfg, { training: false, seed: 4 });
    const ba = makeBatch(noSeq, m.aetn.cfg, { training: false, seed: 4 });
    tf.tidy(() => {
      expect(maxAbsDiff(arr(m.dae.embed(b.dae)), arr(m.dae.embed(bs)))).toBe(0);
      expect(maxAbsDiff(arr(m.aetn.embed(b.aetn)), arr(m.aetn.embed(ba)))).toBeGreaterThan(1e-4);
    });
    for (const x of [...Object.values(b), bs, ba]) x.dispose();
    for (const x of Object.values(m)) x.dispose();
  });

  it('is deterministic from its seeds; a batch split in two gives the same gradient (dropout included)', () => {
    const cfg = tinyConfig('aetn');
    const a = new AetnModel(cfg, 42);
    const b = new AetnModel(cfg, 42);
    const c = new AetnModel(cfg, 43);
    const flat = (m: AetnModel) => tf.tidy(() => Array.from(tf.concat(m.variables.map((v) => tf.reshape(v, [-1]))).dataSync()));
    expect(flat(a)).toEqual(flat(b));
    expect(maxAbsDiff(flat(a), flat(c))).toBeGreaterThan(0.01);
    const ex = users(10);
    const full = makeBatch(ex, cfg, { training: true, seed: 77 });
    const other = makeBatch(ex, cfg, { training: true, seed: 78 });
    expect(lossValues(a, full, true)).toEqual(lossValues(b, full, true));
    expect(lossValues(a, full, true).total).not.toBe(lossValues(a, other, true).total);
    expect(lossValues(a, full, false)).toEqual(lossValues(a, other, false)); // no randomness outside training
    const grad = (batch: Batch) => {
      const { value, grads } = tf.variableGrads(() => a.losses(batch, true).total, a.variables);
      value.dispose();
      const g = tf.tidy(() => Array.from(tf.concat(a.variables.map((v) => tf.reshape(grads[v.name], [-1]))).dataSync()));
      tf.dispose(Object.values(grads));
      return g;
    };
    const gFull = grad(full);
    const h1 = makeBatch(ex.slice(0, 5), cfg, { training: true, seed: 77 });
    const h2 = makeBatch(ex.slice(5), cfg, { training: true, seed: 77 });
    const g1 = grad(h1);
    const g2 = grad(h2);
    const avg = g1.map((x, i) => (x + g2[i]) / 2);
    const scale = Math.max(...gFull.map(Math.abs));
    expect(maxAbsDiff(gFull, avg) / scale).toBeLessThan(1e-5);
    for (const x of [full, other, h1, h2]) x.dispose();
    for (const x of [a, b, c]) x.dispose();
  });

  it('gradients agree with central finite differences', async () => {
    const cfg = tinyConfig('aetn', { dropoutAttention: 0, dropoutFfn: 0, dropoutInput: 0, posWeight: 5, l2: 1e-3 });
    const model = new AetnModel(cfg, 10);
    const batch = makeBatch(users(3), cfg, { training: true, seed: 3 });
    expect(batch.host.maskFlat.length).toBeGreaterThan(0);
    const loss = () => tf.tidy(() => model.losses(batch, true).total.dataSync()[0]);
    const { value, grads } = tf.variableGrads(() => model.losses(batch, true).total, model.variables);
    value.dispose();
    let checked = 0;
    const errors: { err: number; what: string }[] = [];
    for (const [vi, v] of model.variables.entries()) {
      // A long synchronous loop starves vitest's worker RPC on a loaded machine: yield per variable.
      await new Promise((r) => setImmediate(r));
      if (/Wk_ret$/.test(model.names[vi])) continue; // zero gradient by construction (tested above)
      const g = grads[v.name].dataSync();
      const data = v.dataSync().slice() as Float32Array;
      // Two coordinates per variable: the largest gradient and one fixed pseudo-random one.
      let big = 0;
      for (let i = 1; i < g.length; i++) if (Math.abs(g[i]) > Math.abs(g[big])) big = i;
      for (const i of new Set([big, (vi * 7919) % g.length])) {
        const at = (x: number) => {
          const d = data.slice();
          d[i] = x;
          v.assign(tf.tensor(d, v.shape));
          return loss();
        };
        // Small steps drown in float32 rounding of the loss, large ones in curvature: take the
        // better of two.
        let err = Infinity;
        let what = '';
        for (const eps of [1e-3, 5e-3]) {
          const fd = (at(data[i] + eps) - at(data[i] - eps)) / (2 * eps);
          const e = Math.abs(fd - g[i]) / Math.max(0.02, Math.abs(fd), Math.abs(g[i]));
          if (e < err) [err, what] = [e, `${model.names[vi]}[${i}] analytic ${g[i]} vs numeric ${fd} (eps ${eps})`];
        }
        v.assign(tf.tensor(data, v.shape));
        errors.push({ err, what });
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(80);
    // float32 central differences: ReLU / LeakyReLU kinks a few eps away from a coordinate bend the
    // odd estimate, so ask that nearly all agree tightly and none disagrees grossly (a wrong
    // gradient rule breaks whole variables, not one coordinate in fifty).
    errors.sort((x, y) => y.err - x.err);
    const tight = errors.filter((e) => e.err < 0.02).length / errors.length;
    expect(tight, errors.slice(0, 5).map((e) => e.what).join('; ')).toBeGreaterThanOrEqual(0.95);
    expect(errors[0].err, errors[0].what).toBeLessThan(0.1);
    tf.dispose(Object.values(grads));
    batch.dispose();
    model.dispose();
  });

  it('counts FLOPs consistently with the model sizes', () => {
    const small = new AetnModel(tinyConfig('aetn'), 1);
    const wide = new AetnModel(tinyConfig('aetn', { numApps: 2 * M, appCategory: Int32Array.from({ length: 2 * M }, (_, i) => i % CATS) }), 1);
    const tokens = 8;
    const masked = 4;
    // Each head row costs d·M multiply-adds: doubling M adds 2·3·d·M·(AE + retention + tokens + masks).
    const diff = wide.flopsPerUser(true, { tokens, masked }) - small.flopsPerUser(true, { tokens, masked });
    expect(diff).toBe(2 * 3 * 12 * M * (2 + tokens + masked));
    // Inference skips the heads, training counts forward + backward (x3).
    expect(small.flopsPerUser(false)).toBeLessThan(small.flopsPerUser(true) / 3);
    const paper = new AetnModel(defaultConfig({ numApps: 8 }), 1);
    const f = paper.flopsPerUser(true) - 2 * 3 * 8 * 512 * (2 + 50 + 6); // without the M-wide heads
    expect(f / 1e9).toBeGreaterThan(1); // the design estimate: about 2 GFLOP per user per step
    expect(f / 1e9).toBeLessThan(3);
    for (const x of [small, wide, paper]) x.dispose();
  });
});
