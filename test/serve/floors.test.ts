// Audience floors through the real server with the default configuration (50 seeds, 100 users):
// below either, FAILED_PRECONDITION with a message naming the floor; at the floors, an answer.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { status } from '@grpc/grpc-js';
import { createClient, type TypedClient } from '../../src/serve/client.js';
import { AudienceService } from '../../src/gen/aetn/v1/audience_pb.js';
import { DEFAULTS } from '../../src/config/config.js';
import { runServe, type ServeProcess } from '../../services/serve.js';
import { buildFixture, testConfig, KEYS, type Fixture } from './fixture.js';

let fx: Fixture;
let srv: ServeProcess;
let au: TypedClient<typeof AudienceService>;

beforeAll(async () => {
  fx = await buildFixture();
  const { lookalikeMinSeeds, lookalikeMinAudience } = DEFAULTS.serve;
  srv = await runServe(testConfig(fx.storeDir, { lookalikeMinSeeds, lookalikeMinAudience }), { pollMs: 100, searchThreads: 0 });
  au = createClient(AudienceService, srv.server.address, { apiKey: KEYS.ads });
});

afterAll(async () => {
  au?.close();
  await srv?.stop();
  fx?.cleanup();
});

async function run(req: Parameters<typeof au.extendLookalike>[0]) {
  const out = [];
  for await (const m of au.extendLookalike(req)) out.push(m);
  return out;
}

async function failure(p: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await p;
  } catch (err) {
    return err as { code: number; details: string };
  }
  throw new Error('expected the call to fail');
}

const cluster0 = () => fx.users.filter((u) => fx.cluster.get(u) === 0);

describe('look-alike audience floors (defaults 50 seeds, 100 users)', () => {
  it('defaults are documented values', () => {
    expect(DEFAULTS.serve.lookalikeMinSeeds).toBe(50);
    expect(DEFAULTS.serve.lookalikeMinAudience).toBe(100);
  });

  it('refuses fewer than 50 seeds with a vector, naming the floor; unknown ids do not count', async () => {
    const seeds = cluster0().slice(0, 49);
    const e = await failure(run({ seeds: { case: 'seedUsers', value: { userIds: [...seeds, seeds[0]!, 'ghost-1', 'ghost-2'] } }, audienceSize: 200 }));
    expect(e.code).toBe(status.FAILED_PRECONDITION);
    expect(e.details).toContain('49 of the 51 seeds have a vector');
    expect(e.details).toContain('minimum of 50 seeds (serve.lookalikeMinSeeds)');
    const ok = await run({ seeds: { case: 'seedUsers', value: { userIds: cluster0().slice(0, 50) } }, audienceSize: 200 });
    expect(ok.at(-1)!.message.case).toBe('summary');
  });

  it('refuses an audience_size below 100, naming the floor', async () => {
    const e = await failure(run({ seeds: { case: 'seedAppId', value: fx.appId }, audienceSize: 99 }));
    expect(e.code).toBe(status.FAILED_PRECONDITION);
    expect(e.details).toContain('minimum audience size of 100 (serve.lookalikeMinAudience)');
    const ok = await run({ seeds: { case: 'seedAppId', value: fx.appId }, audienceSize: 100 });
    const users = ok.flatMap((m) => (m.message.case === 'chunk' ? m.message.value.users : []));
    expect(users).toHaveLength(100);
  });

  it('refuses an answer that would be smaller than 100 users, returning nobody', async () => {
    const seeds = cluster0().slice(0, 60);
    // Exclude all but 80 of the other users: fewer than the floor are left to return.
    const others = fx.users.filter((u) => !seeds.includes(u));
    const e = await failure(run({ seeds: { case: 'seedUsers', value: { userIds: seeds } }, audienceSize: 500, excludeUserIds: others.slice(80) }));
    expect(e.code).toBe(status.FAILED_PRECONDITION);
    expect(e.details).toMatch(/only \d+ users could be found .* minimum audience size of 100/);
  });
});
