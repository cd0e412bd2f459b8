// `aetn stats`: the numbers that show whether a dataset looks like the paper's world — size,
// retention and activity distributions, Zipf popularity, burstiness, next-week niche-category
// install rates, look-alike target prevalence and what preprocessing dropped.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';
import { userHash } from './hash.js';
import { openPrepared } from './prepared.js';
import { INSTALL, loadDatasetSpec, readRecords, type CatalogRow, type EventRow, type InstalledRow } from './raw.js';
import { DAY_MS } from './raw.js';

export interface Dist {
  n: number;
  mean: number;
  p10: number;
  p50: number;
  p90: number;
  max: number;
}

export interface DatasetStats {
  kind: 'raw' | 'prepared';
  dir: string;
  referenceDate: string;
  users: number;
  catalogApps: number;
  vocabApps: number | null;
  categories: number;
  retentionSize: Dist;
  eventsPerUser: Dist; // raw: all history events; prepared: kept installs + uninstalls (<= 2 x seqLen)
  zipf: { exponent: number; r2: number; ranks: [number, number]; top1Share: number };
  burstShare: number; // share of installs on a day on which the same user made >= 3 installs
  niche: { category: string; adopters: number; ratePerMillion: number; configuredPerMillion: number | null }[];
  lookalike: { appId: string; adopters: number; prevalence: number }[];
  heldOutUsers: number;
  counts: Record<string, number>;
}

function dist(values: number[]): Dist {
  if (values.length === 0) return { n: 0, mean: 0, p10: 0, p50: 0, p90: 0, max: 0 };
  const v = Float64Array.from(values).sort();
  const q = (p: number): number => v[Math.min(v.length - 1, Math.floor(p * v.length))];
  return { n: v.length, mean: v.reduce((a, b) => a + b, 0) / v.length, p10: q(0.1), p50: q(0.5), p90: q(0.9), max: v[v.length - 1] };
}

/** Least-squares fit of log(count) = c - s log(rank) over ranks [lo, hi]; s is the Zipf exponent. */
export function zipfFit(counts: number[], lo = 1, hi = 1000): { exponent: number; r2: number; ranks: [number, number]; top1Share: number } {
  const c = counts.filter((x) => x > 0).sort((a, b) => b - a);
  const total = c.reduce((a, b) => a + b, 0);
  const end = Math.min(hi, c.length);
  const xs: number[] = [];
  const ys: number[] = [];
  for (let r = lo; r <= end; r++) {
    xs.push(Math.log(r));
    ys.push(Math.log(c[r - 1]));
  }
  const n = xs.length;
  if (n < 3) return { exponent: NaN, r2: NaN, ranks: [lo, end], top1Share: total ? c[0] / total : 0 };
  const mx = xs.reduce((a, b) => a + b, 0) / n;
  const my = ys.reduce((a, b) => a + b, 0) / n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i] - mx) * (ys[i] - my);
    sxx += (xs[i] - mx) ** 2;
    syy += (ys[i] - my) ** 2;
  }
  const slope = sxy / sxx;
  return { exponent: -slope, r2: syy > 0 ? (sxy * sxy) / (sxx * syy) : 1, ranks: [lo, end], top1Share: c[0] / total };
}

function burst(dayCounts: Map<string, number>): [number, number] {
  let inBurst = 0;
  let all = 0;
  for (const n of dayCounts.values()) {
    all += n;
    if (n >= 3) inBurst += n;
  }
  return [inBurst, all];
}

interface Truthy {
  niche: { name: string; rate: number | null }[];
  targets: string[];
}

export async function computeStats(dir: string): Promise<DatasetStats> {
  if (existsSync(join(dir, 'manifest.json'))) return preparedStats(dir);
  if (existsSync(join(dir, 'dataset.json'))) return rawStats(dir);
  throw new UserError(`${dir} is neither a raw dataset (dataset.json) nor a prepared one (manifest.json)`);
}

