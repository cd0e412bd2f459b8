// Structured JSON logs on stderr (stdout is kept for command output). Never log user vectors or keys.
import { pino, type Logger } from 'pino';

// On a terminal the commands print their own progress bars and summaries, and JSON info lines in
// between would make them unreadable: there the default is warn (AETN_LOG_LEVEL=info brings the
// info lines back). Piped or redirected (services, CI, files), the default stays info.
const level = process.env.AETN_LOG_LEVEL || (process.stderr.isTTY ? 'warn' : 'info');

export const log: Logger = pino(
  { level, base: { pid: process.pid }, redact: { paths: ['apiKey', '*.apiKey', 'key', 'authorization', '*.authorization'], censor: '[redacted]' } },
  pino.destination(2),
);

export function child(component: string): Logger {
  return log.child({ component });
}
