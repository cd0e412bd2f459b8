// Erasure through the real server and the real CLI: after AdminService/ForgetUsers (scope `admin`)
// or `aetn store forget`, no RPC returns the users in any form (vectors, neighbours, look-alike
// seeds and answers); later batch writes over old data do not bring them back; a restart does not
// either; the index files no longer name them; `--unforget` / unforget lets them be written again.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { createClient, type TypedClient } from '../../src/serve/client.js';
import { UserVectorService, VectorView } from '../../src/gen/aetn/v1/user_vector_pb.js';
import { AudienceService } from '../../src/gen/aetn/v1/audience_pb.js';
import { AdminService } from '../../src/gen/aetn/v1/admin_pb.js';
import { EmbeddingStore } from '../../src/store/store.js';
import { StateDb } from '../../src/stream/state.js';
import { runServe, type ServeProcess } from '../../services/serve.js';
import { REPO_ROOT } from '../tools/go-tools.js';
import { API_KEYS, buildFixture, testConfig, KEYS, type Fixture } from './fixture.js';

const ADMIN = 'admin-key-000004';
let fx: Fixture;
let srv: ServeProcess;
let uv: TypedClient<typeof UserVectorService>;
let au: TypedClient<typeof AudienceService>;
let admin: TypedClient<typeof AdminService>;
let victims: string[];

async function start() {
  srv = await runServe(testConfig(fx.storeDir, { apiKeys: { ...API_KEYS, [ADMIN]: ['admin'] } }), { pollMs: 100, searchThreads: 0 });
  uv = createClient(UserVectorService, srv.server.address, { apiKey: KEYS.both });
  au = createClient(AudienceService, srv.server.address, { apiKey: KEYS.both });
  admin = createClient(AdminService, srv.server.address, { apiKey: ADMIN });
}

async function stop() {
  uv.close();
  au.close();
  admin.close();
  await srv.stop();
}

beforeAll(async () => {
  fx = await buildFixture({ users: 1500 });
  // A realtime state for one victim, as the realtime consumer writes it.
  const store = EmbeddingStore.open(fx.storeDir, { create: false });
  const sdb = new StateDb(store.root);
  store.transactionSync(() => sdb.putInTxn({ userId: fx.installers[2]!, events: [{ app: 1, type: 1, timestampMs: 1, eventId: 'e1' }], applied: 1, updatedAtMs: 1 }));
  await store.close();
  await start();
});

afterAll(async () => {
  await stop();
  fx?.cleanup();
});

async function failure(p: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await p;
  } catch (err) {
    return err as { code: number; details: string };
  }
  throw new Error('expected the call to fail');
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const m of it) out.push(m);
  return out;
}

/** Everything the server says about these users, in every RPC; returns the ids it names. */
async function seen(ids: string[]): Promise<string[]> {
  const named = new Set<string>();
  for (const u of ids) {
    const e = await failure(uv.getUserVector({ userId: u, view: VectorView.ALL })).catch(() => ({ code: status.OK, details: '' }));
    if (e.code !== status.NOT_FOUND) named.add(u);
    const s = await failure(au.searchNeighbors({ query: { case: 'userId', value: u }, k: 5 })).catch(() => ({ code: status.OK, details: '' }));
    if (s.code !== status.NOT_FOUND) named.add(u);
  }
  const b = await uv.batchGetUserVectors({ userIds: ids, view: VectorView.ALL });
  for (const r of b.users) if (r.found || r.longTerm?.present || r.shortTerm?.present || r.combined.length > 0) named.add(r.userId);
  // Neighbours around each user's original vector (they would be the nearest).
  for (const u of ids) {
    const res = await au.searchNeighbors({ query: { case: 'vector', value: { values: Array.from(fx.long.get(u)!) } }, k: 50 });
    for (const n of res.neighbors) if (ids.includes(n.userId)) named.add(n.userId);
  }
  // Look-alike: seeds by app, seeds by id, and the answers.
  const byApp = await collect(au.extendLookalike({ seeds: { case: 'seedAppId', value: fx.appId }, audienceSize: 1000 }));
  const byIds = await collect(au.extendLookalike({ seeds: { case: 'seedUsers', value: { userIds: fx.installers.slice(0, 20) } }, audienceSize: 1000 }));
  for (const m of [...byApp, ...byIds]) if (m.message.case === 'chunk') for (const x of m.message.value.users) if (ids.includes(x.userId)) named.add(x.userId);
  return [...named];
}

function summary(msgs: { message: { case: string | undefined; value?: unknown } }[]) {
  const last = msgs[msgs.length - 1]!.message;
  return last.value as { seedsRequested: number; seedsUsed: number; seedsUnknown: number };
}

function aetn(args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'services/cli/main.ts'), ...args], { cwd: REPO_ROOT, encoding: 'utf8', env: { ...process.env, AETN_LOG_LEVEL: 'warn' } });
}

/** Every file under the feature's index directory (all generations). */
function indexText(): string {
  const dir = join(fx.storeDir, 'index', fx.longId);
  const out: string[] = [];
  const walk = (d: string) => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else if (n.endsWith('.json') || n === 'CURRENT') out.push(readFileSync(p, 'utf8'));
    }
  };
  walk(dir);
  return out.join('\n');
}

