// The retry helper, and which Cassandra driver errors count as transient (the driver's own classes).
import { describe, expect, it } from 'vitest';
import cassandra from 'cassandra-driver';
import { withRetry } from '../../src/util/retry.js';
import { isTransientCassandraError } from '../../src/stream/cassandra-states.js';

class Flaky extends Error {}

describe('withRetry', () => {
  it('retries transient failures with growing delays until the call succeeds', async () => {
    let calls = 0;
    const delays: number[] = [];
    const out = await withRetry(
      async () => {
        if (++calls < 4) throw new Flaky(`try ${calls}`);
        return 'done';
      },
      { budgetMs: 10_000, baseDelayMs: 4, maxDelayMs: 16, isTransient: (e) => e instanceof Flaky, onRetry: (_e, attempt, d) => delays.push(attempt * 1000 + d) },
    );
    expect(out).toBe('done');
    expect(calls).toBe(4);
    // attempt 1 waits at most 4 ms, attempt 2 at most 8, attempt 3 at most 16 (the cap).
    expect(delays.map((d) => Math.floor(d / 1000))).toEqual([1, 2, 3]);
    delays.forEach((d, i) => expect(d % 1000).toBeLessThanOrEqual([4, 8, 16][i]!));
  });

  it('throws a failure that is not transient at once', async () => {
    let calls = 0;
    await expect(withRetry(async () => { calls++; throw new Error('bad statement'); }, { budgetMs: 10_000, isTransient: (e) => e instanceof Flaky })).rejects.toThrow('bad statement');
    expect(calls).toBe(1);
  });

  it('gives up with the last error once the budget is spent', async () => {
    let calls = 0;
    const t0 = Date.now();
    await expect(withRetry(async () => { throw new Flaky(`try ${++calls}`); }, { budgetMs: 60, baseDelayMs: 10, maxDelayMs: 10, isTransient: (e) => e instanceof Flaky })).rejects.toThrow(/^try \d+$/);
    expect(calls).toBeGreaterThan(1);
    expect(Date.now() - t0).toBeLessThan(1000);
  });
});

describe('isTransientCassandraError', () => {
  const { errors, types } = cassandra;
  it('retries timeouts, unavailable replicas, overload and unreachable hosts', () => {
    expect(isTransientCassandraError(new errors.OperationTimedOutError('timed out', '127.0.0.1:9042'))).toBe(true);
    expect(isTransientCassandraError(new errors.NoHostAvailableError({}))).toBe(true);
    for (const code of [types.responseErrorCodes.writeTimeout, types.responseErrorCodes.readTimeout, types.responseErrorCodes.unavailableException, types.responseErrorCodes.overloaded]) {
      expect(isTransientCassandraError(new errors.ResponseError(code, 'coordinator says'))).toBe(true);
    }
  });
  it('does not retry a statement the cluster refused for what it is', () => {
    expect(isTransientCassandraError(new errors.ResponseError(types.responseErrorCodes.syntaxError, 'line 1'))).toBe(false);
    expect(isTransientCassandraError(new errors.ResponseError(types.responseErrorCodes.invalid, 'unknown table'))).toBe(false);
    expect(isTransientCassandraError(new Error('a bug'))).toBe(false);
  });
});
