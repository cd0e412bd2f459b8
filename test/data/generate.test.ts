import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { generate, PAPER_NICHE_RATES } from '../../src/data/generate.js';
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
    for (const f of ['apps.csv', 'installed.csv', 'events.csv', 'next_week.csv', 'truth/users.csv']) expect(c[f]).not.toBe(a[f]);
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
});

describe('the generated world', () => {
  const N = 8000;
  const dir = tmp('aetn-world-');
  let world: { nicheCategories: { name: string; ratePerMillion: number; baseRatePerMillion: number }[]; lookalikeTargets: { appId: string }[]; nicheScale: number };
  beforeAll(async () => {
    await generate({ users: N, seed: 5, out: dir, progress: false });
    world = JSON.parse(readFileSync(join(dir, 'truth', 'world.json'), 'utf8'));
  }, 120_000);

  it('keeps the paper proportions of niche-category rates, scaled', () => {
    expect(world.nicheCategories.map((n) => n.baseRatePerMillion)).toEqual(PAPER_NICHE_RATES);
    expect(world.nicheCategories.map((n) => n.ratePerMillion)).toEqual(PAPER_NICHE_RATES.map((r) => r * world.nicheScale));
  });

  it('next-week niche adopters match the configured rates within sampling tolerance', () => {
    const catOf = new Map<string, string>();
    for (const [, pk, c] of csvRows(join(dir, 'apps.csv'))) for (const p of pk.split('|')) catOf.set(p, c);
    const adopters = world.nicheCategories.map(() => new Set<string>());
    for (const [, user, pkg, type] of csvRows(join(dir, 'next_week.csv'))) {
      const j = world.nicheCategories.findIndex((n) => n.name === catOf.get(pkg));
      if (j >= 0 && type === 'install') adopters[j].add(user);
    }
    world.nicheCategories.forEach((n, j) => {
      const expected = (n.ratePerMillion / 1e6) * N;
      const sd = Math.sqrt(expected * (1 - n.ratePerMillion / 1e6));
      // calibration error (a 20k pseudo-user sample) + binomial noise
      expect(Math.abs(adopters[j].size - expected)).toBeLessThan(4 * sd + 0.05 * expected);
    });
    // the per-user probabilities written to truth/users.csv average to the configured rates
    const ps = csvRows(join(dir, 'truth', 'users.csv')).map((r) => r[3].split('|').map(Number));
    world.nicheCategories.forEach((n, j) => {
      const mean = ps.reduce((a, p) => a + p[j], 0) / ps.length;
      const sd = Math.sqrt(ps.reduce((a, p) => a + (p[j] - mean) ** 2, 0) / ps.length);
      // both this world and the generator's 20k-user calibration sample are samples of the same population
      const tol = 4 * sd * Math.sqrt(1 / ps.length + 1 / 20000);
      expect(Math.abs(mean - n.ratePerMillion / 1e6)).toBeLessThan(tol);
      expect(tol / (n.ratePerMillion / 1e6)).toBeLessThan(0.25); // the check is not vacuous
    });
  });

  it('niche adoption is predictable from what the logs show (interest apps in retention)', () => {
    const catOf = new Map<string, string>();
    for (const [, pk, c] of csvRows(join(dir, 'apps.csv'))) for (const p of pk.split('|')) catOf.set(p, c);
    const ret = new Map(csvRows(join(dir, 'installed.csv')).map(([u, pk]) => [u, new Set(pk.split('|').map((p) => catOf.get(p)))]));
    for (const j of [0, 1, 3]) {
      const name = world.nicheCategories[j].name;
      const adopt = new Set<string>();
      for (const [, user, pkg, type] of csvRows(join(dir, 'next_week.csv'))) if (type === 'install' && catOf.get(pkg) === name) adopt.add(user);
      let withCat = 0, withCatAdopt = 0, without = 0, withoutAdopt = 0;
      for (const [u, cats] of ret) {
        if (cats.has(name)) {
          withCat++;
          if (adopt.has(u)) withCatAdopt++;
        } else {
          without++;
          if (adopt.has(u)) withoutAdopt++;
        }
      }
      const lift = withCatAdopt / withCat / (withoutAdopt / without);
      expect(lift).toBeGreaterThan(3);
    }
  });

  it('has a long-tailed Zipf popularity, bursts, and a ~10% look-alike target', async () => {
    const s = await computeStats(dir);
    expect(s.users).toBe(N);
    expect(s.catalogApps).toBeGreaterThan(5000);
    expect(s.zipf.exponent).toBeGreaterThan(0.5);
    expect(s.zipf.r2).toBeGreaterThan(0.9);
    expect(s.burstShare).toBeGreaterThan(0.2);
    expect(s.lookalike.length).toBe(1);
    expect(s.lookalike[0].prevalence).toBeGreaterThan(0.08);
    expect(s.lookalike[0].prevalence).toBeLessThan(0.12);
    const spec = JSON.parse(readFileSync(join(dir, 'dataset.json'), 'utf8'));
    expect(spec.excludeApps).toEqual([world.lookalikeTargets[0].appId]);
    // no history event after the reference date, no held-out event outside the following week
    const refEnd = Date.parse(`${spec.referenceDate}T00:00:00Z`) + 86_400_000;
    for (const [, , , , t] of csvRows(join(dir, 'events.csv'))) if (Number(t) >= refEnd) throw new Error(`future event ${t}`);
    for (const [, , , , t] of csvRows(join(dir, 'next_week.csv'))) expect(Number(t) >= refEnd && Number(t) < refEnd + 7 * 86_400_000).toBe(true);
  });
});
