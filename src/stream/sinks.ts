// Where the EventService puts accepted events. Both resolve only once the events are durable:
// KafkaSink after every in-sync replica has them (acks=all, idempotent producer), DirectSink after
// the LMDB transaction of the EventProcessor has committed.
import { Partitioners, type Producer } from 'kafkajs';
import { encodeEvent } from './codec.js';
import { createKafka, ensureTopics, DEFAULT_TOPIC, RETRY } from './kafka.js';
import type { EventProcessor } from './processor.js';
import type { ValidEvent } from './types.js';

/** One event as accepted at the edge: validated, plus the package name as sent (Kafka carries it). */
export interface AcceptedEvent {
  event: ValidEvent;
  packageName: string;
}

export interface SinkResult {
  accepted: number;
  /** Known only where state is applied in-process (DirectSink); Kafka dedups downstream. */
  duplicates: number;
}

export interface EventSink {
  readonly kind: 'kafka' | 'direct';
  write(events: readonly AcceptedEvent[]): Promise<SinkResult>;
  close(): Promise<void>;
}

export class DirectSink implements EventSink {
  readonly kind = 'direct' as const;
  constructor(private readonly processor: EventProcessor) {}

  async write(events: readonly AcceptedEvent[]): Promise<SinkResult> {
    if (events.length === 0) return { accepted: 0, duplicates: 0 };
    const r = await this.processor.process(events.map((e) => e.event));
    return { accepted: r.applied, duplicates: r.duplicates };
  }

  async close(): Promise<void> {}
}

export interface KafkaSinkOptions {
  brokers: string | string[];
  topic?: string;
  clientId?: string;
  createTopic?: boolean;
  numPartitions?: number;
}

export class KafkaSink implements EventSink {
  readonly kind = 'kafka' as const;
  readonly topic: string;
  private constructor(
    private readonly producer: Producer,
    topic: string,
  ) {
    this.topic = topic;
  }

  static async open(opts: KafkaSinkOptions): Promise<KafkaSink> {
    const topic = opts.topic ?? DEFAULT_TOPIC;
    const kafka = createKafka({ brokers: opts.brokers, clientId: opts.clientId ?? 'aetn-events' });
    if (opts.createTopic ?? true) {
      const admin = kafka.admin();
      await admin.connect();
      try {
        await ensureTopics(admin, [{ topic, numPartitions: opts.numPartitions }]);
      } finally {
        await admin.disconnect();
      }
    }
    // Idempotent: a retried send after a lost ack does not write the record twice. Retries stay
    // bounded (kafkajs warns about that): the RPC then fails unacknowledged and the client retries,
    // which event ids make harmless, instead of a call hanging on a dead broker.
    const producer = kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: false,
      retry: RETRY,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    await producer.connect();
    return new KafkaSink(producer, topic);
  }

  async write(events: readonly AcceptedEvent[]): Promise<SinkResult> {
    if (events.length === 0) return { accepted: 0, duplicates: 0 };
    await this.producer.send({
      topic: this.topic,
      acks: -1,
      // Keyed by user id: one user's events stay on one partition, in order.
      messages: events.map(({ event: e, packageName }) => ({
        key: e.userId,
        value: Buffer.from(encodeEvent({ eventId: e.eventId, userId: e.userId, packageName, type: e.type, timestampMs: e.timestampMs })),
      })),
    });
    return { accepted: events.length, duplicates: 0 };
  }

  async close(): Promise<void> {
    await this.producer.disconnect();
  }
}
