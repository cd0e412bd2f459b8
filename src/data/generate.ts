// A synthetic app world in the raw input format. No public data has the shape the paper relies on,
// so this plants it with ground truth kept: Zipf app popularity with a long tail over fine-grained
// categories; latent long-term interests (a sparse mixture over topics, each topic a few
// categories) that drive the installed-app set; short-term intents that show up as bursts of
// installs in one day, mostly trials uninstalled days later; quiet weeks; near-universal and
// pre-installed apps; four niche categories whose next-week adoption follows the interests at the
// paper's rates (600, 400, 25, 300 per million, times --niche-scale); and a look-alike target app
// (~10% of users, interest-driven) that prepare keeps out of the vocabulary.
// Every user has its own PRNG stream seeded by (seed, user index): same seed -> identical bytes.
import { closeSync, mkdirSync, existsSync, openSync, readdirSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import { UserError } from '../util/errors.js';
import { Progress } from '../util/progress.js';
import { intStr, LineWriter } from './lines.js';
import { DAY_MS, RAW_FORMAT, parseDate, csvField } from './raw.js';
import { Rng } from './rng.js';

export const PAPER_NICHE_RATES = [600, 400, 25, 300];
export const DEFAULT_NICHE = ['game.mahjong', 'finance.lottery', 'health.pregnancy', 'auto.used_cars'];
export const TARGET_CATEGORY = 'lifestyle.astrology';

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

export interface GenerateOptions {
  users: number;
  seed: number;
  out: string;
  apps?: number; // regular apps (default 5000)
  topics?: number; // latent interest topics (default 40)
  nicheScale?: number; // default 100: a 100k world has ~250 adopters of the rarest niche category
  referenceDate?: string; // default 2025-06-29
  format?: 'csv' | 'ndjson';
  zipf?: number; // popularity exponent (default 1.0)
  targetPrevalence?: number; // look-alike target adopters (default 0.10)
  workers?: number; // worker threads (default: the cores; 1 below 10k users)
  progress?: boolean;
}

export interface GenerateResult {
  users: number;
  apps: number;
  events: number;
  heldOutEvents: number;
  files: string[];
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
  readonly nicheRates: number[]; // per user per week
  readonly nicheScale: number;
  readonly nicheS: number[];
  readonly nicheBase: number[];
  readonly target: number; // app index
  readonly targetLoad: Float64Array; // per topic
  readonly targetS: number;
  readonly refEnd: number;

  constructor(readonly o: WorldConfig) {
    const rng = new Rng(o.seed, 'world');
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

    // topics: a few categories, mostly within one genre; niche categories attach to exactly two topics
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
      this.topics.push({ cats, w });
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

    // calibrate next-week niche adoption and target prevalence on a fixed sample of pseudo-users
    this.nicheScale = o.nicheScale;
    this.nicheRates = PAPER_NICHE_RATES.map((r) => (r * o.nicheScale) / 1e6);
    const nCal = 20000;
    const cal = Array.from({ length: nCal }, (_, i) => this.theta(new Rng(o.seed, 'calib', i)));
    const affs = cal.map((th) => affinity(th, this.topics));
    this.nicheBase = this.niche.map((c) => (0.05 * affs.reduce((a, m) => a + (m.get(c) ?? 0), 0)) / nCal + 1e-9);
    this.nicheS = this.niche.map((c, j) => calibrate(Float64Array.from(affs, (m) => (m.get(c) ?? 0) + this.nicheBase[j]), this.nicheRates[j]));
    this.targetS = calibrate(Float64Array.from(cal, (th) => this.targetWeight(th)), o.targetPrevalence);
  }

  theta(rng: Rng): [number, number][] {
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

  pickInCategory(rng: Rng, c: number): number {
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

/** Writes users [start, end) of the world (no headers). Pure function of (world config, user index). */
export function generateRange(w: World, o: WorldConfig, csv: boolean, start: number, end: number, wr: RangeWriters, tick: (n: number) => void): { events: number; held: number; targetAdopters: number } {
  const { inst: instW, ev: evW, held: heldW, truth: truthW } = wr;
  const typeName = ['', 'install', 'uninstall'];
  const uw = String(o.users - 1).length;
  let nEvents = 0;
  let nHeld = 0;
  const refEnd = w.refEnd;
  const HIST_DAYS = 364;
  const nicheCatSet = new Set(w.niche);
  let targetAdopters = 0;

  for (let ui = start; ui < end; ui++) {
    const userId = `u${String(ui).padStart(uw, '0')}`;
    const rng = new Rng(o.seed, 'user', ui);
    const theta = w.theta(rng);
    const aff = affinity(theta, w.topics);
    const affCats = [...aff.keys()];
    const affCum = new Float64Array(affCats.length);
    let acc = 0;
    affCats.forEach((c, i) => (affCum[i] = acc += aff.get(c)!));
    const interestApp = (): number => {
      if (rng.next() < 0.8) {
        const c = affCats[rng.pickCum(affCum)];
        if (!nicheCatSet.has(c) || rng.next() < 0.5) return w.pickInCategory(rng, c);
      }
      return w.globalApps[rng.pickCum(w.globalCum)];
    };
    const act = Math.exp(0.8 * rng.normal());
    const retention = new Set<number>();
    const size = Math.max(3, Math.min(150, Math.round(Math.exp(Math.log(22) + 0.5 * rng.normal()))));
    for (let t = 0; t < size * 3 && retention.size < size; t++) retention.add(interestApp());
    const regular = [...retention];
    for (const f of w.fixedApps) if (rng.next() < w.apps[f].p) retention.add(f);

    const evs: Ev[] = [];
    const dayT = (daysBefore: number, hour = 7 + rng.next() * 16): number => refEnd - daysBefore * DAY_MS + Math.floor(hour * 3_600_000);
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
        const tu = t + Math.floor(rng.exponential() * 3 * DAY_MS) + 600_000;
        if (rng.next() < 0.7 && tu < refEnd) evs.push({ t: tu, type: 2, app: a });
        else retention.add(a);
      }
    }
    // trial installs of interest apps, uninstalled within days
    const nT = rng.poisson(act * 2);
    for (let k = 0; k < nT; k++) {
      const a = interestApp();
      if (retention.has(a)) continue;
      const t = dayT(1 + rng.int(HIST_DAYS));
      evs.push({ t, type: 1, app: a });
      const tu = t + Math.floor(rng.exponential() * 5 * DAY_MS) + 600_000;
      if (rng.next() < 0.85 && tu < refEnd) evs.push({ t: tu, type: 2, app: a });
      else retention.add(a);
    }
    // a near-universal app reinstalled now and then (dropped by prepare: counted, not a feature)
    if (rng.next() < 0.1) {
      const f = w.fixedApps[rng.int(w.fixedApps.length)];
      if (retention.has(f) && !w.apps[f].pre) {
        const t = dayT(1 + rng.int(HIST_DAYS));
        evs.push({ t, type: 2, app: f }, { t: t + 3_600_000, type: 1, app: f });
      }
    }
    // look-alike target app: adoption follows the latent interests
    const pT = Math.min(0.95, w.targetS * w.targetWeight(theta));
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
    evs.sort((a, b) => a.t - b.t || a.type - b.type);
    while (evs.length > 0 && evs[evs.length - 1].t >= refEnd) evs.pop(); // history never reaches past the reference date
    const pkg = (a: number): string => {
      const p = w.apps[a].pkgs;
      return p.length === 1 || rng.next() < 0.85 ? p[0] : p[1 + rng.int(p.length - 1)];
    };

    // held-out week: niche adoption at calibrated, interest-driven rates; other installs avoid niche categories
    const held: Ev[] = [];
    const nicheP = w.niche.map((c, j) => Math.min(0.95, w.nicheS[j] * ((aff.get(c) ?? 0) + w.nicheBase[j])));
    for (let j = 0; j < w.niche.length; j++) {
      if (rng.next() < nicheP[j]) held.push({ t: refEnd + rng.int(7 * DAY_MS), type: 1, app: w.pickInCategory(rng, w.niche[j]) });
    }
    const nW = rng.poisson(act * 0.6);
    for (let k = 0; k < nW; k++) {
      const a = interestApp();
      if (nicheCatSet.has(w.apps[a].cat) || retention.has(a)) continue;
      held.push({ t: refEnd + rng.int(7 * DAY_MS), type: 1, app: a });
    }
    if (rng.next() < 0.2 && regular.length > 0) held.push({ t: refEnd + rng.int(7 * DAY_MS), type: 2, app: regular[rng.int(regular.length)] });
    held.sort((a, b) => a.t - b.t || a.type - b.type);

    // write: retention, history, held-out week, truth
    const retPk = [...retention].sort((a, b) => a - b).map(pkg);
    if (csv) instW.write(`${userId},${retPk.join('|')}\n`);
    else instW.write(`${JSON.stringify({ user_id: userId, packages: retPk })}\n`);
    let n = 0;
    for (const [list, wr] of [[evs, evW], [held, heldW]] as const) {
      for (const e of list) {
        const id = `${userId}-${n++}`;
        if (csv) wr.write(`${id},${userId},${pkg(e.app)},${typeName[e.type]},${intStr(e.t)}\n`);
        else wr.write(`${JSON.stringify({ event_id: id, user_id: userId, package: pkg(e.app), type: typeName[e.type], timestamp: e.t })}\n`);
      }
    }
    nEvents += evs.length;
    nHeld += held.length;
    truthW.write(`${userId},${theta.map(([k, t]) => `${k}:${t.toFixed(4)}`).join('|')},${isTarget ? 1 : 0},${nicheP.map((p) => p.toPrecision(4)).join('|')}\n`);
    if (((ui - start) & 1023) === 1023) tick(1024);
  }
  tick((end - start) & 1023);
  return { events: nEvents, held: nHeld, targetAdopters };
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
    nicheScale: opts.nicheScale ?? 100,
    referenceDate: opts.referenceDate ?? '2025-06-29',
    zipf: opts.zipf ?? 1.0,
    targetPrevalence: opts.targetPrevalence ?? 0.1,
  };
  const fmt = opts.format ?? 'csv';
  if (!Number.isInteger(o.users) || o.users < 1 || o.users > 100_000_000) throw new UserError(`--users must be a positive integer (got ${opts.users})`);
  if (!Number.isInteger(o.seed)) throw new UserError(`--seed must be an integer (got ${opts.seed})`);
  if (!Number.isInteger(o.apps) || o.apps < 400) throw new UserError(`--apps must be an integer >= 400 (got ${o.apps})`);
  if (!Number.isInteger(o.topics) || o.topics < 4) throw new UserError(`--topics must be an integer >= 4 (got ${o.topics})`);
  if (!(o.nicheScale > 0) || Math.max(...PAPER_NICHE_RATES) * o.nicheScale > 0.5e6) throw new UserError(`--niche-scale must be > 0 and keep every weekly rate under 50% (got ${o.nicheScale})`);
  if (!(o.targetPrevalence > 0 && o.targetPrevalence < 0.9)) throw new UserError(`--target-prevalence must be in (0, 0.9)`);
  if (fmt !== 'csv' && fmt !== 'ndjson') throw new UserError(`--format must be csv or ndjson (got ${fmt})`);
  parseDate(o.referenceDate, '--reference-date');
  const out = opts.out;
  if (existsSync(out) && readdirSync(out).length > 0 && !existsSync(join(out, 'dataset.json')))
    throw new UserError(`output directory ${out} is not empty and holds no dataset.json; choose another --out`);
  mkdirSync(join(out, 'truth'), { recursive: true });

  const w = new World(o);
  const ext = fmt === 'csv' ? 'csv' : 'ndjson';
  const files = { catalog: `apps.${ext}`, installed: `installed.${ext}`, events: `events.${ext}`, heldOut: `next_week.${ext}` };
  const catW = new LineWriter(join(out, files.catalog));
  const instW = new LineWriter(join(out, files.installed));
  const evW = new LineWriter(join(out, files.events));
  const heldW = new LineWriter(join(out, files.heldOut));
  const truthW = new LineWriter(join(out, 'truth', 'users.csv'));
  const csv = fmt === 'csv';
  if (csv) {
    catW.write('app_id,packages,category,preinstalled,universal\n');
    instW.write('user_id,packages\n');
    evW.write('event_id,user_id,package,type,timestamp\n');
    heldW.write('event_id,user_id,package,type,timestamp\n');
  }
  truthW.write('user_id,topics,lookalike_target,niche_p\n');
  for (const a of w.apps) {
    const cat = w.categories[a.cat];
    if (csv) catW.write(`${a.id},${csvField(a.pkgs.join('|'))},${cat},${a.pre ? 1 : 0},${a.uni ? 1 : 0}\n`);
    else catW.write(`${JSON.stringify({ app_id: a.id, packages: a.pkgs, category: cat, preinstalled: a.pre, universal: a.uni })}\n`);
  }
  catW.close();

  const progress = new Progress({ label: 'generate', total: o.users, unit: 'users', silent: opts.progress === false ? true : undefined });
  const tick = (n: number): void => progress.tick(n);
  const workers = opts.workers !== undefined ? Math.max(1, Math.min(opts.workers, o.users)) : Math.max(1, Math.min(availableParallelism(), 8, Math.floor(o.users / 5000) || 1));
  let res: { events: number; held: number; targetAdopters: number };
  const wr = { inst: instW, ev: evW, held: heldW, truth: truthW };
  if (workers === 1) {
    res = generateRange(w, o, csv, 0, o.users, wr, tick);
  } else {
    // users are split into contiguous ranges; parts are appended in order, so the bytes do not depend on the worker count
    const tmpDir = join(out, '.tmp-parts');
    mkdirSync(tmpDir, { recursive: true });
    const ranges = Array.from({ length: workers }, (_, k) => [Math.floor((k * o.users) / workers), Math.floor(((k + 1) * o.users) / workers)] as const);
    const parts = ranges.map((_, k) => ({ inst: join(tmpDir, `inst${k}`), ev: join(tmpDir, `ev${k}`), held: join(tmpDir, `held${k}`), truth: join(tmpDir, `truth${k}`) }));
    const ts = import.meta.url.endsWith('.ts');
    const results = await Promise.all(
      ranges.map(
        ([start, end], k) =>
          new Promise<{ events: number; held: number; targetAdopters: number }>((resolveP, rejectP) => {
            const entry = new URL(`./generate-worker.${ts ? 'ts' : 'js'}`, import.meta.url);
            const data = { workerData: { o, csv, start, end, parts: parts[k] } };
            // under tsx/vitest (TypeScript source) the worker registers tsx's loader before importing the entry
            const wk = ts
              ? new Worker(`import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(entry.href)}); })`, { eval: true, ...data })
              : new Worker(entry, data);
            wk.on('message', (m: { tick?: number; done?: { events: number; held: number; targetAdopters: number } }) => {
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
    res = results.reduce((a, r) => ({ events: a.events + r.events, held: a.held + r.held, targetAdopters: a.targetAdopters + r.targetAdopters }), { events: 0, held: 0, targetAdopters: 0 });
  }
  const nEvents = res.events;
  const nHeld = res.held;
  const targetAdopters = { n: res.targetAdopters };
  for (const x of [instW, evW, heldW, truthW]) x.close();
  progress.finish();

  const world = {
    generator: 'aetn generate',
    seed: o.seed,
    users: o.users,
    referenceDate: o.referenceDate,
    config: o,
    nicheScale: o.nicheScale,
    nicheCategories: w.niche.map((c, j) => ({ name: w.categories[c], baseRatePerMillion: PAPER_NICHE_RATES[j], ratePerMillion: PAPER_NICHE_RATES[j] * o.nicheScale })),
    lookalikeTargets: [{ appId: w.apps[w.target].id, packages: w.apps[w.target].pkgs, category: TARGET_CATEGORY, configuredPrevalence: o.targetPrevalence, adopters: targetAdopters.n }],
    topics: w.topics.map((t) => ({ categories: t.cats.map((c) => w.categories[c]), weights: t.w.map((x) => +x.toFixed(4)) })),
    files: { users: 'truth/users.csv (user_id, topics k:weight|..., lookalike_target 0/1, niche_p: next-week adoption probability per niche category)' },
  };
  writeFileSync(join(out, 'truth', 'world.json'), `${JSON.stringify(world, null, 2)}\n`);
  const spec = {
    format: RAW_FORMAT,
    referenceDate: o.referenceDate,
    catalog: files.catalog,
    installed: files.installed,
    events: files.events,
    heldOut: files.heldOut,
    excludeApps: [w.apps[w.target].id],
    truth: 'truth/world.json',
  };
  writeFileSync(join(out, 'dataset.json'), `${JSON.stringify(spec, null, 2)}\n`);
  return { users: o.users, apps: w.apps.length, events: nEvents, heldOutEvents: nHeld, files: [...Object.values(files), 'dataset.json', 'truth/world.json', 'truth/users.csv'] };
}
