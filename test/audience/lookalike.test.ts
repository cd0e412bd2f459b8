// The look-alike algorithm on synthetic clustered vectors, with an exact (brute-force) search as
// the index: isolates our own logic from HNSW's approximation.
import { describe, expect, it } from 'vitest';
import { extendLookalike, singleCentroidLookalike, LookalikeError, type LookalikeDeps, type Neighbor } from '../../src/audience/lookalike.js';
import { mulberry32, Rng } from '../../src/util/random.js';
import { fitAppSvd, project, projectApps, tfidfRows } from '../../src/audience/tfidf-svd.js';
import { normalizeRows } from '../../src/eval/neighbors.js';
import { sphericalKMeans } from '../../src/audience/kmeans.js';
import { fitLogistic, fitLogisticPath, auc } from '../../src/audience/logistic.js';
import { CALIBRATION_MIN_SLOPE, chooseStackPenalty, fitScoring, STACK_L2_GRID, KNN_USER_NORM, knnScore, knnScoreFrom, knnWeights, rowLogit, seedProfile, vectorLayout } from '../../src/audience/scoring.js';

const D = 32;

function gauss(r: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}
function unit(v: Float32Array): Float32Array {
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
}

interface World {
  ids: string[];
  vecs: Map<string, Float32Array>;
  cluster: Map<string, number>;
}

/** `clusters` random modes + one "decoy" mode at the normalised mean of modes 0 and 1. */
function makeWorld(perCluster: number, clusters: number, noise: number, seed = 7): World {
  const r = mulberry32(seed);
  const centers: Float32Array[] = [];
  for (let c = 0; c < clusters; c++) centers.push(unit(Float32Array.from({ length: D }, () => gauss(r))));
  const decoy = unit(centers[0]!.map((x, i) => x + centers[1]![i]!));
  centers.push(decoy);
  const w: World = { ids: [], vecs: new Map(), cluster: new Map() };
  centers.forEach((c, ci) => {
    for (let u = 0; u < perCluster; u++) {
      const id = `u${ci}-${u}`;
      w.ids.push(id);
      w.vecs.set(id, Float32Array.from(c, (x) => x + noise * gauss(r)));
      w.cluster.set(id, ci);
    }
  });
  return w;
}

function exactDeps(w: World, calls = { search: 0 }): LookalikeDeps {
  const norm = new Map([...w.vecs].map(([k, v]) => [k, unit(v)]));
  const r = mulberry32(99);
  return {
    dim: D,
    getVectors: (ids) => ids.map((id) => w.vecs.get(id)),
    search: (q, k) => {
      calls.search++;
      const qn = unit(q);
      const all: Neighbor[] = [];
      for (const [id, v] of norm) {
        let s = 0;
        for (let i = 0; i < D; i++) s += v[i]! * qn[i]!;
        all.push({ userId: id, score: s });
      }
      return all.sort((a, b) => b.score - a.score).slice(0, k);
    },
    samplePopulation: (n) => {
      const ids: string[] = [];
      for (let i = 0; i < n; i++) ids.push(w.ids[Math.floor(r() * w.ids.length)]!);
      const uniq = [...new Set(ids)];
      return { userIds: uniq, vectors: uniq.map((id) => w.vecs.get(id)!) };
    },
    maxSearchK: w.ids.length,
  };
}

