// Small deterministic hashes and seed mixers, the only copies in the code base. Shard assignment,
// validation splits and every seeded stream depend on their exact bits: changing one changes
// committed results. test/util/hash-random.test.ts pins their outputs.

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
const encoder = new TextEncoder();

/** 32-bit FNV-1a of the UTF-8 bytes of `s` (matches other languages' implementations). */
export function fnv1a32(s: string): number {
  let h = FNV_OFFSET;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) {
      h = Math.imul(h ^ c, FNV_PRIME);
      continue;
    }
    // Non-ASCII: hash the real UTF-8 bytes of the rest of the string.
    for (const b of encoder.encode(s.slice(i))) h = Math.imul(h ^ b, FNV_PRIME);
    return h >>> 0;
  }
  return h >>> 0;
}

/**
 * 32-bit FNV-1a over the UTF-16 code units of `s`, continuing from `h` (the FNV offset basis by
 * default, or a salt). Equal to fnv1a32 for ASCII; cheaper, and what the model and look-alike seeds use.
 */
export function fnv1a32Units(s: string, h: number = FNV_OFFSET): number {
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), FNV_PRIME);
  return h >>> 0;
}

/** FNV-1a over a list of strings, each followed by a ',' byte: a stable seed from a request's contents. */
export function hashStrings(xs: readonly string[]): number {
  let h = FNV_OFFSET;
  for (const s of xs) h = Math.imul(fnv1a32Units(s, h) ^ 0x2c, FNV_PRIME);
  return h >>> 0;
}

/** murmur3's finaliser: a cheap bijective 32-bit mixer. */
export function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Combines two 32-bit values into one well-mixed 32-bit seed (per-user and per-site model streams). */
export function combineSeeds(a: number, b: number): number {
  return fmix32((fmix32(a >>> 0) ^ Math.imul((b >>> 0) + 0x9e3779b9, 0x27d4eb2f)) >>> 0);
}

/** A 31-bit seed from several integers (the training loop's per-epoch and per-step seeds). */
export function mixSeed(...parts: number[]): number {
  let h = FNV_OFFSET;
  for (const p of parts) {
    h = Math.imul(h ^ (p | 0), FNV_PRIME);
    h ^= h >>> 15;
    h = Math.imul(h, 0x2c1b3c6d);
    h ^= h >>> 12;
  }
  return (h >>> 1) % 2147483647;
}

/** A child seed from a parent seed and labels, so that sub-tasks get independent streams. */
export function deriveSeed(seed: number, ...labels: (string | number)[]): number {
  let h = (seed >>> 0) ^ FNV_OFFSET;
  for (const l of labels) h = Math.imul(fnv1a32Units(String(l), h) ^ 0xff, FNV_PRIME);
  return h >>> 0;
}
