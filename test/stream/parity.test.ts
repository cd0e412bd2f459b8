// Train/serve parity of the realtime head's input: one user's events go through the training path
// (raw files -> `prepare` (weekly cap 10, last 25 installs + 25 uninstalls) -> timelineOf, the head
// trainer's timeline) and through the serving path (encoded AppEvents -> decodeEvent -> the
// EventProcessor on a real store, with a clock at the dataset's reference end); the timelines the
// head is given must be the same events, in the same order.
import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { prepare } from '../../src/data/prepare.js';
import { openPrepared } from '../../src/data/prepared.js';
import { timelineOf } from '../../src/model/train-head.js';
import { decodeEvent, encodeEvent, isRejection } from '../../src/stream/codec.js';
import { EventProcessor } from '../../src/stream/processor.js';
import { headTimeline } from '../../src/stream/timeline.js';
import type { RecentEvents, ValidEvent } from '../../src/stream/types.js';
import { SHORT_FEATURE, DIM, tempStore } from './helpers.js';
import { DAY, daysAgo, REF_END, tmp, writeRaw, type App, type Ev } from '../data/helpers.js';

const APPS: App[] = Array.from({ length: 8 }, (_, i) => ({ id: `a${i}`, packages: [`p.a${i}`], category: `cat${i % 3}` }));
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** 14 operations in the last week (4 over the cap), 20 spread over 3 earlier weeks: 27 installs survive the cap, 2 over 25. */
function userEvents(): Ev[] {
  const ev: Ev[] = [];
  let n = 0;
  const add = (days: number, hour: number, type: 'install' | 'uninstall') =>
    ev.push({ id: `x-${n}`, user: 'x', pkg: `p.a${n++ % APPS.length}`, type, t: daysAgo(days, hour) });
  for (let i = 0; i < 14; i++) add(1 + (i % 5), 1 + i, 'install'); // week 0: days 1-5
  for (let i = 0; i < 7; i++) add(8 + i % 6, 1 + i, i === 3 ? 'uninstall' : 'install'); // week 1
  for (let i = 0; i < 7; i++) add(15 + i % 6, 1 + i, i === 2 ? 'uninstall' : 'install'); // week 2
  for (let i = 0; i < 6; i++) add(22 + i % 6, 1 + i, i === 5 ? 'uninstall' : 'install'); // week 3
  return ev;
}

describe('realtime head: train/serve parity of the timeline', () => {
  it('training data and the stream give the head the same events', async () => {
    const dir = tmp('aetn-parity-');
    dirs.push(dir);
    // Other users so every app is in the vocabulary (held by some, not by nearly all).
    const installed: [string, string[]][] = Array.from({ length: 12 }, (_, u) => [`b${u}`, [`p.a${u % 8}`, `p.a${(u + 3) % 8}`]]);
    const events = userEvents();
    writeRaw(join(dir, 'raw'), { apps: APPS, installed, events });
    await prepare({ input: join(dir, 'raw'), out: join(dir, 'p'), shards: 1, minInstalls: 2, progress: false });
    const ds = await openPrepared(join(dir, 'p'));
    expect(ds.vocab.apps).toHaveLength(APPS.length);
    let trained: ReturnType<typeof timelineOf> | undefined;
    for await (const ex of ds.examples()) if (ex.userId === 'x') trained = timelineOf(ex);
    expect(trained).toBeDefined();

    // Serving: the head checkpoint's package map is built from the same vocabulary.
    const vocab = new Map<string, number>();
    for (const a of ds.vocab.apps) for (const p of a.packages ?? []) vocab.set(p, a.index);
    const ts = tempStore();
    try {
      const seen: RecentEvents[] = [];
      const processor = new EventProcessor({
        store: ts.store,
        featureId: SHORT_FEATURE,
        maxEvents: 64, // the stored window holds all 34 raw events
        now: () => REF_END,
        head: (states) => {
          seen.push(...states);
          return states.map(() => Float32Array.from({ length: DIM }, (_, i) => (i === 0 ? 1 : 0)));
        },
      });
      const valid: ValidEvent[] = [];
      for (const e of events) {
        const bytes = encodeEvent({ eventId: e.id, userId: e.user, packageName: e.pkg, type: e.type === 'install' ? 1 : 2, timestampMs: e.t as number });
        const r = decodeEvent(bytes, Buffer.from(e.user), { vocab, nowMs: REF_END });
        if (isRejection(r)) throw new Error(r.detail);
        valid.push(r);
      }
      // In two deliveries, out of order: the state sorts by time.
      await processor.process(valid.slice(17));
      await processor.process(valid.slice(0, 17));
      expect(processor.state('x')!.events).toHaveLength(34); // stored raw
      const served = seen[seen.length - 1]!.events;

      const key = (e: { app: number; type: number; timestampMs: number }) => `${e.app}/${e.type}/${e.timestampMs}`;
      expect(served.map(key)).toEqual(trained!.map(key));
      // The caps did something: 4 over the weekly cap, 2 installs over 25.
      expect(trained).toHaveLength(34 - 4 - 2);
      expect(served.filter((e) => e.type === 1)).toHaveLength(25);
      expect(served.filter((e) => e.timestampMs >= REF_END - 7 * DAY)).toHaveLength(10);
    } finally {
      await ts.cleanup();
    }
  });

  it('headTimeline: weeks counted back from now, the most recent kept', () => {
    const now = 100 * DAY;
    const ev = (t: number, type: 1 | 2 = 1, id = String(t)) => ({ app: 0, type, timestampMs: t, eventId: id });
    const burst = Array.from({ length: 12 }, (_, i) => ev(now - DAY + i));
    const out = headTimeline([ev(now - 8 * DAY), ...burst], now);
    expect(out).toHaveLength(11);
    expect(out[1]!.timestampMs).toBe(now - DAY + 2); // the 2 oldest of the busy week went
    // An install and an uninstall at the same millisecond: install first (as timelineOf).
    expect(headTimeline([ev(now - 5, 2, 'a'), ev(now - 5, 1, 'b')], now).map((e) => e.type)).toEqual([1, 2]);
    expect(headTimeline([], now)).toEqual([]);
  });
});
