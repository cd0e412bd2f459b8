// Offsets are committed only after the state is durable: a consumer killed (-9) between its LMDB
// commit and its Kafka commit replays those messages on restart, and the replay changes nothing.
import { describe, expect, inject, it } from 'vitest';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { RealtimePipeline } from '../../src/stream/pipeline.js';
import { StateDb } from '../../src/stream/state.js';
import { createKafka } from '../../src/stream/kafka.js';
import {
  connectProducer, createTopic, expectedWindow, fakeEmbed, fakeHead, makeEvents, openStoreAt, produceEvents, SHORT_FEATURE,
  tempStore, testVocab, uniqueName, waitFor,
} from './helpers.js';

const brokers = inject('kafkaBrokers');
const fixture = join(fileURLToPath(new URL('.', import.meta.url)), 'fixtures', 'crash-consumer.ts');

describe.skipIf(!brokers)('crash between durable write and offset commit (real Kafka)', () => {
  it('replays after kill -9 and applies every event exactly once', async () => {
    const topic = uniqueName('events');
    const groupId = uniqueName('g');
    await createTopic(brokers, topic, 2);
    const events = makeEvents({ users: 25, perUser: 16 });
    const producer = await connectProducer(brokers);
    await produceEvents(producer, topic, events);
    await producer.disconnect();

    const t = tempStore();
    const storeDir = join(t.dir, 'store');
    await t.store.close(); // the child owns it while it runs

    const child = spawn(process.execPath, ['--import', 'tsx', fixture], {
      env: { ...process.env, BROKERS: brokers, TOPIC: topic, GROUP_ID: groupId, STORE_DIR: storeDir, KILL_AFTER_CHUNKS: '3', CHUNK_SIZE: '40' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exit = await new Promise<{ code: number | null; signal: string | null }>((r) => child.on('exit', (code, signal) => r({ code, signal })));
    expect(exit.signal, stderr).toBe('SIGKILL');

    // The crash left durable state for 3 chunks, and Kafka knows of at most 2 of them.
    const store = openStoreAt(storeDir);
    const db = new StateDb(store.root);
    const appliedAtCrash = [...db.all()].reduce((s, st) => s + st.applied, 0);
    expect(appliedAtCrash).toBeGreaterThanOrEqual(3 * 40);
    expect(appliedAtCrash).toBeLessThan(events.length);
    const admin = createKafka({ brokers, clientId: 'crash-check' }).admin();
    await admin.connect();
    const committed = (await admin.fetchOffsets({ groupId, topics: [topic] }))[0]!.partitions.reduce((s, p) => s + Math.max(0, Number(p.offset)), 0);
    await admin.disconnect();
    expect(committed).toBeLessThan(appliedAtCrash);

    // Restart with the same group: the uncommitted tail is redelivered and skipped.
    const vocab = testVocab();
    const p = new RealtimePipeline({ brokers, store, head: fakeHead, featureId: SHORT_FEATURE, vocab, topic, dlqTopic: `${topic}.dlq`, groupId, maxEvents: 8, chunkSize: 40 });
    try {
      await p.connect();
      await p.run();
      await waitFor('the rest of the events', () => [...db.all()].reduce((s, st) => s + st.applied, 0) >= events.length && p.stats().applied + p.stats().skipped >= events.length - committed);
      await new Promise((r) => setTimeout(r, 500)); // room for any wrongly repeated delivery to show
      expect(p.stats().skipped).toBeGreaterThan(0);
      expect(p.stats().skipped).toBe(appliedAtCrash - committed);
      expect(p.stats().applied).toBe(events.length - appliedAtCrash);
      for (let u = 0; u < 25; u++) {
        const st = db.get(`u${u}`)!;
        expect(st.applied).toBe(16);
        const want = expectedWindow(events, `u${u}`, vocab, 8);
        expect(st.events).toEqual(want);
        expect(Array.from(store.get(SHORT_FEATURE, `u${u}`)!.vector)).toEqual(Array.from(fakeEmbed({ events: want })));
      }
    } finally {
      await p.stop();
      await store.close();
      await t.cleanup().catch(() => undefined);
    }
  });
});
