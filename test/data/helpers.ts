// Small hand-made raw datasets for the preprocessing tests.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const REF = '2025-01-31';
export const REF_END = Date.UTC(2025, 1, 1); // first ms after the reference date
export const DAY = 86_400_000;
/** A time `days` days before the end of the reference date, at `hour` o'clock. */
export const daysAgo = (days: number, hour = 12): number => REF_END - (days + 1) * DAY + hour * 3_600_000;

export interface App {
  id: string;
  packages: string[];
  category: string;
  pre?: boolean;
  uni?: boolean;
}
export interface Ev {
  id: string;
  user: string;
  pkg: string;
  type: 'install' | 'uninstall';
  t: number | string;
}

export function tmp(prefix = 'aetn-data-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function writeRaw(
  dir: string,
  d: { apps: App[]; installed?: [string, string[]][]; events?: Ev[]; heldOut?: Ev[]; format?: 'csv' | 'ndjson'; excludeApps?: string[]; extraLines?: Partial<Record<'catalog' | 'installed' | 'events' | 'heldOut', string[]>> },
): string {
  mkdirSync(dir, { recursive: true });
  const nd = d.format === 'ndjson';
  const ext = nd ? 'ndjson' : 'csv';
  const q = (s: string): string => (/[",]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
  const cat = nd
    ? d.apps.map((a) => JSON.stringify({ app_id: a.id, packages: a.packages, category: a.category, preinstalled: !!a.pre, universal: !!a.uni }))
    : ['app_id,packages,category,preinstalled,universal', ...d.apps.map((a) => `${a.id},${q(a.packages.join('|'))},${a.category},${a.pre ? 1 : 0},${a.uni ? 1 : 0}`)];
  writeFileSync(join(dir, `apps.${ext}`), [...cat, ...(d.extraLines?.catalog ?? [])].join('\n') + '\n');
  const spec: Record<string, unknown> = { format: 'aetn-raw/1', referenceDate: REF, catalog: `apps.${ext}` };
  if (d.installed) {
    const lines = nd ? d.installed.map(([u, p]) => JSON.stringify({ user_id: u, packages: p })) : ['user_id,packages', ...d.installed.map(([u, p]) => `${u},${q(p.join('|'))}`)];
    writeFileSync(join(dir, `installed.${ext}`), [...lines, ...(d.extraLines?.installed ?? [])].join('\n') + '\n');
    spec.installed = `installed.${ext}`;
  }
  const evLines = (evs: Ev[]): string[] =>
    nd ? evs.map((e) => JSON.stringify({ event_id: e.id, user_id: e.user, package: e.pkg, type: e.type, timestamp: e.t })) : ['event_id,user_id,package,type,timestamp', ...evs.map((e) => `${e.id},${e.user},${e.pkg},${e.type},${e.t}`)];
  if (d.events) {
    writeFileSync(join(dir, `events.${ext}`), [...evLines(d.events), ...(d.extraLines?.events ?? [])].join('\n') + '\n');
    spec.events = `events.${ext}`;
  }
  if (d.heldOut) {
    writeFileSync(join(dir, `next.${ext}`), [...evLines(d.heldOut), ...(d.extraLines?.heldOut ?? [])].join('\n') + '\n');
    spec.heldOut = `next.${ext}`;
  }
  if (d.excludeApps) spec.excludeApps = d.excludeApps;
  writeFileSync(join(dir, 'dataset.json'), JSON.stringify(spec, null, 2));
  return dir;
}

export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}
