// Realtime head inference speed: users/s and per-batch latency for batches of 1, 100 and 1000 users,
// next to the raw matmul rate of the same tfjs backend measured in the same run (GFLOP/s ratio).
// The Kafka pipeline calls the head once per consumed batch for the users that batch touched, and
// needs >= 10,000 events/s on 2 cores: each touched user costs one head row, so users/s at the
// pipeline's batch size bounds the events/s the head allows (more when a batch touches a user twice).
// The second table compares the host forward (realtime-head-host.ts, loadHead's default) with the
// tfjs path (AETN_HEAD_HOST=0) on the same states: a "few events" mix (1-5 per user, like the Kafka
// stream bench) and a "full window" mix (maxEvents each). The load average is recorded with the
// numbers: on a shared machine the ratios are the stable part.
//
//   npx tsx bench/model-head.ts [--backend wasm|cpu] [--apps 5000] [--app-dim 512] [--seconds 3]
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/model/backend.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { RealtimeHead, defaultHeadConfig, encodeHeadBatch, type RecentEvents } from '../src/model/realtime-head.js';
import { saveHead } from '../src/model/head-checkpoint.js';
import { loadHead } from '../src/model/head-forward.js';
import { loadHeadPool } from '../src/model/head-pool.js';
import { HostHead } from '../src/model/realtime-head-host.js';
import { loadNativeGemm, nativeGemmSummary } from '../src/model/native-gemm.js';
import { loadavg } from 'node:os';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}

const backendName = arg('backend', 'wasm');
const M = Number(arg('apps', '5000'));
const dA = Number(arg('app-dim', '512'));
const seconds = Number(arg('seconds', '3'));

function makeUsers(n: number, nowMs: number, seed: number, maxEvents: number): RecentEvents[] {
  let s = seed >>> 0;
  const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296);
  return Array.from({ length: n }, () => {
    // Realistic mix: most users have a handful of recent events, some a full window.
    const k = rnd() < 0.3 ? maxEvents : 1 + Math.floor(rnd() * 12);
    let t = nowMs - rnd() * 30 * 86_400_000;
    const events = [];
    for (let i = 0; i < k; i++) {
      t += rnd() * (nowMs - t) * 0.3;
      events.push({ app: Math.floor(rnd() * M), type: (rnd() < 0.8 ? 1 : 2) as 1 | 2, timestampMs: t });
    }
    return { events };
  });
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

/** Times `fn` repeatedly for about `secs` seconds after a warm-up; returns per-call ms. */
function timeIt(fn: () => void, secs: number, minReps = 5): number[] {
  for (let i = 0; i < 3; i++) fn();
  const ms: number[] = [];
  const end = performance.now() + secs * 1000;
  while (performance.now() < end || ms.length < minReps) {
    const t0 = performance.now();
    fn();
    ms.push(performance.now() - t0);
  }
  return ms;
}

/** GFLOP/s of tf.matMul on this backend for [m,k]x[k,n]. */
function matmulRate(m: number, k: number, n: number, secs: number): number {
  const a = tf.randomNormal([m, k], 0, 1, 'float32', 1) as tf.Tensor2D;
  const b = tf.randomNormal([k, n], 0, 1, 'float32', 2) as tf.Tensor2D;
  const ms = timeIt(() => {
    const c = tf.matMul(a, b);
    c.dataSync();
    c.dispose();
  }, secs);
  a.dispose();
  b.dispose();
  return (2 * m * k * n) / (quantile(ms, 0.5) / 1000) / 1e9;
}

const loadAtStart = loadavg();
const info = await initBackend(backendName);
const cfg = defaultHeadConfig({ numApps: M, appDim: dA });
const appMatrix = new Float32Array(M * dA).map((_, i) => Math.sin(i * 0.37) * 0.1);
const head = new RealtimeHead(cfg, appMatrix, 1);
head.freeze();
const flopsPerUser = head.flopsPerUser();
const nowMs = Date.UTC(2026, 5, 1);

