// End to end through the compiled CLI, as a user runs it (the test setup builds dist/ first).
import { spawnSync } from 'node:child_process';
import { appendFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openPrepared } from '../../src/data/prepared.js';
import { tmp } from './helpers.js';

const root = join(import.meta.dirname, '..', '..');
const bin = join(root, 'bin', 'aetn.js');

function aetn(args: string[], cwd: string) {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd, encoding: 'utf8', env: { ...process.env, AETN_PROGRESS: '0', AETN_LOG_LEVEL: 'warn' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('aetn generate / prepare / stats', () => {
  it('runs the documented example end to end', async () => {
    const cwd = tmp('aetn-cli-');
    const g = aetn(['generate', '--users', '2000', '--seed', '1', '--out', 'd'], cwd);
    expect(g.err).toBe('');
    expect(g.code).toBe(0);
    expect(g.out).toMatch(/generated 2000 users/);
    const p = aetn(['prepare', '--in', 'd', '--out', 'p'], cwd);
    expect(p.code).toBe(0);
    expect(p.out).toMatch(/prepared 2000 users into 16 shards/);
    expect(p.out).toMatch(/rejected records: 0/);
    const ds = await openPrepared(join(cwd, 'p'));
    expect(ds.manifest.numUsers).toBe(2000);
    expect(ds.manifest.seqLen).toBe(25);
    expect(ds.manifest.dateBuckets).toBe(52);
    expect(ds.nicheCategories.length).toBe(4);
    expect(ds.lookalikeTargets.length).toBe(1);
    expect(ds.catalog.byId.get(ds.lookalikeTargets[0])!.dropReason).toBe('excluded');
    // The numbers through --json (the human-readable table is for people, not for tests).
    const s = aetn(['stats', '--in', 'p', '--json'], cwd);
    expect(s.code).toBe(0);
    const st = JSON.parse(s.out) as { kind: string; users: number; niche: { category: string }[]; lookalike: { appId: string }[]; zipf: { exponent: number }; counts: Record<string, number> };
    expect(st.kind).toBe('prepared');
    expect(st.users).toBe(2000);
    expect(st.niche.map((n) => n.category).sort()).toEqual([...ds.nicheCategories].sort());
    expect(st.lookalike.map((l) => l.appId)).toEqual(ds.lookalikeTargets);
    expect(st.zipf.exponent).toBeGreaterThan(0);
    expect(st.counts['dropped.retention.universal']).toBeGreaterThan(0);
    const sj = aetn(['stats', '--in', 'd', '--json'], cwd);
    expect(JSON.parse(sj.out)).toMatchObject({ kind: 'raw', users: 2000 });
    // --leave-out-apps: every app with 20-99 installs leaves the vocabulary (excluded), the rest stay
    const lo = aetn(['prepare', '--in', 'd', '--out', 'lo', '--leave-out-apps', '20:99'], cwd);
    expect(lo.code).toBe(0);
    const dl = await openPrepared(join(cwd, 'lo'));
    const left = dl.catalog.apps.filter((a) => !a.universal && !a.preinstalled && a.installCount >= 20 && a.installCount <= 99);
    expect(left.length).toBeGreaterThan(10);
    for (const a of left) expect(a.dropReason).toBe('excluded');
    expect(dl.catalog.apps.some((a) => a.vocabIndex >= 0 && a.installCount > 99)).toBe(true);
    expect(dl.vocab.apps.length).toBeLessThan(ds.vocab.apps.length);
    const bad = aetn(['prepare', '--in', 'd', '--out', 'lo2', '--leave-out-apps', '99:20'], cwd);
    expect(bad.code).not.toBe(0);
    expect(bad.err).toMatch(/--leave-out-apps must be MIN:MAX/);
  }, 180_000);

  it('exits non-zero with a clear message on unreadable input, and --strict fails on rejects', () => {
    const cwd = tmp('aetn-cli-');
    const r = aetn(['prepare', '--in', 'nowhere', '--out', 'p'], cwd);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^aetn: input directory not found: nowhere/);
    expect(aetn(['stats', '--in', '.'], cwd).code).toBe(2);
    const g = aetn(['generate', '--users', 'many', '--out', 'd'], cwd);
    expect(g.code).not.toBe(0);
    expect(g.err).toMatch(/--users must be an integer/);
    expect(aetn(['generate', '--help'], cwd).out).toMatch(/--niche-scale/);
    // a world with one bad line appended: prepare succeeds, reports it; --strict turns it into exit 3
    expect(aetn(['generate', '--users', '50', '--seed', '2', '--apps', '400', '--out', 'd'], cwd).code).toBe(0);
    const ev = join(cwd, 'd', 'events.csv');
    const text = readFileSync(ev, 'utf8');
    const lines = text.trim().split('\n').length;
    appendFileSync(ev, 'x1,u01,com.no.such.app,install,1700000000000\n');
    const p = aetn(['prepare', '--in', 'd', '--out', 'p', '--min-installs', '1'], cwd);
    expect(p.code).toBe(0);
    expect(p.out).toMatch(/rejected records: 1 /);
    const rej = JSON.parse(readFileSync(join(cwd, 'p', 'rejects.ndjson'), 'utf8').trim());
    expect(rej).toMatchObject({ file: 'events.csv', line: lines + 1, reason: 'unknown package com.no.such.app' });
    expect(aetn(['prepare', '--in', 'd', '--out', 'p', '--strict'], cwd).code).toBe(3);
  }, 120_000);
});
