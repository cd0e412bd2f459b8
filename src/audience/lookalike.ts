// Look-alike audience extension (docs/parts/serve.md), as pure logic over three small interfaces so it can
// be tested without a store or an index:
//   1. cluster the seeds (spherical k-means, up to ~20 centroids, deterministic), so a multi-modal
//      seed set is searched around each of its modes rather than around one average that may
//      resemble no seed at all (RALM's approach);
//   2. gather candidates from the ANN index around every centroid (budget split by cluster size)
//      and around a spread-out subset of single seeds (catches small modes k-means merged);
//   3. score candidates with a logistic regression fitted on seeds vs a random population sample.
//      Features: the unit vector plus one RBF-like similarity per centroid,
//      exp(-(1 - cos(x, c_j)) / spread_j). The linear part learns which directions of the space
//      separate seeds from everyone else (popular-app users are near many seeds but not seed-like);
//      the centroid features let a linear model reward closeness to any one mode, which a plain
//      linear score cannot do for modes on opposite sides of the space. Logistic regression is
//      fast enough to fit per request (~10 ms on 900 rows with the SIMD kernel), deterministic,
//      and gives scores comparable across candidates;
//   4. drop seeds and exclusions, return the top N.
// Order of work, for latency (1,000 seeds -> 10,000 users in well under 500 ms of CPU): the model
// is fitted before the searches are launched, all searches go out at once (to a worker pool when
// the index has one), and each answer is scored as it arrives into a top-N heap, so reading and
// scoring overlap the remaining searches. The dense math (k-means, fit, scoring) is batched dot
// products in a WebAssembly SIMD kernel (simd.ts).
import { auc } from './logistic.js';
import { appLayout, appRows, appScorer, DEFAULT_L2_GRID, denseColumns, fitScoring, historyColumn, svdColumn, knnScore, knnScoreFrom, knnWeights, rowLogit, seedProfile, selectApps, vectorLayout, type Family, type HeldOutEstimate } from './scoring.js';
import { sphericalKMeans } from './kmeans.js';
import { dot, normalizedMatrix } from './linalg.js';
import { hashStrings } from '../util/hash.js';
import { mulberry32 } from '../util/random.js';
import { gemmRows } from './simd.js';
import { projectApps, type AppSvd } from './tfidf-svd.js';

export interface Neighbor {
  userId: string;
  /** Cosine similarity (higher is nearer). */
  score: number;
}

export interface LookalikeDeps {
  dim: number;
  /** Vectors of these users in the feature; undefined for unknown users. */
  getVectors(userIds: string[]): (Float32Array | undefined)[] | Promise<(Float32Array | undefined)[]>;
  /** Approximate nearest neighbours of `vector` (any length; cosine). May return fewer than k. */
  search(vector: Float32Array, k: number): Neighbor[] | Promise<Neighbor[]>;
  /**
   * A uniform random sample of about n users of the population, with their vectors. `key` is the
   * call's seed, hashed from its seed ids in sorted order: a sampler that keys its draw by it gives
   * the same seeds the same sample.
   */
  samplePopulation(n: number, key: number): { userIds: string[]; vectors: Float32Array[] } | Promise<{ userIds: string[]; vectors: Float32Array[] }>;
  /** Largest k a single search may ask for (index size or a serving limit). */
  maxSearchK?: number;
  /**
   * The apps each of these users keeps (the feature's vocabulary apps). With it the scoring model
   * also sees activity and a TF-IDF row of the apps (scoring.ts); without it, the vector alone.
   */
  getApps?(userIds: string[]): (readonly string[] | undefined)[] | Promise<(readonly string[] | undefined)[]>;
  /**
   * Every app each user ever installed in the history, kept or since uninstalled (the install
   * sequence's apps; undefined: none recorded, the user's kept apps stand in). With it the ensemble gains a member, item-kNN over
   * these lists (scoring.ts 'history'): trials and bursts that were uninstalled still say what a
   * user looked for, which the kept apps no longer show.
   */
  getEverApps?(userIds: string[]): (readonly string[] | undefined)[] | Promise<(readonly string[] | undefined)[]>;
  /** How many users ever installed each app (exact weights of the history item-kNN; estimated from the population sample without it). */
  appEverUsers?(appIds: string[]): (number | undefined)[] | Promise<(number | undefined)[]>;
  /**
   * TF-IDF + SVD of the kept apps fitted on every user of the feature, of about this rank, shared
   * by the calls (the classical member); undefined (or absent): no such member.
   */
  appSvd?(rank: number): AppSvd | undefined | Promise<AppSvd | undefined>;
  /** How many users keep each app (exact item-kNN weights; without it they are estimated from the population sample). */
  appUsers?(appIds: string[]): (number | undefined)[] | Promise<(number | undefined)[]>;
  /**
   * Every user of the feature when there are few enough to score them all (then no candidate
   * search runs and no good user is cut by it); undefined when the population is too large.
   */
  allUsers?(): readonly string[] | undefined | Promise<readonly string[] | undefined>;
  /** Users in the feature: the seeds' prevalence for the held-out recall estimate. */
  populationSize?: number;
  /**
   * Throws when the caller has gone away; called between phases. May be async: a server uses it
   * to yield to its event loop, which is also when a cancellation can arrive.
   */
  checkCancelled?(): void | Promise<void>;
}

