// What a ranker can rely on in `combined` and in the short-term part, through the real server:
// unit-normalised parts with documented, per-request weights echoed back; short-term vectors that
// expire past the head's 7-day horizon (a clock injected into the server moves time).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { status } from '@grpc/grpc-js';
import { createClient, type TypedClient } from '../../src/serve/client.js';
import { UserVectorService, VectorView } from '../../src/gen/aetn/v1/user_vector_pb.js';
import { runServe, type ServeProcess } from '../../services/serve.js';
import { buildFixture, testConfig, KEYS, type Fixture } from './fixture.js';

const DAY = 86_400_000;
let fx: Fixture;
let srv: ServeProcess;
let uv: TypedClient<typeof UserVectorService>;
let clockMs = Date.now();

beforeAll(async () => {
  fx = await buildFixture({ users: 200 });
  srv = await runServe(testConfig(fx.storeDir, { combinedLongWeight: 0.6, combinedShortWeight: 0.8 }), { pollMs: 100, searchThreads: 0, now: () => clockMs });
  uv = createClient(UserVectorService, srv.server.address, { apiKey: KEYS.both });
});

afterAll(async () => {
  uv?.close();
  await srv?.stop();
  fx?.cleanup();
});

const norm = (a: ArrayLike<number>) => Math.hypot(...Array.from(a));
const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((s, x, i) => s + x * b[i]!, 0);
const cos = (a: ArrayLike<number>, b: ArrayLike<number>) => dot(a, b) / (norm(a) * norm(b));

async function failure(p: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await p;
  } catch (err) {
    return err as { code: number; details: string };
  }
  throw new Error('expected the call to fail');
}

describe('combined vector', () => {
  it('is each part at unit norm times the configured weight, weights echoed, raw parts kept', async () => {
    const u = fx.users[0]!;
    const res = await uv.getUserVector({ userId: u, view: VectorView.ALL });
    const v = res.user!;
    expect(res.combinedWeights).toMatchObject({ longTerm: Math.fround(0.6), shortTerm: Math.fround(0.8) });
    const l = v.combined.slice(0, fx.longDim);
    const s = v.combined.slice(fx.longDim);
    expect(norm(l)).toBeCloseTo(0.6, 5);
    expect(norm(s)).toBeCloseTo(0.8, 5);
    expect(cos(l, fx.long.get(u)!)).toBeCloseTo(1, 5);
    expect(cos(s, fx.short.get(u)!)).toBeCloseTo(1, 5);
    // The raw parts are unscaled.
    expect(norm(v.longTerm!.values)).toBeCloseTo(norm(fx.long.get(u)!), 5);
  });

  it('cosine of combined = w_l^2 cos(long) + w_s^2 cos(short): the short part counts as documented', async () => {
    const [a, b] = [fx.users[0]!, fx.users[4]!];
    const res = await uv.batchGetUserVectors({ userIds: [a, b], view: VectorView.ALL });
    const [va, vb] = res.users;
    const want = 0.36 * cos(fx.long.get(a)!, fx.long.get(b)!) + 0.64 * cos(fx.short.get(a)!, fx.short.get(b)!);
    expect(cos(va!.combined, vb!.combined)).toBeCloseTo(want, 4);
    expect(res.combinedWeights).toMatchObject({ longTerm: Math.fround(0.6), shortTerm: Math.fround(0.8) });
  });

  it('takes weights per request and echoes them; a long-only request ignores the short part', async () => {
    const u = fx.users[2]!;
    const res = await uv.getUserVector({ userId: u, combinedWeights: { longTerm: 1, shortTerm: 0 } });
    expect(res.combinedWeights).toMatchObject({ longTerm: 1, shortTerm: 0 });
    expect(norm(res.user!.combined.slice(0, fx.longDim))).toBeCloseTo(1, 5);
    expect(res.user!.combined.slice(fx.longDim).every((x) => x === 0)).toBe(true);
    const batch = await uv.batchGetUserVectors({ userIds: [u], combinedWeights: { longTerm: 2, shortTerm: 0.5 } });
    expect(norm(batch.users[0]!.combined.slice(fx.longDim))).toBeCloseTo(0.5, 5);
    expect(batch.combinedWeights).toMatchObject({ longTerm: 2, shortTerm: 0.5 });
    // No combined in the view: no weights either.
    expect((await uv.getUserVector({ userId: u, view: VectorView.LONG_TERM })).combinedWeights).toBeUndefined();
  });

  it('refuses weights that are negative, too large, not finite or both zero', async () => {
    for (const [w, msg] of [
      [{ longTerm: -1, shortTerm: 1 }, 'combined_weights.long_term is -1'],
      [{ longTerm: 1, shortTerm: 101 }, 'combined_weights.short_term is 101'],
      [{ longTerm: Number.NaN, shortTerm: 1 }, 'finite number'],
      [{ longTerm: 0, shortTerm: 0 }, 'both 0'],
    ] as const) {
      const e = await failure(uv.getUserVector({ userId: fx.users[0]!, combinedWeights: w }));
      expect(e.code).toBe(status.INVALID_ARGUMENT);
      expect(e.details).toContain(msg);
      expect((await failure(uv.batchGetUserVectors({ userIds: [fx.users[0]!], combinedWeights: w }))).code).toBe(status.INVALID_ARGUMENT);
    }
  });
});

