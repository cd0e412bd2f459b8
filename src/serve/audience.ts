// AudienceService: neighbour search and look-alike audiences for ad systems. The look-alike
// method itself lives in src/audience (pure logic); this file validates, wires it to the store
// and the index, streams the answer and stops when the caller goes away.
import { AudienceService } from '../gen/aetn/v1/audience_pb.js';
import { extendLookalike, type LookalikeDeps } from '../audience/lookalike.js';
import type { ServingBackend, AnnSearcher } from './backend.js';
import type { FeatureInfo } from '../store/types.js';
import { invalid, notFound, RpcError } from './errors.js';
import { status } from '@grpc/grpc-js';
import { encodeAudienceChunk } from './encode.js';
import type { ServiceImpl } from './rpc.js';
import { checkRange, checkUserId, checkUserIds, checkVector, LIMITS } from './validate.js';

export interface AudienceOptions {
  /** Users per streamed chunk. */
  chunkSize?: number;
  /** Largest k one index search may use inside a look-alike call. */
  maxSearchK?: number;
  /** Floors (serve.lookalikeMinSeeds / serve.lookalikeMinAudience): look-alike is not for targeting individuals. */
  minSeeds?: number;
  minAudience?: number;
}

export const DEFAULT_MIN_SEEDS = 50;
export const DEFAULT_MIN_AUDIENCE = 100;

const yieldToLoop = () => new Promise<void>((r) => setImmediate(r));

/** An index search whose answer never names a forgotten user (an index not yet reloaded after a forget may hold them). */
async function search(backend: ServingBackend, idx: AnnSearcher, v: Float32Array, k: number, ef?: number) {
  const kk = Math.min(k, idx.size);
  if (kk <= 0) return [];
  const res = await idx.search(v, kk, ef !== undefined ? Math.max(ef, kk) : undefined);
  return res.filter((n) => !backend.isForgotten(n.userId));
}

/**
 * The look-alike's view of the store and index for one feature (also used by the benchmark's
 * in-process profile and the leave-app-out evaluation). `salt` fixes which slice of the population
 * sample a call gets; without one, the look-alike's seed (from its seed ids) does.
 */
export function lookalikeDeps(
  backend: ServingBackend,
  f: FeatureInfo,
  idx: AnnSearcher,
  salt: string | undefined,
  maxSearchK = 10_000,
  checkCancelled?: () => Promise<void>,
): LookalikeDeps {
  return {
    dim: f.dim,
    getVectors: (ids) => {
      const got = backend.getMany(f.featureId, ids);
      return got instanceof Promise ? got.then((vs) => vs.map((v) => v?.vector)) : got.map((v) => v?.vector);
    },
    search: (v, k) => search(backend, idx, v, k, k),
    samplePopulation: (n, key) => backend.population(f.featureId, n, salt ?? `seeds-${key}`),
    maxSearchK: Math.min(idx.size, maxSearchK),
    allUsers: () => backend.allUsers(f.featureId),
    populationSize: backend.count(f.featureId),
    ...(backend.hasUserApps() ? { getApps: (ids: string[]) => backend.userApps(ids), appUsers: (apps: string[]) => backend.appUsers(apps), appSvd: (rank: number) => backend.appSvd(f.featureId, rank) } : {}),
    ...(backend.hasUserEverApps() ? { getEverApps: (ids: string[]) => backend.userEverApps(ids), appEverUsers: (apps: string[]) => backend.appEverUsers(apps) } : {}),
    ...(checkCancelled ? { checkCancelled } : {}),
  };
}

