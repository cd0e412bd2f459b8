// The shared processing path (EventProcessor.submit) without a broker: units in flight build on
// each other's not-yet-durable states, share commits, keep apply order, record Kafka offsets
// atomically, refuse a stale offset, and a failure rejects exactly the units that built on it.
import { afterEach, describe, expect, it } from 'vitest';
import { EventProcessor } from '../../src/stream/processor.js';
import type { HeadFn, RecentEvents, ValidEvent } from '../../src/stream/types.js';
import { fakeEmbed, fakeHead, SHORT_FEATURE, tempStore, type TempStore } from './helpers.js';

function ev(id: string, userId: string, app: number, ts: number): ValidEvent {
  return { eventId: id, userId, app, type: 1, timestampMs: ts };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('EventProcessor (shared by the Kafka pipeline and the direct sink)', () => {
  let t: TempStore | undefined;
  afterEach(async () => {
    await t?.cleanup();
    t = undefined;
  });

  it('pipelined units for one user build on each other and commit in apply order', async () => {
    t = tempStore();
    const store = t.store;
    // An async head whose first call is the slowest: units finish their heads out of order.
    let calls = 0;
    const head: HeadFn = async (states) => {
      const delay = [60, 5, 30][calls++ % 3]!;
      await sleep(delay);
      return fakeHead(states);
    };
    const p = new EventProcessor({ store, head, featureId: SHORT_FEATURE, maxEvents: 8 });
    const base = Date.now() - 60_000;
    const units = [0, 1, 2].map((k) =>
      p.submit({
        events: [ev(`a${k}`, 'alice', k, base + k), ev(`b${k}`, 'bob', 10 + k, base + k)],
        offset: { topic: 't', partition: 0, appliedBefore: k === 0 ? -1 : 10 * k - 1, lastOffset: 10 * (k + 1) - 1 },
      }),
    );
    // Applied at once: the third unit already sees the first two, before anything is durable.
    expect(p.current('alice')!.events.map((e) => e.eventId)).toEqual(['a0', 'a1', 'a2']);
    const results = await Promise.all(units);
    expect(results.map((r) => [r.applied, r.conflict])).toEqual([
      [2, false],
      [2, false],
      [2, false],
    ]);
    const alice = p.state('alice')!;
    expect(alice.events.map((e) => e.eventId)).toEqual(['a0', 'a1', 'a2']);
    expect(alice.applied).toBe(3);
    // The last unit's vector won (it was queued last although its head was not the last to finish).
    expect(Array.from(store.get(SHORT_FEATURE, 'alice')!.vector)).toEqual(Array.from(fakeEmbed(alice)));
    expect(p.appliedOffset('t', 0)).toBe(29);
  });

  it('refuses a unit computed against a stale applied offset (another writer), and those after it', async () => {
    t = tempStore();
    const p = new EventProcessor({ store: t.store, head: fakeHead, featureId: SHORT_FEATURE });
    await p.submit({ events: [ev('x1', 'carol', 1, 1000)], offset: { topic: 't', partition: 3, appliedBefore: -1, lastOffset: 4 } });
    // Both built on offset -1 / 5: the first conflicts (the store says 4), the second builds on it.
    const stale = p.submit({ events: [ev('x2', 'carol', 2, 2000)], offset: { topic: 't', partition: 3, appliedBefore: -1, lastOffset: 9 } });
    const next = p.submit({ events: [ev('x3', 'carol', 3, 3000)], offset: { topic: 't', partition: 3, appliedBefore: 9, lastOffset: 12 } });
    expect((await stale).conflict).toBe(true);
    expect((await next).conflict).toBe(true);
    expect(p.state('carol')!.events.map((e) => e.eventId)).toEqual(['x1']);
    expect(p.current('carol')!.events.map((e) => e.eventId)).toEqual(['x1']); // nothing pending left
    expect(p.appliedOffset('t', 3)).toBe(4);
    // After the caller re-reads, the redo applies.
    p.clearConflict('t', 3);
    const redo = await p.submit({ events: [ev('x2', 'carol', 2, 2000), ev('x3', 'carol', 3, 3000)], offset: { topic: 't', partition: 3, appliedBefore: 4, lastOffset: 12 } });
    expect([redo.applied, redo.conflict]).toEqual([2, false]);
    expect(p.state('carol')!.events.map((e) => e.eventId)).toEqual(['x1', 'x2', 'x3']);
  });

  it('a failing head rejects its unit and the units built on it; earlier units commit; later calls work', async () => {
    t = tempStore();
    let fail = false;
    const head: HeadFn = async (states: RecentEvents[]) => {
      await sleep(5);
      if (fail && states.some((s) => s.events.some((e) => e.eventId === 'boom'))) throw new Error('head broke');
      return fakeHead(states);
    };
    const p = new EventProcessor({ store: t.store, head, featureId: SHORT_FEATURE });
    fail = true;
    const ok = p.process([ev('d1', 'dave', 1, 1000)]);
    const bad = p.process([ev('boom', 'dave', 2, 2000)]);
    const after = p.process([ev('d3', 'dave', 3, 3000), ev('e1', 'erin', 4, 3000)]);
    const [rOk, rBad, rAfter] = await Promise.allSettled([ok, bad, after]);
    expect(rOk.status === 'fulfilled' && rOk.value.applied).toBe(1);
    expect(rBad.status === 'rejected' && (rBad.reason as Error).message).toBe('head broke');
    expect(rAfter.status === 'rejected' && (rAfter.reason as Error).message).toMatch(/earlier batch/);
    expect(p.state('dave')!.events.map((e) => e.eventId)).toEqual(['d1']);
    expect(p.state('erin')).toBeUndefined();
    expect(t.store.get(SHORT_FEATURE, 'erin')).toBeUndefined();
    // The client retries the refused events: applied once each, from the durable state.
    fail = false;
    const retry = await p.process([ev('boom', 'dave', 2, 2000), ev('d3', 'dave', 3, 3000), ev('e1', 'erin', 4, 3000)]);
    expect(retry.applied).toBe(3);
    expect(p.state('dave')!.events.map((e) => e.eventId)).toEqual(['d1', 'boom', 'd3']);
    expect(p.state('dave')!.applied).toBe(3);
  });

  it('a duplicate of a pending event is acknowledged only once the original is durable, and refused if it fails', async () => {
    t = tempStore();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let failNext = true;
    const head: HeadFn = async (states) => {
      await gate;
      if (failNext) {
        failNext = false;
        throw new Error('head broke');
      }
      return fakeHead(states);
    };
    const p = new EventProcessor({ store: t.store, head, featureId: SHORT_FEATURE });
    const original = p.process([ev('f1', 'frank', 1, 1000)]);
    const dupe = p.process([ev('f1', 'frank', 1, 1000)]);
    let dupeSettled = false;
    void dupe.then(
      () => (dupeSettled = true),
      () => (dupeSettled = true),
    );
    await sleep(50);
    expect(dupeSettled).toBe(false); // not acknowledged while the original is pending
    release();
    const [rOrig, rDupe] = await Promise.allSettled([original, dupe]);
    expect(rOrig.status).toBe('rejected');
    expect(rDupe.status).toBe('rejected'); // its original was never written: the client must retry
    const again = await p.process([ev('f1', 'frank', 1, 1000)]);
    expect(again.applied).toBe(1);
  });

  it('a vector the store refuses fails that unit only, with nothing of it written', async () => {
    t = tempStore();
    const head: HeadFn = (states) => states.map((s) => (s.userId === 'bad' ? new Float32Array(3) : fakeEmbed(s)));
    const p = new EventProcessor({ store: t.store, head, featureId: SHORT_FEATURE });
    const good = p.process([ev('g1', 'good', 1, 1000)]);
    const bad = p.process([ev('b1', 'bad', 1, 1000), ev('b2', 'also', 2, 1000)]);
    const [rGood, rBad] = await Promise.allSettled([good, bad]);
    expect(rGood.status === 'fulfilled' && rGood.value.applied).toBe(1);
    expect(rBad.status === 'rejected' && (rBad.reason as Error).message).toMatch(/dimensions/);
    expect(p.state('good')!.applied).toBe(1);
    expect(p.state('also')).toBeUndefined();
    expect(t.store.get(SHORT_FEATURE, 'also')).toBeUndefined();
  });
});
