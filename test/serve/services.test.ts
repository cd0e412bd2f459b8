// UserVectorService and AudienceService over loopback against a real store and index, with our own
// typed client: results, and every bad-input case with its status code and message.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Metadata, status, type ClientUnaryCall, type StatusObject } from '@grpc/grpc-js';
import { createClient, type TypedClient } from '../../src/serve/client.js';
import { GetUserVectorRequestSchema, UserVectorService, VectorView } from '../../src/gen/aetn/v1/user_vector_pb.js';
import { create } from '@bufbuild/protobuf';
import { AudienceService } from '../../src/gen/aetn/v1/audience_pb.js';
import type { ServeProcess } from '../../services/serve.js';
import { buildFixture, startServe, KEYS, type Fixture } from './fixture.js';

let fx: Fixture;
let srv: ServeProcess;
let uv: TypedClient<typeof UserVectorService>;
let au: TypedClient<typeof AudienceService>;

beforeAll(async () => {
  fx = await buildFixture();
  srv = await startServe(fx.storeDir);
  uv = createClient(UserVectorService, srv.server.address, { apiKey: KEYS.both });
  au = createClient(AudienceService, srv.server.address, { apiKey: KEYS.both });
});

afterAll(async () => {
  uv?.close();
  au?.close();
  await srv?.stop();
  fx?.cleanup();
});

async function code(p: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await p;
  } catch (err) {
    const e = err as { code: number; details: string };
    return { code: e.code, details: e.details };
  }
  throw new Error('expected the call to fail');
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const m of it) out.push(m);
  return out;
}

const close = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) expect(a[i]).toBeCloseTo(b[i]!, 5);
};

describe('UserVectorService', () => {
  it('returns long, short and combined [0.8 long/|long| ‖ 0.6 short/|short|] with feature ids and ages', async () => {
    const u = fx.users[0]!; // even index: has a short-term vector
    const res = await uv.getUserVector({ userId: u, view: VectorView.ALL });
    const v = res.user!;
    expect(v.found).toBe(true);
    expect(v.longTerm?.featureId).toBe(fx.longId);
    expect(v.shortTerm?.featureId).toBe(fx.shortId);
    expect(v.longTerm?.present && v.shortTerm?.present).toBe(true);
    close(v.longTerm!.values, fx.long.get(u)!);
    close(v.shortTerm!.values, fx.short.get(u)!);
    const unit = (a: Float32Array, w: number) => Array.from(a, (x) => (w * x) / Math.hypot(...a));
    close(v.combined, [...unit(fx.long.get(u)!, 0.8), ...unit(fx.short.get(u)!, 0.6)]);
    expect(res.combinedWeights).toMatchObject({ longTerm: Math.fround(0.8), shortTerm: Math.fround(0.6) });
    // The long-term vectors were written a minute before the test.
    expect(Number(v.longTerm!.ageMs)).toBeGreaterThanOrEqual(59_000);
    expect(Number(v.longTerm!.updatedAtMs)).toBeGreaterThan(Date.now() - 3_600_000);
  });

  it('fills a missing short-term part with zeros and says so', async () => {
    const u = fx.users[1]!; // odd index: no short-term vector
    const v = (await uv.getUserVector({ userId: u })).user!;
    expect(v.shortTerm?.present).toBe(false);
    expect(v.shortTerm?.dim).toBe(fx.shortDim);
    expect(v.combined).toHaveLength(fx.longDim + fx.shortDim);
    const l = fx.long.get(u)!;
    close(v.combined.slice(0, fx.longDim), Array.from(l, (x) => (0.8 * x) / Math.hypot(...l)));
    expect(v.combined.slice(fx.longDim).every((x) => x === 0)).toBe(true);
    // Default view = combined only.
    expect(v.longTerm?.values).toHaveLength(0);
  });

  it('views return only what is asked for', async () => {
    const u = fx.users[2]!;
    const l = (await uv.getUserVector({ userId: u, view: VectorView.LONG_TERM })).user!;
    expect(l.longTerm!.values).toHaveLength(fx.longDim);
    expect(l.shortTerm!.values).toHaveLength(0);
    expect(l.combined).toHaveLength(0);
    const s = (await uv.getUserVector({ userId: u, view: VectorView.SHORT_TERM })).user!;
    expect(s.shortTerm!.values).toHaveLength(fx.shortDim);
    expect(s.longTerm!.values).toHaveLength(0);
    const m = (await uv.getUserVector({ userId: u, view: VectorView.METADATA })).user!;
    expect(m.longTerm!.present).toBe(true);
    expect(m.longTerm!.values.length + m.shortTerm!.values.length + m.combined.length).toBe(0);
  });

  it('reads an explicit feature id', async () => {
    const v = (await uv.getUserVector({ userId: fx.users[3]!, longTermFeatureId: fx.longId, shortTermFeatureId: fx.shortId })).user!;
    expect(v.longTerm!.featureId).toBe(fx.longId);
  });

  it('batch: unknown users reported per user, in request order', async () => {
    const ids = [fx.users[5]!, 'nobody', fx.users[6]!, fx.users[5]!];
    const res = await uv.batchGetUserVectors({ userIds: ids, view: VectorView.ALL });
    expect(res.users.map((u) => u.userId)).toEqual(ids);
    expect(res.users.map((u) => u.found)).toEqual([true, false, true, true]);
    expect(res.foundCount).toBe(3);
    expect(res.users[1]!.combined).toHaveLength(0);
    close(res.users[2]!.longTerm!.values, fx.long.get(fx.users[6]!)!);
    const big = await uv.batchGetUserVectors({ userIds: fx.users.slice(0, 1000) });
    expect(big.foundCount).toBe(1000);
  });

  it('refuses bad input with a status and a message that says what to fix', async () => {
    expect(await code(uv.getUserVector({ userId: 'nobody' }))).toMatchObject({ code: status.NOT_FOUND, details: expect.stringContaining('nobody') });
    expect(await code(uv.getUserVector({ userId: '' }))).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('user_id is empty') });
    expect(await code(uv.getUserVector({ userId: 'x'.repeat(257) }))).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('256 bytes') });
    expect(await code(uv.getUserVector({ userId: fx.users[0]!, longTermFeatureId: 'nope' }))).toMatchObject({
      code: status.NOT_FOUND,
      details: expect.stringContaining(`active long-term features: ${fx.longId}`),
    });
    expect(await code(uv.getUserVector({ userId: fx.users[0]!, longTermFeatureId: fx.shortId }))).toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringContaining('is a short-term feature'),
    });
    expect(await code(uv.getUserVector({ userId: fx.users[0]!, view: 42 as VectorView }))).toMatchObject({ code: status.INVALID_ARGUMENT });
    expect(await code(uv.batchGetUserVectors({ userIds: [] }))).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('empty') });
    expect(await code(uv.batchGetUserVectors({ userIds: fx.users.slice(0, 1001) }))).toMatchObject({
      code: status.INVALID_ARGUMENT,
      details: expect.stringContaining('limit is 1000'),
    });
    expect(await code(uv.batchGetUserVectors({ userIds: ['a', ''] }))).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('user_ids[1]') });
  });
});

