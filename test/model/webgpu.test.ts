// The webgpu backend against wasm: the same checkpoint, the same users, vectors equal within a
// stated tolerance. Runs wherever a WebGPU adapter exists (a GPU's Vulkan driver, or Mesa's software
// Vulkan, lavapipe, which .ci/run installs); skips, saying what is missing, only where none does.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend, probeWebgpu } from '../../src/model/backend.js';
import { configToJson, newFeatureId, saveCheckpoint } from '../../src/model/checkpoint.js';
import { saveHead } from '../../src/model/head-checkpoint.js';
import { loadHead } from '../../src/model/head-forward.js';
import { loadHeadPool } from '../../src/model/head-pool.js';
import { createEmbedder } from '../../src/model/infer.js';
import { RealtimeHead, defaultHeadConfig, type HeadEvent } from '../../src/model/realtime-head.js';
import { LocalEngine } from '../../src/model/train-engine.js';
import { startEngine } from '../../src/model/train.js';
import { trainHeadCommand } from '../../src/model/train-head.js';
import { UserError } from '../../src/util/errors.js';
import { defaultFactoryUrl } from '../../src/model/train-engine.js';
import { factory } from '../../src/model/train-model.js';
import { DAY, MIN, T0, makeWorld } from './head-fixtures.js';
import { tinyWorld } from './train-fixture.js';
import * as tf from '@tensorflow/tfjs-core';

const probe = await probeWebgpu();
if (!probe.ok) console.warn(`webgpu parity tests skipped: ${probe.detail}`);

const TINY = { dModel: 16, dFf: 32, heads: 2, encLayers: 1, decLayers: 1, dEmb: 8, seqLen: 6, aeHidden: 8 };
const { vocab, examples } = tinyWorld(40, 30, 5);
/**
 * Stated tolerance: 1e-5 absolute (measured on lavapipe: 4e-7) on the tanh vectors in [-1, 1]. float32 on both backends, but the
 * GPU kernels sum in another order (tiled matMul, tree reductions) and use their own exp/tanh.
 */
const TOL = 1e-5;

let root: string;

/** A checkpoint of `variant` one SGD step away from its seeded start (so not the initialisation). */
async function checkpoint(variant: 'aetn' | 'dae'): Promise<string> {
  await initBackend('wasm');
  const cfg = factory.makeConfig(vocab, { ...TINY, variant }, {});
  const engine = LocalEngine.create(factory, cfg, 3);
  const g = new Float32Array(engine.numParams);
  engine.gradientSync(examples, 1, g);
  const weights = engine.getWeights().map((w, i) => w - 0.05 * g[i]!);
  const dir = join(root, variant);
  await saveCheckpoint(
    dir,
    {
      featureId: newFeatureId(variant),
      modelKind: 'aetn',
      variant,
      config: configToJson(cfg),
      dim: 8,
      vocab: { hash: vocab.hash, numApps: vocab.apps.length, numCategories: vocab.categories.length },
      backend: 'wasm',
      workers: 1,
      seed: 3,
      createdAt: new Date().toISOString(),
      updatedAt: new Date().toISOString(),
      metrics: {},
      training: {},
    },
    engine.layout,
    weights,
  );
  await engine.close();
  return dir;
}

async function vectors(dir: string, backend: string, chunk?: number): Promise<Float32Array[]> {
  const e = await createEmbedder(dir, { backend, workers: 1, chunk });
  try {
    expect(e.backend.name).toBe(backend);
    return await e.embed(examples);
  } finally {
    await e.close();
  }
}

function maxAbsDiff(a: Float32Array[], b: Float32Array[]): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    expect(a[i]!.length).toBe(b[i]!.length);
    for (let j = 0; j < a[i]!.length; j++) m = Math.max(m, Math.abs(a[i]![j]! - b[i]![j]!));
  }
  return m;
}

