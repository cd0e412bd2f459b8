// The raw input format users bring (and `aetn generate` writes): a directory with dataset.json naming
// an app catalog, each user's installed apps, dated install/uninstall events and optionally the
// held-out week's events. Each file is CSV (with a header row) or NDJSON, chosen by extension.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { extname, isAbsolute, join } from 'node:path';
import { UserError } from '../util/errors.js';
import { readLines } from './lines.js';

export const RAW_FORMAT = 'aetn-raw/1';

const isPlain = (x: string): boolean => x.length > 0 && x.charCodeAt(0) > 32 && x.charCodeAt(x.length - 1) > 32;
export const DAY_MS = 86_400_000;

export interface DatasetSpec {
  format?: string;
  /** Last day of history (YYYY-MM-DD, UTC). History events must fall on or before it. */
  referenceDate: string;
  catalog: string;
  installed?: string;
  events?: string;
  /** Events of the week(s) after the reference date: ground truth for next-week tests, never features. */
  heldOut?: string;
  /** How many weeks after the reference date the held-out file covers (default 1). */
  heldOutWeeks?: number;
  /** App ids kept out of the vocabulary (e.g. a look-alike target whose adopters are the labels). */
  excludeApps?: string[];
  /** Optional ground-truth file of a generated world (truth/world.json). */
  truth?: string;
}

export interface ResolvedDataset {
  dir: string;
  spec: DatasetSpec;
  /** Absolute paths of the files named by the spec. */
  paths: { catalog: string; installed?: string; events?: string; heldOut?: string; truth?: string };
  referenceEndMs: number; // first ms after the reference date
  /** Weeks covered by the held-out file (spec.heldOutWeeks, default 1). */
  heldOutWeeks: number;
}

export function parseDate(s: string, what: string): number {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s ?? '');
  if (!m) throw new UserError(`${what} must be a date YYYY-MM-DD (got ${JSON.stringify(s)})`);
  const t = Date.UTC(+m[1], +m[2] - 1, +m[3]);
  if (new Date(t).toISOString().slice(0, 10) !== s) throw new UserError(`${what} is not a valid date: ${s}`);
  return t;
}