// Baselines: one large square matmul (what the backend can do at best) and one shaped like the
// head's biggest matmul at batch 1000 ([B*N, d] x [d, 3d]).
const peak = matmulRate(1024, 1024, 1024, seconds / 2);
const headShaped = matmulRate(1000 * cfg.maxEvents, cfg.dModel, 3 * cfg.dModel, seconds / 2);

interface Row {
  path: string;
  batch: number;
  p50Ms: number;
  p99Ms: number;
  usersPerSec: number;
  gflops: number;
  ofPeak: number;
  ofHeadShapedMatmul: number;
}
// The product path: a saved checkpoint served through loadHead, on the tfjs forward (groups users by
// event count; AETN_HEAD_HOST=0) and on the host forward (the default).
const tmp = mkdtempSync(join(tmpdir(), 'bench-head-'));
const vocab = { hash: 'bench', categories: ['c'], apps: Array.from({ length: M }, (_, i) => ({ index: i, appId: `a${i}`, category: 0, packages: [`p${i}`] })) };
await saveHead(join(tmp, 'rt'), head, { baseFeatureId: 'bench-aetn', vocab });
const served = await loadHead(join(tmp, 'rt'), { backend: backendName, forward: 'tfjs' });
const servedHost = await loadHead(join(tmp, 'rt'), { backend: backendName, forward: 'host' });
const rows: Row[] = [];
for (const path of ['full width', 'loadHead', 'host']) {
  for (const B of [1, 100, 1000]) {
    const users = makeUsers(B, nowMs, B, cfg.maxEvents);
    const run =
      path === 'loadHead'
        ? () => void served.embed(users, nowMs)
        : path === 'host'
          ? () => void servedHost.embed(users, nowMs)
          : () => {
            const batch = encodeHeadBatch(users, nowMs, cfg);
            const s = tf.tidy(() => head.forward(batch, false));
            const flat = s.dataSync() as Float32Array;
            s.dispose();
            for (let i = 0; i < B; i++) flat.slice(i * cfg.outDim, (i + 1) * cfg.outDim);
          };
    const ms = timeIt(run, seconds);
    const usersPerSec = (B * ms.length) / (ms.reduce((a, b) => a + b, 0) / 1000);
    // FLOPs counted at the full window for both paths: the grouped path's rate is "effective".
    const gflops = (usersPerSec * flopsPerUser) / 1e9;
    rows.push({ path, batch: B, p50Ms: quantile(ms, 0.5), p99Ms: quantile(ms, 0.99), usersPerSec, gflops, ofPeak: gflops / peak, ofHeadShapedMatmul: gflops / headShaped });
  }
}
served.dispose();
servedHost.dispose();

// Both cores: the same checkpoint on 2 worker threads (the pipeline's HeadFn may be async).
async function timeAsync(fn: () => Promise<unknown>, secs: number, minReps = 5): Promise<number[]> {
  for (let i = 0; i < 3; i++) await fn();
  const ms: number[] = [];
  const end = performance.now() + secs * 1000;
  while (performance.now() < end || ms.length < minReps) {
    const t0 = performance.now();
    await fn();
    ms.push(performance.now() - t0);
  }
  return ms;
}
for (const forward of ['tfjs', 'host'] as const) {
  const pool = await loadHeadPool(join(tmp, 'rt'), { backend: backendName, workers: 2, forward });
  for (const B of [1, 100, 1000]) {
    const users = makeUsers(B, nowMs, B, cfg.maxEvents);
    const ms = await timeAsync(() => pool.embed(users, nowMs), seconds);
    const usersPerSec = (B * ms.length) / (ms.reduce((a, b) => a + b, 0) / 1000);
    const gflops = (usersPerSec * flopsPerUser) / 1e9;
    const path = forward === 'tfjs' ? '2 workers' : '2w host';
    rows.push({ path, batch: B, p50Ms: quantile(ms, 0.5), p99Ms: quantile(ms, 0.99), usersPerSec, gflops, ofPeak: gflops / peak, ofHeadShapedMatmul: gflops / headShaped });
  }
  await pool.close();
}
rmSync(tmp, { recursive: true, force: true });

