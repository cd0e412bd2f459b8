// Erased users in the realtime path, without Kafka (the Kafka pipeline's DLQ reason is checked in
// pipeline.test.ts): EventService refuses their events with reason forgotten-user, a user forgotten
// while its events are in flight gets nothing written, and unforget lets events in again.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { EventService, PublishEventsRequestSchema, type PublishEventsResponse } from '../../src/gen/aetn/v1/event_service_pb.js';
import type { AppEventType } from '../../src/gen/aetn/v1/events_pb.js';
import { serviceDefinition } from '../../src/serve/adapter.js';
import { ApiKeyAuth } from '../../src/serve/auth.js';
import { registerEventService } from '../../src/serve/events.js';
import { EventProcessor } from '../../src/stream/processor.js';
import { DirectSink } from '../../src/stream/sinks.js';
import { child } from '../../src/util/log.js';
import { fakeHead, SHORT_FEATURE, tempStore, testVocab, type TempStore } from './helpers.js';

const KEY = 'events-writer-key1';
const vocab = testVocab(20);
let ts: TempStore;
let processor: EventProcessor;
let server: grpc.Server;
let client: grpc.Client;

beforeAll(async () => {
  ts = tempStore();
  processor = new EventProcessor({ store: ts.store, head: fakeHead, featureId: SHORT_FEATURE });
  server = new grpc.Server();
  // Wired as services/serve.ts wires it.
  registerEventService(server, { auth: new ApiKeyAuth({ [KEY]: ['events:write'] }), sink: new DirectSink(processor), vocab, log: child('forget-test'), isForgotten: (u) => ts.store.isForgotten(u) });
  const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  const Ctor = grpc.makeGenericClientConstructor(serviceDefinition(EventService), 'EventService');
  client = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
});

afterAll(async () => {
  client?.close();
  await new Promise<void>((r) => server.tryShutdown(() => r()));
  await ts?.cleanup();
});

function publish(events: { eventId: string; userId: string }[]): Promise<PublishEventsResponse> {
  const md = new grpc.Metadata();
  md.set('x-api-key', KEY);
  return new Promise((resolve, reject) => {
    const call = (client as unknown as Record<string, (md: grpc.Metadata, cb: (e: grpc.ServiceError | null, r: PublishEventsResponse) => void) => grpc.ClientWritableStream<unknown>>).publishEvents!.call(
      client,
      md,
      (err, res) => (err ? reject(err) : resolve(res)),
    );
    call.write(
      create(PublishEventsRequestSchema, {
        events: events.map((e) => ({ ...e, packageName: 'com.app1', type: 1 as AppEventType, timestampMs: BigInt(Date.now() - 60_000) })),
      }),
    );
    call.end();
  });
}

describe('forgotten users in the realtime path', () => {
  it('EventService rejects their events with reason forgotten-user and writes nothing for them', async () => {
    expect(await publish([{ eventId: 'a1', userId: 'gone' }])).toMatchObject({ accepted: 1 });
    expect(ts.store.get(SHORT_FEATURE, 'gone')).toBeDefined();
    const c = await ts.store.forget(['gone']);
    expect(c).toMatchObject({ vectorsRemoved: 1, realtimeStatesRemoved: 1 });
    expect(processor.state('gone')).toBeUndefined();
    const res = await publish([
      { eventId: 'a2', userId: 'gone' },
      { eventId: 'b1', userId: 'kept' },
    ]);
    expect(res.accepted).toBe(1);
    expect(res.rejected).toEqual([expect.objectContaining({ index: 0, reason: 'forgotten-user' })]);
    expect(ts.store.get(SHORT_FEATURE, 'gone')).toBeUndefined();
    expect(processor.state('gone')).toBeUndefined();
    expect(ts.store.get(SHORT_FEATURE, 'kept')).toBeDefined();
  });

  it('a user forgotten between the edge check and the commit gets nothing written', async () => {
    // The processor applies at once and commits later: forget in between.
    const unit = processor.process([{ eventId: 'r1', userId: 'racer', app: 2, type: 1, timestampMs: Date.now() - 1000 }]);
    await ts.store.forget(['racer']);
    await unit;
    expect(ts.store.get(SHORT_FEATURE, 'racer')).toBeUndefined();
    expect(processor.state('racer')).toBeUndefined();
  });

  it('unforget lets events in again', async () => {
    expect(await ts.store.unforget(['gone'])).toBe(1);
    expect(await publish([{ eventId: 'a3', userId: 'gone' }])).toMatchObject({ accepted: 1, rejected: [] });
    expect(ts.store.get(SHORT_FEATURE, 'gone')).toBeDefined();
  });
});
