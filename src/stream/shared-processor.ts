// The realtime processing of one consumer of a consumer group whose state is shared
// (src/stream/shared-state.ts): the same windowing, dedupe and head as EventProcessor, with the
// exactly-once check per user instead of per partition.
//
// A unit (one chunk of one partition):
//   1. reads the rows of its users that this process has no newer unsaved state of (in apply
//      order: a unit builds on the units of its partition submitted before it);
//   2. drops each event at or below its user's applied offset of the partition (a redelivery:
//      applied before a crash, or by the previous owner of the partition), applies the rest;
//   3. runs the head for the users whose window changed and writes each of them as one row,
//      versioned by the offset of the user's last event in the unit.
// Units of one partition are written concurrently: versions, not arrival order, decide which
// write a row keeps. The unit's promise resolves when its rows are durable; only then does the
// pipeline resolve its Kafka offset.
//
// Unsaved states are cached only within one group generation: when the consumer rejoins the
// group (newAssignment), another consumer may have advanced any user, so rows are read again.
// A unit of the earlier generation that has not applied by then is dropped (a conflict: nothing
// written): without the cache, its read could miss the unwritten rows of the units before it.
import { UserError } from '../util/errors.js';
import { applyEvents, DEFAULT_MAX_EVENTS } from './state.js';
import { DEFAULT_CAPS, headState, type TimelineCaps } from './timeline.js';
import type { UnitInput, UnitProcessor, UnitResult } from './processor.js';
import type { SharedStateStore, SharedUserRow } from './shared-state.js';
import type { HeadFn, RecentEvents, ValidEvent } from './types.js';

export interface SharedProcessorOptions {
  states: SharedStateStore;
  head: HeadFn;
  featureId: string;
  maxEvents?: number;
  timelineCaps?: TimelineCaps;
  now?: () => number;
}

interface Pending {
  row: SharedUserRow;
  epoch: number;
}

export class SharedStateProcessor implements UnitProcessor {
  private readonly maxEvents: number;
  /** Rows applied by this process and not yet durable, newest per user. */
  private readonly overlay = new Map<string, Pending>();
  private epoch = 0;
  /** Units read and apply in submit order. */
  private applyTail: Promise<void> = Promise.resolve();
  private readonly counters = { units: 0 };

  constructor(private readonly opts: SharedProcessorOptions) {
    this.maxEvents = opts.maxEvents ?? DEFAULT_MAX_EVENTS;
    if (!Number.isInteger(this.maxEvents) || this.maxEvents < 1 || this.maxEvents > 255) {
      throw new UserError(`maxEvents must be an integer in 1..255, got ${opts.maxEvents}`);
    }
  }

  /** Offsets are checked per user against the shared rows, never per partition here. */
  appliedOffset(): number {
    return -1;
  }

  clearConflict(): void {}

  /** Erasure in the shared store removes the row with a version no offset reaches (see the store). */
  isForgotten(): boolean {
    return false;
  }

  state(userId: string): RecentEvents | undefined {
    return this.overlay.get(userId)?.row.state;
  }

  newAssignment(): void {
    this.epoch++;
    this.overlay.clear();
  }

  get unitsDone(): number {
    return this.counters.units;
  }

