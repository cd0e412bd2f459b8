// Index generations in the shared Cassandra store (the cluster mode, docs/parts/scale-out.md).
//
// Build (`aetn index --store-backend cassandra`): read every vector of the feature from Cassandra,
// insert them in user-id order (the order the LMDB store iterates, so the same vectors give the
// same hnswlib graph and the same answers as the embedded mode), save the generation in a local
// scratch directory with the usual layout (layout.ts), write its files as chunks to
// `index_files` under the next generation number, then flip `index_current` to it with a
// lightweight transaction: the one-row atomic swap. The generation before the replaced one is
// deleted (a replica may still be downloading the replaced one).
//
// Replicas (`materializeGeneration`) copy the live generation into a local cache directory with
// the same layout, checksums verified by IndexHandle on load, so that serving uses the unchanged
// IndexHandle / SearchPool and their reload-on-new-generation.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StoreError } from '../store/errors.js';
import type { CassandraStore } from '../store/cassandra.js';
import { Progress } from '../util/progress.js';
import { child } from '../util/log.js';
import { IndexHandle } from './handle.js';
import { checkParams, type BuildOptions } from './build.js';
import { DEFAULT_PARAMS, INDEX_FILE, LABELS_FILE, MANIFEST_FILE, defaultEfSearch, featureIndexDir, genName, publishGeneration, readCurrent, type IndexManifest } from './layout.js';

const log = child('index');
/** Bytes per `index_files` row. */
export const CHUNK_BYTES = 4 << 20;
const FILES = [INDEX_FILE, LABELS_FILE, MANIFEST_FILE] as const;
/** As in build.ts: vectors stamped within this margin before the read may be missing from it. */
const AS_OF_MARGIN_MS = 60_000;

export interface SharedBuildResult {
  manifest: IndexManifest;
  /** The generation replaced (undefined for a first build). */
  replaced: number | undefined;
  chunks: number;
  readSeconds: number;
  buildSeconds: number;
  writeSeconds: number;
}

export async function buildSharedIndex(store: CassandraStore, featureId: string, opts: BuildOptions = {}): Promise<SharedBuildResult> {
  const feature = await store.getFeature(featureId);
  if (!feature) throw new StoreError('NOT_FOUND', `unknown feature id ${featureId}`);
  if (feature.retired) throw new StoreError('FAILED_PRECONDITION', `feature ${featureId} is retired; its index is not rebuilt`);
  const asOf = Date.now() - AS_OF_MARGIN_MS;
  const t0 = performance.now();
  const readBar = new Progress({ label: `index ${featureId}: read vectors`, unit: 'users', silent: opts.silent });
  const entries: { userId: string; vector: Float32Array }[] = [];
  for await (const e of store.iterate(featureId)) {
    entries.push({ userId: e.userId, vector: e.vector });
    readBar.tick();
  }
  readBar.finish();
  // The LMDB store iterates in key order; the same insertion order builds the same graph.
  entries.sort((a, b) => (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0));
  const t1 = performance.now();
  const total = entries.length;
  const auto = opts.efSearch === undefined;
  const params = checkParams({ ...DEFAULT_PARAMS, efSearch: defaultEfSearch(total), ...definedOnly(opts), efSearchAuto: auto });
  const scratch = mkdtempSync(join(tmpdir(), 'aetn-index-build-'));
  try {
    const handle = IndexHandle.create(scratch, featureId, feature.dim, params, total + 16);
    const bar = new Progress({ label: `index ${featureId}`, total, unit: 'users', silent: opts.silent });
    for (let i = 0; i < total; i += 1000) bar.tick(handle.upsert(entries.slice(i, i + 1000)));
    entries.length = 0;
    const local = await handle.save({ kind: 'build', storeAsOfMs: asOf });
    bar.finish();
    const t2 = performance.now();
    const cur = await store.indexCurrent(featureId);
    // Past every generation already written, finished or not (an abandoned build's chunks).
    const gen = (await store.maxIndexGeneration(featureId, cur?.generation ?? 0)) + 1;
    const manifest: IndexManifest = { ...local, generation: gen };
    const dir = join(featureIndexDir(scratch, featureId), genName(local.generation));
    writeFileSync(join(dir, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n');
    let chunks = 0;
    for (const name of FILES) chunks += await store.putIndexFile(featureId, gen, name, join(dir, name), CHUNK_BYTES);
    if (!(await store.flipIndexCurrent(featureId, cur?.generation, gen, JSON.stringify(manifest)))) {
      await store.deleteIndexGeneration(featureId, gen);
      throw new StoreError('FAILED_PRECONDITION', `another build of ${featureId} published a generation while this one was written; nothing was changed by this build (run it again if needed)`);
    }
    // Keep the replaced generation (replicas may be copying it); drop the ones before it.
    if (cur) for (let g = cur.generation - 1; g >= 1; g--) await store.deleteIndexGeneration(featureId, g);
    const t3 = performance.now();
    const r = { manifest, replaced: cur?.generation, chunks, readSeconds: (t1 - t0) / 1000, buildSeconds: (t2 - t1) / 1000, writeSeconds: (t3 - t2) / 1000 };
    log.info({ featureId, count: manifest.count, generation: gen, chunks, readSeconds: r.readSeconds, buildSeconds: r.buildSeconds, writeSeconds: r.writeSeconds }, 'index built into the shared store');
    return r;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/**
 * Copies the live generation of a feature from Cassandra into `cacheDir` (layout.ts) unless it is
 * there already, and makes it CURRENT there. Returns the generation, or undefined when the feature
 * has no index yet.
 */
export async function materializeGeneration(store: CassandraStore, cacheDir: string, featureId: string): Promise<number | undefined> {
  const cur = await store.indexCurrent(featureId);
  if (!cur) return undefined;
  const fdir = featureIndexDir(cacheDir, featureId);
  const local = safeCurrent(fdir);
  if (local === cur.generation) return cur.generation;
  const dir = join(fdir, genName(cur.generation));
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const name of FILES) {
    let ok = false;
    try {
      ok = await store.getIndexFile(featureId, cur.generation, name, join(dir, name));
    } finally {
      if (!ok) rmSync(dir, { recursive: true, force: true });
    }
    if (!ok) throw new StoreError('FAILED_PRECONDITION', `index generation ${cur.generation} of ${featureId} has no ${name} in the shared store; rebuild it with \`aetn index --store-backend cassandra --feature ${featureId}\``);
  }
  publishGeneration(fdir, cur.generation);
  return cur.generation;
}

function safeCurrent(fdir: string): number | undefined {
  if (!existsSync(fdir)) return undefined;
  try {
    return readCurrent(fdir)?.gen;
  } catch {
    return undefined;
  }
}

/** A scratch directory for a replica's copies of the live generations (deleted by the caller). */
export function newIndexCacheDir(): string {
  return mkdtempSync(join(tmpdir(), 'aetn-index-cache-'));
}

function definedOnly(o: BuildOptions): Partial<{ m: number; efConstruction: number; efSearch: number }> {
  const out: Partial<{ m: number; efConstruction: number; efSearch: number }> = {};
  if (o.m !== undefined) out.m = o.m;
  if (o.efConstruction !== undefined) out.efConstruction = o.efConstruction;
  if (o.efSearch !== undefined) out.efSearch = o.efSearch;
  return out;
}
