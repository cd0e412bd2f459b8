// Raw dataset -> training shards (paper §3.1, §4.1). Two streaming passes keep memory bounded by one
// shard's users, not by the dataset: pass 1 validates every record, counts installs per app and
// appends the record to a temporary bucket file chosen by hash(user id) (= its final shard);
// pass 2 loads one bucket at a time, groups it by user, applies the per-user rules and writes the
// shard. Every record that is not used is either in rejects.ndjson (bad input, with file, line and
// reason) or counted in the manifest under the rule that dropped it.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { spawnWorker } from '../util/worker.js';
import { UserError } from '../util/errors.js';
import { child } from '../util/log.js';
import { Progress } from '../util/progress.js';
import { shardOf } from './hash.js';
import { LineWriter, readLines } from './lines.js';
import { DAY_MS, INSTALL, loadDatasetSpec, readRecords, type CatalogRow, type EventRow, type InstalledRow, type ReadStats } from './raw.js';
import { ShardWriter } from './shards.js';
import type { CatalogEntry, DatasetTruth, DropReason, PreparedManifest, ShardInfo, UserExample, Vocabulary } from './types.js';
import { buildVocabulary } from './vocab.js';
import { intStr } from './lines.js';

export const PREPARED_VERSION = 1;
export const WEEK_MS = 7 * DAY_MS;

/**
 * The vocabulary threshold when --min-installs is not given: an app must be held (installed list or
 * history install) by at least one user in USERS_PER_MIN_INSTALL, never fewer than 2 users (an app of
 * one user links nobody to anybody) and never more than the paper's 10, reached from 9,001 users on.
 * On a 957-user real dataset the fixed 10 left 89 users without any vocabulary app (no vector).
 */
export const MIN_INSTALLS_FLOOR = 2;
export const MIN_INSTALLS_CAP = 10;
export const USERS_PER_MIN_INSTALL = 1000;
export function defaultMinInstalls(users: number): number {
  return Math.min(MIN_INSTALLS_CAP, Math.max(MIN_INSTALLS_FLOOR, Math.ceil(users / USERS_PER_MIN_INSTALL)));
}

export interface PrepareOptions {
  input: string;
  out: string;
  shards?: number; // default 16
  minInstalls?: number; // default: defaultMinInstalls(users with history)
  weeklyCap?: number; // default 10 (paper)
  seqLen?: number; // default 25 (paper I)
  dateBuckets?: number; // default 52
  excludeApps?: string[];
  /**
   * Keep every app with this many installs (retention entries + history installs, both bounds
   * included) out of the vocabulary: the apps of the leave-app-out look-alike protocol (aetn eval).
   */
  leaveOutApps?: { min: number; max: number };
  progress?: boolean;
  workers?: number; // threads for shard assembly (default: the cores)
}

export interface PrepareResult {
  manifest: PreparedManifest;
  vocab: Vocabulary;
  rejected: number;
  rejectsFile: string;
  /** Wall seconds of pass 1 (read, validate, bucket) and pass 2 (assemble shards). */
  timings: { pass1: number; pass2: number };
}

const CTRL = /[\x00-\x1f]/;

class Counts {
  readonly c: Record<string, number> = {};
  add(k: string, n = 1): void {
    this.c[k] = (this.c[k] ?? 0) + n;
  }
}

interface Ev {
  type: number;
  t: number;
  line: number;
  id: string;
  app: number; // catalog ordinal
  held: boolean;
}

export function weeksBefore(t: number, referenceEndMs: number): number {
  return Math.floor((referenceEndMs - 1 - t) / WEEK_MS);
}

/** Week bucket of an event time (paper reference code: days before the reference date // 7), clamped. */
export function dateBucket(t: number, referenceEndMs: number, buckets: number): number {
  const w = weeksBefore(t, referenceEndMs);
  return w < 0 ? 0 : w >= buckets ? buckets - 1 : w;
}

