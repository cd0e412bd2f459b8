// gRPC serving benchmark, one run, ratios against baselines measured in the same run:
//   1. GetUserVector QPS and p50/p99 (ghz) vs a bare grpc-js server that answers the same method
//      with pre-encoded bytes (no auth, no decode, no store): the transport's ceiling here;
//      then latency at half of our max QPS.
//   2. BatchGetUserVectors with 100 users: users/s.
//   3. SearchNeighbors QPS at the smallest ef giving recall@10 >= 0.95 (recall measured over the
//      API against an exact scan of the same vectors).
//   4. ExtendLookalike latency, 1,000 seeds -> 10,000 users.
//
//   npx tsx bench/serve-grpc.ts [--users 200000] [--duration 8] [--fresh]
//
// The store and index are cached in .cache/bench-serve-<users> (built once; --fresh rebuilds).
// ghz is installed with `go install` on first use. Writes bench/results/serve-grpc.json.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { create, toBinary } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { EmbeddingStore } from '../src/store/store.js';
import { buildIndex } from '../src/index/build.js';
import { DEFAULTS } from '../src/config/config.js';
import { runServe } from '../services/serve.js';
import { createClient } from '../src/serve/client.js';
import { UserVectorService, GetUserVectorResponseSchema, VectorView } from '../src/gen/aetn/v1/user_vector_pb.js';
import { AudienceService, file_aetn_v1_audience } from '../src/gen/aetn/v1/audience_pb.js';
import { file_aetn_v1_user_vector } from '../src/gen/aetn/v1/user_vector_pb.js';
import { rng } from '../src/audience/linalg.js';
import { ensureGoTool, REPO_ROOT } from '../test/tools/go-tools.js';

const run = promisify(execFile);
const args = process.argv.slice(2);
const arg = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : def;
};
const N = Number(arg('users', '200000'));
const DUR = Number(arg('duration', '8'));
const DIM = 128;
const SHORT_DIM = 32;
const CLUSTERS = 500;
const KEY = 'bench-key-000001';
const LONG = 'aetn-bench';
const SHORT = 'rt-bench';
const cacheDir = join(REPO_ROOT, '.cache', `bench-serve-${N}`);
const storeDir = join(cacheDir, 'store');

