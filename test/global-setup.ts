// Suite-wide setup. Long-lived test infrastructure (the Kafka broker) registers here so that it
// starts once per `vitest run` and is stopped at the end.
//
// Kafka: a real single-node KRaft broker (test/kafka/broker.ts) whose address reaches the tests as
// `inject('kafkaBrokers')` ('' when there is none: such tests skip). It starts only when a selected
// test file asks for it (mentions `kafkaBrokers`), so `vitest run test/store` pays nothing.
//   AETN_TEST_KAFKA=0                 never start one (Kafka tests skip)
//   AETN_TEST_KAFKA_BROKERS=host:port use an external broker instead of starting one
import { readFileSync } from 'node:fs';
import type { TestProject } from 'vitest/node';
import type { TestKafkaBroker } from './kafka/broker.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** `host:port` of the test Kafka broker, or '' when Kafka tests must skip. */
    kafkaBrokers: string;
  }
}

let broker: TestKafkaBroker | undefined;

async function selectedFilesNeedKafka(project: TestProject): Promise<boolean> {
  try {
    const vitest = project.vitest as unknown as {
      filenamePattern?: string[];
      globTestSpecifications(filters?: string[]): Promise<{ moduleId: string }[]>;
    };
    const specs = await vitest.globTestSpecifications(vitest.filenamePattern ?? []);
    return specs.some((s) => readFileSync(s.moduleId, 'utf8').includes('kafkaBrokers'));
  } catch {
    return true; // cannot tell (vitest internals moved): start it rather than skip Kafka tests
  }
}

export async function setup(project: TestProject): Promise<void> {
  const external = process.env.AETN_TEST_KAFKA_BROKERS?.trim();
  if (process.env.AETN_TEST_KAFKA === '0') {
    project.provide('kafkaBrokers', '');
    return;
  }
  if (external) {
    const { waitForBroker } = await import('./kafka/broker.js');
    await waitForBroker(external, 30_000);
    project.provide('kafkaBrokers', external);
    return;
  }
  if (!(await selectedFilesNeedKafka(project))) {
    project.provide('kafkaBrokers', '');
    return;
  }
  const { TestKafkaBroker } = await import('./kafka/broker.js');
  const t0 = Date.now();
  broker = await TestKafkaBroker.start();
  process.stderr.write(`[global-setup] Kafka broker ${broker.brokers} up in ${((Date.now() - t0) / 1000).toFixed(1)} s (logs: ${broker.logDir})\n`);
  project.provide('kafkaBrokers', broker.brokers);
}

export async function teardown(): Promise<void> {
  const b = broker;
  broker = undefined;
  await b?.destroy();
}
