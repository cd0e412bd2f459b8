// The look-alike's classical member needs a TF-IDF + SVD fitted on every user of the feature: the
// serving backend fits it once per population sample, only for small features, and refits it
// after an erasure. A real store on disk.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { EmbeddingStore } from '../../src/store/store.js';
import { APP_SVD_MAX_USERS, ServingBackend } from '../../src/serve/backend.js';
import { child } from '../../src/util/log.js';

let dir: string;
let store: EmbeddingStore;
let backend: ServingBackend;
const id = (i: number) => `u${String(i).padStart(5, '0')}`;
const vec = (i: number) => Float32Array.of(1, i % 3, i % 5, 1);
const apps = (i: number) => [`a${i % 17}`, `a${(i * 7) % 23}`, `b${i % 11}`];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'aetn-appsvd-'));
  store = EmbeddingStore.open(join(dir, 'store'));
  store.registerFeature({ featureId: 'small', namespace: 'long', dim: 4, variant: 'aetn' });
  store.registerFeature({ featureId: 'large', namespace: 'long', dim: 4, variant: 'aetn' });
  await store.putMany('small', Array.from({ length: 400 }, (_, i) => ({ userId: id(i), vector: vec(i) })));
  await store.putMany('large', Array.from({ length: APP_SVD_MAX_USERS + 1 }, (_, i) => ({ userId: id(i), vector: vec(i) })));
  await store.putUserAppsMany(Array.from({ length: APP_SVD_MAX_USERS + 1 }, (_, i) => [id(i), apps(i)] as const));
  backend = new ServingBackend(store, { get: async () => undefined } as never, { log: child('test'), pollMs: 3_600_000 });
});
afterAll(async () => {
  await backend?.stop?.();
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

it('fits one SVD over every user of a small feature and shares it between calls', async () => {
  const m = await backend.appSvd('small', 8);
  expect(m).toBeDefined();
  expect(m!.svd.k).toBe(8);
  // Every app of the 400 users is a column: the fit saw all of them, not a sample.
  const seen = new Set(Array.from({ length: 400 }, (_, i) => apps(i)).flat());
  expect(new Set(m!.column.keys())).toEqual(seen);
  expect(await backend.appSvd('small', 8)).toBe(m);
  expect(await backend.appSvd('small', 4)).not.toBe(m);
});

it('gives none above APP_SVD_MAX_USERS users (a sample would teach the member who was sampled)', async () => {
  expect(await backend.appSvd('large', 8)).toBeUndefined();
});

it('follows serve.lookalikeSvdMaxUsers: a lower cap leaves the small feature out, a higher one takes the large in', async () => {
  const low = new ServingBackend(store, { get: async () => undefined } as never, { log: child('test'), pollMs: 3_600_000, appSvdMaxUsers: 399 });
  const high = new ServingBackend(store, { get: async () => undefined } as never, { log: child('test'), pollMs: 3_600_000, appSvdMaxUsers: APP_SVD_MAX_USERS + 1 });
  try {
    expect(await low.appSvd('small', 8)).toBeUndefined();
    const m = await high.appSvd('large', 8);
    expect(m?.svd.k).toBe(8);
  } finally {
    await low.stop?.();
    await high.stop?.();
  }
});

it('refits after an erasure: the forgotten user no longer shapes it', async () => {
  const before = await backend.appSvd('small', 8);
  await store.forget([id(0)]);
  backend.syncForgotten();
  const after = await backend.appSvd('small', 8);
  expect(after).toBeDefined();
  expect(after).not.toBe(before);
});
