// Look-alike audience evaluation: hide part of the true adopters of the target app, seed with the
// rest, ask a method for an audience of N users (seeds excluded) and count the hidden adopters in it.
// The baselines need no model (random, most popular) or only the vectors (one centroid query).
import { precisionAtN, recallAtN } from './metrics.js';
import { cosineScores, rankDescending } from './neighbors.js';
import { Rng } from '../util/random.js';

export interface AudienceContext {
  /** Number of users; users are row indices 0..n-1. */
  n: number;
  /** Row-normalised vectors [n, d], or null for methods that need none. */
  U: Float32Array | null;
  d: number;
  seeds: Int32Array;
  isSeed: Uint8Array;
  /** Prior popularity of each user (e.g. number of installed apps): the "most popular" baseline. */
  activity: Float64Array;
  seed: number;
}

export interface AudienceMethod {
  name: string;
  needsVectors: boolean;
  /** True when the top N of a larger audience equals the audience of size N (rank once, cut prefixes). */
  prefixConsistent: boolean;
  /** Up to `size` distinct non-seed user rows, best first. */
  audience(ctx: AudienceContext, size: number): Promise<Int32Array> | Int32Array;
}

export const randomAudience: AudienceMethod = {
  name: 'random',
  needsVectors: false,
  prefixConsistent: true,
  audience(ctx, size) {
    const perm = new Rng(ctx.seed ^ 0x5eed).permutation(ctx.n);
    return perm.filter((i) => !ctx.isSeed[i]).subarray(0, size);
  },
};

export const popularAudience: AudienceMethod = {
  name: 'most active (most apps)',
  needsVectors: false,
  prefixConsistent: true,
  audience(ctx, size) {
    // Random tie-break: many users share an app count and row order must not decide.
    const jitter = new Rng(ctx.seed ^ 0x909).permutation(ctx.n);
    const score = new Float64Array(ctx.n);
    for (let i = 0; i < ctx.n; i++) score[i] = ctx.activity[i] + jitter[i] / (ctx.n + 1);
    return rankDescending(score, (i) => !ctx.isSeed[i]).subarray(0, size);
  },
};

export const centroidAudience: AudienceMethod = {
  name: 'single centroid (cosine)',
  needsVectors: true,
  prefixConsistent: true,
  audience(ctx, size) {
    const { U, d } = ctx;
    if (!U) throw new Error('centroid audience needs vectors');
    const c = new Float64Array(d);
    for (const s of ctx.seeds) for (let j = 0; j < d; j++) c[j] += U[s * d + j];
    return rankDescending(cosineScores(U, d, c), (i) => !ctx.isSeed[i]).subarray(0, size);
  },
};

export interface AudienceRow {
  method: string;
  sizes: number[];
  recall: number[];
  precision: number[];
  seconds: number;
}

export interface AudienceSplit {
  seeds: Int32Array;
  hidden: Set<number>;
}

/** Hide `hideFraction` of the adopters (seeded), the rest become seeds. */
export function splitAdopters(labels: Uint8Array, hideFraction: number, seed: number): AudienceSplit {
  const adopters: number[] = [];
  for (let i = 0; i < labels.length; i++) if (labels[i]) adopters.push(i);
  new Rng(seed).shuffle(adopters);
  const h = Math.round(adopters.length * hideFraction);
  return { hidden: new Set(adopters.slice(0, h)), seeds: Int32Array.from(adopters.slice(h)).sort() };
}

/** Recall and precision of the hidden adopters at each audience size, for one method. */
export async function evaluateAudience(method: AudienceMethod, ctx: AudienceContext, hidden: Set<number>, sizes: number[]): Promise<AudienceRow> {
  const t0 = performance.now();
  const recall: number[] = [];
  const precision: number[] = [];
  const max = Math.max(...sizes);
  const once = method.prefixConsistent ? Array.from(await method.audience(ctx, max)) : null;
  for (const n of sizes) {
    const aud = once ?? Array.from(await method.audience(ctx, n));
    for (const u of aud.slice(0, n)) if (ctx.isSeed[u]) throw new Error(`audience method '${method.name}' returned a seed`);
    recall.push(recallAtN(aud, hidden, n));
    precision.push(precisionAtN(aud, hidden, n));
  }
  return { method: method.name, sizes, recall, precision, seconds: (performance.now() - t0) / 1000 };
}
