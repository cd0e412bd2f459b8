// EventService over a real gRPC server on loopback, a real LMDB store in a temp dir, and (when the
// test setup has one) the real Kafka broker. The head is the stream tests' stand-in (our own
// logic in isolation): the point here is transport, validation, idempotence and durability.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { create, fromBinary } from '@bufbuild/protobuf';
import { EventService, PublishEventsRequestSchema, type PublishEventsResponse } from '../../src/gen/aetn/v1/event_service_pb.js';
import { AppEventSchema, AppEventType } from '../../src/gen/aetn/v1/events_pb.js';
import { serviceDefinition } from '../../src/serve/adapter.js';
import { ApiKeyAuth } from '../../src/serve/auth.js';
import { registerEventService } from '../../src/serve/events.js';
import { EventProcessor } from '../../src/stream/processor.js';
import { DirectSink, KafkaSink, type EventSink } from '../../src/stream/sinks.js';
import { createKafka } from '../../src/stream/kafka.js';
import { child } from '../../src/util/log.js';
import { fakeHead, SHORT_FEATURE, tempStore, testVocab, uniqueName, type TempStore } from '../stream/helpers.js';

const WRITER = 'events-writer-key1';
const READER = 'vectors-reader-key';
const auth = new ApiKeyAuth({ [WRITER]: ['events:write'], [READER]: ['vectors:read'] });
const vocab = testVocab(20);

type Ev = { eventId: string; userId: string; packageName: string; type: number; timestampMs: number };
const ev = (eventId: string, userId: string, app: number, type = 1, timestampMs = Date.now() - 60_000): Ev => ({
  eventId,
  userId,
  packageName: `com.app${app}`,
  type,
  timestampMs,
});

interface Harness {
  server: grpc.Server;
  client: grpc.Client;
  close(): Promise<void>;
}

async function startHarness(sink: EventSink, maxEventsPerCall?: number): Promise<Harness> {
  const server = new grpc.Server();
  registerEventService(server, { auth, sink, vocab, log: child('events-test'), maxEventsPerCall });
  const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  const Ctor = grpc.makeGenericClientConstructor(serviceDefinition(EventService), 'EventService');
  const client = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  return {
    server,
    client,
    close: async () => {
      client.close();
      await new Promise<void>((r) => server.tryShutdown(() => r()));
    },
  };
}

/** Publishes `batches` (one request each) in one call. */
function publish(h: Harness, key: string | null, batches: Ev[][]): Promise<PublishEventsResponse> {
  const md = new grpc.Metadata();
  if (key) md.set('x-api-key', key);
  return new Promise((resolve, reject) => {
    const call = (h.client as unknown as Record<string, (md: grpc.Metadata, cb: (e: grpc.ServiceError | null, r: PublishEventsResponse) => void) => grpc.ClientWritableStream<unknown>>)
      .publishEvents!.call(h.client, md, (err, res) => (err ? reject(err) : resolve(res)));
    for (const b of batches) {
      call.write(create(PublishEventsRequestSchema, { events: b.map((e) => ({ ...e, type: e.type as AppEventType, timestampMs: BigInt(e.timestampMs) })) }));
    }
    call.end();
  });
}