describe('extendLookalike', () => {
  const world = makeWorld(400, 12, 0.06);
  const truth = (id: string) => world.cluster.get(id) === 0 || world.cluster.get(id) === 1;
  // A lopsided two-mode seed set: 40 from mode 0, 20 from mode 1.
  const seeds = [...world.ids.filter((id) => world.cluster.get(id) === 0).slice(0, 40), ...world.ids.filter((id) => world.cluster.get(id) === 1).slice(0, 20)];
  const N = 600;

  it('beats a single-centroid query on a multi-modal seed set', async () => {
    const deps = exactDeps(world);
    const res = await extendLookalike(seeds, { audienceSize: N }, deps);
    const base = await singleCentroidLookalike(seeds, N, deps);
    const prec = (xs: Neighbor[]) => xs.filter((n) => truth(n.userId)).length / xs.length;
    expect(res.users).toHaveLength(N);
    expect(base).toHaveLength(N);
    const pl = prec(res.users);
    const pb = prec(base);
    console.log(`precision@${N}: lookalike ${pl.toFixed(3)} vs single centroid ${pb.toFixed(3)}`);
    // The baseline's centroid sits on the decoy mode; ours searches both real modes.
    expect(pl).toBeGreaterThan(0.9);
    expect(pl).toBeGreaterThan(pb + 0.3);
    // Both modes are represented, not just the bigger one.
    const mode1 = res.users.filter((n) => world.cluster.get(n.userId) === 1).length;
    expect(mode1).toBeGreaterThan(N / 4);
    expect(res.clusters).toBeGreaterThanOrEqual(2);
    expect(res.trainingAuc).toBeGreaterThan(0.95);
  });

  it('subsamples large seed lists without missing modes (cyclic seed order)', async () => {
    const w = makeWorld(200, 12, 0.06, 21);
    const modes = [2, 3, 4, 5, 6, 7];
    // Seeds listed cyclically over 6 modes: a regular stride through them would skip modes.
    const byMode = modes.map((m) => w.ids.filter((id) => w.cluster.get(id) === m));
    const cyc: string[] = [];
    for (let i = 0; i < 120; i++) cyc.push(byMode[i % 6]![Math.floor(i / 6)]!);
    const res = await extendLookalike(cyc, { audienceSize: 600, maxTrainSeeds: 40, maxClusterSeeds: 60, seedProbes: 12 }, exactDeps(w));
    const perMode = modes.map((m) => res.users.filter((u) => w.cluster.get(u.userId) === m).length);
    // 180 look-alikes left per mode (100 each if spread evenly); every mode must be represented.
    // The 40 seeds of the fit are drawn stratified over the seed clusters: over 30 such worlds, a
    // plain random draw left a mode out of the audience 4 times, the stratified draw never (the six
    // modes are 46% of this population, so seeds vs population is a broad contrast, and a mode that
    // draws few positives scores below the others). Here: 73 to 126 per mode.
    for (const n of perMode) expect(n).toBeGreaterThan(20);
    expect(perMode.reduce((a, b) => a + b, 0)).toBeGreaterThan(0.95 * 600);
  });

  it('never returns seeds or exclusions, reports unknown seeds, scores in descending order', async () => {
    const deps = exactDeps(world);
    const exclude = world.ids.filter((id) => world.cluster.get(id) === 0).slice(40, 140);
    const res = await extendLookalike([...seeds, 'nobody-1', 'nobody-2', seeds[0]!], { audienceSize: 300, exclude }, deps);
    const bad = new Set([...seeds, ...exclude]);
    expect(res.users.some((u) => bad.has(u.userId))).toBe(false);
    expect(new Set(res.users.map((u) => u.userId)).size).toBe(res.users.length);
    expect(res.seedsRequested).toBe(seeds.length + 2);
    expect(res.seedsUnknown).toBe(2);
    expect(res.seedsUsed).toBe(seeds.length);
    for (let i = 1; i < res.users.length; i++) expect(res.users[i - 1]!.score).toBeGreaterThanOrEqual(res.users[i]!.score);
    for (const u of res.users) expect(u.score).toBeGreaterThan(0), expect(u.score).toBeLessThan(1);
  });

  it('is deterministic for the same input', async () => {
    const a = await extendLookalike(seeds, { audienceSize: 200 }, exactDeps(world));
    const b = await extendLookalike(seeds, { audienceSize: 200 }, exactDeps(world));
    expect(a.users.map((u) => u.userId)).toEqual(b.users.map((u) => u.userId));
  });

  it('returns fewer users when the population runs out, without failing', async () => {
    const small = makeWorld(10, 3, 0.05);
    const res = await extendLookalike(small.ids.slice(0, 5), { audienceSize: 1000 }, exactDeps(small));
    expect(res.users.length).toBe(small.ids.length - 5);
  });

  it('fails clearly when no seed is known, and stops when cancelled', async () => {
    await expect(extendLookalike(['x', 'y'], { audienceSize: 10 }, exactDeps(world))).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(extendLookalike([], { audienceSize: 10 }, exactDeps(world))).rejects.toBeInstanceOf(LookalikeError);
    const calls = { search: 0 };
    const deps = exactDeps(world, calls);
    let n = 0;
    deps.checkCancelled = () => {
      if (++n >= 3) throw new Error('gone');
    };
    await expect(extendLookalike(seeds, { audienceSize: 100 }, deps)).rejects.toThrow('gone');
    // Cancelled before the candidate phase: no centroid search ran.
    expect(calls.search).toBe(0);
  });
});

