// How Cassandra 5.0 is operated for aetn, exercised for real on loopback addresses: a one-node
// cluster with vectors and their SAI ANN index; a second node added (bootstrap streams its share);
// the replication factor raised to 2 and a full repair run; then the first node killed while a
// client keeps querying through the second. Times are measured, the answers checked against exact
// search.
//
//   bench/engines/setup.sh .cache/engines cassandra       # once
//   npx tsx bench/engine-ops.ts [--n 20000] [--dim 64] [--engines .cache/engines]
//
// Writes bench/results/engine-ops.json. Needs 127.0.0.2 on the loopback interface (Linux has it).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from 'node:net';
import { makeClusteredVectors, exactTopK } from './_vectors.js';

const args = process.argv.slice(2);
const arg = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const N = Number(arg('n', '20000'));
const DIM = Number(arg('dim', '64'));
const Q = 100;
const K = 10;
const here = dirname(fileURLToPath(import.meta.url));
const ENG = resolve(arg('engines', join(here, '..', '.cache', 'engines')));
const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const uid = (i: number) => `u${String(i).padStart(8, '0')}`;
if (!existsSync(join(ENG, 'cassandra', 'lib')) || !existsSync(join(ENG, 'node', 'node_modules', 'cassandra-driver'))) {
  console.log(`engine ops: skipped, no Cassandra under ${ENG}: run bench/engines/setup.sh ${ENG} cassandra`);
  process.exit(0);
}
interface CqlClient {
  connect(): Promise<void>;
  execute(q: string, p?: unknown[], o?: object): Promise<{ rows: { get(n: string): unknown }[] }>;
  shutdown(): Promise<void>;
}
const cass = createRequire(join(ENG, 'node', 'package.json'))('cassandra-driver') as {
  Client: new (o: object) => CqlClient;
  concurrent: { executeConcurrent(c: CqlClient, q: string, p: unknown[][], o: object): Promise<unknown> };
  types: { Vector: new (e: Float32Array, sub: string) => unknown; consistencies: Record<string, number> };
};

const work = mkdtempSync(join(tmpdir(), 'aetn-bench-ops-'));
const nodes: { addr: string; port: number; proc: ChildProcess }[] = [];
process.on('exit', () => nodes.forEach((n) => n.proc.exitCode === null && n.proc.kill('SIGKILL')));

async function startNode(i: number): Promise<number> {
  const addr = `127.0.0.${i}`;
  const port = 9300 + i;
  const t = performance.now();
  const proc = spawn('nice', ['-n', '15', join(here, 'engines', 'cassandra-node.sh'), ENG, join(work, `n${i}`), addr, '127.0.0.1:7000', String(port), arg('heap', '1G')], { stdio: 'ignore' });
  nodes.push({ addr, port, proc });
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`node ${addr} exited with ${proc.exitCode} (log: ${join(work, `n${i}`, 'logs', 'system.log')})`);
    const ok = await new Promise<boolean>((res) => {
      const s = connect(port, addr, () => (s.end(), res(true)));
      s.on('error', () => res(false));
    });
    if (ok) return (performance.now() - t) / 1000;
    if (performance.now() - t > 600000) throw new Error(`node ${addr} not up within 600 s`);
    await sleep(1000);
  }
}
function nodetool(i: number, ...cmd: string[]): { out: string; seconds: number } {
  const t = performance.now();
  const r = spawnSync('nice', ['-n', '15', join(here, 'engines', 'nodetool.sh'), ENG, String(9300 + i + 100), ...cmd], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`nodetool ${cmd.join(' ')} failed: ${r.stderr || r.stdout}`);
  return { out: r.stdout, seconds: (performance.now() - t) / 1000 };
}

console.log(`engine ops: Cassandra on 127.0.0.1 and 127.0.0.2, ${N} users x ${DIM}-d; load ${load()}`);
const data = makeClusteredVectors(N, DIM, 1);
const qs = makeClusteredVectors(Q, DIM, 2);
const truth = exactTopK(data, N, DIM, qs, Q, K);
const report: Record<string, unknown> = {};