describe('EventService with the DirectSink', () => {
  let ts: TempStore;
  let h: Harness;
  let processor: EventProcessor;
  beforeAll(async () => {
    ts = tempStore();
    processor = new EventProcessor({ store: ts.store, head: fakeHead, featureId: SHORT_FEATURE });
    h = await startHarness(new DirectSink(processor), 50);
  });
  afterAll(async () => {
    await h?.close();
    await ts?.cleanup();
  });

  it('makes events durable and changes the short-term vector before acknowledging', async () => {
    const r1 = await publish(h, WRITER, [[ev('a1', 'alice', 1), ev('a2', 'alice', 2)], [ev('b1', 'bob', 3)]]);
    expect([r1.accepted, r1.duplicates, r1.rejected.length]).toEqual([3, 0, 0]);
    const v1 = ts.store.get(SHORT_FEATURE, 'alice')!.vector.slice();
    expect(Array.from(v1)).toEqual(Array.from(fakeHead([processor.state('alice')!])[0]!));
    expect(processor.state('alice')!.events.map((e) => e.eventId)).toEqual(['a1', 'a2']);

    const r2 = await publish(h, WRITER, [[ev('a3', 'alice', 7, 2, Date.now() - 1000)]]);
    expect(r2.accepted).toBe(1);
    const v2 = ts.store.get(SHORT_FEATURE, 'alice')!.vector;
    expect(Array.from(v2)).not.toEqual(Array.from(v1));
    expect(processor.state('alice')!.events.map((e) => e.eventId)).toEqual(['a1', 'a2', 'a3']);
  });

  it('acknowledges duplicates without applying them twice', async () => {
    const before = processor.state('bob')!;
    const vBefore = Array.from(ts.store.get(SHORT_FEATURE, 'bob')!.vector);
    const r = await publish(h, WRITER, [[ev('b1', 'bob', 3), ev('b1', 'bob', 3)], [ev('b2', 'bob', 4)]]);
    expect([r.accepted, r.duplicates]).toEqual([1, 2]);
    const after = processor.state('bob')!;
    expect(after.applied).toBe(before.applied + 1);
    expect(after.events.map((e) => e.eventId)).toEqual(['b1', 'b2']);
    expect(Array.from(ts.store.get(SHORT_FEATURE, 'bob')!.vector)).not.toEqual(vBefore);
  });

  it('rejects bad events one by one with reasons and keeps the good ones', async () => {
    const r = await publish(h, WRITER, [
      [ev('', 'carol', 1), ev('c1', 'carol', 1)],
      [
        { ...ev('c2', 'carol', 1), type: 0 },
        ev('c3', 'carol', 1, 1, Date.now() + 10 * 24 * 3600_000),
        { ...ev('c4', 'carol', 1), packageName: 'com.unknown' },
        ev('c5', '', 1),
        ev('c6', 'carol', 5),
      ],
    ]);
    expect(r.accepted).toBe(2);
    expect(r.rejected.map((x) => [x.index, x.reason])).toEqual([
      [0, 'missing-field'],
      [2, 'unknown-type'],
      [3, 'future-timestamp'],
      [4, 'unknown-app'],
      [5, 'missing-field'],
    ]);
    expect(r.rejected.every((x) => x.detail.length > 0)).toBe(true);
    expect(processor.state('carol')!.events.map((e) => e.eventId)).toEqual(['c1', 'c6']);
  });

  it('requires scope events:write and refuses oversized calls without applying any of them', async () => {
    await expect(publish(h, null, [[ev('d1', 'dave', 1)]])).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
    await expect(publish(h, READER, [[ev('d1', 'dave', 1)]])).rejects.toMatchObject({ code: grpc.status.PERMISSION_DENIED });
    const many = Array.from({ length: 51 }, (_, i) => ev(`d${i}`, 'dave', i % 20));
    await expect(publish(h, WRITER, [many])).rejects.toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED });
    expect(processor.state('dave')).toBeUndefined();
    expect(ts.store.get(SHORT_FEATURE, 'dave')).toBeUndefined();
  });
});

const brokers = inject('kafkaBrokers');
describe.skipIf(!brokers)('EventService with the KafkaSink', () => {
  it('writes accepted events to the topic keyed by user id; a consumer reads them back', async () => {
    const topic = uniqueName('events-test');
    const sink = await KafkaSink.open({ brokers, topic, numPartitions: 2 });
    const h = await startHarness(sink);
    const kafka = createKafka({ brokers, clientId: 'events-test-consumer' });
    const consumer = kafka.consumer({ groupId: uniqueName('events-test-group') });
    try {
      const r = await publish(h, WRITER, [[ev('k1', 'erin', 1), { ...ev('k2', 'erin', 1), packageName: 'nope' }, ev('k3', 'frank', 2, 2)]]);
      expect([r.accepted, r.rejected.map((x) => x.index)]).toEqual([2, [1]]);
      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      const got: { key: string; eventId: string; userId: string; packageName: string; type: number }[] = [];
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`only ${got.length} messages read back`)), 30_000);
        void consumer.run({
          eachMessage: async ({ message }) => {
            const e = fromBinary(AppEventSchema, message.value!);
            got.push({ key: message.key!.toString(), eventId: e.eventId, userId: e.userId, packageName: e.packageName, type: e.type });
            if (got.length >= 2) {
              clearTimeout(timer);
              resolve();
            }
          },
        });
      });
      got.sort((a, b) => a.eventId.localeCompare(b.eventId));
      expect(got).toEqual([
        { key: 'erin', eventId: 'k1', userId: 'erin', packageName: 'com.app1', type: 1 },
        { key: 'frank', eventId: 'k3', userId: 'frank', packageName: 'com.app2', type: 2 },
      ]);
    } finally {
      await consumer.disconnect();
      await h.close();
      await sink.close();
    }
  }, 60_000);
});