export interface LookalikeOptions {
  audienceSize: number;
  exclude?: Iterable<string>;
  /** Most seed clusters (default 20). */
  maxClusters?: number;
  /** Candidates gathered per wanted user (default 1.3). */
  oversample?: number;
  /**
   * Single seeds searched around besides the centroids (default 16): cheap insurance for a small
   * mode that k-means merged into a bigger one.
   */
  seedProbes?: number;
  /** Population users sampled as negatives: default clamp(5 x training seeds, 1500, 3000). */
  populationSample?: number;
  /** Seeds used to cluster at most (a seeded random subset beyond it; default 500). */
  maxClusterSeeds?: number;
  /** Seeds used to fit the scoring model at most (a seeded random subset; default 300). */
  maxTrainSeeds?: number;
  /** Gradient steps of each model fit (default 60). */
  fitIterations?: number;
  /** Cross-validation folds over the training rows that choose the L2 penalty and estimate quality (default 4, 3 from 100 training seeds; 0 = none). */
  cvFolds?: number;
  /** L2 penalties tried by the cross-validation (default scoring.ts DEFAULT_L2_GRID). */
  l2Grid?: readonly number[];
  /** L2 penalties the stacking of the members chooses among by cross-validation (default scoring.ts STACK_L2_GRID; one value: fixed). */
  stackL2Grid?: readonly number[];
  /** Use the users' apps in the scoring model when the deps can give them (default true). */
  useApps?: boolean;
  /**
   * Use the apps users ever installed (the history item-kNN member) when the deps can give them
   * and some training row has any (default true; needs useApps).
   */
  useHistory?: boolean;
  /**
   * Stack a classical member: a logistic regression on each user's TF-IDF + SVD vector of the kept
   * apps, when the deps give the SVD (default true; needs useApps).
   */
  useSvd?: boolean;
  /** Rank of that SVD (default 32). */
  svdDim?: number;
  /** Model families the cross-validation chooses among (default: all that the features allow). */
  families?: Family[];
}

export interface LookalikeResult {
  users: Neighbor[];
  seedsRequested: number;
  seedsUsed: number;
  seedsUnknown: number;
  candidatesScored: number;
  clusters: number;
  populationSampled: number;
  trainingAuc: number;
  /** Held-out quality estimate from cross-validation over the seeds (scoring.ts). */
  heldOut: HeldOutEstimate;
  /**
   * The model family the cross-validation chose (scoring.ts): 'vector' (vector and centroid
   * similarities), 'apps' (activity and item-kNN over the kept apps) or 'hybrid' (all of them and
   * the TF-IDF app columns).
   */
  features: Family;
  /** The L2 penalty of the final model. */
  l2: number;
  /** True when every user of the feature was scored (no candidate search). */
  exhaustive: boolean;
  timings: LookalikeTimings;
}

export class LookalikeError extends Error {
  constructor(
    readonly code: 'NOT_FOUND' | 'INVALID_ARGUMENT' | 'FAILED_PRECONDITION',
    message: string,
  ) {
    super(message);
    this.name = 'LookalikeError';
  }
}

