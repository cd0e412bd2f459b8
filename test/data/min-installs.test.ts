// The vocabulary threshold derived from the dataset's size, and the count of users it leaves
// without any vocabulary app (hence without a vector), in prepare's manifest and summary.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../../services/cli/main.js';
import { defaultMinInstalls, prepare } from '../../src/data/prepare.js';
import { openPrepared } from '../../src/data/prepared.js';
import { daysAgo, tmp, writeRaw, type App, type Ev } from './helpers.js';

const APPS: App[] = [
  { id: 'common', packages: ['p.common'], category: 'tools.notes' },
  { id: 'two', packages: ['p.two'], category: 'game.card' }, // held by 2 users only
  { id: 'three', packages: ['p.three'], category: 'game.chess' }, // held by 3 users only
];

/**
 * 2,500 users with history: 1,200 from the installed lists, 1,300 only from install events (so the
 * derived threshold counts both: 3, where the installed lists alone would give 2). Users x1, x2 hold
 * only 'two'; y1..y3 only 'three'.
 */
function world(): Parameters<typeof writeRaw>[1] {
  const installed: [string, string[]][] = [];
  for (let i = 0; i < 1195; i++) installed.push([`i${i}`, ['p.common']]);
  installed.push(['x1', ['p.two']], ['x2', ['p.two']], ['y1', ['p.three']], ['y2', ['p.three']], ['y3', ['p.three']]);
  const events: Ev[] = [];
  for (let i = 0; i < 1300; i++) events.push({ id: `e${i}`, user: `ev${i}`, pkg: 'p.common', type: 'install', t: daysAgo(3) });
  return { apps: APPS, installed, events };
}

describe('vocabulary threshold from the dataset size', () => {
  it('is 1 per 1000 users, at least 2 and at most the paper\'s 10', () => {
    const cases: [number, number][] = [[0, 2], [1, 2], [957, 2], [2000, 2], [2001, 3], [5000, 5], [9000, 9], [9001, 10], [1_000_000, 10]];
    for (const [users, want] of cases) expect(defaultMinInstalls(users), String(users)).toBe(want);
  });

  it('derives 3 from 2,500 users with history (installed lists and events), and an explicit value wins', async () => {
    const dir = tmp();
    writeRaw(join(dir, 'raw'), world());
    const derived = await prepare({ input: join(dir, 'raw'), out: join(dir, 'p'), shards: 2, progress: false });
    expect(derived.manifest.minInstalls).toBe(3);
    expect(derived.manifest.minInstallsSource).toBe('derived');
    // 'two' (2 holders) is dropped: its two users keep no vocabulary app and get no vector.
    expect(derived.manifest.usersWithoutVector).toBe(2);
    expect(derived.manifest.counts['users.empty-skipped']).toBe(2);
    expect(derived.manifest.numUsers).toBe(2498);
    expect(derived.vocab.apps.map((a) => a.appId).sort()).toEqual(['common', 'three']);
    const ds = await openPrepared(join(dir, 'p'));
    expect(ds.manifest.usersWithoutVector).toBe(2);

    const two = await prepare({ input: join(dir, 'raw'), out: join(dir, 'p2'), shards: 2, minInstalls: 2, progress: false });
    expect([two.manifest.minInstalls, two.manifest.minInstallsSource, two.manifest.usersWithoutVector, two.manifest.numUsers]).toEqual([2, 'flag', 0, 2500]);
    const ten = await prepare({ input: join(dir, 'raw'), out: join(dir, 'p10'), shards: 2, minInstalls: 10, progress: false });
    expect([ten.manifest.minInstalls, ten.manifest.minInstallsSource, ten.manifest.usersWithoutVector]).toEqual([10, 'flag', 5]);
  });

  it('prepare prints the threshold and the users left without a vector', async () => {
    const dir = tmp();
    writeRaw(join(dir, 'raw'), world());
    const out: string[] = [];
    const orig = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((s: string) => (out.push(String(s)), true)) as typeof process.stdout.write;
    let code: number;
    try {
      code = await runCli(['prepare', '--in', join(dir, 'raw'), '--out', join(dir, 'p'), '--shards', '2']);
    } finally {
      process.stdout.write = orig;
    }
    expect(code).toBe(0);
    const text = out.join('');
    expect(text).toMatch(/min installs 3 \(derived from the number of users; --min-installs sets it\)/);
    expect(text).toMatch(/users without a vector: 2 of 2500 \(none of their apps is in the vocabulary/);
  });
});
