// Per-user recent-event state and the per-partition applied offsets, kept in named sub-databases
// of the store's LMDB environment so that they commit in the same transaction as the short-term
// vectors. Applying is pure (applyEvents); StateDb only reads and stages writes.
import type { Database, RootDatabase } from 'lmdb';
import type { RecentEvent, RecentEvents, ValidEvent } from './types.js';

export const STATE_DB = 'recent-events';
export const OFFSETS_DB = 'stream-offsets';
export const DEFAULT_MAX_EVENTS = 32;

// Stored form, hand-packed because every touched user is read and rewritten per chunk (measured:
// msgpack of nested tuples cost more than the LMDB put itself):
//   u8 version=1 | u8 count | u32 applied | f64 updatedAtMs | count x (i32 app | u8 type | f64 ts | u16 idLen | id utf8)
const VERSION = 1;
const HEAD = 14;

function encodeState(s: RecentEvents): Buffer {
  // Sizes first, then one allocation: a Buffer per event id was a measurable share of the GC
  // time of the realtime consumer.
  let size = HEAD;
  const idLens = new Array<number>(s.events.length);
  for (let i = 0; i < s.events.length; i++) size += 15 + (idLens[i] = Buffer.byteLength(s.events[i]!.eventId, 'utf8'));
  const b = Buffer.allocUnsafe(size);
  b.writeUInt8(VERSION, 0);
  b.writeUInt8(s.events.length, 1);
  b.writeUInt32LE(Math.min(s.applied, 0xffffffff), 2);
  b.writeDoubleLE(s.updatedAtMs, 6);
  let o = HEAD;
  for (let i = 0; i < s.events.length; i++) {
    const e = s.events[i]!;
    const len = idLens[i]!;
    b.writeInt32LE(e.app, o);
    b.writeUInt8(e.type, o + 4);
    b.writeDoubleLE(e.timestampMs, o + 5);
    b.writeUInt16LE(len, o + 13);
    b.write(e.eventId, o + 15, len, 'utf8');
    o += 15 + len;
  }
  return b;
}

function decodeState(userId: string, b: Buffer): RecentEvents {
  if (b.length < HEAD || b.readUInt8(0) !== VERSION) throw new Error(`recent-events state of user ${userId} is damaged or of an unknown version`);
  const n = b.readUInt8(1);
  const events: RecentEvent[] = new Array(n);
  let o = HEAD;
  for (let i = 0; i < n; i++) {
    const len = b.readUInt16LE(o + 13);
    events[i] = { app: b.readInt32LE(o), type: b.readUInt8(o + 4) as 1 | 2, timestampMs: b.readDoubleLE(o + 5), eventId: b.toString('utf8', o + 15, o + 15 + len) };
    o += 15 + len;
  }
  return { userId, applied: b.readUInt32LE(2), updatedAtMs: b.readDoubleLE(6), events };
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
  readonly states: Database<Buffer, string>;
  readonly offsets: Database<number, string>;

  constructor(readonly root: RootDatabase) {
    this.states = root.openDB<Buffer, string>({ name: STATE_DB, encoding: 'binary' });
    this.offsets = root.openDB<number, string>({ name: OFFSETS_DB, encoding: 'msgpack' });
  }

  get(userId: string): RecentEvents | undefined {
    const b = this.states.getBinaryFast(userId);
    return b === undefined ? undefined : decodeState(userId, b);
  }

  /** Stages a write; call inside the store's transaction. */
  putInTxn(state: RecentEvents): void {
    if (state.events.length > 255) throw new Error(`recent-events window of ${state.events.length} events exceeds 255`);
    this.states.putSync(state.userId, encodeState(state));
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
    for (const { key, value } of this.states.getRange()) yield decodeState(key, value);
  }

  count(): number {
    return this.states.getCount();
  }
}

function offsetKey(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}