/**
 * At most `max` elements, drawn without replacement by a PRNG seeded from the request (same input,
 * same subset). Random rather than every n-th element: seed lists often come grouped or cyclic, and
 * a regular stride can miss whole groups.
 */
function subset<T>(xs: T[], max: number, seed: number): T[] {
  if (xs.length <= max) return xs;
  const r = mulberry32(seed);
  const idx = Array.from({ length: xs.length }, (_, i) => i);
  for (let i = 0; i < max; i++) {
    const j = i + Math.floor(r() * (idx.length - i));
    [idx[i], idx[j]] = [idx[j]!, idx[i]!];
  }
  return idx
    .slice(0, max)
    .sort((a, b) => a - b)
    .map((i) => xs[i]!);
}

/**
 * At most `max` of the rows 0..n-1, stratified over their groups (k-means clusters): rows in
 * seeded random order within each group, groups one after another, then every (n/max)-th row from
 * a seeded offset. Each group keeps its share to within one row, so a seed mode is not left with a
 * few positives by chance (a plain random draw of 40 of 120 seeds over 6 modes gave one mode 2 and
 * the audience none of its users).
 */
function stratifiedSubset(n: number, group: ArrayLike<number>, max: number, seed: number): number[] {
  const rows = Array.from({ length: n }, (_, i) => i);
  if (n <= max) return rows;
  const r = mulberry32(seed);
  const key = Float64Array.from(rows, () => r());
  rows.sort((a, b) => group[a]! - group[b]! || key[a]! - key[b]!);
  const step = n / max;
  const off = r() * step;
  return Array.from({ length: max }, (_, i) => rows[Math.min(n - 1, Math.floor(off + i * step))]!).sort((a, b) => a - b);
}

/** Wall-clock milliseconds per phase of one call (for logs and benchmarks). */
export interface LookalikeTimings {
  seeds: number;
  cluster: number;
  population: number;
  fit: number;
  /** From launching the searches to their last answer (overlaps reading and scoring). */
  search: number;
  /** Waiting for answers not there yet: the part of the searches nothing else hid. */
  searchWait: number;
  /** Reading candidate vectors from the store. */
  vectors: number;
  /** Scoring and ranking (the rest of the candidate phase). */
  score: number;
  total: number;
}

/**
 * Top-`cap` of (score, id) pairs in a binary min-heap over typed arrays, so the ranking costs
 * O(n log N) and memory bounded by the audience size however many candidates are scored. Ties are
 * broken by user id (smaller id ranks higher) so the result is deterministic.
 */
class TopN {
  private readonly score: Float64Array;
  private readonly ids: string[];
  size = 0;
  constructor(private readonly cap: number) {
    this.score = new Float64Array(cap);
    this.ids = new Array<string>(cap);
  }
  /** a ranks below b. */
  private worse(sa: number, ia: string, sb: number, ib: string): boolean {
    return sa < sb || (sa === sb && ia > ib);
  }
  push(s: number, id: string): void {
    if (this.cap === 0) return;
    if (this.size < this.cap) {
      let i = this.size++;
      while (i > 0) {
        const p = (i - 1) >> 1;
        if (!this.worse(s, id, this.score[p]!, this.ids[p]!)) break;
        this.score[i] = this.score[p]!;
        this.ids[i] = this.ids[p]!;
        i = p;
      }
      this.score[i] = s;
      this.ids[i] = id;
      return;
    }
    if (!this.worse(this.score[0]!, this.ids[0]!, s, id)) return;
    // Replace the root (the worst kept) and sift down.
    let i = 0;
    const n = this.size;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && this.worse(this.score[r]!, this.ids[r]!, this.score[l]!, this.ids[l]!) ? r : l;
      if (!this.worse(this.score[c]!, this.ids[c]!, s, id)) break;
      this.score[i] = this.score[c]!;
      this.ids[i] = this.ids[c]!;
      i = c;
    }
    this.score[i] = s;
    this.ids[i] = id;
  }
  /** Best first. */
  sorted(): Neighbor[] {
    const out: Neighbor[] = new Array(this.size);
    for (let i = 0; i < this.size; i++) out[i] = { userId: this.ids[i]!, score: this.score[i]! };
    return out.sort((a, b) => b.score - a.score || (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0));
  }
}

