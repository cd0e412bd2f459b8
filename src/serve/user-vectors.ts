// UserVectorService: the rankers' API. Small and synchronous on purpose (LMDB reads are
// memory-mapped), so a call costs one event-loop turn; responses are encoded by hand
// (src/serve/encode.ts) instead of building protobuf-es messages per call.
import type { MessageInitShape } from '@bufbuild/protobuf';
import { UserVectorService, VectorView, type UserVectorSchema, type VectorPartSchema } from '../gen/aetn/v1/user_vector_pb.js';
import type { FeatureInfo, StoredVector } from '../store/types.js';
import type { ServingBackend } from './backend.js';
import { RpcError, notFound } from './errors.js';
import type { ServiceImpl } from './rpc.js';
import { checkUserId, checkUserIds, LIMITS } from './validate.js';
import { status } from '@grpc/grpc-js';
import { encodeBatchGetUserVectorsResponse, encodeGetUserVectorResponse, type UserVectorPlan } from './encode.js';

type UserVectorInit = MessageInitShape<typeof UserVectorSchema>;
type PartInit = MessageInitShape<typeof VectorPartSchema>;

type Plan = UserVectorPlan;

export function plan(backend: ServingBackend, view: VectorView, longId: string, shortId: string): Plan {
  const long = backend.resolve('long', longId, 'long_term_feature_id');
  const short = backend.resolve('short', shortId, 'short_term_feature_id');
  if (!long && !short) throw new RpcError(status.FAILED_PRECONDITION, 'the store has no active long-term or short-term feature yet: embed users first');
  const v = view === VectorView.UNSPECIFIED ? VectorView.COMBINED : view;
  if (!(v in VectorView)) throw new RpcError(status.INVALID_ARGUMENT, `view ${view} is not a known VectorView`);
  return {
    long,
    short,
    wantLong: v === VectorView.LONG_TERM || v === VectorView.ALL,
    wantShort: v === VectorView.SHORT_TERM || v === VectorView.ALL,
    wantCombined: v === VectorView.COMBINED || v === VectorView.ALL,
  };
}

function part(f: FeatureInfo, sv: StoredVector | undefined, withValues: boolean, now: number): PartInit {
  return {
    featureId: f.featureId,
    dim: f.dim,
    present: sv !== undefined,
    values: sv && withValues ? Array.from(sv.vector) : [],
    updatedAtMs: sv ? BigInt(Math.round(sv.updatedAtMs)) : 0n,
    ageMs: sv ? BigInt(Math.max(0, Math.round(now - sv.updatedAtMs))) : 0n,
  };
}

function assemble(p: Plan, userId: string, l: StoredVector | undefined, s: StoredVector | undefined, now: number): UserVectorInit {
  const out: UserVectorInit = { userId, found: l !== undefined || s !== undefined };
  if (p.long) out.longTerm = part(p.long, l, p.wantLong, now);
  if (p.short) out.shortTerm = part(p.short, s, p.wantShort, now);
  if (p.wantCombined && out.found) {
    const ld = p.long?.dim ?? 0;
    const combined = new Array<number>(ld + (p.short?.dim ?? 0)).fill(0);
    if (l) for (let i = 0; i < ld; i++) combined[i] = l.vector[i]!;
    if (s) for (let i = 0; i < s.vector.length; i++) combined[ld + i] = s.vector[i]!;
    out.combined = combined;
  }
  return out;
}

/**
 * Reads both parts. A feature retired between resolving it and reading it (a swap in flight) is
 * retried once against the new defaults, so swaps never fail a call that asked for the default.
 */
function read(backend: ServingBackend, view: VectorView, longId: string, shortId: string, ids: readonly string[]) {
  for (let attempt = 0; ; attempt++) {
    const p = plan(backend, view, longId, shortId);
    try {
      const ls = p.long ? backend.getMany(p.long.featureId, ids) : [];
      const ss = p.short ? backend.getMany(p.short.featureId, ids) : [];
      return { p, ls, ss };
    } catch (err) {
      const retryable = attempt === 0 && (!longId || !shortId) && (err as { code?: unknown }).code !== undefined && !(err instanceof RpcError);
      if (!retryable) throw err;
      backend.refreshFeatures();
    }
  }
}

export function userVectorHandlers(backend: ServingBackend): ServiceImpl<typeof UserVectorService> {
  return {
    getUserVector(req) {
      checkUserId(req.userId, 'user_id');
      const { p, ls, ss } = read(backend, req.view, req.longTermFeatureId, req.shortTermFeatureId, [req.userId]);
      const l = ls[0];
      const s = ss[0];
      if (l === undefined && s === undefined) {
        const where = [p.long?.featureId, p.short?.featureId].filter(Boolean).join(' or ');
        throw notFound(`user "${req.userId}" has no vector in feature ${where}`);
      }
      return encodeGetUserVectorResponse(p, req.userId, l, s, Date.now());
    },

    batchGetUserVectors(req) {
      checkUserIds(req.userIds, 'user_ids', LIMITS.batchUsers);
      const { p, ls, ss } = read(backend, req.view, req.longTermFeatureId, req.shortTermFeatureId, req.userIds);
      return encodeBatchGetUserVectorsResponse(p, req.userIds, ls, ss, Date.now());
    },
  };
}

/**
 * The same response as a protobuf-es message init, built the generic way: the reference the
 * hand-written encoders are tested against.
 */
export function assembleUserVector(p: Plan, userId: string, l: StoredVector | undefined, s: StoredVector | undefined, now: number): UserVectorInit {
  return assemble(p, userId, l, s, now);
}
