import type { Command } from 'commander';
import { integer, positiveInt } from '../flags.js';

// Keep in step with services/realtime.ts DEFAULT_HEAD_WORKERS (not imported: the CLI loads services lazily).
const DEFAULT_HEAD_WORKERS = 1;

interface Opts {
  store?: string;
  storeBackend?: string;
  brokers?: string;
  head?: string;
  topic?: string;
  dlqTopic?: string;
  group?: string;
  maxEvents?: string;
  backend?: string;
  concurrency: number;
  chunk?: number;
  partitions: number;
  headWorkers: number;
  fromLatest?: boolean;
  metricsPort?: string;
  config?: string;
}

export function register(program: Command): void {
  program
    .command('realtime')
    .description(
      'Consume app-events from Kafka, keep each user\'s most recent install/uninstall events, run the realtime head for the users each batch touched and write their short-term vectors to the store. Bad messages go to the dead-letter topic; offsets are committed only after the store write is durable.',
    )
    .option('--store <dir>', 'embedding store directory (default: storeDir from the config)')
    .option('--store-backend <backend>', 'lmdb (state and offsets in the local store) or cassandra (state shared by every consumer of the group, in the cluster\'s states table) (default: store.backend from the config)')
    .option('--brokers <list>', 'Kafka bootstrap brokers host:port[,host:port] (default: $AETN_KAFKA_BROKERS)')
    .option('--head <model dir>', 'realtime head checkpoint from `aetn train --head realtime` (default: realtime.headDir)')
    .option('--topic <name>', 'input topic (default app-events)')
    .option('--dlq-topic <name>', 'dead-letter topic (default app-events.dlq)')
    .option('--group <id>', 'consumer group id (default aetn-realtime)')
    .option('--max-events <n>', 'recent events kept per user (default 32, at least what the head reads)')
    .option('--backend <name>', 'tfjs backend for the head: wasm (default), cpu, tensorflow, webgpu (head workers >= 1)')
    .option('--concurrency <n>', 'partitions processed in parallel', positiveInt('--concurrency'), 4)
    .option('--chunk <n>', 'messages per durable commit (default: the pipeline\'s, 10000; smaller bounds latency, larger raises throughput)', positiveInt('--chunk'))
    .option('--partitions <n>', 'partitions when the topics have to be created', positiveInt('--partitions'), 4)
    .option('--head-workers <n>', 'worker threads running the head; 0 runs it on the main thread', integer('--head-workers'), DEFAULT_HEAD_WORKERS)
    .option('--from-latest', 'a new consumer group starts at the end of the topic instead of its beginning')
    .option('--metrics-port <n>', 'Prometheus /metrics port, or "off" (default 9464)')
    .option('--config <file>', 'JSON configuration file (default: $AETN_CONFIG)')
    .addHelpText(
      'after',
      `
Example:
  aetn realtime --store aetn-data/store --brokers 127.0.0.1:9092 --head aetn-data/models/rt-head
  # in another shell: aetn produce --data d --brokers 127.0.0.1:9092 --heldout --timestamps now
  curl -s 127.0.0.1:9464/metrics | grep aetn_stream_`,
    )
    .action(async (opts: Opts) => {
      const { loadConfig } = await import('../../../src/config/config.js');
      const { UserError } = await import('../../../src/util/errors.js');
      const { runRealtime } = await import('../../realtime.js');
      if (opts.headWorkers < 0) throw new UserError(`--head-workers must be 0 or more, got ${opts.headWorkers}`);
      const cfg = loadConfig({
        file: opts.config ?? null,
        overrides: {
          storeDir: opts.store,
          'store.backend': opts.storeBackend,
          'kafka.brokers': opts.brokers,
          'kafka.topic': opts.topic,
          'kafka.dlqTopic': opts.dlqTopic,
          'kafka.groupId': opts.group,
          'realtime.headDir': opts.head,
          'realtime.maxEvents': opts.maxEvents,
          'metrics.port': opts.metricsPort,
        },
      });
      const p = await runRealtime(cfg, {
        backend: opts.backend,
        partitionsConcurrently: opts.concurrency,
        chunkSize: opts.chunk,
        numPartitions: opts.partitions,
        headWorkers: opts.headWorkers,
        fromBeginning: !opts.fromLatest,
        handleSignals: true,
      });
      process.stdout.write(
        `aetn realtime: consuming ${cfg.kafka.topic} (group ${cfg.kafka.groupId}) into ${p.location} as feature ${p.head.featureId}` +
          `${p.metricsUrl ? `, metrics ${p.metricsUrl}` : ''}\n`,
      );
    });
}
