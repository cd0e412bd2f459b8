// API-key authentication with scopes, auth disabled for demos, and TLS with a self-signed
// certificate made by openssl in the test.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createClient } from '../../src/serve/client.js';
import { UserVectorService } from '../../src/gen/aetn/v1/user_vector_pb.js';
import { AudienceService } from '../../src/gen/aetn/v1/audience_pb.js';
import { ApiKeyAuth } from '../../src/serve/auth.js';
import type { ServeProcess } from '../../services/serve.js';
import { buildFixture, startServe, KEYS, type Fixture } from './fixture.js';

let fx: Fixture;
let srv: ServeProcess;

beforeAll(async () => {
  fx = await buildFixture({ users: 500 });
  srv = await startServe(fx.storeDir);
});
afterAll(async () => {
  await srv?.stop();
  fx?.cleanup();
});

const fail = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (e) {
    return e as grpc.ServiceError;
  }
  throw new Error('expected failure');
};

describe('API keys and scopes', () => {
  it('missing or wrong key: UNAUTHENTICATED; wrong scope: PERMISSION_DENIED; key never echoed', async () => {
    const none = createClient(UserVectorService, srv.server.address);
    const e1 = await fail(none.getUserVector({ userId: fx.users[0]! }));
    expect(e1.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(e1.details).toContain('x-api-key');

    const wrong = createClient(UserVectorService, srv.server.address, { apiKey: 'not-a-real-key-123' });
    const e2 = await fail(wrong.getUserVector({ userId: fx.users[0]! }));
    expect(e2.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(e2.details).not.toContain('not-a-real-key-123');

    const ranker = createClient(AudienceService, srv.server.address, { apiKey: KEYS.ranker });
    const e3 = await fail(ranker.searchNeighbors({ query: { case: 'userId', value: fx.users[0]! }, k: 3 }));
    expect(e3.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(e3.details).toContain('audience:write');
    expect(e3.details).not.toContain(KEYS.ranker);

    const ads = createClient(UserVectorService, srv.server.address, { apiKey: KEYS.ads });
    expect((await fail(ads.getUserVector({ userId: fx.users[0]! }))).code).toBe(grpc.status.PERMISSION_DENIED);

    // Auth is checked before validation: a bad request without a key is UNAUTHENTICATED.
    expect((await fail(none.getUserVector({ userId: '' }))).code).toBe(grpc.status.UNAUTHENTICATED);
    for (const c of [none, wrong, ranker, ads]) c.close();
  });

  it('accepts the key as x-api-key or as authorization: Bearer', async () => {
    const c = createClient(UserVectorService, srv.server.address);
    const a = await c.getUserVector({ userId: fx.users[0]! }, { metadata: { 'x-api-key': KEYS.ranker } });
    const b = await c.getUserVector({ userId: fx.users[0]! }, { metadata: { authorization: `Bearer ${KEYS.ranker}` } });
    expect(a.user!.combined).toEqual(b.user!.combined);
    const e = await fail(c.getUserVector({ userId: fx.users[0]! }, { metadata: { authorization: `Basic ${KEYS.ranker}` } }));
    expect(e.code).toBe(grpc.status.UNAUTHENTICATED);
    c.close();
  });

  it('keeps only digests of the keys in memory', () => {
    const auth = new ApiKeyAuth({ 'secret-key-abcdef': ['vectors:read'] });
    expect(JSON.stringify([...(auth as unknown as { byDigest: Map<string, unknown> }).byDigest.keys()])).not.toContain('secret-key');
  });

  it('with no keys configured every call is refused; with auth disabled every call is let in', async () => {
    const locked = await startServe(fx.storeDir, { apiKeys: {} });
    const c1 = createClient(UserVectorService, locked.server.address, { apiKey: KEYS.ranker });
    expect((await fail(c1.getUserVector({ userId: fx.users[0]! }))).code).toBe(grpc.status.UNAUTHENTICATED);
    c1.close();
    await locked.stop();
    const open = await startServe(fx.storeDir, { apiKeys: {}, authDisabled: true });
    const c2 = createClient(AudienceService, open.server.address);
    const res = await c2.searchNeighbors({ query: { case: 'userId', value: fx.users[0]! }, k: 3 });
    expect(res.neighbors).toHaveLength(3);
    c2.close();
    await open.stop();
  });
});

describe('TLS', () => {
  it('serves over TLS with a configured certificate; plaintext clients are refused', async () => {
    const cert = join(fx.dir, 'cert.pem');
    const key = join(fx.dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], {
      stdio: 'ignore',
    });
    const tls = await startServe(fx.storeDir, { tlsCert: cert, tlsKey: key });
    const c = createClient(UserVectorService, tls.server.address, {
      apiKey: KEYS.ranker,
      credentials: grpc.credentials.createSsl(readFileSync(cert)),
      channelOptions: { 'grpc.ssl_target_name_override': 'localhost' },
    });
    const res = await c.getUserVector({ userId: fx.users[0]! });
    expect(res.user!.found).toBe(true);
    const plain = createClient(UserVectorService, tls.server.address, { apiKey: KEYS.ranker });
    expect((await fail(plain.getUserVector({ userId: fx.users[0]! }, { timeoutMs: 3000 }))).code).toBe(grpc.status.UNAVAILABLE);
    c.close();
    plain.close();
    await tls.stop();
  });
});
