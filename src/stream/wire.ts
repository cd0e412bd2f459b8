// The reader of aetn.v1.AppEvent for the consumer's hot path, on protobuf-es's own BinaryReader.
// The generic `fromBinary` builds a message object through reflection; this reads the five fields
// straight from the bytes with the same reader calls `fromBinary` makes for them (a known field is
// read as its declared type whatever its wire type, the last occurrence wins, unknown fields are
// skipped by BinaryReader.skip, open enums, int64 as two's complement, strict UTF-8), so it accepts
// and refuses exactly the messages `fromBinary` does: test/stream/wire.test.ts checks that on random
// and damaged messages. Any change to events.proto must be mirrored here.
import { BinaryReader, getTextEncoding } from '@bufbuild/protobuf/wire';

/** Field numbers of aetn.v1.AppEvent (proto/aetn/v1/events.proto). */
const F_EVENT_ID = 1;
const F_USER_ID = 2;
const F_PACKAGE = 3;
const F_TYPE = 4;
const F_TIMESTAMP = 5;
/** fromBinary's default recursion limit, less the message itself: how deep unknown groups may nest. */
const SKIP_DEPTH = 99;

export class WireError extends Error {}

/** The fields of one AppEvent, with the byte length of each string as it was on the wire. */
export interface RawAppEvent {
  eventId: string;
  userId: string;
  packageName: string;
  eventIdBytes: number;
  /** [start, end) of the last user_id in the input: a Kafka key is compared with it byte by byte. */
  userIdRange: [number, number];
  /** The enum value as int32 (open enum: any number). */
  type: number;
  /** timestamp_ms as a number (exact up to 2^53; beyond that only its sign and size matter). */
  timestampMs: number;
  /** The exact value, for messages about out-of-range timestamps. */
  timestampExact(): bigint;
}

const utf8 = getTextEncoding();

class Parsed implements RawAppEvent {
  constructor(
    readonly eventId: string,
    readonly userId: string,
    readonly packageName: string,
    readonly eventIdBytes: number,
    readonly userIdRange: [number, number],
    readonly type: number,
    private readonly ts: bigint,
  ) {}

  get timestampMs(): number {
    return Number(this.ts);
  }

  timestampExact(): bigint {
    return this.ts;
  }
}

/** Parses one AppEvent; throws WireError on bytes that protobuf-es would not read as an AppEvent. */
export function readAppEvent(bytes: Uint8Array): RawAppEvent {
  try {
    return parse(bytes);
  } catch (err) {
    if (err instanceof WireError) throw err;
    throw new WireError((err as Error).message);
  }
}

function parse(bytes: Uint8Array): RawAppEvent {
  const r = new BinaryReader(bytes);
  let eventId = '';
  let userId = '';
  let packageName = '';
  let eventIdBytes = 0;
  let userStart = 0;
  let userEnd = 0;
  let type = 0;
  let ts = 0n;
  while (r.pos < r.len) {
    const [fieldNo, wireType] = r.tag();
    switch (fieldNo) {
      case F_EVENT_ID: {
        const b = r.bytes();
        eventId = utf8.decodeUtf8(b, true);
        eventIdBytes = b.length;
        break;
      }
      case F_USER_ID: {
        const b = r.bytes();
        userEnd = r.pos;
        userStart = userEnd - b.length;
        userId = utf8.decodeUtf8(b, true);
        break;
      }
      case F_PACKAGE:
        packageName = r.string(true);
        break;
      case F_TYPE:
        type = r.int32();
        break;
      case F_TIMESTAMP:
        ts = BigInt(r.int64());
        break;
      default:
        r.skip(wireType, fieldNo, SKIP_DEPTH);
    }
  }
  return new Parsed(eventId, userId, packageName, eventIdBytes, [userStart, userEnd], type, ts);
}

/** Whether bytes [r[0], r[1]) of `buf` equal all of `other` (a Kafka key against the user id field). */
export function sameBytes(buf: Uint8Array, r: readonly [number, number], other: Uint8Array): boolean {
  const len = r[1] - r[0];
  if (other.length !== len) return false;
  for (let i = 0; i < len; i++) if (buf[r[0] + i] !== other[i]) return false;
  return true;
}
