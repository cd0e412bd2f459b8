// A loaded HNSW index of one feature id, with its user id <-> label map. hnswlib labels are 32-bit
// and only numbers, so users get labels assigned here in insertion order; the labels of removed or
// replaced users become null (their points stay soft-deleted in hnswlib until the next full build).
//
// Serving: search/searchByUser are synchronous (hnswlib blocks the calling thread; use SearchPool
// for concurrent serving). reloadIfChanged() loads a newer generation in the background and swaps
// it in with one assignment, so a search never sees a half-loaded index.
// Writing: upsert/remove change the loaded graph in place (no rebuild); save() publishes it as a
// new generation.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { StoreError, checkFeatureId } from '../store/errors.js';
import { hnswlib, type HnswIndex } from './hnswlib.js';
import {
  FORMAT,
  INDEX_FILE,
  LABELS_FILE,
  MANIFEST_FILE,
  VERSION,
  featureIndexDir,
  fileSum,
  newGenerationDir,
  publishGeneration,
  readCurrent,
  type IndexManifest,
  type IndexParams,
} from './layout.js';

export interface Neighbor {
  userId: string;
  /** Cosine similarity in [-1, 1] (hnswlib's cosine distance is 1 - similarity). */
  score: number;
}

export interface OpenIndexOptions {
  /** Expected dimension (the store's feature dim): a mismatching index is refused. */
  dim?: number;
}

/** The immutable-by-convention state of one loaded generation. */
interface Loaded {
  manifest: IndexManifest;
  index: HnswIndex;
  labels: (string | null)[];
  byUser: Map<string, number>;
  live: number;
}

const MAX_K = 10_000;

export class IndexHandle {
  private state: Loaded;
  private reloading: Promise<boolean> | undefined;
  private dirty = false;

  private constructor(
    readonly storeDir: string,
    readonly featureId: string,
    private readonly opts: OpenIndexOptions,
    state: Loaded,
  ) {
    this.state = state;
  }

  /** Loads the live generation of a feature's index, verifying checksums, feature id and dimension. */
  static async open(storeDir: string, featureId: string, opts: OpenIndexOptions = {}): Promise<IndexHandle> {
    checkFeatureId(featureId);
    const state = await loadCurrent(storeDir, featureId, opts);
    return new IndexHandle(storeDir, featureId, opts, state);
  }

  /** A new, empty in-memory index (for builds); nothing is on disk until save(). */
  static create(storeDir: string, featureId: string, dim: number, params: IndexParams, capacity: number): IndexHandle {
    checkFeatureId(featureId);
    const index = new (hnswlib().HierarchicalNSW)('cosine', dim);
    const cap = Math.max(16, capacity);
    index.initIndex({ maxElements: cap, m: params.m, efConstruction: params.efConstruction, randomSeed: 100 });
    index.setEf(params.efSearch);
    const manifest: IndexManifest = {
      format: FORMAT,
      version: VERSION,
      featureId,
      dim,
      space: 'cosine',
      count: 0,
      slots: 0,
      capacity: cap,
      ...params,
      generation: 0,
      kind: 'build',
      builtAtMs: 0,
      storeAsOfMs: 0,
      files: {},
    };
    const h = new IndexHandle(storeDir, featureId, { dim }, { manifest, index, labels: [], byUser: new Map(), live: 0 });
    h.dirty = true;
    return h;
  }

  get manifest(): Readonly<IndexManifest> {
    return this.state.manifest;
  }
  get generation(): number {
    return this.state.manifest.generation;
  }
  get dim(): number {
    return this.state.manifest.dim;
  }
  /** Searchable users. */
  get count(): number {
    return this.state.live;
  }
  get efSearch(): number {
    return this.state.manifest.efSearch;
  }
  /** True when the in-memory index has changes that save() has not published yet. */
  get unsaved(): boolean {
    return this.dirty;
  }

  has(userId: string): boolean {
    return this.state.byUser.has(userId);
  }