export function loadDatasetSpec(dir: string): ResolvedDataset {
  const specPath = join(dir, 'dataset.json');
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new UserError(`input directory not found: ${dir}`);
  if (!existsSync(specPath)) throw new UserError(`${specPath} is missing: a raw dataset directory needs dataset.json naming its files (see docs/parts/data.md)`);
  let spec: DatasetSpec;
  try {
    spec = JSON.parse(readFileSync(specPath, 'utf8')) as DatasetSpec;
  } catch (err) {
    throw new UserError(`${specPath} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof spec !== 'object' || spec === null) throw new UserError(`${specPath} must hold a JSON object`);
  if (spec.format !== undefined && spec.format !== RAW_FORMAT) throw new UserError(`${specPath}: unsupported format ${JSON.stringify(spec.format)} (expected ${RAW_FORMAT})`);
  const refStart = parseDate(spec.referenceDate, `${specPath}: referenceDate`);
  if (typeof spec.catalog !== 'string') throw new UserError(`${specPath}: "catalog" (the app catalog file) is required`);
  if (!spec.installed && !spec.events) throw new UserError(`${specPath}: name at least one of "installed" or "events"`);
  if (spec.excludeApps !== undefined && (!Array.isArray(spec.excludeApps) || spec.excludeApps.some((a) => typeof a !== 'string')))
    throw new UserError(`${specPath}: "excludeApps" must be a list of app ids`);
  const heldOutWeeks = spec.heldOutWeeks ?? 1;
  if (!Number.isInteger(heldOutWeeks) || heldOutWeeks < 1 || heldOutWeeks > 52) throw new UserError(`${specPath}: "heldOutWeeks" must be an integer in 1..52 (got ${JSON.stringify(spec.heldOutWeeks)})`);
  const res = (f: string | undefined, key: string): string | undefined => {
    if (f === undefined || f === null) return undefined;
    if (typeof f !== 'string' || f === '') throw new UserError(`${specPath}: "${key}" must be a file name`);
    const p = isAbsolute(f) ? f : join(dir, f);
    if (!existsSync(p)) throw new UserError(`${specPath}: ${key} file not found: ${p}`);
    return p;
  };
  return {
    dir,
    spec,
    paths: {
      catalog: res(spec.catalog, 'catalog')!,
      installed: res(spec.installed, 'installed'),
      events: res(spec.events, 'events'),
      heldOut: res(spec.heldOut, 'heldOut'),
      truth: res(spec.truth, 'truth'),
    },
    referenceEndMs: refStart + DAY_MS,
    heldOutWeeks,
  };
}

// ---------------------------------------------------------------- records

export type FileKind = 'catalog' | 'installed' | 'events';

export const COLUMNS: Record<FileKind, { required: string[]; optional: string[] }> = {
  catalog: { required: ['app_id', 'packages', 'category'], optional: ['preinstalled', 'universal'] },
  installed: { required: ['user_id', 'packages'], optional: [] },
  events: { required: ['event_id', 'user_id', 'package', 'type', 'timestamp'], optional: [] },
};

export interface CatalogRow {
  appId: string;
  packages: string[];
  category: string;
  preinstalled: boolean;
  universal: boolean;
}
export interface InstalledRow {
  userId: string;
  packages: string[];
}
export const INSTALL = 1;
export const UNINSTALL = 2;
export interface EventRow {
  eventId: string;
  userId: string;
  pkg: string;
  type: 1 | 2;
  timeMs: number;
}

export type Parsed<T> = { ok: true; line: number; row: T } | { ok: false; line: number; reason: string; text: string };

export function isNdjson(path: string): boolean {
  const e = extname(path).toLowerCase();
  if (e === '.ndjson' || e === '.jsonl') return true;
  if (e === '.csv') return false;
  throw new UserError(`${path}: unknown file type ${JSON.stringify(e)}; use .csv, .ndjson or .jsonl`);
}

/** Split one CSV line (RFC 4180 quoting within a line; records do not span lines). */
export function splitCsv(line: string): string[] | null {
  if (line.indexOf('"') < 0) return line.split(',');
  const out: string[] = [];
  let i = 0;
  const n = line.length;
  for (;;) {
    if (line.charCodeAt(i) === 34) {
      let s = '';
      i++;
      for (;;) {
        const q = line.indexOf('"', i);
        if (q < 0) return null; // unterminated quote
        s += line.slice(i, q);
        if (line.charCodeAt(q + 1) === 34) {
          s += '"';
          i = q + 2;
          continue;
        }
        i = q + 1;
        break;
      }
      out.push(s);
      if (i === n) return out;
      if (line.charCodeAt(i) !== 44) return null; // text after a closing quote
      i++;
    } else {
      const c = line.indexOf(',', i);
      const end = c < 0 ? n : c;
      const field = line.slice(i, end);
      if (field.indexOf('"') >= 0) return null;
      out.push(field);
      if (c < 0) return out;
      i = c + 1;
    }
  }
}

export function csvField(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function parseBool(v: unknown): boolean | null {
  if (v === undefined || v === null || v === '' || v === false || v === 0) return false;
  if (v === true || v === 1) return true;
  const s = String(v).trim().toLowerCase();
  if (s === '1' || s === 'true' || s === 'yes' || s === 'y') return true;
  if (s === '0' || s === 'false' || s === 'no' || s === 'n') return false;
  return null;
}

function parseList(v: unknown): string[] | null {
  if (Array.isArray(v)) {
    if (!v.every((x) => typeof x === 'string')) return null;
    return v.map((x) => x.trim()).filter((x) => x !== '');
  }
  if (typeof v !== 'string') return null;
  if (v === '') return [];
  const parts = v.split('|');
  let clean = true;
  for (const x of parts) if (!isPlain(x)) clean = false;
  return clean ? parts : parts.map((x) => x.trim()).filter((x) => x !== '');
}

const ISO_NO_TZ = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$/;

/** Milliseconds since the epoch from an integer (ms) or an ISO 8601 string (UTC when no zone is given). */
export function parseTimestamp(v: unknown): number | null {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : null;
  if (typeof v !== 'string' || v === '') return null;
  const c = v.charCodeAt(0);
  if (c >= 48 && c <= 57 && /^\d+$/.test(v)) {
    const n = Number(v);
    return Number.isSafeInteger(n) ? n : null;
  }
  const t = Date.parse(ISO_NO_TZ.test(v) ? (v.length === 10 ? `${v}T00:00:00Z` : `${v}Z`) : v);
  return Number.isFinite(t) && t >= 0 ? t : null;
}

function str(v: unknown): string | null {
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v !== 'string') return null;
  const s = v.trim();
  return s === '' ? null : s;
}

type Getter = (col: string) => unknown;

function rowOf(kind: FileKind, get: Getter): CatalogRow | InstalledRow | EventRow | string {
  if (kind === 'catalog') {
    const appId = str(get('app_id'));
    if (!appId) return 'missing app_id';
    const packages = parseList(get('packages'));
    if (!packages || packages.length === 0) return 'missing packages';
    const category = str(get('category'));
    if (!category) return 'missing category';
    const pre = parseBool(get('preinstalled'));
    if (pre === null) return `bad preinstalled flag ${JSON.stringify(get('preinstalled'))}`;
    const uni = parseBool(get('universal'));
    if (uni === null) return `bad universal flag ${JSON.stringify(get('universal'))}`;
    return { appId, packages, category, preinstalled: pre, universal: uni };
  }
  if (kind === 'installed') {
    const userId = str(get('user_id'));
    if (!userId) return 'missing user_id';
    const packages = parseList(get('packages'));
    if (!packages) return 'bad packages list';
    return { userId, packages };
  }
  const eventId = str(get('event_id'));
  if (!eventId) return 'missing event_id';
  const userId = str(get('user_id'));
  if (!userId) return 'missing user_id';
  const pkg = str(get('package'));
  if (!pkg) return 'missing package';
  const typeRaw = get('type');
  const ts = typeof typeRaw === 'string' ? typeRaw.trim().toLowerCase() : typeRaw;
  const type = ts === 'install' ? 1 : ts === 'uninstall' ? 2 : 0;
  if (type === 0) return `bad type ${JSON.stringify(typeRaw)} (expected install or uninstall)`;
  const timeMs = parseTimestamp(typeof get('timestamp') === 'string' ? (get('timestamp') as string).trim() : get('timestamp'));
  if (timeMs === null) return `bad timestamp ${JSON.stringify(get('timestamp'))} (expected ms since epoch or ISO 8601)`;
  return { eventId, userId, pkg, type, timeMs };
}

/** The common case of an event CSV line (no quotes, no padding, ms timestamp); null defers to the general parser. */
function fastEvent(f: string[], ix: number[]): EventRow | null {
  const eventId = f[ix[0]];
  const userId = f[ix[1]];
  const pkg = f[ix[2]];
  const ty = f[ix[3]];
  const ts = f[ix[4]];
  if (!isPlain(eventId) || !isPlain(userId) || !isPlain(pkg) || ts.length === 0 || ts.length > 15) return null;
  const type = ty === 'install' ? 1 : ty === 'uninstall' ? 2 : 0;
  if (type === 0) return null;
  for (let i = 0; i < ts.length; i++) {
    const c = ts.charCodeAt(i);
    if (c < 48 || c > 57) return null;
  }
  return { eventId, userId, pkg, type, timeMs: +ts };
}

export interface ReadStats {
  lines: number; // data lines (header and blank lines excluded)
  ok: number;
  bad: number;
}

/**
 * Parse every record of a raw file. Malformed records come back as `{ ok: false }` with the line and
 * the reason, for the rejects file. A file whose header (CSV) or first records (NDJSON) show it is
 * not this kind of file at all throws UserError: that is a caller mistake, not a bad record.
 */
export function* readRecords<T extends CatalogRow | InstalledRow | EventRow>(path: string, kind: FileKind, stats?: ReadStats): Generator<Parsed<T>> {
  const nd = isNdjson(path);
  const cols = COLUMNS[kind];
  let index: Map<string, number> | null = null;
  let fields: string[] = [];
  let obj: Record<string, unknown> = {};
  const getCsv: Getter = (c) => {
    const i = index!.get(c);
    return i === undefined ? undefined : fields[i];
  };
  const getObj: Getter = (c) => obj[c];
  let fastEvents: number[] | null = null;
  let seenData = false;
  let firstBadJson = 0;
  const s = stats ?? { lines: 0, ok: 0, bad: 0 };
  for (const [line, no] of readLines(path)) {
    if (line.trim() === '') continue;
    if (!nd && index === null) {
      const header = splitCsv(line.charCodeAt(0) === 0xfeff ? line.slice(1) : line);
      const names = (header ?? []).map((h) => h.trim().toLowerCase());
      const missing = cols.required.filter((c) => !names.includes(c));
      if (!header || missing.length > 0)
        throw new UserError(`${path}: line ${no} must be a CSV header naming ${cols.required.join(', ')} (missing ${missing.join(', ') || 'a valid header'}); is this a ${kind} file?`);
      index = new Map(names.map((n, i) => [n, i]));
      if (kind === 'events') fastEvents = ['event_id', 'user_id', 'package', 'type', 'timestamp'].map((c) => index!.get(c)!);
      continue;
    }
    s.lines++;
    let parsed: ReturnType<typeof rowOf>;
    if (nd) {
      try {
        const v = JSON.parse(line) as unknown;
        if (typeof v !== 'object' || v === null || Array.isArray(v)) parsed = 'not a JSON object';
        else {
          obj = v as Record<string, unknown>;
          parsed = rowOf(kind, getObj);
        }
      } catch {
        parsed = 'malformed JSON';
        if (!seenData && firstBadJson === 0) firstBadJson = no;
      }
    } else if (fastEvents && line.indexOf('"') < 0 && (fields = line.split(',')).length === index!.size) {
      parsed = fastEvent(fields, fastEvents) ?? rowOf(kind, getCsv);
    } else {
      const f = splitCsv(line);
      if (f === null) parsed = 'malformed CSV (bad quoting)';
      else if (f.length !== index!.size) parsed = `malformed CSV: ${f.length} fields, header has ${index!.size}`;
      else {
        fields = f;
        parsed = rowOf(kind, getCsv);
      }
    }
    if (typeof parsed === 'string') {
      s.bad++;
      // The first lines of an NDJSON file not even being JSON means the file is not NDJSON at all.
      if (nd && !seenData && s.lines >= 3 && s.bad === s.lines && firstBadJson > 0)
        throw new UserError(`${path}: not NDJSON (lines ${firstBadJson}..${no} are not JSON records)`);
      yield { ok: false, line: no, reason: parsed, text: line.length > 2000 ? `${line.slice(0, 2000)}…` : line };
    } else {
      s.ok++;
      seenData = true;
      yield { ok: true, line: no, row: parsed as T };
    }
  }
  if (!nd && index === null && s.lines === 0) {
    // an empty CSV (not even a header) carries nothing: fine for optional files, checked by the caller
  }
}