export function audienceHandlers(backend: ServingBackend, opts: AudienceOptions = {}): ServiceImpl<typeof AudienceService> {
  const chunkSize = opts.chunkSize ?? 1000;
  const minSeeds = opts.minSeeds ?? DEFAULT_MIN_SEEDS;
  const minAudience = opts.minAudience ?? DEFAULT_MIN_AUDIENCE;
  return {
    async searchNeighbors(req) {
      backend.syncForgotten();
      if (req.k === 0) throw invalid(`k is 0; ask for 1 to ${LIMITS.k} neighbours`);
      checkRange(req.k, 'k', 1, LIMITS.k);
      checkRange(req.ef, 'ef', 0, LIMITS.ef, ' (0 = the index default)');
      return backend.withFeature('long', req.featureId, 'feature_id', async (f) => {
        let q: Float32Array;
        let self: string | undefined;
        switch (req.query.case) {
          case 'userId': {
            checkUserId(req.query.value, 'user_id');
            const sv = (await backend.getMany(f.featureId, [req.query.value]))[0];
            if (!sv) throw notFound(`user "${req.query.value}" has no vector in feature ${f.featureId}`);
            q = sv.vector;
            self = req.query.value;
            break;
          }
          case 'vector':
            q = checkVector(req.query.value.values, f.dim, f.featureId);
            break;
          default:
            throw invalid('query is missing: set user_id or vector');
        }
        const idx = await backend.index(f);
        const want = req.k + (self !== undefined ? 1 : 0);
        const ef = req.ef > 0 ? Math.max(req.ef, want) : undefined;
        const res = await search(backend, idx, q, want, ef);
        const neighbors = res
          .filter((n) => n.userId !== self)
          .slice(0, req.k)
          .map((n) => ({ userId: n.userId, score: n.score }));
        return { featureId: f.featureId, neighbors };
      });
    },

    async extendLookalike(req, ctx, send) {
      const started = performance.now();
      backend.syncForgotten();
      if (req.audienceSize === 0) throw invalid(`audience_size is 0; ask for 1 to ${LIMITS.audienceSize} users`);
      checkRange(req.audienceSize, 'audience_size', 1, LIMITS.audienceSize);
      checkRange(req.maxClusters, 'max_clusters', 0, LIMITS.maxClusters, ' (0 = 20)');
      checkUserIds(req.excludeUserIds, 'exclude_user_ids', LIMITS.excludeUsers, true);
      if (req.audienceSize < minAudience) {
        throw new RpcError(status.FAILED_PRECONDITION, `audience_size is ${req.audienceSize}, below the minimum audience size of ${minAudience} (serve.lookalikeMinAudience): look-alike audiences are not for targeting individuals`);
      }
      let seeds: string[];
      switch (req.seeds.case) {
        case 'seedUsers':
          checkUserIds(req.seeds.value.userIds, 'seed_users.user_ids', LIMITS.seedUsers);
          seeds = req.seeds.value.userIds;
          break;
        case 'seedAppId': {
          const app = req.seeds.value;
          if (!app) throw invalid('seed_app_id is empty: give a catalog app id');
          if (Buffer.byteLength(app) > LIMITS.appIdBytes) throw invalid(`seed_app_id is longer than ${LIMITS.appIdBytes} bytes`);
          const inst = await backend.installersOf(app);
          if (!inst || inst.length === 0) throw notFound(`no installers of app "${app}" are recorded in the store`);
          seeds = inst.length > LIMITS.seedUsers ? inst.slice(0, LIMITS.seedUsers) : inst;
          break;
        }
        default:
          throw invalid('seeds are missing: set seed_users or seed_app_id');
      }
      const { f, res } = await backend.withFeature('long', req.featureId, 'feature_id', async (f) => {
        // Seeds that can take part (distinct, with a vector): the floor counts those, not ids sent.
        const distinct = [...new Set(seeds)];
        const known = (await backend.getMany(f.featureId, distinct)).filter((v) => v !== undefined).length;
        // None known at all stays NOT_FOUND (the look-alike says so); a few known is below the floor.
        if (known > 0 && known < minSeeds) {
          throw new RpcError(
            status.FAILED_PRECONDITION,
            `${known} of the ${distinct.length} seeds have a vector in feature ${f.featureId}, below the minimum of ${minSeeds} seeds (serve.lookalikeMinSeeds): look-alike audiences are not for targeting individuals`,
          );
        }
        const idx = await backend.index(f);
        ctx.throwIfCancelled();
        // No salt: the population slice is keyed by the look-alike's own seed (its seed ids), not
        // by the call, so the same seeds give the same audience and the same estimate.
        const deps = lookalikeDeps(backend, f, idx, undefined, opts.maxSearchK, async () => {
          // Yield so rankers' calls and a cancellation can be handled between heavy phases.
          await yieldToLoop();
          ctx.throwIfCancelled();
        });
        const res = await extendLookalike(seeds, { audienceSize: req.audienceSize, exclude: req.excludeUserIds, maxClusters: req.maxClusters || LIMITS.defaultClusters }, deps);
        return { f, res };
      });
      if (res.users.length < minAudience) {
        throw new RpcError(status.FAILED_PRECONDITION, `only ${res.users.length} users could be found for this audience, below the minimum audience size of ${minAudience} (serve.lookalikeMinAudience); nothing is returned`);
      }
      const ms = (x: number) => Math.round(x * 10) / 10;
      const t = res.timings;
      ctx.log.info(
        {
          seeds: res.seedsUsed,
          audience: res.users.length,
          candidates: res.candidatesScored,
          clusters: res.clusters,
          stackL2: Number.isNaN(res.heldOut.stackL2) ? null : res.heldOut.stackL2,
          phasesMs: { seeds: ms(t.seeds), cluster: ms(t.cluster), population: ms(t.population), fit: ms(t.fit), search: ms(t.search), searchWait: ms(t.searchWait), vectors: ms(t.vectors), score: ms(t.score), total: ms(t.total) },
        },
        'look-alike computed',
      );
      for (let i = 0; i < res.users.length; i += chunkSize) {
        await send(encodeAudienceChunk(res.users, i, Math.min(res.users.length, i + chunkSize)));
        if ((i / chunkSize) % 8 === 7) await yieldToLoop();
      }
      await send({
        message: {
          case: 'summary',
          value: {
            featureId: f.featureId,
            seedsRequested: res.seedsRequested,
            seedsUsed: res.seedsUsed,
            seedsUnknown: res.seedsUnknown,
            candidatesScored: res.candidatesScored,
            clusters: res.clusters,
            populationSampled: res.populationSampled,
            audienceSize: res.users.length,
            trainingAuc: res.trainingAuc,
            elapsedMs: Math.round(performance.now() - started),
            expectedAuc: res.heldOut.folds > 0 ? res.heldOut.auc : 0,
            expectedRecallAt1x: res.heldOut.folds > 0 ? res.heldOut.recallAt1x : 0,
            estimateFolds: res.heldOut.folds,
            scoringFeatures: res.features,
            exhaustive: res.exhaustive,
          },
        },
      });
    },
  };
}