function readTruth(path: string | undefined): DatasetTruth | null {
  if (!path) return null;
  let w: Record<string, unknown>;
  try {
    w = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new UserError(`truth file ${path} is not valid JSON: ${(err as Error).message}`);
  }
  const niche = (w.nicheCategories ?? []) as { name: string; ratePerMillion: number; baseRatePerMillion: number }[];
  const targets = (w.lookalikeTargets ?? []) as { appId: string }[];
  return {
    nicheCategories: niche.map((n) => n.name),
    nicheRatesPerMillion: niche.map((n) => n.ratePerMillion),
    nicheBaseRatesPerMillion: niche.map((n) => n.baseRatePerMillion),
    nicheScale: Number(w.nicheScale ?? 1),
    lookalikeTargetAppIds: targets.map((t) => t.appId),
    seed: typeof w.seed === 'number' ? w.seed : undefined,
  };
}

function prepareOutDir(out: string): void {
  if (existsSync(out)) {
    const entries = readdirSync(out);
    if (entries.length > 0 && !entries.includes('manifest.json') && !entries.includes('.aetn-prepare'))
      throw new UserError(`output directory ${out} is not empty and is not a prepared dataset; choose another --out`);
    // Re-running over an old prepared dataset: remove what we wrote before so no stale shard lingers.
    for (const e of entries) if (/^(shard-\d+\.bin|manifest\.json|vocab\.json|catalog\.json|labels\.ndjson|out-of-vocab\.ndjson|rejects\.ndjson|\.tmp-buckets)$/.test(e)) rmSync(join(out, e), { recursive: true, force: true });
  }
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, '.aetn-prepare'), 'prepared dataset written by aetn prepare\n');
}

/** What a shard's assembly needs; plain data so that it can be sent to a worker thread. */
export interface AssembleCtx {
  catalog: Pick<CatalogEntry, 'appId' | 'vocabIndex' | 'dropReason'>[];
  refEnd: number;
  weeklyCap: number;
  seqLen: number;
  dateBuckets: number;
  tmp: string;
  out: string;
  fInst: string;
  fEv: string;
  fHeld: string;
}

export interface AssembleResult {
  info: ShardInfo;
  counts: Record<string, number>;
  rejects: string;
  rejected: number;
  labels: string;
  labelUsers: number;
  oov: string;
}

class TextSink {
  parts: string[] = [];
  write(s: string): void {
    this.parts.push(s);
  }
  text(): string {
    return this.parts.join('');
  }
}

