// Distributed engine benchmark: the candidates for running aetn on more than one machine, each on the
// same synthetic user vectors (bench/_vectors.ts, the generator of bench/index-hnsw.ts) and scored
// against exact search computed in the same run:
//   - cassandra     Apache Cassandra 5.0 (jars from Maven Central): a vector<float, d> column with a
//                   storage-attached (SAI) ANN index, queried with ORDER BY ... ANN OF ... LIMIT 10;
//   - replica-hnsw  the fallback: the engine (Cassandra) only holds the vectors and every serving
//                   replica reads them all and builds its own hnswlib index (the embedded mode's index);
//   - weaviate      Weaviate (built from its Go module): an HNSW vector index per class.
// For each: load time (and index build), recall@10 vs exact, one-client latency p50/p99, concurrent
// QPS, the engine's resident memory and data on disk. One engine node each: the figures are per node.
//
//   bench/engines/setup.sh .cache/engines          # once: fetch Cassandra, build Weaviate, the CQL client
//   npx tsx bench/engine-ann.ts [--n 100000] [--dim 64] [--queries 500] [--only cassandra,replica-hnsw,weaviate]
//                               [--engines .cache/engines] [--tag 100k] [--concurrency 16] [--skip-rebuild]
//                               [--cassandra-options optimize_for=RECALL]
//
// Writes bench/results/engine-ann[-TAG].json. Engines not fetched are reported as skipped.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from 'node:net';
import { makeClusteredVectors, exactTopK } from './_vectors.js';
import { hnswlib } from '../src/index/hnswlib.js';

const args = process.argv.slice(2);
const arg = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const N = Number(arg('n', '100000'));
const DIM = Number(arg('dim', '64'));
const Q = Number(arg('queries', '500'));
const K = 10;
const CONC = Number(arg('concurrency', '16'));
const ONLY = arg('only', 'cassandra,replica-hnsw,weaviate').split(',');
const here = dirname(fileURLToPath(import.meta.url));
const ENG = resolve(arg('engines', join(here, '..', '.cache', 'engines')));
const TAG = arg('tag', '');
const EFS = arg('efs', '16,32,64,128,256').split(',').map(Number);
if (!Number.isInteger(N) || N < 1000) throw new Error(`--n must be an integer >= 1000 (got ${arg('n', '')})`);
if (!Number.isInteger(DIM) || DIM % 4 !== 0) throw new Error(`--dim must be a multiple of 4 (got ${arg('dim', '')})`);

const uid = (i: number) => `u${String(i).padStart(8, '0')}`;
const rowOf = (u: string) => Number(u.slice(1));
const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function rssMB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}
function duMB(dir: string): number {
  const r = spawnSync('du', ['-sk', dir], { encoding: 'utf8' });
  return r.status === 0 ? Number(r.stdout.split('\t')[0]) / 1024 : NaN;
}
async function waitPort(port: number, host: string, timeoutMs: number, proc: ChildProcess, what: string): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`${what} exited with ${proc.exitCode} before listening`);
    const ok = await new Promise<boolean>((res) => {
      const s = connect(port, host, () => (s.end(), res(true)));
      s.on('error', () => res(false));
    });
    if (ok) return;
    if (Date.now() - t0 > timeoutMs) throw new Error(`${what} did not listen on ${host}:${port} within ${timeoutMs / 1000} s`);
    await sleep(1000);
  }
}
function stop(proc: ChildProcess): Promise<void> {
  return new Promise((res) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return res();
    proc.once('exit', () => res());
    proc.kill('SIGTERM');
    setTimeout(() => proc.kill('SIGKILL'), 20000).unref();
  });
}
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))];
};
function recallOf(results: string[][], truth: Int32Array): number {
  let hit = 0;
  results.forEach((res, i) => {
    const t = new Set(truth.subarray(i * K, (i + 1) * K));
    for (const u of res) if (t.has(rowOf(u))) hit++;
  });
  return hit / (results.length * K);
}