describe.skipIf(!probe.ok)(`webgpu backend (${probe.detail})`, () => {
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'aetn-webgpu-'));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('names the adapter it runs on', async () => {
    const info = await initBackend('webgpu');
    expect(info.name).toBe('webgpu');
    expect(info.detail).toBe(`webgpu (${probe.detail})`);
    expect(info.gemm).toBe('stock');
  });

  for (const variant of ['aetn', 'dae'] as const) {
    it(`embeds the ${variant} checkpoint like wasm (max |diff| < ${TOL})`, async () => {
      const dir = await checkpoint(variant);
      const w = await vectors(dir, 'wasm');
      // Chunks of 16 users: several model calls, each read back asynchronously.
      const g = await vectors(dir, 'webgpu', 16);
      const diff = maxAbsDiff(g, w);
      console.log(`webgpu vs wasm, ${variant}: max |diff| ${diff.toExponential(2)} over ${w.length} users x ${w[0]!.length}`);
      expect(diff).toBeLessThan(TOL);
      // Not trivially equal: different users get different vectors.
      expect(w[0]!.some((x, j) => Math.abs(x - w[1]![j]!) > 1e-3)).toBe(true);
    });
  }

  it('embeds in device chunks sized from the GPU budget, overlapped or not, to the same bits', async () => {
    const dir = await checkpoint('aetn');
    const run = async (o: Parameters<typeof createEmbedder>[1]) => {
      const e = await createEmbedder(dir, { backend: 'webgpu', ...o });
      try {
        return { chunkUsers: e.chunkUsers, batchUsers: e.batchUsers, v: await e.embed(examples) };
      } finally {
        await e.close();
      }
    };
    // 40 users in device chunks of 7: six chunks, the next built and dispatched while one computes.
    const on = await run({ gpuChunkUsers: 7, overlap: true });
    const off = await run({ gpuChunkUsers: 7, overlap: false });
    expect(on.chunkUsers).toBe(7);
    expect(on.v.length).toBe(examples.length);
    for (let i = 0; i < on.v.length; i++) expect(Buffer.from(on.v[i]!.buffer).equals(Buffer.from(off.v[i]!.buffer))).toBe(true);
    // Within tolerance of wasm too (the chunks change the GPU's sums, not the values beyond rounding).
    expect(maxAbsDiff(on.v, await vectors(dir, 'wasm'))).toBeLessThan(TOL);
    // Default chunks come from the device: its budget (4096 MiB) and its buffer limit; a smaller
    // budget, smaller chunks; the job's default batch is four chunks, at least 1000 users.
    const dflt = await run({});
    const small = await run({ gpuMemoryBudgetMiB: 64 });
    expect(small.chunkUsers).toBeLessThan(dflt.chunkUsers);
    expect(dflt.batchUsers).toBe(Math.max(1000, 4 * dflt.chunkUsers));
    expect(maxAbsDiff(small.v, dflt.v)).toBeLessThan(TOL);
  });

  it('runs the realtime head like wasm: host and tfjs forwards, on this thread and on a head worker', async () => {
    const world = makeWorld({ users: 0 });
    const now = T0 + 60 * DAY;
    const ev = (app: number, minutesAgo: number, type: 1 | 2): HeadEvent => ({ app, type, timestampMs: now - minutesAgo * MIN });
    // Every width group (8, 16, 32) and the host forward's short users (<= 2 or 4 events).
    const users = [1, 40, 0, 9, 3, 17, 32, 8, 16, 2, 5, 4].map((n, u) => ({
      events: Array.from({ length: n }, (_, i) => ev((u * 7 + i) % world.numApps, 5000 - 37 * i, i % 4 === 3 ? 2 : 1)),
    }));
    const dir = join(root, 'head');
    await initBackend('wasm');
    const cfg = defaultHeadConfig({ numApps: world.numApps, appDim: world.appDim, dModel: 16, heads: 2, dFf: 32, maxEvents: 32, outDim: 12, recentK: 3, dropout: 0 });
    const head = new RealtimeHead(cfg, world.appMatrix, 21);
    await saveHead(dir, head, { baseFeatureId: 'aetn-aetn-20260101-deadbeef', vocab: world.vocab });
    head.dispose();
    const want: Record<string, Float32Array[]> = {};
    for (const forward of ['host', 'tfjs'] as const) {
      const w = await loadHead(dir, { backend: 'wasm', forward, maxBatch: 4 });
      want[forward] = w.embed(users, now);
      w.dispose();
    }
    for (const forward of ['host', 'tfjs'] as const) {
      const g = await loadHead(dir, { backend: 'webgpu', forward, maxBatch: 4 });
      expect(() => g.embed(users, now)).toThrow(/asynchronously only/);
      const got = await g.embedAsync(users, now);
      g.dispose();
      const diff = maxAbsDiff(got, want[forward]!);
      console.log(`webgpu vs wasm, realtime head (${forward} forward): max |diff| ${diff.toExponential(2)} over ${got.length} users x ${got[0]!.length}`);
      expect(diff).toBeLessThan(TOL);
    }
    // The served path: a head worker thread on webgpu (it reads back asynchronously).
    const pool = await loadHeadPool(dir, { backend: 'webgpu', workers: 1 });
    try {
      const got = await pool.embed(users, now);
      expect(maxAbsDiff(got, want.host!)).toBeLessThan(TOL);
    } finally {
      await pool.close();
    }
    // Not trivially equal: users differ.
    expect(maxAbsDiff([want.tfjs![1]!], [want.tfjs![3]!])).toBeGreaterThan(1e-3);
  });

  for (const variant of ['aetn', 'dae'] as const) {
    it(`computes the ${variant} training step like wasm: losses and the whole gradient`, async () => {
      const batch = examples.slice(0, 24);
      const step = async (backend: string) => {
        await initBackend(backend);
        const cfg = factory.makeConfig(vocab, { ...TINY, variant }, {});
        // Chunks of 10 users: the chunked gradient (weighted sum of 3 chunks) on both.
        const engine = LocalEngine.create(factory, cfg, 5, { chunkUsers: 10 });
        const weights = await engine.getWeightsAsync();
        const grad = new Float32Array(engine.numParams);
        const r = await engine.gradient(batch, 99, grad);
        const val = await engine.evaluate(batch);
        await engine.close();
        return { r, val, grad, weights };
      };
      const w = await step('wasm');
      const g = await step('webgpu');
      // The same seeded start on both (the initialisers are seeded on the host).
      expect(Buffer.from(g.weights.buffer).equals(Buffer.from(w.weights.buffer))).toBe(true);
      for (const k of ['total', 'main', 'aux', 'mask', 'reg'] as const) {
        expect(Math.abs(g.r.losses[k] - w.r.losses[k]), k).toBeLessThanOrEqual(1e-4 * Math.max(1, Math.abs(w.r.losses[k])));
        expect(Math.abs(g.val.losses[k] - w.val.losses[k]), k).toBeLessThanOrEqual(1e-4 * Math.max(1, Math.abs(w.val.losses[k])));
      }
      let num = 0;
      let den = 0;
      for (let i = 0; i < w.grad.length; i++) {
        num = Math.max(num, Math.abs(g.grad[i]! - w.grad[i]!));
        den = Math.max(den, Math.abs(w.grad[i]!));
      }
      console.log(`webgpu vs wasm, ${variant} gradient: max |diff| / max |g| ${(num / den).toExponential(2)} over ${w.grad.length} parameters; loss ${g.r.losses.total} vs ${w.r.losses.total}`);
      // Stated tolerance: 1e-4 of the largest gradient entry (float32, another summation order).
      expect(num / den).toBeLessThan(1e-4);
      expect(den).toBeGreaterThan(0);
    });
  }

  it('sums more AddN terms than a shader may bind (the gradient of a weight used many times)', async () => {
    await initBackend('webgpu');
    for (const n of [2, 7, 8, 20, 50]) {
      const terms = Array.from({ length: n }, (_, i) => tf.fill([3, 5], i + 1));
      const s = tf.addN(terms);
      // 1 + 2 + ... + n, exact in float32 at these sizes.
      expect(Array.from((await s.data()) as Float32Array), `n ${n}`).toEqual(new Array(15).fill((n * (n + 1)) / 2));
      tf.dispose([...terms, s]);
    }
  });

  it('refuses worker threads on webgpu by name', async () => {
    const cfg = factory.makeConfig(vocab, { ...TINY }, {});
    await expect(startEngine({ factoryUrl: defaultFactoryUrl(), cfg, seed: 1, backend: 'webgpu', workers: 2 })).rejects.toThrow(/use 1 worker/);
  });
});

