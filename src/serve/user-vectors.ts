// UserVectorService: the rankers' API. Small and synchronous on purpose (LMDB reads are
// memory-mapped), so a call costs one event-loop turn; responses are encoded by hand
// (src/serve/encode.ts) instead of building protobuf-es messages per call.
import type { MessageInitShape } from '@bufbuild/protobuf';
import { UserVectorService, VectorView, type CombinedWeights as CombinedWeightsMsg, type UserVectorSchema, type VectorPartSchema } from '../gen/aetn/v1/user_vector_pb.js';
import type { FeatureInfo, StoredVector } from '../store/types.js';
import type { ServingBackend } from './backend.js';
import { RpcError, notFound } from './errors.js';
import type { ServiceImpl } from './rpc.js';
import { checkUserId, checkUserIds, LIMITS } from './validate.js';
import { status } from '@grpc/grpc-js';
import { encodeBatchGetUserVectorsResponse, encodeGetUserVectorResponse, live, weightedUnit, type CombinedWeights, type ServedVector, type UserVectorPlan } from './encode.js';

type UserVectorInit = MessageInitShape<typeof UserVectorSchema>;
type PartInit = MessageInitShape<typeof VectorPartSchema>;

type Plan = UserVectorPlan;

export interface UserVectorOptions {
  /** Default weights of the unit-normalised parts in `combined` (serve.combinedLongWeight / ShortWeight). */
  weights?: CombinedWeights;
  /** Short-term vectors older than this are served as expired (serve.shortTermHorizonMs). */
  shortTermHorizonMs?: number;
  /** The server's clock (tests inject one). */
  now?: () => number;
}

export const DEFAULT_WEIGHTS: CombinedWeights = { long: 0.8, short: 0.6 };
/** The realtime head predicts the next 7 days: a short-term vector is not worth more than that. */
export const DEFAULT_SHORT_TERM_HORIZON_MS = 7 * 86_400_000;
export const MAX_WEIGHT = 100;

/** The weights of one call: the request's when it sets them (checked), else the defaults. */
export function weightsOf(req: CombinedWeightsMsg | undefined, defaults: CombinedWeights): CombinedWeights {
  if (!req) return defaults;
  const w = { long: req.longTerm, short: req.shortTerm };
  for (const [name, x] of [
    ['combined_weights.long_term', w.long],
    ['combined_weights.short_term', w.short],
  ] as const) {
    if (!Number.isFinite(x) || x < 0 || x > MAX_WEIGHT) throw new RpcError(status.INVALID_ARGUMENT, `${name} is ${x}; it must be a finite number from 0 to ${MAX_WEIGHT}`);
  }
  if (w.long === 0 && w.short === 0) throw new RpcError(status.INVALID_ARGUMENT, 'combined_weights are both 0: give at least one part a positive weight, or leave combined_weights unset for the defaults');
  return w;
}

export function plan(backend: ServingBackend, view: VectorView, longId: string, shortId: string, weights: CombinedWeights = DEFAULT_WEIGHTS): Plan {
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
    weights,
  };
}

function part(f: FeatureInfo, sv: ServedVector | undefined, withValues: boolean, now: number): PartInit {
  return {
    featureId: f.featureId,
    dim: f.dim,
    present: live(sv),
    values: live(sv) && withValues ? Array.from(sv.vector) : [],
    updatedAtMs: sv ? BigInt(Math.round(sv.updatedAtMs)) : 0n,
    ageMs: sv ? BigInt(Math.max(0, Math.round(now - sv.updatedAtMs))) : 0n,
    expired: sv?.expired === true,
  };
}

function assemble(p: Plan, userId: string, l: StoredVector | undefined, s: ServedVector | undefined, now: number): UserVectorInit {
  const out: UserVectorInit = { userId, found: l !== undefined || live(s) };
  if (p.long) out.longTerm = part(p.long, l, p.wantLong, now);
  if (p.short) out.shortTerm = part(p.short, s, p.wantShort, now);
  if (p.wantCombined && out.found) {
    const ld = p.long?.dim ?? 0;
    const combined = new Array<number>(ld + (p.short?.dim ?? 0)).fill(0);
    if (l) weightedUnit(l.vector, p.weights.long).forEach((x, i) => (combined[i] = x));
    if (live(s)) weightedUnit(s.vector, p.weights.short).forEach((x, i) => (combined[ld + i] = x));
    out.combined = combined;
  }
  return out;
}