report.node1StartS = await startNode(1);
const c1 = new cass.Client({ contactPoints: ['127.0.0.1:9301'], localDataCenter: 'datacenter1', socketOptions: { readTimeout: 60000 } });
await c1.connect();
await c1.execute(`CREATE KEYSPACE aetn_ops WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}`);
await c1.execute(`CREATE TABLE aetn_ops.vec (user_id text PRIMARY KEY, v vector<float, ${DIM}>)`);
await c1.execute(`CREATE CUSTOM INDEX vec_ann ON aetn_ops.vec(v) USING 'StorageAttachedIndex' WITH OPTIONS = {'similarity_function': 'DOT_PRODUCT'}`);
const params: unknown[][] = [];
for (let i = 0; i < N; i++) params.push([uid(i), new cass.types.Vector(data.slice(i * DIM, (i + 1) * DIM), 'float')]);
await cass.concurrent.executeConcurrent(c1, 'INSERT INTO aetn_ops.vec (user_id, v) VALUES (?, ?)', params, { prepare: true, concurrencyLevel: 2 });
nodetool(1, 'flush', 'aetn_ops');
console.log(`node 1 up in ${(report.node1StartS as number).toFixed(0)} s, ${N} vectors loaded and flushed; load ${load()}`);

async function annRecall(client: CqlClient, consistency: number): Promise<{ recall: number; failed: number; errors: string[] }> {
  let hit = 0;
  let failed = 0;
  const errors: string[] = [];
  for (let qi = 0; qi < Q; qi++) {
    try {
      const r = await client.execute(`SELECT user_id FROM aetn_ops.vec ORDER BY v ANN OF ? LIMIT ${K}`, [new cass.types.Vector(qs.slice(qi * DIM, (qi + 1) * DIM), 'float')], { prepare: true, consistency });
      const t = new Set(Array.from(truth.subarray(qi * K, (qi + 1) * K), uid));
      for (const row of r.rows) if (t.has(String(row.get('user_id')))) hit++;
    } catch (e) {
      failed++;
      if (errors.length < 3) errors.push((e as Error).message);
    }
  }
  return { recall: hit / ((Q - failed || 1) * K), failed, errors };
}
const ONE = cass.types.consistencies.one;
report.oneNode = await annRecall(c1, ONE);

// add a node: it bootstraps (takes token ranges and streams their data, index included) by itself
let t = performance.now();
const node2StartS = await startNode(2);
for (;;) {
  const st = nodetool(1, 'status').out;
  if ((st.match(/^UN\s/gm) ?? []).length === 2) break;
  if (performance.now() - t > 600000) throw new Error(`node 2 did not join: ${st}`);
  await sleep(2000);
}
report.addNode = { node2ListeningS: node2StartS, joinedS: (performance.now() - t) / 1000, statusAfter: nodetool(1, 'status').out };
// the first node still holds the ranges it gave away until cleanup drops them
report.cleanupS = nodetool(1, 'cleanup', 'aetn_ops').seconds;
console.log(`node 2 joined in ${(report.addNode as { joinedS: number }).joinedS.toFixed(0)} s; load ${load()}`);
report.twoNodesRf1 = await annRecall(c1, ONE);

// replication factor 2, then a full repair streams the second copies
t = performance.now();
await c1.execute(`ALTER KEYSPACE aetn_ops WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 2}`);
report.repairS = nodetool(1, 'repair', '-full', 'aetn_ops').seconds;
report.repairWallS = (performance.now() - t) / 1000;
console.log(`RF 2 + full repair in ${(report.repairWallS as number).toFixed(0)} s; load ${load()}`);
report.twoNodesRf2 = await annRecall(c1, ONE);

// kill node 1 (SIGKILL); a client of node 2 keeps querying at consistency ONE
await c1.shutdown();
nodes[0].proc.kill('SIGKILL');
await sleep(2000);
const c2 = new cass.Client({ contactPoints: ['127.0.0.2:9302'], localDataCenter: 'datacenter1', socketOptions: { readTimeout: 60000 } });
await c2.connect();
report.node1KilledRf2 = await annRecall(c2, ONE);
console.log(JSON.stringify(report, null, 1));
await c2.shutdown();
nodes.forEach((n) => n.proc.exitCode === null && n.proc.kill('SIGTERM'));

mkdirSync(join(here, 'results'), { recursive: true });
writeFileSync(
  join(here, 'results', 'engine-ops.json'),
  JSON.stringify({ bench: 'engine-ops', date: new Date().toISOString(), machine: { cores: cpus().length, loadAvgAtEnd: load() }, config: { n: N, dim: DIM, queries: Q, heap: arg('heap', '1G') }, ...report }, null, 2) + '\n',
);
console.log('wrote bench/results/engine-ops.json');
await sleep(3000);
rmSync(work, { recursive: true, force: true });
process.exit(0);
