// runEval end to end on a real generated + prepared world, with stand-in embedders: an "oracle" that
// reads the planted interests from the generator's truth file, and a random one. The report must rank
// the oracle above random on every test, and the files must hold the same numbers.
import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generate } from '../../src/data/generate.js';
import { prepare } from '../../src/data/prepare.js';
import type { UserExample } from '../../src/data/types.js';
import { runCli } from '../../services/cli/main.js';
import { runEval, type Embedder, type EmbedderFactory, type RunEvalOptions } from '../../src/eval/run.js';
import { deriveSeed } from '../../src/util/hash.js';
import { Rng } from '../../src/util/random.js';

const TOPICS = 12;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'aetn-eval-'));
  await generate({ users: 3000, seed: 1, out: join(dir, 'raw'), apps: 800, topics: TOPICS, nicheScale: 200, sequenceSignal: 0, labelWeeks: 1, progress: false });
  await prepare({ input: join(dir, 'raw'), out: join(dir, 'prep'), shards: 4, progress: false });
}, 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function oracleVectors(): Map<string, Float32Array> {
  const m = new Map<string, Float32Array>();
  const lines = readFileSync(join(dir, 'raw', 'truth', 'users.csv'), 'utf8').trim().split('\n').slice(1);
  for (const line of lines) {
    const [id, topics] = line.split(',');
    const v = new Float32Array(TOPICS);
    for (const kv of topics.split('|')) {
      const [k, w] = kv.split(':');
      v[Number(k)] = Number(w);
    }
    m.set(id, v);
  }
  return m;
}

const factory: EmbedderFactory = async (modelDir) => {
  const oracle = modelDir.endsWith('oracle') ? oracleVectors() : undefined;
  let calls = 0;
  const emb: Embedder = {
    manifest: { featureId: `fake-${modelDir.split('/').pop()}`, variant: modelDir.endsWith('oracle') ? 'aetn' : 'dae' },
    dim: TOPICS,
    async embed(examples: UserExample[]) {
      calls++;
      return examples.map((e) => oracle?.get(e.userId) ?? Float32Array.from({ length: TOPICS }, ((r) => () => r.normal())(new Rng(deriveSeed(7, e.userId)))));
    },
    async close() {
      expect(calls).toBeGreaterThan(0);
    },
  };
  return emb;
};

function opts(over: Partial<RunEvalOptions> = {}): RunEvalOptions {
  return {
    data: join(dir, 'prep'),
    models: [join(dir, 'random'), join(dir, 'oracle')],
    out: join(dir, 'out', 'report.md'),
    seed: 3,
    runs: 2,
    folds: 5,
    batchSize: 1000,
    overlapSample: 1000,
    test2Classifier: 'gbdt',
    gbdtTrees: 30,
    mlpHidden: 16,
    baselineDim: 32,
    skip: [],
    serving: true,
    protocol: 'paper',
    command: 'aetn eval (test)',
    ...over,
  };
}

