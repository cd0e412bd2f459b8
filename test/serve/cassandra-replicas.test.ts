// The cluster mode's store path end to end, with real parts: one real Cassandra 5.0 node
// (test/cassandra/cluster.ts), the compiled CLI (`aetn embed / index / serve --store-backend
// cassandra`), two stateless serving replicas as separate processes, the embedded mode (LMDB) as
// a third process, and a real gRPC client (one channel per server, and one round-robin channel
// over both replicas).
//
// It checks: sharded embedding into Cassandra (one shard stopped and resumed) gives the same bits as
// the unsharded LMDB run; the index built from Cassandra is the same file as the one built from
// LMDB; both replicas answer vectors, neighbours and look-alike audiences exactly as the embedded
// mode does on the same vectors; a new feature with a new index generation becomes the default
// on both replicas within a poll.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CassandraCluster, cassandraAvailable } from '../cassandra/cluster.js';
import { CassandraStore, type CassandraOptions } from '../../src/store/cassandra.js';
import { EmbeddingStore } from '../../src/store/store.js';
import { featureIndexDir, readCurrent } from '../../src/index/layout.js';
import { createClient, type TypedClient } from '../../src/serve/client.js';
import { AudienceService } from '../../src/gen/aetn/v1/audience_pb.js';
import { UserVectorService, VectorView } from '../../src/gen/aetn/v1/user_vector_pb.js';

const avail = cassandraAvailable();
const root = mkdtempSync(join(tmpdir(), 'aetn-replicas-'));
const run = promisify(execFile);
const KEYSPACE = 'aetn_replicas';
let cluster: CassandraCluster | undefined;
let cass: CassandraOptions;
let env: NodeJS.ProcessEnv;
const procs: ChildProcess[] = [];

async function cli(extraEnv: NodeJS.ProcessEnv, ...args: string[]): Promise<string> {
  try {
    const { stdout } = await run('node', [join(process.cwd(), 'bin/aetn.js'), ...args], { cwd: root, env: { ...process.env, AETN_PROGRESS: '0', AETN_LOG_LEVEL: 'warn', ...extraEnv } });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`aetn ${args.join(' ')} failed: ${e.stderr || e.message}`);
  }
}
const lastJson = (s: string) => JSON.parse(s.trim().split('\n').pop()!) as Record<string, unknown>;
const tiny = ['--epochs', '1', '--d-model', '16', '--heads', '2', '--d-ff', '32', '--d-emb', '8', '--batch-size', '100', '--lr', '1e-3', '--workers', '1'];

/** Starts `aetn serve` as a process; resolves with its address once it listens. */
async function serve(extraEnv: NodeJS.ProcessEnv, ...args: string[]): Promise<string> {
  const p = spawn('node', [join(process.cwd(), 'bin/aetn.js'), 'serve', '--port', '0', '--insecure-no-auth', '--metrics-port', 'off', ...args], {
    cwd: root,
    env: { ...process.env, AETN_LOG_LEVEL: 'warn', AETN_LOOKALIKE_MIN_SEEDS: '1', AETN_LOOKALIKE_MIN_AUDIENCE: '1', ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  procs.push(p);
  let out = '';
  let errOut = '';
  p.stderr!.on('data', (d: Buffer) => (errOut += d.toString()));
  return new Promise((resolve, reject) => {
    p.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (\S+) /.exec(out);
      if (m) resolve(m[1]!);
    });
    p.once('exit', (code) => reject(new Error(`aetn serve exited (${code}): ${errOut}`)));
  });
}

beforeAll(async () => {
  if (!avail.ok) return;
  // The node starts while the tiny world is generated and a tiny model trained.
  const started = CassandraCluster.start({ nodes: 1 });
  started.catch(() => undefined);
  await cli({}, 'generate', '--users', '400', '--seed', '5', '--apps', '400', '--topics', '8', '--out', 'raw');
  await cli({}, 'prepare', '--in', 'raw', '--out', 'prep', '--shards', '3', '--min-installs', '2');
  await cli({}, 'train', '--data', 'prep', '--out', 'm1', '--seed', '1', ...tiny);
  cluster = await started;
  cass = { contactPoints: cluster.contactPoints, localDataCenter: 'datacenter1', keyspace: KEYSPACE, replicationFactor: 1, consistency: 'localQuorum', requestTimeoutMs: 30_000 };
  env = {
    AETN_STORE_BACKEND: 'cassandra',
    AETN_CASSANDRA_CONTACT_POINTS: cluster.contactPoints.join(','),
    AETN_CASSANDRA_KEYSPACE: KEYSPACE,
    AETN_CASSANDRA_REPLICATION_FACTOR: '1',
    AETN_CASSANDRA_REQUEST_TIMEOUT_MS: '30000',
  };
}, 420_000);

afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGTERM');
  await Promise.all(procs.map((p) => (p.exitCode === null && p.signalCode === null ? new Promise((r) => p.once('exit', r)) : undefined)));
  await cluster?.stop();
  rmSync(root, { recursive: true, force: true });
});

