// The look-alike's population sample: drawn over the whole feature without holding the serving
// thread (it yields to the event loop), and refreshed in the background while the old sample
// keeps answering. A real store on disk; no server needed for the logic.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { EmbeddingStore } from '../../src/store/store.js';
import { ServingBackend } from '../../src/serve/backend.js';
import { child } from '../../src/util/log.js';

const F = 'aetn-pop';
const DIM = 4;
let dir: string;
let store: EmbeddingStore;
let backend: ServingBackend;

const users = (from: number, to: number) =>
  Array.from({ length: to - from }, (_, i) => ({ userId: `u${String(from + i).padStart(6, '0')}`, vector: Float32Array.from({ length: DIM }, (_, j) => ((from + i) % 7) + j) }));

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'aetn-pop-'));
  store = EmbeddingStore.open(join(dir, 'store'));
  store.registerFeature({ featureId: F, namespace: 'long', dim: DIM, variant: 'aetn' });
  await store.putMany(F, users(0, 30_000));
  backend = new ServingBackend(store, { get: async () => undefined } as never, { log: child('test'), populationCache: 1000 });
});
afterAll(async () => {
  backend?.stop?.();
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

it('draws the first sample without holding the event loop for the whole scan', async () => {
  let ticks = 0;
  let ticking = true;
  const tick = () => {
    ticks++;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  const pop = await backend.population(F, 200, 'a');
  ticking = false;
  // 30,000 keys at one yield per 4,096: the loop ran other callbacks during the draw.
  expect(ticks).toBeGreaterThanOrEqual(5);
  expect(pop.userIds).toHaveLength(200);
  expect(new Set(pop.userIds).size).toBe(200);
  // Drawn from the whole key range, not its first keys.
  expect(pop.userIds.some((u) => u > 'u020000')).toBe(true);
  pop.userIds.forEach((u, i) => expect(Array.from(pop.vectors[i]!)).toEqual(Array.from(users(Number(u.slice(1)), Number(u.slice(1)) + 1)[0]!.vector)));
});

it('answers from the old sample at once while a changed feature is redrawn, then uses the new one', async () => {
  const before = await backend.population(F, 1000, 'b');
  expect(before.userIds.every((u) => u < 'u030000')).toBe(true);
  await store.putMany(F, users(30_000, 60_000)); // the feature doubles: the sample is stale
  let resolvedFirst = false;
  const stale = backend.population(F, 1000, 'b').then((p) => {
    resolvedFirst = true;
    return p;
  });
  // The stale answer needs no scan: it resolves before a single yield of the redraw.
  await new Promise<void>((r) => setImmediate(r));
  expect(resolvedFirst).toBe(true);
  expect((await stale).userIds).toEqual(before.userIds);
  // The redraw finishes in the background; later calls see users added since.
  for (let i = 0; i < 200; i++) {
    const now = await backend.population(F, 1000, 'b');
    if (now.userIds.some((u) => u >= 'u030000')) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('the population sample was never redrawn');
});
