import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { prepare } from '../../src/data/prepare.js';
import { openPrepared } from '../../src/data/prepared.js';
import { readShard, ShardWriter } from '../../src/data/shards.js';
import { shardOf, userHash } from '../../src/data/hash.js';
import type { CatalogEntry, UserExample } from '../../src/data/types.js';
import { buildVocabulary, checkVocabHash } from '../../src/data/vocab.js';
import { Sfc32 } from '../../src/util/random.js';
import { UserError } from '../../src/util/errors.js';
import { daysAgo, tmp, writeRaw } from './helpers.js';

function randomExample(rng: Sfc32, i: number): UserExample {
  const seq = (n: number) => ({
    a: Int32Array.from({ length: n }, () => rng.int(5000)),
    d: Int32Array.from({ length: n }, () => rng.int(52)),
    t: Float64Array.from({ length: n }, () => 1.7e12 + rng.int(1e9)),
  });
  const ins = seq(rng.int(26));
  const uns = seq(rng.int(26));
  return {
    userId: i % 7 === 0 ? `用户-${i}` : `user-${i}`,
    retention: Int32Array.from(new Set(Array.from({ length: rng.int(80) }, () => rng.int(5000)))).sort(),
    installs: ins.a,
    installDates: ins.d,
    installTimes: ins.t,
    uninstalls: uns.a,
    uninstallDates: uns.d,
    uninstallTimes: uns.t,
    lastActiveMs: rng.int(2) ? 0 : 1.7e12 + rng.int(1e9),
  };
}

describe('shards', () => {
  it('round-trips examples exactly', () => {
    const rng = new Sfc32(7);
    const exs = Array.from({ length: 300 }, (_, i) => randomExample(rng, i));
    const path = join(tmp(), 's.bin');
    const w = new ShardWriter(path);
    for (const e of exs) w.add(e);
    const info = w.close();
    expect(info.users).toBe(300);
    const back = [...readShard(path).examples()];
    expect(back).toEqual(exs);
  });

  it('refuses truncated, corrupt and foreign files with a clear error', () => {
    const rng = new Sfc32(8);
    const dir = tmp();
    const path = join(dir, 's.bin');
    const w = new ShardWriter(path);
    for (let i = 0; i < 50; i++) w.add(randomExample(rng, i));
    w.close();
    const good = readFileSync(path);
    writeFileSync(join(dir, 'trunc.bin'), good.subarray(0, good.length - 10));
    expect(() => readShard(join(dir, 'trunc.bin'))).toThrow(/truncated/);
    const bad = Buffer.from(good);
    bad[Math.floor(bad.length / 2)] ^= 0x40;
    writeFileSync(join(dir, 'flip.bin'), bad);
    expect(() => readShard(join(dir, 'flip.bin'))).toThrow(/checksum mismatch/);
    writeFileSync(join(dir, 'foreign.bin'), 'hello world, not a shard at all');
    expect(() => readShard(join(dir, 'foreign.bin'))).toThrow(/not an AETN shard/);
    expect(() => readShard(join(dir, 'absent.bin'))).toThrow(UserError);
  });

  it('assigns users to shards deterministically by a hash of the id', () => {
    expect(userHash('u0001')).toBe(userHash('u0001'));
    expect(shardOf('u0001', 16)).toBe(userHash('u0001') % 16);
    const counts = new Array(8).fill(0);
    for (let i = 0; i < 8000; i++) counts[shardOf(`u${String(i).padStart(5, '0')}`, 8)]++;
    for (const c of counts) expect(Math.abs(c - 1000)).toBeLessThan(150);
  });

  it('openPrepared refuses a prepared dataset with a damaged shard or edited vocabulary', async () => {
    const dir = tmp();
    writeRaw(join(dir, 'raw'), {
      apps: [
        { id: 'a', packages: ['p.a'], category: 'c1' },
        { id: 'b', packages: ['p.b'], category: 'c2' },
      ],
      installed: Array.from({ length: 40 }, (_, i) => [`u${i}`, i % 2 ? ['p.a'] : ['p.a', 'p.b']] as [string, string[]]),
      events: [{ id: 'e', user: 'u1', pkg: 'p.b', type: 'install', t: daysAgo(2) }],
    });
    const p = join(dir, 'p');
    await prepare({ input: join(dir, 'raw'), out: p, shards: 2, minInstalls: 1, progress: false });
    const ds = await openPrepared(p);
    let n = 0;
    for await (const _ of ds.examples()) n++;
    expect(n).toBe(40);
    expect(ds.manifest.shards.reduce((a, s) => a + s.users, 0)).toBe(40);
    // one shard at a time
    let n0 = 0;
    for await (const _ of ds.examples({ shard: 0 })) n0++;
    expect(n0).toBe(ds.manifest.shards[0].users);
    const f = join(p, ds.manifest.shards[1].file);
    const buf = readFileSync(f);
    buf[buf.length - 3] ^= 1;
    writeFileSync(f, buf);
    await expect(async () => {
      for await (const _ of ds.examples({ shard: 1 })) void 0;
    }).rejects.toThrow(/checksum mismatch/);
    const vocab = JSON.parse(readFileSync(join(p, 'vocab.json'), 'utf8'));
    vocab.categories[0] = 'edited';
    writeFileSync(join(p, 'vocab.json'), JSON.stringify(vocab));
    await expect(openPrepared(p)).rejects.toThrow(/was modified/);
  });
});

describe('vocabulary hash', () => {
  const cat = (): CatalogEntry[] => [
    { appId: 'x', category: 'c1', packages: ['p.x'], preinstalled: false, universal: false, vocabIndex: -1, dropReason: null, installCount: 5 },
    { appId: 'y', category: 'c2', packages: ['p.y', 'p.y2'], preinstalled: false, universal: false, vocabIndex: -1, dropReason: null, installCount: 5 },
    { appId: 'z', category: 'c2', packages: ['p.z'], preinstalled: false, universal: false, vocabIndex: -1, dropReason: 'below-threshold', installCount: 1 },
  ];
  it('is stable for the same vocabulary and changes when apps, categories or packages change', () => {
    const base = buildVocabulary(cat());
    expect(buildVocabulary(cat()).hash).toBe(base.hash);
    expect(checkVocabHash(base)).toBe(base.hash);
    const withZ = cat();
    withZ[2].dropReason = null;
    expect(buildVocabulary(withZ).hash).not.toBe(base.hash);
    const recat = cat();
    recat[0].category = 'c3';
    expect(buildVocabulary(recat).hash).not.toBe(base.hash);
    const repkg = cat();
    repkg[1].packages = ['p.y'];
    expect(buildVocabulary(repkg).hash).not.toBe(base.hash);
    // catalog order does not matter: indices follow app ids
    expect(buildVocabulary(cat().reverse()).hash).toBe(base.hash);
  });
});
