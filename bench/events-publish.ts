// EventService throughput with the DirectSink: events/s through gRPC (loopback, client streaming,
// 500 events per request) against the baseline of calling the same EventProcessor in-process, in
// the same run, on fresh stores. Stand-in head (tests' fake) so the transport + LMDB cost shows.
// Run: npx tsx bench/events-publish.ts [events=20000] [users=2000]
import { mkdirSync, writeFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { create } from '@bufbuild/protobuf';
import { EventService, PublishEventsRequestSchema, type PublishEventsResponse } from '../src/gen/aetn/v1/event_service_pb.js';
import { serviceDefinition } from '../src/serve/adapter.js';
import { ApiKeyAuth } from '../src/serve/auth.js';
import { registerEventService } from '../src/serve/events.js';
import { EventProcessor } from '../src/stream/processor.js';
import { DirectSink } from '../src/stream/sinks.js';
import { child } from '../src/util/log.js';
import { fakeHead, SHORT_FEATURE, tempStore, testVocab } from '../test/stream/helpers.js';

const N = Number(process.argv[2] ?? 20000);
const USERS = Number(process.argv[3] ?? 2000);
const PER_REQ = 500;
const vocab = testVocab(50);
const now = Date.now();
const events = Array.from({ length: N }, (_, i) => ({
  eventId: `e${i}`,
  userId: `u${i % USERS}`,
  packageName: `com.app${(i * 7) % 50}`,
  type: (i % 5 === 0 ? 2 : 1) as 1 | 2,
  timestampMs: now - 3600_000 + i,
}));

async function direct(): Promise<number> {
  const ts = tempStore();
  const p = new EventProcessor({ store: ts.store, head: fakeHead, featureId: SHORT_FEATURE });
  const t0 = performance.now();
  for (let i = 0; i < N; i += PER_REQ) {
    await p.process(events.slice(i, i + PER_REQ).map((e) => ({ eventId: e.eventId, userId: e.userId, app: vocab.get(e.packageName)!, type: e.type, timestampMs: e.timestampMs })));
  }
  const ms = performance.now() - t0;
  await ts.cleanup();
  return ms;
}

async function overGrpc(): Promise<number> {
  const ts = tempStore();
  const p = new EventProcessor({ store: ts.store, head: fakeHead, featureId: SHORT_FEATURE });
  const server = new grpc.Server();
  registerEventService(server, { auth: new ApiKeyAuth({ k: ['events:write'] }), sink: new DirectSink(p), vocab, log: child('bench'), maxEventsPerCall: PER_REQ });
  const port = await new Promise<number>((res, rej) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, n) => (e ? rej(e) : res(n))));
  const Ctor = grpc.makeGenericClientConstructor(serviceDefinition(EventService), 'EventService');
  const client = new Ctor(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as Record<string, Function>;
  const md = new grpc.Metadata();
  md.set('x-api-key', 'k');
  const t0 = performance.now();
  let accepted = 0;
  for (let i = 0; i < N; i += PER_REQ) {
    const res = await new Promise<PublishEventsResponse>((resolve, reject) => {
      const call = client.publishEvents!.call(client, md, (err: Error | null, r: PublishEventsResponse) => (err ? reject(err) : resolve(r)));
      call.write(create(PublishEventsRequestSchema, { events: events.slice(i, i + PER_REQ).map((e) => ({ ...e, timestampMs: BigInt(e.timestampMs) })) }));
      call.end();
    });
    accepted += res.accepted;
  }
  const ms = performance.now() - t0;
  if (accepted !== N) throw new Error(`accepted ${accepted} of ${N}`);
  (client as unknown as grpc.Client).close();
  await new Promise<void>((r) => server.tryShutdown(() => r()));
  await ts.cleanup();
  return ms;
}

const rows: { name: string; ms: number; eventsPerS: number; ratio: number }[] = [];
const best = { direct: Infinity, grpc: Infinity };
for (let round = 0; round < 3; round++) {
  best.direct = Math.min(best.direct, await direct());
  best.grpc = Math.min(best.grpc, await overGrpc());
}
for (const [name, ms] of [['EventProcessor in-process (baseline)', best.direct], ['EventService over gRPC loopback', best.grpc]] as const) {
  rows.push({ name, ms: Math.round(ms), eventsPerS: Math.round((N / ms) * 1000), ratio: Number((ms / best.direct).toFixed(2)) });
}
console.log(`${N} events, ${USERS} users, ${PER_REQ} events per call, durable before each ack; best of 3`);
console.table(rows);
mkdirSync('bench/results', { recursive: true });
writeFileSync('bench/results/events-publish.json', JSON.stringify({ events: N, users: USERS, perCall: PER_REQ, rounds: 3, rows }, null, 2));
