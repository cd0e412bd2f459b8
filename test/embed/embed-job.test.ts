// The batch embed job end to end on the compiled CLI: a tiny world, a tiny trained model, a real
// LMDB store on disk. Checks determinism, feature updating (--active-since), resume after a stop,
// and that a second model lands beside the first under a new feature id.
import { beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openPrepared } from '../../src/data/prepared.js';
import { probeWebgpu } from '../../src/model/backend.js';
import { EmbeddingStore } from '../../src/store/store.js';
import { createClient } from '../../src/serve/client.js';
import { AudienceService } from '../../src/gen/aetn/v1/audience_pb.js';
import { runServe } from '../../services/serve.js';
import { testConfig, KEYS } from '../serve/fixture.js';

const gpu = await probeWebgpu();

const root = mkdtempSync(join(tmpdir(), 'aetn-embed-'));
// Async so the vitest worker keeps answering its runner while the CLI works.
const run = promisify(execFile);
async function cli(...args: string[]): Promise<string> {
  try {
    const { stdout } = await run('node', [join(process.cwd(), 'bin/aetn.js'), ...args], { cwd: root, env: { ...process.env, AETN_PROGRESS: '0', AETN_LOG_LEVEL: 'warn' } });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`aetn ${args[0]} failed: ${e.stderr || e.message}`);
  }
}
const embed = async (store: string, ...extra: string[]) =>
  JSON.parse((await cli('embed', '--model', 'm1', '--data', 'prep', '--store', store, '--batch-size', '64', '--json', ...extra)).trim().split('\n').pop()!);
const tiny = ['--epochs', '1', '--d-model', '16', '--heads', '2', '--d-ff', '32', '--d-emb', '8', '--batch-size', '100', '--lr', '1e-3', '--workers', '1'];

function snapshot(storeDir: string, featureId: string): Map<string, Float32Array> {
  const store = EmbeddingStore.open(storeDir, { create: false });
  try {
    const out = new Map<string, Float32Array>();
    for (const e of store.iterate(featureId)) out.set(e.userId, e.vector.slice());
    return out;
  } finally {
    void store.close();
  }
}

beforeAll(async () => {
  await cli('generate', '--users', '400', '--seed', '5', '--apps', '400', '--topics', '8', '--out', 'raw');
  await cli('prepare', '--in', 'raw', '--out', 'prep', '--shards', '3', '--min-installs', '2');
  await cli('train', '--data', 'prep', '--out', 'm1', '--seed', '1', ...tiny);
}, 300_000);

