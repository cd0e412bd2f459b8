// A hand-written reader of aetn.v1.AppEvent for the consumer's hot path. The generic
// `fromBinary` builds a message object through reflection and was ~half of decode+validate in the
// realtime consumer's profile; this reads the five fields straight from the bytes. It follows the
// protobuf rules `fromBinary` follows (last value of a repeated scalar field wins, unknown fields
// of every wire type are skipped, open enums, int64 as two's complement) and is checked against
// it on random and fuzzed messages in test/stream/wire.test.ts. Any change to events.proto must be
// mirrored here: the test compares the field set too.

/** Field numbers of aetn.v1.AppEvent (proto/aetn/v1/events.proto). */
const F_EVENT_ID = 1;
const F_USER_ID = 2;
const F_PACKAGE = 3;
const F_TYPE = 4;
const F_TIMESTAMP = 5;

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

// proto3 strings must be valid UTF-8: protobuf-es refuses the message otherwise, and so do we.
// A leading U+FEFF is text, not a byte-order mark.
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

// The reader's cursor lives at module level rather than in closures: readAppEvent runs once per
// Kafka message, and per-call closures (and their allocation) made it slower than protobuf-es.
const EMPTY = Buffer.alloc(0);
let buf: Buffer = EMPTY;
let n = 0;
let pos = 0;
let lo = 0; // low / high 32 bits (unsigned) of the last varint read
let hi = 0;

// Reads a varint of up to 10 bytes into lo/hi.
function varint(): void {
  let b = 0;
  if (pos < n && (b = buf[pos]!) < 0x80) {
    // One byte: field tags, types and the lengths of short strings.
    pos++;
    lo = b;
    hi = 0;
    return;
  }
  lo = 0;
  hi = 0;
  let shift = 0;
  for (let i = 0; i < 10; i++) {
    if (pos >= n) throw new WireError('premature end of message in a varint');
    b = buf[pos++]!;
    if (shift < 28) lo |= (b & 0x7f) << shift;
    else if (shift === 28) {
      lo |= (b & 0x0f) << 28;
      hi |= (b & 0x7f) >>> 4;
    } else hi |= (b & 0x7f) << (shift - 32);
    if ((b & 0x80) === 0) {
      lo >>>= 0;
      hi >>>= 0;
      return;
    }
    shift += 7;
  }
  throw new WireError('varint longer than 10 bytes');
}

/** Reads a length prefix; returns the start of the bytes and leaves pos at their end. */
function lengthDelimited(): number {
  varint();
  if (hi !== 0 || lo > n - pos) throw new WireError('length-delimited field runs past the end of the message');
  const start = pos;
  pos += lo;
  return start;
}

function skip(wireType: number, fieldNo: number, depth: number): void {
  switch (wireType) {
    case 0:
      varint();
      return;
    case 1:
      if (n - pos < 8) throw new WireError('premature end of message in a fixed64');
      pos += 8;
      return;
    case 2:
      lengthDelimited();
      return;
    case 5:
      if (n - pos < 4) throw new WireError('premature end of message in a fixed32');
      pos += 4;
      return;
    case 3: {
      // A group: skip fields until its matching end tag.
      if (depth > 64) throw new WireError('groups nested too deeply');
      for (;;) {
        if (pos >= n) throw new WireError('premature end of message in a group');
        varint();
        if (hi !== 0) throw new WireError('tag out of range');
        const wt = lo & 7;
        const fn = lo >>> 3;
        if (fn === 0) throw new WireError('field number 0');
        if (wt === 4) {
          if (fn !== fieldNo) throw new WireError('group ended by the wrong end tag');
          return;
        }
        skip(wt, fn, depth + 1);
      }
    }
    default:
      throw new WireError(`wire type ${wireType} is not valid here`);
  }
}

