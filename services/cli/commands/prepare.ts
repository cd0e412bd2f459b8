import { integer as int } from '../flags.js';
import type { Command } from 'commander';
import { UserError } from '../../../src/util/errors.js';

function leaveOutRange(v: string): { min: number; max: number } {
  const m = /^(\d+):(\d+)$/.exec(v.trim());
  const r = m ? { min: Number(m[1]), max: Number(m[2]) } : undefined;
  if (!r || r.min < 1 || r.max < r.min) throw new UserError(`--leave-out-apps must be MIN:MAX with 1 <= MIN <= MAX (e.g. 20:99), got '${v}'`);
  return r;
}

export function register(program: Command): void {
  program
    .command('prepare')
    .description('Preprocess a raw dataset (dataset.json + catalog, installed apps, events) into training shards, vocabulary, labels and a rejects file')
    .requiredOption('--in <dir>', 'raw dataset directory (holds dataset.json)')
    .requiredOption('--out <dir>', 'output directory for the prepared dataset')
    .option('--shards <n>', 'number of shard files (users are assigned by a hash of their id)', int('--shards'), 16)
    .option('--min-installs <n>', 'drop apps with fewer installs (retention entries + history installs) than this (default: 1 per 1000 users with history, at least 2, at most 10)', int('--min-installs'))
    .option('--weekly-cap <n>', 'keep at most this many (un)install operations per user per week (the most recent)', int('--weekly-cap'), 10)
    .option('--seq-len <n>', 'most recent installs and uninstalls kept per user (paper I = 25)', int('--seq-len'), 25)
    .option('--date-buckets <n>', 'week buckets of event dates before the reference date', int('--date-buckets'), 52)
    .option('--exclude-app <id...>', 'keep these app ids out of the vocabulary (in addition to dataset.json excludeApps)')
    .option('--leave-out-apps <min:max>', 'keep every app with min..max installs out of the vocabulary (the apps of `aetn eval --protocol leave-app-out`), e.g. 20:99', leaveOutRange)
    .option('--strict', 'exit with status 3 when any record was rejected')
    .option('--workers <n>', 'worker threads (default: one per core; output is identical for any number)', int('--workers'))
    .addHelpText('after', '\nExample:\n  aetn prepare --in d --out p\nRejected records are listed in <out>/rejects.ndjson with file, line and reason.\n')
    .action(async (o: { in: string; out: string; shards: number; minInstalls?: number; weeklyCap: number; seqLen: number; dateBuckets: number; excludeApp?: string[]; leaveOutApps?: { min: number; max: number }; strict?: boolean; workers?: number }) => {
      const { prepare } = await import('../../../src/data/prepare.js');
      const t0 = performance.now();
      const r = await prepare({ input: o.in, out: o.out, shards: o.shards, minInstalls: o.minInstalls, weeklyCap: o.weeklyCap, seqLen: o.seqLen, dateBuckets: o.dateBuckets, excludeApps: o.excludeApp, leaveOutApps: o.leaveOutApps, workers: o.workers });
      const s = (performance.now() - t0) / 1000;
      const m = r.manifest;
      const noVector = m.usersWithoutVector ?? 0;
      const lines = [
        `prepared ${m.numUsers} users into ${m.shards.length} shards in ${s.toFixed(1)}s (${Math.round(m.numUsers / s)} users/s)`,
        `vocabulary: ${m.numApps} apps, ${m.numCategories} categories, hash ${m.vocabHash}; min installs ${m.minInstalls} (${m.minInstallsSource === 'derived' ? 'derived from the number of users; --min-installs sets it' : '--min-installs'})`,
        `users without a vector: ${noVector} of ${m.numUsers + noVector}${noVector > 0 ? ' (none of their apps is in the vocabulary; a lower --min-installs keeps more apps)' : ''}`,
        `held-out labels: ${m.hasLabels ? `${m.labelUsers} users` : 'none (no heldOut file)'}`,
        'counts:',
        ...Object.entries(m.counts).map(([k, v]) => `  ${k.padEnd(36)}${v}`),
        `rejected records: ${r.rejected}${r.rejected > 0 ? ` (see ${r.rejectsFile})` : ''}`,
      ];
      process.stdout.write(`${lines.join('\n')}\n`);
      if (o.strict && r.rejected > 0) throw new UserError(`${r.rejected} records were rejected (--strict)`, 3);
    });
}
