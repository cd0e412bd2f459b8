// Training and embedding throughput of AETN against the machine's SGEMM rate, measured in the same run.
//   npx tsx bench/model-train.ts [--quick] [--paper-batch N] [--steps N] [--big-batch N]
// Prints a table and writes bench/results/model-train.json.
//
// Baseline: numpy float32 SGEMM 2048x2048 (OpenBLAS) with 2 threads and 1 thread, and tfjs-wasm's
// own 1024x1024 matMul (stock kernel, 1 thread; native OpenBLAS kernel, 1 and 2 threads). Each wasm
// workload runs twice: with the stock BatchMatMul ('wasm') and with the native OpenBLAS one
// ('wasm+openblas', src/model/native-gemm.ts; skipped when the addon is not built), in the native
// kernel's default mode: plain OpenBLAS calls for gradient products, batch-invariant calls for
// inference. Embedding also runs with AETN_NATIVE_GEMM=all ('wasm+openblas-all': plain calls for
// inference too, not batch-invariant): the cost of the invariance, in the same run.
// Workloads: one Adam step = gradient of a batch (workers) + flat
// Adam + weight sync, at paper size (d 512, FFN 1024, 8 heads, 2+1 layers, 128-d u, I = 25) with a
// reduced vocabulary M (the FLOPs still include every M-wide output layer), and at a small size.
// Users have full sequences (25 installs + 25 uninstalls) and 50 retained apps: the averages that
// flopsPerUser assumes. A profile of one paper-size step on the main thread says where time goes.
// One more row trains at the paper's own batch (--big-batch, default 1000; 0 skips): one step with
// the default engine (2 workers, the native GEMM when built, the default memory budget: each worker
// computes its 500 users in chunks), with the chunk size and the process's peak RSS.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import type { UserExample } from '../src/data/types.js';
import { initBackend } from '../src/model/backend.js';
import { loadNativeGemm, setNativeGemmThreads } from '../src/model/native-gemm.js';
import { startEngine } from '../src/model/train.js';
import { FlatAdam } from '../src/model/train-adam.js';
import { LocalEngine, defaultFactoryUrl, type Engine } from '../src/model/train-engine.js';
import { factory } from '../src/model/train-model.js';
import { PAPER, users, vocabulary } from './_aetn-users.js';

const args = process.argv.slice(2);
const flag = (name: string, def: number): number => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const quick = args.includes('--quick');
const STEPS = flag('--steps', quick ? 1 : 2);
const PAPER_BATCH = flag('--paper-batch', quick ? 8 : 16);
const SMALL_BATCH = flag('--small-batch', quick ? 64 : 128);
const M = flag('--apps', 2000);
const ROUNDS = flag('--rounds', quick ? 1 : 2);
const BIG_BATCH = flag('--big-batch', quick ? 0 : 1000);

/** Best wall-clock GFLOP/s, and GFLOP per CPU-second (contention-independent per-core rate). */
function sgemm(threads: number): { wall: number; perCore: number } {
  const py = `
import os, time
import numpy as np
n = 2048
a = np.random.rand(n, n).astype(np.float32); b = np.random.rand(n, n).astype(np.float32)
a @ b
best = 1e9
c0 = time.process_time(); reps = 5
for _ in range(reps):
    t = time.perf_counter(); a @ b; best = min(best, time.perf_counter() - t)
cpu = time.process_time() - c0
print(2 * n ** 3 / best / 1e9, 2 * n ** 3 * reps / cpu / 1e9)
`;
  if (!ensureNumpy()) return { wall: NaN, perCore: NaN };
  const env = { ...process.env, OPENBLAS_NUM_THREADS: String(threads), OMP_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads) };
  const [wall, perCore] = execFileSync('python3', ['-c', py], { env, encoding: 'utf8' }).trim().split(/\s+/).map(Number);
  return { wall: wall!, perCore: perCore! };
}

