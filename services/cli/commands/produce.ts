import type { Command } from 'commander';

interface Opts {
  data: string;
  brokers?: string;
  topic?: string;
  rate: string;
  heldout?: boolean;
  limit?: string;
  timestamps: string;
  partitions: string;
  config?: string;
}

export function register(program: Command): void {
  program
    .command('produce')
    .description("Replay a raw dataset's install/uninstall events into the Kafka topic app-events (protobuf aetn.v1.AppEvent keyed by user id) at a chosen rate, to watch the realtime side react.")
    .requiredOption('--data <dir>', 'raw dataset directory (with dataset.json), e.g. the output of `aetn generate`')
    .option('--brokers <list>', 'Kafka bootstrap brokers host:port[,host:port] (default: kafka.brokers from the config / $AETN_KAFKA_BROKERS)')
    .option('--topic <name>', 'topic to write (default app-events)')
    .option('--rate <n>', 'events per second; 0 = as fast as possible', '1000')
    .option('--heldout', "replay the held-out week's events instead of the history")
    .option('--limit <n>', 'stop after this many events')
    .option('--timestamps <mode>', "'original' (the file's event times) or 'now' (stamp each event when sent: a live demo)", 'original')
    .option('--partitions <n>', 'partitions when the topic has to be created', '4')
    .option('--config <file>', 'JSON configuration file (default: $AETN_CONFIG)')
    .addHelpText(
      'after',
      `
Example:
  aetn generate --users 2000 --seed 1 --out d
  aetn produce --data d --brokers 127.0.0.1:9092 --heldout --rate 500 --timestamps now`,
    )
    .action(async (opts: Opts) => {
      const { UserError } = await import('../../../src/util/errors.js');
      const { loadConfig } = await import('../../../src/config/config.js');
      const { replayEvents } = await import('../../../src/stream/replay.js');
      const cfg = loadConfig({ file: opts.config ?? null, overrides: { 'kafka.brokers': opts.brokers, 'kafka.topic': opts.topic } });
      if (cfg.kafka.brokers.length === 0) throw new UserError('no Kafka brokers: pass --brokers host:port or set AETN_KAFKA_BROKERS');
      const { parseBrokers } = await import('../../../src/stream/kafka.js');
      parseBrokers(cfg.kafka.brokers);
      const num = (v: string | undefined, flag: string, min: number) => {
        if (v === undefined) return undefined;
        const n = Number(v);
        if (!Number.isFinite(n) || n < min) throw new UserError(`${flag} must be a number >= ${min}, got ${JSON.stringify(v)}`);
        return n;
      };
      if (opts.timestamps !== 'original' && opts.timestamps !== 'now') throw new UserError(`--timestamps must be 'original' or 'now', got ${JSON.stringify(opts.timestamps)}`);
      const partitions = num(opts.partitions, '--partitions', 1)!;
      if (!Number.isInteger(partitions)) throw new UserError(`--partitions must be an integer, got ${opts.partitions}`);
      const r = await replayEvents({
        dataDir: opts.data,
        brokers: cfg.kafka.brokers,
        topic: cfg.kafka.topic,
        rate: num(opts.rate, '--rate', 0),
        heldOut: Boolean(opts.heldout),
        limit: num(opts.limit, '--limit', 1),
        timestamps: opts.timestamps,
        numPartitions: partitions,
      });
      process.stdout.write(
        `produced ${r.produced} events from ${r.file} to ${cfg.kafka.topic} in ${r.seconds.toFixed(1)} s (${r.rate.toFixed(0)} events/s)` +
          `; skipped malformed records: ${r.badRecords}\n`,
      );
      for (const b of r.firstBad) process.stdout.write(`  line ${b.line}: ${b.reason}\n`);
    });
}
