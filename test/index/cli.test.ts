import { beforeAll, afterAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { EmbeddingStore } from '../../src/store/store.js';
import { clustered, uid } from './clustered.js';

const root = resolve(import.meta.dirname, '..', '..');
let dir: string;

function aetn(...args: string[]): { code: number; out: string; err: string } {
  const r = spawnSync(process.execPath, [join(root, 'bin', 'aetn.js'), ...args], { encoding: 'utf8', env: { ...process.env, AETN_LOG_LEVEL: 'error' } });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'aetn-cli-'));
  const store = EmbeddingStore.open(join(dir, 'store'));
  store.registerFeature({ featureId: 'aetn-v1', namespace: 'long', dim: 16, variant: 'aetn', createdAtMs: Date.parse('2026-01-01') });
  store.registerFeature({ featureId: 'aetn-v2', namespace: 'long', dim: 16, variant: 'aetn', createdAtMs: Date.parse('2026-02-01') });
  store.registerFeature({ featureId: 'rt-v1', namespace: 'short', dim: 8, variant: 'realtime', baseFeatureId: 'aetn-v2', createdAtMs: Date.parse('2026-02-02') });
  const data = clustered(800, 16, 8, 3);
  await store.putMany('aetn-v1', data.slice(0, 300).map((vector, i) => ({ userId: uid(i), vector })));
  await store.putMany('aetn-v2', data.map((vector, i) => ({ userId: uid(i), vector })));
  await store.close();
}, 300_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('aetn index / aetn store (compiled CLI)', () => {
  it('lists features, builds, updates, checks, retires and purges', () => {
    const s = join(dir, 'store');
    let r = aetn('store', 'list', '--store', s);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/aetn-v1\s+long\s+aetn\s+16\s+300\s+2026-01-01T00:00:00Z\s+active\s+-\s+-/);
    expect(r.out).toMatch(/aetn-v2\s+long\s+aetn\s+16\s+800\s+\S+\s+active\*/);
    expect(r.out).toMatch(/rt-v1\s+short\s+realtime\s+8\s+0\s+\S+\s+active\*\s+aetn-v2/);

    r = aetn('index', '--store', s, '--m', '8', '--ef-construction', '50');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/^index aetn-v2 built in [\d.]+ s: generation 1, 800 users, dim 16, M 8, efConstruction 50, efSearch 96/);

    r = aetn('index', '--store', s, '--update', '--ef-search', '32');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/index aetn-v2 updated: \d+ upserted, 0 removed .*generation 2, 800 users.*efSearch 32/);

    r = aetn('index', '--store', s, '--check', '--json');
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ featureId: 'aetn-v2', generation: 2, count: 800, m: 8, efSearch: 32 });

    r = aetn('store', 'list', '--store', s, '--json');
    const list = JSON.parse(r.out) as { featureId: string; indexGeneration: number | null }[];
    expect(list.find((f) => f.featureId === 'aetn-v2')!.indexGeneration).toBe(2);

    r = aetn('index', '--store', s, '--feature', 'aetn-v1');
    expect(r.code, r.err).toBe(0);
    r = aetn('store', 'retire', 'aetn-v1', '--store', s);
    expect(r.out).toMatch(/retired aetn-v1 \(300 users kept until purge\); default long feature is now aetn-v2/);
    r = aetn('index', '--store', s, '--feature', 'aetn-v1');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/aetn: feature aetn-v1 is retired/);
    r = aetn('store', 'purge', 'aetn-v1', '--store', s);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/purged aetn-v1: 300 vectors and its index deleted/);
    expect(existsSync(join(s, 'index', 'aetn-v1'))).toBe(false);
    expect(aetn('store', 'list', '--store', s).out).toMatch(/aetn-v1\s+long\s+aetn\s+16\s+0\s+\S+\s+purged/);

    r = aetn('store', 'stats', '--store', s, '--json');
    expect(JSON.parse(r.out)).toMatchObject({ features: 3, vectors: 800 });
  });

  it('fails clearly on bad input', () => {
    let r = aetn('store', 'list', '--store', join(dir, 'nope'));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/no embedding store at/);
    const other = join(dir, 'other');
    mkdirSync(other);
    writeFileSync(join(other, 'x.txt'), 'x');
    r = aetn('index', '--store', other);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/not an AETN embedding store/);
    r = aetn('index', '--store', join(dir, 'store'), '--feature', 'missing');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/unknown feature id missing/);
    r = aetn('index', '--store', join(dir, 'store'), '--m', '1');
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/--m must be an integer in 2..128/);
    const help = execFileSync(process.execPath, [join(root, 'bin', 'aetn.js'), 'index', '--help'], { encoding: 'utf8' });
    expect(help).toMatch(/--ef-search <n>/);
  });
});
