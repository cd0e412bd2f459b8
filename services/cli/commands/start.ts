// `aetn start`: the README's main job.
import { Option, type Command } from 'commander';
import { positiveInt as int } from '../flags.js';


export function register(program: Command): void {
  program
    .command('start')
    .description(
      'Run the whole system on one machine with embedded defaults: make a demo world (or use --data), prepare it, ' +
        'train AETN and the realtime head (small size; --paper-size for the paper\'s), embed, build the index, then serve ' +
        'gRPC (and consume Kafka when configured). Stages whose output exists are reused. Ctrl-C stops cleanly.',
    )
    .option('--dir <dir>', 'working directory for data, models and the store', 'aetn-data')
    .option('--data <dir>', 'your own raw dataset (see README: raw input format) instead of a demo world')
    .option('--users <n>', 'users of the demo world', int('--users'), 10000)
    .option('--seed <n>', 'seed of the demo world and the training', int('--seed'), 1)
    .option('--epochs <n>', 'AETN training epochs', int('--epochs'), 2)
    .option('--head-epochs <n>', 'realtime head training epochs', int('--head-epochs'), 3)
    .addOption(new Option('--size <size>', "model size: small (minutes on 2 cores), paper (d_model 512, FFN 1024, 8 heads, 128-d: hours on 2 cores), tiny (tests)").choices(['tiny', 'small', 'paper']).default('small'))
    .option('--paper-size', 'same as --size paper')
    .option('--port <n>', 'gRPC port (default 50051; 0 = any free port)')
    .option('--host <addr>', 'gRPC listen address (default 127.0.0.1)')
    .option('--metrics-port <n>', 'Prometheus /metrics port, or "off" (default 9464)')
    .option('--config <file>', 'JSON configuration file (default: $AETN_CONFIG)')
    .option('--build-only', 'run the batch stages and exit without serving')
    .option('--no-replay', "do not replay the held-out week's events through EventService once serving")
    .action(async (o: { dir: string; data?: string; users: number; seed: number; epochs: number; headEpochs: number; size: 'tiny' | 'small' | 'paper'; paperSize?: boolean; port?: string; host?: string; metricsPort?: string; config?: string; buildOnly?: boolean; replay: boolean }) => {
      const { loadConfig } = await import('../../../src/config/config.js');
      const { runStart } = await import('../../start.js');
      const cfg = loadConfig({
        file: o.config ?? null,
        overrides: { 'serve.port': o.port, 'serve.host': o.host, 'metrics.port': o.metricsPort === 'off' ? null : o.metricsPort },
      });
      const sys = await runStart({ dir: o.dir, data: o.data, users: o.users, seed: o.seed, size: o.paperSize ? 'paper' : o.size, epochs: o.epochs, headEpochs: o.headEpochs, noServe: Boolean(o.buildOnly), replay: o.replay }, cfg);
      if (o.buildOnly) return;
      await new Promise<void>((resolveStop) => {
        const onSignal = () => {
          process.stderr.write('\nstopping: draining calls in flight...\n');
          sys.stop().then(resolveStop, (err: Error) => {
            process.stderr.write(`aetn: shutdown failed: ${err.message}\n`);
            process.exit(1);
          });
        };
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
      });
      process.exit(0);
    });
}
