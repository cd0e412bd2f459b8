import { integer as int, finite as num } from '../flags.js';
import type { Command } from 'commander';
import { DEFAULT_APPS_PER_USER, DEFAULT_APPS_PER_USER_SPREAD, DEFAULT_LABEL_WEEKS, DEFAULT_SEQUENCE_SIGNAL, DEFAULT_ZIPF } from '../../../src/data/generate.js';

export function register(program: Command): void {
  program
    .command('generate')
    .description('Write a synthetic app world (catalog, installed apps, a year of install/uninstall events, held-out weeks, ground truth in truth/) in the raw input format')
    .requiredOption('--users <n>', 'number of users', int('--users'))
    .requiredOption('--out <dir>', 'output directory (created; must be empty or an earlier generated world)')
    .option('--seed <n>', 'random seed: the same seed writes identical bytes', int('--seed'), 1)
    .option('--apps <n>', 'regular apps in the catalog (plus near-universal, pre-installed and the look-alike target)', int('--apps'), 5000)
    .option('--topics <n>', 'latent communities (each: category interests + signature apps across genres)', int('--topics'), 40)
    .option('--niche-scale <x>', "multiplier on the paper's niche-category weekly install rates (600, 400, 25, 300 per million)", num('--niche-scale'), 1)
    .option('--sequence-signal <x>', 'share (0..1) of niche adoption that comes from in-market users, visible only in their recent installs/uninstalls; 0 = control (no extra signal in the sequences)', num('--sequence-signal'), DEFAULT_SEQUENCE_SIGNAL)
    .option('--label-weeks <n>', 'held-out weeks after the reference date: the labels are the installs of all of them', int('--label-weeks'), DEFAULT_LABEL_WEEKS)
    .option('--no-events', 'a retention-only world: installed-app lists only, no install/uninstall history (held-out weeks and truth are still written)')
    .option('--target-prevalence <p>', 'share of users who adopt the look-alike target app', num('--target-prevalence'), 0.1)
    .option('--zipf <s>', 'Zipf exponent of app popularity', num('--zipf'), DEFAULT_ZIPF)
    .option('--apps-per-user <n>', 'median number of regular apps a user keeps (lognormal; pre-installed and near-universal apps come on top)', num('--apps-per-user'), DEFAULT_APPS_PER_USER)
    .option('--apps-per-user-spread <x>', 'standard deviation of log(apps per user): larger gives a heavier tail of heavy users', num('--apps-per-user-spread'), DEFAULT_APPS_PER_USER_SPREAD)
    .option('--reference-date <YYYY-MM-DD>', 'last day of history; the --label-weeks weeks after it are held out', '2025-06-29')
    .option('--format <csv|ndjson>', 'file format', 'csv')
    .option('--workers <n>', 'worker threads (default: one per core; output is identical for any number)', int('--workers'))
    .addHelpText('after', '\nExample:\n  aetn generate --users 2000 --seed 1 --out d\n  aetn prepare --in d --out p && aetn stats --in p\n')
    .action(async (o: { users: number; out: string; seed: number; apps: number; topics: number; nicheScale: number; targetPrevalence: number; zipf: number; appsPerUser: number; appsPerUserSpread: number; referenceDate: string; format: string; workers?: number; sequenceSignal: number; labelWeeks: number; events: boolean }) => {
      const { generate } = await import('../../../src/data/generate.js');
      const t0 = performance.now();
      const r = await generate({ users: o.users, seed: o.seed, out: o.out, apps: o.apps, topics: o.topics, nicheScale: o.nicheScale, targetPrevalence: o.targetPrevalence, zipf: o.zipf, appsPerUser: o.appsPerUser, appsPerUserSpread: o.appsPerUserSpread, referenceDate: o.referenceDate, format: o.format as 'csv' | 'ndjson', workers: o.workers, sequenceSignal: o.sequenceSignal, labelWeeks: o.labelWeeks, events: o.events });
      const s = (performance.now() - t0) / 1000;
      process.stdout.write(
        `generated ${r.users} users, ${r.apps} apps, ${r.events} history events${o.events ? '' : ' (retention-only world)'}, ${r.heldOutEvents} held-out events (${o.labelWeeks} week${o.labelWeeks === 1 ? '' : 's'}) in ${s.toFixed(1)}s (${Math.round(r.users / s)} users/s)\n` +
          `niche adopters in the held-out weeks (in market / by intent / by interest): ${r.niche.adopters.map((n, j) => `${n} (${r.niche.inMarket[j]}/${r.niche.byIntent[j]}/${r.niche.byInterest[j]})`).join(', ')}\n` +
          `wrote ${o.out}/{${r.files.join(',')}}\n`,
      );
    });
}
