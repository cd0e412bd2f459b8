// The benchmark users and vocabulary of the model benches (model-train.ts, tf-anchor.ts): full
// sequences (25 installs + 25 uninstalls over 52 weekly date buckets) and 50 retained apps, the
// averages flopsPerUser assumes, as bench/anchors/aetn_tf.py draws its own users. Not a benchmark
// itself (bench/run.js skips files starting with '_').
import type { UserExample, Vocabulary } from '../src/data/types.js';

/** Paper sizes (the defaults of src/model/config.ts apart from the vocabulary). */
export const PAPER = { dModel: 512, dFf: 1024, heads: 8, encLayers: 2, decLayers: 1, dEmb: 128 };

export function vocabulary(m: number, cats = 50): Vocabulary {
  return {
    hash: `bench-${m}`,
    categories: Array.from({ length: cats }, (_, i) => `c${i}`),
    apps: Array.from({ length: m }, (_, i) => ({ index: i, appId: `a${i}`, category: i % cats, packages: [] })),
  };
}

export function users(n: number, m: number, seed = 1): UserExample[] {
  let s = seed;
  const r = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296;
  return Array.from({ length: n }, (_, u) => {
    const ret = new Set<number>();
    while (ret.size < 50) ret.add(Math.floor(r() * m));
    const seq = () => Int32Array.from({ length: 25 }, () => Math.floor(r() * m));
    const dates = () => Int32Array.from({ length: 25 }, () => Math.floor(r() * 52));
    return {
      userId: `u${seed}-${u}`,
      retention: Int32Array.from([...ret].sort((a, b) => a - b)),
      installs: seq(),
      installDates: dates(),
      installTimes: new Float64Array(25),
      uninstalls: seq(),
      uninstallDates: dates(),
      uninstallTimes: new Float64Array(25),
      lastActiveMs: 0,
    };
  });
}