  /** Live user ids (in label order). */
  *userIds(): Generator<string> {
    for (const u of this.state.labels) if (u !== null) yield u;
  }

  /** The k most similar users to `vector` (cosine), best first. */
  search(vector: ArrayLike<number>, k: number, ef?: number): Neighbor[] {
    const s = this.state; // one generation for the whole query, even if a reload swaps mid-way
    const q = this.checkQuery(vector, s.manifest.dim);
    return searchLoaded(s, q, checkK(k), ef);
  }

  /** Neighbours of a user already in the index (the user itself excluded). */
  searchByUser(userId: string, k: number, ef?: number): Neighbor[] {
    const s = this.state;
    const label = s.byUser.get(userId);
    if (label === undefined) throw new StoreError('NOT_FOUND', `user ${userId} is not in the index of feature ${this.featureId}`);
    const kk = checkK(k);
    const q = s.index.getPoint(label);
    return searchLoaded(s, q, kk + 1, ef && ef > kk ? ef + 1 : ef)
      .filter((n) => n.userId !== userId)
      .slice(0, kk);
  }

  /**
   * Inserts new users or replaces existing users' points, in place. A replaced user's old point is
   * soft-deleted and the new one inserted under a fresh label: hnswlib's in-place update (and its
   * reuse of deleted slots, which goes through the same code) repairs the neighbours' links and
   * measured ~8x slower than an insert. Deleted slots are reclaimed by the next full build.
   */
  upsert(entries: Iterable<{ userId: string; vector: ArrayLike<number> }>): number {
    const s = this.state;
    let n = 0;
    for (const { userId, vector } of entries) {
      if (typeof userId !== 'string' || userId.length === 0) throw new StoreError('INVALID_ARGUMENT', 'user id must be a non-empty string');
      const point = this.checkQuery(vector, s.manifest.dim);
      const newLabel = s.labels.length;
      if (newLabel > 0xffffffff) throw new StoreError('FAILED_PRECONDITION', 'label space exhausted; rebuild the index');
      if (s.index.getCurrentCount() >= s.index.getMaxElements()) {
        s.index.resizeIndex(Math.ceil(s.index.getMaxElements() * 1.5) + 16);
      }
      s.index.addPoint(point, newLabel);
      const old = s.byUser.get(userId);
      if (old !== undefined) {
        s.index.markDelete(old);
        s.labels[old] = null;
      } else {
        s.live++;
      }
      s.labels.push(userId);
      s.byUser.set(userId, newLabel);
      n++;
    }
    if (n > 0) this.dirty = true;
    return n;
  }

  /** Points held but deleted (replaced or removed users) since the last full build. */
  get deletedSlots(): number {
    return this.state.index.getCurrentCount() - this.state.live;
  }

  /** True when the index holds this user with (up to float rounding) this vector's direction. */
  sameVector(userId: string, vector: ArrayLike<number>): boolean {
    const s = this.state;
    const label = s.byUser.get(userId);
    if (label === undefined || vector.length !== s.manifest.dim) return false;
    const p = s.index.getPoint(label); // stored normalised (cosine space)
    let norm = 0;
    for (let i = 0; i < vector.length; i++) norm += vector[i] * vector[i];
    norm = Math.sqrt(norm);
    if (!(norm > 0)) return false;
    for (let i = 0; i < vector.length; i++) if (Math.abs(vector[i] / norm - p[i]) > 1e-5) return false;
    return true;
  }

  /** Removes users (soft delete in hnswlib: searches skip them; a full build drops them). */
  remove(userIds: Iterable<string>): number {
    const s = this.state;
    let n = 0;
    for (const userId of userIds) {
      const label = s.byUser.get(userId);
      if (label === undefined) continue;
      s.index.markDelete(label);
      s.labels[label] = null;
      s.byUser.delete(userId);
      s.live--;
      n++;
    }
    if (n > 0) this.dirty = true;
    return n;
  }