async function preparedStats(dir: string): Promise<DatasetStats> {
  const ds = await openPrepared(dir);
  const m = ds.manifest;
  const ret: number[] = [];
  const evs: number[] = [];
  const appCount = new Array<number>(ds.vocab.apps.length).fill(0);
  let inBurst = 0;
  let allIns = 0;
  for await (const ex of ds.examples()) {
    ret.push(ex.retention.length);
    evs.push(ex.installs.length + ex.uninstalls.length);
    for (const a of ex.retention) appCount[a]++;
    const days = new Map<string, number>();
    for (const t of ex.installTimes) {
      const d = String(Math.floor(t / DAY_MS));
      days.set(d, (days.get(d) ?? 0) + 1);
    }
    const [b, a] = burst(days);
    inBurst += b;
    allIns += a;
  }
  const truth: Truthy = { niche: (m.truth?.nicheCategories ?? []).map((name, i) => ({ name, rate: m.truth!.nicheRatesPerMillion[i] ?? null })), targets: m.truth?.lookalikeTargetAppIds ?? [] };
  const nicheAdopters = new Map(truth.niche.map((n) => [n.name, 0]));
  let heldOutUsers = 0;
  for await (const l of ds.labels()) {
    heldOutUsers++;
    const cats = new Set(l.appIds.map((a) => ds.catalog.categoryOf(a)));
    for (const c of cats) if (c !== undefined && nicheAdopters.has(c)) nicheAdopters.set(c, nicheAdopters.get(c)! + 1);
  }
  const targetAdopters = new Map(truth.targets.map((t) => [t, 0]));
  for await (const r of ds.outOfVocab()) for (const a of r.appIds) if (targetAdopters.has(a)) targetAdopters.set(a, targetAdopters.get(a)! + 1);
  // population for rates: every user with a record (written + skipped-empty)
  const population = m.numUsers + (m.counts['users.empty-skipped'] ?? 0);
  return {
    kind: 'prepared',
    dir,
    referenceDate: m.referenceDate,
    users: population,
    catalogApps: ds.catalog.apps.length,
    vocabApps: m.numApps,
    categories: new Set(ds.catalog.apps.map((a) => a.category)).size,
    retentionSize: dist(ret),
    eventsPerUser: dist(evs),
    zipf: zipfFit(appCount),
    burstShare: allIns ? inBurst / allIns : 0,
    niche: truth.niche.map((n) => ({ category: n.name, adopters: nicheAdopters.get(n.name)!, ratePerMillion: (nicheAdopters.get(n.name)! / population) * 1e6, configuredPerMillion: n.rate })),
    lookalike: truth.targets.map((t) => ({ appId: t, adopters: targetAdopters.get(t)!, prevalence: targetAdopters.get(t)! / population })),
    heldOutUsers,
    counts: m.counts,
  };
}

async function rawStats(dir: string): Promise<DatasetStats> {
  const ds = loadDatasetSpec(dir);
  const cat = new Map<string, CatalogRow>();
  const byPkg = new Map<string, CatalogRow>();
  let bad = 0;
  for (const r of readRecords<CatalogRow>(ds.paths.catalog, 'catalog')) {
    if (!r.ok) {
      bad++;
      continue;
    }
    cat.set(r.row.appId, r.row);
    for (const p of r.row.packages) byPkg.set(p, r.row);
  }
  const appOf = (p: string): CatalogRow | undefined => byPkg.get(p) ?? cat.get(p);
  let truth: Truthy = { niche: [], targets: [] };
  if (ds.paths.truth) {
    const w = JSON.parse(readFileSync(ds.paths.truth, 'utf8')) as { nicheCategories?: { name: string; ratePerMillion: number }[]; lookalikeTargets?: { appId: string }[] };
    truth = { niche: (w.nicheCategories ?? []).map((n) => ({ name: n.name, rate: n.ratePerMillion })), targets: (w.lookalikeTargets ?? []).map((t) => t.appId) };
  } else if (ds.spec.excludeApps) truth.targets = ds.spec.excludeApps;
  const targetSet = new Set(truth.targets);
  const users = new Set<string>();
  const targetUsers = new Map(truth.targets.map((t) => [t, new Set<string>()]));
  const ret: number[] = [];
  const appCount = new Map<string, number>();
  if (ds.paths.installed) {
    for (const r of readRecords<InstalledRow>(ds.paths.installed, 'installed')) {
      if (!r.ok) {
        bad++;
        continue;
      }
      users.add(r.row.userId);
      const apps = new Set<CatalogRow>();
      for (const p of r.row.packages) {
        const a = appOf(p);
        if (a) apps.add(a);
        else bad++;
      }
      ret.push(apps.size);
      for (const a of apps) {
        if (!a.universal && !a.preinstalled) appCount.set(a.appId, (appCount.get(a.appId) ?? 0) + 1);
        if (targetSet.has(a.appId)) targetUsers.get(a.appId)!.add(r.row.userId);
      }
    }
  }
  const evPerUser = new Map<string, number>();
  const dayCounts = new Map<string, number>();
  // burstiness needs (user, day) counts: on large datasets measure it on a deterministic ~20k-user sample
  const every = Math.max(1, Math.floor(users.size / 20000));
  if (ds.paths.events) {
    for (const r of readRecords<EventRow>(ds.paths.events, 'events')) {
      if (!r.ok) {
        bad++;
        continue;
      }
      const e = r.row;
      users.add(e.userId);
      evPerUser.set(e.userId, (evPerUser.get(e.userId) ?? 0) + 1);
      const a = appOf(e.pkg);
      if (e.type === INSTALL) {
        if (every === 1 || userHash(e.userId) % every === 0) {
          const k = `${e.userId}\u0001${Math.floor(e.timeMs / DAY_MS)}`;
          dayCounts.set(k, (dayCounts.get(k) ?? 0) + 1);
        }
        if (a && targetSet.has(a.appId)) targetUsers.get(a.appId)!.add(e.userId);
      }
    }
  }
  const [inBurst, allIns] = burst(dayCounts);
  const nicheUsers = new Map(truth.niche.map((n) => [n.name, new Set<string>()]));
  const heldUsers = new Set<string>();
  if (ds.paths.heldOut) {
    for (const r of readRecords<EventRow>(ds.paths.heldOut, 'events')) {
      if (!r.ok || r.row.type !== INSTALL) continue;
      heldUsers.add(r.row.userId);
      const a = appOf(r.row.pkg);
      if (a) nicheUsers.get(a.category)?.add(r.row.userId);
    }
  }
  const evs = [...users].map((u) => evPerUser.get(u) ?? 0);
  return {
    kind: 'raw',
    dir,
    referenceDate: ds.spec.referenceDate,
    users: users.size,
    catalogApps: cat.size,
    vocabApps: null,
    categories: new Set([...cat.values()].map((a) => a.category)).size,
    retentionSize: dist(ret),
    eventsPerUser: dist(evs),
    zipf: zipfFit([...appCount.values()]),
    burstShare: allIns ? inBurst / allIns : 0,
    niche: truth.niche.map((n) => ({ category: n.name, adopters: nicheUsers.get(n.name)!.size, ratePerMillion: (nicheUsers.get(n.name)!.size / Math.max(1, users.size)) * 1e6, configuredPerMillion: n.rate })),
    lookalike: truth.targets.map((t) => ({ appId: t, adopters: targetUsers.get(t)!.size, prevalence: targetUsers.get(t)!.size / Math.max(1, users.size) })),
    heldOutUsers: heldUsers.size,
    counts: { 'records.unreadable-or-unknown': bad },
  };
}

