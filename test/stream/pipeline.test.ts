// The realtime pipeline against the real test broker (global setup): state and vectors written,
// dead letters with reasons, partitions in parallel.
import { afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { create, toBinary } from '@bufbuild/protobuf';
import type { Producer } from 'kafkajs';
import { AppEventSchema } from '../../src/gen/aetn/v1/events_pb.js';
import { RealtimePipeline } from '../../src/stream/pipeline.js';
import { StateDb } from '../../src/stream/state.js';
import { createKafka } from '../../src/stream/kafka.js';
import { parseDlqEnvelope, DLQ_HEADER_REASON } from '../../src/stream/dlq.js';
import { encodeEvent } from '../../src/stream/codec.js';
import type { RecentEvents } from '../../src/stream/types.js';
import {
  connectProducer, createTopic, expectedWindow, fakeEmbed, fakeHead, makeEvents, produceEvents, SHORT_FEATURE,
  tempStore, testVocab, uniqueName, waitFor, type TempStore,
} from './helpers.js';

const brokers = inject('kafkaBrokers');
const vocab = testVocab();

describe.skipIf(!brokers)('realtime pipeline (real Kafka)', () => {
  let producer: Producer;
  const cleanups: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    producer = await connectProducer(brokers);
    return async () => {
      await producer.disconnect();
    };
  });

  afterEach(async () => {
    while (cleanups.length) await cleanups.pop()!();
  });

  function pipelineFor(t: TempStore, topic: string, extra: Partial<ConstructorParameters<typeof RealtimePipeline>[0]> = {}) {
    const p = new RealtimePipeline({
      brokers,
      store: t.store,
      head: fakeHead,
      featureId: SHORT_FEATURE,
      vocab,
      topic,
      dlqTopic: `${topic}.dlq`,
      groupId: uniqueName('g'),
      maxEvents: 8,
      ...extra,
    });
    cleanups.push(async () => {
      await p.stop();
      await t.cleanup();
    });
    return p;
  }

  it('consumes events into per-user state and short-term vectors', async () => {
    const topic = uniqueName('events');
    await createTopic(brokers, topic, 4);
    const events = makeEvents({ users: 30, perUser: 12 });
    // One event delivered twice (a producer retry): applied once.
    const dupe = events[5]!;
    await produceEvents(producer, topic, [...events, dupe]);
    const t = tempStore();
    const p = pipelineFor(t, topic);
    await p.connect();
    await p.run();
    await waitFor('all events', () => p.stats().applied + p.stats().duplicates >= events.length + 1);
    const s = p.stats();
    expect(s.applied).toBe(events.length);
    expect(s.duplicates).toBe(1);
    expect(s.dlq).toBe(0);
    const db = new StateDb(t.store.root);
    expect(db.count()).toBe(30);
    for (let u = 0; u < 30; u++) {
      const userId = `u${u}`;
      const st = db.get(userId)!;
      expect(st.applied).toBe(12);
      const want = expectedWindow(events, userId, vocab, 8);
      expect(st.events).toEqual(want);
      const stored = t.store.get(SHORT_FEATURE, userId)!;
      expect(stored).toBeDefined();
      expect(Array.from(stored.vector)).toEqual(Array.from(fakeEmbed({ events: want })));
    }
    expect(await p.metrics.registry.getSingleMetricAsString('aetn_stream_events_total')).toMatch(/result="applied"} 360/);
  });

  it('sends each kind of bad message to the dead-letter topic with its reason and goes on', async () => {
    const topic = uniqueName('events');
    await createTopic(brokers, topic, 2);
    const now = Date.now();
    const good = makeEvents({ users: 3, perUser: 2 });
    const bad: { key: string | null; value: Buffer; reason: string }[] = [
      { key: 'u1', value: Buffer.from([0xff, 0xff, 0xff, 0x0f, 0x01]), reason: 'undecodable' },
      { key: 'u1', value: Buffer.from(encodeEvent({ eventId: '', userId: 'u1', packageName: 'com.app1', type: 1, timestampMs: now })), reason: 'missing-field' },
      { key: 'u2', value: Buffer.from(encodeEvent({ eventId: 'x3', userId: 'u2', packageName: 'com.app1', type: 7, timestampMs: now })), reason: 'unknown-type' },
      { key: 'u2', value: Buffer.from(encodeEvent({ eventId: 'x4', userId: 'u2', packageName: 'com.app1', type: 1, timestampMs: now + 30 * 86400_000 })), reason: 'future-timestamp' },
      { key: 'u0', value: Buffer.from(encodeEvent({ eventId: 'x5', userId: 'u0', packageName: 'com.unknown.app', type: 1, timestampMs: now })), reason: 'unknown-app' },
      { key: 'someone-else', value: Buffer.from(encodeEvent({ eventId: 'x6', userId: 'u0', packageName: 'com.app2', type: 1, timestampMs: now })), reason: 'key-mismatch' },
      { key: 'u0', value: Buffer.from(toBinary(AppEventSchema, create(AppEventSchema, { eventId: 'x7', userId: 'u0', packageName: 'com.app2', type: 1 }))), reason: 'missing-field' },
      // An erased user (tombstone below): dropped with its reason, nothing written for it.
      { key: 'gone', value: Buffer.from(encodeEvent({ eventId: 'x8', userId: 'gone', packageName: 'com.app2', type: 1, timestampMs: now })), reason: 'forgotten-user' },
    ];
    await produceEvents(producer, topic, good.slice(0, 3));
    await producer.send({ topic, acks: -1, messages: bad.map((b) => ({ key: b.key, value: b.value })) });
    await produceEvents(producer, topic, good.slice(3));

    const t = tempStore();
    await t.store.forget(['gone']);
    const p = pipelineFor(t, topic);
    await p.connect();
    await p.run();
    await waitFor('good and bad events', () => p.stats().applied === good.length && p.stats().dlq === bad.length);
    expect(p.stats().dlqByReason).toEqual({ undecodable: 1, 'missing-field': 2, 'unknown-type': 1, 'future-timestamp': 1, 'unknown-app': 1, 'key-mismatch': 1, 'forgotten-user': 1 });
    expect(new StateDb(t.store.root).get('gone')).toBeUndefined();
    expect(t.store.get(SHORT_FEATURE, 'gone')).toBeUndefined();
    for (let u = 0; u < 3; u++) expect(new StateDb(t.store.root).get(`u${u}`)!.applied).toBe(2);

    // Read the DLQ back: reason in a header and in the envelope, original bytes intact.
    const consumer = createKafka({ brokers, clientId: 'dlq-reader' }).consumer({ groupId: uniqueName('dlq'), maxWaitTimeInMs: 100 });
    const seen: { reason: string; header: string; bytes: string; key: string | null }[] = [];
    const bySource = new Map<string, string>();
    await consumer.connect();
    cleanups.push(() => consumer.disconnect());
    await consumer.subscribe({ topic: `${topic}.dlq`, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        const env = parseDlqEnvelope(message.value);
        // DLQ delivery is at least once (a retried chunk sends again): count each source message once,
        // and a repeat must be the same record.
        const src = `${env.source.partition}/${env.source.offset}`;
        const body = JSON.stringify({ ...env, failedAtMs: 0 });
        if (bySource.has(src)) {
          expect(body).toBe(bySource.get(src));
          return;
        }
        bySource.set(src, body);
        seen.push({ reason: env.reason, header: String(message.headers?.[DLQ_HEADER_REASON]), bytes: env.valueBase64, key: env.key });
        expect(env.source.topic).toBe(topic);
        expect(env.detail.length).toBeGreaterThan(0);
      },
    });
    await waitFor('DLQ messages', () => seen.length >= bad.length);
    const want = bad.map((b) => ({ reason: b.reason, header: b.reason, bytes: b.value.toString('base64'), key: b.key })).sort((a, b) => a.bytes.localeCompare(b.bytes));
    expect(seen.sort((a, b) => a.bytes.localeCompare(b.bytes))).toEqual(want);
  });

  it('processes partitions in parallel', async () => {
    const topic = uniqueName('events');
    await createTopic(brokers, topic, 4);
    const events = makeEvents({ users: 40, perUser: 3 });
    await produceEvents(producer, topic, events);
    const t = tempStore();
    let active = 0;
    let maxActive = 0;
    const partitionsSeen = new Set<number>();
    // An async head that takes time, as a worker pool would: chunks of other partitions proceed meanwhile.
    const slowHead = async (states: RecentEvents[]) => {
      active++;
      maxActive = Math.max(maxActive, active);
      await new Promise((r) => setTimeout(r, 150));
      active--;
      return fakeHead(states);
    };
    const p = pipelineFor(t, topic, {
      head: slowHead,
      partitionsConcurrently: 4,
      hooks: { afterDurable: (info) => void partitionsSeen.add(info.partition) },
    });
    await p.connect();
    await p.run();
    await waitFor('all events', () => p.stats().applied === events.length);
    expect(partitionsSeen.size).toBe(4);
    expect(maxActive).toBeGreaterThanOrEqual(2);
    expect(p.stats().maxConcurrentChunks).toBeGreaterThanOrEqual(2);
    for (let u = 0; u < 40; u++) expect(new StateDb(t.store.root).get(`u${u}`)!.applied).toBe(3);
  });

  it('fails loudly (done rejects) when the head breaks, and commits nothing for that chunk', async () => {
    const topic = uniqueName('events');
    await createTopic(brokers, topic, 1);
    await produceEvents(producer, topic, makeEvents({ users: 2, perUser: 2 }));
    const t = tempStore();
    const p = pipelineFor(t, topic, { head: () => [new Float32Array(3)] }); // wrong count and dim
    await p.connect();
    await p.run();
    await expect(p.done).rejects.toThrow(/realtime head returned 1 vectors for 2 users/);
    expect(new StateDb(t.store.root).count()).toBe(0);
    expect(t.store.count(SHORT_FEATURE)).toBe(0);
  });
});