describe('short-term aging against the 7-day horizon', () => {
  it('serves the short-term part until it is 7 days old, then as expired (absent), with its age', async () => {
    const u = fx.users[0]!; // long and short
    const only = fx.users[1]!; // long only
    const t0 = Date.now();
    clockMs = t0 + 7 * DAY - 60_000; // still inside (the vectors were written just before the server started)
    let v = (await uv.getUserVector({ userId: u, view: VectorView.ALL })).user!;
    expect(v.shortTerm).toMatchObject({ present: true, expired: false });
    expect(norm(v.combined.slice(fx.longDim))).toBeCloseTo(0.8, 5);

    clockMs = t0 + 7 * DAY + 60_000; // past the horizon
    v = (await uv.getUserVector({ userId: u, view: VectorView.ALL })).user!;
    expect(v.shortTerm).toMatchObject({ present: false, expired: true, values: [] });
    expect(Number(v.shortTerm!.ageMs)).toBeGreaterThan(7 * DAY);
    expect(Number(v.shortTerm!.updatedAtMs)).toBeGreaterThan(0);
    expect(v.combined.slice(fx.longDim).every((x) => x === 0)).toBe(true);
    expect(v.longTerm).toMatchObject({ present: true, expired: false }); // long-term parts do not expire
    const b = await uv.batchGetUserVectors({ userIds: [u, only], view: VectorView.METADATA });
    expect(b.users.map((x) => x.shortTerm!.expired)).toEqual([true, false]);
    expect(b.foundCount).toBe(2);
  });

  it('a user whose only vector expired is not found, and the message says why', async () => {
    // A short-term-only user: write one directly.
    const { EmbeddingStore } = await import('../../src/store/store.js');
    const store = EmbeddingStore.open(fx.storeDir, { create: false });
    await store.putMany(fx.shortId, [{ userId: 'short-only', vector: Float32Array.from({ length: fx.shortDim }, (_, i) => i + 1) }], { updatedAtMs: Date.now() });
    await store.close();
    clockMs = Date.now() + DAY;
    expect((await uv.getUserVector({ userId: 'short-only' })).user!.found).toBe(true);
    clockMs = Date.now() + 8 * DAY;
    const e = await failure(uv.getUserVector({ userId: 'short-only' }));
    expect(e.code).toBe(status.NOT_FOUND);
    expect(e.details).toMatch(/past the 168 h horizon/);
    const b = await uv.batchGetUserVectors({ userIds: ['short-only'] });
    expect(b.users[0]).toMatchObject({ found: false, combined: [] });
    expect(b.users[0]!.shortTerm!.expired).toBe(true);
  });
});
