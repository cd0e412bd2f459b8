import { defineConfig } from 'vitest/config';

// Two projects. `unit`: fast, needs only Node (a few spawn the compiled CLI, which the global setup
// builds). `integration`: needs Java + Maven (the Kafka broker, Cassandra), Go (grpcurl), docker-compose, or
// runs the whole system. `npx vitest run --project unit` runs the fast ones only.
const INTEGRATION = [
  'test/stream/{pipeline,crash,broker-restart,cli,group}.test.ts', // Kafka
  'test/serve/events.test.ts', // Kafka
  'test/serve/grpcurl.test.ts', // Go (grpcurl)
  'test/start/**/*.test.ts', // the whole system, grpcurl
  'test/deploy/**/*.test.ts', // docker-compose
  'test/embed/**/*.test.ts', // batch job through the CLI, minutes
  'test/eval/cli.test.ts', // generate -> train -> eval through the CLI
  'test/model/train-cli.test.ts', // training through the CLI
  'test/bench/gpu-embed.test.ts', // packs and runs the GPU bundle, minutes
  'test/store/cassandra.test.ts', // a real Cassandra node (Java; Maven for the first fetch of its jars)
  'test/serve/cassandra-replicas.test.ts', // Cassandra + two serving processes
];

// The cluster mode end to end: its own run, `npm run test:cluster` (vitest.cluster.config.ts).
const CLUSTER = ['test/cluster/**'];

export default defineConfig({
  test: {
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // 2-core CI: keep heavy suites (model, Kafka, gRPC) from fighting over the cores.
    pool: 'forks',
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    // Quiet by configuration, not by sniffing for vitest: no info logs, no progress bars (also in
    // the CLI processes the tests spawn, which inherit this environment).
    env: { AETN_LOG_LEVEL: 'warn', AETN_PROGRESS: '0' },
    // In each project (not at the root, which would run it a third time).
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/**/*.test.ts', 'src/**/*.test.ts'], exclude: [...INTEGRATION, ...CLUSTER], globalSetup: ['test/global-setup.ts'], sequence: { groupOrder: 0 } } },
      // After the unit project, not beside it: two projects at once would double the forks.
      { extends: true, test: { name: 'integration', include: INTEGRATION, globalSetup: ['test/global-setup.ts'], sequence: { groupOrder: 1 } } },
    ],
  },
});
