import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { prepare } from '../../src/data/prepare.js';
import { installersOf, openPrepared } from '../../src/data/prepared.js';
import type { UserExample } from '../../src/data/types.js';
import { UserError } from '../../src/util/errors.js';
import { collect, daysAgo, DAY, REF_END, tmp, writeRaw, type App, type Ev } from './helpers.js';

const APPS: App[] = [
  { id: 'a1', packages: ['p.a1', 'p.a1.lite'], category: 'game.puzzle' },
  { id: 'a2', packages: ['p.a2'], category: 'game.card' },
  { id: 'a3', packages: ['p.a3'], category: 'finance.stocks' },
  { id: 'uni', packages: ['p.uni'], category: 'social.chat', uni: true },
  { id: 'pre', packages: ['p.pre'], category: 'tools.camera', pre: true },
  { id: 'rare', packages: ['p.rare'], category: 'misc.rare' },
  { id: 'tgt', packages: ['p.tgt'], category: 'lifestyle.astrology' },
];
// enough installs that a1..a3 pass the threshold (min 2) in every test
const BASE_INSTALLED: [string, string[]][] = [
  ['base1', ['p.a1', 'p.a2', 'p.a3', 'p.uni', 'p.pre']],
  ['base2', ['p.a1', 'p.a2', 'p.a3', 'p.uni', 'p.pre', 'p.tgt']],
];

