// `aetn stats`: the numbers that show whether a dataset looks like the paper's world — size,
// retention and activity distributions, the shape of real app usage (heavy-tailed apps per user, Zipf
// popularity and its long tail, near-universal apps, co-installation across category labels, trial
// installs, uninstalls and re-installs), burstiness, niche-category install rates in the held-out
// weeks, look-alike target prevalence and what preprocessing dropped. The same numbers come out of a
// raw or a prepared dataset, a generated world or a user's own logs, with or without events.
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
  p99: number;
  max: number;
}

/** The shape statistics of app usage ("real app-usage shape"); null where the data cannot tell. */
export interface ShapeStats {
  /** Users measured for the per-user statistics (all, or a deterministic ~20k-user sample). */
  sampledUsers: number;
  /** Regular apps (not flagged universal / pre-installed) of the catalog and the vocabulary, by number of holders. */
  popularity: { apps: number; withUsers: number; under20Share: number; under20Apps: number; top1pctShare: number; top10pctShare: number };
  /** Apps held by >= 50% of users, and the catalog's universal / pre-installed flags. */
  universal: { heldByHalf: number; flaggedUniversal: number; flaggedPreinstalled: number; heldByHalfIds: string[] };
  /** Of the 200 most over-represented app pairs (lift) among the top 500 apps, the share in different categories / genres. */
  coInstall: { pairs: number; crossCategory: number; crossGenre: number; meanLift: number } | null;
  /** From install/uninstall events (null in a retention-only dataset). */
  events: { users: number; installs: number; uninstallRate: number; trialShare: number; reinstallShare: number; usersWithUninstall: number } | null;
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
  shape: ShapeStats;
  /** Weeks the held-out file / labels cover. */
  labelWeeks: number;
  /** adopters: users with an install of the category in the held-out weeks; ratePerMillion: per million users per week. */
  niche: { category: string; adopters: number; ratePerMillion: number; configuredPerMillion: number | null }[];
  lookalike: { appId: string; adopters: number; prevalence: number }[];
  heldOutUsers: number;
  counts: Record<string, number>;
}

