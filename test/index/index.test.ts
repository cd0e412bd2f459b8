import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddingStore } from '../../src/store/store.js';
import { StoreError } from '../../src/store/errors.js';
import { IndexHandle } from '../../src/index/handle.js';
import { SearchPool } from '../../src/index/pool.js';
import { buildIndex, updateIndex } from '../../src/index/build.js';
import { defaultEfSearch, featureIndexDir, readCurrent } from '../../src/index/layout.js';
import { clustered, exactKnn, uid } from './clustered.js';

const N = 3000;
const DIM = 32;
let dir: string;
let store: EmbeddingStore;
let data: Float32Array[];

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'aetn-index-'));
  store = EmbeddingStore.open(dir);
  store.registerFeature({ featureId: 'F', namespace: 'long', dim: DIM, variant: 'aetn' });
  data = clustered(N, DIM, 25, 7);
  await store.putMany('F', data.map((vector, i) => ({ userId: uid(i), vector })));
});
afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

function recallAt10(h: { search: (v: Float32Array, k: number, ef?: number) => { userId: string }[] }, queries: number[], ef?: number): number {
  let hit = 0;
  for (const qi of queries) {
    const truth = new Set(exactKnn(data, data[qi], 10).map(uid));
    for (const n of h.search(data[qi], 10, ef)) if (truth.has(n.userId)) hit++;
  }
  return hit / (queries.length * 10);
}

async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string | undefined> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    expect(err).toBeInstanceOf(StoreError);
    return (err as StoreError).code;
  }
  return undefined;
}

const queries = Array.from({ length: 60 }, (_, i) => (i * 47) % N);

