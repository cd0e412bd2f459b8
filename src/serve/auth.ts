// API-key authentication with scopes. Keys arrive as `x-api-key: K` or `authorization: Bearer K`.
// Only SHA-256 digests of the configured keys are kept in memory, so a heap dump or a stray log
// line of this object reveals no key; keys themselves are never logged.
import * as crypto from 'node:crypto';
import { createHash } from 'node:crypto';
import { status, type Metadata } from '@grpc/grpc-js';
import { RpcError } from './errors.js';

export type Scope = 'vectors:read' | 'audience:write' | 'events:write' | 'admin';

export interface Principal {
  /** A non-secret label for logs: the first 8 hex digits of the key's digest. */
  keyId: string;
  scopes: ReadonlySet<string>;
}

const ANONYMOUS: Principal = { keyId: 'auth-disabled', scopes: new Set(['*']) };

// One-shot crypto.hash (Node >= 20.12) is ~2x cheaper than a Hash object; this runs on every call.
const oneShot = (crypto as { hash?: (alg: string, data: string, enc: 'hex') => string }).hash;

function digest(key: string): string {
  return oneShot ? oneShot('sha256', key, 'hex') : createHash('sha256').update(key, 'utf8').digest('hex');
}

export class ApiKeyAuth {
  private readonly byDigest = new Map<string, Principal>();

  /** `keys`: API key -> scopes (from the configuration). `disabled` lets every call in: local demos only. */
  constructor(keys: Record<string, readonly string[]>, readonly disabled = false) {
    for (const [key, scopes] of Object.entries(keys)) {
      const d = digest(key);
      this.byDigest.set(d, { keyId: d.slice(0, 8), scopes: new Set(scopes) });
    }
  }

  get keyCount(): number {
    return this.byDigest.size;
  }

  /** The caller's principal, or UNAUTHENTICATED / PERMISSION_DENIED. */
  check(metadata: Metadata, scope: Scope): Principal {
    if (this.disabled) return ANONYMOUS;
    const key = extractKey(metadata);
    if (key === MALFORMED_AUTHORIZATION) {
      throw new RpcError(status.UNAUTHENTICATED, 'invalid API key: the authorization metadata must be "Bearer <key>" (one space, no other text)');
    }
    if (key === undefined) {
      throw new RpcError(
        status.UNAUTHENTICATED,
        'missing API key: send metadata "x-api-key: <key>" or "authorization: Bearer <key>" (a value with characters outside printable ASCII, e.g. a trailing non-breaking space, is dropped by the transport and reads as missing)',
      );
    }
    // A map lookup by digest: the caller cannot steer the digest, so lookup timing tells nothing.
    const p = this.byDigest.get(digest(key));
    if (!p) throw new RpcError(status.UNAUTHENTICATED, 'invalid API key');
    if (!p.scopes.has(scope)) {
      throw new RpcError(status.PERMISSION_DENIED, `API key ${p.keyId} lacks scope "${scope}" needed for this method`);
    }
    return p;
  }
}

const MALFORMED_AUTHORIZATION = Symbol('malformed authorization');

function extractKey(md: Metadata): string | typeof MALFORMED_AUTHORIZATION | undefined {
  const x = md.get('x-api-key')[0];
  if (typeof x === 'string' && x.length > 0) return x;
  const a = md.get('authorization')[0];
  if (typeof a === 'string' && a.length > 0) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(a);
    // Present but not "Bearer <key>" (e.g. "Bearer<key>"): a wrong key, not a missing one.
    return m ? m[1] : MALFORMED_AUTHORIZATION;
  }
  return undefined;
}