// These need no adapter: they run everywhere.
describe('webgpu backend without an adapter, and what it does not do', () => {
  // Needs Dawn itself (the npm package loads on this platform), not an adapter.
  it.skipIf(/npm package 'webgpu'/.test(probe.detail))('names what is missing when Dawn finds no Vulkan driver', async () => {
    // A child process whose Vulkan loader sees no driver at all (VK_ICD_FILENAMES names none).
    const code = "const m = await import('./src/model/backend.js'); try { await m.initBackend('webgpu'); console.log('started'); } catch (e) { console.log(e.constructor.name + ': ' + e.message); }";
    const r = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { env: { ...process.env, VK_ICD_FILENAMES: '/nonexistent/no-driver.json' } });
    expect(r.stdout).toMatch(/^UserError: backend 'webgpu' cannot start: no WebGPU adapter .*install -t bookworm-backports mesa-vulkan-drivers.*--backend wasm/);
  });

  it('refuses to train the realtime head on webgpu, saying what to do instead', async () => {
    const err = await trainHeadCommand({ baseModel: '/nonexistent/model', data: '/nonexistent/data', out: '/nonexistent/out', backend: 'webgpu' } as Parameters<typeof trainHeadCommand>[0]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toMatch(/realtime head on webgpu is not supported.*--backend wasm/);
  });
});
