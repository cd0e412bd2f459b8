// Hand-written protobuf encoders for the rankers' hot path (GetUserVector, BatchGetUserVectors).
// The generic path (protobuf-es create() + reflective toBinary()) turned each Float32Array into a
// JS number array and walked the schema per field on every call; here a response is sized first,
// written once into one buffer, and the packed float fields are plain byte copies of the stored
// float32 vectors (protobuf's packed `repeated float` is little-endian float32, the same bytes).
// Output is byte-for-byte what protobuf-es writes for the same message (field order, proto3
// defaults omitted); test/serve/encode.test.ts checks that against protobuf-es itself.
import type { FeatureInfo, StoredVector } from '../store/types.js';

/** What one response part is made of; undefined feature = the namespace has no feature. */
export interface UserVectorPlan {
  long: FeatureInfo | undefined;
  short: FeatureInfo | undefined;
  wantLong: boolean;
  wantShort: boolean;
  wantCombined: boolean;
  /** Weights of the unit-normalised parts in `combined` (echoed when wantCombined). */
  weights: CombinedWeights;
}

export interface CombinedWeights {
  long: number;
  short: number;
}

/**
 * A stored vector as served: `expired` marks a short-term vector older than the horizon, which is
 * answered as absent (present false, no values, zeros in `combined`) with its time stamps and
 * `expired = true`.
 */
export interface ServedVector extends StoredVector {
  expired?: boolean;
}

/** Whether a part counts as present (an expired vector does not). */
export const live = (sv: ServedVector | undefined): sv is ServedVector => sv !== undefined && sv.expired !== true;

/**
 * One part of `combined`: `weight * v / |v|` (norm in float64, then rounded to float32 once), or
 * zeros for a zero vector. The hand-written encoder and the reference assembler both use it, so
 * their bytes agree.
 */