const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');
const f3 = (x: number): string => (Number.isFinite(x) ? x.toFixed(3) : 'n/a');

export function formatStats(s: DatasetStats): string {
  const L: string[] = [];
  const d = (x: Dist): string => `mean ${f1(x.mean)}  p10 ${x.p10}  p50 ${x.p50}  p90 ${x.p90}  max ${x.max}`;
  L.push(`${s.kind} dataset ${s.dir} (reference date ${s.referenceDate})`);
  L.push(`  users                 ${s.users}`);
  L.push(`  apps (catalog)        ${s.catalogApps}${s.vocabApps !== null ? `   in vocabulary: ${s.vocabApps}` : ''}`);
  L.push(`  categories            ${s.categories}`);
  L.push(`  retention size        ${d(s.retentionSize)}${s.kind === 'raw' ? '   (all catalog apps)' : '   (vocabulary apps)'}`);
  L.push(`  events per user       ${d(s.eventsPerUser)}${s.kind === 'raw' ? '   (history)' : '   (kept, <= 2 x seqLen)'}`);
  L.push(`  popularity Zipf fit   exponent ${f3(s.zipf.exponent)}  r2 ${f3(s.zipf.r2)}  over ranks ${s.zipf.ranks[0]}..${s.zipf.ranks[1]}  top app share ${(100 * s.zipf.top1Share).toFixed(2)}%`);
  L.push(`  burstiness            ${(100 * s.burstShare).toFixed(1)}% of installs fall on a day with >= 3 installs by the same user`);
  L.push(`  held-out week         ${s.heldOutUsers} users installed something`);
  if (s.niche.length > 0) {
    L.push('  niche categories (held-out week installers per million users):');
    L.push(`    ${'category'.padEnd(22)}${'adopters'.padStart(10)}${'measured/M'.padStart(13)}${'configured/M'.padStart(14)}${'ratio'.padStart(8)}`);
    for (const n of s.niche)
      L.push(`    ${n.category.padEnd(22)}${String(n.adopters).padStart(10)}${n.ratePerMillion.toFixed(0).padStart(13)}${(n.configuredPerMillion ?? NaN).toFixed(0).padStart(14)}${(n.configuredPerMillion ? n.ratePerMillion / n.configuredPerMillion : NaN).toFixed(2).padStart(8)}`);
  }
  for (const t of s.lookalike) L.push(`  look-alike target     ${t.appId}: ${t.adopters} adopters (${(100 * t.prevalence).toFixed(2)}% of users)`);
  const keys = Object.keys(s.counts);
  if (keys.length > 0) {
    L.push('  counts:');
    for (const k of keys) L.push(`    ${k.padEnd(36)}${s.counts[k]}`);
  }
  return `${L.join('\n')}\n`;
}
