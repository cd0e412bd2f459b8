// Structured JSON logs on stderr (stdout is kept for command output). Never log user vectors or keys.
import { pino, type Logger } from 'pino';

const level = process.env.AETN_LOG_LEVEL ?? (process.env.VITEST ? 'warn' : 'info');

export const log: Logger = pino(
  { level, base: { pid: process.pid }, redact: { paths: ['apiKey', '*.apiKey', 'key', 'authorization', '*.authorization'], censor: '[redacted]' } },
  pino.destination(2),
);

export function child(component: string): Logger {
  return log.child({ component });
}