function gauss(r: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

/** Clustered unit-ish vectors: user i belongs to cluster i % CLUSTERS. Regenerated identically on every run. */
function centres(): Float32Array[] {
  const r = rng(1);
  return Array.from({ length: CLUSTERS }, () => {
    const c = Float32Array.from({ length: DIM }, () => gauss(r));
    const n = Math.hypot(...c);
    return c.map((x) => x / n);
  });
}
function userVector(cs: Float32Array[], i: number, r: () => number): Float32Array {
  const c = cs[i % CLUSTERS]!;
  return Float32Array.from(c, (x) => x + (0.6 / Math.sqrt(DIM)) * gauss(r));
}

async function buildStore(): Promise<void> {
  if (args.includes('--fresh')) rmSync(cacheDir, { recursive: true, force: true });
  if (existsSync(join(cacheDir, 'READY'))) return;
  rmSync(cacheDir, { recursive: true, force: true });
  mkdirSync(cacheDir, { recursive: true });
  const t0 = performance.now();
  const store = EmbeddingStore.open(storeDir);
  store.registerFeature({ featureId: LONG, namespace: 'long', dim: DIM, variant: 'aetn', createdAtMs: 1 });
  store.registerFeature({ featureId: SHORT, namespace: 'short', dim: SHORT_DIM, variant: 'realtime', createdAtMs: 2, baseFeatureId: LONG });
  const cs = centres();
  const r = rng(2);
  for (let s = 0; s < N; s += 10_000) {
    const batch = [];
    const sb = [];
    for (let i = s; i < Math.min(N, s + 10_000); i++) {
      batch.push({ userId: `u${i}`, vector: userVector(cs, i, r) });
      if (i % 2 === 0) sb.push({ userId: `u${i}`, vector: Float32Array.from({ length: SHORT_DIM }, () => gauss(r)) });
    }
    await store.putMany(LONG, batch);
    await store.putMany(SHORT, sb);
  }
  const tw = performance.now();
  await buildIndex(store, LONG, { m: 16, efConstruction: 100, efSearch: 64 });
  const tb = performance.now();
  await store.close();
  writeFileSync(join(cacheDir, 'READY'), JSON.stringify({ writeS: (tw - t0) / 1000, indexBuildS: (tb - tw) / 1000 }));
  console.log(`store: ${N} users written in ${((tw - t0) / 1000).toFixed(1)} s, index built in ${((tb - tw) / 1000).toFixed(1)} s`);
}

interface Ghz {
  rps: number;
  count: number;
  p50ms: number;
  p99ms: number;
  errors: number;
  codes: Record<string, number>;
}

let ghzPath = '';
const protoset = join(cacheDir, 'aetn.protoset');

async function ghz(target: string, call: string, data: string, extra: string[], durS = DUR): Promise<Ghz> {
  const { stdout } = await run(
    ghzPath,
    ['--insecure', '--protoset', protoset, '--call', call, '-d', data, '-m', JSON.stringify({ 'x-api-key': KEY }), '-z', `${durS}s`, '--cpus', '1', '-O', 'json', ...extra, target],
    { maxBuffer: 64 * 1024 * 1024, timeout: (durS + 60) * 1000 },
  );
  const j = JSON.parse(stdout) as {
    rps: number;
    count: number;
    latencyDistribution: { percentage: number; latency: number }[] | null;
    statusCodeDistribution: Record<string, number>;
    errorDistribution?: Record<string, number>;
  };
  const pct = (p: number) => (j.latencyDistribution?.find((d) => d.percentage === p)?.latency ?? NaN) / 1e6;
  const errors = Object.entries(j.statusCodeDistribution).reduce((s, [k, v]) => s + (k === 'OK' ? 0 : v), 0);
  return { rps: j.rps, count: j.count, p50ms: pct(50), p99ms: pct(99), errors, codes: j.statusCodeDistribution };
}

/** A bare grpc-js server answering GetUserVector with fixed pre-encoded bytes: the transport ceiling. */
async function startEcho(answer: Buffer): Promise<{ address: string; close(): void }> {
  const server = new grpc.Server();
  const id = (b: Buffer) => b;
  server.addService(
    {
      getUserVector: {
        path: '/aetn.v1.UserVectorService/GetUserVector',
        requestStream: false,
        responseStream: false,
        requestSerialize: id,
        requestDeserialize: id,
        responseSerialize: id,
        responseDeserialize: id,
      },
    },
    { getUserVector: (_call: unknown, cb: grpc.sendUnaryData<Buffer>) => cb(null, answer) },
  );
  const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  return { address: `127.0.0.1:${port}`, close: () => server.forceShutdown() };
}

function exactTop10(all: Float32Array, n: number, q: Float32Array, self: number): number[] {
  // `all` holds unit rows; cosine = dot.
  const best: { i: number; s: number }[] = [];
  let min = -Infinity;
  for (let i = 0; i < n; i++) {
    if (i === self) continue;
    let s = 0;
    const o = i * DIM;
    for (let d = 0; d < DIM; d++) s += all[o + d]! * q[d]!;
    if (best.length < 10 || s > min) {
      best.push({ i, s });
      best.sort((a, b) => b.s - a.s);
      if (best.length > 10) best.pop();
      min = best[best.length - 1]!.s;
    }
  }
  return best.map((b) => b.i);
}

async function main(): Promise<void> {
  const t0 = performance.now();
  ghzPath = await ensureGoTool('ghz');
  await buildStore();
  const fds = create(FileDescriptorSetSchema, { file: [file_aetn_v1_user_vector.proto, file_aetn_v1_audience.proto] });
  writeFileSync(protoset, toBinary(FileDescriptorSetSchema, fds));

  const cfg = structuredClone(DEFAULTS);
  cfg.storeDir = storeDir;
  cfg.serve = { ...cfg.serve, port: 0, apiKeys: { [KEY]: ['vectors:read', 'audience:write'] } };
  cfg.metrics.port = null;
  const srv = await runServe(cfg, { searchThreads: 0 });
  const uv = createClient(UserVectorService, srv.server.address, { apiKey: KEY });
  const au = createClient(AudienceService, srv.server.address, { apiKey: KEY });
  const sample = await uv.getUserVector({ userId: 'u1', view: VectorView.COMBINED });
  const echo = await startEcho(Buffer.from(toBinary(GetUserVectorResponseSchema, sample)));
  const results: Record<string, unknown> = {};
  const getData = `{"user_id":"u{{randomInt 0 ${N}}}"}`;
  const conc = ['-c', '32', '--connections', '2'];

  // 1. GetUserVector vs echo (echo first and last, averaged, to cancel drift in machine load).
  await ghz(srv.server.address, 'aetn.v1.UserVectorService.GetUserVector', getData, ['-c', '8'], 2); // warm-up
  const e1 = await ghz(echo.address, 'aetn.v1.UserVectorService.GetUserVector', getData, conc);
  const ours = await ghz(srv.server.address, 'aetn.v1.UserVectorService.GetUserVector', getData, conc);
  const e2 = await ghz(echo.address, 'aetn.v1.UserVectorService.GetUserVector', getData, conc);
  const echoRps = (e1.rps + e2.rps) / 2;
  const half = Math.round(ours.rps / 2);
  const atHalf = await ghz(srv.server.address, 'aetn.v1.UserVectorService.GetUserVector', getData, ['-c', '32', '--connections', '2', '--rps', String(half)]);
  results.getUserVector = { echo: [e1, e2], ours, ratioToEcho: ours.rps / echoRps, atHalfMaxQps: { targetRps: half, ...atHalf } };

  // 2. BatchGetUserVectors, 100 users per call.
  const batchData = `{"user_ids":[${Array.from({ length: 100 }, () => `"u{{randomInt 0 ${N}}}"`).join(',')}]}`;
  const batch = await ghz(srv.server.address, 'aetn.v1.UserVectorService.BatchGetUserVectors', batchData, ['-c', '8', '--connections', '2']);
  results.batchGet100 = { ...batch, usersPerS: batch.rps * 100 };

  // 3. SearchNeighbors: recall@10 over the API vs exact, per ef; QPS at the chosen ef.
  const cs = centres();
  const r = rng(2);
  const all = new Float32Array(N * DIM);
  // Regenerate the stored vectors exactly (same PRNG sequence as buildStore).
  for (let s = 0; s < N; s += 10_000) {
    for (let i = s; i < Math.min(N, s + 10_000); i++) {
      const v = userVector(cs, i, r);
      const n = Math.hypot(...v);
      for (let d = 0; d < DIM; d++) all[i * DIM + d] = v[d]! / n;
      if (i % 2 === 0) for (let d = 0; d < SHORT_DIM; d++) gauss(r);
    }
  }
  const qr = rng(3);
  const queries = Array.from({ length: 100 }, () => Math.floor(qr() * N));
  const truth = queries.map((qi) => exactTop10(all, N, all.subarray(qi * DIM, qi * DIM + DIM), qi));
  const sweep: { ef: number; recall: number; qps?: number; p99ms?: number }[] = [];
  let chosen: number | undefined;
  for (const ef of [10, 16, 24, 32, 48, 64, 96, 128, 256]) {
    let hit = 0;
    for (let q = 0; q < queries.length; q++) {
      const res = await au.searchNeighbors({ query: { case: 'userId', value: `u${queries[q]}` }, k: 10, ef });
      const want = new Set(truth[q]!.map((i) => `u${i}`));
      hit += res.neighbors.filter((x) => want.has(x.userId)).length;
    }
    const recall = hit / (queries.length * 10);
    sweep.push({ ef, recall });
    if (recall >= 0.95) {
      chosen = ef;
      break;
    }
  }
  let searchQps: Ghz | undefined;
  if (chosen !== undefined) {
    searchQps = await ghz(srv.server.address, 'aetn.v1.AudienceService.SearchNeighbors', `{"user_id":"u{{randomInt 0 ${N}}}","k":10,"ef":${chosen}}`, conc);
    sweep[sweep.length - 1] = { ...sweep[sweep.length - 1]!, qps: searchQps.rps, p99ms: searchQps.p99ms };
  }
  results.searchNeighbors = { sweep, chosenEf: chosen, ghz: searchQps };

  // 4. ExtendLookalike: 1,000 seeds spread over 25 clusters (a multi-modal seed set) -> 10,000 users.
  const seedClusters = Array.from({ length: 25 }, (_, j) => j * 7);
  const seeds: string[] = [];
  for (let i = 0; seeds.length < 1000 && i < N; i++) {
    const c = seedClusters[i % 25]!;
    const u = c + CLUSTERS * Math.floor(i / 25);
    if (u < N) seeds.push(`u${u}`);
    else break;
  }
  // The seed clusters' other members are the ideal audience; it caps the attainable precision.
  const ideal = Math.min(1, (seedClusters.length * Math.floor(N / CLUSTERS) - seeds.length) / 10_000);
  const lat: number[] = [];
  let summary: unknown;
  let precision = 0;
  for (let rep = 0; rep < 5; rep++) {
    const t = performance.now();
    const users: string[] = [];
    for await (const m of au.extendLookalike({ seeds: { case: 'seedUsers', value: { userIds: seeds } }, audienceSize: 10_000 })) {
      if (m.message.case === 'chunk') for (const u of m.message.value.users) users.push(u.userId);
      else summary = m.message.value;
    }
    lat.push(performance.now() - t);
    precision = users.filter((u) => seedClusters.includes(Number(u.slice(1)) % CLUSTERS)).length / users.length;
  }
  lat.sort((a, b) => a - b);
  results.extendLookalike = { seeds: seeds.length, audience: 10_000, latencyMs: lat, p50ms: lat[2], maxMs: lat[4], shareInSeedClusters: precision, attainableShare: ideal, summary };

  echo.close();
  uv.close();
  au.close();
  await srv.stop();

  const g = results.getUserVector as { ours: Ghz; echo: Ghz[]; ratioToEcho: number; atHalfMaxQps: Ghz & { targetRps: number } };
  const rows: [string, string, string][] = [
    ['GetUserVector QPS (ours / bare echo)', `${g.ours.rps.toFixed(0)} / ${echoRps.toFixed(0)}`, `${(g.ratioToEcho * 100).toFixed(0)}% (target >= 70%)`],
    ['GetUserVector p50 / p99 at max', `${g.ours.p50ms.toFixed(2)} / ${g.ours.p99ms.toFixed(2)} ms`, `echo ${e1.p50ms.toFixed(2)} / ${e1.p99ms.toFixed(2)} ms`],
    [`GetUserVector p50 / p99 at ${g.atHalfMaxQps.targetRps} rps`, `${g.atHalfMaxQps.p50ms.toFixed(2)} / ${g.atHalfMaxQps.p99ms.toFixed(2)} ms`, 'target p99 < 5 ms'],
    ['BatchGet(100) users/s', `${(batch.rps * 100).toFixed(0)}`, `${batch.rps.toFixed(0)} calls/s, p99 ${batch.p99ms.toFixed(2)} ms`],
    [`SearchNeighbors QPS (ef ${chosen}, recall@10 ${sweep.at(-1)?.recall.toFixed(3)})`, `${searchQps?.rps.toFixed(0) ?? 'n/a'}`, `p99 ${searchQps?.p99ms.toFixed(2) ?? 'n/a'} ms`],
    [`ExtendLookalike ${seeds.length} -> 10000 p50 / max`, `${lat[2]!.toFixed(0)} / ${lat[4]!.toFixed(0)} ms`, `target < 500 ms; ${(precision * 100).toFixed(1)}% in seed clusters (attainable ${(ideal * 100).toFixed(1)}%)`],
  ];
  console.log(`\nserve-grpc: ${N} users x ${DIM}-d (+${SHORT_DIM}-d short), ${cpus().length} cores, ghz ${DUR}s per run\n`);
  const w0 = Math.max(...rows.map((x) => x[0].length));
  const w1 = Math.max(...rows.map((x) => x[1].length));
  for (const [a, b, c] of rows) console.log(`${a.padEnd(w0)}  ${b.padStart(w1)}  ${c}`);
  const out = {
    bench: 'serve-grpc',
    date: new Date().toISOString(),
    machine: { cores: cpus().length, cpu: cpus()[0]?.model, node: process.version },
    config: { users: N, dim: DIM, shortDim: SHORT_DIM, clusters: CLUSTERS, ghzDurationS: DUR, searchThreads: 0 },
    ...results,
    totalS: (performance.now() - t0) / 1000,
  };
  mkdirSync(join(REPO_ROOT, 'bench', 'results'), { recursive: true });
  writeFileSync(join(REPO_ROOT, 'bench', 'results', 'serve-grpc.json'), JSON.stringify(out, null, 2) + '\n');
}

await main();