/** One client issuing queries one after another (latency), then CONC at a time (throughput). */
async function measureQueries(run: (qi: number) => Promise<string[]>): Promise<{ recall: number; p50ms: number; p99ms: number; qps1: number; qps: number }> {
  for (let i = 0; i < Math.min(50, Q); i++) await run(i); // warm-up
  const lat: number[] = [];
  const results: string[][] = [];
  let t = performance.now();
  for (let i = 0; i < Q; i++) {
    const s = performance.now();
    results.push(await run(i));
    lat.push(performance.now() - s);
  }
  const qps1 = Q / ((performance.now() - t) / 1000);
  t = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: CONC }, async () => {
      while (next < Q) await run(next++);
    }),
  );
  const qps = Q / ((performance.now() - t) / 1000);
  return { recall: recallOf(results, truth), p50ms: pct(lat, 0.5), p99ms: pct(lat, 0.99), qps1, qps };
}

// ------------------------------------------------------------------ data and exact truth
console.log(`engine bench: ${N} users x ${DIM}-d, ${Q} held-out queries, k ${K}; ${cpus().length} cores (${cpus()[0]?.model}); load ${load()}`);
const data = makeClusteredVectors(N, DIM, 1);
const qs = makeClusteredVectors(Q, DIM, 2);
const qv = Array.from({ length: Q }, (_, i) => Array.from(qs.subarray(i * DIM, (i + 1) * DIM)));
let t0 = performance.now();
const truth = exactTopK(data, N, DIM, qs, Q, K);
const exactQps = Q / ((performance.now() - t0) / 1000);
console.log(`exact search (blocked JS scan): ${exactQps.toFixed(1)} QPS`);

const results: Record<string, unknown> = {};
const work = mkdtempSync(join(tmpdir(), 'aetn-bench-engine-'));
const procs: ChildProcess[] = [];
process.on('exit', () => procs.forEach((p) => p.exitCode === null && p.kill('SIGKILL')));

// ------------------------------------------------------------------ Cassandra (+ the replica-hnsw fallback)
interface CqlRow {
  get(name: string): unknown;
}
interface CqlClient {
  connect(): Promise<void>;
  execute(q: string, p?: unknown[], o?: object): Promise<{ rows: CqlRow[]; pageState?: string | null }>;
  shutdown(): Promise<void>;
}

async function cassandraBench(): Promise<void> {
  const lib = join(ENG, 'cassandra', 'lib');
  const driverDir = join(ENG, 'node', 'node_modules', 'cassandra-driver');
  if (!existsSync(lib) || !existsSync(driverDir)) {
    results.cassandra = results['replica-hnsw'] = { skipped: `no Cassandra jars or cassandra-driver under ${ENG}: run bench/engines/setup.sh ${ENG}` };
    console.log(`cassandra: skipped (${(results.cassandra as { skipped: string }).skipped})`);
    return;
  }
  const cass = createRequire(join(ENG, 'node', 'package.json'))('cassandra-driver') as {
    Client: new (o: object) => CqlClient;
    concurrent: { executeConcurrent(c: CqlClient, q: string, p: unknown[][], o: object): Promise<unknown> };
    types: { Vector: new (e: Float32Array, sub: string) => unknown };
  };
  const nodeDir = join(work, 'cassandra-node');
  const heap = arg('cassandra-heap', '2G');
  const port = Number(arg('cassandra-port', '9142'));
  const t = performance.now();
  const proc = spawn('nice', ['-n', '15', join(here, 'engines', 'cassandra-node.sh'), ENG, nodeDir, '127.0.0.1', '127.0.0.1:7000', String(port), heap], { stdio: 'ignore' });
  procs.push(proc);
  await waitPort(port, '127.0.0.1', 240000, proc, 'cassandra');
  const startS = (performance.now() - t) / 1000;
  const javaPid = Number(spawnSync('pgrep', ['-P', String(proc.pid)], { encoding: 'utf8' }).stdout.trim().split('\n')[0]) || proc.pid!;
  console.log(`cassandra: node up in ${startS.toFixed(0)} s (heap ${heap}, RSS ${rssMB(javaPid).toFixed(0)} MB)`);
  const client = new cass.Client({ contactPoints: [`127.0.0.1:${port}`], localDataCenter: 'datacenter1', socketOptions: { readTimeout: 60000 } });
  await client.connect();
  try {
    await cassandraRun(port, cass, client, proc, javaPid, nodeDir, heap, startS);
  } finally {
    await client.shutdown().catch(() => undefined);
    await stop(proc);
  }
}