  submit(input: UnitInput): Promise<UnitResult> {
    const off = input.offset;
    const offsets = input.offsets;
    if (!off || !offsets || offsets.length !== input.events.length) {
      return Promise.reject(new UserError('the shared realtime state applies Kafka units only: every event needs its partition and offset'));
    }
    const epoch = this.epoch;
    const nowMs = (this.opts.now ?? Date.now)();
    const byUser = new Map<string, { events: ValidEvent[]; offsets: number[]; times: number[] }>();
    for (let i = 0; i < input.events.length; i++) {
      const e = input.events[i]!;
      let g = byUser.get(e.userId);
      if (!g) byUser.set(e.userId, (g = { events: [], offsets: [], times: [] }));
      g.events.push(e);
      g.offsets.push(offsets[i]!);
      if (input.produceTimesMs) g.times.push(input.produceTimesMs[i]!);
    }
    const applied = this.applyTail.then(async () => {
      // A unit of an earlier group generation that has not applied yet never will: the cache it
      // would build on (its predecessors' rows, perhaps not durable yet) is gone, so a read could
      // miss their events, and the unit's offsets are redelivered to the new generation anyway.
      if (epoch !== this.epoch) return null;
      // Which users come from this process's unsaved rows and which from the store is decided
      // once, before the read. Asking the cache again after it would be wrong: a rejoin during
      // the read (newAssignment) empties the cache, and a user left out of the read would then
      // have no previous row at all and restart from an empty window, under a high version.
      const cachedRows = new Map<string, SharedUserRow>();
      for (const u of byUser.keys()) {
        const p = this.overlay.get(u);
        if (p && p.epoch === this.epoch) cachedRows.set(u, p.row);
      }
      const stored = await this.opts.states.read([...byUser.keys()].filter((u) => !cachedRows.has(u)));
      const changed: SharedUserRow[] = [];
      const times: number[] = [];
      let nApplied = 0;
      let duplicates = 0;
      let skipped = 0;
      for (const [userId, g] of byUser) {
        const prev = cachedRows.get(userId) ?? stored.get(userId);
        const done = prev?.applied.get(off.partition) ?? -1;
        const fresh: ValidEvent[] = [];
        const freshTimes: number[] = [];
        let last = done;
        for (let i = 0; i < g.events.length; i++) {
          if (g.offsets[i]! <= done) {
            skipped++;
            continue;
          }
          fresh.push(g.events[i]!);
          if (g.offsets[i]! > last) last = g.offsets[i]!;
          if (input.produceTimesMs) freshTimes.push(g.times[i]!);
        }
        if (fresh.length === 0) continue;
        const res = applyEvents(prev?.state, userId, fresh, this.maxEvents, nowMs);
        nApplied += res.applied;
        duplicates += res.duplicates;
        if (res.applied === 0) continue;
        for (const t of freshTimes) times.push(t);
        const appliedMap = new Map(prev?.applied ?? []);
        appliedMap.set(off.partition, last);
        const row: SharedUserRow = { state: res.state, applied: appliedMap, vector: new Float32Array(0), version: last };
        changed.push(row);
        if (epoch === this.epoch) this.overlay.set(userId, { row, epoch });
      }
      return { changed, times, nApplied, duplicates, skipped };
    });
    this.applyTail = applied.then(
      () => undefined,
      () => undefined,
    );
    return applied.then(
      async (a) => {
        if (a === null) return { applied: 0, duplicates: 0, users: [], produceTimesMs: [], durableAtMs: Date.now(), conflict: true, skipped: 0 };
        try {
          if (a.changed.length > 0) {
            const states = a.changed.map((r) => headState(r.state, nowMs, this.opts.timelineCaps ?? DEFAULT_CAPS));
            const vectors = await this.opts.head(states, nowMs);
            if (!Array.isArray(vectors) || vectors.length !== a.changed.length) {
              throw new Error(`realtime head returned ${Array.isArray(vectors) ? vectors.length : typeof vectors} vectors for ${a.changed.length} users`);
            }
            for (let i = 0; i < a.changed.length; i++) a.changed[i]!.vector = vectors[i]!;
            await this.opts.states.write(this.opts.featureId, a.changed);
          }
        } catch (err) {
          this.newAssignment(); // nothing unsaved is trusted after a failure
          throw err;
        }
        this.counters.units++;
        for (const r of a.changed) if (this.overlay.get(r.state.userId)?.row === r) this.overlay.delete(r.state.userId);
        return {
          applied: a.nApplied,
          duplicates: a.duplicates,
          users: a.changed.map((r) => r.state.userId),
          produceTimesMs: a.times,
          durableAtMs: Date.now(),
          conflict: false,
          skipped: a.skipped,
        };
      },
      (err: unknown) => {
        this.newAssignment();
        throw err;
      },
    );
  }
}