describe('AdminService/ForgetUsers', () => {
  it('needs the admin scope and refuses bad input', async () => {
    const other = createClient(AdminService, srv.server.address, { apiKey: KEYS.both });
    expect((await failure(other.forgetUsers({ userIds: ['x'] }))).code).toBe(status.PERMISSION_DENIED);
    other.close();
    expect(await failure(admin.forgetUsers({ userIds: [] }))).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('user_ids is empty') });
    expect(await failure(admin.forgetUsers({ userIds: ['a', ''] }))).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('user_ids[1] is empty') });
    expect((await failure(admin.forgetUsers({ userIds: Array.from({ length: 10_001 }, (_, i) => `u${i}`) }))).details).toContain('the limit is 10000');
  });

  it('removes users from every RPC answer, seeds included', async () => {
    // A seed of the app, a seed with a realtime state, and the nearest neighbour of another seed.
    const around = await au.searchNeighbors({ query: { case: 'userId', value: fx.installers[5]! }, k: 3 });
    const near = around.neighbors.map((n) => n.userId).find((u) => !fx.installers.includes(u))!;
    victims = [fx.installers[0]!, fx.installers[2]!, near ?? fx.users[1]!];
    expect(await seen(victims)).toEqual(expect.arrayContaining(victims)); // visible before
    const before = summary(await collect(au.extendLookalike({ seeds: { case: 'seedAppId', value: fx.appId }, audienceSize: 10 })));
    expect(before.seedsRequested).toBe(fx.installers.length);

    const r = await admin.forgetUsers({ userIds: [...victims, victims[0]!] });
    const shortVectors = victims.filter((u) => fx.short.has(u)).length;
    expect(r).toMatchObject({
      users: 3,
      changed: 3,
      vectorsRemoved: 3 + shortVectors,
      indexPointsRemoved: 3,
      installerEntriesRemoved: victims.filter((u) => fx.installers.includes(u)).length,
      keptAppListsRemoved: 3,
      realtimeStatesRemoved: 1,
    });
    expect(await seen(victims)).toEqual([]);
    const after = summary(await collect(au.extendLookalike({ seeds: { case: 'seedAppId', value: fx.appId }, audienceSize: 10 })));
    expect(after.seedsRequested).toBe(fx.installers.length - 2);
    // Idempotent.
    expect(await admin.forgetUsers({ userIds: victims })).toMatchObject({ users: 3, changed: 0, vectorsRemoved: 0, indexPointsRemoved: 0 });
  });

  it('the index files no longer name them, in any generation', () => {
    const text = indexText();
    for (const u of victims) expect(text).not.toContain(`"${u}"`);
    expect(text).toContain(`"${fx.users[7]!}"`);
  });

  it('later batch writes over old data do not bring them back', async () => {
    const store = EmbeddingStore.open(fx.storeDir, { create: false });
    try {
      const skipped = await store.putMany(fx.longId, victims.map((u) => ({ userId: u, vector: fx.long.get(u)! })));
      expect(skipped).toBe(3);
      await store.putInstallers(fx.appId, fx.installers);
      expect(store.installersOf(fx.appId)).toHaveLength(fx.installers.length - 2);
      await store.putUserAppsMany(victims.map((u) => [u, ['common-1']] as const));
      expect(store.userAppsMany(victims)).toEqual([undefined, undefined, undefined]);
    } finally {
      await store.close();
    }
    expect(await seen(victims)).toEqual([]);
  });

  it('a restart does not bring them back', async () => {
    await stop();
    await start();
    expect(await seen(victims)).toEqual([]);
  });
});

describe('aetn store forget', () => {
  it('forgets from the command line while the server runs; --unforget lets the user be written again', async () => {
    const u = fx.users[11]!;
    expect(await seen([u])).toEqual([u]);
    const file = join(fx.dir, 'forget.txt');
    writeFileSync(file, `# erasure requests\n${u}\n\n`);
    const r = aetn(['store', 'forget', '--store', fx.storeDir, '--users', file, '--json']);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ users: 1, newlyForgotten: 1, indexPointsRemoved: 1, indexesUpdated: [fx.longId] });
    expect(await seen([u])).toEqual([]); // the server had the old index loaded: filtered by the tombstone
    await new Promise((res) => setTimeout(res, 300)); // the poller reloads the new generation
    expect(await seen([u])).toEqual([]);

    const un = aetn(['store', 'forget', '--store', fx.storeDir, '--users', file, '--unforget']);
    expect(un.status, un.stderr).toBe(0);
    expect(un.stdout).toContain('unforgot 1 of 1 users');
    const store = EmbeddingStore.open(fx.storeDir, { create: false });
    try {
      expect(await store.putMany(fx.longId, [{ userId: u, vector: fx.long.get(u)! }])).toBe(0);
    } finally {
      await store.close();
    }
    expect((await uv.getUserVector({ userId: u })).user!.found).toBe(true);
  });

  it('unforget over gRPC, and clear errors for a bad file', async () => {
    expect(await admin.forgetUsers({ userIds: [victims[0]!], unforget: true })).toMatchObject({ users: 1, changed: 1 });
    const empty = join(fx.dir, 'empty.txt');
    writeFileSync(empty, '\n# nothing\n');
    const r = aetn(['store', 'forget', '--store', fx.storeDir, '--users', empty]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('holds no user ids');
    const m = aetn(['store', 'forget', '--store', fx.storeDir, '--users', join(fx.dir, 'missing.txt')]);
    expect(m.stderr).toContain('cannot read --users');
  });
});
