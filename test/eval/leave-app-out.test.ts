// The leave-app-out protocol: its metrics on hand-made cases with known answers, the task split,
// the classical scorers, the held-out recall estimate, and the whole protocol through runEval on a
// generated world prepared with --leave-out-apps (the served method over a real store on disk).
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectedRecallAt1x } from '../../src/audience/scoring.js';
import { generate } from '../../src/data/generate.js';
import { prepare } from '../../src/data/prepare.js';
import { activityScorer, itemKnnScorer, laoMetrics, leaveAppOutTasks, pairedAgainstBestClassical, type LaoKind, type LaoResults, type LaoRow, type LaoTask } from '../../src/eval/leave-app-out.js';
import { meanStd } from '../../src/eval/metrics.js';
import { renderLaoChart, renderLeaveAppOut } from '../../src/eval/report.js';
import { runEval, type EmbedderFactory } from '../../src/eval/run.js';
import { deriveSeed } from '../../src/util/hash.js';
import { Rng } from '../../src/util/random.js';

const task = (seeds: number[], hidden: number[]): LaoTask => ({ appId: 'a', seeds: Int32Array.from(seeds), hidden: Int32Array.from(hidden) });

describe('leave-app-out metrics (hand-made, known answers)', () => {
  it('recall at multiples of the hidden set and AUC ignore the seeds', () => {
    // Rows 0, 1 are seeds (their high scores must not count); 2 and 3 are hidden.
    const scores = [9, 9, 8, 1, 7, 6, 5, 4, 3, 2];
    const m = laoMetrics(scores, 10, task([0, 1], [2, 3]), [1, 2, 4]);
    // Non-seed ranking: 2, 4, 5, 6, 7, 8, 9, 3. Top 2 holds one hidden user; top 4 one; top 8 both.
    expect(m.recall).toEqual([0.5, 0.5, 1]);
    // Hidden row 2 beats all 6 others, hidden row 3 none: AUC = 6 / 12.
    expect(m.auc).toBe(0.5);
  });

  it('users left out of an audience (-Infinity) rank last, and a perfect ranking scores 1', () => {
    const m = laoMetrics([0, 5, 4, -Infinity, -Infinity], 5, task([0], [1, 2]), [1]);
    expect(m.recall).toEqual([1]);
    expect(m.auc).toBe(1);
    const tied = laoMetrics([0, 1, 1, 1, 1], 5, task([0], [1, 2]), [1]);
    expect(tied.auc).toBe(0.5);
  });

  it('splits each qualifying app in half, deterministically, seeds and hidden disjoint', () => {
    const inst = new Map<string, number[]>([
      ['small', [1, 2, 3]],
      ['ok', Array.from({ length: 25 }, (_, i) => i * 3)],
      ['big', Array.from({ length: 200 }, (_, i) => i)],
      ['edge', Array.from({ length: 20 }, (_, i) => 100 + i)],
    ]);
    const a = leaveAppOutTasks(inst, { minUsers: 20, maxUsers: 99, seed: 4 });
    expect(a.map((t) => t.appId)).toEqual(['edge', 'ok']);
    const ok = a[1]!;
    expect(ok.seeds.length).toBe(12);
    expect(ok.hidden.length).toBe(13);
    expect([...ok.seeds].some((r) => ok.hidden.includes(r))).toBe(false);
    expect(new Set([...ok.seeds, ...ok.hidden])).toEqual(new Set(inst.get('ok')));
    expect(leaveAppOutTasks(inst, { minUsers: 20, maxUsers: 99, seed: 4 })).toEqual(a);
    expect(leaveAppOutTasks(inst, { minUsers: 20, maxUsers: 99, seed: 5 })[1]!.seeds).not.toEqual(ok.seeds);
  });

  it('item-kNN and activity score as defined', () => {
    // 4 users over 3 apps; seeds = user 0 (apps 0, 1).
    const ret = [Int32Array.from([0, 1]), Int32Array.from([0]), Int32Array.from([1, 2]), Int32Array.from([2])];
    // Jaccard(users of app, seeds): app0 {0,1} -> 1/2, app1 {0,2} -> 1/2, app2 {2,3} -> 0.
    const s = Array.from(itemKnnScorer(ret, 3)(task([0], [1])) as Float64Array);
    expect(s).toEqual([1, 0.5, 0.5, 0]);
    expect(Array.from(activityScorer(ret)(task([0], [1])) as Float64Array)).toEqual([2, 1, 2, 1]);
  });

  it('a served row is paired app by app against the best classical row of each metric', () => {
    const mk = (method: string, kind: LaoKind, r1: number[], auc: number[]): LaoRow => ({
      method,
      vectors: '–',
      kind,
      recall: [meanStd(r1)],
      auc: meanStd(auc),
      recallSe: [NaN],
      aucSe: NaN,
      seconds: 0,
      perApp: { recall: [r1], auc },
    });
    const x: LaoResults = {
      minUsers: 20,
      maxUsers: 99,
      apps: 4,
      multiples: [1],
      meanSeeds: 10,
      meanHidden: 10,
      appIds: ['a', 'b', 'c', 'd'],
      rows: [
        mk('random', 'floor', [0.9, 0.9, 0.9, 0.9], [0.99, 0.99, 0.99, 0.99]), // a floor is never the bar, however lucky
        mk('knn', 'classical', [0.2, 0.4, 0.6, 0.8], [0.7, 0.8, 0.8, 0.9]), // best classical recall (0.5)
        mk('lr', 'classical', [0.1, 0.2, 0.3, 0.4], [0.8, 0.9, 0.9, 0.9]), // best classical AUC (0.875)
        mk('model lr', 'model', [1, 1, 1, 1], [1, 1, 1, 1]),
        mk('served', 'served', [0.3, 0.5, 0.6, 0.8], [0.8, 0.85, 0.9, 0.85]),
      ],
    };
    const served = x.rows[4]!;
    const r = pairedAgainstBestClassical(x, served, 0)!;
    expect(r.baseline.method).toBe('knn');
    // differences 0.1, 0.1, 0, 0: mean 0.05, sample std 0.0577, se 0.0289
    expect(r.diff).toBeCloseTo(0.05, 12);
    expect(r.se).toBeCloseTo(Math.sqrt(1 / 300) / 2, 12);
    const a = pairedAgainstBestClassical(x, served, 'auc')!;
    expect(a.baseline.method).toBe('lr');
    // differences 0, −0.05, 0, −0.05: mean −0.025, se 0.0144
    expect(a.diff).toBeCloseTo(-0.025, 12);
    expect(a.se).toBeCloseTo(Math.sqrt(1 / 1200) / 2, 12);
    const md = renderLeaveAppOut(x).join('\n');
    expect(md).toContain('recall@1x +0.050 ± 0.029 against knn (at or above)');
    expect(md).toContain('AUC −0.025 ± 0.014 against lr (below, within two standard errors)');
    expect(pairedAgainstBestClassical({ ...x, rows: x.rows.filter((q) => q.kind !== 'classical') }, served, 0)).toBeUndefined();
    // the chart: one bar per row and metric, with the row's mean in its tooltip
    const svg = renderLaoChart(x);
    expect(svg.match(/<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="14"/g)).toHaveLength(2 * x.rows.length);
    expect(svg).toContain('<title>served: 0.550 ± –</title>');
    expect(svg).toContain('<title>lr: 0.875 ± –</title>');
    expect(renderLaoChart({ ...x, apps: 0 })).toContain('No leave-app-out results');
  });

  it('expected recall@1x from held-out scores at a prevalence', () => {
    // Perfect separation: recall 1 at any prevalence.
    expect(expectedRecallAt1x([3, 2], [1, 0], 0.5)).toBe(1);
    expect(expectedRecallAt1x([3, 2], [1, 0, 0.5, 0.2], 0.01)).toBeCloseTo(1, 9);
    // Scores carry nothing (all tied): the audience is a random draw, recall = its share = prevalence.
    expect(expectedRecallAt1x([1, 1], [1, 1, 1, 1], 0.1)).toBeCloseTo(0.1, 9);
    // Half the positives above every negative, half below all: at prevalence 0.5 the audience is the
    // top positives (share 0.25) then a quarter of the population from a tied tail... here none tied:
    expect(expectedRecallAt1x([4, 0], [3, 2, 1], 0.5)).toBeCloseTo(0.5, 9);
  });
});

