// EmbeddingStore.forget / unforget on a real LMDB store: every place a user lives, retired
// features included; tombstones survive a reopen and keep later writes out.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EmbeddingStore } from '../../src/store/store.js';
import { StateDb, STATE_DB } from '../../src/stream/state.js';

const dir = mkdtempSync(join(tmpdir(), 'aetn-forget-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const v = (x: number) => Float32Array.from([x, 1, 2, 3]);

describe('EmbeddingStore.forget', () => {
  it('erases vectors of every feature, realtime state, kept apps and installer entries; tombstones hold across a reopen', async () => {
    expect(STATE_DB).toBe('recent-events'); // the store names the same sub-database
    const path = join(dir, 's1');
    let store = EmbeddingStore.open(path);
    store.registerFeature({ featureId: 'old', namespace: 'long', dim: 4, variant: 'aetn', createdAtMs: 1 });
    store.registerFeature({ featureId: 'new', namespace: 'long', dim: 4, variant: 'aetn', createdAtMs: 2 });
    store.registerFeature({ featureId: 'rt', namespace: 'short', dim: 4, variant: 'realtime', createdAtMs: 3, baseFeatureId: 'new' });
    for (const f of ['old', 'new', 'rt']) await store.putMany(f, ['a', 'b', 'c'].map((u, i) => ({ userId: u, vector: v(i) })));
    await store.retire('old');
    await store.putInstallersMany([
      ['app1', ['a', 'b']],
      ['app2', ['b', 'c']],
    ]);
    await store.putUserAppsMany([
      ['a', ['app1']],
      ['b', ['app1', 'app2']],
    ]);
    await store.putAppUsersMany([
      ['app1', 2],
      ['app2', 1],
    ]);
    await store.putUserEverAppsMany([
      ['a', ['app1', 'app3']],
      ['b', ['app1', 'app2', 'app3']],
    ]);
    await store.putAppEverUsersMany([
      ['app1', 2],
      ['app2', 1],
      ['app3', 2],
    ]);
    const sdb = new StateDb(store.root);
    store.transactionSync(() => sdb.putInTxn({ userId: 'b', events: [], applied: 0, updatedAtMs: 1 }));
    const seq = store.forgetSeq();

    const c = await store.forget(['b', 'b', 'zz']);
    expect(c).toEqual({ users: 2, newlyForgotten: 2, vectorsRemoved: 3, installerEntriesRemoved: 2, keptAppListsRemoved: 1, realtimeStatesRemoved: 1 });
    expect(store.forgetSeq()).toBe(seq + 1);
    expect(store.installersOf('app1')).toEqual(['a']);
    expect(store.installersOf('app2')).toEqual(['c']);
    expect(store.userAppsMany(['a', 'b'])).toEqual([['app1'], undefined]);
    expect(store.appUsersMany(['app1', 'app2'])).toEqual([1, 0]);
    expect(store.userEverAppsMany(['a', 'b'])).toEqual([['app1', 'app3'], undefined]);
    expect(store.appEverUsersMany(['app1', 'app2', 'app3'])).toEqual([1, 0, 1]);
    expect(sdb.get('b')).toBeUndefined();
    expect(store.count('old')).toBe(2); // retired features too
    expect(store.get('new', 'b')).toBeUndefined();
    expect(store.get('new', 'a')).toBeDefined();
    await store.close();

    store = EmbeddingStore.open(path);
    expect(store.forgottenUsers()).toEqual(['b', 'zz']);
    expect(await store.putMany('new', [{ userId: 'b', vector: v(9) }, { userId: 'd', vector: v(9) }])).toBe(1);
    expect(store.get('new', 'b')).toBeUndefined();
    expect(store.get('new', 'd')).toBeDefined();
    expect(store.transactionSync(() => store.putInTxn('rt', 'b', v(1)))).toBe(false);
    expect(store.get('rt', 'b')).toBeUndefined();
    expect(await store.unforget(['b', 'nobody'])).toBe(1);
    expect(await store.putMany('new', [{ userId: 'b', vector: v(9) }])).toBe(0);
    expect(store.get('new', 'b')).toBeDefined();
    await expect(store.forget([''])).rejects.toThrow(/user id/);
    await store.close();
  });
});
