// On-disk layout of the HNSW indexes, one directory per feature id:
//
//   <store>/index/<featureId>/CURRENT          name of the live generation ("gen-000007")
//   <store>/index/<featureId>/gen-000007/      index.hnsw, labels.json, manifest.json
//
// A build or an incremental update writes a complete new generation directory (files fsync'd,
// checksums in the manifest) and then replaces CURRENT by rename, which is atomic: a reader sees
// the old generation or the new one, never a half-written one. The previous generation is kept so
// a reader that read CURRENT just before the swap can still load it.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, fsyncSync, openSync, closeSync, readdirSync, readFileSync, rmSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { StoreError, checkFeatureId } from '../store/errors.js';
import { writeFileAtomic } from '../util/fs.js';

export const INDEX_FILE = 'index.hnsw';
export const LABELS_FILE = 'labels.json';
export const MANIFEST_FILE = 'manifest.json';
export const FORMAT = 'aetn-hnsw';
export const VERSION = 1;

export interface FileSum {
  bytes: number;
  sha256: string;
}

export interface IndexParams {
  /** Graph degree (hnswlib M). */
  m: number;
  efConstruction: number;
  /** Default search beam width; a query may ask for another. */
  efSearch: number;
  /**
   * True when efSearch is defaultEfSearch(count) rather than a chosen value: updates and
   * rebuilds then re-derive it from the new size. Absent in manifests written before it existed.
   */
  efSearchAuto?: boolean;
}

export interface IndexManifest extends IndexParams {
  format: typeof FORMAT;
  version: number;
  featureId: string;
  dim: number;
  space: 'cosine';
  /** Users searchable (live points). */
  count: number;
  /** Points held by hnswlib, deleted ones included (reused by later inserts). */
  slots: number;
  /** hnswlib capacity (maxElements). */
  capacity: number;
  generation: number;
  kind: 'build' | 'update';
  builtAtMs: number;
  /** Store vectors updated at or after this time may be newer than the index (incremental updates re-read them). */
  storeAsOfMs: number;
  files: Record<string, FileSum>;
}

export const DEFAULT_PARAMS: IndexParams = { m: 16, efConstruction: 200, efSearch: 96 };

/**
 * The efSearch an index gets when none is given: recall at a fixed ef falls as the index grows.
 * Measured (bench/index-hnsw.ts, clustered 128-d, M 16, efConstruction 200): recall@10 at ef 96
 * was 0.995 at 100k and 0.9975 at 200k but 0.987 at 1M, where ef 128 gave 0.9895, ef 160 0.9922,
 * ef 192 0.9972 (293x the fastest exact search) and ef 256 no more (0.9972, 242x). So 96 below
 * 500k users and 192 from there on.
 */
export function defaultEfSearch(count: number): number {
  return count < 500_000 ? DEFAULT_PARAMS.efSearch : 192;
}

export function featureIndexDir(storeDir: string, featureId: string): string {
  return join(storeDir, 'index', checkFeatureId(featureId));
}

export function genName(gen: number): string {
  return `gen-${String(gen).padStart(6, '0')}`;
}

/** The live generation, or undefined when no index was built yet. */
export function readCurrent(featureDir: string): { gen: number; dir: string } | undefined {
  const p = join(featureDir, 'CURRENT');
  if (!existsSync(p)) return undefined;
  const name = readFileSync(p, 'utf8').trim();
  const m = /^gen-(\d{6,})$/.exec(name);
  if (!m) throw new StoreError('FAILED_PRECONDITION', `index pointer ${p} is damaged (${JSON.stringify(name.slice(0, 40))}); rebuild with \`aetn index\``);
  return { gen: Number(m[1]), dir: join(featureDir, name) };
}

/** Creates the next generation directory (mkdir is exclusive, so two writers never share one). */
export function newGenerationDir(featureDir: string): { gen: number; dir: string } {
  mkdirSync(featureDir, { recursive: true });
  let gen = existingGenerations(featureDir).reduce((a, b) => Math.max(a, b), 0) + 1;
  for (;;) {
    const dir = join(featureDir, genName(gen));
    try {
      mkdirSync(dir);
      return { gen, dir };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      gen++;
    }
  }
}

export function existingGenerations(featureDir: string): number[] {
  if (!existsSync(featureDir)) return [];
  return readdirSync(featureDir)
    .map((n) => /^gen-(\d{6,})$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
}

/** Makes `gen` live, then deletes generations older than the one it replaces. */
export function publishGeneration(featureDir: string, gen: number): void {
  fsyncPath(join(featureDir, genName(gen)));
  const prev = readCurrentSafe(featureDir);
  writeFileAtomic(join(featureDir, 'CURRENT'), genName(gen) + '\n');
  fsyncPath(featureDir);
  const keep = new Set([gen, prev ?? gen]);
  for (const g of existingGenerations(featureDir)) {
    // Only older generations: a newer one may be being written by another process right now.
    if (g < gen && !keep.has(g)) rmSync(join(featureDir, genName(g)), { recursive: true, force: true });
  }
}

function readCurrentSafe(featureDir: string): number | undefined {
  try {
    return readCurrent(featureDir)?.gen;
  } catch {
    return undefined;
  }
}

export function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export async function fileSum(path: string): Promise<FileSum> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { bytes, sha256: hash.digest('hex') };
}