/** Pass 2 for one bucket: group its records by user, apply the per-user rules, write the shard. */
export function assembleShard(ctx: AssembleCtx, s: number): AssembleResult {
  const { catalog, refEnd, weeklyCap, seqLen, dateBuckets, tmp, out, fInst, fEv, fHeld } = ctx;
  const counts = new Counts();
  const rejectsW = new TextSink();
  const labelsW = new TextSink();
  const oovW = new TextSink();
  let rejected = 0;
  let labelUsers = 0;
  const reject = (file: string, line: number, key: string, reason: string, text: string): void => {
    rejected++;
    counts.add(`rejected.${key}`);
    rejectsW.write(`${JSON.stringify({ file, line, reason, record: text })}\n`);
  };
  const users = new Map<string, { ret: number[] | null; retLine: number; evs: Ev[] }>();
  const get = (u: string) => {
    let x = users.get(u);
    if (!x) users.set(u, (x = { ret: null, retLine: 0, evs: [] }));
    return x;
  };
  const bpath = join(tmp, `b${s}.txt`);
  for (const [line] of readLines(bpath)) {
    const f = line.split('\t');
    const u = get(f[1]);
    if (f[0] === 'R') {
      const ln = +f[2];
      if (u.ret !== null) {
        reject(fInst, ln, 'duplicate-user', `user ${f[1]} is listed again (first at line ${u.retLine})`, f[3]);
        continue;
      }
      u.ret = f[3] === '' ? [] : f[3].split(',').map(Number);
      u.retLine = ln;
    } else {
      // the event id is the last field and may itself contain tabs
      u.evs.push({ type: +f[2], t: +f[3], line: +f[4], app: +f[5], id: f.length === 7 ? f[6] : f.slice(6).join('\t'), held: f[0] === 'H' });
    }
  }
  rmSync(bpath);
  const ids = [...users.keys()].sort();
  const writer = new ShardWriter(join(out, `shard-${String(s).padStart(5, '0')}.bin`));
  for (const userId of ids) {
    const u = users.get(userId)!;
    users.delete(userId);
    // duplicated event ids: the first occurrence in file order (history file before held-out) wins
    const seen = new Map<string, Ev>();
    const hist: Ev[] = [];
    const held: Ev[] = [];
    for (const e of u.evs) {
      const prev = seen.get(e.id);
      if (prev) {
        reject(e.held ? fHeld : fEv, e.line, 'duplicate-event-id', `duplicated event id ${e.id} (first at ${prev.held ? fHeld : fEv} line ${prev.line})`, e.id);
        continue;
      }
      seen.set(e.id, e);
      (e.held ? held : hist).push(e);
    }
    hist.sort((a, b) => a.t - b.t || a.line - b.line);
    // at most `weeklyCap` operations per user per week, the most recent ones (paper §4.1)
    const keepEv: Ev[] = [];
    let week = -1;
    let inWeek = 0;
    for (let i = hist.length - 1; i >= 0; i--) {
      const w = weeksBefore(hist[i].t, refEnd);
      if (w !== week) {
        week = w;
        inWeek = 0;
      }
      if (inWeek < weeklyCap) {
        keepEv.push(hist[i]);
        inWeek++;
      } else counts.add('dropped.events.weekly-cap');
    }
    keepEv.reverse();
    // out-of-vocabulary apps are ground truth (e.g. look-alike adopters), not features: the weekly cap does not apply
    const oov = new Set<string>();
    for (const e of hist) {
      const c = catalog[e.app];
      if (e.type === INSTALL && (c.dropReason === 'excluded' || c.dropReason === 'below-threshold')) oov.add(c.appId);
    }
    const ins: Ev[] = [];
    const uns: Ev[] = [];
    for (const e of keepEv) {
      const c = catalog[e.app];
      if (c.vocabIndex < 0) {
        counts.add(`dropped.events.${c.dropReason}`);
        continue;
      }
      (e.type === INSTALL ? ins : uns).push(e);
    }
    if (ins.length > seqLen) counts.add('truncated.installs', ins.length - seqLen);
    if (uns.length > seqLen) counts.add('truncated.uninstalls', uns.length - seqLen);
    const insK = ins.slice(-seqLen);
    const unsK = uns.slice(-seqLen);
    const retSet = new Set<number>();
    for (const a of u.ret ?? []) {
      const c = catalog[a];
      if (c.vocabIndex < 0) {
        counts.add(`dropped.retention.${c.dropReason}`);
        if (c.dropReason === 'excluded' || c.dropReason === 'below-threshold') oov.add(c.appId);
      } else retSet.add(c.vocabIndex);
    }
    const retention = Int32Array.from(retSet).sort();
    const labelApps = new Set<string>();
    for (const e of held) {
      if (e.type === INSTALL) labelApps.add(catalog[e.app].appId);
      else counts.add('heldOut.uninstalls');
    }
    if (labelApps.size > 0) {
      labelUsers++;
      labelsW.write(`${JSON.stringify({ userId, appIds: [...labelApps].sort() })}\n`);
    }
    if (oov.size > 0) oovW.write(`${JSON.stringify({ userId, appIds: [...oov].sort() })}\n`);
    if (retention.length === 0 && insK.length === 0 && unsK.length === 0) {
      counts.add('users.empty-skipped');
      continue;
    }
    const ex: UserExample = {
      userId,
      retention,
      installs: Int32Array.from(insK, (e) => catalog[e.app].vocabIndex),
      installDates: Int32Array.from(insK, (e) => dateBucket(e.t, refEnd, dateBuckets)),
      installTimes: Float64Array.from(insK, (e) => e.t),
      uninstalls: Int32Array.from(unsK, (e) => catalog[e.app].vocabIndex),
      uninstallDates: Int32Array.from(unsK, (e) => dateBucket(e.t, refEnd, dateBuckets)),
      uninstallTimes: Float64Array.from(unsK, (e) => e.t),
      lastActiveMs: Math.max(0, insK.length ? insK[insK.length - 1].t : 0, unsK.length ? unsK[unsK.length - 1].t : 0),
    };
    writer.add(ex);
    counts.add('kept.retention', retention.length);
    counts.add('kept.installs', insK.length);
    counts.add('kept.uninstalls', unsK.length);
  }
  const info = writer.close();
  return { info: { file: basename(writer.path), ...info }, counts: counts.c, rejects: rejectsW.text(), rejected, labels: labelsW.text(), labelUsers, oov: oovW.text() };
}

