import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { generate, PAPER_NICHE_RATES, RELATED } from '../../src/data/generate.js';
import { prepare } from '../../src/data/prepare.js';
import { openPrepared } from '../../src/data/prepared.js';
import { computeStats } from '../../src/data/stats.js';
import { tmp } from './helpers.js';

function digest(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const f of readdirSync(d).sort()) {
      const p = join(d, f);
      if (statSync(p).isDirectory()) walk(p);
      else out[relative(dir, p)] = createHash('sha256').update(readFileSync(p)).digest('hex');
    }
  };
  walk(dir);
  return out;
}

function csvRows(path: string): string[][] {
  return readFileSync(path, 'utf8').trim().split('\n').slice(1).map((l) => l.split(','));
}

describe('generator determinism', () => {
  it('same seed writes identical bytes (any thread count), a different seed differs', async () => {
    const dir = tmp('aetn-gen-');
    await generate({ users: 1000, seed: 11, out: join(dir, 'a'), progress: false });
    // the same world written by worker threads (2 threads) must be byte-identical
    await generate({ users: 1000, seed: 11, out: join(dir, 'b'), progress: false, workers: 2 });
    await generate({ users: 1000, seed: 12, out: join(dir, 'c'), progress: false });
    const a = digest(join(dir, 'a'));
    const b = digest(join(dir, 'b'));
    const c = digest(join(dir, 'c'));
    expect(Object.keys(a)).toContain('events.csv');
    expect(Object.keys(a)).toContain('truth/world.json');
    expect(b).toEqual(a);
    for (const f of ['apps.csv', 'installed.csv', 'events.csv', 'held_out.csv', 'truth/users.csv']) expect(c[f]).not.toBe(a[f]);
  });

  it('writes NDJSON with the same content as CSV', async () => {
    const dir = tmp('aetn-gen-');
    await generate({ users: 200, seed: 3, out: join(dir, 'csv'), progress: false });
    await generate({ users: 200, seed: 3, out: join(dir, 'nd'), format: 'ndjson', progress: false });
    const ev = csvRows(join(dir, 'csv', 'events.csv'));
    const nd = readFileSync(join(dir, 'nd', 'events.ndjson'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(nd.length).toBe(ev.length);
    expect(nd[5]).toEqual({ event_id: ev[5][0], user_id: ev[5][1], package: ev[5][2], type: ev[5][3], timestamp: Number(ev[5][4]) });
  });

  it('a retention-only world (events: false) is the same world without its history, identical across threads, and prepare accepts it', async () => {
    const dir = tmp('aetn-gen-');
    await generate({ users: 1000, seed: 11, out: join(dir, 'full'), progress: false });
    await generate({ users: 1000, seed: 11, out: join(dir, 'r1'), progress: false, events: false });
    await generate({ users: 1000, seed: 11, out: join(dir, 'r2'), progress: false, events: false, workers: 2 });
    const full = digest(join(dir, 'full'));
    const r1 = digest(join(dir, 'r1'));
    expect(digest(join(dir, 'r2'))).toEqual(r1);
    expect(Object.keys(r1)).not.toContain('events.csv');
    expect(readdirSync(join(dir, 'r1')).filter((f) => f.startsWith('.'))).toEqual([]);
    for (const f of ['apps.csv', 'installed.csv', 'held_out.csv', 'truth/users.csv']) expect(r1[f]).toBe(full[f]);
    const spec = JSON.parse(readFileSync(join(dir, 'r1', 'dataset.json'), 'utf8'));
    expect(spec.events).toBeUndefined();
    const r = await prepare({ input: join(dir, 'r1'), out: join(dir, 'p1'), progress: false, shards: 2 });
    expect(r.rejected).toBe(0);
    expect(r.manifest.counts['events.valid'] ?? 0).toBe(0);
    expect(r.manifest.counts['kept.installs'] ?? 0).toBe(0);
    expect(r.manifest.numUsers).toBe(1000);
    const s = await computeStats(join(dir, 'r1'));
    expect(s.shape.events).toBeNull();
    expect((await computeStats(join(dir, 'p1'))).shape.events).toBeNull();
  }, 120_000);

  it('--apps-per-user and --apps-per-user-spread set the median and the tail of apps per user; bad values are refused', async () => {
    const dir = tmp('aetn-gen-');
    const shapeOf = async (name: string, o: { appsPerUser?: number; appsPerUserSpread?: number }) => {
      await generate({ users: 2000, seed: 3, out: join(dir, name), progress: false, events: false, ...o });
      return (await computeStats(join(dir, name))).retentionSize;
    };
    const base = await shapeOf('base', {});
    const wide = await shapeOf('wide', { appsPerUserSpread: 1.5 });
    const big = await shapeOf('big', { appsPerUser: 60 });
    // the same median (plus the fixed apps), a heavier tail
    expect(Math.abs(wide.p50 - base.p50)).toBeLessThan(0.15 * base.p50);
    expect(wide.p90 / wide.p50).toBeGreaterThan(1.5 * (base.p90 / base.p50));
    // three times the median of regular apps: the kept apps grow by well over half
    expect(big.p50).toBeGreaterThan(1.6 * base.p50);
    for (const bad of [{ appsPerUser: 1 }, { appsPerUser: 401 }, { appsPerUserSpread: -0.1 }, { appsPerUserSpread: 2.5 }, { appsPerUser: Number.NaN }])
      await expect(generate({ users: 10, seed: 1, out: join(dir, 'bad'), progress: false, ...bad })).rejects.toThrow(/--apps-per-user/);
  }, 120_000);

  it('labels cover all held-out weeks: prepare takes every one of them and rejects events beyond', async () => {
    const dir = tmp('aetn-gen-');
    await generate({ users: 600, seed: 2, out: join(dir, 'raw'), progress: false, labelWeeks: 3 });
    const spec = JSON.parse(readFileSync(join(dir, 'raw', 'dataset.json'), 'utf8'));
    expect(spec.heldOutWeeks).toBe(3);
    const refEnd = Date.parse(`${spec.referenceDate}T00:00:00Z`) + 86_400_000;
    const rows = csvRows(join(dir, 'raw', spec.heldOut));
    const installers = new Set(rows.filter((r) => r[3] === 'install').map((r) => r[1]));
    const late = rows.filter((r) => r[3] === 'install' && Number(r[4]) >= refEnd + 14 * 86_400_000);
    expect(late.length).toBeGreaterThan(20);
    for (const r of rows) expect(Number(r[4]) >= refEnd && Number(r[4]) < refEnd + 21 * 86_400_000).toBe(true);
    const p = await prepare({ input: join(dir, 'raw'), out: join(dir, 'p'), progress: false, shards: 2 });
    expect(p.rejected).toBe(0);
    expect(p.manifest.labelWeeks).toBe(3);
    expect(p.manifest.labelUsers).toBe(installers.size);
    const ds = await openPrepared(join(dir, 'p'));
    expect(ds.labelWeeks).toBe(3);
    const labelled = new Map<string, string[]>();
    for await (const l of ds.labels()) labelled.set(l.userId, l.appIds);
    const catalog = new Map(csvRows(join(dir, 'raw', 'apps.csv')).flatMap(([id, pk]) => pk.split('|').map((x) => [x, id] as const)));
    for (const r of late) expect(labelled.get(r[1])).toContain(catalog.get(r[2]));
    // the same file declared as one week: the later weeks are rejected, with their reason
    const one = { ...spec, heldOutWeeks: 1 };
    const { writeFileSync } = await import('node:fs');
    writeFileSync(join(dir, 'raw', 'dataset.json'), JSON.stringify(one));
    const q = await prepare({ input: join(dir, 'raw'), out: join(dir, 'q'), progress: false, shards: 2 });
    expect(q.manifest.labelWeeks).toBe(1);
    expect(q.manifest.counts['rejected.outside-held-out-week']).toBe(rows.filter((r) => Number(r[4]) >= refEnd + 7 * 86_400_000).length);
  }, 120_000);
});

interface WorldJson {
  sequenceSignal: number;
  labelWeeks: number;
  nicheScale: number;
  nicheCategories: { name: string; ratePerMillion: number; baseRatePerMillion: number; windowPerMillion: number; relatedCategories: string[]; measured: { inMarket: number; adopters: number; byIntent: number; byInterest: number } }[];
  lookalikeTargets: { appId: string }[];
}

/** Reads a generated world back: categories of packages, adopters per niche category, recent exploration per user. */
function readWorld(dir: string) {
  const world: WorldJson = JSON.parse(readFileSync(join(dir, 'truth', 'world.json'), 'utf8'));
  const spec = JSON.parse(readFileSync(join(dir, 'dataset.json'), 'utf8'));
  const refEnd = Date.parse(`${spec.referenceDate}T00:00:00Z`) + 86_400_000;
  const catOf = new Map<string, string>();
  for (const [, pk, c] of csvRows(join(dir, 'apps.csv'))) for (const p of pk.split('|')) catOf.set(p, c);
  const adopters = world.nicheCategories.map(() => new Set<string>());
  for (const [, user, pkg, type] of csvRows(join(dir, spec.heldOut))) {
    const j = world.nicheCategories.findIndex((n) => n.name === catOf.get(pkg));
    if (j >= 0 && type === 'install') adopters[j].add(user);
  }
  // users who installed AND uninstalled an app of the niche category or a related one in the last 28 days
  const recent = world.nicheCategories.map(() => new Set<string>());
  const cats = world.nicheCategories.map((n) => new Set([n.name, ...n.relatedCategories]));
  const seen = new Map<string, Set<string>>();
  for (const [, user, pkg, type, t] of csvRows(join(dir, 'events.csv'))) {
    if (Number(t) < refEnd - 28 * 86_400_000) continue;
    const c = catOf.get(pkg)!;
    const k = `${user} ${pkg}`;
    if (type === 'install') seen.set(k, new Set([c]));
    else if (seen.has(k)) cats.forEach((s, j) => s.has(c) && recent[j].add(user));
  }
  const users = csvRows(join(dir, 'truth', 'users.csv'));
  return { world, spec, refEnd, catOf, adopters, recent, users };
}

describe('the generated world', () => {
  const N = 8000;
  const SCALE = 20; // 20x the paper's rates so that an 8k world has enough adopters to test
  const dir = tmp('aetn-world-');
  const ctl = tmp('aetn-world-ctl-');
  let W: ReturnType<typeof readWorld>;
  let C: ReturnType<typeof readWorld>;
  beforeAll(async () => {
    await generate({ users: N, seed: 5, out: dir, nicheScale: SCALE, progress: false });
    await generate({ users: N, seed: 5, out: ctl, nicheScale: SCALE, sequenceSignal: 0, progress: false });
    W = readWorld(dir);
    C = readWorld(ctl);
  }, 120_000);

  it('keeps the paper proportions of weekly niche-category rates, scaled; defaults: signal 0.6, 4 label weeks', () => {
    expect(W.world.sequenceSignal).toBe(0.6);
    expect(W.world.labelWeeks).toBe(4);
    expect(W.world.nicheCategories.map((n) => n.baseRatePerMillion)).toEqual(PAPER_NICHE_RATES);
    expect(W.world.nicheCategories.map((n) => n.ratePerMillion)).toEqual(PAPER_NICHE_RATES.map((r) => r * SCALE));
    W.world.nicheCategories.forEach((n) => expect(n.windowPerMillion).toBeCloseTo((1 - (1 - n.ratePerMillion / 1e6) ** 4) * 1e6, 0));
  });

  it('adopters in the label weeks match the configured rates within sampling tolerance, at both settings', () => {
    for (const X of [W, C]) {
      X.world.nicheCategories.forEach((n, j) => {
        const p = n.windowPerMillion / 1e6;
        const expected = p * N;
        const sd = Math.sqrt(expected * (1 - p));
        // calibration error (a 20k pseudo-user sample) + binomial noise
        expect(Math.abs(X.adopters[j].size - expected)).toBeLessThan(4 * sd + 0.06 * expected);
        expect(X.adopters[j].size).toBe(n.measured.adopters);
      });
      // the per-user probabilities written to truth/users.csv average to the window rates
      const ps = X.users.map((r) => r[3].split('|').map(Number));
      X.world.nicheCategories.forEach((n, j) => {
        if (j === 2) return; // health.pregnancy: ~19 in-market users at this size, too few for a mean
        const mean = ps.reduce((a, q) => a + q[j], 0) / ps.length;
        const sd = Math.sqrt(ps.reduce((a, q) => a + (q[j] - mean) ** 2, 0) / ps.length);
        const tol = 4 * sd * Math.sqrt(1 / ps.length + 1 / 20000) + 0.03 * (n.windowPerMillion / 1e6);
        expect(Math.abs(mean - n.windowPerMillion / 1e6)).toBeLessThan(tol);
      });
    }
  });

  it('the truth records who was in market and why; about --sequence-signal of the adopters are in-market users', () => {
    const all = W.world.nicheCategories.reduce((a, n) => a + n.measured.adopters, 0);
    const intent = W.world.nicheCategories.reduce((a, n) => a + n.measured.byIntent, 0);
    expect(intent / all).toBeGreaterThan(0.5);
    expect(intent / all).toBeLessThan(0.7);
    expect(C.world.nicheCategories.every((n) => n.measured.byIntent === 0 && n.measured.inMarket === 0)).toBe(true);
    // users.csv: in_market "category:kind:Nd", niche_adopted "category:intent|interest"
    const inMarket = W.users.filter((r) => r[4] !== '');
    expect(inMarket.reduce((a, r) => a + r[4].split('|').length, 0)).toBe(W.world.nicheCategories.reduce((a, n) => a + n.measured.inMarket, 0));
    for (const r of inMarket) for (const x of r[4].split('|')) expect(x).toMatch(/^[a-z_]+\.[a-z_]+:(competitor-trial|related-burst|both):([1-9]|1\d|2[0-8])d$/);
    const adoptedRows = W.users.filter((r) => r[5] !== '').flatMap((r) => r[5].split('|').map((x) => [r[0], ...x.split(':')]));
    expect(adoptedRows.length).toBe(all);
    for (const [u, cat, why] of adoptedRows) {
      expect(W.adopters[W.world.nicheCategories.findIndex((n) => n.name === cat)].has(u)).toBe(true);
      expect(['intent', 'interest']).toContain(why);
    }
    // an in-market user always shows the planted behaviour in the last 4 weeks of history
    let shown = 0;
    let total = 0;
    for (const r of inMarket) for (const x of r[4].split('|')) {
      const j = W.world.nicheCategories.findIndex((n) => n.name === x.split(':')[0]);
      total++;
      if (W.recent[j].has(r[0])) shown++;
    }
    expect(shown / total).toBeGreaterThan(0.85); // the rest kept every app they tried
  });

  it('with sequence signal, recent exploration predicts adoption; at 0 (control) it does not, and retention predicts it', () => {
    const lift = (X: ReturnType<typeof readWorld>, j: number): number => {
      let a = 0, na = 0, b = 0, nb = 0;
      for (const [u] of X.users) {
        if (X.recent[j].has(u)) (na++, X.adopters[j].has(u) && a++);
        else (nb++, X.adopters[j].has(u) && b++);
      }
      return a / na / (b / nb);
    };
    for (const j of [0, 1, 3]) {
      expect(lift(W, j)).toBeGreaterThan(8);
      expect(lift(C, j)).toBeLessThan(4);
    }
    // retention: users holding an app of the category adopt more often, much more so in the control
    const retLift = (X: ReturnType<typeof readWorld>, j: number): number => {
      const name = X.world.nicheCategories[j].name;
      const ret = new Map(csvRows(join(X === W ? dir : ctl, 'installed.csv')).map(([u, pk]) => [u, pk.split('|').some((p) => X.catOf.get(p) === name)]));
      let a = 0, na = 0, b = 0, nb = 0;
      for (const [u, has] of ret) {
        if (has) (na++, X.adopters[j].has(u) && a++);
        else (nb++, X.adopters[j].has(u) && b++);
      }
      return a / na / (b / nb);
    };
    for (const j of [0, 1, 3]) {
      expect(retLift(C, j)).toBeGreaterThan(3);
      expect(retLift(C, j)).toBeGreaterThan(retLift(W, j));
    }
  });

  it('has the shape of real app usage (aetn stats): heavy tails, long-tailed popularity, universal apps, cross-category co-installation, trials and re-installs', async () => {
    const s = await computeStats(dir);
    expect(s.users).toBe(N);
    expect(s.labelWeeks).toBe(4);
    expect(s.catalogApps).toBeGreaterThan(5000);
    expect(s.zipf.exponent).toBeGreaterThan(0.5);
    expect(s.zipf.r2).toBeGreaterThan(0.9);
    expect(s.burstShare).toBeGreaterThan(0.2);
    expect(s.retentionSize.p99 / s.retentionSize.p50).toBeGreaterThan(2.5);
    expect(s.shape.popularity.under20Share).toBeGreaterThan(0.5);
    expect(s.shape.popularity.top10pctShare).toBeGreaterThan(0.5);
    expect(s.shape.universal.heldByHalf).toBeGreaterThanOrEqual(10);
    expect(s.shape.coInstall!.crossCategory).toBeGreaterThan(0.5);
    expect(s.shape.events!.trialShare).toBeGreaterThan(0.1);
    expect(s.shape.events!.reinstallShare).toBeGreaterThan(0.01);
    expect(s.lookalike.length).toBe(1);
    expect(s.lookalike[0].prevalence).toBeGreaterThan(0.08);
    expect(s.lookalike[0].prevalence).toBeLessThan(0.12);
    expect(W.spec.excludeApps).toEqual([W.world.lookalikeTargets[0].appId]);
    // no history event after the reference date, no held-out event outside the label weeks
    for (const [, , , , t] of csvRows(join(dir, 'events.csv'))) if (Number(t) >= W.refEnd) throw new Error(`future event ${t}`);
    for (const [, , , , t] of csvRows(join(dir, 'held_out.csv'))) expect(Number(t) >= W.refEnd && Number(t) < W.refEnd + 28 * 86_400_000).toBe(true);
    expect(existsSync(join(dir, 'next_week.csv'))).toBe(false);
    expect(Object.keys(RELATED)).toEqual(W.world.nicheCategories.map((n) => n.name));
  });
});
