// What an outside probe found, through the real server: malformed protobuf is INVALID_ARGUMENT and
// counted; a malformed authorization header is an invalid key, not a missing one; an unbounded
// feature id is refused without being echoed; extreme query vectors give the right neighbours; and
// a header value grpc-js refuses never puts the API key on stderr (a real `aetn serve` process).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { connect } from 'node:http2';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createClient, type TypedClient } from '../../src/serve/client.js';
import { UserVectorService } from '../../src/gen/aetn/v1/user_vector_pb.js';
import { AudienceService } from '../../src/gen/aetn/v1/audience_pb.js';
import { redactGrpcMessage } from '../../src/serve/grpc-log.js';
import type { ServeProcess } from '../../services/serve.js';
import { REPO_ROOT } from '../tools/go-tools.js';
import { buildFixture, startServe, KEYS, type Fixture } from './fixture.js';

let fx: Fixture;
let srv: ServeProcess;
let uv: TypedClient<typeof UserVectorService>;
let au: TypedClient<typeof AudienceService>;

beforeAll(async () => {
  fx = await buildFixture({ users: 1200 });
  srv = await startServe(fx.storeDir);
  uv = createClient(UserVectorService, srv.server.address, { apiKey: KEYS.both });
  au = createClient(AudienceService, srv.server.address, { apiKey: KEYS.both });
});

afterAll(async () => {
  uv?.close();
  au?.close();
  await srv?.stop();
  fx?.cleanup();
});

/** A unary call with raw request bytes and raw metadata. */
function rawCall(path: string, body: Buffer, md: Record<string, string>): Promise<grpc.ServiceError | Buffer> {
  const c = new grpc.Client(srv.server.address, grpc.credentials.createInsecure());
  const meta = new grpc.Metadata();
  for (const [k, v] of Object.entries(md)) meta.set(k, v);
  return new Promise((resolve) => {
    c.makeUnaryRequest(path, (b: Buffer) => b, (b: Buffer) => b, body, meta, (err, res) => {
      c.close();
      resolve(err ?? res!);
    });
  });
}

async function failure(p: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await p;
  } catch (err) {
    return err as { code: number; details: string };
  }
  throw new Error('expected the call to fail');
}

