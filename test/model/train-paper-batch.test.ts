// Regression: the default `aetn train` (paper sizes, batch 1000, one worker per core) aborted in wasm
// (each worker's 500 users needed ~20 GiB in one call). With chunked calls (memory.ts) a paper-size
// step at batch 1000 completes within the memory budget. A small vocabulary (M = 200) keeps it quick;
// the transformer, which holds most of the memory per user, is the paper's.
//
// Own file: vitest runs each file in its own process, so the process's peak RSS is this test's.
import { describe, expect, it } from 'vitest';
import type { UserExample, Vocabulary } from '../../src/data/types.js';
import { initBackend } from '../../src/model/backend.js';
import { DEFAULT_MEMORY_BUDGET_MIB } from '../../src/model/memory.js';
import { startEngine } from '../../src/model/train.js';
import { FlatAdam } from '../../src/model/train-adam.js';
import { defaultFactoryUrl } from '../../src/model/train-engine.js';
import { factory } from '../../src/model/train-model.js';

const M = 200;

function vocabulary(m: number, cats = 20): Vocabulary {
  return {
    hash: `paper-batch-${m}`,
    categories: Array.from({ length: cats }, (_, i) => `c${i}`),
    apps: Array.from({ length: m }, (_, i) => ({ index: i, appId: `a${i}`, category: i % cats, packages: [] })),
  };
}

/** Users with full sequences (25 installs, 25 uninstalls) and 50 retained apps: the largest batch tensors. */
function users(n: number, m: number, seed = 1): UserExample[] {
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

describe('paper size at batch 1000', () => {
  it('a training step (2 workers, default budget), evaluation and embedding complete; peak RSS < 4.5 GiB', async () => {
    const backend = await initBackend('wasm');
    const cfg = factory.makeConfig(vocabulary(M), {}, { seqLen: 25, dateBuckets: 52 });
    expect(cfg.dModel).toBe(512);
    const { engine, local } = await startEngine({ factoryUrl: defaultFactoryUrl(), cfg, seed: 1, backend: backend.name, workers: 2 });
    try {
      // 500 users per worker are cut into chunks that fit the budget (~28 at M = 200).
      expect(engine.chunkUsers.training).toBeGreaterThanOrEqual(16);
      expect(engine.chunkUsers.training).toBeLessThan(64);
      const w = local.getWeights();
      await engine.setWeights(w);
      const grad = new Float32Array(w.length);
      const batch = users(1000, M, 7);
      const t0 = performance.now();
      const r = await engine.gradient(batch, 3, grad);
      const stepSeconds = (performance.now() - t0) / 1000;
      expect(r.n).toBe(1000);
      expect(Number.isFinite(r.losses.total)).toBe(true);
      expect(grad.every(Number.isFinite)).toBe(true);
      expect(grad.some((v) => v !== 0)).toBe(true);
      const before = w.slice();
      new FlatAdam(w.length).apply(w, grad, 1e-4);
      expect(w.some((v, i) => v !== before[i])).toBe(true);
      await engine.setWeights(w);
      const ev = await engine.evaluate(batch);
      expect(ev.n).toBe(1000);
      expect(Number.isFinite(ev.losses.main)).toBe(true);
      const vectors = await engine.embed(batch);
      expect(vectors.length).toBe(1000 * cfg.dEmb);
      expect(vectors.every(Number.isFinite)).toBe(true);
      // Peak resident memory of this process (both workers' wasm heaps included). Each heap stays
      // under the budget (1536 MiB); unchunked, one worker's 500 users would need ~20 GiB.
      const peakMiB = process.resourceUsage().maxRSS / 1024;
      console.log(
        `paper size, M = ${M}, batch 1000, 2 workers: chunks of ${engine.chunkUsers.training} (training) / ${engine.chunkUsers.inference} (embedding) users, ` +
          `step ${stepSeconds.toFixed(1)} s, peak RSS ${peakMiB.toFixed(0)} MiB (budget ${DEFAULT_MEMORY_BUDGET_MIB} MiB per engine)`,
      );
      expect(peakMiB).toBeLessThan(4.5 * 1024);
    } finally {
      await engine.close();
      if (engine !== local) await local.close();
    }
  }, 600_000);
});