let featureId = '';
let replicaA = '';
let replicaB = '';
let embedded = '';
let seedApp = '';

describe.skipIf(!avail.ok)('serving replicas on the shared Cassandra store', () => {
  it('aetn store init creates the keyspace; embed --shard i/3 into Cassandra (one shard stopped and resumed) equals the unsharded LMDB run bit for bit', async () => {
    expect(await cli(env, 'store', 'init')).toMatch(new RegExp(`store ready \\(cassandra\\): keyspace ${KEYSPACE}`));
    const ref = lastJson(await cli({}, 'embed', '--model', 'm1', '--data', 'prep', '--store', 'st', '--batch-size', '64', '--json'));
    featureId = ref.featureId as string;
    const embedC = async (...extra: string[]) => lastJson(await cli(env, 'embed', '--model', 'm1', '--data', 'prep', '--batch-size', '64', '--json', ...extra));
    const part = await embedC('--shard', '1/3', '--max-users', '20');
    expect(part.users).toBe(20);
    // An index build while a shard is unfinished would miss its users: refused, naming the run.
    await expect(cli(env, 'index', '--feature', featureId)).rejects.toThrow(new RegExp(`1 embed run\\(s\\) of ${featureId} have not finished: embed:${featureId}:\\w+ \\(20 users so far\\)`));
    const shards = [await embedC('--shard', '0/3'), await embedC('--shard', '1/3'), await embedC('--shard', '2/3')];
    expect(shards[1]!.resumedFrom).not.toBeNull(); // the stopped shard resumed from its marker in Cassandra
    expect(shards.reduce((s, r) => s + (r.users as number), 20)).toBe(ref.users);
    expect(shards[0]!.installerApps).toBe(ref.installerApps);

    const lmdb = EmbeddingStore.open(join(root, 'st'), { create: false });
    const shared = await CassandraStore.open(cass, { create: false });
    try {
      const want = new Map<string, string>();
      for (const e of lmdb.iterate(featureId)) want.set(e.userId, Buffer.from(e.vector.buffer, e.vector.byteOffset, e.vector.byteLength).toString('hex'));
      const got = new Map<string, string>();
      for await (const e of shared.iterate(featureId)) got.set(e.userId, Buffer.from(e.vector.buffer).toString('hex'));
      expect(got.size).toBe(want.size);
      for (const [u, hex] of want) expect(got.get(u), u).toBe(hex);
      // The three shard runs left their markers (done) in Cassandra.
      const runs = (await shared.client.execute(`SELECT run_id, state FROM ${KEYSPACE}.runs`)).rows.map((r) => [r.get('run_id') as string, JSON.parse(r.get('state') as string) as { done: boolean }] as const);
      expect(runs.filter(([id, st]) => id.startsWith(`embed:${featureId}:`) && st.done)).toHaveLength(3);
      // Installers and kept apps as the LMDB run wrote them.
      const apps = lmdb.appKeys();
      seedApp = apps.reduce((best, a) => ((lmdb.installersOf(a)?.length ?? 0) > (lmdb.installersOf(best)?.length ?? 0) ? a : best), apps[0]!);
      expect(await shared.installersOf(seedApp)).toEqual(lmdb.installersOf(seedApp));
      const someUsers = [...want.keys()].slice(0, 5);
      expect(await shared.userAppsMany(someUsers)).toEqual(lmdb.userAppsMany(someUsers));
    } finally {
      await lmdb.close();
      await shared.close();
    }
  });

  it('aetn index --store-backend cassandra writes generation 1 to the store: the same index file as the LMDB build', async () => {
    await cli({}, 'index', '--store', 'st', '--feature', featureId);
    const out = await cli(env, 'index', '--feature', featureId);
    expect(out).toMatch(new RegExp(`index ${featureId} built from the shared store .* generation 1, \\d+ users`));
    const cur = readCurrent(featureIndexDir(join(root, 'st'), featureId))!;
    const local = JSON.parse(readFileSync(join(cur.dir, 'manifest.json'), 'utf8')) as { files: Record<string, { sha256: string }>; count: number };
    const shared = await CassandraStore.open(cass, { create: false });
    try {
      const row = (await shared.indexCurrent(featureId))!;
      expect(row.generation).toBe(1);
      const m = JSON.parse(row.manifest) as typeof local;
      expect(m.count).toBe(local.count);
      expect(m.files['index.hnsw']!.sha256).toBe(local.files['index.hnsw']!.sha256);
      expect(m.files['labels.json']!.sha256).toBe(local.files['labels.json']!.sha256);
    } finally {
      await shared.close();
    }
    expect(await cli(env, 'index', '--feature', featureId, '--check')).toMatch(/verified \(read from the shared store\)/);
    await expect(cli(env, 'index', '--feature', featureId, '--update')).rejects.toThrow(/--update is for the LMDB store/);
  });

  it('two replicas answer exactly as the embedded mode: vectors, neighbours and look-alike audiences', async () => {
    [replicaA, replicaB, embedded] = await Promise.all([
      serve(env, '--index-poll-seconds', '1'),
      serve(env, '--index-poll-seconds', '1'),
      serve({}, '--store', 'st'),
    ]);
    const servers = [embedded, replicaA, replicaB];
    const uv = servers.map((a) => createClient(UserVectorService, a));
    const au = servers.map((a) => createClient(AudienceService, a));
    // A client-side round robin over both replicas, as a caller of the cluster would use them.
    const rr = createClient(AudienceService, `ipv4:${replicaA},${replicaB}`, { channelOptions: { 'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }) } });
    try {
      const lmdb = EmbeddingStore.open(join(root, 'st'), { create: false });
      const users = [...lmdb.userIds(featureId)].filter((_, i) => i % 17 === 0);
      await lmdb.close();
      expect(users.length).toBeGreaterThan(15);
      const same = async <T>(f: (i: number) => Promise<T>) => {
        const [e, a, b] = await Promise.all([f(0), f(1), f(2)]);
        expect(a).toEqual(e);
        expect(b).toEqual(e);
        return e;
      };
      // The vectors (their write times differ: the two stores were written by two runs).
      const batch = await same(async (i) =>
        JSON.parse(JSON.stringify(await uv[i]!.batchGetUserVectors({ userIds: [...users, 'nobody'], view: VectorView.LONG_TERM }), (k, v: unknown) => (k === 'ageMs' || k === 'updatedAtMs' ? undefined : typeof v === 'bigint' ? String(v) : v))) as { users: { userId: string; found: boolean; longTerm?: { values: number[] } }[] },
      );
      expect(batch.users.map((u) => u.found)).toEqual([...users.map(() => true), false]);
      expect(batch.users[0]!.longTerm!.values).toHaveLength(8);
      for (const u of users) {
        const res = await same(async (i) => {
          const r = await au[i]!.searchNeighbors({ query: { case: 'userId', value: u }, k: 10 });
          return { featureId: r.featureId, neighbors: r.neighbors.map((n) => [n.userId, n.score]) };
        });
        expect(res.featureId).toBe(featureId);
        expect(res.neighbors).toHaveLength(10);
        const viaRr = await rr.searchNeighbors({ query: { case: 'userId', value: u }, k: 10 });
        expect(viaRr.neighbors.map((n) => [n.userId, n.score])).toEqual(res.neighbors);
      }
      const notFound = await Promise.all(au.map((c) => c.searchNeighbors({ query: { case: 'userId', value: 'nobody' }, k: 5 }).then(() => 0, (e: { code: number }) => e.code)));
      expect(notFound).toEqual([5, 5, 5]); // NOT_FOUND everywhere
      const look = (salt: string, seeds: string[]) => async (i: number) => {
        const msgs: unknown[] = [];
        for await (const m of au[i]!.extendLookalike({ seeds: { case: 'seedUsers', value: { userIds: seeds } }, audienceSize: 80 }, { metadata: { 'x-request-id': salt } })) msgs.push(m);
        type M = { message: { case: string; value: { users?: { userId: string; score: number }[]; seedsUsed?: number } } };
        const chunks = (msgs as M[]).filter((m) => m.message.case === 'chunk').flatMap((m) => m.message.value.users!.map((x) => [x.userId, x.score]));
        const sum = { ...(msgs as M[]).find((m) => m.message.case === 'summary')!.message.value, elapsedMs: 0 };
        return { sum, seedsUsed: sum.seedsUsed, chunks };
      };
      const aud = await same(look('same-salt-1', users.slice(0, 12)));
      // Other seeds and salts (another population slice): still the same on every server.
      for (const k of [2, 3, 4]) expect((await same(look(`salt-${k}`, users.slice(k, k + 12)))).chunks).toHaveLength(80);
      expect(aud.chunks).toHaveLength(80);
      expect(aud.seedsUsed).toBe(12);
      // Seeds from an app's installers (read from Cassandra by the replicas).
      const byApp = await same(async (i) => {
        const users: string[] = [];
        for await (const m of au[i]!.extendLookalike({ seeds: { case: 'seedAppId', value: seedApp }, audienceSize: 50 }, { metadata: { 'x-request-id': 'same-salt-2' } })) {
          if (m.message.case === 'chunk') for (const x of m.message.value.users) users.push(x.userId);
        }
        return users;
      });
      expect(byApp.length).toBe(50);
    } finally {
      for (const c of [...uv, ...au, rr]) c.close();
    }
  });

  it('a new feature with its index becomes the default on both replicas within a poll', async () => {
    const svd = lastJson(await cli(env, 'embed', '--method', 'svd', '--data', 'prep', '--dim', '8', '--json'));
    const svdId = svd.featureId as string;
    expect(svdId).not.toBe(featureId);
    const clients = [replicaA, replicaB].map((a) => createClient(AudienceService, a));
    try {
      const probe = async (c: TypedClient<typeof AudienceService>) => (await c.searchNeighbors({ query: { case: 'vector', value: { values: Array.from({ length: 8 }, (_, i) => (i === 0 ? 1 : 0.1)) } }, k: 1 })).featureId;
      // Registered but without an index: not the default yet (a half-written feature is never served).
      await new Promise((r) => setTimeout(r, 1500));
      expect(await Promise.all(clients.map(probe))).toEqual([featureId, featureId]);
      await cli(env, 'index', '--feature', svdId);
      const t0 = Date.now();
      let seen: string[] = [];
      while (Date.now() - t0 < 15_000) {
        seen = await Promise.all(clients.map(probe));
        if (seen.every((f) => f === svdId)) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(seen).toEqual([svdId, svdId]);
    } finally {
      for (const c of clients) c.close();
    }
  });
});
