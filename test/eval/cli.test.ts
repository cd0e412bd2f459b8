// `aetn eval` end to end through the compiled CLI, on a tiny generated world with tiny trained models
// (AETN, DAE and a realtime head): the real embedder, the real head, the real look-alike algorithm.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runProcess } from '../spawn.js';

const root = join(import.meta.dirname, '..', '..');
const bin = join(root, 'bin', 'aetn.js');
let cwd: string;

/** The compiled CLI, run without blocking this worker (test/spawn.ts says why). */
function run(args: string[]) {
  return runProcess(process.execPath, [bin, ...args], { cwd, env: { ...process.env, AETN_PROGRESS: '0', AETN_LOG_LEVEL: 'warn' } });
}

async function aetn(args: string[]) {
  const r = await run(args);
  if (r.status !== 0) throw new Error(`aetn ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r;
}

beforeAll(async () => {
  cwd = mkdtempSync(join(tmpdir(), 'aetn-eval-cli-'));
  await aetn(['generate', '--users', '800', '--seed', '3', '--out', 'raw', '--apps', '400', '--topics', '8', '--niche-scale', '300']);
  await aetn(['prepare', '--in', 'raw', '--out', 'prep', '--shards', '2']);
  const tiny = ['--d-model', '8', '--d-ff', '16', '--heads', '2', '--enc-layers', '1', '--d-emb', '8', '--batch-size', '200', '--lr', '3e-3', '--epochs', '1', '--workers', '1'];
  await aetn(['train', '--data', 'prep', '--out', 'dae', '--variant', 'dae', ...tiny]);
  await aetn(['train', '--data', 'prep', '--out', 'aetn', '--variant', 'aetn', ...tiny]);
  await aetn(['train', '--data', 'prep', '--out', 'rt', '--head', 'realtime', '--base-model', 'aetn', '--epochs', '1', '--max-users', '300', '--workers', '1']);
}, 600_000);
afterAll(() => cwd && rmSync(cwd, { recursive: true, force: true }));

describe('aetn eval (compiled CLI)', () => {
  it('evaluates trained models and the realtime head and writes the report, chart and JSON', async () => {
    const args = ['eval', '--data', 'prep', '--models', 'dae,aetn', '--head', 'rt', '--out', 'out/report.md', '--seed', '5', '--runs', '2', '--folds', '3', '--overlap-sample', '200', '--gbdt-trees', '10', '--fit-workers', '2', '--workers', '1'];
    const r = await aetn(args);
    const md = readFileSync(join(cwd, 'out', 'report.md'), 'utf8');
    expect(r.stdout).toBe(md);
    expect(md).toContain(`aetn ${args.join(' ')}`);
    const j = JSON.parse(readFileSync(join(cwd, 'out', 'report.json'), 'utf8'));
    // Categories with too few next-week adopters in so small a world are left out (and logged).
    const cats = j.results.test1.categories.map((c: { name: string }) => c.name);
    expect(cats.length).toBeGreaterThanOrEqual(2);
    expect(md).toContain(`| Model | ${cats.map((c: string) => `#1 ${c}`).join(' | ')} | #1 Average | #2 Look-alike | paper #1 avg |`);
    const names = j.results.models.map((m: { name: string }) => m.name);
    expect(names).toEqual([
      'activity (classical)',
      'TF-IDF + SVD (classical)',
      'recent events by category (classical)',
      'TF-IDF + SVD ‖ recent events (classical)',
      'random projection (floor)',
      'dae',
      'aetn',
      'realtime head alone',
      'aetn + realtime (served combined)',
    ]);
    const aetnModel = j.results.models.find((m: { name: string }) => m.name === 'aetn');
    expect(aetnModel.featureId).toMatch(/^aetn-aetn-/);
    expect(aetnModel.dim).toBe(8);
    const combo = j.results.models.find((m: { variant: string }) => m.variant === 'aetn+realtime');
    const head = j.results.models.find((m: { variant: string }) => m.variant === 'realtime');
    expect(combo.dim).toBe(8 + head.dim);
    expect(combo.info.what).toBe('[0.8·long/|long| ‖ 0.6·short/|short|], as served');
    // Every model row has a Test #1 AUC per category in [0, 1]; Test #2 only for the long-term vectors.
    for (const row of j.results.test1.rows) for (const c of row.perCategory) expect(c.mean === null || (c.mean >= 0 && c.mean <= 1)).toBe(true);
    expect(j.results.test2.rows.map((x: { model: string }) => x.model)).toEqual(['activity (classical)', 'TF-IDF + SVD (classical)', 'random projection (floor)', 'dae', 'aetn']);
    expect(j.results.audience.rows.some((x: { method: string }) => x.method.startsWith('ExtendLookalike'))).toBe(true);
    expect(j.results.overlap.rows[0].model).toBe('random pair (floor)');
    expect(readFileSync(join(cwd, 'out', 'report.svg'), 'utf8')).toContain('<svg');
    // Deterministic with a seed: a second run writes the same numbers.
    await aetn(args);
    const j2 = JSON.parse(readFileSync(join(cwd, 'out', 'report.json'), 'utf8'));
    const noTimes = (x: unknown) => JSON.parse(JSON.stringify(x, (k, v: unknown) => (k === 'seconds' ? undefined : v)));
    expect(noTimes(j2.results.test1)).toEqual(noTimes(j.results.test1));
    expect(noTimes(j2.results.audience)).toEqual(noTimes(j.results.audience));
    expect(j2.results.test2.rows.map((x: { folds: number[] }) => x.folds)).toEqual(j.results.test2.rows.map((x: { folds: number[] }) => x.folds));
  }, 600_000);

  it('fails clearly on a model trained on another vocabulary', async () => {
    await aetn(['generate', '--users', '300', '--seed', '9', '--out', 'raw2', '--apps', '400', '--topics', '4']);
    await aetn(['prepare', '--in', 'raw2', '--out', 'prep2', '--shards', '1']);
    const r = await run(['eval', '--data', 'prep2', '--models', 'aetn', '--out', 'o2/r.md', '--skip', 'overlap']);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/vocabulary/i);
    expect(existsSync(join(cwd, 'o2', 'r.md'))).toBe(false);
  }, 300_000);
});
