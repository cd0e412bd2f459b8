// The broker going away mid-stream and coming back: the pipeline backs off, restarts its consumer
// and ends with every event applied exactly once. Uses a private broker (other test files share the
// global one, which must not disappear under them). It reads the opt-out variables itself so that
// running this file alone does not also start the shared broker.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestKafkaBroker } from '../kafka/broker.js';
import { RealtimePipeline } from '../../src/stream/pipeline.js';
import { StateDb } from '../../src/stream/state.js';
import type { RecentEvents } from '../../src/stream/types.js';
import { connectProducer, createTopic, fakeHead, makeEvents, produceEvents, SHORT_FEATURE, tempStore, testVocab, uniqueName, waitFor } from './helpers.js';

const enabled = process.env.AETN_TEST_KAFKA !== '0' && !process.env.AETN_TEST_KAFKA_BROKERS;

describe.skipIf(!enabled)('broker stop and restart (private real Kafka)', () => {
  let broker: TestKafkaBroker;
  beforeAll(async () => {
    broker = await TestKafkaBroker.start({ partitions: 2 });
  });
  afterAll(async () => {
    await broker?.destroy();
  });

  it('survives the broker going away and coming back without losing or doubling events', async () => {
    const brokers = broker.brokers;
    const topic = uniqueName('events');
    await createTopic(brokers, topic, 2);
    const first = makeEvents({ users: 40, perUser: 25, idPrefix: 'a' });
    const second = makeEvents({ users: 40, perUser: 10, idPrefix: 'b', baseMs: Date.now() - 60_000 });
    let producer = await connectProducer(brokers);
    await produceEvents(producer, topic, first);
    await producer.disconnect();

    const t = tempStore();
    // A slow head keeps the consumer busy, so the broker goes away in the middle of the stream.
    const slowHead = async (states: RecentEvents[]) => {
      await new Promise((r) => setTimeout(r, 40));
      return fakeHead(states);
    };
    const p = new RealtimePipeline({
      brokers, store: t.store, head: slowHead, featureId: SHORT_FEATURE, vocab: testVocab(), topic,
      dlqTopic: `${topic}.dlq`, groupId: uniqueName('g'), maxEvents: 8, chunkSize: 25,
      kafka: { retry: { initialRetryTime: 200, maxRetryTime: 2000, retries: 5 } },
      // After the restart the consumer rejoins as a new member; the old one must expire first.
      sessionTimeoutMs: 6000,
    });
    try {
      await p.connect();
      await p.run();
      await waitFor('some progress', () => p.stats().applied >= 100);
      expect(p.stats().applied).toBeLessThan(first.length);
      let t0 = Date.now();
      await broker.stop();
      const appliedWhileDown = p.stats().applied;
      await new Promise((r) => setTimeout(r, 3000));
      await broker.restart();
      console.log(`broker down and back in ${Date.now() - t0} ms`);
      t0 = Date.now();
      producer = await connectProducer(brokers);
      await produceEvents(producer, topic, second);
      await producer.disconnect();
      const total = first.length + second.length;
      await waitFor('all events after the restart', () => p.stats().applied >= total, 120_000);
      console.log(`caught up ${Date.now() - t0} ms after the restart; consumer restarts: ${p.stats().restarts}`);
      await new Promise((r) => setTimeout(r, 1000)); // any doubled delivery would show up now
      expect(p.stats().applied).toBe(total);
      expect(p.stats().applied).toBeGreaterThan(appliedWhileDown);
      expect(p.stats().dlq).toBe(0);
      const db = new StateDb(t.store.root);
      for (let u = 0; u < 40; u++) expect(db.get(`u${u}`)!.applied).toBe(35);
      expect(t.store.count(SHORT_FEATURE)).toBe(40);
    } finally {
      await p.stop();
      await t.cleanup();
    }
  });
});
