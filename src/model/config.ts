// AETN hyperparameters. Defaults are the paper's sizes (KDD 2020 §4, appendix A.1); every size is a
// field so that tests run tiny models and `aetn train` can pick a reduced size for 2 CPU cores.
import { UserError } from '../util/errors.js';

/**
 * The five models of the paper's Table 1, all built by the same code in aetn.ts:
 *   aetn     full model: L_main + L_aux + L_mask + L_reg, modified attention
 *   no-mask  AETN without the masked-app prediction task (no [MASK] tokens, no L_mask)
 *   no-aux   AETN without the auxiliary retention autoencoder loss (L_aux)
 *   vanilla  V-AETN: plain keys/values (the retention / bottleneck is not concatenated to them);
 *            decoder tokens [ũ; date + type], the paper's vanilla decoder
 *   dae      denoising autoencoder baseline: retention -> d -> dEmb (tanh) -> d -> M, no transformer
 */
export const VARIANTS = ['aetn', 'no-mask', 'no-aux', 'vanilla', 'dae'] as const;
export type Variant = (typeof VARIANTS)[number];

export interface VariantFeatures {
  /** 'none': no transformer at all (DAE). */
  attention: 'modified' | 'vanilla' | 'none';
  /** Masked-app prediction task (L_mask, [MASK] tokens in training). */
  mask: boolean;
  /** Autoencoder reconstruction loss L_aux (and the AE layers it needs beyond the first). */
  aux: boolean;
}

export const VARIANT_FEATURES: Record<Variant, VariantFeatures> = {
  aetn: { attention: 'modified', mask: true, aux: true },
  'no-mask': { attention: 'modified', mask: false, aux: true },
  'no-aux': { attention: 'modified', mask: true, aux: false },
  vanilla: { attention: 'vanilla', mask: true, aux: true },
  dae: { attention: 'none', mask: false, aux: false },
};

export interface AetnConfig {
  variant: Variant;
  /** M: vocabulary size (rows of the tied app matrix W_a). */
  numApps: number;
  /** Category index of every app, length M (W_a = W_app + C[appCategory]). */
  appCategory: Int32Array;
  numCategories: number;
  /** d: width of W_a, the encoder/decoder tokens and the first autoencoder layer. */
  dModel: number;
  dFf: number;
  heads: number;
  encLayers: number;
  decLayers: number;
  /** Width of the tanh bottleneck u: the long-term user vector. */
  dEmb: number;
  /** Middle width of the auxiliary autoencoder [M, d, aeHidden, d, M] (paper: 256 = d/2). */
  aeHidden: number;
  /** I: latest installs (and uninstalls) kept per user. */
  seqLen: number;
  /** Week buckets of the date embedding. */
  dateBuckets: number;
  /** Dropout on the l2-normalised retention input (the "denoising" of the autoencoder). */
  dropoutInput: number;
  /** Dropout on attention probabilities. */
  dropoutAttention: number;
  /** Dropout after the FFN ReLU. */
  dropoutFfn: number;
  leakyAlpha: number;
  /** L_reg = l2 * sum(w^2) / 2 over every trainable variable (TF's l2_regularizer convention). */
  l2: number;
  /** Weight of positive (installed) entries in the sigmoid retention losses (reference code: 100). */
  posWeight: number;
  /**
   * Weight of the retention part of L_main in the training objective (the paper: 1; default 30,
   * DAE 1). The retention term is a mean over the M apps (~0.4 per user) beside a sequence softmax
   * (~5) and L_mask (~10), so at 1 the bottleneck is shaped mostly by the sequences. Reported
   * losses stay unweighted.
   */
  retentionWeight: number;
  /** Apps per install / uninstall sequence replaced by [MASK] in training (L_mask). */
  maskCount: number;
  layerNormEps: number;
}

export type AetnConfigInput = Partial<Omit<AetnConfig, 'appCategory'>> & {
  numApps: number;
  appCategory?: Int32Array | number[];
};

/** Default retentionWeight of the transformer variants (1 is the paper's; see docs/parts/model.md). */
export const DEFAULT_RETENTION_WEIGHT = 30;

