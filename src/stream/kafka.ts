// kafkajs clients configured once: logs go through our structured logger, retries back off
// exponentially, and topics are created explicitly (never relying on broker auto-creation).
import { Kafka, logLevel, type Admin, type KafkaConfig, type LogEntry } from 'kafkajs';
import { child } from '../util/log.js';
import { UserError } from '../util/errors.js';

const klog = child('kafkajs');

export const DEFAULT_TOPIC = 'app-events';
export const DEFAULT_DLQ_TOPIC = 'app-events.dlq';
export const DEFAULT_GROUP_ID = 'aetn-realtime';

/** Backoff for every client: 300 ms doubling to 10 s; consumers are also restarted on crash. */
export const RETRY = { initialRetryTime: 300, maxRetryTime: 10_000, retries: 8, factor: 0.2, multiplier: 2 };

export function parseBrokers(brokers: string | string[]): string[] {
  const list = (Array.isArray(brokers) ? brokers : brokers.split(',')).map((b) => b.trim()).filter(Boolean);
  if (list.length === 0) throw new UserError('no Kafka brokers given (use --brokers host:port[,host:port])');
  for (const b of list) {
    if (!/^[^\s:]+:\d{1,5}$/.test(b)) throw new UserError(`bad Kafka broker address ${JSON.stringify(b)}: expected host:port`);
  }
  return list;
}

function kafkaLogCreator() {
  return ({ namespace, level, log }: LogEntry) => {
    const { message, ...extra } = log;
    const fields = { ns: namespace, ...extra };
    delete (fields as Record<string, unknown>).timestamp;
    delete (fields as Record<string, unknown>).logger;
    if (level === logLevel.ERROR) klog.error(fields, message);
    else if (level === logLevel.WARN) klog.warn(fields, message);
    else if (level === logLevel.INFO) klog.info(fields, message);
    else klog.debug(fields, message);
  };
}

export function createKafka(opts: { brokers: string | string[]; clientId?: string } & Omit<Partial<KafkaConfig>, 'brokers' | 'clientId'>): Kafka {
  const { brokers, clientId, ...rest } = opts;
  return new Kafka({
    clientId: clientId ?? 'aetn',
    brokers: parseBrokers(brokers),
    logLevel: logLevel.INFO,
    logCreator: kafkaLogCreator,
    retry: RETRY,
    connectionTimeout: 3000,
    ...rest,
  });
}

export interface TopicSpec {
  topic: string;
  /** Default 4: enough for two cores to work in parallel, few enough for a laptop broker. */
  numPartitions?: number;
  /** Default: min(3, brokers in the cluster). */
  replicationFactor?: number;
}

/** Creates the topics that do not exist yet (and waits for their leaders); existing ones are left as they are. */
export async function ensureTopics(admin: Admin, topics: TopicSpec[]): Promise<void> {
  const existing = new Set(await admin.listTopics());
  const missing = topics.filter((t) => !existing.has(t.topic));
  if (missing.length === 0) return;
  const brokers = (await admin.describeCluster()).brokers.length;
  try {
    await admin.createTopics({
      waitForLeaders: true,
      topics: missing.map((t) => ({
        topic: t.topic,
        numPartitions: t.numPartitions ?? 4,
        replicationFactor: t.replicationFactor ?? Math.max(1, Math.min(3, brokers)),
      })),
    });
  } catch (err) {
    // Another process may have created it in between; anything else is real.
    const again = new Set(await admin.listTopics());
    if (!missing.every((t) => again.has(t.topic))) throw err;
  }
}