describe('HNSW index', () => {
  it('builds from the store and finds the exact neighbours (recall@10 vs exact search)', async () => {
    const m = await buildIndex(store, 'F', { m: 16, efConstruction: 100, efSearch: 64, silent: true });
    expect(m).toMatchObject({ featureId: 'F', dim: DIM, count: N, m: 16, efConstruction: 100, efSearch: 64, generation: 1 });
    const h = await IndexHandle.open(dir, 'F', { dim: DIM });
    expect(h.count).toBe(N);
    const recall = recallAt10(h, queries);
    expect(recall).toBeGreaterThanOrEqual(0.97);
    // a tiny beam is measurably worse: ef is really passed through
    expect(recallAt10(h, queries, 1)).toBeLessThan(recall);
    // scores are cosine similarities, best first; the query point itself comes first
    const res = h.search(data[5], 5);
    expect(res[0].userId).toBe(uid(5));
    expect(res[0].score).toBeCloseTo(1, 4);
    for (let i = 1; i < res.length; i++) expect(res[i].score).toBeLessThanOrEqual(res[i - 1].score);
    // by user: itself excluded, same neighbours as the exact scan
    const byUser = h.searchByUser(uid(5), 10);
    expect(byUser.map((n) => n.userId)).not.toContain(uid(5));
    const truth = exactKnn(data, data[5], 10, 5).map(uid);
    expect(byUser.filter((n) => truth.includes(n.userId)).length).toBeGreaterThanOrEqual(9);
    expect(await codeOf(() => h.searchByUser('nobody', 3))).toBe('NOT_FOUND');
    expect(await codeOf(() => h.search(new Float32Array(DIM - 1), 3))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(() => h.search(new Float32Array(DIM).fill(Number.NaN), 3))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(() => h.search(data[0], 0))).toBe('INVALID_ARGUMENT');
    expect(h.search(data[0], N + 50).length).toBe(N); // k larger than the index: everything, no error
  });

  it('picks the default efSearch from the index size, and an explicit one wins', async () => {
    expect(defaultEfSearch(499_999)).toBe(96);
    expect(defaultEfSearch(500_000)).toBe(192);
    expect((await buildIndex(store, 'F', { silent: true })).efSearch).toBe(defaultEfSearch(N));
    expect((await buildIndex(store, 'F', { efSearch: 40, silent: true })).efSearch).toBe(40);
  });

  it('an index on the size default gets the default for its new size on update; a chosen ef is kept', async () => {
    const built = await buildIndex(store, 'F', { silent: true });
    expect(built.efSearchAuto).toBe(true);
    // Publish a generation whose default ef no longer fits its size (as one built under another
    // rule, or before it grew across a threshold would be).
    const h = await IndexHandle.open(dir, 'F', { dim: DIM });
    h.setEfSearch(50, true);
    await h.save({ kind: 'update', storeAsOfMs: built.storeAsOfMs });
    const updated = await updateIndex(store, 'F', { silent: true });
    expect(updated.manifest.efSearch).toBe(defaultEfSearch(N));
    expect(updated.manifest.efSearchAuto).toBe(true);
    // An explicit ef is a choice: kept by later updates.
    expect((await updateIndex(store, 'F', { efSearch: 40, silent: true })).manifest).toMatchObject({ efSearch: 40, efSearchAuto: false });
    expect((await updateIndex(store, 'F', { silent: true })).manifest).toMatchObject({ efSearch: 40, efSearchAuto: false });
  });

  it('upserts re-embedded users and removes deleted ones without a rebuild', async () => {
    await buildIndex(store, 'F', { efSearch: 64, silent: true });
    const moved = [10, 11, 12];
    const deleted = [20, 21];
    const fresh = clustered(5, DIM, 3, 99);
    // re-embed: users 10..12 now sit exactly on users 500..502
    await store.putMany('F', moved.map((u, i) => ({ userId: uid(u), vector: data[500 + i] })));
    await store.putMany('F', fresh.map((vector, i) => ({ userId: `new-${i}`, vector })));
    await store.deleteUsers('F', deleted.map(uid));

    const res = await updateIndex(store, 'F', { silent: true });
    expect(res.rebuilt).toBe(false);
    expect(res.removed).toBe(2);
    // only the changed users were re-inserted (the others' stored vectors equal the indexed points)
    expect(res.upserted).toBe(8);
    expect(res.manifest.generation).toBe(2);
    expect(res.manifest.kind).toBe('update');

    const h = await IndexHandle.open(dir, 'F', { dim: DIM });
    expect(h.count).toBe(N + 5 - 2);
    for (const [i, u] of moved.entries()) {
      const ids = h.search(data[500 + i], 2).map((n) => n.userId);
      expect(ids).toContain(uid(u));
    }
    for (const [i, v] of fresh.entries()) expect(h.search(v, 1)[0].userId).toBe(`new-${i}`);
    for (const u of deleted) {
      expect(h.has(uid(u))).toBe(false);
      expect(h.search(data[u], 20).map((n) => n.userId)).not.toContain(uid(u));
    }

    // in-memory edits on a loaded handle: deleted slots are reused, capacity grows as needed
    const before = h.manifest.capacity;
    h.remove([uid(0), uid(1)]);
    const extra = clustered(200, DIM, 4, 5);
    h.upsert(extra.map((vector, i) => ({ userId: `x-${i}`, vector })));
    expect(h.count).toBe(N + 5 - 2 - 2 + 200);
    const saved = await h.save({ kind: 'update', storeAsOfMs: 0 });
    expect(saved.capacity).toBeGreaterThan(before);
    const again = await IndexHandle.open(dir, 'F', { dim: DIM });
    expect(again.count).toBe(h.count);
    expect(again.search(extra[7], 1)[0].userId).toBe('x-7');
    expect(again.has(uid(0))).toBe(false);

    // syncing with the store: users 0 and 1 (removed in memory only) come back, the 200 extras
    // (never in the store) go; then a second update has nothing to do
    const idle = await updateIndex(store, 'F', { silent: true });
    expect([idle.rebuilt, idle.upserted, idle.removed]).toEqual([false, 2, 200]);
    const idle2 = await updateIndex(store, 'F', { silent: true });
    expect([idle2.rebuilt, idle2.upserted, idle2.removed]).toEqual([false, 0, 0]);

    // re-embedding a third of the users would leave too many deleted points: full rebuild instead
    await store.putMany('F', data.slice(0, 1000).map((v, i) => ({ userId: uid(i), vector: data[(i + 1500) % N] })));
    const big = await updateIndex(store, 'F', { silent: true });
    expect(big.rebuilt).toBe(true);
    expect(big.reason).toMatch(/deleted points/);
    const fresh2 = await IndexHandle.open(dir, 'F', { dim: DIM });
    expect(fresh2.deletedSlots).toBe(0);
    expect(fresh2.search(data[1500], 2).map((n) => n.userId)).toContain(uid(0));
  });

  it('swaps a rebuilt index in atomically while searches run (sync handle and worker pool)', async () => {
    await buildIndex(store, 'F', { silent: true });
    const h = await IndexHandle.open(dir, 'F', { dim: DIM });
    const pool = await SearchPool.open(dir, 'F', { threads: 2, dim: DIM });
    try {
      expect((await pool.info()).generation).toBe(1);
      // move user 0 onto user 1000 in the store, rebuild (generation 2), while searches keep going
      await store.putMany('F', [{ userId: uid(0), vector: data[1000] }]);
      let failures = 0;
      let done = 0;
      let stop = false;
      const searcher = (async () => {
        while (!stop) {
          try {
            const [a, b] = await Promise.all([pool.search(data[done % N], 10), pool.searchByUser(uid(done % N), 5)]);
            const c = h.search(data[(done * 7) % N], 10);
            if (a.length !== 10 || b.length !== 5 || c.length !== 10) failures++;
          } catch {
            failures++;
          }
          done++;
          await new Promise((r) => setImmediate(r));
        }
      })();
      await buildIndex(store, 'F', { silent: true });
      const [syncChanged, poolChanged] = await Promise.all([h.reloadIfChanged(), pool.reloadIfChanged()]);
      await new Promise((r) => setTimeout(r, 50));
      stop = true;
      await searcher;
      expect(syncChanged).toBe(true);
      expect(poolChanged).toBe(true);
      expect(failures).toBe(0);
      expect(done).toBeGreaterThan(5);
      expect(h.generation).toBe(2);
      expect((await pool.info()).generation).toBe(2);
      expect((await pool.search(data[1000], 2)).map((n) => n.userId)).toContain(uid(0));
      expect(h.search(data[1000], 2).map((n) => n.userId)).toContain(uid(0));
      expect(await h.reloadIfChanged()).toBe(false);
      // old generations are cleaned up, keeping the live one and the one before it
      await buildIndex(store, 'F', { silent: true });
      const gens = readdirSync(featureIndexDir(dir, 'F')).filter((n) => n.startsWith('gen-'));
      expect(gens.sort()).toEqual(['gen-000002', 'gen-000003']);
      // errors from workers keep their code
      expect(await codeOf(pool.searchByUser('nobody', 3))).toBe('NOT_FOUND');
    } finally {
      await pool.close();
    }
  });

  it('refuses corrupt or mismatched index files and recovers by rebuilding', async () => {
    await buildIndex(store, 'F', { silent: true });
    const fdir = featureIndexDir(dir, 'F');
    const gen = readCurrent(fdir)!.dir;

    // wrong dimension for the feature
    expect(await codeOf(IndexHandle.open(dir, 'F', { dim: DIM + 1 }))).toBe('FAILED_PRECONDITION');

    // another feature's index copied in place of this one's
    store.registerFeature({ featureId: 'G', namespace: 'long', dim: DIM, variant: 'aetn' });
    cpSync(fdir, featureIndexDir(dir, 'G'), { recursive: true });
    await expect(IndexHandle.open(dir, 'G', { dim: DIM })).rejects.toThrow(/belongs to feature F/);

    // one flipped byte in the graph file
    const file = join(gen, 'index.hnsw');
    const bytes = readFileSync(file);
    bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    writeFileSync(file, bytes);
    await expect(IndexHandle.open(dir, 'F', { dim: DIM })).rejects.toThrow(/checksum/);

    // a truncated label map
    await buildIndex(store, 'F', { silent: true });
    const gen2 = readCurrent(fdir)!.dir;
    writeFileSync(join(gen2, 'labels.json'), '["user-000000"');
    expect(await codeOf(IndexHandle.open(dir, 'F'))).toBe('FAILED_PRECONDITION');

    // a damaged pointer
    writeFileSync(join(fdir, 'CURRENT'), 'garbage');
    expect(await codeOf(IndexHandle.open(dir, 'F'))).toBe('FAILED_PRECONDITION');

    // no index at all (the worker pool reports it the same way and leaves no thread behind)
    expect(await codeOf(IndexHandle.open(dir, 'nope'))).toBe('NOT_FOUND');
    expect(await codeOf(SearchPool.open(dir, 'nope', { threads: 2 }))).toBe('NOT_FOUND');

    // an update falls back to a full rebuild, after which the index loads again
    const res = await updateIndex(store, 'F', { silent: true });
    expect(res.rebuilt).toBe(true);
    expect(res.reason).toMatch(/damaged/);
    const h = await IndexHandle.open(dir, 'F', { dim: DIM });
    expect(h.count).toBe(N);
    expect(existsSync(join(fdir, 'CURRENT'))).toBe(true);
  });
});