describe('AudienceService.SearchNeighbors', () => {
  it('by user: k neighbours, the user left out, nearest first, mostly from its own cluster', async () => {
    const u = fx.users[7]!;
    const res = await au.searchNeighbors({ query: { case: 'userId', value: u }, k: 20 });
    expect(res.featureId).toBe(fx.longId);
    expect(res.neighbors).toHaveLength(20);
    expect(res.neighbors.some((n) => n.userId === u)).toBe(false);
    for (let i = 1; i < 20; i++) expect(res.neighbors[i - 1]!.score).toBeGreaterThanOrEqual(res.neighbors[i]!.score);
    const same = res.neighbors.filter((n) => fx.cluster.get(n.userId) === fx.cluster.get(u)).length;
    expect(same).toBeGreaterThanOrEqual(18);
  });

  it('by raw vector: the user owning that vector comes first with similarity ~1', async () => {
    const u = fx.users[8]!;
    const res = await au.searchNeighbors({ query: { case: 'vector', value: { values: Array.from(fx.long.get(u)!) } }, k: 5, ef: 100 });
    expect(res.neighbors[0]!.userId).toBe(u);
    expect(res.neighbors[0]!.score).toBeCloseTo(1, 4);
  });

  it('refuses bad input', async () => {
    const v = Array.from(fx.long.get(fx.users[0]!)!);
    const q = (values: number[]) => ({ query: { case: 'vector' as const, value: { values } }, k: 5 });
    expect(await code(au.searchNeighbors({ k: 5 }))).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('set user_id or vector') });
    expect(await code(au.searchNeighbors(q(v.slice(1))))).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining(`dimension ${fx.longDim}`) });
    expect(await code(au.searchNeighbors(q([NaN, ...v.slice(1)])))).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('index 0 is NaN') });
    expect(await code(au.searchNeighbors(q([...v.slice(1), Infinity])))).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('finite') });
    expect(await code(au.searchNeighbors(q(v.map(() => 0))))).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('all zeros') });
    expect(await code(au.searchNeighbors({ ...q(v), k: 0 }))).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('k is 0') });
    expect(await code(au.searchNeighbors({ ...q(v), k: 1001 }))).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('between 1 and 1000') });
    expect(await code(au.searchNeighbors({ ...q(v), ef: 5000 }))).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('ef') });
    expect(await code(au.searchNeighbors({ query: { case: 'userId', value: 'nobody' }, k: 5 }))).toMatchObject({ code: status.NOT_FOUND });
    expect(await code(au.searchNeighbors({ ...q(v), featureId: 'gone' }))).toMatchObject({ code: status.NOT_FOUND });
  });
});

