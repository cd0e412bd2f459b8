import type { Command } from 'commander';

export function register(program: Command): void {
  const cmd = program.command('config').description('Inspect the effective configuration (file < AETN_* environment < flags).');
  cmd
    .command('print')
    .description('Print the effective configuration as JSON, with API keys masked; fails naming any bad key.')
    .option('--config <file>', 'JSON configuration file (default: $AETN_CONFIG)')
    .action(async (opts: { config?: string }) => {
      const { loadConfig, maskedConfig } = await import('../../../src/config/config.js');
      const cfg = loadConfig({ file: opts.config ?? null });
      process.stdout.write(`${JSON.stringify(maskedConfig(cfg), null, 2)}\n`);
    });
}
