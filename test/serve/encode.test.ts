// The hand-written UserVectorService encoders against protobuf-es itself: same bytes for every
// view, missing parts, absent features, odd timestamps and non-ASCII ids, and decodable.
import { describe, expect, it } from 'vitest';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  BatchGetUserVectorsResponseSchema,
  GetUserVectorResponseSchema,
  VectorView,
} from '../../src/gen/aetn/v1/user_vector_pb.js';
import { encodeAudienceChunk, encodeBatchGetUserVectorsResponse, encodeGetUserVectorResponse, type UserVectorPlan } from '../../src/serve/encode.js';
import { ExtendLookalikeResponseSchema } from '../../src/gen/aetn/v1/audience_pb.js';
import { assembleUserVector } from '../../src/serve/user-vectors.js';
import type { FeatureInfo, StoredVector } from '../../src/store/types.js';
import { mulberry32 } from '../../src/util/random.js';

const feature = (featureId: string, namespace: 'long' | 'short', dim: number): FeatureInfo =>
  ({ featureId, namespace, dim, variant: 'aetn', createdAtMs: 1, retired: false, count: 10 }) as unknown as FeatureInfo;

const LONG = feature('aetn-v1', 'long', 8);
const SHORT = feature('rt-ünïcode', 'short', 3);
const r = mulberry32(5);
const vec = (f: FeatureInfo, updatedAtMs: number): StoredVector => ({
  featureId: f.featureId,
  vector: Float32Array.from({ length: f.dim }, () => r() * 2 - 1),
  updatedAtMs,
});

const WEIGHTS = [
  { long: 0.8, short: 0.6 },
  { long: 1, short: 0 }, // a zero weight is omitted on the wire
  { long: 0.1234567, short: 3.5 }, // not float32-exact
];

function plans(): UserVectorPlan[] {
  const out: UserVectorPlan[] = [];
  const views = [VectorView.COMBINED, VectorView.LONG_TERM, VectorView.SHORT_TERM, VectorView.ALL, VectorView.METADATA];
  for (const [long, short] of [
    [LONG, SHORT],
    [LONG, undefined],
    [undefined, SHORT],
  ] as const)
    for (const weights of WEIGHTS)
      for (const v of views)
        out.push({
          long,
          short,
          wantLong: v === VectorView.LONG_TERM || v === VectorView.ALL,
          wantShort: v === VectorView.SHORT_TERM || v === VectorView.ALL,
          wantCombined: v === VectorView.COMBINED || v === VectorView.ALL,
          weights,
        });
  return out;
}

const NOW = 1_795_462_741_774;
const cases: [string, StoredVector | undefined, StoredVector | undefined][] = [
  ['u1', vec(LONG, NOW - 5000), vec(SHORT, NOW - 20)],
  ['u2', vec(LONG, NOW - 5000.4), undefined],
  ['u3', undefined, vec(SHORT, NOW)], // age 0: omitted
  ['ユーザー-4', vec(LONG, 0), vec(SHORT, -1234)], // updated 0 omitted; negative int64 (10-byte varint)
  ['u5', vec(LONG, NOW + 99), vec(SHORT, 2 ** 40)], // future update: age clamped to 0
  ['u6', undefined, undefined],
  ['u7', vec(LONG, NOW - 10), { ...vec(SHORT, NOW - 9 * 86_400_000), expired: true }], // past the horizon
  ['u8', undefined, { ...vec(SHORT, NOW - 8 * 86_400_000), expired: true }], // only an expired part: not found
  ['u9', { featureId: LONG.featureId, vector: new Float32Array(LONG.dim), updatedAtMs: NOW }, vec(SHORT, NOW - 1)], // zero vector: zeros
];

