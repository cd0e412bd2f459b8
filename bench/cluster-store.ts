// The cluster mode's store path against the embedded one, in one run on the same vectors
// (bench/_vectors.ts): one real Cassandra 5.0 node (test/cassandra/cluster.ts, 1 GB heap) and the
// LMDB store in a temp directory, both through their store classes.
//   - writes: putMany in batches of 1,000 (what aetn embed commits), rows/s;
//   - getMany: batches of 1, 100 and 1,000 random users (a ranker's call, a look-alike's reads),
//     p50/p99 per call, one caller;
//   - a full scan of the feature (what aetn index reads), s;
//   - replica start: copy the live index generation out of Cassandra + load and verify it, against
//     loading the same files from local disk (the embedded mode's start).
// Every figure is given as a ratio to its LMDB baseline of the same run.
//
//   npx tsx bench/cluster-store.ts [--n 100000] [--dim 64] [--tag 100k-64d]
//
// Writes bench/results/cluster-store[-TAG].json.
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EmbeddingStore } from '../src/store/store.js';
import { CassandraStore } from '../src/store/cassandra.js';
import { buildSharedIndex, materializeGeneration } from '../src/index/shared.js';
import { IndexHandle } from '../src/index/handle.js';
import { CassandraCluster } from '../test/cassandra/cluster.js';
import { makeClusteredVectors } from './_vectors.js';

const args = process.argv.slice(2);
const arg = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1]! : def;
};
const N = Number(arg('n', '100000'));
const DIM = Number(arg('dim', '64'));
const TAG = arg('tag', '');
if (!Number.isInteger(N) || N < 1000) throw new Error(`--n must be an integer >= 1000 (got ${arg('n', '')})`);
if (!Number.isInteger(DIM) || DIM < 1) throw new Error(`--dim must be a positive integer (got ${arg('dim', '')})`);
const here = dirname(fileURLToPath(import.meta.url));
const uid = (i: number) => `u${String(i).padStart(8, '0')}`;
const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');
let seed = 42;
const rand = () => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed / 0x7fffffff;
};
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!;

