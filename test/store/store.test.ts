import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { EmbeddingStore } from '../../src/store/store.js';
import { StoreError } from '../../src/store/errors.js';
import { UserError } from '../../src/util/errors.js';
import { vectorFor } from './fixtures/vectors.js';

let dir: string;
let store: EmbeddingStore | undefined;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'aetn-store-'));
});
afterEach(async () => {
  await store?.close();
  store = undefined;
  rmSync(dir, { recursive: true, force: true });
});

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(StoreError);
    expect(err).toBeInstanceOf(UserError);
    return (err as StoreError).code;
  }
  return undefined;
}

async function codeOfAsync(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(StoreError);
    return (err as StoreError).code;
  }
  return undefined;
}

describe('EmbeddingStore', () => {
  it('round-trips vectors bit-exactly and keeps them across reopen', async () => {
    const sdir = join(dir, 's');
    store = EmbeddingStore.open(sdir);
    store.registerFeature({ featureId: 'F1', namespace: 'long', dim: 16, variant: 'aetn' });
    const entries = Array.from({ length: 500 }, (_, u) => ({ userId: `user-${u}`, vector: vectorFor(u, 16) }));
    const before = Date.now();
    await store.putMany('F1', entries);
    const got = store.get('F1', 'user-7')!;
    expect(got.featureId).toBe('F1');
    expect(Array.from(got.vector)).toEqual(Array.from(vectorFor(7, 16)));
    expect(got.updatedAtMs).toBeGreaterThanOrEqual(before);
    await store.close();

    store = EmbeddingStore.open(sdir, { create: false });
    expect(store.count('F1')).toBe(500);
    expect(store.getFeature('F1')!.count).toBe(500);
    for (const u of [0, 123, 499]) expect(Array.from(store.get('F1', `user-${u}`)!.vector)).toEqual(Array.from(vectorFor(u, 16)));
    // iterate: key order, every user once, exact values
    const seen = [...store.iterate('F1')];
    expect(seen.map((e) => e.userId)).toEqual(entries.map((e) => e.userId).sort());
    const e42 = seen.find((e) => e.userId === 'user-42')!;
    expect(Array.from(e42.vector)).toEqual(Array.from(vectorFor(42, 16)));
    expect([...store.userIds('F1')].length).toBe(500);
  });

  it('batch gets return undefined for unknown users, in request order', async () => {
    store = EmbeddingStore.open(join(dir, 's'));
    store.registerFeature({ featureId: 'F', namespace: 'long', dim: 4, variant: 'aetn' });
    await store.putMany('F', [0, 1, 2].map((u) => ({ userId: `u${u}`, vector: vectorFor(u, 4) })));
    const res = store.getMany('F', ['u2', 'nobody', 'u0', 'u2']);
    expect(res.map((r) => (r ? Array.from(r.vector) : undefined))).toEqual([
      Array.from(vectorFor(2, 4)),
      undefined,
      Array.from(vectorFor(0, 4)),
      Array.from(vectorFor(2, 4)),
    ]);
    // returned vectors are independent copies, not views of a shared buffer
    res[0]!.vector[0] = 99;
    expect(store.get('F', 'u2')!.vector[0]).toBe(vectorFor(2, 4)[0]);
    expect(codeOf(() => store!.getMany('nope', ['u0']))).toBe('NOT_FOUND');
    expect(codeOf(() => store!.getMany('F', ['']))).toBe('INVALID_ARGUMENT');
  });

  it('rejects wrong dimensions, NaN/Inf, unknown features, and writes nothing of a bad batch', async () => {
    store = EmbeddingStore.open(join(dir, 's'));
    store.registerFeature({ featureId: 'F', namespace: 'long', dim: 8, variant: 'aetn' });
    const good = { userId: 'a', vector: vectorFor(1, 8) };
    const nan = vectorFor(2, 8);
    nan[3] = Number.NaN;
    const inf = vectorFor(3, 8);
    inf[7] = Number.POSITIVE_INFINITY;
    expect(await codeOfAsync(store.putMany('F', [good, { userId: 'b', vector: vectorFor(2, 7) }]))).toBe('INVALID_ARGUMENT');
    expect(await codeOfAsync(store.putMany('F', [good, { userId: 'b', vector: nan }]))).toBe('INVALID_ARGUMENT');
    expect(await codeOfAsync(store.putMany('F', [good, { userId: 'b', vector: inf }]))).toBe('INVALID_ARGUMENT');
    expect(await codeOfAsync(store.putMany('F', [{ userId: 'b', vector: [1, 2] as unknown as Float32Array }]))).toBe('INVALID_ARGUMENT');
    expect(await codeOfAsync(store.putMany('G', [good]))).toBe('NOT_FOUND');
    expect(store.count('F')).toBe(0); // the good entry of each bad batch was not written either
    expect(codeOf(() => store!.registerFeature({ featureId: '../evil', namespace: 'long', dim: 8, variant: 'x' }))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => store!.registerFeature({ featureId: 'F', namespace: 'long', dim: 9, variant: 'aetn' }))).toBe('FAILED_PRECONDITION');
    expect(codeOf(() => store!.registerFeature({ featureId: 'S', namespace: 'short', dim: 8, variant: 'rt', baseFeatureId: 'nope' }))).toBe('NOT_FOUND');
    // idempotent re-registration (a re-run of an embed job)
    expect(store.registerFeature({ featureId: 'F', namespace: 'long', dim: 8, variant: 'aetn' }).featureId).toBe('F');
  });

  it('transaction is atomic: an exception inside leaves nothing written', async () => {
    store = EmbeddingStore.open(join(dir, 's'));
    const s = store;
    s.registerFeature({ featureId: 'L', namespace: 'long', dim: 4, variant: 'aetn' });
    s.registerFeature({ featureId: 'S', namespace: 'short', dim: 4, variant: 'realtime', baseFeatureId: 'L' });
    const recent = s.root.openDB<{ n: number }, string>({ name: 'recent-events' });
    await expect(
      s.transaction(() => {
        s.putInTxn('S', 'u1', vectorFor(1, 4));
        recent.putSync('u1', { n: 1 });
        s.setRunStateInTxn('offsets', { p0: 10 });
        throw new Error('handler failed');
      }),
    ).rejects.toThrow('handler failed');
    expect(s.get('S', 'u1')).toBeUndefined();
    expect(recent.get('u1')).toBeUndefined();
    expect(s.getRunState('offsets')).toBeUndefined();
    // a bad vector in the middle also rolls back the writes made before it
    expect(() =>
      s.transactionSync(() => {
        s.putInTxn('S', 'u1', vectorFor(1, 4));
        s.putInTxn('S', 'u2', new Float32Array(3));
      }),
    ).toThrow(StoreError);
    expect(s.get('S', 'u1')).toBeUndefined();
    // an async callback is refused (its later writes would escape the transaction)
    await expect(s.transaction((async () => s.putInTxn('S', 'u3', vectorFor(3, 4))) as unknown as () => void)).rejects.toThrow(/synchronous/);
    expect(s.get('S', 'u3')).toBeUndefined();
    // and the happy path commits everything together
    await s.transaction(() => {
      s.putInTxn('S', 'u1', vectorFor(1, 4));
      recent.putSync('u1', { n: 1 });
      s.setRunStateInTxn('offsets', { p0: 10 });
    });
    expect(Array.from(s.get('S', 'u1')!.vector)).toEqual(Array.from(vectorFor(1, 4)));
    expect(recent.get('u1')).toEqual({ n: 1 });
    expect(s.getRunState('offsets')).toEqual({ p0: 10 });
    expect(() => s.putInTxn('S', 'u9', vectorFor(9, 4))).toThrow(/inside store.transaction/);
  });

  it('retire, default feature, purge, delete users, list', async () => {
    store = EmbeddingStore.open(join(dir, 's'));
    const s = store;
    s.registerFeature({ featureId: 'old', namespace: 'long', dim: 4, variant: 'aetn', createdAtMs: 1000 });
    s.registerFeature({ featureId: 'new', namespace: 'long', dim: 4, variant: 'aetn', createdAtMs: 2000 });
    s.registerFeature({ featureId: 'st', namespace: 'short', dim: 4, variant: 'realtime', createdAtMs: 3000, baseFeatureId: 'new' });
    await s.putMany('old', [{ userId: 'a', vector: vectorFor(1, 4) }]);
    await s.putMany('new', [1, 2, 3].map((u) => ({ userId: `u${u}`, vector: vectorFor(u, 4) })));
    expect(s.defaultFeature('long')!.featureId).toBe('new');
    expect(s.defaultFeature('short')!.featureId).toBe('st');
    expect(s.features().map((f) => [f.featureId, f.count])).toEqual([['old', 1], ['new', 3], ['st', 0]]);

    await s.retire('new');
    expect(s.defaultFeature('long')!.featureId).toBe('old'); // the older one is still servable
    expect(s.getFeature('new')!.retired).toBe(true);
    expect(codeOf(() => s.get('new', 'u1'))).toBe('FAILED_PRECONDITION');
    expect(await codeOfAsync(s.putMany('new', [{ userId: 'x', vector: vectorFor(1, 4) }]))).toBe('FAILED_PRECONDITION');
    expect(codeOf(() => s.registerFeature({ featureId: 'new', namespace: 'long', dim: 4, variant: 'aetn' }))).toBe('FAILED_PRECONDITION');
    expect(s.count('new')).toBe(3); // retired data is kept until purge
    expect(await codeOfAsync(s.purge('old'))).toBe('FAILED_PRECONDITION');
    await s.purge('new');
    expect(s.count('new')).toBe(0);
    expect(s.getFeature('new')!.purgedAtMs).toBeGreaterThan(0);

    expect(await s.deleteUsers('old', ['a', 'zz'])).toBe(1);
    expect(s.get('old', 'a')).toBeUndefined();
  });

  it('run state and installers persist', async () => {
    const sdir = join(dir, 's');
    store = EmbeddingStore.open(sdir);
    store.registerFeature({ featureId: 'F', namespace: 'long', dim: 2, variant: 'aetn' });
    await store.putMany('F', [{ userId: 'a', vector: new Float32Array([1, 2]) }], { runState: { runId: 'embed-1', state: { shard: 3, lastUser: 'a' } } });
    await store.putInstallers('com.example.niche', ['a', 'b', 'a']);
    await store.putInstallersMany([['app2', ['c']], ['app3', []]]);
    await store.close();
    store = EmbeddingStore.open(sdir);
    expect(store.getRunState('embed-1')).toEqual({ shard: 3, lastUser: 'a' });
    expect(store.installersOf('com.example.niche')).toEqual(['a', 'b']);
    expect(store.installersOf('unknown-app')).toBeUndefined();
    expect(store.appKeys().sort()).toEqual(['app2', 'app3', 'com.example.niche']);
    expect(store.stats().vectors).toBe(1);
  });

  it("users' kept apps and per-app user counts persist; bad input is refused before anything is written", async () => {
    const sdir = join(dir, 'apps');
    store = EmbeddingStore.open(sdir);
    expect(store.userAppsCount()).toBe(0);
    await store.putUserAppsMany([['a', ['x', 'y', 'x']], ['b', []]]);
    await store.putAppUsersMany([['x', 1], ['y', 1]]);
    await expect(store.putUserAppsMany([['c', ['ok']], ['', ['x']]])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(store.putUserAppsMany([['c', 'x' as unknown as string[]]])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(store.putAppUsersMany([['z', -1]])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(store.putAppUsersMany([['z', 1.5]])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await store.close();
    store = EmbeddingStore.open(sdir);
    expect(store.userAppsMany(['a', 'b', 'c'])).toEqual([['x', 'y'], [], undefined]);
    expect(store.appUsersMany(['x', 'y', 'z'])).toEqual([1, 1, undefined]);
    expect(store.userAppsCount()).toBe(2);
  });

  it('apps users ever installed and per-app counts persist apart from the kept apps; bad input is refused', async () => {
    const sdir = join(dir, 'ever');
    store = EmbeddingStore.open(sdir);
    expect(store.userEverAppsCount()).toBe(0);
    await store.putUserAppsMany([['a', ['x']]]);
    await store.putUserEverAppsMany([['a', ['x', 'w', 'x']]]);
    await store.putAppEverUsersMany([['x', 1], ['w', 1]]);
    await expect(store.putUserEverAppsMany([['', ['x']]])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(store.putUserEverAppsMany([['c', 'x' as unknown as string[]]])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT', message: expect.stringMatching(/ever installed/) });
    await expect(store.putAppEverUsersMany([['z', -1]])).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await store.close();
    store = EmbeddingStore.open(sdir);
    expect(store.userEverAppsMany(['a', 'b'])).toEqual([['x', 'w'], undefined]);
    expect(store.appEverUsersMany(['x', 'w', 'z'])).toEqual([1, 1, undefined]);
    expect(store.userAppsMany(['a'])).toEqual([['x']]);
    expect(store.appUsersMany(['w'])).toEqual([undefined]);
    expect(store.userEverAppsCount()).toBe(1);
  });

  it('refuses directories that are not stores or are damaged', async () => {
    const notStore = join(dir, 'other');
    mkdirSync(notStore);
    writeFileSync(join(notStore, 'notes.txt'), 'hello');
    expect(codeOf(() => EmbeddingStore.open(notStore))).toBe('FAILED_PRECONDITION');
    expect(codeOf(() => EmbeddingStore.open(join(dir, 'missing'), { create: false }))).toBe('NOT_FOUND');

    const badMarker = join(dir, 'bad');
    mkdirSync(badMarker);
    writeFileSync(join(badMarker, 'aetn-store.json'), '{not json');
    expect(codeOf(() => EmbeddingStore.open(badMarker))).toBe('FAILED_PRECONDITION');

    // a store whose data file was replaced by garbage
    const garbled = join(dir, 'garbled');
    const s = EmbeddingStore.open(garbled);
    await s.close();
    writeFileSync(join(garbled, 'lmdb', 'data.mdb'), Buffer.alloc(64 * 1024, 0x5a));
    expect(codeOf(() => EmbeddingStore.open(garbled))).toBe('FAILED_PRECONDITION');
  });

  it('a long-lived reader sees features and vectors written by another process', async () => {
    const sdir = join(dir, 'shared');
    store = EmbeddingStore.open(sdir);
    const reader = store;
    reader.registerFeature({ featureId: 'A', namespace: 'long', dim: 8, variant: 'test' });
    expect(reader.getMany('A', ['x'])).toEqual([undefined]); // a read before the write, as a server would do
    const script = join(import.meta.dirname, 'fixtures', 'write-one.ts');
    const run = (...a: string[]) =>
      new Promise<void>((resolve, reject) =>
        spawn(process.execPath, ['--import', 'tsx', script, sdir, ...a], { stdio: 'inherit' }).on('exit', (c) => (c === 0 ? resolve() : reject(new Error(`writer exited ${c}`)))),
      );
    await run('A', 'x', '5');
    expect(Array.from(reader.get('A', 'x')!.vector)).toEqual(Array.from(vectorFor(5, 8)));
    await run('B', 'y', '6'); // a feature registered by the other process
    expect(reader.defaultFeature('long')!.featureId).toBe('B');
    expect(Array.from(reader.getMany('B', ['y'])[0]!.vector)).toEqual(Array.from(vectorFor(6, 8)));
  });

  it('survives kill -9 mid-write: consistent and resumable from the run marker', async () => {
    const sdir = join(dir, 'crash');
    const batch = 200;
    const dim = 32;
    const script = join(import.meta.dirname, 'fixtures', 'crash-writer.ts');
    const runChild = (ms: number) =>
      new Promise<void>((resolve, reject) => {
        const child = spawn(process.execPath, ['--import', 'tsx', script, sdir, String(batch), String(dim)], { stdio: ['ignore', 'pipe', 'inherit'] });
        let killed = false;
        child.stdout.on('data', (d: Buffer) => {
          if (!killed && d.toString().includes('ready')) {
            killed = true;
            setTimeout(() => child.kill('SIGKILL'), ms);
          }
        });
        const guard = setTimeout(() => child.kill('SIGKILL'), 30_000);
        child.on('exit', () => clearTimeout(guard));
        child.on('exit', (code, signal) => (signal === 'SIGKILL' && killed ? resolve() : reject(new Error(`writer exited ${code} ${signal}`))));
      });

    const check = async () => {
      const s = EmbeddingStore.open(sdir);
      try {
        const state = s.getRunState<{ nextBatch: number }>('run-1')!;
        expect(state.nextBatch).toBeGreaterThanOrEqual(3);
        // exactly the batches the marker covers, each vector intact
        expect(s.count('crash')).toBe(state.nextBatch * batch);
        let n = 0;
        for (const e of s.iterate('crash')) {
          const u = Number(e.userId.slice(1));
          expect(u).toBeLessThan(state.nextBatch * batch);
          if (n++ % 97 === 0) expect(Array.from(e.vector)).toEqual(Array.from(vectorFor(u, dim)));
        }
        return state.nextBatch;
      } finally {
        await s.close();
      }
    };

    await runChild(300);
    const first = await check();
    await runChild(300); // resumes from the marker
    const second = await check();
    expect(second).toBeGreaterThan(first);
  });
});