describe('AudienceService.ExtendLookalike', () => {
  const seeds = () => fx.users.filter((u) => fx.cluster.get(u) === 3).slice(0, 50);

  it('streams scored users in descending order, then one summary; seeds and exclusions never returned', async () => {
    const s = seeds();
    const exclude = fx.users.filter((u) => fx.cluster.get(u) === 3).slice(50, 80);
    const msgs = await collect(au.extendLookalike({ seeds: { case: 'seedUsers', value: { userIds: [...s, 'ghost'] } }, audienceSize: 150, excludeUserIds: exclude }));
    const last = msgs.at(-1)!;
    expect(last.message.case).toBe('summary');
    expect(msgs.slice(0, -1).every((m) => m.message.case === 'chunk')).toBe(true);
    const users = msgs.flatMap((m) => (m.message.case === 'chunk' ? m.message.value.users : []));
    expect(users).toHaveLength(150);
    const bad = new Set([...s, ...exclude]);
    expect(users.some((u) => bad.has(u.userId))).toBe(false);
    for (let i = 1; i < users.length; i++) expect(users[i - 1]!.score).toBeGreaterThanOrEqual(users[i]!.score);
    // The seeds' cluster holds 250 users: 50 seeds + 30 excluded leave 170 look-alikes to find.
    const inCluster = users.filter((u) => fx.cluster.get(u.userId) === 3).length;
    expect(inCluster / users.length).toBeGreaterThan(0.9);
    const sum = last.message.case === 'summary' ? last.message.value : undefined;
    expect(sum).toMatchObject({ featureId: fx.longId, seedsRequested: 51, seedsUsed: 50, seedsUnknown: 1, audienceSize: 150 });
    expect(sum!.candidatesScored).toBeGreaterThanOrEqual(150);
    expect(sum!.clusters).toBeGreaterThanOrEqual(1);
    expect(sum!.populationSampled).toBeGreaterThan(0);
    // 3,000 users: every one scored; the store has kept apps, so both views are used; the held-out
    // estimate of a well-separated cluster is high, from 4 folds.
    expect(sum!.exhaustive).toBe(true);
    expect(sum!.candidatesScored).toBe(3000 - 50 - 30);
    expect(sum!.scoringFeatures).toBe('ensemble');
    expect(sum!.estimateFolds).toBe(4);
    expect(sum!.expectedAuc).toBeGreaterThan(0.9);
    // Recall@1x is estimated for an audience as large as the seeds (1.7% of the users), and this
    // cluster holds 3.4x more look-alikes than seeds, which fill most of such a small audience: well
    // above random (0.017), far below 1. Over 40 seed sets of this cluster the estimate ran from 0.10
    // to 0.30 (mean 0.19; 50 seeds give it steps of 0.02), so the bound is 3x random, not a tuned value.
    expect(sum!.expectedRecallAt1x).toBeGreaterThan(0.05);
    expect(sum!.expectedRecallAt1x).toBeLessThan(0.6);
    // The same request again: the same audience and the same estimate (the population sample is
    // keyed by the seeds, not by the call).
    const again = await collect(au.extendLookalike({ seeds: { case: 'seedUsers', value: { userIds: [...s].reverse().concat('ghost') } }, audienceSize: 150, excludeUserIds: exclude }));
    const users2 = again.flatMap((m) => (m.message.case === 'chunk' ? m.message.value.users : []));
    expect(users2.map((u) => u.userId)).toEqual(users.map((u) => u.userId));
    const sum2 = again.at(-1)!.message.case === 'summary' ? again.at(-1)!.message.value : undefined;
    expect(sum2!.expectedRecallAt1x).toBe(sum!.expectedRecallAt1x);
    expect(sum2!.expectedAuc).toBe(sum!.expectedAuc);
  });

  it('seeds from "installers of app X"', async () => {
    const msgs = await collect(au.extendLookalike({ seeds: { case: 'seedAppId', value: fx.appId }, audienceSize: 100 }));
    const users = msgs.flatMap((m) => (m.message.case === 'chunk' ? m.message.value.users : []));
    expect(users).toHaveLength(100);
    const inst = new Set(fx.installers);
    expect(users.some((u) => inst.has(u.userId))).toBe(false);
    expect(users.filter((u) => fx.cluster.get(u.userId) === 0).length).toBeGreaterThan(90);
    const sum = msgs.at(-1)!.message;
    expect(sum.case === 'summary' && sum.value.seedsUsed).toBe(fx.installers.length);
  });

  it('refuses bad input', async () => {
    const ok = { seeds: { case: 'seedUsers' as const, value: { userIds: seeds() } }, audienceSize: 10 };
    const fail = (req: Parameters<typeof au.extendLookalike>[0]) => code(collect(au.extendLookalike(req)));
    expect(await fail({ audienceSize: 10 })).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('seeds are missing') });
    expect(await fail({ ...ok, audienceSize: 0 })).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('audience_size is 0') });
    expect(await fail({ ...ok, audienceSize: 100_001 })).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('100000') });
    expect(await fail({ ...ok, seeds: { case: 'seedUsers', value: { userIds: [] } } })).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('empty') });
    expect(await fail({ ...ok, seeds: { case: 'seedUsers', value: { userIds: ['ghost-1', 'ghost-2'] } } })).toMatchObject({
      code: status.NOT_FOUND,
      details: expect.stringContaining('none of the 2 seed users'),
    });
    expect(await fail({ ...ok, seeds: { case: 'seedAppId', value: 'com.unknown.app' } })).toMatchObject({ code: status.NOT_FOUND, details: expect.stringContaining('com.unknown.app') });
    expect(await fail({ ...ok, seeds: { case: 'seedAppId', value: '' } })).toMatchObject({ code: status.INVALID_ARGUMENT });
    expect(await fail({ ...ok, maxClusters: 51 })).toMatchObject({ code: status.INVALID_ARGUMENT, details: expect.stringContaining('max_clusters') });
    expect(await fail({ ...ok, featureId: fx.shortId })).toMatchObject({ code: status.INVALID_ARGUMENT });
    expect(await fail({ ...ok, excludeUserIds: [''] })).toMatchObject({ code: status.INVALID_ARGUMENT });
  });
});

