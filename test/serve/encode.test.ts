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

function plans(): UserVectorPlan[] {
  const out: UserVectorPlan[] = [];
  const views = [VectorView.COMBINED, VectorView.LONG_TERM, VectorView.SHORT_TERM, VectorView.ALL, VectorView.METADATA];
  for (const [long, short] of [
    [LONG, SHORT],
    [LONG, undefined],
    [undefined, SHORT],
  ] as const)
    for (const v of views)
      out.push({
        long,
        short,
        wantLong: v === VectorView.LONG_TERM || v === VectorView.ALL,
        wantShort: v === VectorView.SHORT_TERM || v === VectorView.ALL,
        wantCombined: v === VectorView.COMBINED || v === VectorView.ALL,
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
        const ref = toBinary(GetUserVectorResponseSchema, create(GetUserVectorResponseSchema, { user: assembleUserVector(p, id, l, s, NOW) }));
        const ours = encodeGetUserVectorResponse(p, id, l, s, NOW);
        expect(Buffer.from(ours).toString('hex')).toBe(Buffer.from(ref).toString('hex'));
        n++;
      }
    expect(n).toBeGreaterThan(60);
  });

  it('write the same bytes as protobuf-es for BatchGetUserVectorsResponse, and decode', () => {
    const ids = cases.map((c) => c[0]);
    for (const p of plans()) {
      const ls = cases.map((c) => (p.long ? c[1] : undefined));
      const ss = cases.map((c) => (p.short ? c[2] : undefined));
      const users = ids.map((id, i) => assembleUserVector(p, id, ls[i], ss[i], NOW));
      const found = users.filter((u) => u.found).length;
      const ref = toBinary(BatchGetUserVectorsResponseSchema, create(BatchGetUserVectorsResponseSchema, { users, foundCount: found }));
      const ours = encodeBatchGetUserVectorsResponse(p, ids, ls, ss, NOW);
      expect(Buffer.from(ours).toString('hex')).toBe(Buffer.from(ref).toString('hex'));
    }
    const p = plans()[3]!; // both features, VectorView.ALL
    const ls = cases.map((c) => c[1]);
    const ss = cases.map((c) => c[2]);
    const dec = fromBinary(BatchGetUserVectorsResponseSchema, encodeBatchGetUserVectorsResponse(p, ids, ls, ss, NOW));
    expect(dec.foundCount).toBe(5);
    expect(dec.users.map((u) => u.userId)).toEqual(ids);
    expect(dec.users[0]!.combined).toHaveLength(LONG.dim + SHORT.dim);
    expect(dec.users[0]!.combined.slice(0, 8)).toEqual(Array.from(ls[0]!.vector));
    expect(dec.users[1]!.combined.slice(8)).toEqual([0, 0, 0]);
    expect(dec.users[1]!.shortTerm!.present).toBe(false);
    expect(dec.users[3]!.shortTerm!.updatedAtMs).toBe(-1234n);
    expect(dec.users[5]!.found).toBe(false);
  });

  it('handle an empty batch', () => {
    const p = plans()[0]!;
    expect(encodeBatchGetUserVectorsResponse(p, [], [], [], NOW)).toHaveLength(0);
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
