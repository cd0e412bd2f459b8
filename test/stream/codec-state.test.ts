// Decoding/validation and the per-user window logic in isolation (no broker needed).
import { describe, expect, it } from 'vitest';
import { create, toBinary } from '@bufbuild/protobuf';
import { AppEventSchema } from '../../src/gen/aetn/v1/events_pb.js';
import { decodeEvent, encodeEvent, isRejection, type PlainEvent } from '../../src/stream/codec.js';
import { applyEvents } from '../../src/stream/state.js';
import type { ValidEvent } from '../../src/stream/types.js';

const vocab = new Map([['com.cam', 3], ['com.cam.pro', 3], ['com.game', 7]]);
const now = 1_700_000_000_000;
const key = (s: string) => new TextEncoder().encode(s);
const ev = (over: Partial<PlainEvent> = {}): PlainEvent => ({ eventId: 'e1', userId: 'alice', packageName: 'com.cam', type: 1, timestampMs: now - 1000, ...over });

describe('decodeEvent', () => {
  it('round-trips a valid event and maps merged package names to one app', () => {
    const r = decodeEvent(encodeEvent(ev({ packageName: 'com.cam.pro', type: 2 })), key('alice'), { vocab, nowMs: now });
    expect(r).toEqual({ eventId: 'e1', userId: 'alice', app: 3, type: 2, timestampMs: now - 1000 });
  });

  const cases: [string, Uint8Array | null, string | null, string, RegExp][] = [
    ['garbage bytes', new Uint8Array([0xff, 0xff, 0xff, 0x0f]), 'alice', 'undecodable', /AppEvent/],
    ['empty value', null, 'alice', 'undecodable', /empty/],
    ['no event id', encodeEvent(ev({ eventId: '' })), 'alice', 'missing-field', /event_id/],
    ['no user or package', encodeEvent(ev({ userId: '', packageName: '' })), 'alice', 'missing-field', /user_id, package_name/],
    ['no timestamp', toBinary(AppEventSchema, create(AppEventSchema, { eventId: 'e', userId: 'alice', packageName: 'com.cam', type: 1 })), 'alice', 'missing-field', /timestamp_ms/],
    ['negative timestamp', encodeEvent(ev({ timestampMs: -5 })), 'alice', 'invalid-field', /negative/],
    ['too long user id', encodeEvent(ev({ userId: 'x'.repeat(600) })), 'x'.repeat(600), 'invalid-field', /user_id longer/],
    ['unspecified type', encodeEvent(ev({ type: 0 })), 'alice', 'unknown-type', /type 0/],
    ['unknown type number', encodeEvent(ev({ type: 9 })), 'alice', 'unknown-type', /type 9/],
    ['two days ahead', encodeEvent(ev({ timestampMs: now + 2 * 86400_000 })), 'alice', 'future-timestamp', /future/],
    ['no key', encodeEvent(ev()), null, 'key-mismatch', /no key/],
    ['other key', encodeEvent(ev()), 'bob', 'key-mismatch', /differs/],
    ['unknown package', encodeEvent(ev({ packageName: 'com.nope' })), 'alice', 'unknown-app', /com\.nope/],
  ];
  for (const [name, value, k, reason, detail] of cases) {
    it(`rejects ${name} as ${reason}`, () => {
      const r = decodeEvent(value, k === null ? null : key(k), { vocab, nowMs: now });
      expect(isRejection(r)).toBe(true);
      if (isRejection(r)) {
        expect(r.reason).toBe(reason);
        expect(r.detail).toMatch(detail);
      }
    });
  }

  it('accepts small clock skew and honours a custom limit', () => {
    expect(isRejection(decodeEvent(encodeEvent(ev({ timestampMs: now + 3600_000 })), key('alice'), { vocab, nowMs: now }))).toBe(false);
    expect(isRejection(decodeEvent(encodeEvent(ev({ timestampMs: now + 3600_000 })), key('alice'), { vocab, nowMs: now, maxFutureMs: 60_000 }))).toBe(true);
  });
});

describe('applyEvents', () => {
  const v = (id: string, ts: number, app = 1, type: 1 | 2 = 1): ValidEvent => ({ eventId: id, userId: 'u', app, type, timestampMs: ts });

  it('keeps the most recent N, oldest first, whatever the arrival order', () => {
    const events = [v('a', 5), v('b', 1), v('c', 9), v('d', 3), v('e', 7)];
    const one = applyEvents(undefined, 'u', events, 3, 100);
    const other = applyEvents(applyEvents(undefined, 'u', events.slice(2), 3, 100).state, 'u', events.slice(0, 2), 3, 100);
    expect(one.state.events.map((e) => e.eventId)).toEqual(['a', 'e', 'c']);
    expect(one.state.events.map((e) => e.timestampMs)).toEqual([5, 7, 9]);
    expect(other.state.events).toEqual(one.state.events);
    expect(one.state.applied).toBe(5);
    expect(other.state.applied).toBe(5);
  });

  it('applies an event id once: a replay changes nothing', () => {
    const first = applyEvents(undefined, 'u', [v('a', 1), v('b', 2)], 8, 100);
    const again = applyEvents(first.state, 'u', [v('b', 2), v('a', 1)], 8, 200);
    expect(again.applied).toBe(0);
    expect(again.duplicates).toBe(2);
    expect(again.state).toEqual(first.state);
    const dupInBatch = applyEvents(undefined, 'u', [v('x', 1), v('x', 1)], 8, 100);
    expect(dupInBatch.applied).toBe(1);
    expect(dupInBatch.duplicates).toBe(1);
  });

  it('orders ties by event id and keeps install/uninstall types', () => {
    const r = applyEvents(undefined, 'u', [v('b', 1, 4, 2), v('a', 1, 5, 1)], 8, 100);
    expect(r.state.events).toEqual([
      { eventId: 'a', app: 5, type: 1, timestampMs: 1 },
      { eventId: 'b', app: 4, type: 2, timestampMs: 1 },
    ]);
  });
});
