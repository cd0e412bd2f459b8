// Small deterministic hashes. User -> shard assignment must never change between runs or machines,
// so it uses a fixed FNV-1a over the UTF-8 bytes rather than anything seeded or platform-dependent.
import { createHash } from 'node:crypto';
import { fmix32, fnv1a32 } from '../util/hash.js';

/** Stable hash of a user id; use `userHash(id) % k` for deterministic validation splits. */
export function userHash(userId: string): number {
  // A second mixing round: FNV's low bits are weak for short, similar ids like u0000001..u0000999.
  return fmix32(fnv1a32(userId));
}

/** The shard a user's example lives in. */
export function shardOf(userId: string, numShards: number): number {
  return userHash(userId) % numShards;
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}
