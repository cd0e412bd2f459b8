import { UserError } from '../util/errors.js';
import type { StoreErrorCode } from './types.js';

/**
 * A caller-visible store or index failure. It is a UserError (the CLI prints it without a stack)
 * and carries a code that the gRPC layer maps directly onto a status code.
 */
export class StoreError extends UserError {
  constructor(
    readonly code: StoreErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'StoreError';
  }
}

export function isStoreError(err: unknown): err is StoreError {
  return err instanceof StoreError;
}

const FEATURE_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;

/** Feature ids name LMDB sub-databases and index directories, so they must be path-safe. */
export function checkFeatureId(featureId: unknown): string {
  if (typeof featureId !== 'string' || !FEATURE_ID.test(featureId)) {
    throw new StoreError(
      'INVALID_ARGUMENT',
      `invalid feature id ${JSON.stringify(featureId)}: use 1-128 characters from [A-Za-z0-9._:-], starting with a letter or digit`,
    );
  }
  return featureId;
}

const MAX_KEY_BYTES = 512;

/** User ids and app keys become LMDB keys (limited to ~2 KB); 512 bytes leaves room for encoding. */
export function checkKey(kind: string, key: unknown): string {
  if (typeof key !== 'string' || key.length === 0) {
    throw new StoreError('INVALID_ARGUMENT', `${kind} must be a non-empty string, got ${JSON.stringify(key)}`);
  }
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) {
    throw new StoreError('INVALID_ARGUMENT', `${kind} ${JSON.stringify(key.slice(0, 40))}... is longer than ${MAX_KEY_BYTES} bytes`);
  }
  return key;
}
