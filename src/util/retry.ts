// The one retry helper: runs `fn` again after a transient failure, with exponential backoff and
// full jitter, until it succeeds, fails for a reason that is not transient, or `budgetMs` has
// passed (then the last error is thrown). Only for operations that are safe to repeat.
//
//   await withRetry(() => client.execute(q, p), { budgetMs: 30_000, isTransient, onRetry });
import { Rng } from './random.js';

export interface RetryOptions {
  /** Give up once this long has passed since the first try (0: never retry). */
  budgetMs: number;
  /** Whether an error is worth another try. */
  isTransient: (err: unknown) => boolean;
  /** First backoff (default 200 ms); each later one doubles, up to maxDelayMs. */
  baseDelayMs?: number;
  /** Longest backoff (default 5 s). */
  maxDelayMs?: number;
  /** Told of every failure that will be retried. */
  onRetry?: (err: unknown, attempt: number, delayMs: number) => void;
}

export async function withRetry<T>(fn: () => Promise<T>, opts: RetryOptions): Promise<T> {
  const start = Date.now();
  const base = opts.baseDelayMs ?? 200;
  const max = opts.maxDelayMs ?? 5000;
  // Jitter only spreads retrying processes apart; it needs no reproducible seed. Made on the first
  // failure only: most calls succeed at once (the realtime write path calls this per statement).
  let rng: Rng | undefined;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      const left = opts.budgetMs - (Date.now() - start);
      if (left <= 0 || !opts.isTransient(err)) throw err;
      const cap = Math.min(max, base * 2 ** Math.min(attempt - 1, 20));
      rng ??= new Rng((process.pid * 2654435761 + start) >>> 0);
      const delay = Math.min(left, 1 + rng.int(Math.max(1, Math.floor(cap))));
      opts.onRetry?.(err, attempt, delay);
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}
