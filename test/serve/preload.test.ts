// `aetn serve` loads the default feature's index before it listens (so the first audience call does
// not pay for it), and a damaged index does not stop it from serving vectors.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as grpc from '@grpc/grpc-js';
import { runServe } from '../../services/serve.js';
import { featureIndexDir, readCurrent } from '../../src/index/layout.js';
import { createClient } from '../../src/serve/client.js';
import { AudienceService } from '../../src/gen/aetn/v1/audience_pb.js';
import { UserVectorService, VectorView } from '../../src/gen/aetn/v1/user_vector_pb.js';
import { buildFixture, KEYS, testConfig, type Fixture } from './fixture.js';

let fx: Fixture;
beforeAll(async () => {
  fx = await buildFixture();
}, 120_000);
afterAll(() => fx?.cleanup());

describe('index preload at start', () => {
  it('with search threads, the index is in memory before the first call (it survives the files going away)', async () => {
    const fdir = featureIndexDir(fx.storeDir, fx.longId);
    const srv = await runServe(testConfig(fx.storeDir), { pollMs: 600_000, searchThreads: 1 });
    renameSync(fdir, `${fdir}.away`);
    try {
      const au = createClient(AudienceService, srv.server.address, { apiKey: KEYS.ads });
      // Loaded lazily, this first search would find no index on disk now.
      const res = await au.searchNeighbors({ query: { case: 'userId', value: fx.users[0]! }, k: 5 });
      expect(res.neighbors.length).toBe(5);
      au.close();
    } finally {
      renameSync(`${fdir}.away`, fdir);
      await srv.stop();
    }
  });

  it('a corrupt index: serving starts, vectors are served, searches fail with a clear status', async () => {
    const gen = readCurrent(featureIndexDir(fx.storeDir, fx.longId))!.dir;
    const file = join(gen, 'index.hnsw');
    const good = readFileSync(file);
    const bad = Buffer.from(good);
    bad[Math.floor(bad.length / 2)] ^= 0xff;
    writeFileSync(file, bad);
    const srv = await runServe(testConfig(fx.storeDir), { pollMs: 100, searchThreads: 0 });
    try {
      const uv = createClient(UserVectorService, srv.server.address, { apiKey: KEYS.ranker });
      const au = createClient(AudienceService, srv.server.address, { apiKey: KEYS.ads });
      const v = await uv.getUserVector({ userId: fx.users[1]!, view: VectorView.ALL });
      expect(v.user!.found).toBe(true);
      expect(v.user!.longTerm!.values.length).toBe(fx.longDim);
      const err = await au.searchNeighbors({ query: { case: 'userId', value: fx.users[1]! }, k: 5 }).then(
        () => undefined,
        (e: { code: number; details?: string; message: string }) => e,
      );
      expect(err).toBeDefined();
      expect(err!.code, err!.message).toBe(grpc.status.FAILED_PRECONDITION);
      expect(err!.message).toMatch(/checksum|index/i);
      uv.close();
      au.close();
    } finally {
      await srv.stop();
      writeFileSync(file, good);
    }
  });
});
