// Index and feature swaps under load: a rebuilt index generation, a new feature id becoming the
// default, and the old feature retired, while clients call continuously. No call may fail.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { EmbeddingStore } from '../../src/store/store.js';
import { buildIndex } from '../../src/index/build.js';
import { createClient } from '../../src/serve/client.js';
import { UserVectorService } from '../../src/gen/aetn/v1/user_vector_pb.js';
import { AudienceService } from '../../src/gen/aetn/v1/audience_pb.js';
import type { ServeProcess } from '../../services/serve.js';
import { buildFixture, clusteredVectors, startServe, KEYS, type Fixture } from './fixture.js';

let fx: Fixture;
let srv: ServeProcess;

beforeAll(async () => {
  fx = await buildFixture({ users: 2000 });
  srv = await startServe(fx.storeDir, {}, 50);
});
afterAll(async () => {
  await srv?.stop();
  fx?.cleanup();
});

it('no call fails while indexes and feature ids are swapped', async () => {
  const uv = createClient(UserVectorService, srv.server.address, { apiKey: KEYS.both });
  const au = createClient(AudienceService, srv.server.address, { apiKey: KEYS.both });
  let stop = false;
  const failures: string[] = [];
  const seen = new Set<string>();
  let calls = 0;
  const loop = async (worker: number) => {
    let i = worker;
    while (!stop) {
      const u = fx.users[(i += 7) % fx.users.length]!;
      try {
        switch (i % 4) {
          case 0:
            seen.add((await uv.getUserVector({ userId: u })).user!.longTerm!.featureId);
            break;
          case 1:
            if ((await uv.batchGetUserVectors({ userIds: fx.users.slice(i % 1000, (i % 1000) + 20) })).foundCount !== 20) failures.push('batch: users missing');
            break;
          case 2:
            seen.add((await au.searchNeighbors({ query: { case: 'userId', value: u }, k: 10 })).featureId);
            break;
          case 3: {
            const r = await au.searchNeighbors({ query: { case: 'vector', value: { values: Array.from(fx.long.get(u)!) } }, k: 10 });
            if (r.neighbors.length !== 10) failures.push('search: short answer');
            break;
          }
        }
        calls++;
      } catch (err) {
        failures.push(`${(err as Error).message}`);
      }
    }
  };
  const loops = [0, 1, 2, 3, 4, 5].map(loop);
  const store = EmbeddingStore.open(fx.storeDir, { create: false });
  const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
  await pause(200);
  // 1. A rebuilt index of the same feature (new generation).
  await buildIndex(store, fx.longId, { silent: true, m: 8 });
  await pause(300);
  // 2. A new model's feature id: registered and filled while serving, then indexed.
  const t2 = 'aetn-t2';
  store.registerFeature({ featureId: t2, namespace: 'long', dim: fx.longDim, variant: 'aetn', createdAtMs: Date.now() });
  const data = clusteredVectors(fx.users.length, fx.longDim, 12, 99);
  await store.putMany(t2, fx.users.map((userId, i) => ({ userId, vector: data[i]!.vector })));
  await pause(200);
  await buildIndex(store, t2, { silent: true });
  const t0 = Date.now();
  while (!seen.has(t2) && Date.now() - t0 < 10_000) await pause(20);
  // 3. The old feature retired while calls that resolved it may be in flight.
  await store.retire(fx.longId);
  await pause(500);
  stop = true;
  await Promise.all(loops);
  await store.close();
  uv.close();
  au.close();
  expect(failures).toEqual([]);
  expect(seen.has(fx.longId) && seen.has(t2)).toBe(true);
  expect(calls).toBeGreaterThan(50);
});
