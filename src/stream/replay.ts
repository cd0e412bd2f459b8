// Replays a raw dataset's install/uninstall events (src/data/raw.ts format) into the `app-events`
// topic at a chosen rate, so a person can watch the realtime side react. Events keep their file
// order (per user that is time order in generated data); the key is the user id.
import { Partitioners, type Producer } from 'kafkajs';
import { loadDatasetSpec, readRecords, type EventRow, type ReadStats } from '../data/raw.js';
import { UserError } from '../util/errors.js';
import { child } from '../util/log.js';
import { Progress } from '../util/progress.js';
import { encodeEvent } from './codec.js';
import { createKafka, ensureTopics, DEFAULT_TOPIC } from './kafka.js';

const log = child('produce');

export interface ReplayOptions {
  dataDir: string;
  brokers: string | string[];
  topic?: string;
  /** Events per second; 0 = as fast as the broker takes them. */
  rate?: number;
  /** Replay the held-out week instead of the history. */
  heldOut?: boolean;
  /** Stop after this many events. */
  limit?: number;
  /** 'original': the file's timestamps; 'now': stamp each event with its send time (live demo). */
  timestamps?: 'original' | 'now';
  numPartitions?: number;
  /** Messages per send request. */
  batchSize?: number;
  clientId?: string;
  progress?: boolean;
}

export interface ReplayResult {
  file: string;
  produced: number;
  badRecords: number;
  firstBad: { line: number; reason: string }[];
  seconds: number;
  rate: number;
}

export async function replayEvents(opts: ReplayOptions): Promise<ReplayResult> {
  const ds = loadDatasetSpec(opts.dataDir);
  const file = opts.heldOut ? ds.paths.heldOut : ds.paths.events;
  if (!file) {
    throw new UserError(`${opts.dataDir}/dataset.json names no ${opts.heldOut ? 'held-out ("heldOut")' : 'history ("events")'} events file${opts.heldOut ? '' : ' (try --heldout)'}`);
  }
  const rate = opts.rate ?? 0;
  if (!(rate >= 0) || !Number.isFinite(rate)) throw new UserError(`--rate must be a number >= 0 (events per second), got ${opts.rate}`);
  const limit = opts.limit ?? Infinity;
  if (!(limit > 0)) throw new UserError(`--limit must be a positive number of events, got ${opts.limit}`);
  const topic = opts.topic ?? DEFAULT_TOPIC;
  const batchSize = opts.batchSize ?? (rate > 0 ? Math.max(1, Math.min(1000, Math.floor(rate / 20))) : 1000);
  const stamp = opts.timestamps ?? 'original';

  const kafka = createKafka({ brokers: opts.brokers, clientId: opts.clientId ?? 'aetn-produce' });
  const admin = kafka.admin();
  await admin.connect();
  try {
    await ensureTopics(admin, [{ topic, numPartitions: opts.numPartitions }]);
  } finally {
    await admin.disconnect();
  }
  const producer: Producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false });
  await producer.connect();
  const progress = new Progress({ label: `produce ${topic}`, unit: 'events', silent: opts.progress === false ? true : undefined });
  const stats: ReadStats = { lines: 0, ok: 0, bad: 0 };
  const firstBad: { line: number; reason: string }[] = [];
  const t0 = performance.now();
  let produced = 0;
  let pending: { key: string; value: Buffer }[] = [];
  const flush = async () => {
    if (pending.length === 0) return;
    const messages = pending;
    pending = [];
    await producer.send({ topic, acks: -1, messages });
    produced += messages.length;
    progress.tick(messages.length);
    if (rate > 0) {
      // Pace against the start time, not per batch, so rounding errors do not accumulate.
      const dueMs = (produced / rate) * 1000 - (performance.now() - t0);
      if (dueMs > 1) await new Promise((r) => setTimeout(r, dueMs));
    }
  };
  try {
    for (const rec of readRecords<EventRow>(file, 'events', stats)) {
      if (!rec.ok) {
        if (firstBad.length < 5) firstBad.push({ line: rec.line, reason: rec.reason });
        continue;
      }
      const e = rec.row;
      const value = encodeEvent({
        eventId: e.eventId,
        userId: e.userId,
        packageName: e.pkg,
        type: e.type,
        timestampMs: stamp === 'now' ? Date.now() : e.timeMs,
      });
      pending.push({ key: e.userId, value: Buffer.from(value.buffer, value.byteOffset, value.byteLength) });
      if (pending.length >= batchSize) await flush();
      if (produced + pending.length >= limit) break;
    }
    await flush();
  } finally {
    await producer.disconnect();
  }
  const seconds = (performance.now() - t0) / 1000;
  progress.finish();
  if (stats.bad > 0) log.warn({ file, badRecords: stats.bad, firstBad }, 'skipped malformed event records');
  return { file, produced, badRecords: stats.bad, firstBad, seconds, rate: seconds > 0 ? produced / seconds : 0 };
}
