// The seeded generators and hashes must never change their outputs: shard assignment, validation
// splits, generated worlds, training masks and the committed evaluation reports all depend on them.
// The expected values were computed from the implementations these replaced (one copy per folder
// before util/random and util/hash existed), so this also proves the move kept every bit.
import { describe, expect, it } from 'vitest';
import { combineSeeds, deriveSeed, fmix32, fnv1a32, fnv1a32Units, hashStrings, mixSeed } from '../../src/util/hash.js';
import { Mulberry32, Rng, Sfc32, mulberry32 } from '../../src/util/random.js';
import { shardOf, userHash } from '../../src/data/hash.js';
import { isValidationUser } from '../../src/model/train.js';

describe('util/random', () => {
  it('Sfc32 (the world generator) gives the pinned stream for every sampler', () => {
    const r = new Sfc32(42, 'user7');
    expect([r.nextU32(), r.nextU32(), r.next(), r.int(1000), r.normal(), r.normal(), r.normal(), r.exponential(), r.poisson(3.5), r.poisson(45), r.bernoulli(0.3), r.pickCum([1, 3, 6, 10])]).toEqual([
      1662956881, 3204325194, 0.8081357069313526, 693, -0.4572068241018718, -1.523041940135835, -0.7697288983119625, 0.7996185706947658, 4, 64, false, 2,
    ]);
    expect(new Sfc32(42, 'user8').nextU32()).not.toBe(1662956881);
  });

  it('Rng (mixed seed) gives the pinned stream, permutations and samples', () => {
    const r = new Rng(7);
    expect([r.next(), r.int(100), r.normal(), r.normal()]).toEqual([0.47330482909455895, 55, -0.7659914909335428, 0.28959517138231067]);
    expect(Array.from(r.permutation(6))).toEqual([0, 4, 2, 1, 5, 3]);
    expect(Array.from(r.sample(1000, 3))).toEqual([25, 595, 678]);
    expect(Array.from(r.sample(5, 4))).toEqual([0, 4, 3, 1]);
    expect(() => r.sample(3, 4)).toThrow(/cannot sample 4 of 3/);
  });

  it('mulberry32 and Mulberry32 (raw state) give the pinned streams', () => {
    const f = mulberry32(123);
    expect([f(), f(), f()]).toEqual([0.7872516233474016, 0.1785435655619949, 0.49531551403924823]);
    const m = new Mulberry32(99);
    expect([m.nextU32(), m.nextU32(), m.int(50)]).toEqual([1118692146, 3456687457, 27]);
    // The function and the class are one generator.
    const g = mulberry32(99);
    expect(g()).toBe(1118692146 / 4294967296);
  });
});

describe('util/hash', () => {
  it('FNV-1a: UTF-8 bytes and UTF-16 code units agree on ASCII and differ beyond it', () => {
    expect([fnv1a32(''), fnv1a32('u0000001'), fnv1a32('héllo→')]).toEqual([2166136261, 2601293459, 3797751126]);
    expect([fnv1a32Units('u0000001'), fnv1a32Units('héllo→')]).toEqual([2601293459, 2573811383]);
    expect([hashStrings(['a', 'bc']), hashStrings([])]).toEqual([820268777, 2166136261]);
    expect(hashStrings(['ab', 'c'])).not.toBe(hashStrings(['a', 'bc']));
  });

  it('mixers and seed derivations give the pinned values', () => {
    expect([fmix32(0), fmix32(1), fmix32(0xdeadbeef)]).toEqual([0, 1364076727, 233162409]);
    expect([combineSeeds(1, 2), combineSeeds(0xffffffff, 12345)]).toEqual([2601207058, 2552983169]);
    expect([mixSeed(1, 2, 3), mixSeed(42, 0, 0x5f3759df), mixSeed()]).toEqual([461966950, 1890838628, 1083068130]);
    expect([deriveSeed(7, 'u1'), deriveSeed(7, 'fold', 3), deriveSeed(0xffffffff)]).toEqual([3140995497, 218696076, 2128831034]);
  });

  it('user hashes, shards and validation membership are unchanged', () => {
    expect([userHash('u0000001'), userHash('u0000002'), shardOf('u0000003', 7)]).toEqual([1848382328, 1573510004, 2]);
    expect(['u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7', 'u8'].map((u) => isValidationUser(u, 0.5))).toEqual([true, true, false, true, true, false, false, false]);
  });
});