  /** `auto`: whether ef is the size default (defaultEfSearch) rather than a chosen value. */
  setEfSearch(ef: number, auto: boolean): void {
    if (!Number.isInteger(ef) || ef < 1) throw new StoreError('INVALID_ARGUMENT', `efSearch must be a positive integer, got ${ef}`);
    this.state.manifest = { ...this.state.manifest, efSearch: ef, efSearchAuto: auto };
    this.dirty = true;
  }

  /**
   * Publishes the in-memory index as a new generation (written completely, checksummed, then
   * swapped in by renaming CURRENT). Returns the new manifest.
   */
  async save(info: { kind: 'build' | 'update'; storeAsOfMs: number }): Promise<IndexManifest> {
    const s = this.state;
    const fdir = featureIndexDir(this.storeDir, this.featureId);
    const { gen, dir } = newGenerationDir(fdir);
    // Synchronous write: no insert can interleave with hnswlib serialising its graph.
    s.index.writeIndexSync(join(dir, INDEX_FILE));
    writeFileSync(join(dir, LABELS_FILE), JSON.stringify(s.labels));
    const files = {
      [INDEX_FILE]: await fileSum(join(dir, INDEX_FILE)),
      [LABELS_FILE]: await fileSum(join(dir, LABELS_FILE)),
    };
    const manifest: IndexManifest = {
      ...s.manifest,
      count: s.live,
      slots: s.index.getCurrentCount(),
      capacity: s.index.getMaxElements(),
      generation: gen,
      kind: info.kind,
      builtAtMs: Date.now(),
      storeAsOfMs: info.storeAsOfMs,
      files,
    };
    writeFileSync(join(dir, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n');
    publishGeneration(fdir, gen);
    s.manifest = manifest;
    this.dirty = false;
    return manifest;
  }

  /**
   * Loads the live generation if it differs from the loaded one and swaps it in. Searches keep
   * running on the old generation until the new one is fully loaded and verified; a failed load
   * keeps the old one and throws. Concurrent calls share one load.
   */
  async reloadIfChanged(): Promise<boolean> {
    if (this.reloading) return this.reloading;
    this.reloading = (async () => {
      const cur = readCurrent(featureIndexDir(this.storeDir, this.featureId));
      if (!cur || cur.gen === this.state.manifest.generation) return false;
      const next = await loadCurrent(this.storeDir, this.featureId, this.opts);
      this.state = next;
      this.dirty = false;
      return true;
    })();
    try {
      return await this.reloading;
    } finally {
      this.reloading = undefined;
    }
  }

  private checkQuery(vector: ArrayLike<number>, dim: number): number[] {
    if (!vector || typeof vector.length !== 'number') throw new StoreError('INVALID_ARGUMENT', 'vector must be an array of numbers');
    if (vector.length !== dim) {
      throw new StoreError('INVALID_ARGUMENT', `vector has ${vector.length} dimensions; the index of feature ${this.featureId} has ${dim}`);
    }
    const out = new Array<number>(dim);
    let norm = 0;
    for (let i = 0; i < dim; i++) {
      const x = vector[i];
      if (typeof x !== 'number' || !Number.isFinite(x)) throw new StoreError('INVALID_ARGUMENT', `vector has a non-finite value at index ${i}`);
      out[i] = x;
      norm += x * x;
    }
    if (norm === 0) throw new StoreError('INVALID_ARGUMENT', 'vector is all zeros: cosine similarity is undefined');
    return out;
  }
}

function checkK(k: number): number {
  if (!Number.isInteger(k) || k < 1 || k > MAX_K) throw new StoreError('INVALID_ARGUMENT', `k must be an integer in 1..${MAX_K}, got ${k}`);
  return k;
}

function searchLoaded(s: Loaded, q: number[], k: number, ef?: number): Neighbor[] {
  const kk = Math.min(k, s.live);
  if (kk === 0) return [];
  if (ef !== undefined && (!Number.isInteger(ef) || ef < 1 || ef > 100_000)) {
    throw new StoreError('INVALID_ARGUMENT', `ef must be an integer in 1..100000, got ${ef}`);
  }
  s.index.setEf(Math.max(ef ?? s.manifest.efSearch, kk));
  const { neighbors, distances } = s.index.searchKnn(q, kk);
  const out: Neighbor[] = [];
  for (let i = 0; i < neighbors.length; i++) {
    const userId = s.labels[neighbors[i]];
    if (userId === null || userId === undefined) continue;
    out.push({ userId, score: 1 - distances[i] });
  }
  return out;
}

async function loadCurrent(storeDir: string, featureId: string, opts: OpenIndexOptions): Promise<Loaded> {
  const fdir = featureIndexDir(storeDir, featureId);
  const rebuild = `rebuild it with \`aetn index --store ${storeDir} --feature ${featureId}\``;
  // A writer may delete an old generation between our reading CURRENT and opening its files: retry.
  for (let attempt = 0; ; attempt++) {
    const cur = readCurrent(fdir);
    if (!cur) throw new StoreError('NOT_FOUND', `no index for feature ${featureId} under ${fdir}; build it with \`aetn index --store ${storeDir} --feature ${featureId}\``);
    try {
      return await loadGeneration(cur.dir, featureId, opts, rebuild);
    } catch (err) {
      const vanished = (err as NodeJS.ErrnoException).code === 'ENOENT' && !existsSync(cur.dir);
      if (!vanished || attempt >= 3) throw err;
    }
  }
}

async function loadGeneration(dir: string, featureId: string, opts: OpenIndexOptions, rebuild: string): Promise<Loaded> {
  const refuse = (why: string) => new StoreError('FAILED_PRECONDITION', `index ${dir} refused: ${why}; ${rebuild}`);
  let manifest: IndexManifest;
  try {
    manifest = JSON.parse(readFileSync(join(dir, MANIFEST_FILE), 'utf8')) as IndexManifest;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !existsSync(dir)) throw err;
    throw refuse(`unreadable manifest (${(err as Error).message})`);
  }
  if (manifest.format !== FORMAT || manifest.version !== VERSION) throw refuse(`not an ${FORMAT} v${VERSION} manifest`);
  if (manifest.featureId !== featureId) throw refuse(`it belongs to feature ${manifest.featureId}, not ${featureId}`);
  if (opts.dim !== undefined && manifest.dim !== opts.dim) throw refuse(`it has dimension ${manifest.dim}, the feature has ${opts.dim}`);
  // Verify before handing bytes to hnswlib: it trusts its file and can crash on a damaged one.
  for (const name of [INDEX_FILE, LABELS_FILE]) {
    const want = manifest.files?.[name];
    if (!want) throw refuse(`manifest has no checksum for ${name}`);
    let got;
    try {
      got = await fileSum(join(dir, name));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !existsSync(dir)) throw err;
      throw refuse(`${name} is unreadable (${(err as Error).message})`);
    }
    if (got.bytes !== want.bytes || got.sha256 !== want.sha256) throw refuse(`${name} does not match its checksum (damaged or replaced)`);
  }
  const labels = JSON.parse(readFileSync(join(dir, LABELS_FILE), 'utf8')) as (string | null)[];
  const index = new (hnswlib().HierarchicalNSW)('cosine', manifest.dim);
  await index.readIndex(join(dir, INDEX_FILE));
  if (index.getNumDimensions() !== manifest.dim) throw refuse(`hnsw file has dimension ${index.getNumDimensions()}`);
  if (index.getCurrentCount() !== manifest.slots) throw refuse(`hnsw file holds ${index.getCurrentCount()} points, manifest says ${manifest.slots}`);
  const byUser = new Map<string, number>();
  for (let i = 0; i < labels.length; i++) {
    const u = labels[i];
    if (u !== null) byUser.set(u, i);
  }
  if (byUser.size !== manifest.count) throw refuse(`label map has ${byUser.size} users, manifest says ${manifest.count}`);
  index.setEf(manifest.efSearch);
  return { manifest, index, labels, byUser, live: byUser.size };
}