async function assembleInWorkers(ctx: AssembleCtx, numShards: number, workers: number, results: (AssembleResult | null)[], tick: () => void): Promise<void> {
  let next = 0;
  const all: Worker[] = [];
  const one = (): Promise<void> =>
    new Promise((resolveP, rejectP) => {
      const wk = spawnWorker(import.meta.url, './prepare-worker', { workerData: ctx });
      all.push(wk);
      const give = (): void => {
        if (next < numShards) wk.postMessage(next++);
        else void wk.terminate().then(() => resolveP());
      };
      wk.on('message', (m: { shard: number; result?: AssembleResult; error?: string; ready?: boolean }) => {
        if (m.ready) return give();
        if (m.error !== undefined) {
          void wk.terminate();
          return rejectP(new UserError(m.error));
        }
        results[m.shard] = m.result!;
        tick();
        give();
      });
      wk.on('error', rejectP);
    });
  try {
    await Promise.all(Array.from({ length: workers }, one));
  } catch (err) {
    // one failed shard fails the run: stop the other threads instead of leaving them waiting
    await Promise.all(all.map((w) => w.terminate()));
    throw err;
  }
}

export async function prepare(opts: PrepareOptions): Promise<PrepareResult> {
  const log = child('prepare');
  const numShards = opts.shards ?? 16;
  const minInstallsFlag = opts.minInstalls;
  const weeklyCap = opts.weeklyCap ?? 10;
  const seqLen = opts.seqLen ?? 25;
  const dateBuckets = opts.dateBuckets ?? 52;
  if (!Number.isInteger(numShards) || numShards < 1 || numShards > 4096) throw new UserError(`--shards must be an integer in 1..4096 (got ${numShards})`);
  if (minInstallsFlag !== undefined && (!Number.isInteger(minInstallsFlag) || minInstallsFlag < 0))
    throw new UserError(`--min-installs must be a non-negative integer (got ${minInstallsFlag})`);
  if (!Number.isInteger(weeklyCap) || weeklyCap < 1) throw new UserError(`--weekly-cap must be a positive integer (got ${weeklyCap})`);
  if (!Number.isInteger(seqLen) || seqLen < 1 || seqLen > 1000) throw new UserError(`--seq-len must be an integer in 1..1000 (got ${seqLen})`);
  if (!Number.isInteger(dateBuckets) || dateBuckets < 1 || dateBuckets > 256) throw new UserError(`--date-buckets must be an integer in 1..256 (got ${dateBuckets})`);
  const ds = loadDatasetSpec(opts.input);
  const refEnd = ds.referenceEndMs;
  const truth = readTruth(ds.paths.truth);
  const out = opts.out;
  if (resolve(out) === resolve(opts.input)) throw new UserError('--out must differ from --in');
  prepareOutDir(out);
  const silent = opts.progress === false ? true : undefined;
  const counts = new Counts();
  const rejectsPath = join(out, 'rejects.ndjson');
  const rejects = new LineWriter(rejectsPath);
  let rejected = 0;
  const reject = (file: string, line: number, key: string, reason: string, text: string): void => {
    rejected++;
    counts.add(`rejected.${key}`);
    rejects.write(`${JSON.stringify({ file, line, reason, record: text })}\n`);
  };
  const label = (p: string | undefined): string => (p ? basename(p) : '');
  const checkReadable = (path: string, s: ReadStats): void => {
    if (s.lines > 0 && s.ok === 0) {
      rejects.close();
      throw new UserError(`${path}: none of its ${s.lines} records could be read (see ${rejectsPath}); is it the right file?`);
    }
  };

  // ---- catalog
  const catalog: CatalogEntry[] = [];
  const byApp = new Map<string, number>();
  const byPkg = new Map<string, number>();
  const catStats: ReadStats = { lines: 0, ok: 0, bad: 0 };
  const catFile = label(ds.paths.catalog);
  const catLine: number[] = [];
  for (const r of readRecords<CatalogRow>(ds.paths.catalog, 'catalog', catStats)) {
    if (!r.ok) {
      reject(catFile, r.line, 'malformed', r.reason, r.text);
      continue;
    }
    const row = r.row;
    const text = JSON.stringify(row);
    if (byApp.has(row.appId)) {
      reject(catFile, r.line, 'duplicate-app', `duplicate app_id ${row.appId} (first at line ${catLine[byApp.get(row.appId)!]})`, text);
      continue;
    }
    const pk = [...new Set(row.packages)];
    const clash = pk.find((p) => byPkg.has(p));
    if (clash !== undefined) {
      reject(catFile, r.line, 'package-conflict', `package ${clash} already belongs to app ${catalog[byPkg.get(clash)!].appId}`, text);
      continue;
    }
    const ord = catalog.length;
    catalog.push({ appId: row.appId, category: row.category, packages: pk, preinstalled: row.preinstalled, universal: row.universal, vocabIndex: -1, dropReason: null, installCount: 0 });
    catLine.push(r.line);
    byApp.set(row.appId, ord);
    for (const p of pk) byPkg.set(p, ord);
  }
  checkReadable(ds.paths.catalog, catStats);
  if (catalog.length === 0) {
    rejects.close();
    throw new UserError(`${ds.paths.catalog}: the app catalog has no apps`);
  }
  counts.add('catalog.apps', catalog.length);
  const lookup = (p: string): number | undefined => byPkg.get(p) ?? byApp.get(p);
  const excluded = new Set([...(ds.spec.excludeApps ?? []), ...(opts.excludeApps ?? [])]);
  for (const a of excluded) if (!byApp.has(a)) throw new UserError(`excluded app ${a} is not in the catalog`);

  // ---- pass 1: validate, count, bucket by user
  const tmp = join(out, '.tmp-buckets');
  mkdirSync(tmp, { recursive: true });
  const buckets = Array.from({ length: numShards }, (_, s) => new LineWriter(join(tmp, `b${s}.txt`), 1 << 18));
  const installCount = new Int32Array(catalog.length);
  // Users with history, counted only as far as the derived threshold can grow (bounded memory).
  const historyUsers = new Set<string>();
  const usersCountedTo = USERS_PER_MIN_INSTALL * MIN_INSTALLS_CAP;
  const noteUser = (u: string): void => {
    if (historyUsers.size < usersCountedTo) historyUsers.add(u);
  };
  const p1 = new Progress({ label: 'prepare: read', unit: 'lines', silent });
  const t1 = performance.now();

  if (ds.paths.installed) {
    const f = label(ds.paths.installed);
    const st: ReadStats = { lines: 0, ok: 0, bad: 0 };
    for (const r of readRecords<InstalledRow>(ds.paths.installed, 'installed', st)) {
      p1.tick();
      if (!r.ok) {
        reject(f, r.line, 'malformed', r.reason, r.text);
        continue;
      }
      const { userId, packages } = r.row;
      if (CTRL.test(userId)) {
        reject(f, r.line, 'malformed', 'user_id contains control characters', JSON.stringify(r.row));
        continue;
      }
      const apps = new Set<number>();
      for (const p of packages) {
        const a = lookup(p);
        if (a === undefined) reject(f, r.line, 'unknown-package', `unknown package ${p} in the installed list of user ${userId}`, p);
        else apps.add(a);
      }
      counts.add('installed.entries', packages.length);
      for (const a of apps) installCount[a]++;
      noteUser(userId);
      buckets[shardOf(userId, numShards)].write(`R\t${userId}\t${r.line}\t${[...apps].join(',')}\n`);
    }
    checkReadable(ds.paths.installed, st);
    counts.add('installed.users', st.ok);
  }

  const readEvents = (path: string, held: boolean): void => {
    const f = label(path);
    const st: ReadStats = { lines: 0, ok: 0, bad: 0 };
    const tag = held ? 'H' : 'E';
    for (const r of readRecords<EventRow>(path, 'events', st)) {
      p1.tick();
      if (!r.ok) {
        reject(f, r.line, 'malformed', r.reason, r.text);
        continue;
      }
      const e = r.row;
      if (CTRL.test(e.userId) || CTRL.test(e.eventId)) {
        reject(f, r.line, 'malformed', 'user_id or event_id contains control characters', JSON.stringify(e));
        continue;
      }
      const a = lookup(e.pkg);
      if (a === undefined) {
        reject(f, r.line, 'unknown-package', `unknown package ${e.pkg}`, JSON.stringify(e));
        continue;
      }
      if (!held && e.timeMs >= refEnd) {
        reject(f, r.line, 'future-date', `event time ${new Date(e.timeMs).toISOString()} is after the reference date ${ds.spec.referenceDate}`, JSON.stringify(e));
        continue;
      }
      if (held && (e.timeMs < refEnd || e.timeMs >= refEnd + ds.heldOutWeeks * WEEK_MS)) {
        const span = ds.heldOutWeeks === 1 ? 'the held-out week' : `the ${ds.heldOutWeeks} held-out weeks`;
        reject(f, r.line, 'outside-held-out-week', `event time ${new Date(e.timeMs).toISOString()} is outside ${span} after ${ds.spec.referenceDate}`, JSON.stringify(e));
        continue;
      }
      if (!held && e.type === INSTALL) installCount[a]++;
      if (!held) noteUser(e.userId);
      buckets[shardOf(e.userId, numShards)].write(`${tag}\t${e.userId}\t${e.type}\t${intStr(e.timeMs)}\t${r.line}\t${a}\t${e.eventId}\n`);
    }
    checkReadable(path, st);
    counts.add(held ? 'heldOut.events' : 'events.valid', st.ok);
  };
  if (ds.paths.events) readEvents(ds.paths.events, false);
  if (ds.paths.heldOut) readEvents(ds.paths.heldOut, true);
  for (const b of buckets) b.close();
  p1.finish();

  const numUsersHint = p1.count / 10; // rough: enough records that threads pay for their start-up

  // ---- vocabulary: the paper's app filters
  const minInstalls = minInstallsFlag ?? defaultMinInstalls(historyUsers.size);
  const minInstallsSource: 'flag' | 'derived' = minInstallsFlag === undefined ? 'derived' : 'flag';
  if (minInstallsSource === 'derived') {
    const n = historyUsers.size >= usersCountedTo ? `>= ${usersCountedTo}` : String(historyUsers.size);
    log.info({ minInstalls, historyUsers: n }, `vocabulary threshold: ${minInstalls} installs (derived from ${n} users; --min-installs sets it)`);
  }
  historyUsers.clear();
  for (let i = 0; i < catalog.length; i++) {
    const c = catalog[i];
    c.installCount = installCount[i];
    let why: DropReason | null = null;
    const leftOut = opts.leaveOutApps !== undefined && !c.universal && !c.preinstalled && c.installCount >= opts.leaveOutApps.min && c.installCount <= opts.leaveOutApps.max;
    if (excluded.has(c.appId) || leftOut) why = 'excluded';
    else if (c.universal) why = 'universal';
    else if (c.preinstalled) why = 'preinstalled';
    else if (c.installCount < minInstalls) why = 'below-threshold';
    c.dropReason = why;
    if (why) counts.add(`catalog.dropped.${why}`);
  }
  const vocab = buildVocabulary(catalog);
  if (vocab.apps.length === 0) log.warn('every app was dropped from the vocabulary; lower --min-installs?');
  counts.add('vocab.apps', vocab.apps.length);

  const t2 = performance.now();
  // ---- pass 2: per-bucket assembly
  const labelsW = new LineWriter(join(out, 'labels.ndjson'));
  const oovW = new LineWriter(join(out, 'out-of-vocab.ndjson'));
  const shards: ShardInfo[] = [];
  let numUsers = 0;
  let labelUsers = 0;
  const p2 = new Progress({ label: 'prepare: assemble', total: numShards, unit: 'shards', silent });
  const fInst = label(ds.paths.installed);
  const fEv = label(ds.paths.events);
  const fHeld = label(ds.paths.heldOut);
  const ctx: AssembleCtx = { catalog: catalog.map((c) => ({ appId: c.appId, vocabIndex: c.vocabIndex, dropReason: c.dropReason })), refEnd, weeklyCap, seqLen, dateBuckets, tmp, out, fInst, fEv, fHeld };
  // shards are independent: worker threads assemble them in parallel; results are merged in shard order,
  // so the output does not depend on the number of workers
  const results: (AssembleResult | null)[] = new Array(numShards).fill(null);
  const workers = Math.max(1, Math.min(opts.workers ?? availableParallelism(), numShards, 8));
  const threaded = workers > 1 && (opts.workers !== undefined || numUsersHint >= 20000);
  if (threaded) await assembleInWorkers(ctx, numShards, workers, results, () => p2.tick());
  for (let s = 0; s < numShards; s++) {
    const r = results[s] ?? assembleShard(ctx, s);
    results[s] = null;
    for (const [k, v] of Object.entries(r.counts)) counts.add(k, v);
    rejected += r.rejected;
    rejects.write(r.rejects);
    labelsW.write(r.labels);
    oovW.write(r.oov);
    labelUsers += r.labelUsers;
    const info = r.info;
    shards.push(info);
    numUsers += info.users;
    if (!threaded) p2.tick();
  }
  p2.finish();
  const t3 = performance.now();
  rmSync(tmp, { recursive: true, force: true });
  labelsW.close();
  oovW.close();
  rejects.close();
  counts.add('users.written', numUsers);
  counts.add('rejected.total', rejected);

  const manifest: PreparedManifest = {
    format: 'aetn-prepared',
    version: PREPARED_VERSION,
    vocabHash: vocab.hash,
    referenceDate: ds.spec.referenceDate,
    seqLen,
    dateBuckets,
    weeklyCap,
    minInstalls,
    minInstallsSource,
    numUsers,
    usersWithoutVector: counts.c['users.empty-skipped'] ?? 0,
    numApps: vocab.apps.length,
    numCategories: vocab.categories.length,
    shards,
    hasLabels: Boolean(ds.paths.heldOut),
    labelWeeks: ds.heldOutWeeks,
    labelUsers,
    counts: Object.fromEntries(Object.entries(counts.c).sort(([a], [b]) => (a < b ? -1 : 1))),
    source: {
      dir: resolve(opts.input),
      files: Object.fromEntries(Object.entries(ds.paths).filter(([, v]) => v).map(([k, v]) => [k, basename(v as string)])),
    },
    truth,
    createdBy: 'aetn prepare',
  };
  const atomic = (name: string, data: string): void => {
    const p = join(out, name);
    writeFileSync(`${p}.tmp`, data);
    renameSync(`${p}.tmp`, p);
  };
  atomic('vocab.json', `${JSON.stringify(vocab)}\n`);
  atomic('catalog.json', `${JSON.stringify(catalog)}\n`);
  // the manifest goes last: its presence marks a complete prepared dataset
  atomic('manifest.json', `${JSON.stringify(manifest, null, 2)}\n`);
  rmSync(join(out, '.aetn-prepare'), { force: true });
  log.info({ users: numUsers, apps: vocab.apps.length, rejected }, 'prepared');
  return { manifest, vocab, rejected, rejectsFile: rejectsPath, timings: { pass1: (t2 - t1) / 1000, pass2: (t3 - t2) / 1000 } };
}