// Host forward vs the tfjs path on the same states, in this run. tfjs = loadHead's tfjs forward
// (grouped widths 8/16/32); host = HostHead with the native GEMM (loadHead's default when the addon
// loads) and with the JS GEMM (AETN_NATIVE_GEMM=0 or no addon).
function mixUsers(n: number, seed: number, mix: 'few' | 'full'): RecentEvents[] {
  let s = seed >>> 0;
  const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296);
  return Array.from({ length: n }, () => {
    const k = mix === 'few' ? 1 + Math.floor(rnd() * 5) : cfg.maxEvents;
    const events = Array.from({ length: k }, () => ({ app: Math.floor(rnd() * M), type: (rnd() < 0.8 ? 1 : 2) as 1 | 2, timestampMs: nowMs - rnd() * 7 * 86_400_000 }));
    return { events };
  });
}
interface VsRow {
  mix: 'few' | 'full';
  batch: number;
  tfjsUsersPerSec: number;
  hostNativeUsersPerSec: number | null;
  hostJsUsersPerSec: number;
  hostNativeVsTfjs: number | null;
  hostJsVsTfjs: number;
  maxAbsDiffHostVsTfjs: number;
}
const vsRows: VsRow[] = [];
const native = loadNativeGemm();
const hostNative = native.ok ? new HostHead(head, { gemm: 'native' }) : null;
const hostJs = new HostHead(head, { gemm: 'js' });
const tfjsServed = await (async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bench-head-vs-'));
  await saveHead(join(dir, 'rt'), head, { baseFeatureId: 'bench-aetn', vocab });
  const h = await loadHead(join(dir, 'rt'), { backend: backendName, forward: 'tfjs' });
  rmSync(dir, { recursive: true, force: true });
  return h;
})();
const rate = (B: number, ms: number[]) => (B * ms.length) / (ms.reduce((a, b) => a + b, 0) / 1000);
for (const mix of ['few', 'full'] as const) {
  for (const B of [1, 100, 1000]) {
    const users = mixUsers(B, 1000 + B, mix);
    const t = rate(B, timeIt(() => void tfjsServed.embed(users, nowMs), seconds));
    const n = hostNative ? rate(B, timeIt(() => void hostNative.embed(users, nowMs), seconds)) : null;
    const j = rate(B, timeIt(() => void hostJs.embed(users, nowMs), seconds));
    const want = tfjsServed.embed(users, nowMs);
    const got = (hostNative ?? hostJs).embed(users, nowMs);
    let diff = 0;
    got.forEach((v, i) => v.forEach((x, c) => (diff = Math.max(diff, Math.abs(x - want[i]![c]!)))));
    vsRows.push({ mix, batch: B, tfjsUsersPerSec: t, hostNativeUsersPerSec: n, hostJsUsersPerSec: j, hostNativeVsTfjs: n === null ? null : n / t, hostJsVsTfjs: j / t, maxAbsDiffHostVsTfjs: diff });
  }
}
tfjsServed.dispose();
const loadAtEnd = loadavg();

