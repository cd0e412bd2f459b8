// Health, deadlines, cancellation and graceful shutdown against a real server, store and index.
// The index is wrapped to answer slowly (our own test seam), so the audience call is reliably
// still running when the deadline passes, the client cancels or shutdown begins.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { EmbeddingStore } from '../../src/store/store.js';
import { ServingBackend, type IndexSource } from '../../src/serve/backend.js';
import { StoreIndexes } from '../../src/serve/indexes.js';
import { ApiKeyAuth } from '../../src/serve/auth.js';
import { startServer, type RunningServer } from '../../src/serve/server.js';
import { createClient } from '../../src/serve/client.js';
import { AudienceService } from '../../src/gen/aetn/v1/audience_pb.js';
import { UserVectorService } from '../../src/gen/aetn/v1/user_vector_pb.js';
import { child } from '../../src/util/log.js';
import { API_KEYS, buildFixture, KEYS, type Fixture } from './fixture.js';

const log = child('test');
let fx: Fixture;
let store: EmbeddingStore;

const slow = { delayMs: 0, started: 0 };
function slowIndexes(inner: IndexSource): IndexSource {
  return {
    get: async (id) => {
      const s = await inner.get(id);
      if (!s) return s;
      return {
        get size() {
          return s.size;
        },
        search: async (v, k, ef) => {
          slow.started++;
          await new Promise((r) => setTimeout(r, slow.delayMs));
          return s.search(v, k, ef);
        },
      };
    },
    refresh: () => inner.refresh?.(),
    close: () => inner.close?.(),
  };
}

async function start(): Promise<RunningServer> {
  // exhaustiveMaxUsers 0: look-alike calls gather candidates through the (slowed) index, the
  // path these tests hold up; a feature this small would otherwise be scored without a search.
  const backend = new ServingBackend(store, slowIndexes(new StoreIndexes(fx.storeDir, { log })), { log, pollMs: 1000, exhaustiveMaxUsers: 0 });
  return startServer({ backend, auth: new ApiKeyAuth(API_KEYS), port: 0, log });
}

function healthClient(address: string) {
  const Ctor = grpc.makeClientConstructor(healthService as unknown as grpc.ServiceDefinition, 'Health');
  return new Ctor(address, grpc.credentials.createInsecure()) as grpc.Client & Record<string, (...a: unknown[]) => unknown>;
}
function check(c: ReturnType<typeof healthClient>, service: string): Promise<string> {
  return new Promise((resolve, reject) =>
    c.check({ service }, (err: grpc.ServiceError | null, res: { status: string }) => (err ? reject(err) : resolve(res.status))),
  );
}

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const t = Date.now();
  while (!cond()) {
    if (Date.now() - t > ms) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

const seeds = () => fx.users.filter((u) => fx.cluster.get(u) === 2).slice(0, 50); // the seed floor (50)
const lookalikeReq = () => ({ seeds: { case: 'seedUsers' as const, value: { userIds: seeds() } }, audienceSize: 100 });

async function drain(it: AsyncIterable<unknown>): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const m of it) out.push(m);
  return out;
}

beforeAll(async () => {
  fx = await buildFixture({ users: 2000 });
  store = EmbeddingStore.open(fx.storeDir, { create: false });
});
afterAll(async () => {
  await store?.close();
  fx?.cleanup();
});

describe('a running server', () => {
  let srv: RunningServer;
  let au: ReturnType<typeof createClient<typeof AudienceService>>;
  beforeAll(async () => {
    srv = await start();
    au = createClient(AudienceService, srv.address, { apiKey: KEYS.ads });
  });
  afterAll(async () => {
    au?.close();
    await srv?.shutdown(1000);
  });

  it('reports health per service', async () => {
    const h = healthClient(srv.address);
    expect(await check(h, '')).toBe('SERVING');
    expect(await check(h, 'aetn.v1.UserVectorService')).toBe('SERVING');
    expect(await check(h, 'aetn.v1.AudienceService')).toBe('SERVING');
    await expect(check(h, 'no.such.Service')).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    h.close();
  });

  it('honours deadlines: the client gets DEADLINE_EXCEEDED and the server stops working', async () => {
    slow.delayMs = 400;
    slow.started = 0;
    await expect(drain(au.extendLookalike(lookalikeReq(), { timeoutMs: 200 }))).rejects.toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED });
    await until(() => srv.inflight.count === 0);
    const startedAtEnd = slow.started;
    // The first phase's searches were in flight; no later phase started after the deadline.
    await new Promise((r) => setTimeout(r, 600));
    expect(slow.started).toBe(startedAtEnd);
    const text = await srv.metrics.registry.metrics();
    expect(text).toMatch(/aetn_grpc_requests_total\{method="AudienceService\/ExtendLookalike",code="DEADLINE_EXCEEDED"\} 1/);
  });

  it('stops an audience call when the client cancels', async () => {
    slow.delayMs = 400;
    slow.started = 0;
    const ac = new AbortController();
    const p = drain(au.extendLookalike(lookalikeReq(), { signal: ac.signal }));
    await until(() => slow.started > 0);
    const startedAtCancel = slow.started;
    ac.abort();
    await expect(p).rejects.toMatchObject({ code: grpc.status.CANCELLED });
    await until(() => srv.inflight.count === 0);
    await new Promise((r) => setTimeout(r, 600));
    expect(slow.started).toBe(startedAtCancel);
    const text = await srv.metrics.registry.metrics();
    expect(text).toMatch(/aetn_grpc_requests_total\{method="AudienceService\/ExtendLookalike",code="CANCELLED"\} 1/);
  });
});

describe('graceful shutdown', () => {
  it('drains the call in flight, refuses new calls, turns health NOT_SERVING, cuts Watch streams', async () => {
    const srv = await start();
    const au = createClient(AudienceService, srv.address, { apiKey: KEYS.ads });
    const uv = createClient(UserVectorService, srv.address, { apiKey: KEYS.ranker });
    const h = healthClient(srv.address);
    const watched: string[] = [];
    const watch = h.watch({ service: '' }) as grpc.ClientReadableStream<{ status: string }>;
    watch.on('data', (m) => watched.push(m.status));
    watch.on('error', () => {});
    await until(() => watched.length > 0);
    slow.delayMs = 300;
    slow.started = 0;
    const inflight = drain(au.extendLookalike(lookalikeReq()));
    await until(() => slow.started > 0);
    const stopping = srv.shutdown(10_000);
    await until(() => watched.includes('NOT_SERVING'));
    // New calls are refused while the old one drains.
    await expect(uv.getUserVector({ userId: fx.users[0]! }, { timeoutMs: 2000 })).rejects.toMatchObject({ code: expect.any(Number) });
    const msgs = (await inflight) as { message: { case: string } }[];
    expect(msgs.at(-1)!.message.case).toBe('summary');
    const res = await stopping;
    expect(res).toEqual({ drained: true, cutCalls: 0 });
    expect(watched).toEqual(['SERVING', 'NOT_SERVING']);
    au.close();
    uv.close();
    h.close();
  });
});