describe('aetn embed', () => {
  it('embeds every user, deterministically, under the model feature id', async () => {
    const ds = await openPrepared(join(root, 'prep'));
    const r1 = await embed('st1');
    expect(r1.users).toBe(ds.manifest.numUsers);
    expect(r1.dim).toBe(8);
    const a = snapshot(join(root, 'st1'), r1.featureId);
    expect(a.size).toBe(ds.manifest.numUsers);
    for (const v of a.values()) expect(v.every(Number.isFinite)).toBe(true);
    // Same model, same inputs: bit-identical vectors (a second store, and a re-run over the first).
    const r2 = await embed('st2');
    expect(r2.featureId).toBe(r1.featureId);
    const b = snapshot(join(root, 'st2'), r1.featureId);
    for (const [u, v] of a) expect(Buffer.from(b.get(u)!.buffer).equals(Buffer.from(v.buffer))).toBe(true);
    // Installer lists for look-alike seeds cover in-vocabulary apps.
    const store = EmbeddingStore.open(join(root, 'st1'), { create: false });
    try {
      expect(store.appKeys().length).toBeGreaterThan(0);
      expect(r1.installerApps).toBe(store.appKeys().length);
    } finally {
      await store.close();
    }
  });

  it('--active-since embeds only users active since that day', async () => {
    const ds = await openPrepared(join(root, 'prep'));
    const since = new Date(Date.parse(`${ds.manifest.referenceDate}T00:00:00Z`) - 14 * 86_400_000).toISOString().slice(0, 10);
    const sinceMs = Date.parse(`${since}T00:00:00Z`);
    let active = 0;
    for await (const ex of ds.examples()) if (ex.lastActiveMs >= sinceMs) active++;
    expect(active).toBeGreaterThan(0);
    expect(active).toBeLessThan(ds.manifest.numUsers);
    const r = await embed('st3', '--active-since', since);
    expect(r.users).toBe(active);
    expect(r.skippedInactive).toBe(ds.manifest.numUsers - active);
    expect(snapshot(join(root, 'st3'), r.featureId).size).toBe(active);
    await expect(cli('embed', '--model', 'm1', '--data', 'prep', '--store', 'st3', '--active-since', '2025-13-40')).rejects.toThrow(/YYYY-MM-DD/);
  });

  it('a stopped run resumes where it stopped and ends with the same vectors', async () => {
    const full = snapshot(join(root, 'st1'), (await embed('st1')).featureId);
    const part = await embed('st4', '--max-users', '150');
    expect(part.users).toBe(150);
    const rest = await embed('st4');
    expect(rest.resumedFrom).not.toBeNull();
    expect(part.users + rest.users).toBe(full.size);
    const resumed = snapshot(join(root, 'st4'), part.featureId);
    expect(resumed.size).toBe(full.size);
    for (const [u, v] of full) expect(Buffer.from(resumed.get(u)!.buffer).equals(Buffer.from(v.buffer))).toBe(true);
  });

  it('overlapped or one stage after the other (the default on wasm): the same vectors, stopped and resumed across both', async () => {
    const off = await embed('st1');
    expect(off.overlap).toBe(false);
    expect(off.batchSize).toBe(64);
    const full = snapshot(join(root, 'st1'), off.featureId);
    const on = await embed('st6', '--overlap');
    expect(on.overlap).toBe(true);
    expect(on.users).toBe(full.size);
    const same = (dir: string) => {
      const got = snapshot(join(root, dir), on.featureId);
      expect(got.size).toBe(full.size);
      for (const [u, v] of full) expect(Buffer.from(got.get(u)!.buffer).equals(Buffer.from(v.buffer))).toBe(true);
    };
    same('st6');
    // A run stopped without overlap resumes with it (and the other way round) at the same place.
    const part = await embed('st7', '--no-overlap', '--max-users', '150');
    expect(part.users).toBe(150);
    const rest = await embed('st7', '--overlap');
    expect(rest.resumedFrom).not.toBeNull();
    expect(part.users + rest.users).toBe(full.size);
    same('st7');
    const part2 = await embed('st8', '--overlap', '--max-users', '100');
    const rest2 = await embed('st8', '--no-overlap');
    expect(part2.users + rest2.users).toBe(full.size);
    same('st8');
    // The waits are reported per stage.
    for (const r of [on, off]) for (const k of ['read', 'embed', 'write']) expect(r.waited[k]).toBeGreaterThanOrEqual(0);
  });

  it.skipIf(!gpu.ok)(`on webgpu: overlapped and not, the same vectors (${gpu.detail})`, async () => {
    // Overlapped by default on webgpu (runtime.embedOverlap 'auto').
    const on = await embed('stg1', '--backend', 'webgpu');
    const off = await embed('stg2', '--backend', 'webgpu', '--no-overlap');
    expect([on.backend, on.overlap, off.overlap]).toEqual(['webgpu', true, false]);
    const a = snapshot(join(root, 'stg1'), on.featureId);
    const b = snapshot(join(root, 'stg2'), on.featureId);
    expect(a.size).toBe(on.users);
    for (const [u, v] of a) expect(Buffer.from(b.get(u)!.buffer).equals(Buffer.from(v.buffer))).toBe(true);
  });

  it('--shard i/n: the union of the shards, written into one store, equals the unsharded run bit for bit; each shard resumes', async () => {
    const full = snapshot(join(root, 'st1'), (await embed('st1')).featureId);
    const part = await embed('st5', '--shard', '1/3', '--max-users', '20');
    expect(part.users).toBe(20);
    const results = [await embed('st5', '--shard', '0/3'), await embed('st5', '--shard', '1/3'), await embed('st5', '--shard', '2/3')];
    expect(results[1].resumedFrom).not.toBeNull();
    expect(results.map((r) => r.userShard)).toEqual(['0/3', '1/3', '2/3']);
    // every user in exactly one shard: the shard's own users plus the others' make the whole dataset
    for (const r of results) expect(r.otherShards).toBeGreaterThan(0);
    expect(results[0].users + part.users + results[1].users + results[2].users).toBe(full.size);
    expect(results[0].users + results[0].otherShards).toBe(full.size);
    // only shard 0 writes the installer lists (they cover every user)
    expect(results[0].installerApps).toBeGreaterThan(0);
    expect(results[1].installerApps + results[2].installerApps).toBe(0);
    const union = snapshot(join(root, 'st5'), part.featureId);
    expect(union.size).toBe(full.size);
    for (const [u, v] of full) expect(Buffer.from(union.get(u)!.buffer).equals(Buffer.from(v.buffer))).toBe(true);
    for (const bad of ['3/3', '1/0', 'x', '1/2/3']) await expect(cli('embed', '--model', 'm1', '--data', 'prep', '--store', 'st6', '--shard', bad)).rejects.toThrow(/--shard must be i\/n/);
  });

  it('a new model gets a new feature id beside the old one; refuses another vocabulary', async () => {
    await cli('train', '--data', 'prep', '--out', 'm2', '--seed', '2', ...tiny);
    const old = await embed('st1');
    const r = JSON.parse((await cli('embed', '--model', 'm2', '--data', 'prep', '--store', 'st1', '--json')).trim().split('\n').pop()!);
    expect(r.featureId).not.toBe(old.featureId);
    const list = await cli('store', 'list', '--store', 'st1');
    expect(list).toContain(old.featureId);
    expect(list).toContain(r.featureId);
    // A dataset with another vocabulary is refused before anything is written.
    await cli('generate', '--users', '300', '--seed', '9', '--apps', '450', '--topics', '8', '--out', 'raw2');
    await cli('prepare', '--in', 'raw2', '--out', 'prep2', '--shards', '2', '--min-installs', '2');
    await expect(cli('embed', '--model', 'm1', '--data', 'prep2', '--store', 'st5')).rejects.toThrow(/vocab/i);
  });
});

