// `aetn train`: trains an AETN variant (or, with --head realtime, the realtime head) on a prepared
// dataset and writes a checkpoint directory. Heavy modules load inside the action.
import { InvalidArgumentError, Option, type Command } from 'commander';

function int(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n)) throw new InvalidArgumentError(`${name} must be an integer (got '${v}')`);
    return n;
  };
}

function num(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number (got '${v}')`);
    return n;
  };
}

interface TrainFlags {
  data: string;
  out: string;
  head?: string;
  variant: string;
  backend?: string;
  epochs: number;
  seed: number;
  dModel?: number;
  dFf?: number;
  heads?: number;
  encLayers?: number;
  decLayers?: number;
  dEmb?: number;
  seqLen?: number;
  retentionWeight?: number;
  batchSize?: number;
  lr?: number;
  minEpochSteps?: number;
  lrDecay: number;
  workers?: number;
  maxUsers?: number;
  maxSteps?: number;
  memoryBudget?: number;
  patience: number;
  valFraction: number;
  resume?: boolean;
  baseModel?: string;
  json?: boolean;
}

export function register(program: Command): void {
  program
    .command('train')
    .description(
      'Train an AETN model (KDD 2020) or one of its ablations on a prepared dataset. Defaults are the paper sizes ' +
        '(d_model 512, FFN 1024, 8 heads, 2+1 layers, 128-d user vector) and Adam lr 1e-4 decayed x0.8 per epoch, batch 1000; ' +
        'on small datasets the batch shrinks, the learning rate grows and epochs make more passes, so that an epoch has at least --min-epoch-steps steps. ' +
        'Writes <out>/manifest.json + weights (best validation L_main), loss.svg, train-log.json and resume.ckpt.',
    )
    .requiredOption('--data <dir>', 'prepared dataset directory (written by `aetn prepare`)')
    .requiredOption('--out <dir>', 'model directory to write (must not hold a model unless --resume)')
    .addOption(new Option('--variant <name>', 'model variant').choices(['aetn', 'no-mask', 'no-aux', 'vanilla', 'dae']).default('aetn'))
    .addOption(new Option('--head <kind>', 'train the realtime head instead of AETN (needs --base-model)').choices(['realtime']))
    .option('--base-model <dir>', 'AETN model whose app matrix the realtime head uses (with --head realtime)')
    .addOption(new Option('--backend <name>', 'tfjs backend (default: $AETN_BACKEND or wasm)').choices(['wasm', 'tensorflow', 'cpu', 'webgpu']))
    .option('--epochs <n>', 'maximum number of epochs', int('--epochs'), 10)
    .option('--seed <n>', 'seed of initialisation, shuffling, dropout and masks', int('--seed'), 1)
    .option('--d-model <n>', 'd: width of the app matrix and transformer (paper 512)', int('--d-model'))
    .option('--d-ff <n>', 'FFN width (paper 1024; default 2 x d-model)', int('--d-ff'))
    .option('--heads <n>', 'attention heads (paper 8)', int('--heads'))
    .option('--enc-layers <n>', 'encoder layers (paper 2)', int('--enc-layers'))
    .option('--dec-layers <n>', 'decoder layers (paper 1)', int('--dec-layers'))
    .option('--d-emb <n>', 'user vector width (paper 128)', int('--d-emb'))
    .option('--seq-len <n>', 'I: installs / uninstalls per user (default: the dataset\'s, 25)', int('--seq-len'))
    .option('--retention-weight <x>', "weight of L_main's retention part in the objective (default 30, DAE 1; the paper's is 1; reported losses stay unweighted)", num('--retention-weight'))
    .option('--batch-size <n>', "users per step (default: the paper's 1000; on fewer than 32,000 training users, a 32nd of them, at least 32)", int('--batch-size'))
    .option('--lr <x>', "Adam learning rate of the first epoch (default: the paper's 1e-4 at batch 1000, 1e-4 x 1000 / batch at smaller batches, at most 1e-3)", num('--lr'))
    .option('--min-epoch-steps <n>', 'fewest Adam steps of an epoch: on small data an epoch makes more passes over the users to reach it (default: 30 with the derived batch size, none when --batch-size is given)', int('--min-epoch-steps'))
    .option('--lr-decay <x>', 'learning rate factor per epoch', num('--lr-decay'), 0.8)
    .option('--workers <n>', 'worker threads computing gradients (default: number of cores)', int('--workers'))
    .option('--max-users <n>', 'read at most the first N users of the dataset per pass', int('--max-users'))
    .option('--max-steps <n>', 'at most N steps per epoch', int('--max-steps'))
    .option(
      '--memory-budget <MiB>',
      'memory per worker (wasm heap); each worker computes its part of a batch in chunks of users that fit, the same step (default: $AETN_MEMORY_BUDGET_MIB or 1536)',
      int('--memory-budget'),
    )
    .option('--patience <n>', 'stop after N epochs without a better validation L_main', int('--patience'), 2)
    .option('--val-fraction <x>', 'share of users (by user-id hash) held out for validation', num('--val-fraction'), 0.05)
    .option('--resume', 'continue the training saved in --out from its last finished epoch')
    .option('--json', 'print the final manifest as JSON on stdout')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  aetn train --data data/prepared --out models/aetn --epochs 10\n' +
        '  aetn train --data data/prepared --out models/small --d-model 64 --d-ff 128 --heads 4 --d-emb 32 --batch-size 256 --lr 1e-3\n' +
        '  aetn train --data data/prepared --out models/small --epochs 20 --resume\n' +
        '  aetn train --head realtime --base-model models/aetn --data data/prepared --out models/rt\n',
    )
    .action(async (flags: TrainFlags, cmd: Command) => {
      const { UserError } = await import('../../../src/util/errors.js');
      if (flags.head === 'realtime') {
        // The realtime head has its own trainer (src/model/train-head.ts).
        const { trainHeadCommand } = await import('../../../src/model/train-head.js');
        // Only what the user set: the head has its own defaults (sizes, lr, batch) unlike AETN's.
        const given: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(flags)) if (cmd.getOptionValueSource(k) !== 'default' && k !== 'head') given[k] = v;
        const res = await trainHeadCommand({ ...given, data: flags.data, out: flags.out });
        if (flags.json) process.stdout.write(`${JSON.stringify(res ?? {}, null, 2)}\n`);
        else if (res?.featureId) process.stdout.write(`realtime head ${res.featureId} (base ${res.baseFeatureId}) written to ${res.out ?? flags.out}\n`);
        return;
      }
      if (flags.baseModel) throw new UserError('--base-model applies to --head realtime only');
      const { train } = await import('../../../src/model/train.js');
      const sizes: Record<string, number> = {};
      const map: Array<[keyof TrainFlags, string]> = [
        ['dModel', 'dModel'],
        ['dFf', 'dFf'],
        ['heads', 'heads'],
        ['encLayers', 'encLayers'],
        ['decLayers', 'decLayers'],
        ['dEmb', 'dEmb'],
        ['seqLen', 'seqLen'],
        ['retentionWeight', 'retentionWeight'],
      ];
      for (const [flag, field] of map) if (flags[flag] !== undefined) sizes[field] = flags[flag] as number;
      // A smaller d-model keeps the paper's FFN ratio unless --d-ff is given.
      if (sizes.dModel !== undefined && sizes.dFf === undefined) sizes.dFf = 2 * sizes.dModel;
      if (flags.maxSteps !== undefined && flags.maxSteps < 1) throw new UserError(`--max-steps must be >= 1 (got ${flags.maxSteps})`);
      const res = await train({
        data: flags.data,
        out: flags.out,
        variant: flags.variant,
        backend: flags.backend,
        sizes,
        epochs: flags.epochs,
        seed: flags.seed,
        batchSize: flags.batchSize,
        lr: flags.lr,
        lrDecay: flags.lrDecay,
        minEpochSteps: flags.minEpochSteps,
        workers: flags.workers,
        maxUsers: flags.maxUsers,
        maxStepsPerEpoch: flags.maxSteps,
        memoryBudgetMiB: flags.memoryBudget,
        patience: flags.patience,
        valFraction: flags.valFraction,
        resume: flags.resume,
      });
      const m = res.manifest;
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(m, null, 2)}\n`);
        return;
      }
      const tr = m.training as { batchSize: number; lr: number; passesPerEpoch?: number };
      const met = m.metrics as { bestEpoch: number; epochsRun: number; valMain: number | null; usersPerSec: number | null; trainSeconds: number };
      const lines = [
        `model      ${m.featureId}  (${m.variant}, ${m.weights.numParams.toLocaleString('en-US')} parameters, ${m.dim}-d user vectors)`,
        `backend    ${m.backendDetail ?? m.backend}, ${m.workers} worker${m.workers > 1 ? 's' : ''}`,
        `epochs     ${met.epochsRun} run, best ${met.bestEpoch}${res.stoppedEarly ? ' (stopped early)' : ''}, ${met.trainSeconds.toFixed(1)} s training`,
        `schedule   batch ${tr.batchSize}, lr ${tr.lr.toPrecision(3)}, ${tr.passesPerEpoch ?? 1} pass${(tr.passesPerEpoch ?? 1) > 1 ? 'es' : ''} per epoch`,
        `val L_main ${met.valMain === null ? 'n/a (no validation users)' : met.valMain.toFixed(5)}`,
        `speed      ${met.usersPerSec === null ? 'n/a' : `${met.usersPerSec.toFixed(1)} users/s`}`,
        `written    ${flags.out}/{manifest.json, ${m.weights.file}, loss.svg, train-log.json, resume.ckpt}`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
    });
}
