// Errors that carry a gRPC status. Handlers throw them; the binding layer (rpc.ts) maps anything
// else to a status too, so no exception ever escapes as a dropped connection.
import { status } from '@grpc/grpc-js';
import { UserError } from '../util/errors.js';

export class RpcError extends Error {
  constructor(readonly code: status, message: string) {
    super(message);
    this.name = 'RpcError';
  }
}

export const invalid = (msg: string): RpcError => new RpcError(status.INVALID_ARGUMENT, msg);
export const notFound = (msg: string): RpcError => new RpcError(status.NOT_FOUND, msg);

/** Thrown by handlers that notice the caller went away or the deadline passed between phases. */
export class CancelledError extends Error {
  constructor(readonly reason: 'cancelled' | 'deadline') {
    super(reason === 'deadline' ? 'deadline exceeded' : 'call cancelled by the client');
    this.name = 'CancelledError';
  }
}

const STRING_CODES: Record<string, status> = {
  NOT_FOUND: status.NOT_FOUND,
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  UNAVAILABLE: status.UNAVAILABLE,
  RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
};

/**
 * The status for any thrown value. Library errors with a string `code` naming a gRPC status (the
 * store's StoreError does this) keep their message: they describe the caller's request. Unknown
 * failures become INTERNAL with no detail, since their message may reveal internals.
 */
export function toStatus(err: unknown): { code: status; details: string; internal: boolean } {
  if (err instanceof RpcError) return { code: err.code, details: err.message, internal: false };
  if (err instanceof CancelledError) {
    return { code: err.reason === 'deadline' ? status.DEADLINE_EXCEEDED : status.CANCELLED, details: err.message, internal: false };
  }
  const code = (err as { code?: unknown })?.code;
  if (typeof code === 'string' && code in STRING_CODES) return { code: STRING_CODES[code]!, details: (err as Error).message, internal: false };
  if (err instanceof UserError) return { code: status.INVALID_ARGUMENT, details: err.message, internal: false };
  return { code: status.INTERNAL, details: 'internal error', internal: true };
}