describe('building blocks', () => {
  it('k-means separates well-separated modes and is deterministic', () => {
    const w = makeWorld(50, 4, 0.05, 3);
    const ids = w.ids.filter((id) => w.cluster.get(id)! < 4);
    const x = new Float32Array(ids.length * D);
    ids.forEach((id, i) => x.set(unit(w.vecs.get(id)!), i * D));
    const a = sphericalKMeans(x, ids.length, D, 4, 1);
    const b = sphericalKMeans(x, ids.length, D, 4, 1);
    expect(Array.from(a.assignment)).toEqual(Array.from(b.assignment));
    // Every true mode maps to one cluster.
    for (let c = 0; c < 4; c++) {
      const labels = new Set(ids.map((id, i) => (w.cluster.get(id) === c ? a.assignment[i] : -1)).filter((l) => l !== -1));
      expect(labels.size).toBe(1);
    }
  });

  it('logistic regression fits a linearly separable problem; auc is tie-aware', () => {
    const r = mulberry32(5);
    const n = 400;
    const x = new Float32Array(n * 2);
    const y = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      y[i] = i % 2;
      x[i * 2] = (y[i] ? 1 : -1) + 0.5 * gauss(r);
      x[i * 2 + 1] = gauss(r);
    }
    const m = fitLogistic(x, y, n, 2);
    const s = Array.from({ length: n }, (_, i) => m.logit(x, i * 2));
    expect(auc(s, y)).toBeGreaterThan(0.95);
    expect(auc([1, 1, 1, 1], [0, 1, 0, 1])).toBe(0.5);
    expect(auc([0, 1, 2, 3], [0, 0, 1, 1])).toBe(1);
  });

  it("item-kNN member: Jaccard app weights, summed over the user's apps and divided by (number of apps)^0.3; seeds leave-one-out", () => {
    expect(KNN_USER_NORM).toBe(0.3);
    // Seeds keep {a, b} and {a, c}; 5 users keep a, 2 keep b, 2 keep c (exact counts, as the store gives).
    const p = seedProfile([['a', 'b'], ['a', 'c']], [], 10);
    p.users.set('a', 5).set('b', 2).set('c', 2);
    // Jaccard: a 2/(2+5-2) = 0.4, b and c 1/(2+2-1) = 1/3.
    expect(knnScore(p, ['a'], false)).toBeCloseTo(0.4, 12);
    // A heavy user with a and b among 8 apps: (0.4 + 1/3) / 8^0.3, now below the one-app user.
    const heavy = ['a', 'b', 'd', 'e', 'f', 'g', 'h', 'i'];
    expect(knnScore(p, heavy, false)).toBeCloseTo((0.4 + 1 / 3) / Math.pow(8, 0.3), 12);
    expect(knnScore(p, heavy, false)).toBeLessThan(knnScore(p, ['a'], false));
    // Without the division (userNorm 0) the heavy user ranked first: the plain sum.
    expect(knnScore({ ...p, userNorm: 0 }, heavy, false)).toBeCloseTo(0.4 + 1 / 3, 12);
    // Seed {a, b} scored without itself: a 1/(1+5-1-1) = 1/4, b has no other seed; / 2^0.3, times 2/1.
    expect(knnScore(p, ['a', 'b'], true)).toBeCloseTo(((1 / 4) / Math.pow(2, 0.3)) * 2, 12);
    // Duplicated apps count once; no apps, no score.
    expect(knnScore(p, ['a', 'a'], false)).toBeCloseTo(0.4, 12);
    expect(knnScore(p, [], false)).toBe(0);
    // The precomputed weights (what candidates are scored with) give the same numbers, bit for bit.
    const kw = knnWeights(p);
    for (const apps of [['a'], heavy, ['a', 'a'], [], ['z'], ['c', 'b', 'a']]) expect(knnScoreFrom(kw, p.userNorm, apps)).toBe(knnScore(p, apps, false));
    expect(knnScoreFrom(kw, 0, heavy)).toBe(knnScore({ ...p, userNorm: 0 }, heavy, false));
  });

  it('history member: apps users ever installed (uninstalled trials) find look-alikes the kept apps and vectors cannot; absent without such history', async () => {
    // 1,200 users, vectors and kept apps pure noise; group g (users 0-99) once tried, and
    // uninstalled, 3 of 6 apps t0-t5; everyone else 3 of 60 other apps.
    const r = mulberry32(5);
    const n = 1200;
    const ids = Array.from({ length: n }, (_, i) => `h${i}`);
    const inGroup = (i: number) => i < 100;
    const vecs = new Map(ids.map((id) => [id, Float32Array.from({ length: D }, () => gauss(r))]));
    const kept = new Map(ids.map((id) => [id, Array.from({ length: 8 }, () => `k${Math.floor(r() * 200)}`)]));
    const ever = new Map(
      ids.map((id, i) => [id, [...kept.get(id)!, ...Array.from({ length: 3 }, () => (inGroup(i) ? `t${Math.floor(r() * 6)}` : `o${Math.floor(r() * 60)}`))]]),
    );
    // A fresh population sampler per call (the sampler is a seeded stream).
    const deps = (withEver: boolean, sameAsKept = false): LookalikeDeps => ({
      ...exactDeps({ ids, vecs, cluster: new Map() }),
      allUsers: () => ids,
      populationSize: n,
      getApps: (us) => us.map((u) => kept.get(u)),
      ...(withEver ? { getEverApps: (us: string[]) => us.map((u) => (sameAsKept ? kept.get(u) : ever.get(u))) } : {}),
    });
    const seedIds = ids.slice(0, 50);
    const hidden = new Set(ids.slice(50, 100));
    const recall = (res: { users: Neighbor[] }) => res.users.slice(0, 50).filter((u) => hidden.has(u.userId)).length / 50;
    const withHistory = await extendLookalike(seedIds, { audienceSize: n - 50 }, deps(true));
    const without = await extendLookalike(seedIds, { audienceSize: n - 50 }, deps(false));
    const optedOut = await extendLookalike(seedIds, { audienceSize: n - 50, useHistory: false }, deps(true));
    expect(recall(withHistory)).toBeGreaterThan(0.8);
    expect(recall(without)).toBeLessThan(0.3);
    expect(optedOut.users).toEqual(without.users);
    // Lists that hold nothing beyond the kept apps add no member: the same audience as without.
    const noHistory = await extendLookalike(seedIds, { audienceSize: n - 50 }, deps(true, true));
    expect(noHistory.users).toEqual(without.users);
  });

  it('svd member: a logistic regression on the TF-IDF + SVD of the kept apps; stacked when the deps give the SVD, off with useSvd false', async () => {
    // 1,200 users, vectors pure noise. A community of 300 (0-299: the seeds 0-49, the hidden
    // look-alikes 50-99) keeps 4 of apps c0-c39, everyone else 4 of 200 other apps.
    const r = mulberry32(11);
    const n = 1200;
    const ids = Array.from({ length: n }, (_, i) => `s${i}`);
    const vecs = new Map(ids.map((id) => [id, Float32Array.from({ length: D }, () => gauss(r))]));
    const kept = new Map(ids.map((id, i) => [id, Array.from({ length: 4 }, () => (i < 300 ? `c${Math.floor(r() * 40)}` : `o${Math.floor(r() * 200)}`))]));
    let svdCalls = 0;
    const deps = (withSvd: boolean): LookalikeDeps => ({
      ...exactDeps({ ids, vecs, cluster: new Map() }),
      allUsers: () => ids,
      populationSize: n,
      getApps: (us) => us.map((u) => kept.get(u)),
      // As the serving backend gives it: fitted on every user of the feature.
      ...(withSvd ? { appSvd: (rank: number) => (svdCalls++, fitAppSvd(ids.map((u) => kept.get(u)), rank, 3)) } : {}),
    });
    const seedIds = ids.slice(0, 50);
    // AUC of the hidden look-alikes against the users outside the community, from the audience's order.
    const hiddenAuc = (res: { users: Neighbor[] }) => {
      const pos = new Map(res.users.map((u, k) => [u.userId, res.users.length - k]));
      let wins = 0;
      for (let h = 50; h < 100; h++) for (let o = 300; o < n; o++) wins += pos.get(ids[h]!)! > pos.get(ids[o]!)! ? 1 : 0;
      return wins / (50 * (n - 300));
    };
    const members = (res: { heldOut: { grid: { family: string }[] } }) => [...new Set(res.heldOut.grid.map((g) => g.family))].sort();
    const svdOnly = await extendLookalike(seedIds, { audienceSize: n - 50, families: ['svd'] }, deps(true));
    const vectorOnly = await extendLookalike(seedIds, { audienceSize: n - 50, families: ['vector'] }, deps(true));
    expect(svdCalls).toBe(2);
    expect(hiddenAuc(svdOnly)).toBeGreaterThan(0.95);
    expect(hiddenAuc(vectorOnly)).toBeLessThan(0.7);
    expect(members(await extendLookalike(seedIds, { audienceSize: n - 50 }, deps(true)))).toEqual(['activity', 'knn', 'svd', 'vector']);
    // Without the deps' SVD, or with useSvd false (the SVD is then not asked for), no such member.
    expect(members(await extendLookalike(seedIds, { audienceSize: n - 50 }, deps(false)))).toEqual(['activity', 'knn', 'vector']);
    expect(members(await extendLookalike(seedIds, { audienceSize: n - 50, useSvd: false }, deps(true)))).toEqual(['activity', 'knn', 'vector']);
    expect(svdCalls).toBe(3);
  });

  it('projectApps is the classical TF-IDF + SVD row (normalised), ignoring duplicates and unseen apps', () => {
    const r = mulberry32(4);
    const rows = Array.from({ length: 300 }, () => Array.from({ length: 1 + Math.floor(r() * 6) }, () => `a${Math.floor(r() * 40)}`));
    const m = fitAppSvd(rows, 8, 9);
    const col = (l: string[]) => [...new Set(l)].map((a) => m.column.get(a)!);
    const ref = normalizeRows(project(tfidfRows(rows.map(col), m.column.size, m.idf), m.svd), m.svd.k);
    const out = new Float32Array(m.svd.k);
    for (const i of [0, 17, 299]) {
      projectApps(m, [...rows[i]!, ...rows[i]!, 'never-seen'], out);
      for (let j = 0; j < m.svd.k; j++) expect(out[j]).toBeCloseTo(ref[i * m.svd.k + j]!, 5);
    }
    expect(Array.from(projectApps(m, ['never-seen'], out))).toEqual(new Array(m.svd.k).fill(0));
    expect(Array.from(projectApps(m, undefined, out))).toEqual(new Array(m.svd.k).fill(0));
  });

  it('the final calibration never turns the ranking upside down (a member whose seeds score below the population)', () => {
    // Layout with apps and no vector: dense columns [activity, item-kNN]. The seeds' item-kNN score
    // is on average below the population's (leave-one-out seeds that share little), so a free
    // calibration slope comes out negative and would rank the lowest-scoring users first.
    const r = mulberry32(3);
    const layout = { ...vectorLayout(0, 0), usesApps: true };
    const nPos = 12;
    const n = 600;
    const Xd = new Float32Array(n * 2);
    const y = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      y[i] = i < nPos ? 1 : 0;
      Xd[i * 2] = r();
      Xd[i * 2 + 1] = i < nPos ? 0.1 * r() : 0.5 * r();
    }
    const o = { folds: 4, grid: [0.03], iterations: 60, seed: 1, prevalence: 0.02, families: ['knn' as const] };
    const { scoring } = fitScoring(Xd, undefined, y, n, layout, o);
    // The member's own direction is kept: weight on the item-kNN column > 0, and the model's order
    // is the column's order.
    expect(scoring.model.weights[1]!).toBeGreaterThan(0);
    expect(scoring.model.weights[1]!).toBeLessThan(CALIBRATION_MIN_SLOPE * 10);
    const byModel = Array.from({ length: n }, (_, i) => i).sort((a, b) => rowLogit(scoring.model, Xd, undefined, b) - rowLogit(scoring.model, Xd, undefined, a) || a - b);
    const byColumn = Array.from({ length: n }, (_, i) => i).sort((a, b) => Xd[b * 2 + 1]! - Xd[a * 2 + 1]! || a - b);
    expect(byModel).toEqual(byColumn);
    // Where the seeds do score higher, the calibration is fitted freely (a steep slope).
    for (let i = 0; i < nPos; i++) Xd[i * 2 + 1] = 0.5 + 0.5 * r();
    const up = fitScoring(Xd, undefined, y, n, layout, o).scoring;
    expect(up.model.weights[1]!).toBeGreaterThan(1);
  });

  it('the stacking penalty is chosen by cross-validation: weak where one member only repeats another with noise, strong more often where few seeds meet alike members', () => {
    // Members as fitScoring stacks them: standardised out-of-fold scores, rows [n, F].
    const members = (seed: number, n: number, nPos: number, F: number, col: (t: number, normal: () => number, j: number) => number) => {
      const r = new Rng(seed);
      const normal = () => r.normal();
      const z = new Float32Array(n * F);
      const y = new Uint8Array(n);
      for (let i = 0; i < n; i++) {
        y[i] = i < nPos ? 1 : 0;
        const t = normal() + (y[i] ? 1.5 : 0);
        for (let j = 0; j < F; j++) z[i * F + j] = col(t, normal, j);
      }
      return { z, y };
    };
    let weak = 0;
    let strong = 0;
    for (let seed = 1; seed <= 10; seed++) {
      // Member 0 is the signal; member 1 the same signal plus as much noise. Its own strength is
      // large, its worth beside member 0 nil: a strong penalty weighs it by its own strength and
      // adds its noise, a weak one leaves it out.
      const a = members(seed, 3000, 300, 2, (t, normal, j) => (j === 0 ? t : t + 1.5 * normal()));
      const pickA = chooseStackPenalty(a.z, a.y, 3000, 2, 4, seed, [0.01, 1]);
      // The order of the grid does not decide.
      expect(chooseStackPenalty(a.z, a.y, 3000, 2, 4, seed, [1, 0.01])).toBe(pickA);
      if (pickA === 0.01) weak++;
      // Twelve seeds and ten alike members (the same signal, each with noise of its own): the best
      // stack weighs them equally, and a weak penalty fits the few seeds' noise instead. With so
      // few seeds the choice is noisy (the strong one was chosen for 19 of the seeds 1-20).
      const b = members(seed, 400, 12, 10, (t, normal) => t + 3 * normal());
      if (chooseStackPenalty(b.z, b.y, 400, 10, 4, seed, [0.01, 1]) === 1) strong++;
    }
    expect(weak).toBe(10);
    expect(strong).toBeGreaterThanOrEqual(6);
    // Members that say nothing tie at every penalty: the weaker one is kept, in any grid order.
    const flat = Uint8Array.from({ length: 8 }, (_, i) => (i % 2 === 0 ? 1 : 0));
    expect(chooseStackPenalty(new Float32Array(16), flat, 8, 2, 2, 1, [1, 0.1])).toBe(0.1);
    expect(chooseStackPenalty(new Float32Array(16), flat, 8, 2, 2, 1, [0.1, 1])).toBe(0.1);
    // One penalty: no choice is made.
    expect(chooseStackPenalty(new Float32Array(8), Uint8Array.of(1, 0, 1, 0), 4, 2, 2, 1, [0.5])).toBe(0.5);
    // fitScoring reports the chosen penalty when it stacks, NaN with a single member.
    const r = mulberry32(5);
    const layout = { ...vectorLayout(0, 0), usesApps: true };
    const n = 600;
    const Xd = Float32Array.from({ length: n * 2 }, (_, k) => r() + (Math.floor(k / 2) < 30 ? 0.5 : 0));
    const y = Uint8Array.from({ length: n }, (_, i) => (i < 30 ? 1 : 0));
    const o = { folds: 4, grid: [0.03], iterations: 60, seed: 1, prevalence: 0.05 };
    expect(STACK_L2_GRID).toContain(fitScoring(Xd, undefined, y, n, layout, { ...o, families: ['knn', 'activity'] }).estimate.stackL2);
    expect(fitScoring(Xd, undefined, y, n, layout, { ...o, families: ['knn', 'activity'], stackGrid: [0.2] }).estimate.stackL2).toBe(0.2);
    expect(fitScoring(Xd, undefined, y, n, layout, { ...o, families: ['knn'] }).estimate.stackL2).toBeNaN();
  });

  it('a penalty path is the same models as one fit per penalty (bit for bit), batched', () => {
    const r = mulberry32(11);
    for (const [n, p] of [[403, 37], [41, 5], [120, 1]] as const) {
      const x = Float32Array.from({ length: n * p }, () => r() * 2 - 1 + (r() < 0.1 ? 3 : 0));
      const y = Uint8Array.from({ length: n }, (_, i) => (x[i * p]! + r() > 0.7 ? 1 : 0));
      const grid = [0.003, 0.03, 0.3];
      const path = fitLogisticPath(x, y, n, p, grid, { iterations: 40 });
      expect(path).toHaveLength(3);
      grid.forEach((l2, g) => {
        const one = fitLogistic(x, y, n, p, { l2, iterations: 40 });
        expect(Array.from(path[g]!.weights)).toEqual(Array.from(one.weights));
        expect(path[g]!.bias).toBe(one.bias);
      });
      // The penalties do differ: a stronger one shrinks the weights.
      const size = (w: Float32Array) => Math.hypot(...w);
      expect(size(path[2]!.weights)).toBeLessThan(size(path[0]!.weights));
    }
    expect(fitLogisticPath(new Float32Array(4), Uint8Array.of(0, 1, 0, 1), 4, 1, [])).toEqual([]);
  });
});