describe('request ids in trailers', () => {
  // Raw unary call, to see the trailers a typed client hides.
  function rawCall(userId: string, md: Record<string, string>): Promise<{ code: number; trailer: string | undefined }> {
    return new Promise((resolve) => {
      const meta = new Metadata();
      meta.set('x-api-key', KEYS.both);
      for (const [k, v] of Object.entries(md)) meta.set(k, v);
      const raw = uv.raw as unknown as Record<string, (...a: unknown[]) => ClientUnaryCall>;
      const call = raw.getUserVector!(create(GetUserVectorRequestSchema, { userId }), meta, {}, () => undefined);
      call.on('status', (st: StatusObject) => resolve({ code: st.code, trailer: st.metadata.get('x-request-id')[0] as string | undefined }));
    });
  }

  it('errors always carry one; successes only echo the caller\'s own', async () => {
    const ok = await rawCall(fx.users[0]!, {});
    expect(ok).toEqual({ code: status.OK, trailer: undefined });
    expect(await rawCall(fx.users[0]!, { 'x-request-id': 'ranker-42' })).toEqual({ code: status.OK, trailer: 'ranker-42' });
    const missing = await rawCall('nobody-here', {});
    expect(missing.code).toBe(status.NOT_FOUND);
    expect(missing.trailer).toMatch(/^[\w.:-]+$/);
    expect(await rawCall('nobody-here', { 'x-request-id': 'ranker-43' })).toEqual({ code: status.NOT_FOUND, trailer: 'ranker-43' });
  });
});

describe('metrics', () => {
  it('counts calls by method and code, with latency', async () => {
    const text = await srv.server.metrics.registry.metrics();
    expect(text).toMatch(/aetn_grpc_requests_total\{method="UserVectorService\/GetUserVector",code="OK"\} \d+/);
    expect(text).toMatch(/aetn_grpc_requests_total\{method="UserVectorService\/GetUserVector",code="NOT_FOUND"\} \d+/);
    expect(text).toMatch(/aetn_grpc_request_duration_seconds_count\{method="AudienceService\/ExtendLookalike"\} \d+/);
  });
});