const pad = (s: string | number, n: number) => String(s).padStart(n);
console.log(`\nRealtime head inference on ${info.detail}: d ${cfg.dModel}, ${cfg.heads} heads, ${cfg.layers} layer, FFN ${cfg.dFf}, N ${cfg.maxEvents} events, out ${cfg.outDim}; M ${M}, d_aetn ${dA}`);
console.log(`${(flopsPerUser / 1e6).toFixed(2)} MFLOP per user (full window of ${cfg.maxEvents}; padding is computed too)`);
console.log(`baseline tf.matMul on the same backend: 1024^3 ${peak.toFixed(1)} GFLOP/s; head-shaped [${1000 * cfg.maxEvents}x${cfg.dModel}]x[${cfg.dModel}x${3 * cfg.dModel}] ${headShaped.toFixed(1)} GFLOP/s\n`);
console.log(`${pad('path', 10)} ${pad('batch', 6)} ${pad('p50 ms', 9)} ${pad('p99 ms', 9)} ${pad('users/s', 10)} ${pad('GFLOP/s', 8)} ${pad('% matmul', 9)} ${pad('% shaped', 9)}`);
for (const r of rows) {
  console.log(
    `${pad(r.path, 10)} ${pad(r.batch, 6)} ${pad(r.p50Ms.toFixed(2), 9)} ${pad(r.p99Ms.toFixed(2), 9)} ${pad(Math.round(r.usersPerSec), 10)} ${pad(r.gflops.toFixed(2), 8)} ${pad((100 * r.ofPeak).toFixed(1), 9)} ${pad((100 * r.ofHeadShapedMatmul).toFixed(1), 9)}`,
  );
}
console.log('(GFLOP/s counts every user at the full window, so the loadHead and host rows are an effective rate; loadHead = tfjs forward, host = host forward)');
const r100 = rows.find((r) => r.batch === 100 && r.path === 'loadHead')!;
const r1000 = rows.find((r) => r.batch === 1000 && r.path === 'loadHead')!;
const p1000 = rows.find((r) => r.batch === 1000 && r.path === '2 workers')!;
console.log(`\nbatch of 100 users: ${r100.p50Ms.toFixed(1)} ms p50; at batch 1000 the head allows ${Math.round(r1000.usersPerSec)} touched users/s on one thread, ${Math.round(p1000.usersPerSec)} on 2 workers (x${(p1000.usersPerSec / r1000.usersPerSec).toFixed(2)}); target 10,000 events/s on 2 cores`);

console.log(`\nhost forward vs tfjs path on the same states (users/s; native GEMM: ${nativeGemmSummary() ?? 'not loaded'})`);
console.log(`${pad('mix', 5)} ${pad('batch', 6)} ${pad('tfjs', 9)} ${pad('host', 9)} ${pad('x tfjs', 7)} ${pad('host js', 9)} ${pad('x tfjs', 7)} ${pad('max diff', 9)}`);
for (const r of vsRows) {
  console.log(
    `${pad(r.mix, 5)} ${pad(r.batch, 6)} ${pad(Math.round(r.tfjsUsersPerSec), 9)} ${pad(r.hostNativeUsersPerSec === null ? '-' : Math.round(r.hostNativeUsersPerSec), 9)} ${pad(r.hostNativeVsTfjs === null ? '-' : r.hostNativeVsTfjs.toFixed(1), 7)} ${pad(Math.round(r.hostJsUsersPerSec), 9)} ${pad(r.hostJsVsTfjs.toFixed(1), 7)} ${pad(r.maxAbsDiffHostVsTfjs.toExponential(1), 9)}`,
  );
}
const fmtLoad = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ');
console.log(`load average (1/5/15 min): ${fmtLoad(loadAtStart)} at start, ${fmtLoad(loadAtEnd)} at the end, ${(await import('node:os')).cpus().length} cores`);

const here = dirname(fileURLToPath(import.meta.url));
mkdirSync(join(here, 'results'), { recursive: true });
const out = join(here, 'results', `model-head${backendName === 'wasm' ? '' : `-${backendName}`}.json`);
writeFileSync(
  out,
  `${JSON.stringify({ backend: info.detail, config: cfg, numApps: M, appDim: dA, flopsPerUser, baseline: { matmul1024Gflops: peak, headShapedMatmulGflops: headShaped }, rows, hostVsTfjs: { nativeGemm: nativeGemmSummary() ?? null, rows: vsRows }, measuredAt: new Date().toISOString(), host: { cpus: (await import('node:os')).cpus().length, loadAvgStart: loadAtStart, loadAvgEnd: loadAtEnd } }, null, 2)}\n`,
);
console.log(`results: ${out}`);
head.dispose();