describe('aetn embed --method svd (the classical feature kind)', () => {
  const svd = async (store: string, ...extra: string[]) =>
    JSON.parse((await cli('embed', '--method', 'svd', '--data', 'prep', '--store', store, '--dim', '16', '--batch-size', '64', '--json', ...extra)).trim().split('\n').pop()!);

  it('writes unit TF-IDF + SVD vectors of every user, deterministically, as a feature labelled classical', async () => {
    const ds = await openPrepared(join(root, 'prep'));
    const r1 = await svd('sv1');
    expect(r1.method).toBe('svd');
    expect(r1.featureId).toMatch(/^svd-16-[0-9a-f]{8}$/);
    expect(r1.dim).toBe(16);
    expect(r1.users + r1.skippedEmpty).toBe(ds.manifest.numUsers);
    expect(r1.users).toBeGreaterThan(0.95 * ds.manifest.numUsers);
    expect(r1.explainedShare).toBeGreaterThan(0);
    expect(r1.explainedShare).toBeLessThan(1);
    const a = snapshot(join(root, 'sv1'), r1.featureId);
    expect(a.size).toBe(r1.users);
    for (const v of a.values()) expect(Math.hypot(...v)).toBeCloseTo(1, 5);
    const r2 = await svd('sv2');
    expect(r2.featureId).toBe(r1.featureId);
    const b = snapshot(join(root, 'sv2'), r1.featureId);
    for (const [u, v] of a) expect(Buffer.from(b.get(u)!.buffer).equals(Buffer.from(v.buffer))).toBe(true);
    // Another seed: another feature id, other vectors.
    const r3 = await svd('sv2', '--seed', '2');
    expect(r3.featureId).not.toBe(r1.featureId);
    const store = EmbeddingStore.open(join(root, 'sv1'), { create: false });
    try {
      const f = store.getFeature(r1.featureId)!;
      expect(f.variant).toBe('tfidf-svd');
      expect(f.namespace).toBe('long');
      expect(f.meta).toMatchObject({ classical: true, method: 'svd', svdSeed: 1 });
      expect(String(f.meta!.what)).toMatch(/TF-IDF.*SVD/);
      // Kept apps and installer lists, as for a model's feature (the look-alike reads them).
      expect(store.userAppsCount()).toBe(ds.manifest.numUsers);
      // Apps ever installed (the look-alike's history member): a list for each user whose
      // history holds more than they keep (this world has install events, so some do), always a
      // superset of the kept apps; per-app counts over every user.
      const everyone: string[] = [];
      for await (const ex of ds.examples()) everyone.push(ex.userId);
      const kept = store.userAppsMany(everyone);
      const ever = store.userEverAppsMany(everyone);
      const withList = ever.filter((l) => l !== undefined).length;
      expect(withList).toBeGreaterThan(0);
      expect(store.userEverAppsCount()).toBe(withList);
      const everBy = new Map<string, number>();
      ever.forEach((l, i) => {
        const k = new Set(kept[i] ?? []);
        if (l) {
          expect(l.length).toBeGreaterThan(k.size);
          for (const x of k) expect(l).toContain(x);
        }
        for (const x of l ?? k) everBy.set(x, (everBy.get(x) ?? 0) + 1);
      });
      const everApps = [...everBy.keys()];
      expect(store.appEverUsersMany(everApps)).toEqual(everApps.map((x) => everBy.get(x)));
      expect(r1.installerApps).toBe(store.appKeys().length);
      // The vectors carry the users' apps: a user's nearest neighbour keeps far more of the same
      // apps than a random other user does.
      const ids = [...a.keys()];
      const apps = store.userAppsMany(ids).map((l) => new Set(l ?? []));
      const jac = (x: Set<string>, y: Set<string>) => {
        let i = 0;
        for (const e of x) if (y.has(e)) i++;
        return i / Math.max(1, x.size + y.size - i);
      };
      let nn = 0;
      let rnd = 0;
      for (let i = 0; i < 100; i++) {
        const v = a.get(ids[i]!)!;
        let best = -2;
        let bj = 0;
        ids.forEach((u, j) => {
          if (j === i) return;
          const w = a.get(u)!;
          let d = 0;
          for (let t = 0; t < v.length; t++) d += v[t]! * w[t]!;
          if (d > best) (best = d), (bj = j);
        });
        nn += jac(apps[i]!, apps[bj]!);
        rnd += jac(apps[i]!, apps[(i + 137) % ids.length]!);
      }
      expect(nn).toBeGreaterThan(2 * rnd);
    } finally {
      await store.close();
    }
  });

  it('is indexed and served like a model feature: neighbours and a look-alike over gRPC', async () => {
    const r = await svd('sv4');
    await cli('index', '--store', 'sv4', '--feature', r.featureId);
    const store = EmbeddingStore.open(join(root, 'sv4'), { create: false });
    const apps = store.appKeys();
    const ids = [...store.iterate(r.featureId)].map((e) => e.userId);
    const app = apps.map((k) => ({ k, n: store.installersOf(k)?.length ?? 0 })).filter((x) => x.n >= 10 && x.n <= 60)[0]!;
    await store.close();
    expect(app).toBeDefined();
    const srv = await runServe(testConfig(join(root, 'sv4')), { pollMs: 100, searchThreads: 0 });
    const au = createClient(AudienceService, srv.server.address, { apiKey: KEYS.ads });
    try {
      const nb = await au.searchNeighbors({ featureId: r.featureId, query: { case: 'userId', value: ids[0]! }, k: 5 });
      expect(nb.featureId).toBe(r.featureId);
      expect(nb.neighbors.length).toBe(5);
      expect(nb.neighbors.map((x) => x.userId)).not.toContain(ids[0]);
      const out = [];
      for await (const m of au.extendLookalike({ featureId: r.featureId, seeds: { case: 'seedAppId', value: app.k }, audienceSize: 50 })) out.push(m);
      const users = out.flatMap((m) => (m.message.case === 'chunk' ? m.message.value.users : []));
      const summary = out.find((m) => m.message.case === 'summary')!.message.value as { featureId: string; audienceSize: number; scoringFeatures: string };
      expect(summary.featureId).toBe(r.featureId);
      expect(users.length).toBe(50);
      expect(summary.scoringFeatures).toBe('ensemble');
    } finally {
      au.close();
      await srv.stop();
    }
  });

  it('refuses the flags of a model run and bad values, with clear errors', async () => {
    await expect(cli('embed', '--method', 'svd', '--model', 'm1', '--data', 'prep', '--store', 'sv5')).rejects.toThrow(/--method svd takes no --model/);
    await expect(cli('embed', '--method', 'svd', '--active-since', '2025-01-01', '--data', 'prep', '--store', 'sv5')).rejects.toThrow(/no --active-since/);
    await expect(cli('embed', '--method', 'svd', '--dim', '0', '--data', 'prep', '--store', 'sv5')).rejects.toThrow(/--dim/);
    await expect(cli('embed', '--method', 'pca', '--data', 'prep', '--store', 'sv5')).rejects.toThrow(/--method must be model or svd/);
    await expect(cli('embed', '--data', 'prep', '--store', 'sv5')).rejects.toThrow(/--model <dir> is required/);
    await expect(cli('embed', '--model', 'm1', '--dim', '8', '--data', 'prep', '--store', 'sv5')).rejects.toThrow(/for --method svd/);
  });
});