async function cassandraRun(
  port: number,
  cass: { concurrent: { executeConcurrent(c: CqlClient, q: string, p: unknown[][], o: object): Promise<unknown> }; types: { Vector: new (e: Float32Array, sub: string) => unknown } },
  client: CqlClient,
  proc: ChildProcess,
  javaPid: number,
  nodeDir: string,
  heap: string,
  startS: number,
): Promise<void> {
  await client.execute(`CREATE KEYSPACE aetn_bench WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`);
  await client.execute(`CREATE TABLE aetn_bench.vec (user_id text PRIMARY KEY, v vector<float, ${DIM}>)`);
  // --cassandra-options k=v,...: more SAI vector index options (5.0: maximum_node_connections
  // (default 16), construction_beam_width (100), optimize_for (LATENCY or RECALL)).
  const extra = arg('cassandra-options', '')
    .split(',')
    .filter(Boolean)
    .map((kv) => {
      const [k, v] = kv.split('=');
      if (!/^[a-z_]+$/.test(k) || !/^[A-Za-z0-9_]+$/.test(v ?? '')) throw new Error(`--cassandra-options: bad entry ${kv} (want key=value)`);
      return `, '${k}': '${v}'`;
    })
    .join('');
  const createIndex = `CREATE CUSTOM INDEX vec_ann ON aetn_bench.vec(v) USING 'StorageAttachedIndex' WITH OPTIONS = {'similarity_function': 'DOT_PRODUCT'${extra}}`;
  await client.execute(createIndex);
  // load with the index present (the way the batch embed and the realtime path would write)
  const params: unknown[][] = [];
  for (let i = 0; i < N; i++) params.push([uid(i), new cass.types.Vector(data.slice(i * DIM, (i + 1) * DIM), 'float')]);
  let s = performance.now();
  // Cassandra 5.0's vector index (jvector) fails writes when more requests insert into one table's
  // in-memory graph at once than its thread pool allows (observed: 3 on a 2-core node), so the
  // writers are capped; --insert-concurrency raises it on larger nodes.
  const insertConc = Number(arg('insert-concurrency', '2'));
  await cass.concurrent.executeConcurrent(client, 'INSERT INTO aetn_bench.vec (user_id, v) VALUES (?, ?)', params, { prepare: true, concurrencyLevel: insertConc });
  const loadS = (performance.now() - s) / 1000;
  console.log(`cassandra: loaded ${N} vectors with the SAI index in ${loadS.toFixed(1)} s (${(N / loadS).toFixed(0)}/s), load ${load()}`);
  // the same rows into a table without the vector index (what short-term vectors and realtime
  // state would cost), at the driver's usual concurrency
  await client.execute(`CREATE TABLE aetn_bench.plain (user_id text PRIMARY KEY, v vector<float, ${DIM}>)`);
  s = performance.now();
  await cass.concurrent.executeConcurrent(client, 'INSERT INTO aetn_bench.plain (user_id, v) VALUES (?, ?)', params, { prepare: true, concurrencyLevel: 32 });
  const plainS = (performance.now() - s) / 1000;
  console.log(`cassandra: the same ${N} rows without the vector index, 32 in flight: ${(N / plainS).toFixed(0)}/s`);
  await client.execute('DROP TABLE aetn_bench.plain');
  const annCql = `SELECT user_id FROM aetn_bench.vec ORDER BY v ANN OF ? LIMIT ${K}`;
  const ann = async (qi: number) => (await client.execute(annCql, [new cass.types.Vector(Float32Array.from(qv[qi]), 'float')], { prepare: true })).rows.map((r) => String(r.get('user_id')));
  const quiet = async () => {
    // wait for flushes and compactions to finish (the node's own task view), at most 10 min
    const w = performance.now();
    for (;;) {
      const tasks = (await client.execute('SELECT * FROM system_views.sstable_tasks')).rows.length;
      if (tasks === 0 || performance.now() - w > 600000) return (performance.now() - w) / 1000;
      await sleep(2000);
    }
  };
  // first from the memtable's in-memory graph, then flushed to disk (one SSTable and its on-disk
  // graph) and compacted: the state a node serves from most of the time
  const qMem = await measureQueries(ann);
  console.log(`cassandra: in memory: recall@10 ${qMem.recall.toFixed(4)}, 1 client ${qMem.qps1.toFixed(0)} QPS p50 ${qMem.p50ms.toFixed(2)} ms p99 ${qMem.p99ms.toFixed(2)} ms, ${CONC} concurrent ${qMem.qps.toFixed(0)} QPS`);
  s = performance.now();
  const nt = spawnSync(join(here, 'engines', 'nodetool.sh'), [ENG, String(port + 100), 'flush', 'aetn_bench'], { encoding: 'utf8' });
  if (nt.status !== 0) throw new Error(`nodetool flush failed: ${nt.stderr}`);
  const settleS = (performance.now() - s) / 1000 + (await quiet());
  const q = await measureQueries(ann);
  const rss = rssMB(javaPid);
  console.log(`cassandra: flushed + compacted in ${settleS.toFixed(0)} s; recall@10 ${q.recall.toFixed(4)}, 1 client ${q.qps1.toFixed(0)} QPS p50 ${q.p50ms.toFixed(2)} ms p99 ${q.p99ms.toFixed(2)} ms, ${CONC} concurrent ${q.qps.toFixed(0)} QPS; RSS ${rss.toFixed(0)} MB, disk ${duMB(join(nodeDir, 'data')).toFixed(0)} MB; load ${load()}`);
  // rebuild the index over data already on disk (a new index on an existing table)
  let rebuildS = NaN;
  if (!args.includes('--skip-rebuild')) {
    await client.execute('DROP INDEX aetn_bench.vec_ann');
    s = performance.now();
    await client.execute(createIndex);
    for (;;) {
      try {
        await ann(0);
        rebuildS = (performance.now() - s) / 1000;
        break;
      } catch (e) {
        if (performance.now() - s > 1200000) throw e;
        await sleep(1000);
      }
    }
    console.log(`cassandra: index rebuilt over ${N} stored vectors in ${rebuildS.toFixed(1)} s`);
  }
  results.cassandra = {
    version: '5.0 (cassandra-all from Maven Central, jvector SAI)',
    heap,
    indexOptions: createIndex.slice(createIndex.indexOf('{')),
    startS,
    loadWithIndexS: loadS,
    loadRowsPerS: N / loadS,
    insertConcurrency: insertConc,
    loadNoIndexRowsPerS: N / plainS,
    settleS,
    indexRebuildS: rebuildS,
    rssMB: rss,
    diskMB: duMB(join(nodeDir, 'data')),
    ...q,
    inMemtable: qMem,
    loadAvgAfter: load(),
  };

  // ---- the fallback: the replica reads every vector from the engine and builds its own hnswlib index
  if (ONLY.includes('replica-hnsw')) {
    s = performance.now();
    const got: [string, Float32Array][] = [];
    const parts = 8;
    const lo = -(2n ** 63n);
    const step = (2n ** 64n - 1n) / BigInt(parts);
    await Promise.all(
      Array.from({ length: parts }, async (_, p) => {
        const a = lo + step * BigInt(p);
        const b = p === parts - 1 ? 2n ** 63n - 1n : a + step;
        const cql = `SELECT user_id, v FROM aetn_bench.vec WHERE token(user_id) ${p === 0 ? '>=' : '>'} ${a} AND token(user_id) <= ${b}`;
        let pageState: string | undefined;
        do {
          const r = await client.execute(cql, [], { prepare: true, fetchSize: 5000, pageState });
          for (const row of r.rows) got.push([String(row.get('user_id')), Float32Array.from((row.get('v') as { elements: ArrayLike<number> }).elements)]);
          pageState = r.pageState ?? undefined;
        } while (pageState);
      }),
    );
    const readS = (performance.now() - s) / 1000;
    if (got.length !== N) throw new Error(`replica-hnsw: read ${got.length} vectors, expected ${N}`);
    const rss0 = process.memoryUsage().rss;
    s = performance.now();
    const index = new (hnswlib().HierarchicalNSW)('cosine', DIM);
    index.initIndex({ maxElements: N, m: 16, efConstruction: 200, randomSeed: 100 });
    const labels: string[] = [];
    for (const [u, v] of got) {
      index.addPoint(Array.from(v), labels.length);
      labels.push(u);
    }
    const buildS = (performance.now() - s) / 1000;
    const idxFile = join(work, 'replica.hnsw');
    index.writeIndexSync(idxFile);
    const fileMB = duMB(idxFile);
    const buildRssMB = (process.memoryUsage().rss - rss0) / 1e6;
    console.log(`replica-hnsw: read ${N} vectors from Cassandra in ${readS.toFixed(1)} s (${(N / readS).toFixed(0)}/s), hnswlib build (M 16, efConstruction 200) ${buildS.toFixed(1)} s, index ${fileMB.toFixed(0)} MB; load ${load()}`);
    const sweep = [];
    for (const ef of EFS) {
      index.setEf(ef);
      const r = await measureQueries(async (qi) => index.searchKnn(qv[qi], K).neighbors.map((l) => labels[l]));
      sweep.push({ ef, ...r });
      console.log(`replica-hnsw: ef ${ef}: recall@10 ${r.recall.toFixed(4)}, ${r.qps1.toFixed(0)} QPS, p50 ${(r.p50ms * 1000).toFixed(0)} us, p99 ${(r.p99ms * 1000).toFixed(0)} us`);
    }
    results['replica-hnsw'] = { engine: 'cassandra', readS, readRowsPerS: N / readS, buildS, indexMB: fileMB, buildRssMB, m: 16, efConstruction: 200, sweep, note: 'in-process search: QPS is one thread, no network hop' };
  }
  void proc;
}