describe('leave-app-out through runEval (served method over a real store)', () => {
  let dir: string;
  const TOPICS = 12;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'aetn-lao-'));
    await generate({ users: 2000, seed: 2, out: join(dir, 'raw'), apps: 600, topics: TOPICS, labelWeeks: 1, progress: false });
    await prepare({ input: join(dir, 'raw'), out: join(dir, 'prep'), shards: 2, leaveOutApps: { min: 20, max: 99 }, progress: false });
  }, 120_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('ranks the classical baselines and the served method on the same splits, and beats random', async () => {
    const factory: EmbedderFactory = async () => ({
      manifest: { featureId: 'fake-random', variant: 'dae' },
      dim: 8,
      async embed(ex) {
        return ex.map((e) => Float32Array.from({ length: 8 }, ((r) => () => r.normal())(new Rng(deriveSeed(9, e.userId)))));
      },
      async close() {},
    });
    const res = await runEval(
      {
        data: join(dir, 'prep'),
        models: [join(dir, 'prep')],
        out: join(dir, 'out', 'r.md'),
        seed: 1,
        runs: 1,
        folds: 2,
        batchSize: 500,
        overlapSample: 100,
        test2Classifier: 'gbdt',
        gbdtTrees: 5,
        mlpHidden: 4,
        baselineDim: 0,
        skip: [],
        serving: true,
        protocol: 'leave-app-out',
        laoMaxApps: 12,
        svdDim: 16,
        command: 'aetn eval (lao test)',
      },
      factory,
    );
    const j = JSON.parse(readFileSync(join(dir, 'out', 'r.json'), 'utf8'));
    const lao = j.leaveAppOut;
    expect(lao.apps).toBe(12);
    const row = (method: string, vectors: string) => lao.rows.find((r: { method: string; vectors: string }) => r.method === method && r.vectors === vectors);
    const random = row('random', '–');
    const served = row('ExtendLookalike (served)', 'TF-IDF + SVD (classical)');
    const servedRandomVectors = row('ExtendLookalike (served)', 'dae');
    expect(served).toBeDefined();
    expect(servedRandomVectors).toBeDefined();
    for (const m of ['activity (number of kept apps)', 'item-kNN (Jaccard over kept apps)']) expect(row(m, '–')).toBeDefined();
    expect(row('logistic regression', 'sparse TF-IDF of kept apps')).toBeDefined();
    expect(served.recall[0].mean).toBeGreaterThan(random.recall[0].mean + 0.05);
    expect(served.auc.mean).toBeGreaterThan(0.6);
    // With random vectors the served model still finds the users through their apps.
    expect(servedRandomVectors.auc.mean).toBeGreaterThan(0.6);
    // every row keeps its per-app values, in the order of appIds, for paired comparisons
    expect(lao.appIds).toHaveLength(12);
    for (const r of lao.rows) {
      expect(['floor', 'classical', 'model', 'served']).toContain(r.kind);
      expect(r.perApp.auc).toHaveLength(12);
      expect(meanStd(r.perApp.auc).mean).toBeCloseTo(r.auc.mean, 12);
      expect(meanStd(r.perApp.recall[0]).mean).toBeCloseTo(r.recall[0].mean, 12);
    }
    expect(random.kind).toBe('floor');
    expect(row('logistic regression', 'dae').kind).toBe('model');
    expect(row('logistic regression', 'TF-IDF + SVD (classical)').kind).toBe('classical');
    expect(res.report).toMatch(/- ExtendLookalike \(served\) on TF-IDF \+ SVD \(classical\): recall@1x [+−]\d\.\d{3} ± \d\.\d{3} against /);
    expect(res.report).toContain('![Leave-app-out recall@1x and AUC per method](r-lao.svg)');
    const svg = readFileSync(join(dir, 'out', 'r-lao.svg'), 'utf8');
    expect(existsSync(join(dir, 'out', 'r.svg'))).toBe(false); // no Test #1, no Test #1 chart
    expect(svg).toMatch(/<title>ExtendLookalike \(served\) · TF-IDF \+ SVD \(classical\): 0\.\d{3} ± 0\.\d{3}<\/title>/);
    expect(res.report).toContain('## Leave-app-out look-alike');
    expect(res.report).not.toContain('## Table 1');
    expect(res.report.split('\n')[0]).toBe(`# Offline evaluation: leave-app-out look-alike on \`${join(dir, 'prep')}\``);
  }, 300_000);
});
