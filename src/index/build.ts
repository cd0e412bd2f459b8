// Building an index from the store (full) and bringing an existing one up to date (incremental).
import { rmSync } from 'node:fs';
import { StoreError } from '../store/errors.js';
import type { EmbeddingStore } from '../store/store.js';
import { Progress } from '../util/progress.js';
import { child } from '../util/log.js';
import { IndexHandle } from './handle.js';
import { DEFAULT_PARAMS, defaultEfSearch, featureIndexDir, type IndexManifest, type IndexParams } from './layout.js';

const log = child('index');

/**
 * Vectors written within this margin before an index read its snapshot are re-read by the next
 * incremental update: a writer stamps a vector before it commits, so a stamp slightly older than
 * the snapshot can still be missing from it. Re-upserting an unchanged vector is harmless.
 */
const AS_OF_MARGIN_MS = 60_000;

/** Share of deleted points above which an incremental update rebuilds instead. */
const COMPACT_FRACTION = 0.25;

export interface BuildOptions extends Partial<IndexParams> {
  silent?: boolean;
}

export interface UpdateResult {
  manifest: IndexManifest;
  rebuilt: boolean;
  reason?: string;
  upserted: number;
  removed: number;
  seconds: number;
}

/** Builds a fresh index of a feature from the store and publishes it as a new generation. */
export async function buildIndex(store: EmbeddingStore, featureId: string, opts: BuildOptions = {}): Promise<IndexManifest> {
  const feature = store.getFeature(featureId);
  if (!feature) throw new StoreError('NOT_FOUND', `unknown feature id ${featureId}`);
  if (feature.retired) throw new StoreError('FAILED_PRECONDITION', `feature ${featureId} is retired; its index is not rebuilt`);
  const asOf = Date.now() - AS_OF_MARGIN_MS;
  const total = store.count(featureId);
  const auto = opts.efSearch === undefined;
  const params = checkParams({ ...DEFAULT_PARAMS, efSearch: defaultEfSearch(total), ...definedOnly(opts), efSearchAuto: auto });
  const handle = IndexHandle.create(store.dir, featureId, feature.dim, params, total + 16);
  const bar = new Progress({ label: `index ${featureId}`, total, unit: 'users', silent: opts.silent });
  const t0 = performance.now();
  const batch: { userId: string; vector: Float32Array }[] = [];
  for (const e of store.iterate(featureId)) {
    batch.push(e);
    if (batch.length === 1000) {
      bar.tick(handle.upsert(batch.splice(0)));
    }
  }
  bar.tick(handle.upsert(batch.splice(0)));
  const manifest = await handle.save({ kind: 'build', storeAsOfMs: asOf });
  bar.finish();
  log.info({ featureId, count: manifest.count, generation: manifest.generation, seconds: (performance.now() - t0) / 1000, ...params }, 'index built');
  return manifest;
}

/**
 * Brings the live index of a feature up to date with the store without a rebuild: inserts users
 * new to the index, replaces points of users re-embedded since the index was written, removes
 * users deleted from the store. Falls back to a full build when there is no usable index.
 */
