import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // 2-core CI: keep heavy suites (model, Kafka, gRPC) from fighting over the cores.
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    globalSetup: ['test/global-setup.ts'],
    // Quiet by configuration, not by sniffing for vitest: no info logs, no progress bars (also in
    // the CLI processes the tests spawn, which inherit this environment).
    env: { AETN_LOG_LEVEL: 'warn', AETN_PROGRESS: '0' },
  },
});