describe('hand-written UserVectorService encoders', () => {
  it('write the same bytes as protobuf-es for GetUserVectorResponse', () => {
    let n = 0;
    for (const p of plans())
      for (const [id, l0, s0] of cases) {
        // A namespace without a feature reads nothing.
        const l = p.long ? l0 : undefined;
        const s = p.short ? s0 : undefined;
        if (!l && !s) continue;
        if (!l && !(s && !s.expired)) continue; // GetUserVector answers NOT_FOUND
        const weights = p.wantCombined ? { combinedWeights: { longTerm: p.weights.long, shortTerm: p.weights.short } } : {};
        const ref = toBinary(GetUserVectorResponseSchema, create(GetUserVectorResponseSchema, { user: assembleUserVector(p, id, l, s, NOW), ...weights }));
        const ours = encodeGetUserVectorResponse(p, id, l, s, NOW);
        expect(Buffer.from(ours).toString('hex')).toBe(Buffer.from(ref).toString('hex'));
        n++;
      }
    expect(n).toBeGreaterThan(150);
  });

  it('write the same bytes as protobuf-es for BatchGetUserVectorsResponse, and decode', () => {
    const ids = cases.map((c) => c[0]);
    for (const p of plans()) {
      const ls = cases.map((c) => (p.long ? c[1] : undefined));
      const ss = cases.map((c) => (p.short ? c[2] : undefined));
      const users = ids.map((id, i) => assembleUserVector(p, id, ls[i], ss[i], NOW));
      const found = users.filter((u) => u.found).length;
      const weights = p.wantCombined ? { combinedWeights: { longTerm: p.weights.long, shortTerm: p.weights.short } } : {};
      const ref = toBinary(BatchGetUserVectorsResponseSchema, create(BatchGetUserVectorsResponseSchema, { users, foundCount: found, ...weights }));
      const ours = encodeBatchGetUserVectorsResponse(p, ids, ls, ss, NOW);
      expect(Buffer.from(ours).toString('hex')).toBe(Buffer.from(ref).toString('hex'));
    }
    const p = plans()[3]!; // both features, VectorView.ALL, weights 0.8 / 0.6
    const ls = cases.map((c) => c[1]);
    const ss = cases.map((c) => c[2]);
    const dec = fromBinary(BatchGetUserVectorsResponseSchema, encodeBatchGetUserVectorsResponse(p, ids, ls, ss, NOW));
    expect(dec.foundCount).toBe(7);
    expect(dec.combinedWeights).toMatchObject({ longTerm: Math.fround(0.8), shortTerm: Math.fround(0.6) });
    expect(dec.users.map((u) => u.userId)).toEqual(ids);
    const u0 = dec.users[0]!;
    expect(u0.combined).toHaveLength(LONG.dim + SHORT.dim);
    // Each part has unit norm times its weight, the direction of the raw part; the raw part is kept.
    const norm = (a: number[]) => Math.hypot(...a);
    expect(norm(u0.combined.slice(0, 8))).toBeCloseTo(0.8, 6);
    expect(norm(u0.combined.slice(8))).toBeCloseTo(0.6, 6);
    expect(norm(u0.combined)).toBeCloseTo(1, 6);
    const l0 = Array.from(ls[0]!.vector);
    u0.combined.slice(0, 8).forEach((x, i) => expect(x).toBeCloseTo((0.8 * l0[i]!) / norm(l0), 6));
    expect(u0.longTerm!.values).toEqual(l0);
    expect(dec.users[1]!.combined.slice(8)).toEqual([0, 0, 0]);
    expect(dec.users[1]!.shortTerm!.present).toBe(false);
    expect(dec.users[3]!.shortTerm!.updatedAtMs).toBe(-1234n);
    expect(dec.users[5]!.found).toBe(false);
    // Expired: not present, no values, zeros in combined, time stamps kept, flagged.
    const u7 = dec.users[6]!;
    expect(u7.found).toBe(true);
    expect(u7.shortTerm).toMatchObject({ present: false, expired: true, values: [], ageMs: BigInt(9 * 86_400_000) });
    expect(u7.combined.slice(8)).toEqual([0, 0, 0]);
    expect(u7.longTerm!.expired).toBe(false);
    expect(dec.users[7]!.found).toBe(false);
    expect(dec.users[7]!.shortTerm!.expired).toBe(true);
    expect(dec.users[8]!.combined.slice(0, 8)).toEqual(new Array(8).fill(0));
  });

  it('handle an empty batch', () => {
    const p = plans()[0]!; // combined view: only the weights are written
    const dec = fromBinary(BatchGetUserVectorsResponseSchema, encodeBatchGetUserVectorsResponse(p, [], [], [], NOW));
    expect(dec.users).toHaveLength(0);
    expect(dec.combinedWeights?.longTerm).toBe(Math.fround(0.8));
    const meta = plans()[4]!; // metadata view: nothing at all
    expect(encodeBatchGetUserVectorsResponse(meta, [], [], [], NOW)).toHaveLength(0);
  });

  it('write look-alike chunks as protobuf-es does (zero score omitted, non-ASCII ids)', () => {
    const users = [
      { userId: 'u1', score: 0.96796155 },
      { userId: 'ユーザー', score: 1e-30 },
      { userId: 'u3', score: 0 },
      { userId: 'u4', score: 0.5 },
    ];
    for (const [from, to] of [
      [0, 4],
      [1, 3],
      [2, 2],
    ] as const) {
      const ref = toBinary(ExtendLookalikeResponseSchema, create(ExtendLookalikeResponseSchema, { message: { case: 'chunk', value: { users: users.slice(from, to) } } }));
      expect(encodeAudienceChunk(users, from, to).toString('hex')).toBe(Buffer.from(ref).toString('hex'));
    }
    const dec = fromBinary(ExtendLookalikeResponseSchema, encodeAudienceChunk(users, 0, 4));
    expect(dec.message.case).toBe('chunk');
    expect(dec.message.case === 'chunk' && dec.message.value.users.map((u) => u.userId)).toEqual(users.map((u) => u.userId));
  });
});
