// The AETN model factory for the trainer, the worker threads and the embedder (train-engine.ts
// describes the contract). Worker threads import this module by URL.
import type { UserExample, Vocabulary } from '../data/types.js';
import { UserError } from '../util/errors.js';
import { AetnModel } from './aetn.js';
import { makeBatch } from './batch.js';
import { VARIANTS, defaultConfig, type AetnConfig, type AetnConfigInput } from './config.js';
import { aetnMemoryEstimate } from './memory.js';
import type { BatchLike, ModelFactory, ModelLike } from './train-engine.js';

/** Config fields a user may set (CLI flags map onto these names). */
export const SIZE_FIELDS = ['dModel', 'dFf', 'heads', 'encLayers', 'decLayers', 'dEmb', 'aeHidden', 'seqLen', 'dateBuckets'] as const;

export const factory: ModelFactory<AetnConfig> = {
  kind: 'aetn',
  makeConfig(vocab: Vocabulary, overrides: Record<string, unknown>, data) {
    const variant = String(overrides.variant ?? 'aetn');
    if (!(VARIANTS as readonly string[]).includes(variant)) throw new UserError(`unknown variant '${variant}': choose one of ${VARIANTS.join(', ')}`);
    const input: AetnConfigInput = {
      ...(overrides as Partial<AetnConfigInput>),
      variant: variant as AetnConfig['variant'],
      numApps: vocab.apps.length,
      appCategory: Int32Array.from(vocab.apps.map((a) => a.category)),
      numCategories: Math.max(1, vocab.categories.length),
      seqLen: (overrides.seqLen as number | undefined) ?? data?.seqLen,
      dateBuckets: (overrides.dateBuckets as number | undefined) ?? data?.dateBuckets,
    };
    for (const k of Object.keys(input) as (keyof AetnConfigInput)[]) if (input[k] === undefined) delete input[k];
    if (vocab.apps.some((a, i) => a.index !== i)) throw new UserError('vocabulary app indices must be dense 0..M-1 in order');
    return defaultConfig(input);
  },
  createModel(cfg: AetnConfig, seed: number): ModelLike {
    return new AetnModel(cfg, seed) as unknown as ModelLike;
  },
  makeBatch(examples: UserExample[], cfg: AetnConfig, opts): BatchLike {
    return makeBatch(examples, cfg, opts);
  },
  embeddingDim: (cfg) => cfg.dEmb,
  variantOf: (cfg) => cfg.variant,
  memoryEstimate: (cfg, numParams) => aetnMemoryEstimate(cfg, numParams),
};

export default factory;