async function run(d: Parameters<typeof writeRaw>[1], opts: { minInstalls?: number; seqLen?: number } = {}) {
  const dir = tmp();
  writeRaw(join(dir, 'raw'), d);
  const res = await prepare({ input: join(dir, 'raw'), out: join(dir, 'p'), shards: 3, minInstalls: opts.minInstalls ?? 2, seqLen: opts.seqLen, progress: false });
  const ds = await openPrepared(join(dir, 'p'));
  const ex = new Map<string, UserExample>();
  for await (const e of ds.examples()) ex.set(e.userId, e);
  const rejects = readFileSync(join(dir, 'p', 'rejects.ndjson'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { file: string; line: number; reason: string; record: string });
  const idx = (appId: string): number => ds.catalog.byId.get(appId)!.vocabIndex;
  return { dir, res, ds, ex, rejects, idx, counts: res.manifest.counts };
}

describe('preprocessing rules', () => {
  it('keeps at most the 10 most recent operations per user per week', async () => {
    const events: Ev[] = [];
    // 13 installs within one week (days 14..20 before the reference date), 2 in an earlier week
    for (let i = 0; i < 13; i++) events.push({ id: `w${i}`, user: 'u1', pkg: i % 2 ? 'p.a1' : 'p.a2', type: 'install', t: daysAgo(20) + i * 3_600_000 });
    events.push({ id: 'old1', user: 'u1', pkg: 'p.a3', type: 'install', t: daysAgo(40) }, { id: 'old2', user: 'u1', pkg: 'p.a3', type: 'uninstall', t: daysAgo(39) });
    const { ex, counts } = await run({ apps: APPS, installed: BASE_INSTALLED, events });
    const u = ex.get('u1')!;
    expect(counts['dropped.events.weekly-cap']).toBe(3);
    expect(u.installs.length).toBe(11); // 1 old + the 10 most recent of the busy week
    const busy = [...u.installTimes].filter((t) => t >= daysAgo(20));
    expect(busy.length).toBe(10);
    expect(Math.min(...busy)).toBe(daysAgo(20) + 3 * 3_600_000); // the 3 oldest of that week went
    expect(u.uninstalls.length).toBe(1);
  });

  it('drops near-universal, pre-installed, below-threshold and excluded apps, counting each', async () => {
    const { ex, ds, counts, idx } = await run({
      apps: APPS,
      installed: [...BASE_INSTALLED, ['u1', ['p.a1', 'p.uni', 'p.pre', 'p.rare', 'p.tgt']]],
      events: [
        { id: 'e1', user: 'u1', pkg: 'p.uni', type: 'install', t: daysAgo(3) },
        { id: 'e2', user: 'u1', pkg: 'p.pre', type: 'uninstall', t: daysAgo(3) },
        { id: 'e3', user: 'u1', pkg: 'p.a2', type: 'install', t: daysAgo(2) },
      ],
      excludeApps: ['tgt'],
    });
    const byId = ds.catalog.byId;
    expect(byId.get('uni')!.dropReason).toBe('universal');
    expect(byId.get('pre')!.dropReason).toBe('preinstalled');
    expect(byId.get('rare')!.dropReason).toBe('below-threshold');
    expect(byId.get('tgt')!.dropReason).toBe('excluded');
    expect(byId.get('a1')!.dropReason).toBeNull();
    expect(ds.vocab.apps.map((a) => a.appId)).toEqual(['a1', 'a2', 'a3']);
    expect(ds.vocab.categories).toEqual(['finance.stocks', 'game.card', 'game.puzzle']);
    expect([...ex.get('u1')!.retention]).toEqual([idx('a1')]);
    expect([...ex.get('u1')!.installs]).toEqual([idx('a2')]);
    expect(ex.get('u1')!.uninstalls.length).toBe(0);
    expect(counts['dropped.retention.universal']).toBe(3);
    expect(counts['dropped.retention.preinstalled']).toBe(3);
    expect(counts['dropped.retention.below-threshold']).toBe(1);
    expect(counts['dropped.retention.excluded']).toBe(2);
    expect(counts['dropped.events.universal']).toBe(1);
    expect(counts['dropped.events.preinstalled']).toBe(1);
    // dropped apps stay in the catalog with their category, and excluded ones keep their adopters
    expect(ds.catalog.categoryOf('tgt')).toBe('lifestyle.astrology');
    const oov = await collect(ds.outOfVocab());
    expect(oov.sort((a, b) => a.userId.localeCompare(b.userId))).toEqual([{ userId: 'base2', appIds: ['tgt'] }, { userId: 'u1', appIds: ['rare', 'tgt'] }]);
    const inst = await installersOf(ds, ['tgt', 'a2']);
    expect(inst.get('tgt')!.sort()).toEqual(['base2', 'u1']);
    expect(inst.get('a2')!.sort()).toEqual(['base1', 'base2', 'u1']);
  });

  it('the install-count threshold counts retention entries plus history installs', async () => {
    const d = { apps: APPS, installed: [...BASE_INSTALLED, ['u1', ['p.rare']]] as [string, string[]][], events: [{ id: 'r1', user: 'u2', pkg: 'p.rare', type: 'install' as const, t: daysAgo(5) }] };
    const a = await run(d, { minInstalls: 2 });
    expect(a.ds.catalog.byId.get('rare')!.installCount).toBe(2);
    expect(a.ds.catalog.byId.get('rare')!.dropReason).toBeNull();
    const b = await run(d, { minInstalls: 3 });
    expect(b.ds.catalog.byId.get('rare')!.dropReason).toBe('below-threshold');
    expect(b.ds.vocab.hash).not.toBe(a.ds.vocab.hash);
  });

  it('merges the package names of one app into one id', async () => {
    const { ex, idx, ds } = await run({
      apps: APPS,
      installed: [...BASE_INSTALLED, ['u1', ['p.a1', 'p.a1.lite', 'p.a2']]],
      events: [
        { id: 'e1', user: 'u1', pkg: 'p.a1.lite', type: 'install', t: daysAgo(9) },
        { id: 'e2', user: 'u1', pkg: 'p.a1', type: 'uninstall', t: daysAgo(8) },
      ],
    });
    const u = ex.get('u1')!;
    expect([...u.retention]).toEqual([idx('a1'), idx('a2')].sort((a, b) => a - b));
    expect([...u.installs]).toEqual([idx('a1')]);
    expect([...u.uninstalls]).toEqual([idx('a1')]);
    expect(ds.vocab.apps[idx('a1')].packages).toEqual(['p.a1', 'p.a1.lite']);
    expect(ds.catalog.appOfPackage('p.a1.lite')).toBe('a1');
  });

  it('keeps the 25 most recent installs and uninstalls, oldest first, with week buckets', async () => {
    const events: Ev[] = [];
    // 30 installs and 28 uninstalls, one per 3 days: never more than 10 a week
    for (let i = 0; i < 30; i++) events.push({ id: `i${i}`, user: 'u1', pkg: ['p.a1', 'p.a2', 'p.a3'][i % 3], type: 'install', t: daysAgo(200 - 3 * i) });
    for (let i = 0; i < 28; i++) events.push({ id: `x${i}`, user: 'u1', pkg: 'p.a2', type: 'uninstall', t: daysAgo(199 - 3 * i) });
    const { ex, counts } = await run({ apps: APPS, installed: BASE_INSTALLED, events });
    const u = ex.get('u1')!;
    expect(u.installs.length).toBe(25);
    expect(u.uninstalls.length).toBe(25);
    expect(counts['truncated.installs']).toBe(5);
    expect(counts['truncated.uninstalls']).toBe(3);
    // most recent last: times ascending, and the 5 oldest installs are gone
    expect([...u.installTimes]).toEqual(Array.from({ length: 25 }, (_, k) => daysAgo(200 - 3 * (k + 5))));
    for (let k = 0; k < 25; k++) expect(u.installDates[k]).toBe(Math.floor((200 - 3 * (k + 5)) / 7));
    expect(u.lastActiveMs).toBe(Math.max(u.installTimes[24], u.uninstallTimes[24]));
    // seqLen is a flag
    const short = await run({ apps: APPS, installed: BASE_INSTALLED, events }, { seqLen: 4 });
    expect(short.ex.get('u1')!.installs.length).toBe(4);
  });

  it('buckets dates by days before the reference date // 7, clamped to 52 buckets', async () => {
    const days = [0, 6, 7, 13, 14, 363, 364, 400, 1000];
    const events: Ev[] = days.map((d, i) => ({ id: `e${i}`, user: 'u1', pkg: 'p.a1', type: 'install', t: daysAgo(d, 23) }));
    events.push({ id: 'last-ms', user: 'u2', pkg: 'p.a1', type: 'install', t: REF_END - 1 });
    const { ex } = await run({ apps: APPS, installed: BASE_INSTALLED, events });
    expect([...ex.get('u1')!.installDates]).toEqual([51, 51, 51, 51, 2, 1, 1, 0, 0]);
    expect([...ex.get('u2')!.installDates]).toEqual([0]);
  });

  it('stores retention as a sorted set of vocabulary indices', async () => {
    const { ex, idx } = await run({ apps: APPS, installed: [...BASE_INSTALLED, ['u1', ['p.a3', 'p.a1', 'p.a3', 'p.a2', 'p.a1.lite']]] });
    const r = [...ex.get('u1')!.retention];
    expect(r).toEqual([idx('a1'), idx('a2'), idx('a3')].sort((a, b) => a - b));
    expect(ex.get('u1')!.installs.length).toBe(0);
    expect(ex.get('u1')!.lastActiveMs).toBe(0);
  });

  it('accepts a dataset with no events at all', async () => {
    const { ex, res, ds } = await run({ apps: APPS, installed: [...BASE_INSTALLED, ['u1', ['p.a2']]] });
    expect(res.manifest.numUsers).toBe(3);
    expect(res.manifest.hasLabels).toBe(false);
    expect(await collect(ds.labels())).toEqual([]);
    expect(ex.get('u1')!.uninstalls.length).toBe(0);
  });

  it('reads CSV and NDJSON into identical shards; ISO timestamps equal ms', async () => {
    const events: Ev[] = [
      { id: 'e1', user: 'u1', pkg: 'p.a1', type: 'install', t: daysAgo(30) },
      { id: 'e2', user: 'u1', pkg: 'p.a1', type: 'uninstall', t: new Date(daysAgo(20)).toISOString() },
      { id: 'e3', user: 'u2', pkg: 'p.a2', type: 'install', t: daysAgo(1) },
    ];
    const heldOut: Ev[] = [{ id: 'h1', user: 'u1', pkg: 'p.tgt', type: 'install', t: REF_END + DAY }];
    const d = { apps: APPS, installed: [...BASE_INSTALLED, ['u1', ['p.a2']], ['u2', ['p.a3', 'p.a1.lite']]] as [string, string[]][], events, heldOut };
    const a = await run({ ...d, format: 'csv' });
    const b = await run({ ...d, format: 'ndjson' });
    expect(a.res.manifest.shards.map((s) => s.crc32)).toEqual(b.res.manifest.shards.map((s) => s.crc32));
    expect(a.res.manifest.vocabHash).toBe(b.res.manifest.vocabHash);
    expect(a.ex.get('u1')!.uninstallTimes[0]).toBe(daysAgo(20));
    expect(await collect(a.ds.labels())).toEqual([{ userId: 'u1', appIds: ['tgt'] }]);
    expect(await collect(b.ds.labels())).toEqual([{ userId: 'u1', appIds: ['tgt'] }]);
  });
});

describe('bad input goes to rejects with file, line and reason', () => {
  it('rejects each kind of bad record and keeps the rest', async () => {
    const events: Ev[] = [
      { id: 'ok1', user: 'u1', pkg: 'p.a1', type: 'install', t: daysAgo(3) }, // line 2
      { id: 'unk', user: 'u1', pkg: 'p.nope', type: 'install', t: daysAgo(3) }, // line 3: unknown package
      { id: 'fut', user: 'u1', pkg: 'p.a2', type: 'install', t: REF_END + 5 }, // line 4: future
      { id: 'ok1', user: 'u1', pkg: 'p.a2', type: 'install', t: daysAgo(2) }, // line 5: duplicated event id
      { id: 'bt', user: 'u1', pkg: 'p.a2', type: 'install', t: 'yesterday' }, // line 6: bad timestamp
    ];
    const { rejects, counts, ex, res } = await run({
      apps: APPS,
      installed: [...BASE_INSTALLED, ['u1', ['p.a1', 'p.ghost']], ['u1', ['p.a2']]],
      events,
      heldOut: [
        { id: 'h1', user: 'u1', pkg: 'p.a3', type: 'install', t: REF_END + 2 * DAY },
        { id: 'h2', user: 'u1', pkg: 'p.a3', type: 'install', t: REF_END + 8 * DAY }, // outside the week
        { id: 'ok1', user: 'u1', pkg: 'p.a3', type: 'install', t: REF_END + 3 * DAY }, // dup of a history id
      ],
      extraLines: { events: ['e9,u1,p.a1,reinstall,123', 'too,few,fields'], catalog: ['a1,p.other,game.x,0,0', 'a9,p.a2,game.x,0,0', 'a8,p.a8,game.x,maybe,0'] },
    });
    const find = (file: string, line: number) => rejects.find((r) => r.file === file && r.line === line);
    expect(find('events.csv', 3)?.reason).toMatch(/unknown package p\.nope/);
    expect(find('events.csv', 4)?.reason).toMatch(/after the reference date/);
    expect(find('events.csv', 5)?.reason).toMatch(/duplicated event id ok1 \(first at events\.csv line 2\)/);
    expect(find('events.csv', 6)?.reason).toMatch(/bad timestamp/);
    expect(find('events.csv', 7)?.reason).toMatch(/bad type/);
    expect(find('events.csv', 8)?.reason).toMatch(/malformed CSV: 3 fields/);
    expect(find('next.csv', 3)?.reason).toMatch(/outside the held-out week/);
    expect(find('next.csv', 4)?.reason).toMatch(/duplicated event id ok1/);
    expect(find('installed.csv', 4)?.reason).toMatch(/unknown package p\.ghost/);
    expect(find('installed.csv', 5)?.reason).toMatch(/listed again \(first at line 4\)/);
    expect(find('apps.csv', 9)?.reason).toMatch(/duplicate app_id a1/);
    expect(find('apps.csv', 10)?.reason).toMatch(/package p\.a2 already belongs to app a2/);
    expect(find('apps.csv', 11)?.reason).toMatch(/bad preinstalled flag/);
    expect(rejects.length).toBe(13);
    expect(res.rejected).toBe(13);
    expect(counts['rejected.total']).toBe(13);
    expect(counts['rejected.unknown-package']).toBe(2);
    expect(counts['rejected.future-date']).toBe(1);
    expect(counts['rejected.duplicate-event-id']).toBe(2);
    expect(counts['rejected.malformed']).toBe(4);
    // the good records survive
    const u = ex.get('u1')!;
    expect(u.installs.length).toBe(1);
    expect(u.retention.length).toBe(1);
    // every rejected record keeps its text so nothing is lost
    expect(find('events.csv', 8)?.record).toBe('too,few,fields');
  });

  it('refuses wholly unreadable input with a clear UserError', async () => {
    const dir = tmp();
    await expect(prepare({ input: join(dir, 'missing'), out: join(dir, 'p'), progress: false })).rejects.toThrow(UserError);
    // a CSV whose header is not an events header
    writeRaw(join(dir, 'r1'), { apps: APPS, installed: BASE_INSTALLED, events: [] });
    const { writeFileSync } = await import('node:fs');
    writeFileSync(join(dir, 'r1', 'events.csv'), '\u0000\u0001garbage\u00ff\nmore,garbage\n');
    await expect(prepare({ input: join(dir, 'r1'), out: join(dir, 'p1'), progress: false })).rejects.toThrow(/must be a CSV header naming event_id/);
    // NDJSON that is not JSON
    writeRaw(join(dir, 'r2'), { apps: APPS, installed: BASE_INSTALLED, format: 'ndjson' });
    writeFileSync(join(dir, 'r2', 'installed.ndjson'), 'a b c\nd e f\ng h i\nj k l\n');
    await expect(prepare({ input: join(dir, 'r2'), out: join(dir, 'p2'), progress: false })).rejects.toThrow(/not NDJSON/);
    // a catalog in which no record is valid
    writeRaw(join(dir, 'r3'), { apps: [], installed: BASE_INSTALLED, extraLines: { catalog: [',,,,', 'x,,y,0,0'] } });
    await expect(prepare({ input: join(dir, 'r3'), out: join(dir, 'p3'), progress: false })).rejects.toThrow(/none of its 2 records could be read/);
    // dataset.json naming a missing file
    writeFileSync(join(dir, 'r3', 'dataset.json'), JSON.stringify({ referenceDate: '2025-01-31', catalog: 'nope.csv', installed: 'installed.csv' }));
    await expect(prepare({ input: join(dir, 'r3'), out: join(dir, 'p4'), progress: false })).rejects.toThrow(/catalog file not found/);
    writeFileSync(join(dir, 'r3', 'dataset.json'), JSON.stringify({ referenceDate: '2025-02-30', catalog: 'apps.csv', installed: 'installed.csv' }));
    await expect(prepare({ input: join(dir, 'r3'), out: join(dir, 'p5'), progress: false })).rejects.toThrow(/not a valid date/);
  });
});

describe('parallel assembly', () => {
  it('writes the same bytes with 1 or 2 worker threads, bad records included', async () => {
    const { generate } = await import('../../src/data/generate.js');
    const { appendFileSync } = await import('node:fs');
    const dir = tmp();
    await generate({ users: 600, seed: 9, apps: 400, out: join(dir, 'raw'), progress: false, workers: 1 });
    appendFileSync(join(dir, 'raw', 'events.csv'), 'dup,u001,com.nope,install,1\nu001-0,u001,com.game.puzzle.a0,install,1700000000000\n');
    const files = ['rejects.ndjson', 'labels.ndjson', 'out-of-vocab.ndjson', 'vocab.json', 'catalog.json'];
    const out: Record<string, string>[] = [];
    for (const workers of [1, 2]) {
      const r = await prepare({ input: join(dir, 'raw'), out: join(dir, `p${workers}`), shards: 5, minInstalls: 3, progress: false, workers });
      expect(r.rejected).toBe(2);
      const got: Record<string, string> = {};
      for (const f of [...files, ...r.manifest.shards.map((s) => s.file)]) got[f] = readFileSync(join(dir, `p${workers}`, f)).toString('base64');
      got.counts = JSON.stringify(r.manifest.counts);
      out.push(got);
    }
    expect(out[1]).toEqual(out[0]);
  }, 60_000);
});