describe('runEval on a generated world', () => {
  it('writes a report, chart and JSON that rank the planted interests above random vectors', async () => {
    const res = await runEval(opts(), factory);
    const j = JSON.parse(readFileSync(join(dir, 'out', 'report.json'), 'utf8'));
    expect(res.json).toBe(readFileSync(join(dir, 'out', 'report.json'), 'utf8'));
    expect(existsSync(join(dir, 'out', 'report.svg'))).toBe(true);
    expect(readFileSync(join(dir, 'out', 'report.svg'), 'utf8')).toMatch(/^<svg[\s\S]*<\/svg>\n$/);
    const r = j.results;
    expect(r.users).toBe(3000);
    expect(r.test1.categories.map((c: { name: string }) => c.name)).toContain('game.mahjong');
    const t1 = Object.fromEntries(r.test1.rows.map((x: { model: string; average: { mean: number } }) => [x.model, x.average.mean]));
    expect(Object.keys(t1)).toEqual(['activity (classical)', 'TF-IDF + SVD (classical)', 'recent events by category (classical)', 'TF-IDF + SVD ‖ recent events (classical)', 'random projection (floor)', 'dae', 'aetn']);
    expect(t1.aetn).toBeGreaterThan(t1.dae + 0.15);
    expect(Math.abs(t1.dae - 0.5)).toBeLessThan(0.1);
    const t2 = Object.fromEntries(r.test2.rows.map((x: { model: string; auc: { mean: number } }) => [x.model, x.auc.mean]));
    expect(r.test2.adopters).toBeGreaterThan(150);
    expect(t2.aetn).toBeGreaterThan(t2.dae + 0.15);
    const serving = r.audience.rows.find((x: { model: string; method: string }) => x.model === 'aetn' && x.method.startsWith('ExtendLookalike'));
    const random = r.audience.baselines.find((x: { method: string }) => x.method === 'random');
    expect(serving.recall[0]).toBeGreaterThan(1.5 * random.recall[0]);
    const ov = Object.fromEntries(r.overlap.rows.map((x: { model: string; retention: number }) => [x.model, x.retention]));
    expect(ov.aetn).toBeGreaterThan(ov['random pair (floor)']);
    // The Markdown carries the paper's Table 1 layout and the exact command.
    expect(res.report).toContain('| Model | #1 game.mahjong |');
    expect(res.report).toContain('aetn eval (test)');
    expect(res.report).toMatch(/AETN − DAE = \+0\.\d{4}/);
  }, 120_000);

  it('--sample: Test #1 keeps every adopter plus a uniform sample, the other tests use the sample alone', async () => {
    const full = JSON.parse((await runEval(opts({ skip: ['test2', 'audience', 'overlap'], runs: 1, out: join(dir, 'full', 'report.md') }), factory)).json).results;
    const res = await runEval(opts({ sample: 1000, skip: ['overlap'], out: join(dir, 'sampled', 'report.md') }), factory);
    const j = JSON.parse(res.json);
    const r = j.results;
    expect(j.dataset.sample.uniform).toBe(1000);
    expect(j.dataset.sample.total).toBe(3000);
    expect(r.users).toBe(1000 + j.dataset.sample.adoptersAdded);
    expect(j.dataset.sample.adoptersAdded).toBeGreaterThan(0);
    // Every adopter of the whole world is a positive, and the rates are per million of the whole world.
    for (const c of r.test1.categories) {
      const f = full.test1.categories.find((x: { name: string }) => x.name === c.name);
      expect(c.positives).toBe(f.positives);
      expect(c.perMillion).toBeCloseTo(f.perMillion, 6);
      // Rows: the sample plus the category's adopters outside it (the other categories' are not negatives).
      expect(c.rows).toBeGreaterThanOrEqual(1000);
      expect(c.rows).toBeLessThanOrEqual(1000 + c.positives);
    }
    const t1 = Object.fromEntries(r.test1.rows.map((x: { model: string; average: { mean: number } }) => [x.model, x.average.mean]));
    expect(t1.aetn).toBeGreaterThan(t1.dae + 0.15);
    // Test #2 and the audience test see the 1000 sampled users alone (target prevalence 10%).
    expect(r.test2.adopters).toBeGreaterThan(50);
    expect(r.test2.adopters).toBeLessThan(160);
    expect(r.audience.seeds + r.audience.hidden).toBe(r.test2.adopters);
    expect(res.report).toContain('| uniform sample (Test #1 negatives; every other test) | 1,000 of 3,000 users |');
    expect(res.report).toMatch(/leaves the AUC unbiased/);
    // Same seed, same sample: the numbers repeat.
    const again = await runEval(opts({ sample: 1000, skip: ['overlap'], out: join(dir, 'sampled2', 'report.md') }), factory);
    expect(JSON.parse(again.json).results.test1.rows).toEqual(JSON.parse(res.json).results.test1.rows.map((x: object) => ({ ...x, seconds: expect.any(Number) })));
    await expect(runEval(opts({ sample: 1000, maxUsers: 2000 }), factory)).rejects.toThrow(/--sample and --max-users exclude each other/);
    await expect(runEval(opts({ sample: 5 }), factory)).rejects.toThrow(/--sample must be an integer >= 20/);
  }, 240_000);

  it('refuses bad input with clear errors', async () => {
    await expect(runEval(opts({ niche: ['no.such.category'] }), factory)).rejects.toThrow(/niche category 'no.such.category' has no app/);
    await expect(runEval(opts({ target: 'app-nope' }), factory)).rejects.toThrow(/look-alike target app 'app-nope' is not in the catalog/);
    await expect(runEval(opts({ data: join(dir, 'raw') }), factory)).rejects.toThrow(/prepared manifest is missing/);
    const wrongDim: EmbedderFactory = async (m) => ({ ...(await factory(m, {})), dim: 5 });
    await expect(runEval(opts({ skip: ['test1', 'test2', 'audience', 'overlap'] }), wrongDim)).rejects.toThrow(/12-d vector, its manifest says 5/);
  });

  it('the CLI rejects bad flags before any work', async () => {
    const code = async (...args: string[]) => {
      const err: string[] = [];
      const orig = process.stderr.write.bind(process.stderr);
      process.stderr.write = ((s: string) => (err.push(String(s)), true)) as typeof process.stderr.write;
      try {
        return { code: await runCli(args), err: err.join('') };
      } finally {
        process.stderr.write = orig;
      }
    };
    const base = ['eval', '--data', join(dir, 'prep'), '--models', join(dir, 'prep'), '--out', join(dir, 'r.md')];
    expect(await code(...base, '--skip', 'test9')).toMatchObject({ code: 2, err: expect.stringMatching(/unknown test 'test9'/) });
    expect(await code(...base, '--runs', '0')).toMatchObject({ code: 2, err: expect.stringMatching(/--runs must be an integer >= 1/) });
    expect(await code('eval', '--data', join(dir, 'nope'), '--models', 'x', '--out', 'r.md')).toMatchObject({ code: 2, err: expect.stringMatching(/no such directory/) });
    expect(await code(...base.slice(0, -1), join(dir, 'r.txt'))).toMatchObject({ code: 2, err: expect.stringMatching(/Markdown/) });
    expect((await code('eval')).code).not.toBe(0);
  });
});