// ------------------------------------------------------------------ Weaviate
async function weaviateBench(): Promise<void> {
  const bin = join(ENG, 'weaviate-server');
  if (!existsSync(bin)) {
    results.weaviate = { skipped: `no ${bin}: run bench/engines/setup.sh ${ENG}` };
    console.log(`weaviate: skipped (no binary)`);
    return;
  }
  const port = Number(arg('weaviate-port', '8089'));
  const base = `http://127.0.0.1:${port}`;
  const dataDir = join(work, 'weaviate');
  mkdirSync(dataDir, { recursive: true });
  const env = {
    ...process.env,
    PERSISTENCE_DATA_PATH: dataDir,
    AUTHENTICATION_ANONYMOUS_ACCESS_ENABLED: 'true',
    DEFAULT_VECTORIZER_MODULE: 'none',
    ENABLE_MODULES: '',
    CLUSTER_HOSTNAME: 'node1',
    CLUSTER_ADVERTISE_ADDR: '127.0.0.1',
    CLUSTER_GOSSIP_BIND_PORT: '7946',
    CLUSTER_DATA_BIND_PORT: '7947',
    RAFT_PORT: '8300',
    RAFT_INTERNAL_RPC_PORT: '8301',
    RAFT_BOOTSTRAP_EXPECT: '1',
    GRPC_PORT: String(port + 1),
    DISABLE_TELEMETRY: 'true',
    QUERY_DEFAULTS_LIMIT: '10',
    LOG_LEVEL: 'warning',
  };
  let t = performance.now();
  const proc = spawn('nice', ['-n', '15', bin, '--host', '127.0.0.1', '--port', String(port), '--scheme', 'http'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr = (stderr + d).slice(-4000)));
  procs.push(proc);
  const api = async (method: string, path: string, body?: unknown) => {
    const r = await fetch(base + path, { method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    if (!r.ok) throw new Error(`weaviate ${method} ${path}: ${r.status} ${text.slice(0, 500)}`);
    return text ? JSON.parse(text) : null;
  };
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`weaviate exited with ${proc.exitCode}: ${stderr}`);
    const ok = await fetch(`${base}/v1/.well-known/ready`).then((r) => r.ok, () => false);
    if (ok) break;
    if (performance.now() - t > 240000) throw new Error('weaviate not ready within 240 s');
    await sleep(1000);
  }
  const startS = (performance.now() - t) / 1000;
  const pid = proc.pid!;
  const wvPid = Number(spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' }).stdout.trim().split('\n')[0]) || pid;
  console.log(`weaviate: up in ${startS.toFixed(0)} s`);
  await api('POST', '/v1/schema', {
    class: 'Vec',
    vectorizer: 'none',
    vectorIndexType: 'hnsw',
    vectorIndexConfig: { distance: 'dot', efConstruction: 200, maxConnections: 16, ef: 64 },
    properties: [{ name: 'userId', dataType: ['text'] }],
  });
  const uuid = (i: number) => `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
  t = performance.now();
  const B = 1000;
  let nextB = 0;
  await Promise.all(
    Array.from({ length: 2 }, async () => {
      for (;;) {
        const b0 = nextB;
        nextB += B;
        if (b0 >= N) return;
        const objects = [];
        for (let i = b0; i < Math.min(N, b0 + B); i++) objects.push({ class: 'Vec', id: uuid(i), properties: { userId: uid(i) }, vector: Array.from(data.subarray(i * DIM, (i + 1) * DIM)) });
        const res = (await api('POST', '/v1/batch/objects', { objects })) as { result?: { errors?: unknown } }[];
        const bad = res.find((r) => r.result?.errors);
        if (bad) throw new Error(`weaviate batch error: ${JSON.stringify(bad.result?.errors).slice(0, 300)}`);
      }
    }),
  );
  const loadS = (performance.now() - t) / 1000;
  console.log(`weaviate: imported ${N} vectors (HNSW built during import) in ${loadS.toFixed(1)} s (${(N / loadS).toFixed(0)}/s); load ${load()}`);
  const gql = async (qi: number) => {
    const r = (await api('POST', '/v1/graphql', { query: `{Get{Vec(nearVector:{vector:[${qv[qi].join(',')}]},limit:${K}){userId}}}` })) as { data?: { Get: { Vec: { userId: string }[] } }; errors?: unknown };
    if (!r.data) throw new Error(`weaviate query: ${JSON.stringify(r.errors).slice(0, 300)}`);
    return r.data.Get.Vec.map((o) => o.userId);
  };
  const sweep = [];
  for (const ef of EFS) {
    const cls = await api('GET', '/v1/schema/Vec');
    cls.vectorIndexConfig.ef = ef;
    await api('PUT', '/v1/schema/Vec', cls);
    const r = await measureQueries(gql);
    sweep.push({ ef, ...r });
    console.log(`weaviate: ef ${ef}: recall@10 ${r.recall.toFixed(4)}, 1 client ${r.qps1.toFixed(0)} QPS p50 ${r.p50ms.toFixed(2)} ms p99 ${r.p99ms.toFixed(2)} ms, ${CONC} concurrent ${r.qps.toFixed(0)} QPS`);
  }
  const rss = rssMB(wvPid);
  results.weaviate = { version: 'v1.35.2 (Go module build)', startS, loadWithIndexS: loadS, loadRowsPerS: N / loadS, m: 16, efConstruction: 200, rssMB: rss, diskMB: duMB(dataDir), sweep, api: 'REST batch + GraphQL nearVector', loadAvgAfter: load() };
  await stop(proc);
}

let failed = false;
for (const [name, fn] of [['cassandra', cassandraBench], ['weaviate', weaviateBench]] as const) {
  if (!ONLY.includes(name) && !(name === 'cassandra' && ONLY.includes('replica-hnsw'))) continue;
  try {
    await fn();
  } catch (e) {
    results[name] = { failed: (e as Error).message };
    failed = true;
    console.log(`${name}: FAILED ${(e as Error).message}`);
  }
}
procs.forEach((p) => p.exitCode === null && p.kill('SIGKILL'));

const out = {
  bench: 'engine-ann',
  date: new Date().toISOString(),
  machine: { cores: cpus().length, cpu: cpus()[0]?.model, node: process.version, loadAvgAtEnd: load(), note: 'shared machine: other jobs ran beside this one' },
  config: { n: N, dim: DIM, queries: Q, k: K, concurrency: CONC, data: 'bench/_vectors.ts makeClusteredVectors, 1000 Zipf clusters, seed 1 (queries seed 2)' },
  exact: { method: 'blocked JS scan', qps: exactQps },
  engines: results,
};
mkdirSync(join(here, 'results'), { recursive: true });
const outName = `engine-ann${TAG ? `-${TAG}` : ''}.json`;
writeFileSync(join(here, 'results', outName), JSON.stringify(out, null, 2) + '\n');
console.log(`wrote bench/results/${outName}`);
if (failed) console.log(`kept the engines' data and logs in ${work}`);
else rmSync(work, { recursive: true, force: true });
process.exit(failed ? 1 : 0);
