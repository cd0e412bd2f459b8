// Embedding store benchmark: batch gets of 100 random users (what a ranker asks for), single gets,
// and batch writes, next to an in-memory Map<string, Float32Array> doing the same lookups and copies
// (the upper bound any on-disk store can approach), all in one run.
//
//   npx tsx bench/store-getmany.ts [--n 200000] [--dim 128] [--batches 3000]
//
// Writes bench/results/store-getmany.json.
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EmbeddingStore } from '../src/store/store.js';

const args = process.argv.slice(2);
const arg = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : Number(def);
};
const N = arg('n', '200000');
const DIM = arg('dim', '128');
const BATCHES = arg('batches', '3000');
const BATCH = 100;
const here = dirname(fileURLToPath(import.meta.url));
const uid = (i: number) => `u${String(i).padStart(8, '0')}`;

let seed = 42;
const rand = () => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed / 0x7fffffff;
};

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'aetn-bench-store-'));
  const store = EmbeddingStore.open(join(work, 'store'));
  store.registerFeature({ featureId: 'F', namespace: 'long', dim: DIM, variant: 'bench' });
  const mem = new Map<string, Float32Array>();

  // writes: 10k vectors per durable transaction
  let t = performance.now();
  for (let i0 = 0; i0 < N; i0 += 10000) {
    const entries = [];
    for (let i = i0; i < Math.min(N, i0 + 10000); i++) {
      const v = new Float32Array(DIM);
      for (let j = 0; j < DIM; j++) v[j] = rand() * 2 - 1;
      entries.push({ userId: uid(i), vector: v });
      mem.set(uid(i), v);
    }
    await store.putMany('F', entries);
  }
  const writeS = (performance.now() - t) / 1000;

  // small durable transactions (the realtime path: one user's vector + state per commit)
  const smallTx = 300;
  t = performance.now();
  for (let i = 0; i < smallTx; i++) await store.putMany('F', [{ userId: uid(i), vector: mem.get(uid(i))! }]);
  const smallTxS = (performance.now() - t) / 1000;

  const batches = Array.from({ length: BATCHES }, () => Array.from({ length: BATCH }, () => (rand() < 0.05 ? `missing-${Math.floor(rand() * 1e6)}` : uid(Math.floor(rand() * N)))));
  const run = (label: string, fn: (ids: string[]) => number) => {
    for (let b = 0; b < Math.min(200, BATCHES); b++) fn(batches[b]); // warm-up
    const t0 = performance.now();
    let found = 0;
    for (const ids of batches) found += fn(ids);
    const s = (performance.now() - t0) / 1000;
    return { label, usersPerS: (BATCHES * BATCH) / s, batchUs: (s / BATCHES) * 1e6, found };
  };

  const results = [
    run('in-memory Map + copy (baseline)', (ids) => {
      let f = 0;
      for (const id of ids) {
        const v = mem.get(id);
        if (v) {
          f++;
          new Float32Array(v); // the store returns copies too
        }
      }
      return f;
    }),
    run('store.getMany (batch of 100)', (ids) => store.getMany('F', ids).filter((x) => x !== undefined).length),
    run('store.get x 100', (ids) => {
      let f = 0;
      for (const id of ids) if (store.get('F', id)) f++;
      return f;
    }),
  ];
  const base = results[0].usersPerS;
  if (results[1].found !== results[0].found) throw new Error(`store found ${results[1].found} users, Map ${results[0].found}`);

  console.log(`store bench: ${N} users x ${DIM}-d float32, ${BATCHES} batches of ${BATCH} random users (~5% unknown); ${cpus().length} cores`);
  console.log(`${'method'.padEnd(34)} ${'users/s'.padStart(12)} ${'us/batch'.padStart(10)} ${'x baseline'.padStart(11)}`);
  for (const r of results) console.log(`${r.label.padEnd(34)} ${r.usersPerS.toFixed(0).padStart(12)} ${r.batchUs.toFixed(1).padStart(10)} ${(r.usersPerS / base).toFixed(2).padStart(11)}`);
  console.log(`writes: ${(N / writeS).toFixed(0)} vectors/s in transactions of 10k (fsync'd); ${(smallTx / smallTxS).toFixed(0)} durable single-vector transactions/s`);
  const stats = store.stats();
  console.log(`file ${(stats.fileBytes / 1e6).toFixed(1)} MB for ${N} vectors (${((stats.fileBytes / N) | 0)} B/vector, raw ${8 + 4 * DIM} B)`);

  const out = {
    bench: 'store-getmany',
    date: new Date().toISOString(),
    machine: { cores: cpus().length, cpu: cpus()[0]?.model, node: process.version },
    config: { n: N, dim: DIM, batches: BATCHES, batch: BATCH },
    reads: results.map((r) => ({ ...r, xBaseline: r.usersPerS / base })),
    writes: { vectorsPerS: N / writeS, txnSize: 10000, singleVectorTxnPerS: smallTx / smallTxS },
    fileBytes: stats.fileBytes,
  };
  mkdirSync(join(here, 'results'), { recursive: true });
  writeFileSync(join(here, 'results', 'store-getmany.json'), JSON.stringify(out, null, 2) + '\n');
  console.log('wrote bench/results/store-getmany.json');
  await store.close();
  rmSync(work, { recursive: true, force: true });
}

await main();
