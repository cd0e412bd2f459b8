// Seeded PRNG for the synthetic world. sfc32: fast, 128-bit state, good enough statistically for a
// simulator; every user gets its own stream seeded from (world seed, user index) so that output does
// not depend on chunking or on the order users are generated in.
import { fnv1a32 } from './hash.js';

export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spare: number | null = null;

  constructor(...seeds: (number | string)[]) {
    const key = seeds.map(String).join('\u0001');
    this.a = fnv1a32(`a${key}`);
    this.b = fnv1a32(`b${key}`);
    this.c = fnv1a32(`c${key}`);
    this.d = fnv1a32(`d${key}`) | 1;
    for (let i = 0; i < 12; i++) this.u32();
  }

  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.u32() / 4294967296;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  bernoulli(p: number): boolean {
    return this.next() < p;
  }

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
}
