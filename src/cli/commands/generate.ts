import { integer as int, finite as num } from '../flags.js';
import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('generate')
    .description('Write a synthetic app world (catalog, installed apps, a year of install/uninstall events, a held-out week, ground truth in truth/) in the raw input format')
    .requiredOption('--users <n>', 'number of users', int('--users'))
    .requiredOption('--out <dir>', 'output directory (created; must be empty or an earlier generated world)')
    .option('--seed <n>', 'random seed: the same seed writes identical bytes', int('--seed'), 1)
    .option('--apps <n>', 'regular apps in the catalog (plus near-universal, pre-installed and the look-alike target)', int('--apps'), 5000)
    .option('--topics <n>', 'latent interest topics', int('--topics'), 40)
    .option('--niche-scale <x>', "multiplier on the paper's niche-category weekly install rates (600, 400, 25, 300 per million)", num('--niche-scale'), 100)
    .option('--target-prevalence <p>', 'share of users who adopt the look-alike target app', num('--target-prevalence'), 0.1)
    .option('--zipf <s>', 'Zipf exponent of app popularity', num('--zipf'), 1.0)
    .option('--reference-date <YYYY-MM-DD>', 'last day of history; the week after it is held out', '2025-06-29')
    .option('--format <csv|ndjson>', 'file format', 'csv')
    .option('--workers <n>', 'worker threads (default: one per core; output is identical for any number)', int('--workers'))
    .addHelpText('after', '\nExample:\n  aetn generate --users 2000 --seed 1 --out d\n  aetn prepare --in d --out p && aetn stats --in p\n')
    .action(async (o: { users: number; out: string; seed: number; apps: number; topics: number; nicheScale: number; targetPrevalence: number; zipf: number; referenceDate: string; format: string; workers?: number }) => {
      const { generate } = await import('../../data/generate.js');
      const t0 = performance.now();
      const r = await generate({ users: o.users, seed: o.seed, out: o.out, apps: o.apps, topics: o.topics, nicheScale: o.nicheScale, targetPrevalence: o.targetPrevalence, zipf: o.zipf, referenceDate: o.referenceDate, format: o.format as 'csv' | 'ndjson', workers: o.workers });
      const s = (performance.now() - t0) / 1000;
      process.stdout.write(
        `generated ${r.users} users, ${r.apps} apps, ${r.events} history events, ${r.heldOutEvents} held-out events in ${s.toFixed(1)}s (${Math.round(r.users / s)} users/s)\n` +
          `wrote ${o.out}/{${r.files.join(',')}}\n`,
      );
    });
}
