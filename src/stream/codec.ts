// The wire format of topic `app-events`: protobuf aetn.v1.AppEvent, keyed by user id. Decoding
// and validation are one step, so every message ends up either as a ValidEvent or as a rejection
// with the reason that the dead-letter topic records.
import { create, toBinary } from '@bufbuild/protobuf';
import { AppEventSchema, AppEventType } from '../gen/aetn/v1/events_pb.js';
import type { DlqReason, EventType, ValidEvent } from './types.js';
import { readAppEvent, sameBytes } from './wire.js';

/** LMDB keys are limited (~2 KB); ids longer than this are refused rather than truncated. */
export const MAX_ID_BYTES = 512;
/** Default tolerated clock skew: an event stamped more than a day ahead is not believed. */
export const DEFAULT_MAX_FUTURE_MS = 24 * 3600_000;

export interface Rejection {
  reason: DlqReason;
  detail: string;
}

export interface PlainEvent {
  eventId: string;
  userId: string;
  packageName: string;
  type: EventType | number;
  timestampMs: number;
}

/** Serialises an event for the topic. Produces what `decodeEvent` accepts (given a known package). */
export function encodeEvent(e: PlainEvent): Uint8Array {
  return toBinary(
    AppEventSchema,
    create(AppEventSchema, {
      eventId: e.eventId,
      userId: e.userId,
      packageName: e.packageName,
      type: e.type as AppEventType,
      timestampMs: BigInt(Math.trunc(e.timestampMs)),
    }),
  );
}

export interface DecodeOptions {
  /** Package name -> app index of the vocabulary. */
  vocab: ReadonlyMap<string, number>;
  nowMs: number;
  maxFutureMs?: number;
  /** Erased users (tombstones): their events are refused with reason forgotten-user. */
  isForgotten?: (userId: string) => boolean;
}

/** Decodes and validates one message; never throws on bad input. */
export function decodeEvent(value: Uint8Array | null, key: Uint8Array | null, opts: DecodeOptions): ValidEvent | Rejection {
  if (!value || value.length === 0) return { reason: 'undecodable', detail: 'empty message value' };
  let msg;
  try {
    msg = readAppEvent(value);
  } catch (err) {
    return { reason: 'undecodable', detail: `not an aetn.v1.AppEvent: ${(err as Error).message}` };
  }
  const missing: string[] = [];
  if (!msg.eventId) missing.push('event_id');
  if (!msg.userId) missing.push('user_id');
  if (!msg.packageName) missing.push('package_name');
  if (msg.timestampMs === 0) missing.push('timestamp_ms');
  if (missing.length > 0) return { reason: 'missing-field', detail: `missing ${missing.join(', ')}` };
  if (msg.eventIdBytes > MAX_ID_BYTES) return { reason: 'invalid-field', detail: `event_id longer than ${MAX_ID_BYTES} bytes` };
  if (msg.userIdRange[1] - msg.userIdRange[0] > MAX_ID_BYTES) return { reason: 'invalid-field', detail: `user_id longer than ${MAX_ID_BYTES} bytes` };
  if (msg.timestampMs < 0) return { reason: 'invalid-field', detail: `negative timestamp_ms ${msg.timestampExact()}` };
  if (msg.type !== AppEventType.INSTALL && msg.type !== AppEventType.UNINSTALL) {
    return { reason: 'unknown-type', detail: `type ${msg.type} is neither INSTALL (1) nor UNINSTALL (2)` };
  }
  const ts = msg.timestampMs;
  const maxFuture = opts.maxFutureMs ?? DEFAULT_MAX_FUTURE_MS;
  if (ts > opts.nowMs + maxFuture) {
    return { reason: 'future-timestamp', detail: `timestamp_ms ${ts} is ${Math.round((ts - opts.nowMs) / 1000)} s in the future (allowed ${maxFuture / 1000} s)` };
  }
  // The key decides the partition, and one user's events must stay on one partition to be
  // applied in order by one worker; a keyless or mis-keyed message would break that. Compared as
  // bytes, as Kafka partitions by them.
  if (!key || !sameBytes(value, msg.userIdRange, key)) {
    return { reason: 'key-mismatch', detail: !key ? 'message has no key (must be the user id)' : 'message key differs from user_id' };
  }
  const app = opts.vocab.get(msg.packageName);
  if (app === undefined) return { reason: 'unknown-app', detail: `package ${JSON.stringify(msg.packageName.slice(0, 200))} is not in the vocabulary` };
  if (opts.isForgotten?.(msg.userId)) return { reason: 'forgotten-user', detail: 'the user was erased (forgotten); its events are dropped until it is unforgotten' };
  return { eventId: msg.eventId, userId: msg.userId, app, type: msg.type as EventType, timestampMs: ts };
}

export function isRejection(x: ValidEvent | Rejection): x is Rejection {
  return (x as Rejection).reason !== undefined;
}