async function main(): Promise<void> {
  const loads: string[] = [load()];
  console.log(`cluster store bench: ${N} users x ${DIM}-d, one Cassandra node (1 GB heap) vs LMDB; load ${loads[0]}`);
  const cluster = await CassandraCluster.start({ nodes: 1 });
  const work = mkdtempSync(join(tmpdir(), 'aetn-bench-cluster-'));
  const out: Record<string, unknown> = { n: N, dim: DIM, startedAt: new Date().toISOString() };
  try {
    const data = makeClusteredVectors(N, DIM, 1);
    const lmdb = EmbeddingStore.open(join(work, 'store'));
    const cass = await CassandraStore.open({ contactPoints: cluster.contactPoints, localDataCenter: 'datacenter1', keyspace: 'aetn_bench', replicationFactor: 1, consistency: 'localQuorum', requestTimeoutMs: 60_000 });
    lmdb.registerFeature({ featureId: 'F', namespace: 'long', dim: DIM, variant: 'bench' });
    await cass.registerFeature({ featureId: 'F', namespace: 'long', dim: DIM, variant: 'bench' });

    // writes
    const batchOf = (i0: number) => Array.from({ length: Math.min(1000, N - i0) }, (_, j) => ({ userId: uid(i0 + j), vector: data.subarray((i0 + j) * DIM, (i0 + j + 1) * DIM) }));
    let t = performance.now();
    for (let i0 = 0; i0 < N; i0 += 1000) await lmdb.putMany('F', batchOf(i0));
    const lmdbWrite = N / ((performance.now() - t) / 1000);
    t = performance.now();
    for (let i0 = 0; i0 < N; i0 += 1000) await cass.putMany('F', batchOf(i0));
    const cassWrite = N / ((performance.now() - t) / 1000);
    out.writes = { lmdbRowsPerS: lmdbWrite, cassandraRowsPerS: cassWrite, ratio: lmdbWrite / cassWrite };
    console.log(`writes (batches of 1000): LMDB ${lmdbWrite.toFixed(0)} rows/s, Cassandra ${cassWrite.toFixed(0)} rows/s (LMDB ${(lmdbWrite / cassWrite).toFixed(1)}x); load ${load()}`);
    loads.push(load());

    // getMany
    const gets: Record<string, unknown> = {};
    for (const [batch, reps] of [[1, 400], [100, 150], [1000, 30]] as const) {
      const ids = () => Array.from({ length: batch }, () => uid(Math.floor(rand() * N)));
      const lt: number[] = [];
      const ct: number[] = [];
      for (let r = 0; r < 5; r++) await cass.getMany('F', ids(), DIM); // warm the connection and caches
      for (let r = 0; r < reps; r++) {
        const q = ids();
        let s = performance.now();
        lmdb.getMany('F', q);
        lt.push(performance.now() - s);
        s = performance.now();
        const got = await cass.getMany('F', q, DIM);
        ct.push(performance.now() - s);
        if (got.some((v) => v === undefined)) throw new Error('a stored user came back missing from Cassandra');
      }
      const row = { reps, lmdbP50Ms: pct(lt, 0.5), lmdbP99Ms: pct(lt, 0.99), cassandraP50Ms: pct(ct, 0.5), cassandraP99Ms: pct(ct, 0.99), p50Ratio: pct(ct, 0.5) / pct(lt, 0.5) };
      gets[`batch${batch}`] = row;
      console.log(
        `getMany of ${batch}: LMDB p50 ${row.lmdbP50Ms.toFixed(3)} / p99 ${row.lmdbP99Ms.toFixed(3)} ms, Cassandra p50 ${row.cassandraP50Ms.toFixed(2)} / p99 ${row.cassandraP99Ms.toFixed(2)} ms ` +
          `(Cassandra p50 ${row.p50Ratio.toFixed(0)}x LMDB); load ${load()}`,
      );
    }
    out.getMany = gets;
    loads.push(load());

    // full scan
    t = performance.now();
    let n1 = 0;
    for (const _ of lmdb.iterate('F')) n1++;
    const lmdbScan = (performance.now() - t) / 1000;
    t = performance.now();
    let n2 = 0;
    for await (const _ of cass.iterate('F')) n2++;
    const cassScan = (performance.now() - t) / 1000;
    if (n1 !== N || n2 !== N) throw new Error(`scan counts ${n1} / ${n2}, expected ${N}`);
    out.scan = { lmdbS: lmdbScan, cassandraS: cassScan, cassandraRowsPerS: N / cassScan, ratio: cassScan / lmdbScan };
    console.log(`full scan: LMDB ${lmdbScan.toFixed(2)} s, Cassandra ${cassScan.toFixed(1)} s (${(N / cassScan).toFixed(0)} rows/s, ${(cassScan / lmdbScan).toFixed(0)}x); load ${load()}`);

    // index build into the shared store, then a replica start against a local load
    const b = await buildSharedIndex(cass, 'F', { silent: true });
    out.sharedBuild = { readS: b.readSeconds, buildS: b.buildSeconds, writeS: b.writeSeconds, chunks: b.chunks, indexBytes: b.manifest.files['index.hnsw']!.bytes };
    console.log(`aetn index from Cassandra: read ${b.readSeconds.toFixed(1)} s, hnswlib build ${b.buildSeconds.toFixed(1)} s, ${b.chunks} chunks written in ${b.writeSeconds.toFixed(1)} s (${(b.manifest.files['index.hnsw']!.bytes / 1e6).toFixed(1)} MB); load ${load()}`);
    const replicaDir = join(work, 'replica');
    mkdirSync(replicaDir);
    t = performance.now();
    await materializeGeneration(cass, replicaDir, 'F');
    const copyS = (performance.now() - t) / 1000;
    const h1 = await IndexHandle.open(replicaDir, 'F', { dim: DIM });
    const startS = (performance.now() - t) / 1000;
    t = performance.now();
    const h2 = await IndexHandle.open(replicaDir, 'F', { dim: DIM });
    const localS = (performance.now() - t) / 1000;
    if (h1.count !== N || h2.count !== N) throw new Error('index counts differ');
    out.replicaStart = { copyS, copyAndLoadS: startS, localLoadS: localS, ratio: startS / localS };
    console.log(`replica start: copy ${copyS.toFixed(2)} s + load ${(startS - copyS).toFixed(2)} s = ${startS.toFixed(2)} s, against a local load of ${localS.toFixed(2)} s (${(startS / localS).toFixed(1)}x); load ${load()}`);
    loads.push(load());
    await lmdb.close();
    await cass.close();
  } finally {
    await cluster.stop();
    rmSync(work, { recursive: true, force: true });
  }
  out.loadAverages = loads;
  const file = join(here, 'results', `cluster-store${TAG ? `-${TAG}` : ''}.json`);
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(out, null, 2) + '\n');
  console.log(`wrote ${file}`);
}

await main();
