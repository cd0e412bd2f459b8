// Suite-wide setup. Long-lived test infrastructure (the Kafka broker) registers here so that it
// starts once per `vitest run` and is stopped at the end.
//
// dist/: tests that run the compiled CLI (bin/aetn.js) need it current. When a selected test file
// runs the CLI and a source is newer than the last build, tsc runs here, once, and a compile error
// stops the run with tsc's output (no test rebuilds dist/ itself).
//
// Kafka: a real single-node KRaft broker (test/kafka/broker.ts) whose address reaches the tests as
// `inject('kafkaBrokers')` ('' when there is none: such tests skip). It starts only when a selected
// test file asks for it (mentions `kafkaBrokers`), so `vitest run test/store` pays nothing.
//   AETN_TEST_KAFKA=0                 never start one (Kafka tests skip)
//   AETN_TEST_KAFKA_BROKERS=host:port use an external broker instead of starting one
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import type { TestKafkaBroker } from './kafka/broker.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** `host:port` of the test Kafka broker, or '' when Kafka tests must skip. */
    kafkaBrokers: string;
  }
}

let broker: TestKafkaBroker | undefined;

/** True when a selected test file matches `needle`, or when that cannot be told. */
async function selectedFilesMention(project: TestProject, needle: RegExp): Promise<boolean> {
  try {
    const vitest = project.vitest as unknown as {
      filenamePattern?: string[];
      globTestSpecifications(filters?: string[]): Promise<{ moduleId: string; project: { name: string } }[]>;
    };
    const specs = await vitest.globTestSpecifications(vitest.filenamePattern ?? []);
    return specs.some((s) => s.project.name === project.name && needle.test(readFileSync(s.moduleId, 'utf8')));
  } catch {
    return true; // cannot tell (vitest internals moved): assume so rather than skip or run stale code
  }
}

const ROOT = join(import.meta.dirname, '..');
const STAMP = join(ROOT, 'dist', '.tsc-stamp');

function newestSource(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestSource(p));
    else if (e.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

/** Compiles dist/ when a source changed since the last build here; throws tsc's output on an error. */
async function buildDist(): Promise<void> {
  const newest = Math.max(statSync(join(ROOT, 'tsconfig.json')).mtimeMs, ...['src', 'services', 'bench'].map((d) => newestSource(join(ROOT, d))));
  if (existsSync(STAMP) && statSync(STAMP).mtimeMs >= newest) return;
  const t0 = Date.now();
  // Not execFileSync: a blocking compile would starve vitest's own RPC.
  const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
    const p = spawn(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.json')], { cwd: ROOT });
    let output = '';
    p.stdout.on('data', (d: Buffer) => (output += d.toString()));
    p.stderr.on('data', (d: Buffer) => (output += d.toString()));
    p.on('close', (c) => resolve({ code: c, output }));
  });
  if (code !== 0) throw new Error(`tsc failed (exit ${code}); the CLI tests run the compiled dist/:\n${output}`);
  writeFileSync(STAMP, `${new Date().toISOString()}\n`);
  process.stderr.write(`[global-setup] compiled dist/ in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
}

export async function setup(project: TestProject): Promise<void> {
  // The CLI tests name bin/aetn.js as a path ('bin/aetn.js') or in parts (join(root, 'bin', 'aetn.js')).
  if (await selectedFilesMention(project, /bin\/aetn\.js|'bin', 'aetn\.js'/)) {
    // Each project runs this setup, in one process and at the same time: one build for all.
    const shared = globalThis as { aetnDistBuild?: Promise<void> };
    await (shared.aetnDistBuild ??= buildDist());
  }
  // The unit project never needs Kafka (vitest.config.ts puts every Kafka test in integration).
  if (project.name === 'unit') {
    project.provide('kafkaBrokers', '');
    return;
  }
  // The Cassandra jars (a Maven fetch on a fresh machine), once, before any worker needs them.
  if (await selectedFilesMention(project, /CassandraCluster\.start/)) {
    const { cassandraAvailable, cassandraJarsCached, ensureCassandraJars } = await import('./cassandra/cluster.js');
    if (!cassandraJarsCached() && cassandraAvailable().ok) {
      const t0 = Date.now();
      await ensureCassandraJars();
      process.stderr.write(`[global-setup] Cassandra jars fetched in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
    }
  }
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
  if (!(await selectedFilesMention(project, /kafkaBrokers/))) {
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