/** Paper sizes for everything not given; validates the result (UserError naming the bad field). */
export function defaultConfig(partial: AetnConfigInput): AetnConfig {
  const dModel = partial.dModel ?? 512;
  const appCategory =
    partial.appCategory === undefined
      ? new Int32Array(partial.numApps)
      : partial.appCategory instanceof Int32Array
        ? partial.appCategory
        : Int32Array.from(partial.appCategory);
  let maxCat = -1;
  for (const c of appCategory) if (c > maxCat) maxCat = c;
  const cfg: AetnConfig = {
    variant: partial.variant ?? 'aetn',
    numApps: partial.numApps,
    appCategory,
    numCategories: partial.numCategories ?? Math.max(1, maxCat + 1),
    dModel,
    dFf: partial.dFf ?? 2 * dModel,
    heads: partial.heads ?? 8,
    encLayers: partial.encLayers ?? 2,
    decLayers: partial.decLayers ?? 1,
    dEmb: partial.dEmb ?? 128,
    aeHidden: partial.aeHidden ?? Math.max(1, Math.floor(dModel / 2)),
    seqLen: partial.seqLen ?? 25,
    dateBuckets: partial.dateBuckets ?? 52,
    dropoutInput: partial.dropoutInput ?? 0.05,
    dropoutAttention: partial.dropoutAttention ?? 0.1,
    dropoutFfn: partial.dropoutFfn ?? 0.1,
    leakyAlpha: partial.leakyAlpha ?? 0.2,
    l2: partial.l2 ?? 1.5e-7,
    posWeight: partial.posWeight ?? 100,
    // 30 for the transformer variants (measured, docs/parts/model.md); the DAE's objective is its
    // retention term alone, so a weight would only rescale it against L_reg.
    retentionWeight: partial.retentionWeight ?? ((partial.variant ?? 'aetn') === 'dae' ? 1 : DEFAULT_RETENTION_WEIGHT),
    maskCount: partial.maskCount ?? 3,
    layerNormEps: partial.layerNormEps ?? 1e-6,
  };
  validateConfig(cfg);
  return cfg;
}

export function validateConfig(cfg: AetnConfig): void {
  const bad = (field: string, why: string): never => {
    throw new UserError(`invalid model config: ${field} ${why}`);
  };
  if (!(VARIANTS as readonly string[]).includes(cfg.variant)) bad('variant', `'${cfg.variant}' is not one of ${VARIANTS.join(', ')}`);
  const positiveInts: (keyof AetnConfig)[] = [
    'numApps', 'numCategories', 'dModel', 'dFf', 'heads', 'dEmb', 'aeHidden', 'seqLen', 'dateBuckets',
  ];
  for (const k of positiveInts) {
    const v = cfg[k] as number;
    if (!Number.isInteger(v) || v < 1) bad(k, `must be a positive integer (got ${v})`);
  }
  for (const k of ['encLayers', 'decLayers', 'maskCount'] as const) {
    if (!Number.isInteger(cfg[k]) || cfg[k] < 0) bad(k, `must be a non-negative integer (got ${cfg[k]})`);
  }
  if (cfg.variant !== 'dae' && cfg.encLayers < 1) bad('encLayers', 'must be >= 1 for transformer variants');
  if (cfg.variant !== 'dae' && cfg.decLayers < 1) bad('decLayers', 'must be >= 1 for transformer variants');
  if (cfg.dModel % cfg.heads !== 0) bad('dModel', `(${cfg.dModel}) must be divisible by heads (${cfg.heads})`);
  for (const k of ['dropoutInput', 'dropoutAttention', 'dropoutFfn'] as const) {
    if (!(cfg[k] >= 0 && cfg[k] < 1)) bad(k, `must be in [0, 1) (got ${cfg[k]})`);
  }
  for (const k of ['l2', 'posWeight', 'retentionWeight', 'leakyAlpha', 'layerNormEps'] as const) {
    if (!(Number.isFinite(cfg[k]) && cfg[k] >= 0)) bad(k, `must be a finite number >= 0 (got ${cfg[k]})`);
  }
  if (cfg.appCategory.length !== cfg.numApps) {
    bad('appCategory', `has ${cfg.appCategory.length} entries but numApps is ${cfg.numApps}`);
  }
  for (let i = 0; i < cfg.appCategory.length; i++) {
    const c = cfg.appCategory[i];
    if (c < 0 || c >= cfg.numCategories) bad('appCategory', `[${i}] = ${c} is outside [0, ${cfg.numCategories})`);
  }
}

/**
 * Fills the fields added after checkpoints were first written with the value those checkpoints
 * trained with (retentionWeight: 1, the paper's). Every way of loading a config goes through it.
 */
export function withLaterFields(cfg: AetnConfig): AetnConfig {
  return cfg.retentionWeight === undefined ? { ...cfg, retentionWeight: 1 } : cfg;
}

/** JSON form for checkpoint manifests (the category array becomes a plain number array). */
export function configToJSON(cfg: AetnConfig): Record<string, unknown> {
  return { ...cfg, appCategory: Array.from(cfg.appCategory) };
}

/** Inverse of configToJSON; validates, so a hand-edited manifest fails with a clear error. */
export function configFromJSON(obj: unknown): AetnConfig {
  if (typeof obj !== 'object' || obj === null) throw new UserError('invalid model config: not an object');
  const o = obj as Record<string, unknown>;
  if (!Array.isArray(o.appCategory)) throw new UserError('invalid model config: appCategory must be an array');
  // Checkpoints written before retentionWeight existed trained with the paper's weight, 1.
  const cfg = withLaterFields({ ...(o as unknown as AetnConfig), appCategory: Int32Array.from(o.appCategory as number[]) });
  validateConfig(cfg);
  return cfg;
}