describe('hardening', () => {
  it('malformed protobuf is INVALID_ARGUMENT, counted in the metrics; without a key it is UNAUTHENTICATED', async () => {
    const garbage = Buffer.from([0xff, 0xff, 0xff, 0x0f, 0x01]);
    const e = (await rawCall('/aetn.v1.UserVectorService/GetUserVector', garbage, { 'x-api-key': KEYS.both })) as grpc.ServiceError;
    expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(e.details).toContain('not a valid aetn.v1.GetUserVectorRequest message');
    const s = (await rawCall('/aetn.v1.AudienceService/ExtendLookalike', garbage, { 'x-api-key': KEYS.both })) as grpc.ServiceError;
    expect(s.code).toBe(grpc.status.INVALID_ARGUMENT); // a server-streaming method, read as unary: the status is what counts
    const anon = (await rawCall('/aetn.v1.UserVectorService/GetUserVector', garbage, {})) as grpc.ServiceError;
    expect(anon.code).toBe(grpc.status.UNAUTHENTICATED);
    const text = await srv.server.metrics.registry.metrics();
    expect(text).toMatch(/aetn_grpc_requests_total\{method="UserVectorService\/GetUserVector",code="INVALID_ARGUMENT"\} [1-9]/);
  });

  it('caps request size per method, after the key check: 4 MB, 64 MB for ExtendLookalike', async () => {
    // user_id (field 1) of 5 MB: a valid message, over the cap.
    const big = Buffer.alloc(5 * 1024 * 1024 + 8);
    const n = big.length - 5; // length varint takes 4 bytes here
    big[0] = 0x0a;
    big.writeUInt8((n & 0x7f) | 0x80, 1);
    big.writeUInt8(((n >> 7) & 0x7f) | 0x80, 2);
    big.writeUInt8(((n >> 14) & 0x7f) | 0x80, 3);
    big.writeUInt8(n >> 21, 4);
    big.fill(0x61, 5);
    const anon = (await rawCall('/aetn.v1.UserVectorService/GetUserVector', big, {})) as grpc.ServiceError;
    expect(anon.code).toBe(grpc.status.UNAUTHENTICATED);
    const e = (await rawCall('/aetn.v1.UserVectorService/GetUserVector', big, { 'x-api-key': KEYS.both })) as grpc.ServiceError;
    expect(e.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(e.details).toBe(`the request is ${big.length} bytes; UserVectorService/GetUserVector accepts at most ${4 * 1024 * 1024} bytes`);
    // A look-alike with 400,000 exclusions (~6 MB) is within its own cap.
    const exclude = Array.from({ length: 400_000 }, (_, i) => `x-${i}`);
    const seeds = fx.installers.slice(0, 20);
    const msgs = [];
    for await (const m of au.extendLookalike({ seeds: { case: 'seedUsers', value: { userIds: seeds } }, audienceSize: 10, excludeUserIds: exclude })) msgs.push(m);
    expect(msgs.at(-1)!.message.case).toBe('summary');
  });

  it('"Bearer" without a space is an invalid key, not a missing one', async () => {
    const body = Buffer.from([0x0a, 0x01, 0x78]); // user_id "x"
    const e = (await rawCall('/aetn.v1.UserVectorService/GetUserVector', body, { authorization: `Bearer${KEYS.both}` })) as grpc.ServiceError;
    expect(e.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(e.details).toMatch(/^invalid API key/);
    const ok = await rawCall('/aetn.v1.UserVectorService/GetUserVector', Buffer.from([0x0a, ...Buffer.from(fx.users[0]!).subarray(0, 0)]), { authorization: `Bearer ${KEYS.both}` });
    expect((ok as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT); // got past auth: empty user id
  });

  it('an unbounded feature id is refused and not echoed', async () => {
    const long = 'f'.repeat(100_000);
    const e = await failure(uv.getUserVector({ userId: fx.users[0]!, longTermFeatureId: long }));
    expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(e.details.length).toBeLessThan(300);
    expect(e.details).toContain('long_term_feature_id is not a feature id');
    const s = await failure(au.searchNeighbors({ query: { case: 'userId', value: fx.users[0]! }, k: 3, featureId: 'x y' }));
    expect(s.code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it('extreme query vectors give the same neighbours as the plain vector, never zero scores', async () => {
    const v = Array.from(fx.long.get(fx.users[3]!)!);
    const ids = async (values: number[]) => (await au.searchNeighbors({ query: { case: 'vector', value: { values } }, k: 10 })).neighbors;
    const plain = await ids(v);
    for (const scale of [1e-30, 1e19]) {
      const got = await ids(v.map((x) => x * scale));
      expect(got.map((n) => n.userId)).toEqual(plain.map((n) => n.userId));
      got.forEach((n, i) => expect(n.score).toBeCloseTo(plain[i]!.score, 4));
    }
    const spike = v.slice();
    spike[0] = 1e20;
    const sp = await ids(spike);
    expect(sp).toHaveLength(10);
    expect(sp[0]!.score).toBeGreaterThan(0.1); // the user whose first component is largest, not an arbitrary one
  });

  it('unit: grpc-js metadata errors lose the value, other lines are bounded', () => {
    const key = 'secret-key-123';
    const line = redactGrpcMessage(`Failed to add metadata entry x-api-key: ${key}\u00a0. Metadata string value "${key}\u00a0" contains illegal characters. For more information see x`);
    expect(line).not.toContain(key);
    expect(line).toContain('"x-api-key"');
    expect(redactGrpcMessage(`weird authorization: Bearer ${key}`)).not.toContain(key);
    expect(redactGrpcMessage('x'.repeat(100_000)).length).toBeLessThan(600);
  });
});

describe('a header value grpc-js refuses (real `aetn serve` process)', () => {
  it('never writes the API key to stderr, and stderr stays JSON lines', async () => {
    const key = 'probe-key-000042';
    const p = spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'services/cli/main.ts'), 'serve', '--store', fx.storeDir, '--port', '0', '--metrics-port', 'off'], {
      cwd: REPO_ROOT,
      env: { ...process.env, AETN_LOG_LEVEL: 'info', AETN_API_KEYS: `${key}=vectors:read` },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString('latin1')));
    try {
      const addr = await new Promise<string>((resolve, reject) => {
        p.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          const m = /listening on (\S+)/.exec(out);
          if (m) resolve(m[1]!);
        });
        p.once('exit', (code) => reject(new Error(`exited ${code}: ${err}`)));
      });
      // Raw HTTP/2: the key with a trailing non-breaking space (byte 0xa0), and a 60 KB header.
      const session = connect(`http://${addr}`);
      const status = await new Promise<string | undefined>((resolve, reject) => {
        const req = session.request({
          ':method': 'POST',
          ':path': '/aetn.v1.UserVectorService/GetUserVector',
          'content-type': 'application/grpc',
          te: 'trailers',
          'x-api-key': `${key}\u00a0`,
          'x-padding': `${key}\u00a0${'z'.repeat(60_000)}`,
        });
        let grpcStatus: string | undefined;
        req.on('response', (h) => (grpcStatus ??= h['grpc-status'] as string | undefined));
        req.on('trailers', (t) => (grpcStatus = t['grpc-status'] as string | undefined));
        req.on('close', () => resolve(grpcStatus));
        req.on('error', reject);
        req.end(Buffer.from([0, 0, 0, 0, 3, 0x0a, 0x01, 0x78]));
      });
      session.close();
      expect(status).toBe(String(grpc.status.UNAUTHENTICATED));
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      p.kill('SIGTERM');
      await new Promise((r) => p.once('exit', r));
    }
    expect(err).not.toContain(key);
    const lines = err.split('\n').filter(Boolean);
    for (const l of lines) expect(() => JSON.parse(l), l.slice(0, 200)).not.toThrow();
    expect(lines.some((l) => l.includes('grpc-js dropped metadata entry'))).toBe(true);
    expect(Math.max(...lines.map((l) => l.length))).toBeLessThan(2000);
  }, 60_000);
});