export function weightedUnit(v: Float32Array, weight: number): Float32Array {
  let ss = 0;
  for (let i = 0; i < v.length; i++) ss += v[i]! * v[i]!;
  const out = new Float32Array(v.length);
  if (!(ss > 0) || weight === 0) return out;
  const k = weight / Math.sqrt(ss);
  for (let i = 0; i < v.length; i++) out[i] = v[i]! * k;
  return out;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function varintLen(v: number): number {
  // Non-negative integers up to 2^53.
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

/** int64 as protobuf writes it: negative values take 10 bytes (two's complement). */
function int64Len(v: number): number {
  return v < 0 ? 10 : varintLen(v);
}

class Writer {
  pos = 0;
  constructor(readonly buf: Buffer) {}
  byte(b: number): void {
    this.buf[this.pos++] = b;
  }
  varint(v: number): void {
    while (v >= 128) {
      this.buf[this.pos++] = (v % 128) | 128;
      v = Math.floor(v / 128);
    }
    this.buf[this.pos++] = v;
  }
  int64(v: number): void {
    if (v >= 0) return this.varint(v);
    let x = BigInt.asUintN(64, BigInt(v));
    for (let i = 0; i < 9; i++) {
      this.buf[this.pos++] = Number(x & 0x7fn) | 128;
      x >>= 7n;
    }
    this.buf[this.pos++] = Number(x);
  }
  str(bytes: Buffer): void {
    this.varint(bytes.length);
    bytes.copy(this.buf, this.pos);
    this.pos += bytes.length;
  }
  floats(v: Float32Array): void {
    if (LITTLE_ENDIAN) {
      this.buf.set(new Uint8Array(v.buffer, v.byteOffset, v.byteLength), this.pos);
      this.pos += v.byteLength;
    } else {
      for (let i = 0; i < v.length; i++) this.pos = this.buf.writeFloatLE(v[i]!, this.pos);
    }
  }
  zeros(n: number): void {
    this.buf.fill(0, this.pos, this.pos + n);
    this.pos += n;
  }
}

/** Feature id bytes, cached per id string: the same few features are encoded millions of times. */
const idBytes = new Map<string, Buffer>();
function featureIdBytes(id: string): Buffer {
  let b = idBytes.get(id);
  if (!b) {
    if (idBytes.size > 1024) idBytes.clear();
    b = Buffer.from(id, 'utf8');
    idBytes.set(id, b);
  }
  return b;
}

interface PartSizes {
  body: number;
  updated: number;
  age: number;
}

function partSize(f: FeatureInfo, sv: ServedVector | undefined, withValues: boolean, now: number, out: PartSizes): void {
  const id = featureIdBytes(f.featureId);
  let n = 0;
  if (id.length > 0) n += 1 + varintLen(id.length) + id.length;
  if (f.dim !== 0) n += 1 + varintLen(f.dim);
  out.updated = 0;
  out.age = 0;
  if (sv) {
    if (live(sv)) {
      n += 2; // present = true
      if (withValues && sv.vector.length > 0) n += 1 + varintLen(4 * sv.vector.length) + 4 * sv.vector.length;
    } else n += 2; // expired = true
    out.updated = Math.round(sv.updatedAtMs);
    out.age = Math.max(0, Math.round(now - sv.updatedAtMs));
    if (out.updated !== 0) n += 1 + int64Len(out.updated);
    if (out.age !== 0) n += 1 + int64Len(out.age);
  }
  out.body = n;
}

function writePart(w: Writer, f: FeatureInfo, sv: ServedVector | undefined, withValues: boolean, sz: PartSizes): void {
  const id = featureIdBytes(f.featureId);
  if (id.length > 0) {
    w.byte(0x0a);
    w.str(id);
  }
  if (f.dim !== 0) {
    w.byte(0x10);
    w.varint(f.dim);
  }
  if (!sv) return;
  const present = live(sv);
  if (present) {
    w.byte(0x18);
    w.byte(1);
  }
  if (present && withValues && sv.vector.length > 0) {
    w.byte(0x22);
    w.varint(4 * sv.vector.length);
    w.floats(sv.vector);
  }
  if (sz.updated !== 0) {
    w.byte(0x28);
    w.int64(sz.updated);
  }
  if (sz.age !== 0) {
    w.byte(0x30);
    w.int64(sz.age);
  }
  if (!present) {
    w.byte(0x38);
    w.byte(1);
  }
}

/** CombinedWeights { float long_term = 1; float short_term = 2 } body size (zeros omitted). */
function weightsSize(wt: CombinedWeights): number {
  return (Math.fround(wt.long) !== 0 ? 5 : 0) + (Math.fround(wt.short) !== 0 ? 5 : 0);
}

/** The CombinedWeights field `tag` of a response (length-delimited), always written. */
function writeWeights(w: Writer, tag: number, wt: CombinedWeights): void {
  const f32 = new Float32Array(1);
  w.byte(tag);
  w.varint(weightsSize(wt));
  if ((f32[0] = wt.long) !== 0) {
    w.byte(0x0d);
    w.floats(f32);
  }
  if ((f32[0] = wt.short) !== 0) {
    w.byte(0x15);
    w.floats(f32);
  }
}

/** One UserVector, sized in `sizeUser` and written by `writeUser` (sizes kept between the two). */
class UserVectorEncoder {
  private readonly ls: PartSizes = { body: 0, updated: 0, age: 0 };
  private readonly ss: PartSizes = { body: 0, updated: 0, age: 0 };
  private userId: Buffer = Buffer.alloc(0);
  private found = false;
  private combinedBytes = 0;

  constructor(private readonly p: UserVectorPlan) {}

  /** Size of the UserVector message body; must be followed by writeUser with the same arguments. */
  size(userId: string, l: StoredVector | undefined, s: ServedVector | undefined, now: number): number {
    const p = this.p;
    this.userId = Buffer.from(userId, 'utf8');
    this.found = l !== undefined || live(s);
    let n = 0;
    if (this.userId.length > 0) n += 1 + varintLen(this.userId.length) + this.userId.length;
    if (this.found) n += 2;
    if (p.long) {
      partSize(p.long, l, p.wantLong, now, this.ls);
      n += 1 + varintLen(this.ls.body) + this.ls.body;
    }
    if (p.short) {
      partSize(p.short, s, p.wantShort, now, this.ss);
      n += 1 + varintLen(this.ss.body) + this.ss.body;
    }
    this.combinedBytes = p.wantCombined && this.found ? 4 * ((p.long?.dim ?? 0) + (p.short?.dim ?? 0)) : 0;
    if (this.combinedBytes > 0) n += 1 + varintLen(this.combinedBytes) + this.combinedBytes;
    return n;
  }

  write(w: Writer, l: StoredVector | undefined, s: ServedVector | undefined): void {
    const p = this.p;
    if (this.userId.length > 0) {
      w.byte(0x0a);
      w.str(this.userId);
    }
    if (this.found) {
      w.byte(0x10);
      w.byte(1);
    }
    if (p.long) {
      w.byte(0x1a);
      w.varint(this.ls.body);
      writePart(w, p.long, l, p.wantLong, this.ls);
    }
    if (p.short) {
      w.byte(0x22);
      w.varint(this.ss.body);
      writePart(w, p.short, s, p.wantShort, this.ss);
    }
    if (this.combinedBytes > 0) {
      w.byte(0x2a);
      w.varint(this.combinedBytes);
      // [w_l l/|l| ‖ w_s s/|s|], a missing (or expired) part zero-filled, each part exactly its
      // feature's dim wide.
      for (const [f, sv, weight] of [
        [p.long, l, p.weights.long],
        [p.short, s, p.weights.short],
      ] as const) {
        if (!f) continue;
        if (!live(sv)) {
          w.zeros(4 * f.dim);
          continue;
        }
        const k = Math.min(f.dim, sv.vector.length);
        w.floats(weightedUnit(sv.vector.subarray(0, k), weight));
        w.zeros(4 * (f.dim - k));
      }
    }
  }
}

/** GetUserVectorResponse { user = 1 }, encoded. */
export function encodeGetUserVectorResponse(p: UserVectorPlan, userId: string, l: StoredVector | undefined, s: ServedVector | undefined, now: number): Buffer {
  const e = new UserVectorEncoder(p);
  const body = e.size(userId, l, s, now);
  const wb = p.wantCombined ? weightsSize(p.weights) : -1;
  const w = new Writer(Buffer.allocUnsafe(1 + varintLen(body) + body + (wb >= 0 ? 2 + wb : 0)));
  w.byte(0x0a);
  w.varint(body);
  e.write(w, l, s);
  if (wb >= 0) writeWeights(w, 0x12, p.weights);
  return w.buf;
}

/** BatchGetUserVectorsResponse { repeated users = 1; found_count = 2 }, encoded. */
export function encodeBatchGetUserVectorsResponse(
  p: UserVectorPlan,
  userIds: readonly string[],
  ls: readonly (StoredVector | undefined)[],
  ss: readonly (ServedVector | undefined)[],
  now: number,
): Buffer {
  const e = new UserVectorEncoder(p);
  const sizes = new Array<number>(userIds.length);
  let total = 0;
  let found = 0;
  for (let i = 0; i < userIds.length; i++) {
    const b = e.size(userIds[i]!, ls[i], ss[i], now);
    sizes[i] = b;
    total += 1 + varintLen(b) + b;
    if (ls[i] !== undefined || live(ss[i])) found++;
  }
  if (found !== 0) total += 1 + varintLen(found);
  const wb = p.wantCombined ? weightsSize(p.weights) : -1;
  if (wb >= 0) total += 2 + wb;
  const w = new Writer(Buffer.allocUnsafe(total));
  for (let i = 0; i < userIds.length; i++) {
    // Sizing again is cheap and keeps the encoder's per-user state simple.
    e.size(userIds[i]!, ls[i], ss[i], now);
    w.byte(0x0a);
    w.varint(sizes[i]!);
    e.write(w, ls[i], ss[i]);
  }
  if (found !== 0) {
    w.byte(0x10);
    w.varint(found);
  }
  if (wb >= 0) writeWeights(w, 0x1a, p.weights);
  return w.buf;
}

/**
 * ExtendLookalikeResponse { chunk = 1 { repeated ScoredUser users = 1 { user_id = 1; float score = 2 } } }
 * for users[from, to): the look-alike streams up to 100k of these per call.
 */
export function encodeAudienceChunk(users: readonly { userId: string; score: number }[], from: number, to: number): Buffer {
  const ids: Buffer[] = new Array(to - from);
  const f32 = new Float32Array(1);
  let chunkLen = 0;
  for (let i = from; i < to; i++) {
    const id = Buffer.from(users[i]!.userId, 'utf8');
    ids[i - from] = id;
    f32[0] = users[i]!.score;
    const u = (id.length > 0 ? 1 + varintLen(id.length) + id.length : 0) + (f32[0] !== 0 ? 5 : 0);
    chunkLen += 1 + varintLen(u) + u;
  }
  const w = new Writer(Buffer.allocUnsafe(1 + varintLen(chunkLen) + chunkLen));
  w.byte(0x0a);
  w.varint(chunkLen);
  for (let i = from; i < to; i++) {
    const id = ids[i - from]!;
    f32[0] = users[i]!.score;
    const u = (id.length > 0 ? 1 + varintLen(id.length) + id.length : 0) + (f32[0] !== 0 ? 5 : 0);
    w.byte(0x0a);
    w.varint(u);
    if (id.length > 0) {
      w.byte(0x0a);
      w.str(id);
    }
    if (f32[0] !== 0) {
      w.byte(0x15);
      w.floats(f32);
    }
  }
  return w.buf;
}