function text(start: number, end: number): string {
  if (start === end) return '';
  if (end - start <= 32) {
    // Short ASCII (ids and package names almost always are): char codes straight from the bytes.
    let s = '';
    for (let i = start; i < end; i++) {
      const c = buf[i]!;
      if (c >= 0x80) return textSlow(start, end);
      s += String.fromCharCode(c);
    }
    return s;
  }
  for (let i = start; i < end; i++) if (buf[i]! >= 0x80) return textSlow(start, end);
  return buf.toString('latin1', start, end);
}

function textSlow(start: number, end: number): string {
  try {
    return strictUtf8.decode(buf.subarray(start, end));
  } catch {
    throw new WireError('a string field is not valid UTF-8');
  }
}

class Parsed implements RawAppEvent {
  constructor(
    readonly eventId: string,
    readonly userId: string,
    readonly packageName: string,
    readonly eventIdBytes: number,
    readonly userIdRange: [number, number],
    readonly type: number,
    readonly timestampMs: number,
    private readonly tsLo: number,
    private readonly tsHi: number,
  ) {}

  timestampExact(): bigint {
    return BigInt.asIntN(64, (BigInt(this.tsHi) << 32n) | BigInt(this.tsLo));
  }
}

/** Parses one AppEvent; throws WireError on bytes that are not a protobuf message. */
export function readAppEvent(bytes: Uint8Array): RawAppEvent {
  try {
    return parse(bytes);
  } finally {
    buf = EMPTY; // do not keep the caller's (Kafka fetch) buffer alive until the next call
  }
}

function parse(bytes: Uint8Array): RawAppEvent {
  buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  n = buf.length;
  pos = 0;
  let eventId = '';
  let userId = '';
  let packageName = '';
  let eventIdBytes = 0;
  let userStart = 0;
  let userEnd = 0;
  let type = 0;
  let tsLo = 0;
  let tsHi = 0;
  while (pos < n) {
    varint();
    if (hi !== 0) throw new WireError('tag out of range');
    const wireType = lo & 7;
    const fieldNo = lo >>> 3;
    if (fieldNo === 0) throw new WireError('field number 0');
    // Strings are decoded (and checked) at every occurrence, as protobuf-es does: an invalid
    // earlier value refuses the message even when a later one replaces it.
    if (fieldNo === F_EVENT_ID && wireType === 2) {
      const a = lengthDelimited();
      eventId = text(a, pos);
      eventIdBytes = pos - a;
    } else if (fieldNo === F_USER_ID && wireType === 2) {
      userStart = lengthDelimited();
      userEnd = pos;
      userId = text(userStart, userEnd);
    } else if (fieldNo === F_PACKAGE && wireType === 2) {
      packageName = text(lengthDelimited(), pos);
    } else if (fieldNo === F_TYPE && wireType === 0) {
      varint();
      type = lo | 0; // int32: the low 32 bits, two's complement
    } else if (fieldNo === F_TIMESTAMP && wireType === 0) {
      varint();
      tsLo = lo;
      tsHi = hi;
    } else if (fieldNo >= F_EVENT_ID && fieldNo <= F_TIMESTAMP) {
      throw new WireError(`field ${fieldNo} has wire type ${wireType}, not the type aetn.v1.AppEvent declares`);
    } else if (wireType === 4) {
      throw new WireError('end-group tag without a group');
    } else skip(wireType, fieldNo, 0);
  }
  const timestampMs = tsHi >= 0x80000000 ? (tsHi - 0x100000000) * 0x100000000 + tsLo : tsHi * 0x100000000 + tsLo;
  return new Parsed(eventId, userId, packageName, eventIdBytes, [userStart, userEnd], type, timestampMs, tsLo, tsHi);
}

/** Whether bytes [r[0], r[1]) of `buf` equal all of `other` (a Kafka key against the user id field). */
export function sameBytes(buf: Uint8Array, r: readonly [number, number], other: Uint8Array): boolean {
  const len = r[1] - r[0];
  if (other.length !== len) return false;
  for (let i = 0; i < len; i++) if (buf[r[0] + i] !== other[i]) return false;
  return true;
}
