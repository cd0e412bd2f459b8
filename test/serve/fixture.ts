// A real store on disk (temp dir) with clustered vectors, a short-term feature for half the users,
// installers of one app and a built HNSW index; and a real server over loopback via services/serve.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddingStore } from '../../src/store/store.js';
import { buildIndex } from '../../src/index/build.js';
import { DEFAULTS, type AetnConfig } from '../../src/config/config.js';
import { runServe, type ServeProcess } from '../../services/serve.js';
import { mulberry32 } from '../../src/util/random.js';

export const KEYS = {
  ranker: 'ranker-key-0001',
  ads: 'ads-key-0000002',
  both: 'both-key-000003',
};
export const API_KEYS: Record<string, string[]> = {
  [KEYS.ranker]: ['vectors:read'],
  [KEYS.ads]: ['audience:write'],
  [KEYS.both]: ['vectors:read', 'audience:write'],
};

export interface Fixture {
  dir: string;
  storeDir: string;
  longId: string;
  shortId: string;
  longDim: number;
  shortDim: number;
  users: string[];
  long: Map<string, Float32Array>;
  short: Map<string, Float32Array>;
  cluster: Map<string, number>;
  appId: string;
  installers: string[];
  cleanup(): void;
}

export function gauss(r: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

/** `clusters` random unit centres; a user = centre + noise. */
export function clusteredVectors(n: number, dim: number, clusters: number, seed: number, noise = 0.35) {
  const r = mulberry32(seed);
  const centres = Array.from({ length: clusters }, () => Float32Array.from({ length: dim }, () => gauss(r)));
  for (const c of centres) {
    const norm = Math.hypot(...c);
    for (let i = 0; i < dim; i++) c[i]! /= norm;
  }
  const out: { cluster: number; vector: Float32Array }[] = [];
  for (let u = 0; u < n; u++) {
    const cl = u % clusters;
    out.push({ cluster: cl, vector: Float32Array.from(centres[cl]!, (x) => x + (noise / Math.sqrt(dim)) * gauss(r)) });
  }
  return out;
}

export async function buildFixture(opts: { users?: number; longDim?: number; shortDim?: number; clusters?: number } = {}): Promise<Fixture> {
  const n = opts.users ?? 3000;
  const longDim = opts.longDim ?? 16;
  const shortDim = opts.shortDim ?? 8;
  const dir = mkdtempSync(join(tmpdir(), 'aetn-serve-'));
  const storeDir = join(dir, 'store');
  const store = EmbeddingStore.open(storeDir);
  const longId = 'aetn-t1';
  const shortId = 'rt-t1';
  store.registerFeature({ featureId: longId, namespace: 'long', dim: longDim, variant: 'aetn', createdAtMs: 1_000 });
  store.registerFeature({ featureId: shortId, namespace: 'short', dim: shortDim, variant: 'realtime', createdAtMs: 2_000, baseFeatureId: longId });
  const users = Array.from({ length: n }, (_, i) => `user-${String(i).padStart(6, '0')}`);
  const data = clusteredVectors(n, longDim, opts.clusters ?? 12, 11);
  const long = new Map<string, Float32Array>();
  const cluster = new Map<string, number>();
  users.forEach((u, i) => {
    long.set(u, data[i]!.vector);
    cluster.set(u, data[i]!.cluster);
  });
  await store.putMany(longId, users.map((u) => ({ userId: u, vector: long.get(u)! })), { updatedAtMs: Date.now() - 60_000 });
  const r = mulberry32(5);
  const short = new Map<string, Float32Array>();
  users.forEach((u, i) => {
    if (i % 2 === 0) short.set(u, Float32Array.from({ length: shortDim }, () => gauss(r)));
  });
  await store.putMany(shortId, [...short].map(([userId, vector]) => ({ userId, vector })));
  const appId = 'com.example.niche';
  const installers = users.filter((u) => cluster.get(u) === 0).slice(0, 60);
  await store.putInstallers(appId, installers);
  // Kept apps (the look-alike's app features): two apps of the user's cluster out of six, and
  // three of 40 common apps.
  await store.putUserAppsMany(
    users.map((u) => {
      const c = cluster.get(u)!;
      const apps = [`c${c}-${Math.floor(r() * 6)}`, `c${c}-${Math.floor(r() * 6)}`];
      for (let k = 0; k < 3; k++) apps.push(`common-${Math.floor(r() * 40)}`);
      return [u, apps] as const;
    }),
  );
  await buildIndex(store, longId, { silent: true });
  await store.close();
  return {
    dir,
    storeDir,
    longId,
    shortId,
    longDim,
    shortDim,
    users,
    long,
    short,
    cluster,
    appId,
    installers,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

export function testConfig(storeDir: string, over: Partial<AetnConfig['serve']> = {}): AetnConfig {
  const cfg = structuredClone(DEFAULTS);
  cfg.storeDir = storeDir;
  // Audience floors at 1: the service tests use small seed sets and audiences (floors.test.ts
  // checks the real defaults).
  cfg.serve = { ...cfg.serve, host: '127.0.0.1', port: 0, apiKeys: API_KEYS, drainTimeoutMs: 5000, lookalikeMinSeeds: 1, lookalikeMinAudience: 1, ...over };
  cfg.metrics.port = null;
  return cfg;
}

export async function startServe(storeDir: string, over: Partial<AetnConfig['serve']> = {}, pollMs = 100): Promise<ServeProcess> {
  return runServe(testConfig(storeDir, over), { pollMs, searchThreads: 0 });
}
