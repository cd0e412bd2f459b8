import { defineConfig } from 'vitest/config';

// `npm run test:cluster`: the cluster mode end to end (test/cluster/), minutes and several JVMs
// (three Cassandra nodes at 1 GB heap each, Kafka), so it is neither in `npm test` nor in CI. The
// suite-wide setup starts the Kafka broker as for the integration tests.
export default defineConfig({
  test: {
    include: ['test/cluster/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 1_200_000,
    hookTimeout: 1_500_000,
    pool: 'forks',
    poolOptions: { forks: { singleFork: true } },
    env: { AETN_LOG_LEVEL: 'warn', AETN_PROGRESS: '0' },
  },
});
