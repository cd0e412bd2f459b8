// A synthetic app world in the raw input format. No public data has the shape the paper relies on,
// so this plants it with ground truth kept: Zipf app popularity with a long tail over fine-grained
// categories; heavy-tailed apps per user; latent communities (a sparse mixture per user), each with
// category interests and a set of signature apps drawn across genres, so co-installation cuts across
// category labels; bursts of installs in one day, trial installs uninstalled within days, re-installs;
// near-universal and pre-installed apps; four niche categories adopted in the held-out weeks at the
// paper's rates (600, 400, 25, 300 per million per week, times --niche-scale), a share
// (--sequence-signal) of them by users who are "in market" -- visible only in their recent
// install/uninstall sequence -- and the rest by long-term interest; and a look-alike target app whose
// adopters come from the community structure, kept out of the vocabulary by prepare.
// Every user has its own PRNG stream seeded by (seed, user index): same seed -> identical bytes.
import { closeSync, mkdirSync, existsSync, openSync, readdirSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { spawnWorker } from '../util/worker.js';
import { UserError } from '../util/errors.js';
import { Progress } from '../util/progress.js';
import { intStr, LineWriter } from './lines.js';
import { DAY_MS, RAW_FORMAT, parseDate, csvField } from './raw.js';
import { Sfc32 } from '../util/random.js';

export const PAPER_NICHE_RATES = [600, 400, 25, 300];
export const DEFAULT_NICHE = ['game.mahjong', 'finance.lottery', 'health.pregnancy', 'auto.used_cars'];
export const TARGET_CATEGORY = 'lifestyle.astrology';
export const DEFAULT_SEQUENCE_SIGNAL = 0.6;
export const DEFAULT_LABEL_WEEKS = 4;
export const DEFAULT_ZIPF = 1.1;
/** Regular apps per user: lognormal with this median and this standard deviation of its log. */
export const DEFAULT_APPS_PER_USER = 20;
export const DEFAULT_APPS_PER_USER_SPREAD = 0.75;

const TAXONOMY: Record<string, string[]> = {
  game: ['puzzle', 'casual', 'rpg', 'moba', 'shooter', 'strategy', 'card', 'mahjong', 'racing', 'sports', 'simulation', 'idle', 'word', 'board'],
  social: ['chat', 'community', 'dating', 'forum', 'livestream'],
  video: ['streaming', 'short', 'anime', 'editor', 'tv'],
  music: ['streaming', 'karaoke', 'podcast', 'instrument'],
  shopping: ['marketplace', 'secondhand', 'fashion', 'grocery', 'deals', 'luxury'],
  finance: ['banking', 'stocks', 'lottery', 'loans', 'insurance', 'crypto', 'payments'],
  education: ['language', 'k12', 'exam_prep', 'coding', 'kids', 'dictionary'],
  health: ['fitness', 'pregnancy', 'period', 'diet', 'medical', 'sleep', 'meditation'],
  travel: ['maps', 'hotels', 'flights', 'ride_hailing', 'trains'],
  news: ['general', 'sports', 'finance', 'tech', 'local'],
  reading: ['novels', 'comics', 'audiobooks', 'magazines'],
  photo: ['camera', 'editor', 'beauty', 'collage'],
  tools: ['browser', 'cleaner', 'vpn', 'keyboard', 'launcher', 'file_manager', 'calculator', 'weather'],
  lifestyle: ['food_delivery', 'recipes', 'home', 'pets', 'astrology', 'wedding'],
  auto: ['car_rental', 'used_cars', 'parking', 'ev_charging'],
  business: ['office', 'email', 'crm', 'job_search'],
  parenting: ['baby_care', 'school'],
  sports: ['football', 'basketball', 'running', 'fishing'],
};

/** Categories whose recent exploration precedes adoption of each niche category (in-market intent). */
export const RELATED: Record<string, string[]> = {
  'game.mahjong': ['game.card', 'game.board'],
  'finance.lottery': ['finance.crypto', 'finance.stocks', 'sports.football'],
  'health.pregnancy': ['health.period', 'parenting.baby_care', 'lifestyle.wedding'],
  'auto.used_cars': ['finance.loans', 'auto.car_rental', 'shopping.secondhand'],
};

/** Kinds of in-market behaviour planted in the last 1-4 weeks of history. */
export const INTENT_KINDS = ['competitor-trial', 'related-burst', 'both'] as const;
export type IntentKind = (typeof INTENT_KINDS)[number];

export interface GenerateOptions {
  users: number;
  seed: number;
  out: string;
  apps?: number; // regular apps (default 5000)
  topics?: number; // latent communities (default 40)
  nicheScale?: number; // default 1: the paper's weekly rates
  referenceDate?: string; // default 2025-06-29
  format?: 'csv' | 'ndjson';
  zipf?: number; // popularity exponent (default 1.1)
  appsPerUser?: number; // median number of regular apps a user keeps (default 20)
  appsPerUserSpread?: number; // standard deviation of log(apps per user) (default 0.75; larger = heavier tail)
  targetPrevalence?: number; // look-alike target adopters (default 0.10)
  sequenceSignal?: number; // share of niche adoption that comes from in-market intent (default 0.6; 0 = control)
  labelWeeks?: number; // held-out weeks after the reference date (default 4)
  events?: boolean; // write install/uninstall events (default true; false = a retention-only world)
  workers?: number; // worker threads (default: the cores; 1 below 10k users)
  progress?: boolean;
}

export interface NicheCounts {
  inMarket: number[];
  decoyUsers: number[];
  adopters: number[];
  byIntent: number[];
  byInterest: number[];
}

export interface GenerateResult {
  users: number;
  apps: number;
  events: number;
  heldOutEvents: number;
  files: string[];
  niche: NicheCounts;
}

interface App {
  id: string;
  cat: number;
  pkgs: string[];
  pre: boolean;
  uni: boolean;
  p: number; // install probability (universal / preinstalled apps)
}

interface Topic {
  cats: number[];
  w: number[];
  /** Signature apps of the community, across genres (co-installed by its members). */
  anchors: number[];
  anchorCum: Float64Array;
}

/** Weighted sparse vector helpers: category affinity of a user = sum_k theta_k * topic_k. */
function affinity(theta: [number, number][], topics: Topic[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const [k, t] of theta) {
    const tp = topics[k];
    for (let i = 0; i < tp.cats.length; i++) m.set(tp.cats[i], (m.get(tp.cats[i]) ?? 0) + t * tp.w[i]);
  }
  return m;
}

/** Scale s with mean(min(cap, s * w)) = target, by bisection (the cap keeps probabilities valid). */
function calibrate(ws: Float64Array, target: number, cap = 0.95): number {
  if (target <= 0) return 0;
  let lo = 0;
  let hi = 1;
  const mean = (s: number): number => {
    let t = 0;
    for (const w of ws) t += Math.min(cap, s * w);
    return t / ws.length;
  };
  while (mean(hi) < target && hi < 1e12) hi *= 2;
  for (let i = 0; i < 60; i++) {
    const mid = (lo + hi) / 2;
    if (mean(mid) < target) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

/** Per niche category: how adoption in the held-out window is split between intent and interest. */
export interface NichePlan {
  cat: number;
  related: number[];
  weekly: number; // configured weekly install rate
  window: number; // probability of adopting within the label weeks: 1 - (1 - weekly)^weeks
  intentAdopt: number; // adoption probability of an in-market user
  inMarket: number; // share of users in market
  interest: number; // mean interest-driven adoption probability
  decoysPerYear: number; // the same exploration patterns, independent of adoption (mean episodes per user per year)
}

export class World {
  readonly categories: string[] = [];
  readonly apps: App[] = [];
  readonly topics: Topic[] = [];
  readonly topicCum: Float64Array;
  readonly catApps: number[][];
  readonly catCum: Float64Array[];
  readonly globalCum: Float64Array;
  readonly globalApps: number[];
  readonly fixedApps: number[]; // universal + preinstalled
  readonly niche: number[]; // category indices
  readonly plan: NichePlan[];
  readonly nicheS: number[];
  readonly nicheBase: number[];
  readonly target: number; // app index
  readonly targetLoad: Float64Array; // per topic
  readonly targetS: number;
  readonly targetBase: number;
  readonly refEnd: number;

  constructor(readonly o: WorldConfig) {
    const rng = new Sfc32(o.seed, 'world');
    for (const [g, subs] of Object.entries(TAXONOMY)) for (const s of subs) this.categories.push(`${g}.${s}`);
    const C = this.categories.length;
    const catIdx = new Map(this.categories.map((c, i) => [c, i]));
    this.niche = DEFAULT_NICHE.map((n) => catIdx.get(n)!);
    const targetCat = catIdx.get(TARGET_CATEGORY)!;
    this.refEnd = parseDate(o.referenceDate, 'reference date') + DAY_MS;

    // apps: category sizes vary (lognormal), each category has at least 4 apps
    const catW = Float64Array.from({ length: C }, () => Math.exp(0.8 * rng.normal()));
    const catCumW = new Float64Array(C);
    catW.reduce((acc, w, i) => (catCumW[i] = acc + w), 0);
    const catOfApp: number[] = [];
    for (let i = 0; i < o.apps; i++) catOfApp.push(i < 4 * C ? i % C : rng.pickCum(catCumW));
    // global Zipf popularity over a random rank order: a short head and a long tail
    const rank = Array.from({ length: o.apps }, (_, i) => i);
    for (let i = rank.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [rank[i], rank[j]] = [rank[j], rank[i]];
    }
    const pop = new Float64Array(o.apps);
    for (let i = 0; i < o.apps; i++) pop[i] = 1 / Math.pow(rank[i] + 1, o.zipf);
    const pkgOf = (i: number, c: number): string[] => {
      const base = `com.${this.categories[c].replace('.', '.')}.a${i}`;
      const r = rng.next();
      return r < 0.03 ? [base, `${base}.lite`, `${base}.intl`] : r < 0.12 ? [base, `${base}.lite`] : [base];
    };
    const width = String(o.apps + 64).length;
    const idOf = (i: number): string => `app${String(i).padStart(width, '0')}`;
    for (let i = 0; i < o.apps; i++) this.apps.push({ id: idOf(i), cat: catOfApp[i], pkgs: pkgOf(i, catOfApp[i]), pre: false, uni: false, p: 0 });
    // near-universal apps (a manual list in real life) and manufacturer pre-installed apps
    const fixed: [string, boolean, boolean, number][] = [
      ['social.chat', false, true, 0.97], ['social.chat', false, true, 0.9], ['tools.browser', false, true, 0.92],
      ['finance.payments', false, true, 0.93], ['video.short', false, true, 0.88], ['shopping.marketplace', false, true, 0.86],
      ['tools.browser', true, false, 0.8], ['tools.file_manager', true, false, 0.85], ['tools.calculator', true, false, 0.9],
      ['tools.weather', true, false, 0.88], ['tools.cleaner', true, false, 0.7], ['music.streaming', true, false, 0.6],
      ['video.streaming', true, false, 0.55], ['photo.camera', true, false, 0.95], ['tools.keyboard', true, false, 0.75],
      ['shopping.deals', true, false, 0.5],
    ];
    this.fixedApps = [];
    for (const [cat, pre, uni, p] of fixed) {
      const i = this.apps.length;
      const c = catIdx.get(cat)!;
      this.apps.push({ id: idOf(i), cat: c, pkgs: [`com.${pre ? 'oem' : 'top'}.${cat}.a${i}`], pre, uni, p });
      this.fixedApps.push(i);
    }
    this.target = this.apps.length;
    this.apps.push({ id: idOf(this.target), cat: targetCat, pkgs: [`com.target.${TARGET_CATEGORY}.a${this.target}`, `com.target.${TARGET_CATEGORY}.a${this.target}.hd`], pre: false, uni: false, p: 0 });

    // per-category sampling tables over regular apps
    this.catApps = Array.from({ length: C }, () => []);
    for (let i = 0; i < o.apps; i++) this.catApps[catOfApp[i]].push(i);
    this.catCum = this.catApps.map((list) => {
      const cum = new Float64Array(list.length);
      let acc = 0;
      list.forEach((a, j) => (cum[j] = acc += pop[a]));
      return cum;
    });
    this.globalApps = Array.from({ length: o.apps }, (_, i) => i);
    this.globalCum = new Float64Array(o.apps);
    let acc = 0;
    for (let i = 0; i < o.apps; i++) this.globalCum[i] = acc += pop[i];

    // communities ("topics"): a few categories, mostly within one genre, plus signature apps drawn from
    // several genres; niche categories attach to exactly two communities
    const genres = Object.keys(TAXONOMY);
    const genreCats = genres.map((g) => this.categories.map((c, i) => [c, i] as const).filter(([c]) => c.startsWith(`${g}.`)).map(([, i]) => i));
    const nicheSet = new Set([...this.niche, targetCat]);
    for (let k = 0; k < o.topics; k++) {
      const g = rng.int(genres.length);
      const n = 3 + rng.int(5);
      const cats: number[] = [];
      for (let t = 0; t < n * 4 && cats.length < n; t++) {
        const pool = rng.next() < 0.7 ? genreCats[g] : genreCats[rng.int(genres.length)];
        const c = pool[rng.int(pool.length)];
        if (!cats.includes(c) && !nicheSet.has(c)) cats.push(c);
      }
      const w = cats.map(() => rng.exponential() + 0.2);
      const na = 6 + rng.int(10);
      const anchors: number[] = [];
      for (let t = 0; t < na * 4 && anchors.length < na; t++) {
        const pool = genreCats[rng.int(genres.length)];
        const c = pool[rng.int(pool.length)];
        if (nicheSet.has(c)) continue;
        const list = this.catApps[c];
        const a = list[rng.int(list.length)];
        if (!anchors.includes(a)) anchors.push(a);
      }
      const aw = anchors.map(() => rng.exponential() + 0.3);
      const anchorCum = new Float64Array(aw.length);
      aw.reduce((s, x, i) => (anchorCum[i] = s + x), 0);
      this.topics.push({ cats, w, anchors, anchorCum });
    }
    for (const nc of this.niche) {
      for (let r = 0; r < 2; r++) {
        const tp = this.topics[rng.int(o.topics)];
        if (!tp.cats.includes(nc)) {
          tp.cats.push(nc);
          tp.w.push(0.6 * (tp.w.reduce((a, b) => a + b, 0) / tp.w.length));
        }
      }
    }
    for (const tp of this.topics) {
      const s = tp.w.reduce((a, b) => a + b, 0);
      tp.w = tp.w.map((x) => x / s);
    }
    this.topicCum = new Float64Array(o.topics);
    let tacc = 0;
    for (let k = 0; k < o.topics; k++) this.topicCum[k] = tacc += 1 / Math.pow(k + 1, 0.6);
    this.targetLoad = Float64Array.from({ length: o.topics }, () => Math.exp(1.5 * rng.normal()));

    // niche adoption plan: a share `sequenceSignal` of the window's adopters are in-market users
    // (adopting with probability intentAdopt), the rest adopt from long-term interest
    const s = o.sequenceSignal;
    const W = o.labelWeeks;
    this.plan = this.niche.map((c, j) => {
      const weekly = (PAPER_NICHE_RATES[j] * o.nicheScale) / 1e6;
      const window = 1 - Math.pow(1 - weekly, W);
      const intentAdopt = Math.max(0.5, (s * window) / 0.8);
      const inMarket = (s * window) / intentAdopt;
      const interest = s >= 1 ? 0 : 1 - (1 - window) / (1 - s * window);
      const related = (RELATED[this.categories[c]] ?? []).map((n) => catIdx.get(n)!).filter((x) => x !== undefined);
      return { cat: c, related, weekly, window, intentAdopt, inMarket, interest, decoysPerYear: Math.min(1.5, 52 * weekly) };
    });
    // calibrate interest-driven adoption and target prevalence on a fixed sample of pseudo-users
    const nCal = 20000;
    const cal = Array.from({ length: nCal }, (_, i) => this.theta(new Sfc32(o.seed, 'calib', i)));
    const affs = cal.map((th) => affinity(th, this.topics));
    this.nicheBase = this.niche.map((c) => (0.05 * affs.reduce((a, m) => a + (m.get(c) ?? 0), 0)) / nCal + 1e-9);
    this.nicheS = this.niche.map((c, j) => calibrate(Float64Array.from(affs, (m) => (m.get(c) ?? 0) + this.nicheBase[j]), this.plan[j].interest));
    const tw = Float64Array.from(cal, (th) => this.targetWeight(th));
    this.targetBase = 0.15 * (tw.reduce((a, b) => a + b, 0) / nCal);
    this.targetS = calibrate(Float64Array.from(tw, (x) => x + this.targetBase), o.targetPrevalence);
  }

  theta(rng: Sfc32): [number, number][] {
    const r = rng.next();
    const m = r < 0.45 ? 1 : r < 0.85 ? 2 : 3;
    const out: [number, number][] = [];
    for (let t = 0; t < m * 3 && out.length < m; t++) {
      const k = rng.pickCum(this.topicCum);
      if (!out.some(([q]) => q === k)) out.push([k, rng.exponential() + 0.1]);
    }
    const s = out.reduce((a, [, w]) => a + w, 0);
    return out.map(([k, w]) => [k, w / s]);
  }

  targetWeight(theta: [number, number][]): number {
    let s = 0;
    for (const [k, t] of theta) s += t * this.targetLoad[k];
    return s;
  }

  pickInCategory(rng: Sfc32, c: number): number {
    return this.catApps[c][rng.pickCum(this.catCum[c])];
  }
}

interface Ev {
  t: number;
  type: 1 | 2;
  app: number;
}

export type WorldConfig = Required<Omit<GenerateOptions, 'out' | 'progress' | 'format' | 'workers'>>;

interface RangeWriters {
  inst: LineWriter;
  ev: LineWriter;
  held: LineWriter;
  truth: LineWriter;
}

export interface RangeResult {
  events: number;
  held: number;
  targetAdopters: number;
  niche: NicheCounts;
}

export function emptyNicheCounts(n: number): NicheCounts {
  return { inMarket: new Array(n).fill(0), decoyUsers: new Array(n).fill(0), adopters: new Array(n).fill(0), byIntent: new Array(n).fill(0), byInterest: new Array(n).fill(0) };
}

/** Writes users [start, end) of the world (no headers). Pure function of (world config, user index). */
export function generateRange(w: World, o: WorldConfig, csv: boolean, start: number, end: number, wr: RangeWriters, tick: (n: number) => void): RangeResult {
  const { inst: instW, ev: evW, held: heldW, truth: truthW } = wr;
  const typeName = ['', 'install', 'uninstall'];
  const uw = String(o.users - 1).length;
  let nEvents = 0;
  let nHeld = 0;
  const refEnd = w.refEnd;
  const HIST_DAYS = 364;
  const WINDOW_MS = o.labelWeeks * 7 * DAY_MS;
  const nicheCatSet = new Set(w.niche);
  const nc = emptyNicheCounts(w.niche.length);
  let targetAdopters = 0;

  for (let ui = start; ui < end; ui++) {
    const userId = `u${String(ui).padStart(uw, '0')}`;
    const rng = new Sfc32(o.seed, 'user', ui);
    const theta = w.theta(rng);
    const aff = affinity(theta, w.topics);
    const affCats = [...aff.keys()];
    const affCum = new Float64Array(affCats.length);
    let acc = 0;
    affCats.forEach((c, i) => (affCum[i] = acc += aff.get(c)!));
    const thetaCum = new Float64Array(theta.length);
    theta.reduce((s, [, t], i) => (thetaCum[i] = s + t), 0);
    // an app through the user's communities: their categories (55%), their signature apps (25%), or global popularity
    const interestApp = (): number => {
      const r = rng.next();
      if (r < 0.55) {
        const c = affCats[rng.pickCum(affCum)];
        if (!nicheCatSet.has(c) || rng.next() < 0.5) return w.pickInCategory(rng, c);
      } else if (r < 0.8) {
        const tp = w.topics[theta[rng.pickCum(thetaCum)][0]];
        if (tp.anchors.length > 0) return tp.anchors[rng.pickCum(tp.anchorCum)];
      }
      return w.globalApps[rng.pickCum(w.globalCum)];
    };
    const act = Math.exp(0.8 * rng.normal());
    const retention = new Set<number>();
    // heavy-tailed apps per user (lognormal, median o.appsPerUser)
    const size = Math.max(2, Math.min(400, Math.round(Math.exp(Math.log(o.appsPerUser) + o.appsPerUserSpread * rng.normal()))));
    for (let t = 0; t < size * 3 && retention.size < size; t++) retention.add(interestApp());
    const regular = [...retention];
    for (const f of w.fixedApps) if (rng.next() < w.apps[f].p) retention.add(f);

    const evs: Ev[] = [];
    const dayT = (daysBefore: number, hour = 7 + rng.next() * 16): number => refEnd - daysBefore * DAY_MS + Math.floor(hour * 3_600_000);
    /** Uninstall time of an app installed at t, `meanDays` later on average, always before the reference date. */
    const uninstallAt = (t: number, meanDays: number): number => {
      const tu = t + 600_000 + Math.floor(rng.exponential() * meanDays * DAY_MS);
      return tu < refEnd ? tu : t + Math.floor((refEnd - t) * (0.3 + 0.6 * rng.next()));
    };
    /** Some uninstalled apps come back: a re-install weeks later, kept. */
    const maybeReinstall = (a: number, tu: number): void => {
      if (rng.next() < 0.1) {
        const tr = tu + DAY_MS + Math.floor(rng.exponential() * 30 * DAY_MS);
        if (tr < refEnd) {
          evs.push({ t: tr, type: 1, app: a });
          retention.add(a);
        }
      }
    };
    // sessions: quiet weeks, then several installs on the same day
    const nS = Math.max(1, rng.poisson(act * 12));
    const sessions = Array.from({ length: nS }, () => dayT(1 + rng.int(HIST_DAYS)));
    for (const a of regular) if (rng.next() < 0.5) evs.push({ t: sessions[rng.int(nS)] + rng.int(3_600_000), type: 1, app: a });
    // short-term intents: a burst of installs in one category, mostly trials that get uninstalled
    const nI = rng.poisson(act * 2);
    for (let k = 0; k < nI; k++) {
      let c: number;
      if (rng.next() < 0.6) c = affCats[rng.pickCum(affCum)];
      else c = rng.int(w.categories.length);
      if (nicheCatSet.has(c) && !aff.has(c)) c = affCats[rng.pickCum(affCum)];
      const t0 = dayT(2 + rng.int(HIST_DAYS - 1));
      const b = 2 + rng.poisson(1.5);
      let t = t0;
      for (let j = 0; j < b; j++) {
        const a = w.pickInCategory(rng, c);
        if (retention.has(a)) continue;
        t += 60_000 + rng.int(20 * 60_000);
        evs.push({ t, type: 1, app: a });
        if (rng.next() < 0.7) {
          const tu = uninstallAt(t, 3);
          evs.push({ t: tu, type: 2, app: a });
          maybeReinstall(a, tu);
        } else retention.add(a);
      }
    }
    // trial installs of interest apps, uninstalled within days
    const nT = rng.poisson(act * 2);
    for (let k = 0; k < nT; k++) {
      const a = interestApp();
      if (retention.has(a)) continue;
      const t = dayT(1 + rng.int(HIST_DAYS));
      evs.push({ t, type: 1, app: a });
      if (rng.next() < 0.85) {
        const tu = uninstallAt(t, 5);
        evs.push({ t: tu, type: 2, app: a });
        maybeReinstall(a, tu);
      } else retention.add(a);
    }
    // a near-universal app reinstalled now and then (dropped by prepare: counted, not a feature)
    if (rng.next() < 0.1) {
      const f = w.fixedApps[rng.int(w.fixedApps.length)];
      if (retention.has(f) && !w.apps[f].pre) {
        const t = dayT(1 + rng.int(HIST_DAYS));
        evs.push({ t, type: 2, app: f }, { t: t + 3_600_000, type: 1, app: f });
      }
    }
    // look-alike target app: adoption follows the community structure (plus a small base rate)
    const pT = Math.min(0.95, w.targetS * (w.targetWeight(theta) + w.targetBase));
    const isTarget = rng.next() < pT;
    if (isTarget) {
      targetAdopters++;
      const t = dayT(2 + rng.int(HIST_DAYS - 1));
      if (rng.next() < 0.85) {
        retention.add(w.target);
        if (rng.next() < 0.7) evs.push({ t, type: 1, app: w.target }); // else installed before the log window
      } else {
        const tu = Math.min(refEnd - 60_000, t + Math.floor(rng.exponential() * 7 * DAY_MS) + 600_000);
        evs.push({ t, type: 1, app: w.target }, { t: tu, type: 2, app: w.target });
      }
    }

    // niche categories: exploration episodes (trial of a competing app of the category and/or a burst in
    // a related category). In-market users have one in the last 1-4 weeks and may adopt; decoy episodes
    // of the same kinds happen to anyone at any time of the year, independent of adoption.
    const pickNew = (c: number): number => {
      let a = w.pickInCategory(rng, c);
      for (let t = 0; t < 4 && retention.has(a); t++) a = w.pickInCategory(rng, c);
      return a;
    };
    const episode = (j: number, kind: IntentKind, daysBefore: number): void => {
      const p = w.plan[j];
      let t = dayT(daysBefore);
      if (kind !== 'related-burst') {
        const n = rng.next() < 0.35 ? 2 : 1;
        for (let i = 0; i < n; i++) {
          const a = pickNew(p.cat);
          if (retention.has(a)) continue;
          t += 60_000 + rng.int(30 * 60_000);
          evs.push({ t, type: 1, app: a }, { t: uninstallAt(t, 2), type: 2, app: a });
        }
      }
      if (kind !== 'competitor-trial' && p.related.length > 0) {
        const c = p.related[rng.int(p.related.length)];
        const b = 2 + rng.poisson(1);
        t = dayT(Math.max(1, daysBefore - rng.int(3)));
        for (let i = 0; i < b; i++) {
          const a = pickNew(c);
          if (retention.has(a)) continue;
          t += 60_000 + rng.int(20 * 60_000);
          evs.push({ t, type: 1, app: a });
          if (rng.next() < 0.7) evs.push({ t: uninstallAt(t, 3), type: 2, app: a });
          else retention.add(a);
        }
      }
    };
    const drawKind = (): IntentKind => {
      const r = rng.next();
      return r < 0.45 ? 'competitor-trial' : r < 0.9 ? 'related-burst' : 'both';
    };
    const inMarket: string[] = [];
    const adopted: string[] = [];
    const nicheP: number[] = [];
    const adoptT: (number | null)[] = [];
    for (let j = 0; j < w.niche.length; j++) {
      const p = w.plan[j];
      const name = w.categories[p.cat];
      const nd = rng.poisson(p.decoysPerYear);
      if (nd > 0) nc.decoyUsers[j]++;
      for (let k = 0; k < nd; k++) episode(j, drawKind(), 1 + rng.int(HIST_DAYS));
      const im = rng.next() < p.inMarket;
      let byIntent = false;
      if (im) {
        nc.inMarket[j]++;
        const kind = drawKind();
        const days = 1 + rng.int(28);
        episode(j, kind, days);
        inMarket.push(`${name}:${kind}:${days}d`);
        byIntent = rng.next() < p.intentAdopt;
      }
      const pInt = Math.min(0.95, w.nicheS[j] * ((aff.get(p.cat) ?? 0) + w.nicheBase[j]));
      const byInterest = rng.next() < pInt;
      nicheP.push(1 - (1 - (im ? p.intentAdopt : 0)) * (1 - pInt));
      // in-market users adopt early in the window; interest adoption is spread over it
      const u = rng.next();
      adoptT.push(byIntent ? refEnd + Math.floor(u * u * WINDOW_MS) : byInterest ? refEnd + Math.floor(u * WINDOW_MS) : null);
      if (byIntent || byInterest) {
        nc.adopters[j]++;
        if (byIntent) nc.byIntent[j]++;
        else nc.byInterest[j]++;
        adopted.push(`${name}:${byIntent ? 'intent' : 'interest'}`);
      }
    }
    evs.sort((a, b) => a.t - b.t || a.type - b.type);
    while (evs.length > 0 && evs[evs.length - 1].t >= refEnd) evs.pop(); // history never reaches past the reference date
    const pkg = (a: number): string => {
      const p = w.apps[a].pkgs;
      return p.length === 1 || rng.next() < 0.85 ? p[0] : p[1 + rng.int(p.length - 1)];
    };

    // held-out weeks: niche adoption as planned; other installs avoid niche categories
    const held: Ev[] = [];
    for (let j = 0; j < w.niche.length; j++) {
      const t = adoptT[j];
      if (t !== null) held.push({ t, type: 1, app: pickNew(w.niche[j]) });
    }
    const nW = rng.poisson(act * 0.5 * o.labelWeeks);
    for (let k = 0; k < nW; k++) {
      const a = interestApp();
      if (nicheCatSet.has(w.apps[a].cat) || retention.has(a)) continue;
      held.push({ t: refEnd + rng.int(WINDOW_MS), type: 1, app: a });
    }
    const nU = rng.poisson(0.2 * o.labelWeeks);
    for (let k = 0; k < nU && regular.length > 0; k++) held.push({ t: refEnd + rng.int(WINDOW_MS), type: 2, app: regular[rng.int(regular.length)] });
    held.sort((a, b) => a.t - b.t || a.type - b.type);

    // write: retention, history (unless a retention-only world), held-out weeks, truth
    const retPk = [...retention].sort((a, b) => a - b).map(pkg);
    if (csv) instW.write(`${userId},${retPk.join('|')}\n`);
    else instW.write(`${JSON.stringify({ user_id: userId, packages: retPk })}\n`);
    let n = 0;
    for (const [list, wr, write] of [[evs, evW, o.events], [held, heldW, true]] as const) {
      for (const e of list) {
        const id = `${userId}-${n++}`;
        const pk = pkg(e.app); // drawn even when not written, so a retention-only world is the same world
        if (!write) continue;
        if (csv) wr.write(`${id},${userId},${pk},${typeName[e.type]},${intStr(e.t)}\n`);
        else wr.write(`${JSON.stringify({ event_id: id, user_id: userId, package: pk, type: typeName[e.type], timestamp: e.t })}\n`);
      }
    }
    if (o.events) nEvents += evs.length;
    nHeld += held.length;
    truthW.write(`${userId},${theta.map(([k, t]) => `${k}:${t.toFixed(4)}`).join('|')},${isTarget ? 1 : 0},${nicheP.map((p) => p.toPrecision(4)).join('|')},${inMarket.join('|')},${adopted.join('|')}\n`);
    if (((ui - start) & 1023) === 1023) tick(1024);
  }
  tick((end - start) & 1023);
  return { events: nEvents, held: nHeld, targetAdopters, niche: nc };
}

/** Worker entry: build the same world from its config and write one user range into part files. */
export function runPart(d: { o: WorldConfig; csv: boolean; start: number; end: number; parts: { inst: string; ev: string; held: string; truth: string } }, tick: (n: number) => void) {
  const w = new World(d.o);
  const wr = { inst: new LineWriter(d.parts.inst), ev: new LineWriter(d.parts.ev), held: new LineWriter(d.parts.held), truth: new LineWriter(d.parts.truth) };
  const r = generateRange(w, d.o, d.csv, d.start, d.end, wr, tick);
  for (const x of Object.values(wr)) x.close();
  return r;
}

function appendFile(dst: LineWriter, src: string): void {
  dst.flush();
  const fd = openSync(src, 'r');
  const buf = Buffer.allocUnsafe(8 << 20);
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      dst.writeBytes(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  rmSync(src);
}


export async function generate(opts: GenerateOptions): Promise<GenerateResult> {
  const o = {
    users: opts.users,
    seed: opts.seed,
    apps: opts.apps ?? 5000,
    topics: opts.topics ?? 40,
    nicheScale: opts.nicheScale ?? 1,
    referenceDate: opts.referenceDate ?? '2025-06-29',
    zipf: opts.zipf ?? DEFAULT_ZIPF,
    appsPerUser: opts.appsPerUser ?? DEFAULT_APPS_PER_USER,
    appsPerUserSpread: opts.appsPerUserSpread ?? DEFAULT_APPS_PER_USER_SPREAD,
    targetPrevalence: opts.targetPrevalence ?? 0.1,
    sequenceSignal: opts.sequenceSignal ?? DEFAULT_SEQUENCE_SIGNAL,
    labelWeeks: opts.labelWeeks ?? DEFAULT_LABEL_WEEKS,
    events: opts.events ?? true,
  };
  const fmt = opts.format ?? 'csv';
  if (!Number.isInteger(o.users) || o.users < 1 || o.users > 100_000_000) throw new UserError(`--users must be a positive integer (got ${opts.users})`);
  if (!Number.isInteger(o.seed)) throw new UserError(`--seed must be an integer (got ${opts.seed})`);
  if (!Number.isInteger(o.apps) || o.apps < 400) throw new UserError(`--apps must be an integer >= 400 (got ${o.apps})`);
  if (!Number.isInteger(o.topics) || o.topics < 4) throw new UserError(`--topics must be an integer >= 4 (got ${o.topics})`);
  if (!(o.nicheScale > 0) || Math.max(...PAPER_NICHE_RATES) * o.nicheScale > 0.5e6) throw new UserError(`--niche-scale must be > 0 and keep every weekly rate under 50% (got ${o.nicheScale})`);
  if (!(o.targetPrevalence > 0 && o.targetPrevalence < 0.9)) throw new UserError(`--target-prevalence must be in (0, 0.9)`);
  if (!(o.sequenceSignal >= 0 && o.sequenceSignal <= 1)) throw new UserError(`--sequence-signal must be in [0, 1] (got ${o.sequenceSignal})`);
  if (!Number.isInteger(o.labelWeeks) || o.labelWeeks < 1 || o.labelWeeks > 12) throw new UserError(`--label-weeks must be an integer in 1..12 (got ${o.labelWeeks})`);
  if (!(o.zipf > 0 && o.zipf <= 3)) throw new UserError(`--zipf must be in (0, 3] (got ${o.zipf})`);
  if (!(o.appsPerUser >= 2 && o.appsPerUser <= 400)) throw new UserError(`--apps-per-user must be in [2, 400] (got ${o.appsPerUser})`);
  if (!(o.appsPerUserSpread >= 0 && o.appsPerUserSpread <= 2)) throw new UserError(`--apps-per-user-spread must be in [0, 2] (got ${o.appsPerUserSpread})`);
  if (fmt !== 'csv' && fmt !== 'ndjson') throw new UserError(`--format must be csv or ndjson (got ${fmt})`);
  parseDate(o.referenceDate, '--reference-date');
  const out = opts.out;
  if (existsSync(out) && readdirSync(out).length > 0 && !existsSync(join(out, 'dataset.json')))
    throw new UserError(`output directory ${out} is not empty and holds no dataset.json; choose another --out`);
  mkdirSync(join(out, 'truth'), { recursive: true });

  const w = new World(o);
  const ext = fmt === 'csv' ? 'csv' : 'ndjson';
  const files: { catalog: string; installed: string; events?: string; heldOut: string } = { catalog: `apps.${ext}`, installed: `installed.${ext}`, events: `events.${ext}`, heldOut: `${o.labelWeeks === 1 ? 'next_week' : 'held_out'}.${ext}` };
  if (!o.events) delete files.events;
  // a re-run into an earlier world's directory must not leave files of another layout behind
  for (const f of ['events', 'next_week', 'held_out']) for (const x of ['csv', 'ndjson']) if (!Object.values(files).includes(`${f}.${x}`)) rmSync(join(out, `${f}.${x}`), { force: true });
  const catW = new LineWriter(join(out, files.catalog));
  const instW = new LineWriter(join(out, files.installed));
  const evW = new LineWriter(files.events ? join(out, files.events) : join(out, '.no-events.tmp'));
  const heldW = new LineWriter(join(out, files.heldOut));
  const truthW = new LineWriter(join(out, 'truth', 'users.csv'));
  const csv = fmt === 'csv';
  if (csv) {
    catW.write('app_id,packages,category,preinstalled,universal\n');
    instW.write('user_id,packages\n');
    evW.write('event_id,user_id,package,type,timestamp\n');
    heldW.write('event_id,user_id,package,type,timestamp\n');
  }
  truthW.write('user_id,topics,lookalike_target,niche_p,in_market,niche_adopted\n');
  for (const a of w.apps) {
    const cat = w.categories[a.cat];
    if (csv) catW.write(`${a.id},${csvField(a.pkgs.join('|'))},${cat},${a.pre ? 1 : 0},${a.uni ? 1 : 0}\n`);
    else catW.write(`${JSON.stringify({ app_id: a.id, packages: a.pkgs, category: cat, preinstalled: a.pre, universal: a.uni })}\n`);
  }
  catW.close();

  const progress = new Progress({ label: 'generate', total: o.users, unit: 'users', silent: opts.progress === false ? true : undefined });
  const tick = (n: number): void => progress.tick(n);
  const workers = opts.workers !== undefined ? Math.max(1, Math.min(opts.workers, o.users)) : Math.max(1, Math.min(availableParallelism(), 8, Math.floor(o.users / 5000) || 1));
  let res: RangeResult;
  const wr = { inst: instW, ev: evW, held: heldW, truth: truthW };
  if (workers === 1) {
    res = generateRange(w, o, csv, 0, o.users, wr, tick);
  } else {
    // users are split into contiguous ranges; parts are appended in order, so the bytes do not depend on the worker count
    const tmpDir = join(out, '.tmp-parts');
    mkdirSync(tmpDir, { recursive: true });
    const ranges = Array.from({ length: workers }, (_, k) => [Math.floor((k * o.users) / workers), Math.floor(((k + 1) * o.users) / workers)] as const);
    const parts = ranges.map((_, k) => ({ inst: join(tmpDir, `inst${k}`), ev: join(tmpDir, `ev${k}`), held: join(tmpDir, `held${k}`), truth: join(tmpDir, `truth${k}`) }));
    const results = await Promise.all(
      ranges.map(
        ([start, end], k) =>
          new Promise<RangeResult>((resolveP, rejectP) => {
            const wk = spawnWorker(import.meta.url, './generate-worker', { workerData: { o, csv, start, end, parts: parts[k] } });
            wk.on('message', (m: { tick?: number; done?: RangeResult }) => {
              if (m.tick) tick(m.tick);
              if (m.done) resolveP(m.done);
            });
            wk.on('error', rejectP);
            wk.on('exit', (code) => code !== 0 && rejectP(new Error(`generate worker ${k} exited with code ${code}`)));
          }),
      ),
    );
    for (const p of parts) {
      appendFile(instW, p.inst);
      appendFile(evW, p.ev);
      appendFile(heldW, p.held);
      appendFile(truthW, p.truth);
    }
    rmSync(tmpDir, { recursive: true, force: true });
    const sum = (a: number[], b: number[]): number[] => a.map((x, i) => x + b[i]);
    res = results.reduce(
      (a, r) => ({
        events: a.events + r.events,
        held: a.held + r.held,
        targetAdopters: a.targetAdopters + r.targetAdopters,
        niche: { inMarket: sum(a.niche.inMarket, r.niche.inMarket), decoyUsers: sum(a.niche.decoyUsers, r.niche.decoyUsers), adopters: sum(a.niche.adopters, r.niche.adopters), byIntent: sum(a.niche.byIntent, r.niche.byIntent), byInterest: sum(a.niche.byInterest, r.niche.byInterest) },
      }),
      { events: 0, held: 0, targetAdopters: 0, niche: emptyNicheCounts(w.niche.length) },
    );
  }
  const nEvents = res.events;
  const nHeld = res.held;
  const targetAdopters = { n: res.targetAdopters };
  for (const x of [instW, evW, heldW, truthW]) x.close();
  if (!files.events) rmSync(join(out, '.no-events.tmp'), { force: true });
  progress.finish();

  const world = {
    generator: 'aetn generate',
    seed: o.seed,
    users: o.users,
    referenceDate: o.referenceDate,
    config: o,
    nicheScale: o.nicheScale,
    sequenceSignal: o.sequenceSignal,
    labelWeeks: o.labelWeeks,
    events: o.events,
    nicheCategories: w.niche.map((c, j) => {
      const p = w.plan[j];
      return {
        name: w.categories[c],
        baseRatePerMillion: PAPER_NICHE_RATES[j],
        ratePerMillion: PAPER_NICHE_RATES[j] * o.nicheScale,
        windowPerMillion: +(p.window * 1e6).toFixed(1),
        relatedCategories: p.related.map((r) => w.categories[r]),
        inMarketPerMillion: +(p.inMarket * 1e6).toFixed(1),
        intentAdoptProbability: +p.intentAdopt.toFixed(4),
        interestAdoptMean: +p.interest.toPrecision(4),
        decoyEpisodesPerUserYear: +p.decoysPerYear.toPrecision(4),
        measured: { inMarket: res.niche.inMarket[j], decoyUsers: res.niche.decoyUsers[j], adopters: res.niche.adopters[j], byIntent: res.niche.byIntent[j], byInterest: res.niche.byInterest[j] },
      };
    }),
    lookalikeTargets: [{ appId: w.apps[w.target].id, packages: w.apps[w.target].pkgs, category: TARGET_CATEGORY, configuredPrevalence: o.targetPrevalence, adopters: targetAdopters.n }],
    topics: w.topics.map((t, k) => ({ categories: t.cats.map((c) => w.categories[c]), weights: t.w.map((x) => +x.toFixed(4)), signatureApps: t.anchors.map((a) => w.apps[a].id), targetLoad: +w.targetLoad[k].toPrecision(4) })),
    files: {
      users:
        'truth/users.csv (user_id; topics k:weight|... = community mixture; lookalike_target 0/1; niche_p: probability of adopting each niche category within the label weeks; ' +
        'in_market: category:kind:days-before-reference|... for users planted in market (kind competitor-trial, related-burst or both); niche_adopted: category:intent|interest|... who adopted in the label weeks and why)',
    },
  };
  writeFileSync(join(out, 'truth', 'world.json'), `${JSON.stringify(world, null, 2)}\n`);
  const spec = {
    format: RAW_FORMAT,
    referenceDate: o.referenceDate,
    catalog: files.catalog,
    installed: files.installed,
    events: files.events,
    heldOut: files.heldOut,
    heldOutWeeks: o.labelWeeks,
    excludeApps: [w.apps[w.target].id],
    truth: 'truth/world.json',
  };
  writeFileSync(join(out, 'dataset.json'), `${JSON.stringify(spec, null, 2)}\n`);
  return { users: o.users, apps: w.apps.length, events: nEvents, heldOutEvents: nHeld, files: [...Object.values(files), 'dataset.json', 'truth/world.json', 'truth/users.csv'], niche: res.niche };
}
