// `aetn eval`: the paper's offline tests on a prepared dataset, for one or more trained models.
import type { Command } from 'commander';
import { UserError } from '../../../src/util/errors.js';

const TESTS = ['test1', 'test2', 'audience', 'overlap'] as const;

function int(name: string, min: number) {
  return (v: string): number => {
    const x = Number(v);
    if (!Number.isInteger(x) || x < min) throw new UserError(`--${name} must be an integer >= ${min}, got '${v}'`);
    return x;
  };
}

function list(v: string): string[] {
  return v
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

export function register(program: Command): void {
  program
    .command('eval')
    .description(
      'Offline evaluation as in the paper: Test #1 next-week installation of niche categories (MLP, 3:1:1, AUC over runs), ' +
        'Test #2 look-alike of an out-of-vocabulary app (10-fold CV AUC), audience extension with hidden adopters ' +
        '(recall/precision vs random, most-active and single-centroid baselines), and §5.5 nearest-neighbour app overlap. ' +
        'Writes a Markdown report, an SVG chart and a JSON file with every number.',
    )
    .requiredOption('--data <dir>', 'prepared dataset (aetn prepare) with a held-out week')
    .option('--models <dirs>', 'comma-separated model checkpoint directories (aetn train); none: the classical baselines alone', list, [])
    .requiredOption('--out <report.md>', 'Markdown report path; .svg and .json are written next to it')
    .option('--seed <n>', 'seed of every split, initialisation and sample', int('seed', 0), 1)
    .option('--runs <n>', 'Test #1 runs (new split and initialisation each)', int('runs', 1), 5)
    .option('--folds <n>', 'Test #2 cross-validation folds', int('folds', 2), 10)
    .option('--head <dir>', 'realtime head checkpoint: also compare AETN + head (the served combined vector) on Test #1')
    .option('--config <file>', 'JSON configuration file (default: $AETN_CONFIG): serve.combinedLongWeight / combinedShortWeight weigh AETN + head as served')
    .option('--max-users <n>', 'evaluate only the first N users (shard order, i.e. a hash sample)', int('max-users', 20))
    .option(
      '--sample <n>',
      'evaluate a seeded uniform sample of N users; Test #1 adds every niche adopter outside it (its negatives stay a uniform sample, so the AUC is unbiased) and the other tests use the sample alone',
      int('sample', 20),
    )
    .option('--backend <name>', 'tfjs backend for embedding: wasm | cpu | tensorflow | webgpu (default: AETN_BACKEND or wasm)')
    .option('--workers <n>', 'embedding worker threads', int('workers', 1))
    .option('--fit-workers <n>', 'worker threads for the classifier fits (default: number of CPUs, at most 4)', int('fit-workers', 1))
    .option('--batch-size <n>', 'users per embedding batch', int('batch-size', 1), 1000)
    .option('--overlap-sample <n>', 'users sampled for the §5.5 overlap', int('overlap-sample', 1), 10000)
    .option('--test2-classifier <kind>', 'gbdt | mlp', 'gbdt')
    .option('--gbdt-trees <n>', 'trees of the Test #2 GBDT', int('gbdt-trees', 1), 100)
    .option('--mlp-hidden <n>', 'hidden units of the MLP', int('mlp-hidden', 1), 32)
    .option('--baseline-dim <n>', 'dimension of the random-projection floor (0 = none)', int('baseline-dim', 0), 128)
    .option('--niche <names>', 'niche category names for Test #1 (default: the dataset ground truth)', list)
    .option('--target <appId>', 'look-alike target app id for Test #2 (default: the dataset ground truth)')
    .option('--skip <tests>', `tests to skip: ${TESTS.join(',')}`, list, [])
    .option('--no-serving', 'leave out the serving look-alike algorithm (ExtendLookalike) in the audience test')
    .option('--protocol <name>', 'paper (Test #1, Test #2, audience, overlap) | leave-app-out | all', 'all')
    .option('--lao-min-users <n>', 'leave-app-out: fewest installers of an app among the evaluated users', int('lao-min-users', 2), 20)
    .option('--lao-max-users <n>', 'leave-app-out: most installers of an app among the evaluated users', int('lao-max-users', 2), 99)
    .option('--lao-max-apps <n>', 'leave-app-out: at most this many apps (a seeded sample; default all)', int('lao-max-apps', 1))
    .option('--svd-dim <n>', 'dimension of the TF-IDF + SVD baseline vectors (0 = none)', int('svd-dim', 0), 64)
    .option('--recent-weeks <n>', 'Test #1 sequence baseline: installs and uninstalls per category in the last N weeks of history (0 = none)', int('recent-weeks', 0), 4)
    .option('--notes <file.md>', 'Markdown inserted as the Notes section of the report')
    .addHelpText(
      'after',
      '\nExample:\n  aetn eval --data data/prepared --models models/dae,models/aetn --head models/rt --out docs/eval-report.md --seed 1\n',
    )
    .action(async (opts: Record<string, unknown>) => {
      const skip = opts.skip as string[];
      for (const s of skip) if (!(TESTS as readonly string[]).includes(s)) throw new UserError(`--skip: unknown test '${s}' (choose from ${TESTS.join(', ')})`);
      const clf = opts.test2Classifier as string;
      if (clf !== 'gbdt' && clf !== 'mlp') throw new UserError(`--test2-classifier must be gbdt or mlp, got '${clf}'`);
      const models = opts.models as string[];
      const protocol = opts.protocol as string;
      if (protocol !== 'paper' && protocol !== 'leave-app-out' && protocol !== 'all') throw new UserError(`--protocol must be paper, leave-app-out or all, got '${protocol}'`);
      if ((opts.laoMaxUsers as number) < (opts.laoMinUsers as number)) throw new UserError('--lao-max-users must be at least --lao-min-users');
      const out = opts.out as string;
      if (!out.toLowerCase().endsWith('.md')) throw new UserError(`--out must name a Markdown file (.md), got '${out}'`);
      const { existsSync } = await import('node:fs');
      for (const p of [opts.data as string, ...models, ...(opts.head ? [opts.head as string] : [])]) if (!existsSync(p)) throw new UserError(`no such directory: ${p}`);
      const { loadConfig } = await import('../../../src/config/config.js');
      const cfg = loadConfig({ file: (opts.config as string | undefined) ?? null });
      const { runEval } = await import('../../../src/eval/run.js');
      const { cpus } = await import('node:os');
      const res = await runEval({
        data: opts.data as string,
        models,
        out,
        seed: opts.seed as number,
        runs: opts.runs as number,
        folds: opts.folds as number,
        head: opts.head as string | undefined,
        maxUsers: opts.maxUsers as number | undefined,
        sample: opts.sample as number | undefined,
        backend: opts.backend as string | undefined,
        workers: opts.workers as number | undefined,
        fitWorkers: (opts.fitWorkers as number | undefined) ?? Math.min(4, cpus().length),
        batchSize: opts.batchSize as number,
        overlapSample: opts.overlapSample as number,
        test2Classifier: clf,
        gbdtTrees: opts.gbdtTrees as number,
        mlpHidden: opts.mlpHidden as number,
        baselineDim: opts.baselineDim as number,
        niche: opts.niche as string[] | undefined,
        target: opts.target as string | undefined,
        skip: skip as (typeof TESTS)[number][],
        serving: opts.serving as boolean,
        notes: opts.notes as string | undefined,
        protocol,
        laoMinUsers: opts.laoMinUsers as number,
        laoMaxUsers: opts.laoMaxUsers as number,
        laoMaxApps: opts.laoMaxApps as number | undefined,
        svdDim: opts.svdDim as number,
        recentWeeks: opts.recentWeeks as number,
        combinedWeights: { long: cfg.serve.combinedLongWeight, short: cfg.serve.combinedShortWeight },
        command: `aetn ${process.argv.slice(2).join(' ')}`,
      });
      // The tables on stdout (the report file holds the same plus the chart link).
      process.stdout.write(res.report);
    });
}
