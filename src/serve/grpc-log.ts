// grpc-js's own log lines (e.g. "Failed to add metadata entry x-api-key: <value>" for a header
// value it refuses) go to stderr as plain text by default, outside our JSON logs, and may carry an
// API key. This routes them through our logger, redacted and bounded: metadata values are never
// written (only the header name), and no line is longer than MAX_CHARS.
import * as grpc from '@grpc/grpc-js';
import { format } from 'node:util';
import type { Logger } from 'pino';

const MAX_CHARS = 500;
const METADATA = /^Failed to add metadata entry ([^:]{0,200}):/;

/** One grpc-js message as we log it: header values of metadata errors removed, the rest cut short. */
export function redactGrpcMessage(text: string): string {
  const m = METADATA.exec(text);
  if (m) {
    const name = m[1]!.replace(/[^\w.-]/g, '?').slice(0, 64);
    // The rest of grpc-js's message quotes the value again: none of it is kept.
    return `grpc-js dropped metadata entry "${name}": its value is not a legal header value (not logged)`;
  }
  // Anything else that names a credential header: cut at the header name.
  const cred = /(x-api-key|authorization)/i.exec(text);
  const safe = cred ? `${text.slice(0, cred.index + cred[0].length)} [redacted]` : text;
  return safe.length > MAX_CHARS ? `${safe.slice(0, MAX_CHARS)}… (${safe.length} chars)` : safe;
}

let installed: Logger | undefined;

/** Routes grpc-js logging through `log` (component grpc-js). Idempotent; the first logger wins. */
export function routeGrpcLogs(log: Logger): void {
  if (installed) return;
  installed = log.child({ component: 'grpc-js' });
  const l = installed;
  const emit = (level: 'warn' | 'info' | 'debug') => (message?: unknown, ...rest: unknown[]) => l[level](redactGrpcMessage(format(message, ...rest)));
  grpc.setLogger({ error: emit('warn'), info: emit('info'), debug: emit('debug') });
}
