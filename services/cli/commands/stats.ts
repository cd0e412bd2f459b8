import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('stats')
    .description('Print what a raw or prepared dataset looks like: users, apps, retention and activity distributions, Zipf fit, burstiness, next-week niche rates, look-alike prevalence, drop counts')
    .requiredOption('--in <dir>', 'raw dataset directory (dataset.json) or prepared directory (manifest.json)')
    .option('--json', 'print the numbers as JSON')
    .addHelpText('after', '\nExample:\n  aetn stats --in p\n')
    .action(async (o: { in: string; json?: boolean }) => {
      const { computeStats, formatStats } = await import('../../../src/data/stats.js');
      const s = await computeStats(o.in);
      process.stdout.write(o.json ? `${JSON.stringify(s, null, 2)}\n` : formatStats(s));
    });
}
