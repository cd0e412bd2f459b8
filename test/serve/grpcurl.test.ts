// The real server driven by a client we did not write: grpcurl (installed by `go install` on first
// use), through reflection only (no .proto files given to it).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { ServeProcess } from '../../services/serve.js';
import { ensureGoTool } from '../tools/go-tools.js';
import { API_KEYS, buildFixture, startServe, KEYS, type Fixture } from './fixture.js';

const ADMIN = 'admin-key-000009';

const run = promisify(execFile);
let fx: Fixture;
let srv: ServeProcess;
let grpcurl: string;

async function g(args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const { stdout, stderr } = await run(grpcurl, ['-plaintext', ...args], { timeout: 30_000 });
    return { stdout, stderr, code: 0 };
  } catch (err) {
    const e = err as { stdout: string; stderr: string; code: number };
    return { stdout: e.stdout, stderr: e.stderr, code: e.code };
  }
}

beforeAll(async () => {
  grpcurl = await ensureGoTool('grpcurl');
  fx = await buildFixture({ users: 1000 });
  srv = await startServe(fx.storeDir, { apiKeys: { ...API_KEYS, [ADMIN]: ['admin'] } });
}, 900_000);
afterAll(async () => {
  await srv?.stop();
  fx?.cleanup();
});

describe('grpcurl', () => {
  it('lists and describes the services through reflection', async () => {
    const list = await g([srv.server.address, 'list']);
    expect(list.code).toBe(0);
    const names = list.stdout.trim().split('\n');
    expect(names).toEqual(expect.arrayContaining(['aetn.v1.UserVectorService', 'aetn.v1.AudienceService', 'grpc.health.v1.Health']));
    const desc = await g([srv.server.address, 'describe', 'aetn.v1.AudienceService']);
    expect(desc.stdout).toContain('rpc ExtendLookalike ( .aetn.v1.ExtendLookalikeRequest ) returns ( stream .aetn.v1.ExtendLookalikeResponse )');
    const msg = await g([srv.server.address, 'describe', 'aetn.v1.UserVector']);
    expect(msg.stdout).toContain('repeated float combined');
  });

  it('health check', async () => {
    const all = await g(['-d', '{}', srv.server.address, 'grpc.health.v1.Health/Check']);
    expect(JSON.parse(all.stdout)).toEqual({ status: 'SERVING' });
    const one = await g(['-d', '{"service":"aetn.v1.UserVectorService"}', srv.server.address, 'grpc.health.v1.Health/Check']);
    expect(JSON.parse(one.stdout)).toEqual({ status: 'SERVING' });
  });

  it('the README examples: combined with weights per call, and forgetting a user', async () => {
    const u = fx.users[4]!;
    const w = await g(['-H', `x-api-key: ${KEYS.ranker}`, '-d', JSON.stringify({ user_id: u, combined_weights: { long_term: 0.6, short_term: 0.8 } }), srv.server.address, 'aetn.v1.UserVectorService/GetUserVector']);
    expect(w.code, w.stderr).toBe(0);
    const res = JSON.parse(w.stdout) as { user: { combined: number[] }; combinedWeights: { longTerm: number; shortTerm: number } };
    expect(res.combinedWeights).toEqual({ longTerm: 0.6, shortTerm: 0.8 });
    expect(Math.hypot(...res.user.combined.slice(0, fx.longDim))).toBeCloseTo(0.6, 5);
    const f = await g(['-H', `x-api-key: ${ADMIN}`, '-d', JSON.stringify({ user_ids: [u] }), srv.server.address, 'aetn.v1.AdminService/ForgetUsers']);
    expect(f.code, f.stderr).toBe(0);
    expect(JSON.parse(f.stdout)).toMatchObject({ users: 1, changed: 1, indexPointsRemoved: 1 });
    const gone = await g(['-H', `x-api-key: ${KEYS.ranker}`, '-d', JSON.stringify({ user_id: u }), srv.server.address, 'aetn.v1.UserVectorService/GetUserVector']);
    expect(gone.stderr).toContain('NotFound');
    const denied = await g(['-H', `x-api-key: ${KEYS.both}`, '-d', JSON.stringify({ user_ids: [u] }), srv.server.address, 'aetn.v1.AdminService/ForgetUsers']);
    expect(denied.stderr).toContain('PermissionDenied');
  });

  it('GetUserVector, with and without a key', async () => {
    const u = fx.users[0]!;
    const ok = await g(['-H', `x-api-key: ${KEYS.ranker}`, '-d', JSON.stringify({ user_id: u, view: 'VECTOR_VIEW_ALL' }), srv.server.address, 'aetn.v1.UserVectorService/GetUserVector']);
    expect(ok.code).toBe(0);
    const res = JSON.parse(ok.stdout) as { user: { userId: string; found: boolean; combined: number[]; longTerm: { values: number[]; featureId: string } } };
    expect(res.user.userId).toBe(u);
    expect(res.user.found).toBe(true);
    expect(res.user.combined).toHaveLength(fx.longDim + fx.shortDim);
    expect(res.user.longTerm.featureId).toBe(fx.longId);
    res.user.longTerm.values.forEach((x, i) => expect(x).toBeCloseTo(fx.long.get(u)![i]!, 5));
    const denied = await g(['-d', JSON.stringify({ user_id: u }), srv.server.address, 'aetn.v1.UserVectorService/GetUserVector']);
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toContain('Unauthenticated');
  });

  it('ExtendLookalike streams chunks then a summary; SearchNeighbors answers', async () => {
    const seeds = fx.users.filter((u) => fx.cluster.get(u) === 1).slice(0, 20);
    const out = await g([
      '-H',
      `authorization: Bearer ${KEYS.ads}`,
      '-d',
      JSON.stringify({ seed_users: { user_ids: seeds }, audience_size: 30 }),
      srv.server.address,
      'aetn.v1.AudienceService/ExtendLookalike',
    ]);
    expect(out.code).toBe(0);
    // grpcurl prints one JSON object per streamed message.
    const msgs = out.stdout
      .trim()
      .split(/\n(?=\{)/)
      .map((s) => JSON.parse(s) as { chunk?: { users: { userId: string; score: number }[] }; summary?: Record<string, unknown> });
    const users = msgs.flatMap((m) => m.chunk?.users ?? []);
    expect(users).toHaveLength(30);
    expect(msgs.at(-1)!.summary).toMatchObject({ seedsUsed: 20, audienceSize: 30 });
    const nn = await g(['-H', `x-api-key: ${KEYS.ads}`, '-d', JSON.stringify({ user_id: seeds[0], k: 5 }), srv.server.address, 'aetn.v1.AudienceService/SearchNeighbors']);
    expect((JSON.parse(nn.stdout) as { neighbors: unknown[] }).neighbors).toHaveLength(5);
  });
});
