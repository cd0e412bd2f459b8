// Small deterministic hashes. User -> shard assignment must never change between runs or machines,
// so it uses a fixed FNV-1a over the UTF-8 bytes rather than anything seeded or platform-dependent.
import { createHash } from 'node:crypto';

const encoder = new TextEncoder();

/** 32-bit FNV-1a of the UTF-8 bytes of `s`. */
export function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      h = Math.imul(h ^ c, 0x01000193);
      continue;
    }
    // Non-ASCII: hash the real UTF-8 bytes so the value matches other languages' implementations.
    const bytes = encoder.encode(s.slice(i));
    for (const b of bytes) h = Math.imul(h ^ b, 0x01000193);
    return h >>> 0;
  }
  return h >>> 0;
}

/** Stable hash of a user id; use `userHash(id) % k` for deterministic validation splits. */
export function userHash(userId: string): number {
  // A second mixing round: FNV's low bits are weak for short, similar ids like u0000001..u0000999.
  let h = fnv1a32(userId);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The shard a user's example lives in. */
export function shardOf(userId: string, numShards: number): number {
  return userHash(userId) % numShards;
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}