function dist(values: number[]): Dist {
  if (values.length === 0) return { n: 0, mean: 0, p10: 0, p50: 0, p90: 0, p99: 0, max: 0 };
  const v = Float64Array.from(values).sort();
  const q = (p: number): number => v[Math.min(v.length - 1, Math.floor(p * v.length))];
  return { n: v.length, mean: v.reduce((a, b) => a + b, 0) / v.length, p10: q(0.1), p50: q(0.5), p90: q(0.9), p99: q(0.99), max: v[v.length - 1] };
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

/** A deterministic user sample of bounded size: users whose hash falls under a threshold that halves whenever the sample overflows (independent of record order). */
class HashSample<T> {
  private limit = 1 << 30;
  readonly m = new Map<string, T>();
  constructor(private readonly cap = 20000) {}
  private key(u: string): number {
    return userHash(u) & ((1 << 30) - 1);
  }
  has(u: string): boolean {
    return this.key(u) < this.limit;
  }
  get(u: string): T | undefined {
    return this.m.get(u);
  }
  set(u: string, v: T): void {
    if (!this.has(u)) return;
    this.m.set(u, v);
    while (this.m.size > this.cap) {
      this.limit = Math.floor(this.limit / 2);
      for (const k of this.m.keys()) if (this.key(k) >= this.limit) this.m.delete(k);
    }
  }
}

const TRIAL_MS = 7 * DAY_MS;

/** Collects the shape statistics from per-user records; apps are catalog app ids. */
class ShapeAcc {
  readonly holders = new Map<string, number>();
  users = 0;
  readonly ret = new HashSample<string[]>();
  readonly evs = new HashSample<{ app: string; type: number; t: number }[]>();
  sawEvents = false;
  constructor(private readonly catalog: Map<string, { category: string; universal: boolean; preinstalled: boolean }>) {}

  /** One user's installed apps (each app once). */
  addRetention(userId: string, apps: string[]): void {
    this.users++;
    for (const a of apps) this.holders.set(a, (this.holders.get(a) ?? 0) + 1);
    const reg = apps.filter((a) => {
      const c = this.catalog.get(a);
      return c !== undefined && !c.universal && !c.preinstalled;
    });
    this.ret.set(userId, reg);
  }

  addEvent(userId: string, app: string, type: number, t: number): void {
    this.sawEvents = true;
    if (!this.evs.has(userId)) return;
    let l = this.evs.get(userId);
    if (!l) this.evs.set(userId, (l = []));
    l.push({ app, type, t });
  }

  result(): ShapeStats {
    const regular = [...this.catalog].filter(([, c]) => !c.universal && !c.preinstalled).map(([id]) => id);
    const counts = regular.map((id) => this.holders.get(id) ?? 0).sort((a, b) => b - a);
    const total = counts.reduce((a, b) => a + b, 0);
    const topShare = (f: number): number => (total ? counts.slice(0, Math.max(1, Math.round(f * counts.length))).reduce((a, b) => a + b, 0) / total : 0);
    const under20 = counts.filter((c) => c < 20).length;
    const half = [...this.holders].filter(([, n]) => n >= this.users / 2 && this.users > 0).map(([id]) => id).sort();
    const cat = [...this.catalog.values()];
    return {
      sampledUsers: this.ret.m.size,
      popularity: { apps: counts.length, withUsers: counts.filter((c) => c > 0).length, under20Apps: under20, under20Share: counts.length ? under20 / counts.length : 0, top1pctShare: topShare(0.01), top10pctShare: topShare(0.1) },
      universal: { heldByHalf: half.length, heldByHalfIds: half.slice(0, 20), flaggedUniversal: cat.filter((c) => c.universal).length, flaggedPreinstalled: cat.filter((c) => c.preinstalled).length },
      coInstall: this.coInstall(),
      events: this.sawEvents ? this.eventStats() : null,
    };
  }

  private coInstall(): ShapeStats['coInstall'] {
    const lists = [...this.ret.m.values()];
    const N = lists.length;
    if (N < 100) return null;
    const cnt = new Map<string, number>();
    for (const l of lists) for (const a of l) cnt.set(a, (cnt.get(a) ?? 0) + 1);
    const top = [...cnt].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, 500).map(([a]) => a);
    const idx = new Map(top.map((a, i) => [a, i]));
    const pair = new Map<number, number>();
    for (const l of lists) {
      const ix = l.map((a) => idx.get(a)).filter((i): i is number => i !== undefined).sort((a, b) => a - b);
      for (let i = 0; i < ix.length; i++) for (let j = i + 1; j < ix.length; j++) {
        const k = ix[i] * 512 + ix[j];
        pair.set(k, (pair.get(k) ?? 0) + 1);
      }
    }
    const minSupport = Math.max(5, Math.round(N / 2000));
    const lifts: [number, number, number][] = [];
    for (const [k, c] of pair) {
      if (c < minSupport) continue;
      const a = Math.floor(k / 512);
      const b = k % 512;
      lifts.push([(c * N) / (cnt.get(top[a])! * cnt.get(top[b])!), a, b]);
    }
    lifts.sort((x, y) => y[0] - x[0] || x[1] - y[1] || x[2] - y[2]);
    const best = lifts.slice(0, 200);
    if (best.length === 0) return null;
    const catOf = (i: number): string => this.catalog.get(top[i])!.category;
    const genre = (c: string): string => c.split('.')[0];
    return {
      pairs: best.length,
      crossCategory: best.filter(([, a, b]) => catOf(a) !== catOf(b)).length / best.length,
      crossGenre: best.filter(([, a, b]) => genre(catOf(a)) !== genre(catOf(b))).length / best.length,
      meanLift: best.reduce((s, [l]) => s + l, 0) / best.length,
    };
  }

  private eventStats(): ShapeStats['events'] {
    let installs = 0;
    let uninstalls = 0;
    let trials = 0;
    let reinstalls = 0;
    let withUn = 0;
    for (const l of this.evs.m.values()) {
      l.sort((a, b) => a.t - b.t || a.type - b.type);
      const lastInstall = new Map<string, number>();
      const gone = new Set<string>();
      let un = false;
      for (const e of l) {
        if (e.type === INSTALL) {
          installs++;
          if (gone.has(e.app)) reinstalls++;
          lastInstall.set(e.app, e.t);
        } else {
          uninstalls++;
          un = true;
          const ti = lastInstall.get(e.app);
          if (ti !== undefined && e.t - ti <= TRIAL_MS) trials++;
          lastInstall.delete(e.app);
          gone.add(e.app);
        }
      }
      if (un) withUn++;
    }
    const n = this.evs.m.size;
    return { users: n, installs, uninstallRate: installs ? uninstalls / installs : 0, trialShare: installs ? trials / installs : 0, reinstallShare: installs ? reinstalls / installs : 0, usersWithUninstall: n ? withUn / n : 0 };
  }
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
  const shape = new ShapeAcc(new Map(ds.catalog.apps.map((a) => [a.appId, a])));
  const idOf = ds.vocab.apps.map((a) => a.appId);
  for await (const ex of ds.examples()) {
    ret.push(ex.retention.length);
    shape.addRetention(ex.userId, Array.from(ex.retention, (i) => idOf[i]));
    for (let i = 0; i < ex.installs.length; i++) shape.addEvent(ex.userId, idOf[ex.installs[i]], INSTALL, ex.installTimes[i]);
    for (let i = 0; i < ex.uninstalls.length; i++) shape.addEvent(ex.userId, idOf[ex.uninstalls[i]], 2, ex.uninstallTimes[i]);
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
  for await (const r of ds.outOfVocab()) {
    for (const a of r.appIds) if (targetAdopters.has(a)) targetAdopters.set(a, targetAdopters.get(a)! + 1);
    for (const a of r.appIds) shape.holders.set(a, (shape.holders.get(a) ?? 0) + 1);
  }
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
    shape: shape.result(),
    labelWeeks: ds.labelWeeks,
    niche: truth.niche.map((n) => ({ category: n.name, adopters: nicheAdopters.get(n.name)!, ratePerMillion: (nicheAdopters.get(n.name)! / population / ds.labelWeeks) * 1e6, configuredPerMillion: n.rate })),
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
  const shape = new ShapeAcc(cat);
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
      shape.addRetention(r.row.userId, [...apps].map((a) => a.appId));
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
      if (a) shape.addEvent(e.userId, a.appId, e.type, e.timeMs);
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
    shape: shape.result(),
    labelWeeks: ds.heldOutWeeks,
    niche: truth.niche.map((n) => ({ category: n.name, adopters: nicheUsers.get(n.name)!.size, ratePerMillion: (nicheUsers.get(n.name)!.size / Math.max(1, users.size) / ds.heldOutWeeks) * 1e6, configuredPerMillion: n.rate })),
    lookalike: truth.targets.map((t) => ({ appId: t, adopters: targetUsers.get(t)!.size, prevalence: targetUsers.get(t)!.size / Math.max(1, users.size) })),
    heldOutUsers: heldUsers.size,
    counts: { 'records.unreadable-or-unknown': bad },
  };
}

