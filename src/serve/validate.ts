// Request validation at the edge: every message that gets past here is within the limits the
// proto comments promise, and every refusal says what to change.
import { invalid } from './errors.js';

export const LIMITS = {
  userIdBytes: 256,
  batchUsers: 1000,
  k: 1000,
  ef: 4096,
  audienceSize: 100_000,
  seedUsers: 100_000,
  excludeUsers: 1_000_000,
  maxClusters: 50,
  defaultClusters: 20,
  appIdBytes: 256,
  forgetUsers: 10_000,
  /** Request bytes accepted per message, by default (every list a method takes fits well below it). */
  requestBytes: 4 * 1024 * 1024,
  /** ExtendLookalike: up to 100,000 seeds and 1,000,000 exclusions (the server's receive limit). */
  lookalikeRequestBytes: 64 * 1024 * 1024,
} as const;

/** The most bytes one request message of `method` ("Service/Method") may have. */
export function requestCap(method: string): number {
  return method === 'AudienceService/ExtendLookalike' ? LIMITS.lookalikeRequestBytes : LIMITS.requestBytes;
}

function bytes(s: string): number {
  // Fast path: a UTF-16 code unit never takes more than 3 UTF-8 bytes.
  return s.length * 3 <= LIMITS.userIdBytes ? s.length : Buffer.byteLength(s, 'utf8');
}

export function checkUserId(id: string, field: string): void {
  if (id.length === 0) throw invalid(`${field} is empty: give a user id`);
  if (bytes(id) > LIMITS.userIdBytes) throw invalid(`${field} is longer than ${LIMITS.userIdBytes} bytes`);
}

export function checkUserIds(ids: readonly string[], field: string, max: number, allowEmpty = false): void {
  if (ids.length === 0 && !allowEmpty) throw invalid(`${field} is empty: give 1 to ${max} user ids`);
  if (ids.length > max) throw invalid(`${field} has ${ids.length} user ids; the limit is ${max} per call: split the request`);
  for (let i = 0; i < ids.length; i++) checkUserId(ids[i]!, `${field}[${i}]`);
}

export function checkRange(value: number, field: string, min: number, max: number, hint = ''): void {
  if (value < min || value > max) throw invalid(`${field} is ${value}; it must be between ${min} and ${max}${hint}`);
}

/**
 * A raw query vector: the feature's dimension, finite, not all zero (cosine is undefined at 0).
 * Returned at unit norm, normalised in float64: the index normalises in float32, where a vector
 * scaled by 1e-30 underflowed to zero and one scaled by 1e19 (or with a component of 1e20)
 * overflowed, and the search answered unrelated users with score 0 instead of failing.
 */
export function checkVector(values: readonly number[], dim: number, featureId: string): Float32Array {
  if (values.length !== dim) throw invalid(`vector has ${values.length} values but feature ${featureId} has dimension ${dim}`);
  let max = 0;
  for (let i = 0; i < dim; i++) {
    const x = values[i]!;
    if (!Number.isFinite(x)) throw invalid(`vector value at index ${i} is ${x}: values must be finite numbers`);
    max = Math.max(max, Math.abs(x));
  }
  if (max === 0) throw invalid('vector is all zeros: cosine similarity is undefined for it');
  // Scale by the largest magnitude first so the sum of squares can neither underflow nor overflow.
  let ss = 0;
  for (let i = 0; i < dim; i++) ss += (values[i]! / max) ** 2;
  const norm = Math.sqrt(ss);
  const v = new Float32Array(dim);
  for (let i = 0; i < dim; i++) v[i] = values[i]! / max / norm;
  return v;
}
