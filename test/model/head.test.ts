// The realtime head: tokens, masking, pooling, training signal, checkpoints (cpu backend, tiny sizes).
import { mkdtemp, readFile, rm, writeFile, truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../../src/model/backend.js';
import { RealtimeHead, defaultHeadConfig, encodeHeadBatch, gapBucket, type HeadEvent, type RealtimeHeadConfig } from '../../src/model/realtime-head.js';
import { cutSample, timelineOf, trainHead, type HeadTrainResult } from '../../src/model/train-head.js';
import { loadHeadModel, saveHead } from '../../src/model/head-checkpoint.js';
import { loadHead } from '../../src/model/head-forward.js';
import { loadHeadPool } from '../../src/model/head-pool.js';
import { loadNativeGemm } from '../../src/model/native-gemm.js';
import { availableParallelism } from 'node:os';
import { Sfc32 } from '../../src/util/random.js';
import { UserError } from '../../src/util/errors.js';
import { DAY, MIN, T0, cosine, makeWorld, sourceOf, type World, tfjsVectors, maxAbsDiff } from './head-fixtures.js';

const vectors = (head: RealtimeHead, users: HeadEvent[][], nowMs: number) => tfjsVectors(head, users.map((events) => ({ events })), nowMs);

const NOW = T0 + 60 * DAY;

function tinyCfg(world: { numApps: number; appDim: number }, over: Partial<RealtimeHeadConfig> = {}): RealtimeHeadConfig {
  return defaultHeadConfig({ numApps: world.numApps, appDim: world.appDim, dModel: 16, heads: 2, dFf: 32, maxEvents: 8, outDim: 12, recentK: 3, dropout: 0, ...over });
}



const ev = (app: number, minutesAgo: number, type: 1 | 2 = 1): HeadEvent => ({ app, type, timestampMs: NOW - minutesAgo * MIN });

beforeAll(async () => {
  await initBackend('cpu');
});

describe('time-gap buckets', () => {
  test('floor(log2(1 + minutes)) on known ages, capped, future clamped to now', () => {
    expect(gapBucket(0, 20)).toBe(0);
    expect(gapBucket(30_000, 20)).toBe(0); // 0.5 min -> log2(1.5)
    expect(gapBucket(MIN, 20)).toBe(1); // log2(2)
    expect(gapBucket(3 * MIN, 20)).toBe(2); // log2(4)
    expect(gapBucket(6.9 * MIN, 20)).toBe(2);
    expect(gapBucket(7 * MIN, 20)).toBe(3); // log2(8)
    expect(gapBucket(60 * MIN, 20)).toBe(5); // log2(61) = 5.93
    expect(gapBucket(DAY, 20)).toBe(10); // log2(1441) = 10.49
    expect(gapBucket(365 * DAY, 20)).toBe(19); // log2(525601) = 19.0 -> the last bucket
    expect(gapBucket(10 * 365 * DAY, 20)).toBe(19);
    expect(gapBucket(-5 * MIN, 20)).toBe(0);
    expect(gapBucket(DAY, 8)).toBe(7);
  });
});

describe('forward pass', () => {
  const world = makeWorld({ users: 0 });
  let head: RealtimeHead;
  beforeAll(() => {
    head = new RealtimeHead(tinyCfg(world), world.appMatrix, 3);
  });
  afterAll(() => head.dispose());

  test('shapes, unit norm, finite; empty users allowed', () => {
    const users = [[ev(1, 5)], [ev(2, 500), ev(3, 50, 2), ev(4, 5)], [], Array.from({ length: 20 }, (_, i) => ev(i, 100 - i))];
    const batch = encodeHeadBatch(users.map((events) => ({ events })), NOW, head.cfg);
    expect(batch.apps.length).toBe(4 * 8);
    const s = tf.tidy(() => head.forward(batch, false));
    expect(s.shape).toEqual([4, 12]);
    const v = vectors(head, users, NOW);
    for (const x of v) expect(x.every(Number.isFinite)).toBe(true);
    for (const i of [0, 1, 3]) expect(Math.hypot(...v[i]!)).toBeCloseTo(1, 5);
    s.dispose();
  });

  test('left padding: the newest event sits last, only the newest N are kept, input order does not matter', () => {
    const events = Array.from({ length: 11 }, (_, i) => ev(i, 200 - 10 * i));
    const b = encodeHeadBatch([{ events }], NOW, head.cfg);
    expect(Array.from(b.apps)).toEqual([3, 4, 5, 6, 7, 8, 9, 10]);
    const few = encodeHeadBatch([{ events: [ev(5, 10), ev(6, 3)] }], NOW, head.cfg);
    expect(Array.from(few.valid)).toEqual([0, 0, 0, 0, 0, 0, 1, 1]);
    expect(Array.from(few.apps.slice(6))).toEqual([5, 6]);
    expect(Array.from(few.gaps.slice(6))).toEqual([gapBucket(10 * MIN, 20), gapBucket(3 * MIN, 20)]);
    const shuffled = [...events].reverse();
    expect(maxAbsDiff(vectors(head, [shuffled], NOW)[0]!, vectors(head, [events], NOW)[0]!)).toBe(0);
  });

  test('padding changes nothing: more padding, garbage in padded slots, batch neighbours', () => {
    const user = [ev(7, 300), ev(8, 30, 2), ev(9, 2)];
    const base = vectors(head, [user], NOW)[0]!;
    // Same weights, twice the padding (no positional table: shapes do not depend on N).
    const wide = new RealtimeHead({ ...head.cfg, maxEvents: 16 }, world.appMatrix, 99);
    wide.variables.forEach((v, i) => v.assign(head.variables[i]!));
    expect(maxAbsDiff(vectors(wide, [user], NOW)[0]!, base)).toBeLessThan(1e-6);
    wide.dispose();
    // Garbage app / type / gap ids in padded slots are masked out exactly.
    const b = encodeHeadBatch([{ events: user }], NOW, head.cfg);
    for (let p = 0; p < 5; p++) {
      b.apps[p] = 40 + p;
      b.types[p] = 2;
      b.gaps[p] = 13;
    }
    const g = tf.tidy(() => head.forward(b, false));
    expect(maxAbsDiff(g.dataSync() as Float32Array, base)).toBe(0);
    g.dispose();
    // A user's vector does not depend on who else is in the batch.
    const others = [[ev(1, 1), ev(2, 2), ev(3, 3), ev(4, 4), ev(5, 5), ev(6, 6), ev(7, 7), ev(8, 8), ev(9, 9)], [], [ev(30, 1)]];
    expect(maxAbsDiff(vectors(head, [...others, user], NOW)[3]!, base)).toBeLessThan(1e-6);
  });

  test('every input part matters: app, type, time gap', () => {
    const base = vectors(head, [[ev(7, 300), ev(9, 2)]], NOW)[0]!;
    expect(maxAbsDiff(vectors(head, [[ev(7, 300), ev(33, 2)]], NOW)[0]!, base)).toBeGreaterThan(1e-4);
    expect(maxAbsDiff(vectors(head, [[ev(7, 300), ev(9, 2, 2)]], NOW)[0]!, base)).toBeGreaterThan(1e-4);
    expect(maxAbsDiff(vectors(head, [[ev(7, 300), ev(9, 2000)]], NOW)[0]!, base)).toBeGreaterThan(1e-4);
  });

  test('bad events are refused with a clear error', () => {
    expect(() => encodeHeadBatch([{ events: [ev(world.numApps, 1)] }], NOW, head.cfg)).toThrow(UserError);
    expect(() => encodeHeadBatch([{ events: [{ app: 1, type: 3 as 1, timestampMs: NOW }] }], NOW, head.cfg)).toThrow(/type/);
    expect(() => encodeHeadBatch([{ events: [{ app: 1, type: 1, timestampMs: NaN }] }], NOW, head.cfg)).toThrow(/timestamp/);
    expect(() => defaultHeadConfig({ numApps: 10, appDim: 4, dModel: 10, heads: 3 })).toThrow(/divisible/);
    expect(() => new RealtimeHead(tinyCfg(world), new Float32Array(5), 1)).toThrow(/app matrix/);
  });

  test('training mode applies dropout; inference is deterministic', () => {
    const h = new RealtimeHead(tinyCfg(world, { dropout: 0.5 }), world.appMatrix, 3);
    const b = encodeHeadBatch([{ events: [ev(7, 300), ev(9, 2)] }], NOW, h.cfg);
    const run = (training: boolean, seed: number) => tf.tidy(() => h.forward(b, training, seed)).dataSync() as Float32Array;
    expect(maxAbsDiff(run(false, 1), run(false, 2))).toBe(0);
    expect(maxAbsDiff(run(true, 1), run(true, 1))).toBe(0);
    expect(maxAbsDiff(run(true, 1), run(true, 2))).toBeGreaterThan(1e-4);
    h.dispose();
  });
});

describe('training samples', () => {
  test('cuts: inputs strictly before now (minus the masked window), targets the next installs after', () => {
    const world = makeWorld({ users: 40, seed: 3 });
    const opts = { nextK: 3, horizonMs: 7 * DAY, maskProb: 1, maskWindowMs: 30 * MIN };
    let n = 0;
    for (const u of world.users) {
      const tl = timelineOf(u);
      for (let i = 1; i < tl.length; i++) expect(tl[i]!.timestampMs).toBeGreaterThanOrEqual(tl[i - 1]!.timestampMs);
      const rng = new Sfc32(1, u.userId);
      for (let c = 0; c < 5; c++) {
        const s = cutSample(tl, rng, opts, 8, true);
        if (!s) continue;
        n++;
        expect(s.events.length).toBeGreaterThan(0);
        expect(s.events.length).toBeLessThanOrEqual(8);
        expect(s.targets.length).toBeGreaterThan(0);
        expect(s.targets.length).toBeLessThanOrEqual(3);
        for (const e of s.events) expect(e.timestampMs).toBeLessThan(s.nowMs);
        // The first target is the install the cut was placed before: within the horizon after now.
        const firstTarget = tl.find((e) => e.type === 1 && e.timestampMs >= s.nowMs)!;
        expect(s.targets[0]).toBe(firstTarget.app);
        expect(firstTarget.timestampMs - s.nowMs).toBeLessThanOrEqual(7 * DAY);
      }
    }
    expect(n).toBeGreaterThan(50);
  });
});

describe('checkpoints', () => {
  let dir: string;
  let world: World;
  let head: RealtimeHead;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aetn-head-'));
    world = makeWorld({ users: 0 });
    head = new RealtimeHead(tinyCfg(world), world.appMatrix, 21);
  });
  afterAll(async () => {
    head.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  test('save/load round-trips bit-exactly, and loadHead embeds what the model computes', async () => {
    const out = join(dir, 'head');
    const m = await saveHead(out, head, { baseFeatureId: 'aetn-aetn-20260101-deadbeef', vocab: world.vocab, metrics: { recallAt10: 0.5 } });
    expect(m.featureId).toMatch(/^rt-\d{8}-[0-9a-f]{8}$/);
    const { head: back, manifest } = await loadHeadModel(out);
    expect(manifest.baseFeatureId).toBe('aetn-aetn-20260101-deadbeef');
    head.variables.forEach((v, i) => expect(Buffer.from((back.variables[i]!.dataSync() as Float32Array).buffer).equals(Buffer.from((v.dataSync() as Float32Array).buffer))).toBe(true));
    expect(Buffer.from((back.appMatrix.dataSync() as Float32Array).buffer).equals(Buffer.from(world.appMatrix.buffer))).toBe(true);
    const users = [[ev(1, 3), ev(2, 1)], [ev(40, 100), ev(41, 50, 2)], []];
    const want = vectors(head, users, NOW);
    expect(vectors(back, users, NOW).every((v, i) => maxAbsDiff(v, want[i]!) === 0)).toBe(true);
    back.dispose();

    const loaded = await loadHead(out, { backend: 'cpu', expectBaseFeatureId: 'aetn-aetn-20260101-deadbeef', expectVocabHash: world.vocab.hash });
    expect(loaded.featureId).toBe(m.featureId);
    expect(loaded.dim).toBe(12);
    expect(loaded.maxEvents).toBe(8);
    expect(loaded.appIndexOfPackage.get('com.test.app7.lite')).toBe(7);
    const got = loaded.embed(users.map((events) => ({ events })), NOW);
    // The cached W_a W_in product sums in another order than the per-event projection.
    got.forEach((v, i) => expect(maxAbsDiff(v, want[i]!)).toBeLessThan(1e-5));
    loaded.dispose();

    // Users of every length at once: loadHead groups them by width (8, 16, ...) and must give
    // what one full-width forward pass gives.
    const wide = new RealtimeHead(tinyCfg(world, { maxEvents: 32 }), world.appMatrix, 5);
    await saveHead(join(dir, 'wide'), wide, { baseFeatureId: 'b', vocab: world.vocab });
    const mixed = [1, 40, 0, 9, 3, 17, 32, 8, 16].map((n, u) => Array.from({ length: n }, (_, i) => ev((u * 7 + i) % world.numApps, 5000 - 37 * i, i % 4 === 3 ? 2 : 1)));
    const full = vectors(wide, mixed, NOW);
    const servedWide = await loadHead(join(dir, 'wide'), { backend: 'cpu', maxBatch: 2 });
    const grouped = servedWide.embed(mixed.map((events) => ({ events })), NOW);
    expect(grouped).toHaveLength(mixed.length);
    grouped.forEach((v, i) => expect(maxAbsDiff(v, full[i]!)).toBeLessThan(1e-5));
    servedWide.dispose();
    wide.dispose();

    // Saving again replaces the checkpoint atomically with a new feature id.
    const m2 = await saveHead(out, head, { baseFeatureId: 'aetn-aetn-20260101-deadbeef', vocab: world.vocab });
    expect(m2.featureId).not.toBe(m.featureId);
    expect(JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')).featureId).toBe(m2.featureId);
  });

  test('the worker-thread pool embeds what loadHead embeds, and reports bad input clearly', async () => {
    const out = join(dir, 'pooled');
    await saveHead(out, head, { baseFeatureId: 'aetn-base-p', vocab: world.vocab });
    const single = await loadHead(out, { backend: 'cpu' });
    const gemm = loadNativeGemm();
    const threadsBefore = gemm.ok ? gemm.addon.getThreads() : 0;
    const pool = await loadHeadPool(out, { backend: 'cpu', workers: 2 });
    try {
      // Two workers fill the cores: each runs OpenBLAS on its share of them (process-wide setting).
      if (gemm.ok) expect(gemm.addon.getThreads()).toBe(Math.max(1, Math.floor(availableParallelism() / 2)));
      expect(pool.featureId).toBe(single.featureId);
      expect(pool.appIndexOfPackage.get('com.test.app3')).toBe(3);
      const users = Array.from({ length: 130 }, (_, u) => ({ events: Array.from({ length: u % 11 }, (_, i) => ev((u + 5 * i) % world.numApps, 900 - 13 * i, i % 3 === 2 ? 2 : 1)) }));
      const want = single.embed(users, NOW);
      const got = await pool.embed(users, NOW);
      expect(got).toHaveLength(130);
      got.forEach((v, i) => expect(maxAbsDiff(v, want[i]!)).toBe(0));
      expect((await pool.embed(users.slice(0, 3), NOW)).length).toBe(3);
      await expect(pool.embed([{ events: [ev(world.numApps + 1, 1)] }], NOW)).rejects.toThrow(UserError);
      // The pool still works after a refused batch.
      expect(maxAbsDiff((await pool.embed([users[7]!], NOW))[0]!, want[7]!)).toBe(0);
    } finally {
      await pool.close();
      single.dispose();
    }
    if (gemm.ok) expect(gemm.addon.getThreads()).toBe(threadsBefore);
    await expect(loadHeadPool(out, { backend: 'cpu', expectBaseFeatureId: 'other' })).rejects.toThrow(/not other/);
  });

  test('a corrupt, truncated or mismatched checkpoint is refused with a clear error', async () => {
    const save = async (name: string) => {
      const p = join(dir, name);
      await saveHead(p, head, { baseFeatureId: 'aetn-base-1', vocab: world.vocab });
      return p;
    };
    const flipped = await save('flipped');
    const w = await readFile(join(flipped, 'weights.bin'));
    w[w.length - 7] ^= 0x10;
    await writeFile(join(flipped, 'weights.bin'), w);
    await expect(loadHeadModel(flipped)).rejects.toThrow(/weights\.bin fails its sha256 check/);

    const cut = await save('cut');
    await truncate(join(cut, 'app-matrix.bin'), 100);
    await expect(loadHeadModel(cut)).rejects.toThrow(/app-matrix\.bin has 100 bytes/);

    const noManifest = await save('bad-manifest');
    await writeFile(join(noManifest, 'manifest.json'), '{"format": "aetn-realtime-head/1", "featu');
    await expect(loadHeadModel(noManifest)).rejects.toThrow(UserError);

    const ok = await save('ok');
    await expect(loadHead(ok, { backend: 'cpu', expectBaseFeatureId: 'aetn-other-2' })).rejects.toThrow(/trained on AETN feature aetn-base-1, not aetn-other-2/);
    await expect(loadHeadModel(ok, { expectVocabHash: 'another-vocab' })).rejects.toThrow(/vocabulary/);
    await expect(loadHeadModel(ok, { expectAppMatrixSha256: '00'.repeat(32) })).rejects.toThrow(/app matrix differs/);
    await expect(loadHeadModel(join(dir, 'nowhere'))).rejects.toThrow(/does not exist/);

    // A directory with other files is never overwritten.
    const other = join(dir, 'other');
    await saveHead(join(other, 'x'), head, { baseFeatureId: 'b', vocab: world.vocab });
    await expect(saveHead(other, head, { baseFeatureId: 'b', vocab: world.vocab })).rejects.toThrow(/refusing/);
  });
});