export async function updateIndex(store: EmbeddingStore, featureId: string, opts: BuildOptions = {}): Promise<UpdateResult> {
  const t0 = performance.now();
  const feature = store.getFeature(featureId);
  if (!feature) throw new StoreError('NOT_FOUND', `unknown feature id ${featureId}`);
  let handle: IndexHandle;
  try {
    handle = await IndexHandle.open(store.dir, featureId, { dim: feature.dim });
  } catch (err) {
    if (!(err instanceof StoreError)) throw err;
    log.warn({ featureId, reason: err.message }, 'no usable index: full rebuild');
    const manifest = await buildIndex(store, featureId, opts);
    return { manifest, rebuilt: true, reason: err.message, upserted: manifest.count, removed: 0, seconds: (performance.now() - t0) / 1000 };
  }
  if (opts.efSearch !== undefined && (opts.efSearch !== handle.efSearch || handle.manifest.efSearchAuto)) handle.setEfSearch(opts.efSearch, false);
  const autoEf = opts.efSearch === undefined && handle.manifest.efSearchAuto === true;
  const since = handle.manifest.storeAsOfMs;
  const asOf = Date.now() - AS_OF_MARGIN_MS;
  const total = store.count(featureId);
  // Replaced and removed users leave deleted points behind, which cost memory and some recall:
  // past this share, a full build (which drops them) is the better update.
  const maxDeleted = Math.floor(COMPACT_FRACTION * Math.max(total, handle.count));
  const bar = new Progress({ label: `update ${featureId}`, total, unit: 'users', silent: opts.silent });
  const seen = new Set<string>();
  const changed: { userId: string; vector: Float32Array }[] = [];
  let replacing = 0;
  let compact = handle.deletedSlots > maxDeleted;
  for (const e of compact ? [] : store.iterate(featureId)) {
    seen.add(e.userId);
    bar.tick();
    const known = handle.has(e.userId);
    // Stamps near the index's snapshot are ambiguous: compare the vectors themselves.
    if (known && (e.updatedAtMs < since || handle.sameVector(e.userId, e.vector))) continue;
    changed.push(e);
    if (known && ++replacing + handle.deletedSlots > maxDeleted) {
      compact = true;
      break;
    }
  }
  const gone = compact ? [] : [...handle.userIds()].filter((u) => !seen.has(u));
  if (compact || handle.deletedSlots + replacing + gone.length > maxDeleted) {
    const reason = `more than ${Math.round(COMPACT_FRACTION * 100)}% of the index would be deleted points: full rebuild`;
    log.info({ featureId }, reason);
    const manifest = await buildIndex(store, featureId, { ...opts, m: opts.m ?? handle.manifest.m, efConstruction: opts.efConstruction ?? handle.manifest.efConstruction, efSearch: opts.efSearch ?? (autoEf ? undefined : handle.efSearch) });
    return { manifest, rebuilt: true, reason, upserted: manifest.count, removed: 0, seconds: (performance.now() - t0) / 1000 };
  }
  const upserted = handle.upsert(changed);
  const removed = handle.remove(gone);
  // An index that grew (or shrank) across a size threshold gets the default for its new size.
  if (autoEf && defaultEfSearch(handle.count) !== handle.efSearch) handle.setEfSearch(defaultEfSearch(handle.count), true);
  const manifest = await handle.save({ kind: 'update', storeAsOfMs: asOf });
  bar.finish(`${upserted} upserted, ${removed} removed`);
  log.info({ featureId, upserted, removed, generation: manifest.generation, deletedSlots: handle.deletedSlots }, 'index updated');
  return { manifest, rebuilt: false, upserted, removed, seconds: (performance.now() - t0) / 1000 };
}

/** Deletes every generation of a feature's index (e.g. after the feature was purged). */
export function removeIndex(storeDir: string, featureId: string): void {
  rmSync(featureIndexDir(storeDir, featureId), { recursive: true, force: true });
}

export function checkParams(p: IndexParams): IndexParams {
  const check = (name: string, v: number, lo: number, hi: number) => {
    if (!Number.isInteger(v) || v < lo || v > hi) throw new StoreError('INVALID_ARGUMENT', `${name} must be an integer in ${lo}..${hi}, got ${v}`);
  };
  check('M', p.m, 2, 128);
  check('efConstruction', p.efConstruction, 1, 10_000);
  check('efSearch', p.efSearch, 1, 10_000);
  return p;
}

function definedOnly(o: Partial<IndexParams>): Partial<IndexParams> {
  const out: Partial<IndexParams> = {};
  if (o.m !== undefined) out.m = o.m;
  if (o.efConstruction !== undefined) out.efConstruction = o.efConstruction;
  if (o.efSearch !== undefined) out.efSearch = o.efSearch;
  return out;
}
