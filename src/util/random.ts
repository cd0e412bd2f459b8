// Seeded random numbers, the only copies in the code base: nothing here uses Math.random, so every
// seeded run (data generation, training, evaluation, audiences) can be reproduced bit for bit.
// test/util/hash-random.test.ts pins the outputs; changing them changes committed results.
//   Rng        mulberry32 with a mixed seed: evaluation, tests, anything that wants a seeded stream
//   Mulberry32 mulberry32 on a raw 32-bit state: the model's per-user [MASK] streams
//   mulberry32 the same generator as a bare () => [0, 1) function: look-alike, serving, shuffles
//   Sfc32      sfc32 keyed by strings and numbers: the synthetic world generator, one stream per user
import { fmix32, fnv1a32 } from './hash.js';

/** Samplers shared by every generator; a generator supplies uniform 32-bit integers. */
export abstract class RandomSource {
  private spare: number | null = null;

  abstract nextU32(): number;

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextU32() / 4294967296;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  bernoulli(p: number): boolean {
    return this.next() < p;
  }

  /** Standard normal (Box-Muller, caching the second value). */
  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.next();
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  exponential(): number {
    return -Math.log(1 - this.next());
  }

  poisson(lambda: number): number {
    if (lambda <= 0) return 0;
    if (lambda > 30) return Math.max(0, Math.round(lambda + Math.sqrt(lambda) * this.normal()));
    const l = Math.exp(-lambda);
    let k = 0;
    let p = 1;
    do {
      k++;
      p *= this.next();
    } while (p > l);
    return k - 1;
  }

  /** Index drawn from cumulative weights `cum` (non-decreasing, last = total). */
  pickCum(cum: Float64Array | number[], lo = 0, hi = cum.length): number {
    const base = lo > 0 ? cum[lo - 1] : 0;
    const x = base + this.next() * (cum[hi - 1] - base);
    let l = lo;
    let h = hi - 1;
    while (l < h) {
      const m = (l + h) >>> 1;
      if (cum[m] > x) h = m;
      else l = m + 1;
    }
    return l;
  }

  /** In-place Fisher-Yates shuffle. */
  shuffle<T extends { length: number; [i: number]: number } | unknown[]>(a: T): T {
    const arr = a as unknown as unknown[];
    for (let i = arr.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const t = arr[i];
      arr[i] = arr[j];
      arr[j] = t;
    }
    return a;
  }

  /** A permutation of 0..n-1. */
  permutation(n: number): Int32Array {
    const p = new Int32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    return this.shuffle(p);
  }

  /** k distinct indices from 0..n-1 (k <= n), in random order. */
  sample(n: number, k: number): Int32Array {
    if (k > n) throw new RangeError(`cannot sample ${k} of ${n}`);
    if (k * 4 < n) {
      const seen = new Set<number>();
      const out = new Int32Array(k);
      let m = 0;
      while (m < k) {
        const i = this.int(n);
        if (!seen.has(i)) {
          seen.add(i);
          out[m++] = i;
        }
      }
      return out;
    }
    return this.permutation(n).subarray(0, k).slice();
  }
}

/** mulberry32's output function for an already advanced state. */
function mulberryStep(state: number): number {
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return (t ^ (t >>> 14)) >>> 0;
}

/** mulberry32 on a raw 32-bit state: small and fast; fine for sampling, not for crypto. */
export class Mulberry32 extends RandomSource {
  private s: number;
  constructor(state: number) {
    super();
    this.s = state >>> 0;
  }
  nextU32(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    return mulberryStep(this.s);
  }
}

/** mulberry32 whose seed is mixed first, so that nearby seeds (1, 2, 3) give unrelated streams. */
export class Rng extends Mulberry32 {
  constructor(seed: number) {
    super(fmix32((seed ^ 0x9e3779b9) >>> 0));
  }
}

/** mulberry32 on a raw state as a bare function returning uniforms in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    return mulberryStep(a) / 4294967296;
  };
}

/**
 * sfc32 (128-bit state) keyed by any list of numbers and strings, e.g. (world seed, user index):
 * a stream per key, so that output does not depend on chunking or on the order keys are used in.
 */
export class Sfc32 extends RandomSource {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(...seeds: (number | string)[]) {
    super();
    const key = seeds.map(String).join('\u0001');
    this.a = fnv1a32(`a${key}`);
    this.b = fnv1a32(`b${key}`);
    this.c = fnv1a32(`c${key}`);
    this.d = fnv1a32(`d${key}`) | 1;
    for (let i = 0; i < 12; i++) this.nextU32();
  }

  nextU32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }
}
