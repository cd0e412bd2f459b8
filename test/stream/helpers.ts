// Shared pieces of the stream tests: a temp store with a short-term feature, a stand-in head
// (a fake of our own logic, never the product head), an event producer and polling.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Partitioners, type Producer } from 'kafkajs';
import { EmbeddingStore } from '../../src/store/store.js';
import { encodeEvent, type PlainEvent } from '../../src/stream/codec.js';
import { createKafka } from '../../src/stream/kafka.js';
import type { RecentEvents } from '../../src/stream/types.js';

export const DIM = 8;
export const SHORT_FEATURE = 'rt-test';
export const LONG_FEATURE = 'aetn-test';

/** A vocabulary of `n` apps: package `com.app<i>` (and an alias `com.app<i>.alias`) -> i. */
export function testVocab(n = 50): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    m.set(`com.app${i}`, i);
    m.set(`com.app${i}.alias`, i);
  }
  return m;
}

function appVector(app: number): Float32Array {
  const v = new Float32Array(DIM);
  for (let j = 0; j < DIM; j++) v[j] = Math.sin(app * 12.9898 + j * 78.233);
  return v;
}

/** Stand-in head: installs add, uninstalls subtract half of a fixed per-app vector, then mean. */
export function fakeEmbed(state: { events: { app: number; type: number }[] }): Float32Array {
  const out = new Float32Array(DIM);
  for (const e of state.events) {
    const v = appVector(e.app);
    const w = e.type === 1 ? 1 : -0.5;
    for (let j = 0; j < DIM; j++) out[j]! += w * v[j]!;
  }
  const n = Math.max(1, state.events.length);
  for (let j = 0; j < DIM; j++) out[j]! /= n;
  return out;
}

export function fakeHead(states: RecentEvents[]): Float32Array[] {
  return states.map(fakeEmbed);
}

export interface TempStore {
  store: EmbeddingStore;
  dir: string;
  cleanup(): Promise<void>;
}

export function openStoreAt(dir: string): EmbeddingStore {
  const store = EmbeddingStore.open(dir);
  store.registerFeature({ featureId: LONG_FEATURE, namespace: 'long', dim: 16, variant: 'aetn' });
  store.registerFeature({ featureId: SHORT_FEATURE, namespace: 'short', dim: DIM, variant: 'realtime', baseFeatureId: LONG_FEATURE });
  return store;
}

export function tempStore(): TempStore {
  const dir = mkdtempSync(join(tmpdir(), 'aetn-stream-test-'));
  const store = openStoreAt(join(dir, 'store'));
  return {
    store,
    dir,
    cleanup: async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

export async function connectProducer(brokers: string): Promise<Producer> {
  const producer = createKafka({ brokers, clientId: 'aetn-test-producer' }).producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    allowAutoTopicCreation: false,
  });
  await producer.connect();
  return producer;
}

export async function createTopic(brokers: string, topic: string, numPartitions = 4): Promise<void> {
  const admin = createKafka({ brokers, clientId: 'aetn-test-admin' }).admin();
  await admin.connect();
  try {
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions, replicationFactor: 1 }] });
  } finally {
    await admin.disconnect();
  }
}

/** Deterministic events: user u<k> gets installs/uninstalls of apps, timestamps increasing. */
export function makeEvents(opts: { users: number; perUser: number; apps?: number; baseMs?: number; idPrefix?: string }): PlainEvent[] {
  const { users, perUser, apps = 50, baseMs = Date.now() - 3600_000, idPrefix = 'e' } = opts;
  const out: PlainEvent[] = [];
  for (let i = 0; i < perUser; i++) {
    for (let u = 0; u < users; u++) {
      const app = (u * 7 + i * 3) % apps;
      out.push({
        eventId: `${idPrefix}-${u}-${i}`,
        userId: `u${u}`,
        packageName: i % 5 === 4 ? `com.app${app}.alias` : `com.app${app}`,
        type: i % 4 === 3 ? 2 : 1,
        timestampMs: baseMs + i * 1000 + u,
      });
    }
  }
  return out;
}

export async function produceEvents(producer: Producer, topic: string, events: PlainEvent[], batch = 500): Promise<void> {
  for (let i = 0; i < events.length; i += batch) {
    await producer.send({
      topic,
      acks: -1,
      messages: events.slice(i, i + batch).map((e) => ({ key: e.userId, value: Buffer.from(encodeEvent(e)) })),
    });
  }
}

export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 60_000, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** Expected window of one user: the `max` most recent events by (timestamp, id), oldest first. */
export function expectedWindow(events: PlainEvent[], userId: string, vocab: Map<string, number>, max = 32) {
  return events
    .filter((e) => e.userId === userId)
    .map((e) => ({ app: vocab.get(e.packageName)!, type: e.type, timestampMs: e.timestampMs, eventId: e.eventId }))
    .sort((a, b) => a.timestampMs - b.timestampMs || (a.eventId < b.eventId ? -1 : 1))
    .slice(-max);
}