export async function extendLookalike(seedIdsIn: readonly string[], opts: LookalikeOptions, deps: LookalikeDeps): Promise<LookalikeResult> {
  const t0 = performance.now();
  let tMark = t0;
  const lap = () => {
    const now = performance.now();
    const ms = now - tMark;
    tMark = now;
    return ms;
  };
  const check = async () => deps.checkCancelled?.();
  const d = deps.dim;
  const N = opts.audienceSize;
  if (!Number.isInteger(N) || N < 1) throw new LookalikeError('INVALID_ARGUMENT', 'audience size must be a positive integer');
  // A set, in one canonical order: the same seeds in any order give the same audience.
  const seedIds = [...new Set(seedIdsIn)].sort();
  if (seedIds.length === 0) throw new LookalikeError('INVALID_ARGUMENT', 'no seed users given');

  // 1. Seed vectors.
  const got = await deps.getVectors(seedIds);
  await check();
  const knownIds: string[] = [];
  const knownVecs: Float32Array[] = [];
  for (let i = 0; i < seedIds.length; i++) {
    const v = got[i];
    if (v) {
      knownIds.push(seedIds[i]!);
      knownVecs.push(v);
    }
  }
  if (knownIds.length === 0) {
    throw new LookalikeError('NOT_FOUND', `none of the ${seedIds.length} seed users has a vector in this feature`);
  }
  const seed = hashStrings(knownIds);
  const trainIdx = subset(knownIds.map((_, i) => i), opts.maxClusterSeeds ?? 500, seed);
  const nS = trainIdx.length;
  const S = normalizedMatrix(trainIdx.map((i) => knownVecs[i]!), d);
  const tSeeds = lap();

  // 2. Clusters.
  const maxClusters = opts.maxClusters ?? 20;
  const km = sphericalKMeans(S, nS, d, Math.min(maxClusters, Math.ceil(nS / 3)), seed, 8);
  const K = km.k;
  // Cluster spread = 1 - mean cosine of members to their centroid (floored so that a tight or
  // single-member cluster still gives a usable similarity feature).
  const spreadOf = new Float64Array(K);
  for (let r = 0; r < nS; r++) spreadOf[km.assignment[r]!]! += dot(S, r * d, km.centroids, km.assignment[r]! * d, d);
  for (let j = 0; j < K; j++) spreadOf[j] = Math.max(0.05, 1 - spreadOf[j]! / km.sizes[j]!);
  const tCluster = lap();
  await check();

  // 3. Population sample (negatives of the model).
  const exclude = new Set<string>(knownIds);
  for (const s of seedIds) exclude.add(s);
  const fitRows = stratifiedSubset(nS, km.assignment, opts.maxTrainSeeds ?? 300, seed + 1);
  const nF = fitRows.length;
  // Negatives: 1,500, or 5 per seed up to 3,000 (the fit's cost grows with them; more did not
  // change the leave-app-out results at 10-50 seeds).
  const popWanted = opts.populationSample ?? Math.min(3000, Math.max(1500, 5 * nF));
  tMark = performance.now();
  const pop = await deps.samplePopulation(popWanted, seed);
  const tPopulation = lap();
  await check();
  const negIdx: number[] = [];
  for (let i = 0; i < pop.userIds.length; i++) if (!exclude.has(pop.userIds[i]!)) negIdx.push(i);
  if (negIdx.length === 0) throw new LookalikeError('FAILED_PRECONDITION', 'the population sample holds no user besides the seeds: the store is too small for a look-alike model');

  // 4. Scoring model: seeds vs population (scoring.ts). Features: the unit vector, one RBF-like
  // similarity per centroid (all rows in one batched pass) and, when the store has the users'
  // apps, activity and a TF-IDF row of the apps. The L2 penalty is chosen by cross-validation,
  // which also gives the held-out quality estimate.
  tMark = performance.now();
  const nTrain = nF + negIdx.length;
  const Xraw = new Float32Array(nTrain * d);
  fitRows.forEach((r, i) => Xraw.set(S.subarray(r * d, r * d + d), i * d));
  Xraw.set(normalizedMatrix(negIdx.map((i) => pop.vectors[i]!), d), nF * d);
  const sims = new Float32Array(nTrain * K);
  gemmRows(Xraw, nTrain, km.centroids, K, d, sims);
  const useApps = (opts.useApps ?? true) && deps.getApps !== undefined;
  let trainApps: (readonly string[] | undefined)[] = [];
  if (useApps) {
    trainApps = [
      ...(await deps.getApps!(fitRows.map((r) => knownIds[trainIdx[r]!]!))),
      ...(await deps.getApps!(negIdx.map((i) => pop.userIds[i]!))),
    ];
  }
  // TF-IDF columns only for a family that reads them (the default ensemble does not: building them
  // for every training row and candidate would be work thrown away).
  const families = opts.families;
  const tfidf = (families ?? []).some((f) => f === 'hybrid' || f === 'tfidf');
  // Every app ever installed: a member only when some training row has a history beyond its kept
  // apps (a store without sequences gives nothing new, and the ensemble stays as it was).
  let trainEver: (readonly string[] | undefined)[] = [];
  if (useApps && (opts.useHistory ?? true) && deps.getEverApps) {
    const got = [
      ...(await deps.getEverApps(fitRows.map((r) => knownIds[trainIdx[r]!]!))),
      ...(await deps.getEverApps(negIdx.map((i) => pop.userIds[i]!))),
    ];
    // A user without a list kept everything they installed: their kept apps stand in.
    if (got.some((l, r) => l !== undefined && new Set(l).size > new Set(trainApps[r] ?? []).size)) trainEver = got.map((l, r) => l ?? trainApps[r]);
  }
  const history = trainEver.length > 0;
  // The classical member: TF-IDF + SVD of the kept apps, fitted on every user of the feature (the
  // deps decide when the population is small enough). Not fitted here on the population sample:
  // its own rows would then sit in the SVD's span and seeds and candidates outside it, and the
  // member would learn that difference instead of the seeds (measured: held-out AUC 0.93 on apps
  // that were pure noise).
  const svdRank = opts.svdDim ?? 32;
  const appSvd = useApps && (opts.useSvd ?? true) && deps.appSvd ? await deps.appSvd(svdRank) : undefined;
  const svdK = appSvd && appSvd.svd.k > 0 ? appSvd.svd.k : 0;
  const layout = { ...(useApps ? appLayout(d, K, trainApps, nF, tfidf ? selectApps(trainApps, 2, 1024) : []) : vectorLayout(d, K)), history, svd: svdK };
  const hCol = historyColumn(layout);
  const sCol = svdColumn(layout);
  const P = denseColumns(layout);
  const X = new Float32Array(nTrain * P);
  const app = useApps ? appRows(layout, trainApps) : undefined;
  const popSize = Math.max(deps.populationSize ?? 0, knownIds.length + negIdx.length);
  let profile = useApps ? seedProfile(trainApps.slice(0, nF), trainApps.slice(nF), popSize) : undefined;
  if (profile && deps.appUsers) {
    const apps = [...profile.inter.keys()];
    const counts = await deps.appUsers(apps);
    apps.forEach((a, i) => {
      const c = counts[i];
      if (c !== undefined) profile!.users.set(a, Math.max(c, profile!.inter.get(a)!));
    });
  }
  let historyProfile = history ? seedProfile(trainEver.slice(0, nF), trainEver.slice(nF), popSize) : undefined;
  if (historyProfile && deps.appEverUsers) {
    const apps = [...historyProfile.inter.keys()];
    const counts = await deps.appEverUsers(apps);
    apps.forEach((a, i) => {
      const c = counts[i];
      if (c !== undefined) historyProfile!.users.set(a, Math.max(c, historyProfile!.inter.get(a)!));
    });
  }
  const kw = profile ? knnWeights(profile) : undefined;
  const hw = historyProfile ? knnWeights(historyProfile) : undefined;
  for (let r = 0; r < nTrain; r++) {
    X.set(Xraw.subarray(r * d, r * d + d), r * P);
    for (let j = 0; j < K; j++) X[r * P + d + j] = Math.exp(-(1 - sims[r * K + j]!) / spreadOf[j]!);
    if (app) {
      X[r * P + d + K] = app.activity[r]!;
      X[r * P + d + K + 1] = r < nF ? knnScore(profile!, trainApps[r], true) : knnScoreFrom(kw!, profile!.userNorm, trainApps[r]);
    }
    if (historyProfile) X[r * P + hCol] = r < nF ? knnScore(historyProfile, trainEver[r], true) : knnScoreFrom(hw!, historyProfile.userNorm, trainEver[r]);
    if (svdK > 0) projectApps(appSvd!, trainApps[r], X.subarray(r * P + sCol, r * P + sCol + svdK));
  }
  const y = new Uint8Array(nTrain);
  y.fill(1, 0, nF);
  // In cross-validation the seed clusters must come from the training fold's seeds alone: with
  // clusters of all seeds, a held-out seed sits next to a centroid it helped place (with few seeds
  // often its own), and the vector view looks far better held-out than it is on new users.
  const foldDense = (trainRows: number[]): Float32Array => {
    const seedsIn = trainRows.filter((r) => r < nF);
    const Xf = X.slice();
    const Sf = new Float32Array(seedsIn.length * d);
    seedsIn.forEach((r, i) => Sf.set(Xraw.subarray(r * d, r * d + d), i * d));
    const kf = sphericalKMeans(Sf, seedsIn.length, d, Math.max(1, Math.min(K, Math.ceil(seedsIn.length / 3))), seed + 4, 8);
    const spread = new Float64Array(kf.k);
    for (let r = 0; r < seedsIn.length; r++) spread[kf.assignment[r]!]! += dot(Sf, r * d, kf.centroids, kf.assignment[r]! * d, d);
    for (let j = 0; j < kf.k; j++) spread[j] = Math.max(0.05, 1 - spread[j]! / kf.sizes[j]!);
    const sf = new Float32Array(nTrain * kf.k);
    gemmRows(Xraw, nTrain, kf.centroids, kf.k, d, sf);
    for (let r = 0; r < nTrain; r++)
      for (let j = 0; j < K; j++) Xf[r * P + d + j] = j < kf.k ? Math.exp(-(1 - sf[r * kf.k + j]!) / spread[j]!) : 0;
    if (profile) {
      // The item-kNN column from the training fold's seeds alone: held-out seeds are then scored
      // exactly as users the audience has to find are.
      const pf = seedProfile(seedsIn.map((r) => trainApps[r]), [], popSize);
      for (const a of pf.users.keys()) pf.users.set(a, Math.max(profile.users.get(a) ?? 0, pf.inter.get(a)!));
      const inFold = new Uint8Array(nTrain);
      for (const r of seedsIn) inFold[r] = 1;
      const pw = knnWeights(pf);
      for (let r = 0; r < nTrain; r++) Xf[r * P + d + K + 1] = inFold[r] === 1 ? knnScore(pf, trainApps[r], true) : knnScoreFrom(pw, pf.userNorm, trainApps[r]);
      if (historyProfile) {
        const hf = seedProfile(seedsIn.map((r) => trainEver[r]), [], popSize);
        for (const a of hf.users.keys()) hf.users.set(a, Math.max(historyProfile.users.get(a) ?? 0, hf.inter.get(a)!));
        const hfw = knnWeights(hf);
        for (let r = 0; r < nTrain; r++) Xf[r * P + hCol] = inFold[r] === 1 ? knnScore(hf, trainEver[r], true) : knnScoreFrom(hfw, hf.userNorm, trainEver[r]);
      }
    }
    return Xf;
  };
  const { scoring, estimate } = fitScoring(X, app?.rows, y, nTrain, layout, {
    // 4 folds for the usual few seeds; from 100 seeds on, 3 folds hold enough of them each.
    folds: opts.cvFolds ?? (nF >= 100 ? 3 : 4),
    grid: opts.l2Grid ?? DEFAULT_L2_GRID,
    iterations: opts.fitIterations ?? 60,
    seed: seed + 3,
    prevalence: knownIds.length / popSize,
    ...(families ? { families } : {}),
    ...(opts.stackL2Grid ? { stackGrid: opts.stackL2Grid } : {}),
    foldDense,
  }, profile, historyProfile);
  const model = scoring.model;
  const trainScores = new Float64Array(nTrain);
  for (let i = 0; i < nTrain; i++) trainScores[i] = rowLogit(model, X, app?.rows, i);
  const trainingAuc = auc(trainScores, y);
  const tFit = lap();
  await check();

  // 5. Candidates: every search (one per centroid with a large k, plus a few single seeds) is
  // launched at once, and each answer is read and scored as soon as it arrives, so with a
  // worker-pool index the searches run on other threads while this one reads and scores.
  // Scoring: the new candidates' vectors copied into one contiguous matrix, all K+1 dot products
  // per candidate (the linear part and the centroids) in one batched SIMD pass, the vector's norm
  // folded in afterwards; only the best N are kept.
  const seedsExcluded = exclude.size;
  for (const e of opts.exclude ?? []) exclude.add(e);
  const maxK = Math.max(1, deps.maxSearchK ?? 10_000);
  const oversample = opts.oversample ?? 1.3;
  // Neighbour lists also return seeds and exclusions: budget for them (seeds counted once).
  let budget = Math.ceil(oversample * N) + seedsExcluded + Math.min(exclude.size - seedsExcluded, 10 * N);
  const probes = subset(trainIdx, Math.min(opts.seedProbes ?? 16, nS), seed + 2);
  const probeK = Math.min(maxK, 100, Math.max(10, Math.ceil((2 * budget) / Math.max(1, knownIds.length))));
  const centroidKs = (b: number) => km.sizes.map((s) => Math.min(maxK, Math.max(20, Math.ceil((b * s) / nS))));

  const R = K + 1;
  const W = new Float32Array(R * d);
  W.set(model.weights.subarray(0, d), 0);
  W.set(km.centroids.subarray(0, K * d), d);
  const wc = new Float64Array(R);
  const invSpread = new Float64Array(R);
  for (let j = 1; j < R; j++) {
    wc[j] = model.weights[d + j - 1]!;
    invSpread[j] = 1 / spreadOf[j - 1]!;
  }
  const appPart = appScorer(scoring);
  const wSvd = model.weights.subarray(sCol, sCol + svdK);
  const svdRow = new Float32Array(svdK);
  let svdUsed = false;
  for (let j = 0; j < svdK; j++) if (wSvd[j] !== 0) svdUsed = true;
  const svdPart = (apps: readonly string[] | undefined): number => {
    if (!svdUsed) return 0;
    projectApps(appSvd!, apps, svdRow);
    let z = 0;
    for (let j = 0; j < svdK; j++) z += wSvd[j]! * svdRow[j]!;
    return z;
  };
  const seen = new Set<string>();
  const top = new TopN(N);
  let scoredCount = 0;
  let tVectors = 0;
  const CHUNK = 4096;
  let Xc = new Float32Array(0);
  let invNorm = new Float64Array(0);
  let rowOf = new Int32Array(0);
  let dots = new Float32Array(0);
  const scoreList = async (ns: Neighbor[]) => {
    const fresh: string[] = [];
    for (const x of ns) {
      if (exclude.has(x.userId) || seen.has(x.userId)) continue;
      seen.add(x.userId);
      fresh.push(x.userId);
    }
    for (let s = 0; s < fresh.length; s += CHUNK) {
      const part = s === 0 && fresh.length <= CHUNK ? fresh : fresh.slice(s, s + CHUNK);
      const tv = performance.now();
      const vecs = await deps.getVectors(part);
      const appsOf = useApps ? await deps.getApps!(part) : undefined;
      const everOf = history ? await deps.getEverApps!(part) : undefined;
      tVectors += performance.now() - tv;
      if (invNorm.length < part.length) {
        Xc = new Float32Array(part.length * d);
        invNorm = new Float64Array(part.length);
        rowOf = new Int32Array(part.length);
        dots = new Float32Array(part.length * R);
      }
      let n = 0;
      for (let r = 0; r < part.length; r++) {
        const v = vecs[r];
        if (!v) continue;
        let nn = 0;
        for (let i = 0; i < d; i++) nn += v[i]! * v[i]!;
        if (!(nn > 0)) continue;
        Xc.set(v, n * d);
        invNorm[n] = 1 / Math.sqrt(nn);
        rowOf[n++] = r;
      }
      gemmRows(Xc, n, W, R, d, dots);
      for (let q = 0; q < n; q++) {
        const o = q * R;
        const inv = invNorm[q]!;
        let z = dots[o]! * inv + model.bias;
        for (let j = 1; j < R; j++) z += wc[j]! * Math.exp((dots[o + j]! * inv - 1) * invSpread[j]!);
        if (appsOf) z += appPart(appsOf[rowOf[q]!], everOf?.[rowOf[q]!] ?? appsOf[rowOf[q]!]) + svdPart(appsOf[rowOf[q]!]);
        // Ranked by the logit: the probability rounds to exactly 1 from z ~ 37 on, and users
        // tied there would be ordered by id instead of by score.
        top.push(z, part[rowOf[q]!]!);
      }
      scoredCount += n;
    }
  };

  tMark = performance.now();
  const tSearch0 = tMark;
  let tLastAnswer = tMark;
  let tSearchWait = 0;
  const everyone = deps.allUsers ? await deps.allUsers() : undefined;
  if (everyone) {
    // Few enough users to score them all: no candidate search, so no good user is cut by one.
    const list = everyone.map((userId) => ({ userId, score: 0 }));
    for (let s0 = 0; s0 < list.length; s0 += 16 * CHUNK) {
      await scoreList(list.slice(s0, s0 + 16 * CHUNK));
      await check();
    }
    tLastAnswer = performance.now();
  }
  let ks = centroidKs(budget);
  let queries: { v: Float32Array; k: number }[] = [
    ...ks.map((k, j) => ({ v: km.centroids.subarray(j * d, j * d + d), k })),
    ...probes.map((i) => ({ v: knownVecs[i]!, k: probeK })),
  ];
  for (let round = 0; !everyone; round++) {
    const pending = queries.map((q) =>
      Promise.resolve(deps.search(q.v, q.k)).then((r) => {
        tLastAnswer = performance.now();
        return r;
      }),
    );
    // Awaited one by one below; a cancellation in between must not leave the rest unhandled.
    for (const p of pending) p.catch(() => undefined);
    for (const p of pending) {
      const tw = performance.now();
      const list = await p;
      tSearchWait += performance.now() - tw;
      await scoreList(list);
      await check();
    }
    // Oversampling is a soft target; only an audience that cannot be filled is worth another
    // round of searches. A list that came back short is not proof of exhaustion (an index skips
    // deleted points), so only lists already at the largest k are done. Doubled: overlapping
    // lists around nearby centroids yield new users much more slowly than k grows.
    const exhausted = ks.every((k) => k >= maxK);
    if (scoredCount >= N || exhausted || round >= 3) break;
    budget *= 2;
    ks = centroidKs(budget);
    queries = ks.map((k, j) => ({ v: km.centroids.subarray(j * d, j * d + d), k }));
  }
  const tSearchAll = tLastAnswer - tSearch0;
  const users = top.sorted().map((u) => ({ userId: u.userId, score: 1 / (1 + Math.exp(-u.score)) }));
  const tScore = lap() - tVectors - tSearchWait;
  return {
    users,
    seedsRequested: seedIds.length,
    seedsUsed: knownIds.length,
    seedsUnknown: seedIds.length - knownIds.length,
    candidatesScored: scoredCount,
    clusters: K,
    populationSampled: negIdx.length,
    trainingAuc,
    heldOut: estimate,
    features: scoring.family,
    l2: scoring.l2,
    exhaustive: everyone !== undefined,
    timings: {
      seeds: tSeeds,
      cluster: tCluster,
      population: tPopulation,
      fit: tFit,
      search: tSearchAll,
      searchWait: tSearchWait,
      vectors: tVectors,
      score: tScore,
      total: performance.now() - t0,
    },
  };
}

/** The naive baseline the method must beat: one query around the mean of the seeds. */
export async function singleCentroidLookalike(seedIds: readonly string[], audienceSize: number, deps: LookalikeDeps): Promise<Neighbor[]> {
  const vecs = (await deps.getVectors([...seedIds])).filter((v): v is Float32Array => !!v);
  const M = normalizedMatrix(vecs, deps.dim);
  const c = new Float32Array(deps.dim);
  for (let r = 0; r < vecs.length; r++) for (let i = 0; i < deps.dim; i++) c[i]! += M[r * deps.dim + i]!;
  const seedSet = new Set(seedIds);
  const res = await deps.search(c, audienceSize + seedSet.size);
  return res.filter((n) => !seedSet.has(n.userId)).slice(0, audienceSize);
}

