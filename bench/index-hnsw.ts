// HNSW index benchmark: build time, memory and recall@10 vs QPS for several efSearch values on
// clustered 128-d vectors, against exact search measured in the same run (a naive JS scan, a
// blocked JS scan over a contiguous normalised matrix, and a blocked matrix product on the tfjs
// wasm SIMD backend), plus the same index built with a native-flags (-march=native) hnswlib.
//
//   npx tsx bench/index-hnsw.ts [--n 200000] [--queries 1000] [--native /tmp/hnswlib-native/build/Release/addon.node]
//
// Writes bench/results/index-hnsw.json.
import { mkdtempSync, rmSync, writeFileSync, readFileSync, mkdirSync, existsSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join, dirname } from 'node:path';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { EmbeddingStore } from '../src/store/store.js';
import { buildIndex } from '../src/index/build.js';
import { IndexHandle } from '../src/index/handle.js';
import { SearchPool } from '../src/index/pool.js';
import { makeClusteredVectors, exactTopK } from './_vectors.js';

const args = process.argv.slice(2);
const arg = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const N = Number(arg('n', '200000'));
const Q = Number(arg('queries', '1000'));
const DIM = 128;
const CLUSTERS = Number(arg('clusters', '1000'));
const EFS = arg('efs', '10,16,24,32,48,64,96,128,256').split(',').map(Number);
const M = Number(arg('m', '16'));
const EFC = Number(arg('ef-construction', '200'));
const NATIVE = arg('native', '/tmp/hnswlib-native/build/Release/addon.node');
const CHILD = args.includes('--child');
const OUT_NAME = `index-hnsw${args.includes('--tag') ? `-${arg('tag', '')}` : ''}.json`;
const here = dirname(fileURLToPath(import.meta.url));

// ------------------------------------------------------------------ data
const makeData = (n: number, seed: number): Float32Array => makeClusteredVectors(n, DIM, seed, CLUSTERS);
const uid = (i: number) => `u${String(i).padStart(8, '0')}`;

// ------------------------------------------------------------------ exact search
/** Naive: one query at a time over an array of separate vectors. */
function exactNaive(rows: Float32Array[], q: Float32Array, k: number): number[] {
  const best: [number, number][] = [];
  for (let i = 0; i < rows.length; i++) {
    const v = rows[i];
    let s = 0;
    for (let j = 0; j < DIM; j++) s += v[j] * q[j];
    if (best.length < k || s > best[best.length - 1][0]) {
      best.push([s, i]);
      best.sort((a, b) => b[0] - a[0]);
      if (best.length > k) best.pop();
    }
  }
  return best.map((b) => b[1]);
}

/** Blocked: B queries against each row of a contiguous normalised matrix (row stays in cache). */
const exactBlocked = (data: Float32Array, n: number, qs: Float32Array, nq: number, k: number): Int32Array => exactTopK(data, n, DIM, qs, nq, k);

