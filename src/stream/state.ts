// Per-user recent-event state and the per-partition applied offsets, kept in named sub-databases
// of the store's LMDB environment so that they commit in the same transaction as the short-term
// vectors. Applying is pure (applyEvents); StateDb only reads and stages writes.
import type { Database, RootDatabase } from 'lmdb';
import type { RecentEvent, RecentEvents, ValidEvent } from './types.js';

export const STATE_DB = 'recent-events';
export const OFFSETS_DB = 'stream-offsets';
export const DEFAULT_MAX_EVENTS = 32;

/** Stored form: short keys and tuples, because every touched user is read and rewritten per batch. */
interface StoredState {
  v: 1;
  a: number; // applied
  u: number; // updatedAtMs
  e: [number, number, number, string][]; // app, type, timestampMs, eventId
}

export interface ApplyResult {
  state: RecentEvents;
  applied: number;
  duplicates: number;
}

function order(a: RecentEvent, b: RecentEvent): number {
  return a.timestampMs - b.timestampMs || (a.eventId < b.eventId ? -1 : a.eventId > b.eventId ? 1 : 0);
}

/**
 * Adds events to a user's state: an event id already in the window is a duplicate and changes
 * nothing; the window keeps the `maxEvents` most recent by (timestamp, event id), oldest first,
 * so the result does not depend on arrival order.
 */
export function applyEvents(prev: RecentEvents | undefined, userId: string, events: ValidEvent[], maxEvents: number, nowMs: number): ApplyResult {
  const list = prev ? prev.events.slice() : [];
  const ids = new Set(list.map((e) => e.eventId));
  let applied = 0;
  let duplicates = 0;
  for (const ev of events) {
    if (ids.has(ev.eventId)) {
      duplicates++;
      continue;
    }
    ids.add(ev.eventId);
    list.push({ app: ev.app, type: ev.type, timestampMs: ev.timestampMs, eventId: ev.eventId });
    applied++;
  }
  list.sort(order);
  const kept = list.length > maxEvents ? list.slice(list.length - maxEvents) : list;
  return {
    state: {
      userId,
      events: kept,
      applied: (prev?.applied ?? 0) + applied,
      updatedAtMs: applied > 0 ? nowMs : (prev?.updatedAtMs ?? nowMs),
    },
    applied,
    duplicates,
  };
}

export class StateDb {
  readonly states: Database<StoredState, string>;
  readonly offsets: Database<number, string>;

  constructor(readonly root: RootDatabase) {
    this.states = root.openDB<StoredState, string>({ name: STATE_DB, encoding: 'msgpack' });
    this.offsets = root.openDB<number, string>({ name: OFFSETS_DB, encoding: 'msgpack' });
  }

  get(userId: string): RecentEvents | undefined {
    const s = this.states.get(userId);
    if (!s) return undefined;
    return {
      userId,
      applied: s.a,
      updatedAtMs: s.u,
      events: s.e.map(([app, type, timestampMs, eventId]) => ({ app, type: type as 1 | 2, timestampMs, eventId })),
    };
  }

  /** Stages a write; call inside the store's transaction. */
  putInTxn(state: RecentEvents): void {
    const stored: StoredState = {
      v: 1,
      a: state.applied,
      u: state.updatedAtMs,
      e: state.events.map((e) => [e.app, e.type, e.timestampMs, e.eventId]),
    };
    this.states.putSync(state.userId, stored);
  }

  /** The last offset of `topic`/`partition` whose effects are in this store (-1: none). */
  appliedOffset(topic: string, partition: number): number {
    return this.offsets.get(offsetKey(topic, partition)) ?? -1;
  }

  setAppliedOffsetInTxn(topic: string, partition: number, offset: number): void {
    this.offsets.putSync(offsetKey(topic, partition), offset);
  }

  /** Every user's state, in key order (for checks and tools; not for the hot path). */
  *all(): Generator<RecentEvents> {
    for (const { key } of this.states.getRange()) {
      const s = this.get(key);
      if (s) yield s;
    }
  }

  count(): number {
    return this.states.getCount();
  }
}

function offsetKey(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}