/** Marks short-term vectors older than the horizon as expired (served as absent). */
function age(ss: (StoredVector | undefined)[], now: number, horizonMs: number): (ServedVector | undefined)[] {
  let any = false;
  for (const s of ss) if (s && now - s.updatedAtMs > horizonMs) any = true;
  if (!any) return ss;
  return ss.map((s) => (s && now - s.updatedAtMs > horizonMs ? { ...s, expired: true } : s));
}

/**
 * Reads both parts. A feature retired between resolving it and reading it (a swap in flight) is
 * retried once against the new defaults, so swaps never fail a call that asked for the default.
 */
function read(backend: ServingBackend, view: VectorView, longId: string, shortId: string, ids: readonly string[], weights: CombinedWeights): ReadResult | Promise<ReadResult> {
  for (let attempt = 0; ; attempt++) {
    const p = plan(backend, view, longId, shortId, weights);
    const retryable = (err: unknown) => attempt === 0 && (!longId || !shortId) && (err as { code?: unknown }).code !== undefined && !(err instanceof RpcError);
    try {
      const ls = p.long ? backend.getMany(p.long.featureId, ids) : [];
      const ss = p.short ? backend.getMany(p.short.featureId, ids) : [];
      // The LMDB store answers synchronously (the embedded mode's path); a shared store with promises.
      if (!(ls instanceof Promise) && !(ss instanceof Promise)) return { p, ls, ss };
      return Promise.all([ls, ss]).then(
        ([l, s]) => ({ p, ls: l, ss: s }),
        (err: unknown) => {
          if (!retryable(err)) throw err;
          backend.refreshFeatures();
          return read(backend, view, longId, shortId, ids, weights);
        },
      );
    } catch (err) {
      if (!retryable(err)) throw err;
      backend.refreshFeatures();
    }
  }
}

interface ReadResult {
  p: Plan;
  ls: (StoredVector | undefined)[];
  ss: (StoredVector | undefined)[];
}

export function userVectorHandlers(backend: ServingBackend, opts: UserVectorOptions = {}): ServiceImpl<typeof UserVectorService> {
  const defaults = opts.weights ?? DEFAULT_WEIGHTS;
  const horizonMs = opts.shortTermHorizonMs ?? DEFAULT_SHORT_TERM_HORIZON_MS;
  const clock = opts.now ?? Date.now;
  return {
    getUserVector(req) {
      checkUserId(req.userId, 'user_id');
      const weights = weightsOf(req.combinedWeights, defaults);
      const one = ({ p, ls, ss }: ReadResult) => {
        const now = clock();
        const l = ls[0];
        const s = age(ss, now, horizonMs)[0];
        if (l === undefined && !live(s)) {
          const where = [p.long?.featureId, p.short?.featureId].filter(Boolean).join(' or ');
          const old = ss[0];
          const why = old ? ` (its short-term vector is ${Math.round((now - old.updatedAtMs) / 3_600_000)} h old, past the ${Math.round(horizonMs / 3_600_000)} h horizon)` : '';
          throw notFound(`user "${req.userId}" has no vector in feature ${where}${why}`);
        }
        return encodeGetUserVectorResponse(p, req.userId, l, s, now);
      };
      const r = read(backend, req.view, req.longTermFeatureId, req.shortTermFeatureId, [req.userId], weights);
      return r instanceof Promise ? r.then(one) : one(r);
    },

    batchGetUserVectors(req) {
      checkUserIds(req.userIds, 'user_ids', LIMITS.batchUsers);
      const weights = weightsOf(req.combinedWeights, defaults);
      const many = ({ p, ls, ss }: ReadResult) => {
        const now = clock();
        return encodeBatchGetUserVectorsResponse(p, req.userIds, ls, age(ss, now, horizonMs), now);
      };
      const r = read(backend, req.view, req.longTermFeatureId, req.shortTermFeatureId, req.userIds, weights);
      return r instanceof Promise ? r.then(many) : many(r);
    },
  };
}

/**
 * The same response as a protobuf-es message init, built the generic way: the reference the
 * hand-written encoders are tested against.
 */
export function assembleUserVector(p: Plan, userId: string, l: StoredVector | undefined, s: ServedVector | undefined, now: number): UserVectorInit {
  return assemble(p, userId, l, s, now);
}
