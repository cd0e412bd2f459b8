// Prometheus metrics of the realtime pipeline on a registry of its own, so the process can mount it
// next to others (src/util/metrics-http.ts) and tests can read it directly.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export class StreamMetrics {
  readonly events: Counter<'result'>;
  readonly dlq: Counter<'reason'>;
  readonly batchSeconds: Histogram;
  readonly batchEvents: Histogram;
  readonly lag: Gauge<'partition'>;
  readonly freshness: Histogram;
  readonly usersUpdated: Counter;
  readonly restarts: Counter;
  readonly replaySkipped: Counter;
  readonly storeRetries: Counter;

  constructor(readonly registry: Registry = new Registry()) {
    const registers = [registry];
    this.events = new Counter({
      name: 'aetn_stream_events_total',
      help: 'Messages consumed from app-events, by result: applied, duplicate (event id already in the state), dlq',
      labelNames: ['result'],
      registers,
    });
    this.dlq = new Counter({
      name: 'aetn_stream_dlq_total',
      help: 'Messages sent to the dead-letter topic, by reason',
      labelNames: ['reason'],
      registers,
    });
    this.batchSeconds = new Histogram({
      name: 'aetn_stream_batch_duration_seconds',
      help: 'Time to process one chunk of a partition batch: decode, head, durable write',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.batchEvents = new Histogram({
      name: 'aetn_stream_batch_events',
      help: 'Messages per processed chunk',
      buckets: [1, 10, 100, 500, 1000, 2000, 5000, 10000],
      registers,
    });
    this.lag = new Gauge({
      name: 'aetn_stream_consumer_lag',
      help: 'Messages behind the partition high watermark after the last processed chunk',
      labelNames: ['partition'],
      registers,
    });
    this.freshness = new Histogram({
      name: 'aetn_stream_freshness_seconds',
      help: "Time from an event's produce time (Kafka message timestamp) to its user's vector being durable in the store",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.usersUpdated = new Counter({
      name: 'aetn_stream_users_updated_total',
      help: 'Short-term vectors written',
      registers,
    });
    this.restarts = new Counter({
      name: 'aetn_stream_consumer_restarts_total',
      help: 'Consumer restarts after a retriable Kafka failure (e.g. the broker went away)',
      registers,
    });
    this.replaySkipped = new Counter({
      name: 'aetn_stream_replay_skipped_total',
      help: 'Redelivered messages skipped because their offset was already applied (replay after a crash)',
      registers,
    });
    this.storeRetries = new Counter({
      name: 'aetn_stream_store_retries_total',
      help: 'Reads and writes of the shared realtime state retried after a transient store failure (timeout, node unavailable)',
      registers,
    });
  }
}
