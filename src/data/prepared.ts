// Reading a prepared dataset (the output of `aetn prepare`). Shards are streamed one at a time, so
// training and embedding never hold the whole dataset in memory.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';
import { readLines } from './lines.js';
import { PREPARED_VERSION } from './prepare.js';
import { readShard } from './shards.js';
import type { CatalogEntry, NextWeekLabels, OutOfVocabApps, PreparedManifest, UserExample, Vocabulary } from './types.js';
import { checkVocabHash } from './vocab.js';

export interface Catalog {
  /** Every app of the input catalog, kept or dropped (with its drop reason). */
  apps: CatalogEntry[];
  byId: Map<string, CatalogEntry>;
  /** Catalog app id of a package name (or of an app id). */
  appOfPackage(pkg: string): string | undefined;
  categoryOf(appId: string): string | undefined;
}

export interface PreparedDataset {
  dir: string;
  manifest: PreparedManifest;
  vocab: Vocabulary;
  catalog: Catalog;
  /** Niche category names of a generated world ([] when the data carried no ground truth). */
  nicheCategories: string[];
  /** Look-alike target app ids of a generated world (kept out of the vocabulary). */
  lookalikeTargets: string[];
  /** Streams examples shard by shard (one shard, or all in shard order). Users are sorted by id within a shard. */
  examples(opts?: { shard?: number }): AsyncIterable<UserExample>;
  /** Weeks after the reference date that labels() covers (1 for datasets prepared before multi-week labels). */
  labelWeeks: number;
  /** Installs of the held-out weeks per user, all `labelWeeks` of them (users with at least one install; empty when the input had none). */
  labels(): AsyncIterable<NextWeekLabels>;
  /** Per user, the catalog apps outside the vocabulary (excluded or under the threshold) they installed or have. */
  outOfVocab(): AsyncIterable<OutOfVocabApps>;
}

function readJson<T>(path: string, what: string): T {
  if (!existsSync(path)) throw new UserError(`${what} is missing: ${path} (is this a directory written by \`aetn prepare\`?)`);
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch (err) {
    throw new UserError(`${what} ${path} is not valid JSON: ${(err as Error).message}`);
  }
}

async function* ndjson<T>(path: string): AsyncIterable<T> {
  if (!existsSync(path)) return;
  for (const [line, no] of readLines(path)) {
    if (line === '') continue;
    try {
      yield JSON.parse(line) as T;
    } catch {
      throw new UserError(`${path}: line ${no} is not valid JSON`);
    }
  }
}

export async function openPrepared(dir: string): Promise<PreparedDataset> {
  const manifest = readJson<PreparedManifest>(join(dir, 'manifest.json'), 'prepared manifest');
  if (manifest.format !== 'aetn-prepared') throw new UserError(`${dir}/manifest.json is not a prepared dataset manifest`);
  if (manifest.version !== PREPARED_VERSION) throw new UserError(`${dir}: prepared format version ${manifest.version}, this build reads ${PREPARED_VERSION}; re-run aetn prepare`);
  const vocab = readJson<Vocabulary>(join(dir, 'vocab.json'), 'vocabulary');
  if (vocab.hash !== manifest.vocabHash) throw new UserError(`${dir}: vocab.json (hash ${vocab.hash}) does not belong to this manifest (vocab hash ${manifest.vocabHash})`);
  if (checkVocabHash(vocab) !== vocab.hash) throw new UserError(`${dir}/vocab.json was modified: its content does not match its hash ${vocab.hash}`);
  const apps = readJson<CatalogEntry[]>(join(dir, 'catalog.json'), 'catalog');
  const byId = new Map(apps.map((a) => [a.appId, a]));
  const byPkg = new Map<string, string>();
  for (const a of apps) for (const p of a.packages) byPkg.set(p, a.appId);
  const catalog: Catalog = {
    apps,
    byId,
    appOfPackage: (p) => byPkg.get(p) ?? (byId.has(p) ? p : undefined),
    categoryOf: (id) => byId.get(id)?.category,
  };
  const shardPath = (i: number): string => join(dir, manifest.shards[i].file);
  return {
    dir,
    manifest,
    vocab,
    catalog,
    nicheCategories: manifest.truth?.nicheCategories ?? [],
    lookalikeTargets: manifest.truth?.lookalikeTargetAppIds ?? [],
    labelWeeks: manifest.labelWeeks ?? 1,
    async *examples(opts) {
      const list = opts?.shard === undefined ? manifest.shards.map((_, i) => i) : [opts.shard];
      for (const i of list) {
        if (!Number.isInteger(i) || i < 0 || i >= manifest.shards.length) throw new UserError(`no shard ${i}: the dataset has ${manifest.shards.length}`);
        const sh = readShard(shardPath(i));
        if (sh.users !== manifest.shards[i].users) throw new UserError(`${shardPath(i)} holds ${sh.users} users, the manifest says ${manifest.shards[i].users}`);
        yield* sh.examples();
      }
    },
    labels: () => ndjson<NextWeekLabels>(join(dir, 'labels.ndjson')),
    outOfVocab: () => ndjson<OutOfVocabApps>(join(dir, 'out-of-vocab.ndjson')),
  };
}

/** Users who installed (history) or have (retention) each of `appIds`, including apps outside the vocabulary. */
export async function installersOf(ds: PreparedDataset, appIds: string[]): Promise<Map<string, string[]>> {
  const want = new Map(appIds.map((a) => [a, [] as string[]]));
  const vocabWant = new Map<number, string>();
  for (const a of appIds) {
    const e = ds.catalog.byId.get(a);
    if (!e) throw new UserError(`app ${a} is not in the catalog`);
    if (e.vocabIndex >= 0) vocabWant.set(e.vocabIndex, a);
  }
  if (vocabWant.size > 0) {
    for await (const ex of ds.examples()) {
      const hit = new Set<string>();
      for (const arr of [ex.retention, ex.installs]) for (const i of arr) if (vocabWant.has(i)) hit.add(vocabWant.get(i)!);
      for (const a of hit) want.get(a)!.push(ex.userId);
    }
  }
  for await (const r of ds.outOfVocab()) for (const a of r.appIds) want.get(a)?.push(r.userId);
  return want;
}