async function wasmExact(data: Float32Array, n: number, qs: Float32Array, nq: number, k: number): Promise<{ ids: Int32Array; seconds: number; detail: string }> {
  const tf = await import('@tensorflow/tfjs-core');
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  const require = createRequire(import.meta.url);
  wasm.setWasmPaths(join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm')), '/'));
  await tf.setBackend('wasm');
  await tf.ready();
  const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
  const D = tf.tensor2d(data, [n, DIM]);
  const ids = new Int32Array(nq * k);
  const B = 64;
  // warm-up (compiles kernels, grows the wasm heap)
  tf.tidy(() => tf.topk(tf.matMul(tf.tensor2d(qs.subarray(0, B * DIM), [B, DIM]), D, false, true), k).indices.dataSync());
  const t0 = performance.now();
  for (let q0 = 0; q0 < nq; q0 += B) {
    const nb = Math.min(B, nq - q0);
    const idx = tf.tidy(() => tf.topk(tf.matMul(tf.tensor2d(qs.subarray(q0 * DIM, (q0 + nb) * DIM), [nb, DIM]), D, false, true), k).indices.dataSync());
    ids.set(idx as Int32Array, q0 * k);
  }
  const seconds = (performance.now() - t0) / 1000;
  D.dispose();
  return { ids, seconds, detail: `tfjs wasm ${simd ? 'SIMD' : 'no-SIMD'} matMul + topk, blocks of ${B} queries` };
}

// ------------------------------------------------------------------ HNSW sweep
interface SweepRow {
  ef: number;
  recall: number;
  qps: number;
  p50us: number;
  p99us: number;
}

function sweep(h: IndexHandle, qs: Float32Array, nq: number, truth: Int32Array, k: number): SweepRow[] {
  const rows: SweepRow[] = [];
  const qv = Array.from({ length: nq }, (_, i) => qs.subarray(i * DIM, (i + 1) * DIM));
  for (let i = 0; i < Math.min(200, nq); i++) h.search(qv[i], k, 64); // warm-up
  for (const ef of EFS) {
    let hit = 0;
    const lat: number[] = [];
    const t0 = performance.now();
    for (let i = 0; i < nq; i++) {
      const s = performance.now();
      const res = h.search(qv[i], k, ef);
      lat.push(performance.now() - s);
      const truthSet = new Set(Array.from(truth.subarray(i * k, (i + 1) * k), uid));
      for (const r of res) if (truthSet.has(r.userId)) hit++;
    }
    const secs = (performance.now() - t0) / 1000;
    lat.sort((a, b) => a - b);
    rows.push({ ef, recall: hit / (nq * k), qps: nq / secs, p50us: lat[Math.floor(nq * 0.5)] * 1000, p99us: lat[Math.floor(nq * 0.99)] * 1000 });
  }
  return rows;
}

const rssMB = () => process.memoryUsage().rss / 1e6;

// ------------------------------------------------------------------ child: native-flags build
async function child(): Promise<void> {
  const storeDir = arg('store', '');
  const gt = JSON.parse(readFileSync(arg('gt', ''), 'utf8')) as { truth: number[]; queriesSeed: number };
  const qs = makeData(Q, gt.queriesSeed);
  const store = EmbeddingStore.open(storeDir, { create: false });
  const rss0 = rssMB();
  const t0 = performance.now();
  await buildIndex(store, 'F', { m: M, efConstruction: EFC, efSearch: 64, silent: true });
  const buildS = (performance.now() - t0) / 1000;
  const rss1 = rssMB();
  const h = await IndexHandle.open(storeDir, 'F', { dim: DIM });
  const rows = sweep(h, qs, Q, Int32Array.from(gt.truth), 10);
  process.stdout.write(JSON.stringify({ buildS, buildRssMB: rss1 - rss0, rows }) + '\n');
  await store.close();
}

// ------------------------------------------------------------------ main
async function main(): Promise<void> {
  const started = Date.now();
  const work = mkdtempSync(join(tmpdir(), 'aetn-bench-index-'));
  const storeDir = join(work, 'store');
  console.log(`index bench: ${N} users x ${DIM}-d, ${CLUSTERS} Zipf-sized clusters, ${Q} held-out queries, M ${M}, efConstruction ${EFC}; ${cpus().length} cores (${cpus()[0]?.model})`);
  const data = makeData(N, 1);
  const qs = makeData(Q, 2);

  // store the vectors (the index is built from the store, as `aetn index` does)
  const store = EmbeddingStore.open(storeDir);
  store.registerFeature({ featureId: 'F', namespace: 'long', dim: DIM, variant: 'bench' });
  let t = performance.now();
  for (let i0 = 0; i0 < N; i0 += 20000) {
    const entries = [];
    for (let i = i0; i < Math.min(N, i0 + 20000); i++) entries.push({ userId: uid(i), vector: data.subarray(i * DIM, (i + 1) * DIM) });
    await store.putMany('F', entries);
  }
  const storeWriteS = (performance.now() - t) / 1000;
  console.log(`store write: ${(N / storeWriteS).toFixed(0)} vectors/s`);

  // exact search baselines
  const rows = Array.from({ length: N }, (_, i) => data.slice(i * DIM, (i + 1) * DIM));
  const nNaive = Math.min(Q, 40);
  t = performance.now();
  const naiveIds: number[][] = [];
  for (let i = 0; i < nNaive; i++) naiveIds.push(exactNaive(rows, qs.subarray(i * DIM, (i + 1) * DIM), 10));
  const naiveQps = nNaive / ((performance.now() - t) / 1000);
  console.log(`exact naive JS: ${naiveQps.toFixed(1)} QPS`);
  const nBlocked = Math.min(Q, 160);
  exactBlocked(data, N, qs, 16, 10); // warm-up / JIT
  t = performance.now();
  const blockedIds = exactBlocked(data, N, qs, nBlocked, 10);
  const blockedQps = nBlocked / ((performance.now() - t) / 1000);
  console.log(`exact blocked JS: ${blockedQps.toFixed(1)} QPS`);
  const wasm = await wasmExact(data, N, qs, Q, 10);
  const wasmQps = Q / wasm.seconds;
  console.log(`exact ${wasm.detail}: ${wasmQps.toFixed(1)} QPS`);
  const truth = wasm.ids;
  // the three exact searches must agree (float rounding may swap exact ties only)
  let agree = 0;
  let agreeN = 0;
  for (let i = 0; i < nBlocked; i++) {
    const a = new Set(truth.subarray(i * 10, i * 10 + 10));
    for (const x of blockedIds.subarray(i * 10, i * 10 + 10)) if (a.has(x)) agree++;
    if (i < nNaive) for (const x of naiveIds[i]) if (a.has(x)) agreeN++;
  }
  const exactAgreement = { blocked: agree / (nBlocked * 10), naive: agreeN / (nNaive * 10) };
  console.log(`exact agreement with wasm: blocked ${exactAgreement.blocked.toFixed(4)}, naive ${exactAgreement.naive.toFixed(4)}`);
  const bestExact = Math.max(naiveQps, blockedQps, wasmQps);

  // HNSW build (default addon)
  const rss0 = rssMB();
  t = performance.now();
  const manifest = await buildIndex(store, 'F', { m: M, efConstruction: EFC, efSearch: 64 });
  const buildS = (performance.now() - t) / 1000;
  const buildRss = rssMB() - rss0;
  console.log(`HNSW build: ${buildS.toFixed(1)} s, +${buildRss.toFixed(0)} MB RSS, file ${(manifest.files['index.hnsw'].bytes / 1e6).toFixed(1)} MB`);
  t = performance.now();
  const h = await IndexHandle.open(storeDir, 'F', { dim: DIM });
  const loadS = (performance.now() - t) / 1000;
  const def = sweep(h, qs, Q, truth, 10);

  // worker pool (2 threads), concurrent queries at the smallest ef reaching 0.99
  const pick = def.find((r) => r.recall >= 0.99) ?? def[def.length - 1];
  const pool = await SearchPool.open(storeDir, 'F', { threads: 2, dim: DIM });
  const qv = Array.from({ length: Q }, (_, i) => qs.slice(i * DIM, (i + 1) * DIM));
  await Promise.all(qv.slice(0, 100).map((q) => pool.search(q, 10, pick.ef)));
  t = performance.now();
  const reps = 3;
  for (let r = 0; r < reps; r++) await Promise.all(qv.map((q) => pool.search(q, 10, pick.ef)));
  const poolQps = (reps * Q) / ((performance.now() - t) / 1000);
  await pool.close();
  await store.close();
  console.log(`worker pool (2 threads) at ef ${pick.ef}: ${poolQps.toFixed(0)} QPS`);

  // native-flags build in a child process (a second hnswlib addon cannot be loaded beside the first)
  let native: { buildS: number; buildRssMB: number; rows: SweepRow[] } | undefined;
  if (existsSync(NATIVE) && !args.includes('--skip-native')) {
    const gtFile = join(work, 'gt.json');
    writeFileSync(gtFile, JSON.stringify({ truth: Array.from(truth), queriesSeed: 2 }));
    const r = spawnSync(process.execPath, ['--import', 'tsx', join(here, 'index-hnsw.ts'), '--child', '--store', storeDir, '--gt', gtFile, ...args], {
      env: { ...process.env, AETN_HNSWLIB_ADDON: NATIVE, AETN_PROGRESS: '0' },
      encoding: 'utf8',
      maxBuffer: 1 << 26,
    });
    if (r.status !== 0) console.log(`native child failed: ${r.stderr}`);
    else native = JSON.parse(r.stdout.trim().split('\n').pop()!) as typeof native;
  } else {
    console.log(`no native-flags addon at ${NATIVE}: skipped (build: see docs/parts/store-index.md)`);
  }

  // report
  const line = (cells: string[], w: number[]) => cells.map((c, i) => c.padStart(w[i])).join('  ');
  const w = [6, 8, 9, 12, 12, 9, 9];
  console.log('\nrecall@10 vs QPS (single thread, one query at a time)');
  console.log(line(['ef', 'recall', 'QPS', 'x naive', 'x best exact', 'p50 us', 'p99 us'], w) + (native ? '   native: recall   QPS  x best exact' : ''));
  for (let i = 0; i < def.length; i++) {
    const r = def[i];
    const nr = native?.rows[i];
    console.log(
      line([String(r.ef), r.recall.toFixed(4), r.qps.toFixed(0), (r.qps / naiveQps).toFixed(0), (r.qps / bestExact).toFixed(1), r.p50us.toFixed(0), r.p99us.toFixed(0)], w) +
        (nr ? `   ${nr.recall.toFixed(4).padStart(14)} ${nr.qps.toFixed(0).padStart(6)} ${(nr.qps / bestExact).toFixed(1).padStart(12)}` : ''),
    );
  }
  console.log(`\nexact search QPS: naive JS ${naiveQps.toFixed(1)}, blocked JS ${blockedQps.toFixed(1)}, ${wasm.detail} ${wasmQps.toFixed(1)}`);
  console.log(`build: default flags ${buildS.toFixed(1)} s` + (native ? `, -O3 -march=native ${native.buildS.toFixed(1)} s (x${(buildS / native.buildS).toFixed(2)})` : ''));
  const target = def.find((r) => r.recall >= 0.99 && r.qps >= 100 * bestExact);
  const nativeTarget = native?.rows.find((r) => r.recall >= 0.99 && r.qps >= 100 * bestExact);
  console.log(`target recall@10 >= 0.99 at >= 100x the best exact QPS: default ${target ? `met at ef ${target.ef}` : 'not met'}` + (native ? `, native ${nativeTarget ? `met at ef ${nativeTarget.ef}` : 'not met'}` : ''));
  console.log(`vs the naive JS scan: recall >= 0.99 first at ef ${pick.ef}: ${(pick.qps / naiveQps).toFixed(0)}x`);

  const result = {
    bench: 'index-hnsw',
    date: new Date().toISOString(),
    machine: { cores: cpus().length, cpu: cpus()[0]?.model, node: process.version },
    config: { n: N, dim: DIM, clusters: CLUSTERS, queries: Q, m: M, efConstruction: EFC },
    store: { writeVectorsPerS: N / storeWriteS },
    exact: { naiveQps, blockedQps, wasmQps, wasmDetail: wasm.detail, agreementWithWasm: exactAgreement, naiveQueries: nNaive, blockedQueries: nBlocked },
    hnsw: { buildS, buildRssMB: buildRss, loadS, fileMB: manifest.files['index.hnsw'].bytes / 1e6, labelsMB: manifest.files['labels.json'].bytes / 1e6, sweep: def, pool: { threads: 2, ef: pick.ef, qps: poolQps } },
    native: native ? { addon: NATIVE, ...native } : null,
    targetMet: { default: target?.ef ?? null, native: nativeTarget?.ef ?? null },
    wallS: (Date.now() - started) / 1000,
  };
  mkdirSync(join(here, 'results'), { recursive: true });
  writeFileSync(join(here, 'results', OUT_NAME), JSON.stringify(result, null, 2) + '\n');
  console.log(`\nwrote bench/results/${OUT_NAME} (${result.wallS.toFixed(0)} s)`);
  rmSync(work, { recursive: true, force: true });
}

if (CHILD) await child();
else await main();