let numpyState: boolean | undefined;
/** The baseline needs numpy; a fresh machine may not have it, so it is installed once from PyPI (as ghz is with go install). */
function ensureNumpy(): boolean {
  if (numpyState !== undefined) return numpyState;
  const has = () => {
    try {
      execFileSync('python3', ['-c', 'import numpy'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  };
  if (!has()) {
    console.error('numpy is missing (the SGEMM baseline needs it): pip install --user numpy ...');
    try {
      execFileSync('python3', ['-m', 'pip', 'install', '--quiet', '--user', 'numpy'], { stdio: 'inherit' });
    } catch {
      // reported below
    }
  }
  numpyState = has();
  if (!numpyState) console.error('numpy could not be installed: the SGEMM baseline (and every ratio to it) is NaN in this run');
  return numpyState;
}

type Gemm = 'stock' | 'openblas' | 'openblas-all';
const nativeGemm = loadNativeGemm();

/**
 * Selects the BatchMatMul for what runs next: the env switch is read by initBackend on this thread
 * and copied into worker threads when a pool starts. OpenBLAS's thread count is process-wide, so it
 * is set for every measurement: cores on the main thread alone, cores/workers with a pool.
 */
async function useGemm(backend: string, gemm: Gemm, workers: number): Promise<void> {
  process.env.AETN_NATIVE_GEMM = gemm === 'openblas' ? '1' : gemm === 'openblas-all' ? 'all' : '0';
  const info = await initBackend(backend);
  if (backend !== 'cpu' && info.gemm !== (gemm === 'stock' ? 'stock' : 'openblas')) throw new Error(`asked for the ${gemm} GEMM, backend reports ${info.detail}`);
  setNativeGemmThreads(Math.max(1, Math.floor(availableParallelism() / Math.max(1, workers))));
}

async function tfjsMatmul(gemm: Gemm, threads = 1): Promise<number> {
  // Plain calls: the kernel's own rate, the ceiling for every mode.
  await useGemm('wasm', gemm === 'openblas' ? 'openblas-all' : gemm, 1);
  setNativeGemmThreads(threads);
  const n = 1024;
  const a = tf.randomNormal([n, n]);
  const b = tf.randomNormal([n, n]);
  tf.matMul(a, b).dataSync();
  let best = Infinity;
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    const c = tf.matMul(a, b);
    c.dataSync();
    c.dispose();
    best = Math.min(best, performance.now() - t);
  }
  tf.dispose([a, b]);
  return (2 * n ** 3) / (best / 1000) / 1e9;
}

const label = (backend: string, gemm: Gemm) => (backend === 'wasm' && gemm !== 'stock' ? `wasm+${gemm}` : backend);

interface Measured {
  ups: number;
  gfs: number;
  sps: number;
  /** CPU seconds of all threads per wall second: the cores this process actually got. */
  cores: number;
}

interface Row {
  workload: string;
  size: string;
  backend: string;
  workers: number;
  batch: number;
  usersPerSec: number;
  gflopPerSec: number;
  pctOfSgemm2: number;
  secondsPerStep: number;
  coresUsed: number;
  gflopPerCoreSecond: number;
}

const SMALL = { dModel: 64, dFf: 128, heads: 4, encLayers: 2, decLayers: 1, dEmb: 32 };

async function measureTrain(size: 'paper' | 'small', backend: string, gemm: Gemm, workers: number, batch: number, steps: number): Promise<Measured> {
  await useGemm(backend, gemm, workers);
  const vocab = vocabulary(M);
  const cfg = factory.makeConfig(vocab, size === 'paper' ? PAPER : SMALL, { seqLen: 25, dateBuckets: 52 });
  const { engine, local } = await startEngine({ factoryUrl: defaultFactoryUrl(), cfg, seed: 1, backend, workers });
  try {
    const w = local.getWeights();
    const adam = new FlatAdam(w.length);
    const grad = new Float32Array(w.length);
    await engine.setWeights(w);
    const step = async (ex: UserExample[], seed: number) => {
      await engine.gradient(ex, seed, grad);
      adam.apply(w, grad, 1e-4);
      await engine.setWeights(w);
    };
    await step(users(batch, M, 99), 0); // warm-up: kernel setup, JIT, heap growth
    const data = users(batch * steps, M, 7);
    const c0 = process.cpuUsage();
    const t = performance.now();
    for (let s = 0; s < steps; s++) await step(data.slice(s * batch, (s + 1) * batch), s + 1);
    const secs = (performance.now() - t) / 1000;
    const c = process.cpuUsage(c0);
    const ups = (batch * steps) / secs;
    return { ups, gfs: (ups * engine.flopsPerUser.training) / 1e9, sps: secs / steps, cores: (c.user + c.system) / 1e6 / secs };
  } finally {
    await engine.close();
    if (engine !== local) await local.close();
  }
}

/** One step at the paper's batch, as `aetn train` runs it by default: chunked workers, 1 step. */
async function measureBigBatch(gemm: Gemm, workers: number, batch: number): Promise<Measured & { chunkUsers: number; peakRssMiB: number }> {
  await useGemm('wasm', gemm, workers);
  const cfg = factory.makeConfig(vocabulary(M), PAPER, { seqLen: 25, dateBuckets: 52 });
  const { engine, local } = await startEngine({ factoryUrl: defaultFactoryUrl(), cfg, seed: 1, backend: 'wasm', workers });
  try {
    const w = local.getWeights();
    const adam = new FlatAdam(w.length);
    const grad = new Float32Array(w.length);
    await engine.setWeights(w);
    // Warm-up with one chunk per worker: kernel setup, JIT and the heaps' growth to a chunk's peak.
    await engine.gradient(users(workers * Math.min(batch, engine.chunkUsers.training), M, 99), 0, grad);
    const data = users(batch, M, 7);
    const c0 = process.cpuUsage();
    const t = performance.now();
    await engine.gradient(data, 1, grad);
    adam.apply(w, grad, 1e-4);
    await engine.setWeights(w);
    const secs = (performance.now() - t) / 1000;
    const c = process.cpuUsage(c0);
    const ups = batch / secs;
    return { ups, gfs: (ups * engine.flopsPerUser.training) / 1e9, sps: secs, cores: (c.user + c.system) / 1e6 / secs, chunkUsers: engine.chunkUsers.training, peakRssMiB: process.resourceUsage().maxRSS / 1024 };
  } finally {
    await engine.close();
    if (engine !== local) await local.close();
  }
}

async function measureEmbed(backend: string, gemm: Gemm, workers: number, n: number): Promise<Measured> {
  await useGemm(backend, gemm, workers);
  const cfg = factory.makeConfig(vocabulary(M), PAPER, { seqLen: 25, dateBuckets: 52 });
  const { engine, local } = await startEngine({ factoryUrl: defaultFactoryUrl(), cfg, seed: 1, backend, workers });
  try {
    await engine.setWeights(local.getWeights());
    await engine.embed(users(Math.min(n, 64), M, 3));
    const data = users(n, M, 5);
    const c0 = process.cpuUsage();
    const t = performance.now();
    await engine.embed(data);
    const secs = (performance.now() - t) / 1000;
    const c = process.cpuUsage(c0);
    return { ups: n / secs, gfs: ((n / secs) * engine.flopsPerUser.inference) / 1e9, sps: secs, cores: (c.user + c.system) / 1e6 / secs };
  } finally {
    await engine.close();
    if (engine !== local) await local.close();
  }
}

/** Kernel time by op of one paper-size training step on this thread (wasm; OpenBLAS on 1 thread). */
async function profileStep(batch: number, gemm: Gemm): Promise<Array<{ kernel: string; calls: number; ms: number; pct: number }>> {
  await useGemm('wasm', gemm, 1);
  setNativeGemmThreads(1);
  const cfg = factory.makeConfig(vocabulary(M), PAPER, { seqLen: 25, dateBuckets: 52 });
  const engine = LocalEngine.create(factory, cfg, 1);
  try {
    const grad = new Float32Array(engine.numParams);
    const ex = users(batch, M, 11);
    engine.gradientSync(ex, 1, grad);
    const t = performance.now();
    const info = await tf.profile(() => {
      engine.gradientSync(ex, 2, grad);
    });
    const wall = performance.now() - t;
    const by = new Map<string, { calls: number; ms: number }>();
    for (const k of info.kernels) {
      const x = by.get(k.name) ?? { calls: 0, ms: 0 };
      x.calls++;
      x.ms += Number(k.kernelTimeMs) || 0;
      by.set(k.name, x);
    }
    const rows = [...by.entries()].map(([kernel, v]) => ({ kernel, calls: v.calls, ms: v.ms, pct: (100 * v.ms) / wall }));
    rows.sort((a, b) => b.ms - a.ms);
    const kernelMs = rows.reduce((a, r) => a + r.ms, 0);
    rows.push({ kernel: '(outside kernels: JS, batch, dropout masks, copies)', calls: 0, ms: wall - kernelMs, pct: (100 * (wall - kernelMs)) / wall });
    return rows;
  } finally {
    await engine.close();
  }
}

async function main(): Promise<void> {
  const started = performance.now();
  const machine = { cpus: cpus().length, model: cpus()[0]?.model ?? '?', parallelism: availableParallelism(), loadavgAtStart: loadavg()[0] };
  console.log(`machine: ${machine.cpus} x ${machine.model}, load average ${machine.loadavgAtStart.toFixed(1)}`);
  const sgemm2 = sgemm(2);
  const sgemm1 = sgemm(1);
  const sg2 = sgemm2.wall;
  const wasmMm = await tfjsMatmul('stock');
  const nativeMm1 = nativeGemm.ok ? await tfjsMatmul('openblas', 1) : NaN;
  const nativeMm2 = nativeGemm.ok ? await tfjsMatmul('openblas', 2) : NaN;
  console.log(
    `SGEMM numpy 2048^2: ${sg2.toFixed(1)} GFLOP/s (2 threads), ${sgemm1.wall.toFixed(1)} (1 thread); per CPU-second ${sgemm2.perCore.toFixed(1)} (2 threads), ${sgemm1.perCore.toFixed(1)} (1 thread); tfjs matMul 1024^2: stock wasm ${wasmMm.toFixed(1)} GFLOP/s (1 thread), native OpenBLAS ${nativeMm1.toFixed(1)} (1 thread) ${nativeMm2.toFixed(1)} (2 threads)`,
  );
  if (!nativeGemm.ok) console.log(`native GEMM rows skipped: ${nativeGemm.reason}`);

  const rows: Row[] = [];
  const add = (workload: string, size: string, backend: string, workers: number, batch: number, r: Measured) => {
    const row = { workload, size, backend, workers, batch, usersPerSec: r.ups, gflopPerSec: r.gfs, pctOfSgemm2: (100 * r.gfs) / sg2, secondsPerStep: r.sps, coresUsed: r.cores, gflopPerCoreSecond: r.gfs / r.cores };
    rows.push(row);
    console.log(`${workload.padEnd(6)} ${size.padEnd(6)} ${backend.padEnd(13)} w${workers} B${String(batch).padEnd(5)} ${r.ups.toFixed(1).padStart(8)} users/s ${r.gfs.toFixed(2).padStart(7)} GFLOP/s ${row.pctOfSgemm2.toFixed(1).padStart(5)}% of SGEMM(2)  cores used ${r.cores.toFixed(2)}  ${row.gflopPerCoreSecond.toFixed(2)} GFLOP/core-s`);
  };
  // The machine is shared: other jobs take varying shares of the cores. Each measurement runs in
  // ROUNDS interleaved rounds and keeps its best (least disturbed) result.
  const embedN = quick ? 64 : 128;
  const plan: Array<{ key: [string, string, string, number, number]; run: () => Promise<Measured> }> = [];
  // Stock and native rows alternate, so both see about the same neighbours' load.
  const gemms: Gemm[] = nativeGemm.ok ? ['stock', 'openblas'] : ['stock'];
  for (const [size, workers, batch] of [['paper', 1, PAPER_BATCH], ['paper', 2, PAPER_BATCH], ['small', 1, SMALL_BATCH], ['small', 2, SMALL_BATCH]] as const) {
    for (const g of gemms) plan.push({ key: ['train', size, label('wasm', g), workers, batch], run: () => measureTrain(size, 'wasm', g, workers, batch, STEPS) });
  }
  plan.push({ key: ['train', 'small', 'cpu', 1, 16], run: () => measureTrain('small', 'cpu', 'stock', 1, 16, 1) });
  for (const workers of [1, 2]) {
    const embedGemms: Gemm[] = nativeGemm.ok ? [...gemms, 'openblas-all'] : gemms;
    for (const g of embedGemms) plan.push({ key: ['embed', 'paper', label('wasm', g), workers, embedN], run: () => measureEmbed('wasm', g, workers, embedN) });
  }
  const best = new Map<number, Measured>();
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < plan.length; i++) {
      if (round > 0 && plan[i]!.key[2] === 'cpu') continue; // slow and not compared across workers
      const m = await plan[i]!.run();
      console.log(`  round ${round + 1}: ${plan[i]!.key.join(' ')} -> ${m.ups.toFixed(1)} users/s, ${m.cores.toFixed(2)} cores`);
      if (!best.has(i) || m.ups > best.get(i)!.ups) best.set(i, m);
    }
  }
  plan.forEach((p, i) => add(...p.key, best.get(i)!));
  // The paper's batch: once (a step takes a minute or more), after the rounds.
  let bigBatch: { chunkUsers: number; peakRssMiB: number; secondsPerStep: number; usersPerSec: number } | null = null;
  if (BIG_BATCH > 0) {
    const g: Gemm = nativeGemm.ok ? 'openblas' : 'stock';
    const m = await measureBigBatch(g, 2, BIG_BATCH);
    add('train', 'paper', label('wasm', g), 2, BIG_BATCH, m);
    bigBatch = { chunkUsers: m.chunkUsers, peakRssMiB: m.peakRssMiB, secondsPerStep: m.sps, usersPerSec: m.ups };
    console.log(`  paper batch ${BIG_BATCH}: chunks of ${m.chunkUsers} users per worker call, ${m.sps.toFixed(1)} s per step, process peak RSS ${m.peakRssMiB.toFixed(0)} MiB`);
  }

  const profiles: Record<string, Awaited<ReturnType<typeof profileStep>>> = {};
  for (const g of gemms) {
    const profile = await profileStep(quick ? 4 : 8, g);
    profiles[label('wasm', g)] = profile;
    console.log(`\nwhere a paper-size training step spends its time (${label('wasm', g)}, 1 thread):`);
    for (const p of profile.slice(0, 14)) console.log(`  ${p.kernel.padEnd(52)} ${String(p.calls).padStart(5)} calls ${p.ms.toFixed(0).padStart(7)} ms ${p.pct.toFixed(1).padStart(5)}%`);
    if (profile.length > 14) {
      const last = profile[profile.length - 1]!;
      console.log(`  ${last.kernel.padEnd(52)} ${''.padStart(11)} ${last.ms.toFixed(0).padStart(7)} ms ${last.pct.toFixed(1).padStart(5)}%`);
    }
  }

  const find = (w: string, s: string, b: string, k: number) => rows.find((r) => r.workload === w && r.size === s && r.backend === b && r.workers === k)!;
  const nb = 'wasm+openblas';
  const nativeRatios = nativeGemm.ok
    ? {
        nativeTrainPaperPctOfSgemm2: find('train', 'paper', nb, 2).pctOfSgemm2,
        nativeTrainPaperBestPctOfSgemm2: Math.max(find('train', 'paper', nb, 1).pctOfSgemm2, find('train', 'paper', nb, 2).pctOfSgemm2),
        nativeEmbedPaperPctOfSgemm2: find('embed', 'paper', nb, 2).pctOfSgemm2,
        nativeEmbedPaperBestPctOfSgemm2: Math.max(find('embed', 'paper', nb, 1).pctOfSgemm2, find('embed', 'paper', nb, 2).pctOfSgemm2),
        nativeTrainPaperPerCorePctOfSgemm: (100 * find('train', 'paper', nb, 2).gflopPerCoreSecond) / sgemm2.perCore,
        nativeEmbedPaperPerCorePctOfSgemm: (100 * find('embed', 'paper', nb, 2).gflopPerCoreSecond) / sgemm2.perCore,
        nativeVsStockTrainPaperW1: find('train', 'paper', nb, 1).usersPerSec / find('train', 'paper', 'wasm', 1).usersPerSec,
        nativeVsStockTrainPaperW2: find('train', 'paper', nb, 2).usersPerSec / find('train', 'paper', 'wasm', 2).usersPerSec,
        nativeVsStockTrainSmallW1: find('train', 'small', nb, 1).usersPerSec / find('train', 'small', 'wasm', 1).usersPerSec,
        nativeVsStockTrainSmallW2: find('train', 'small', nb, 2).usersPerSec / find('train', 'small', 'wasm', 2).usersPerSec,
        nativeVsStockEmbedW1: find('embed', 'paper', nb, 1).usersPerSec / find('embed', 'paper', 'wasm', 1).usersPerSec,
        nativeVsStockEmbedW2: find('embed', 'paper', nb, 2).usersPerSec / find('embed', 'paper', 'wasm', 2).usersPerSec,
        // The price of batch invariance: default (invariant) vs plain OpenBLAS calls for inference.
        invariantVsPlainEmbedW1: find('embed', 'paper', nb, 1).usersPerSec / find('embed', 'paper', `${nb}-all`, 1).usersPerSec,
        invariantVsPlainEmbedW2: find('embed', 'paper', nb, 2).usersPerSec / find('embed', 'paper', `${nb}-all`, 2).usersPerSec,
        nativePlainEmbedPaperBestPctOfSgemm2: Math.max(find('embed', 'paper', `${nb}-all`, 1).pctOfSgemm2, find('embed', 'paper', `${nb}-all`, 2).pctOfSgemm2),
        nativeMatmul1ThreadVsNumpy1Thread: nativeMm1 / sgemm1.wall,
      }
    : {};
  const ratios = {
    trainPaper2vs1: find('train', 'paper', 'wasm', 2).usersPerSec / find('train', 'paper', 'wasm', 1).usersPerSec,
    trainSmall2vs1: find('train', 'small', 'wasm', 2).usersPerSec / find('train', 'small', 'wasm', 1).usersPerSec,
    embed2vs1: find('embed', 'paper', 'wasm', 2).usersPerSec / find('embed', 'paper', 'wasm', 1).usersPerSec,
    trainSmallWasmVsCpu: find('train', 'small', 'wasm', 1).usersPerSec / find('train', 'small', 'cpu', 1).usersPerSec,
    trainPaperPctOfSgemm2: find('train', 'paper', 'wasm', 2).pctOfSgemm2,
    embedPaperPctOfSgemm2: find('embed', 'paper', 'wasm', 2).pctOfSgemm2,
    // Per CPU-second (independent of how many cores other jobs leave us): the efficiency of a
    // core's work, and how much of it survives splitting over 2 workers.
    trainPaperPerCorePctOfSgemm: (100 * find('train', 'paper', 'wasm', 2).gflopPerCoreSecond) / sgemm2.perCore,
    embedPaperPerCorePctOfSgemm: (100 * find('embed', 'paper', 'wasm', 2).gflopPerCoreSecond) / sgemm2.perCore,
    trainPaperPerCore2vs1: find('train', 'paper', 'wasm', 2).gflopPerCoreSecond / find('train', 'paper', 'wasm', 1).gflopPerCoreSecond,
    embedPerCore2vs1: find('embed', 'paper', 'wasm', 2).gflopPerCoreSecond / find('embed', 'paper', 'wasm', 1).gflopPerCoreSecond,
    ...nativeRatios,
  };
  console.log('\nratios:');
  for (const [k, v] of Object.entries(ratios)) console.log(`  ${k.padEnd(28)} ${v.toFixed(2)}`);
  const result = {
    when: new Date().toISOString(),
    machine: { ...machine, loadavgAtEnd: loadavg()[0] },
    settings: { apps: M, rounds: ROUNDS, paperBatch: PAPER_BATCH, bigBatch: BIG_BATCH, smallBatch: SMALL_BATCH, steps: STEPS, paper: PAPER, small: SMALL, seqLen: 25, retention: 50 },
    baseline: {
      sgemm2ThreadsGflops: sg2,
      sgemm1ThreadGflops: sgemm1.wall,
      sgemm2ThreadsGflopPerCoreSecond: sgemm2.perCore,
      sgemm1ThreadGflopPerCoreSecond: sgemm1.perCore,
      tfjsWasmMatmulGflops: wasmMm,
      nativeMatmul1ThreadGflops: nativeMm1,
      nativeMatmul2ThreadsGflops: nativeMm2,
    },
    nativeGemm: nativeGemm.ok ? { path: relative(join(dirname(fileURLToPath(import.meta.url)), '..'), nativeGemm.path), config: nativeGemm.addon.config() } : { skipped: nativeGemm.reason },
    rows,
    bigBatch,
    ratios,
    profile: profiles['wasm'],
    profileNative: profiles[nb],
    seconds: (performance.now() - started) / 1000,
  };
  const out = join(dirname(fileURLToPath(import.meta.url)), 'results');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'model-train.json'), `${JSON.stringify(result, null, 2)}\n`);
  console.log(`\nwrote bench/results/model-train.json (${result.seconds.toFixed(0)} s)`);
}

await main();