const f1 = (x: number): string => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');
const f3 = (x: number): string => (Number.isFinite(x) ? x.toFixed(3) : 'n/a');

export function formatStats(s: DatasetStats): string {
  const L: string[] = [];
  const d = (x: Dist): string => `mean ${f1(x.mean)}  p10 ${x.p10}  p50 ${x.p50}  p90 ${x.p90}  p99 ${x.p99}  max ${x.max}`;
  const pct = (x: number): string => `${(100 * x).toFixed(1)}%`;
  L.push(`${s.kind} dataset ${s.dir} (reference date ${s.referenceDate})`);
  L.push(`  users                 ${s.users}`);
  L.push(`  apps (catalog)        ${s.catalogApps}${s.vocabApps !== null ? `   in vocabulary: ${s.vocabApps}` : ''}`);
  L.push(`  categories            ${s.categories}`);
  L.push(`  retention size        ${d(s.retentionSize)}${s.kind === 'raw' ? '   (all catalog apps)' : '   (vocabulary apps)'}`);
  L.push(`  events per user       ${d(s.eventsPerUser)}${s.kind === 'raw' ? '   (history)' : '   (kept, <= 2 x seqLen)'}`);
  L.push(`  popularity Zipf fit   exponent ${f3(s.zipf.exponent)}  r2 ${f3(s.zipf.r2)}  over ranks ${s.zipf.ranks[0]}..${s.zipf.ranks[1]}  top app share ${(100 * s.zipf.top1Share).toFixed(2)}%`);
  L.push(`  burstiness            ${s.shape.events ? `${(100 * s.burstShare).toFixed(1)}% of installs fall on a day with >= 3 installs by the same user` : 'n/a (no events)'}`);
  const sh = s.shape;
  const p = sh.popularity;
  L.push('  shape of app usage:');
  L.push(`    apps per user         p50 ${s.retentionSize.p50}  p90 ${s.retentionSize.p90}  p99 ${s.retentionSize.p99}  max ${s.retentionSize.max}  (p90/p50 ${(s.retentionSize.p90 / Math.max(1, s.retentionSize.p50)).toFixed(2)}, p99/p50 ${(s.retentionSize.p99 / Math.max(1, s.retentionSize.p50)).toFixed(2)})`);
  L.push(`    popularity tail       ${p.apps} regular apps, ${p.withUsers} with a user; ${pct(p.under20Share)} (${p.under20Apps}) have < 20 users; top 1% of apps hold ${pct(p.top1pctShare)} of installed entries, top 10% ${pct(p.top10pctShare)}${s.kind === 'prepared' ? '  (prepared: vocabulary retention + out-of-vocabulary holders)' : ''}`);
  L.push(`    near-universal        ${sh.universal.heldByHalf} apps held by >= 50% of users${s.kind === 'prepared' ? ' (in the vocabulary)' : ''}; catalog flags ${sh.universal.flaggedUniversal} universal, ${sh.universal.flaggedPreinstalled} pre-installed`);
  L.push(
    `    co-installation       ${sh.coInstall ? `of the ${sh.coInstall.pairs} highest-lift app pairs (top 500 apps, ${sh.sampledUsers} users), ${pct(sh.coInstall.crossCategory)} cross categories and ${pct(sh.coInstall.crossGenre)} cross genres (mean lift ${sh.coInstall.meanLift.toFixed(1)})` : 'n/a (too few users)'}`,
  );
  const ev = sh.events;
  L.push(
    `    installs/uninstalls   ${ev ? `uninstalls per install ${ev.uninstallRate.toFixed(3)}; trial installs (uninstalled within 7 days) ${pct(ev.trialShare)}; re-installs ${pct(ev.reinstallShare)} of installs; ${pct(ev.usersWithUninstall)} of users uninstalled something  (${s.kind === 'prepared' ? 'kept events of ' : ''}${ev.users} users)` : 'n/a (no install/uninstall events: a retention-only dataset)'}`,
  );
  L.push(`  held-out weeks        ${s.labelWeeks}: ${s.heldOutUsers} users installed something`);
  if (s.niche.length > 0) {
    L.push(`  niche categories (adopters: installers in the ${s.labelWeeks} held-out week${s.labelWeeks === 1 ? '' : 's'}; rates per million users per week):`);
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
