// The Cassandra store backend against a real single Cassandra 5.0 node (test/cassandra/cluster.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CassandraCluster, cassandraAvailable } from '../cassandra/cluster.js';
import { CassandraStore, BUCKETS, bucketOf, connectCassandra, ensureSchema, type CassandraOptions } from '../../src/store/cassandra.js';
import { EmbeddingStore } from '../../src/store/store.js';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const avail = cassandraAvailable();
let cluster: CassandraCluster | undefined;
let opts: CassandraOptions;
let store: CassandraStore;

beforeAll(async () => {
  if (!avail.ok) return;
  cluster = await CassandraCluster.start({ nodes: 1 });
  opts = { contactPoints: cluster.contactPoints, localDataCenter: 'datacenter1', keyspace: 'aetn_store_test', replicationFactor: 1, consistency: 'localQuorum', requestTimeoutMs: 30_000 };
  store = await CassandraStore.open(opts);
}, 300_000);

afterAll(async () => {
  await store?.close();
  await cluster?.stop();
});

function vec(dim: number, seed: number): Float32Array {
  const v = new Float32Array(dim);
  for (let i = 0; i < dim; i++) v[i] = Math.sin(seed * 12.9898 + i * 78.233) * 0.5;
  return v;
}

describe.skipIf(!avail.ok)('Cassandra store', () => {
  it('creates its schema idempotently and refuses a reader of a keyspace that was never set up', async () => {
    const c = await connectCassandra(opts);
    try {
      await ensureSchema(c, opts); // a second time: no error, nothing changes
      const ks = c.metadata.keyspaces['aetn_store_test'] as unknown as { strategyOptions: Record<string, string> };
      expect(ks.strategyOptions).toMatchObject({ datacenter1: '1' });
      const tables = (await c.execute(`SELECT table_name FROM system_schema.tables WHERE keyspace_name = 'aetn_store_test'`)).rows.map((r) => r.get('table_name') as string);
      expect(tables.sort()).toEqual(['app_ever_users', 'app_users', 'features', 'forgotten', 'index_current', 'index_files', 'installers', 'meta', 'runs', 'states', 'user_apps', 'user_ever_apps', 'vectors']);
    } finally {
      await c.shutdown();
    }
    await expect(CassandraStore.open({ ...opts, keyspace: 'aetn_never_made' }, { create: false })).rejects.toThrow(/no aetn store in keyspace aetn_never_made/);
  });

  it('refuses a node that is not there with a clear error', async () => {
    await expect(CassandraStore.open({ ...opts, contactPoints: ['127.0.0.1:1'], requestTimeoutMs: 2000 })).rejects.toThrow(/cannot reach Cassandra at 127\.0\.0\.1:1/);
  });

  it('round-trips vectors bit for bit, like the LMDB store, and scans every bucket', async () => {
    const dim = 8;
    const n = 3000;
    await store.registerFeature({ featureId: 'f-rt', namespace: 'long', dim, variant: 'aetn' });
    const entries = Array.from({ length: n }, (_, i) => ({ userId: `u${i}`, vector: vec(dim, i) }));
    expect(await store.putMany('f-rt', entries, { runState: { runId: 'run-1', state: { next: n } } })).toBe(0);
    expect(await store.getRunState('run-1')).toEqual({ next: n });

    const dir = mkdtempSync(join(tmpdir(), 'aetn-cass-lmdb-'));
    const lmdb = EmbeddingStore.open(join(dir, 'store'));
    try {
      lmdb.registerFeature({ featureId: 'f-rt', namespace: 'long', dim, variant: 'aetn' });
      await lmdb.putMany('f-rt', entries);
      const ids = ['u5', 'missing', 'u2999', 'u5', 'u0'];
      const a = await store.getMany('f-rt', ids);
      const b = lmdb.getMany('f-rt', ids);
      expect(a.map((x) => x && Buffer.from(x.vector.buffer).toString('hex'))).toEqual(b.map((x) => x && Buffer.from(x.vector.buffer).toString('hex')));
      expect(a[1]).toBeUndefined();
    } finally {
      await lmdb.close();
      rmSync(dir, { recursive: true, force: true });
    }
    const seen = new Set<string>();
    for await (const e of store.iterate('f-rt')) {
      expect(e.vector).toEqual(vec(dim, Number(e.userId.slice(1))));
      seen.add(e.userId);
    }
    expect(seen.size).toBe(n);
    expect(await store.countRows('f-rt')).toBe(n);
    // Users spread over the buckets (fnv1a32 % 1024).
    expect(new Set(entries.map((e) => bucketOf(e.userId))).size).toBeGreaterThan(BUCKETS * 0.9);
  });

  it('keeps the feature registry rules: re-registering is a no-op, a conflict is refused', async () => {
    await store.registerFeature({ featureId: 'f-reg', namespace: 'long', dim: 4, variant: 'aetn' });
    await expect(store.registerFeature({ featureId: 'f-reg', namespace: 'long', dim: 4, variant: 'aetn' })).resolves.toMatchObject({ featureId: 'f-reg', dim: 4 });
    await expect(store.registerFeature({ featureId: 'f-reg', namespace: 'long', dim: 8, variant: 'aetn' })).rejects.toThrow(/already registered as long\/aetn\/4-d/);
    await expect(store.registerFeature({ featureId: 'bad id!', namespace: 'long', dim: 4, variant: 'aetn' })).rejects.toThrow(/invalid feature id/);
    await expect(store.putMany('f-reg', [{ userId: 'x', vector: new Float32Array(3) }])).rejects.toThrow(/has 3 dimensions; feature f-reg has 4/);
    await expect(store.putMany('f-reg', [{ userId: 'x', vector: new Float32Array([1, NaN, 0, 0]) }])).rejects.toThrow(/non-finite/);
    await expect(store.getMany('nope', ['x'])).rejects.toThrow(/unknown feature id nope/);
    expect((await store.features()).map((f) => f.featureId)).toEqual(expect.arrayContaining(['f-reg', 'f-rt']));
  });

  it('stores installers, kept apps, apps ever installed and their counts', async () => {
    await store.putInstallersMany([['app1', ['u1', 'u2', 'u1']]]);
    expect(await store.installersOf('app1')).toEqual(['u1', 'u2']);
    expect(await store.installersOf('app-none')).toBeUndefined();
    await store.putUserAppsMany([['u1', ['app1', 'app2']]]);
    await store.putAppUsersMany([['app1', 2]]);
    expect(await store.userAppsMany(['u1', 'u9'])).toEqual([['app1', 'app2'], undefined]);
    expect(await store.appUsersMany(['app1', 'app9'])).toEqual([2, undefined]);
    expect(await store.userAppsCount()).toBe(1);
    await expect(store.putAppUsersMany([['app1', -1]])).rejects.toThrow(/non-negative integer/);
    // The apps users ever installed (the look-alike's history member), kept apart from the kept apps.
    expect(await store.userEverAppsCount()).toBe(0);
    await store.putUserEverAppsMany([['u1', ['app1', 'app2', 'app3', 'app3']]]);
    await store.putAppEverUsersMany([['app3', 1]]);
    expect(await store.userEverAppsMany(['u1', 'u9'])).toEqual([['app1', 'app2', 'app3'], undefined]);
    expect(await store.appEverUsersMany(['app3', 'app1'])).toEqual([1, undefined]);
    expect(await store.userAppsMany(['u1'])).toEqual([['app1', 'app2']]);
    expect(await store.userEverAppsCount()).toBe(1);
    await expect(store.putAppEverUsersMany([['app3', 1.5]])).rejects.toThrow(/non-negative integer/);
  });

  it('keeps index generations as chunked files and flips the live one only from the generation it replaces', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'aetn-cass-files-'));
    try {
      const src = join(dir, 'in.bin');
      const bytes = Buffer.from(Array.from({ length: 5500 }, (_, i) => (i * 7) % 251));
      writeFileSync(src, bytes);
      expect(await store.putIndexFile('f-idx', 1, 'index.hnsw', src, 1000)).toBe(6);
      expect(await store.getIndexFile('f-idx', 1, 'index.hnsw', join(dir, 'out.bin'))).toBe(true);
      expect(readFileSync(join(dir, 'out.bin')).equals(bytes)).toBe(true);
      expect(await store.getIndexFile('f-idx', 1, 'labels.json', join(dir, 'none.bin'))).toBe(false);
      expect(await store.maxIndexGeneration('f-idx', 0)).toBe(1);
      expect(await store.indexCurrent('f-idx')).toBeUndefined();
      expect(await store.flipIndexCurrent('f-idx', undefined, 1, '{"count":1}')).toBe(true);
      expect(await store.flipIndexCurrent('f-idx', undefined, 1, '{"count":1}')).toBe(false); // already published
      expect(await store.flipIndexCurrent('f-idx', 1, 2, '{"count":2}')).toBe(true);
      expect(await store.flipIndexCurrent('f-idx', 1, 3, '{"count":3}')).toBe(false); // a stale build loses
      expect(await store.indexCurrent('f-idx')).toEqual({ generation: 2, manifest: '{"count":2}' });
      await store.deleteIndexGeneration('f-idx', 1);
      expect(await store.maxIndexGeneration('f-idx', 0)).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
