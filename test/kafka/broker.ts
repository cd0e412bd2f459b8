// A real single-node Apache Kafka broker for tests and benchmarks (KRaft: one JVM that is both
// broker and controller). Jars come from Maven Central through test/kafka/pom.xml and are cached
// under .cache/kafka/libs; the broker listens on free loopback ports; its data lives in a temp dir
// that survives stop/restart (so tests can take the broker away and bring it back with its log
// intact) and is removed by destroy(); its output is kept under .cache/kafka/logs for debugging.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Kafka, logLevel } from 'kafkajs';
import { runProcess } from '../spawn.js';

const here = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = resolve(here, '..', '..');
export const POM = join(here, 'pom.xml');
export const DEFAULT_CACHE_DIR = join(REPO_ROOT, '.cache', 'kafka');

/** Small heap, serial GC (few threads on 2 cores). */
export const BASE_JVM_OPTS = ['-Xms256m', '-Xmx1g', '-XX:+UseSerialGC', '-XX:+ExitOnOutOfMemoryError', '-Djava.awt.headless=true'];
/**
 * Tests: C1 only. Measured on the 2-core machine under load: start 16-18 s instead of 27 s,
 * restart 14-15 s instead of 22-24 s. Benchmarks use BASE_JVM_OPTS (full JIT, faster broker).
 */
export const TEST_JVM_OPTS = [...BASE_JVM_OPTS, '-XX:TieredStopAtLevel=1'];

export interface BrokerOptions {
  /** Where jars (libs/) and broker logs (logs/) are kept between runs. */
  cacheDir?: string;
  /** Default partition count of auto-created topics. */
  partitions?: number;
  /** JVM flags; the defaults keep the broker small on a 2-core machine. */
  jvmOpts?: string[];
  /** Give up waiting for the broker after this long. */
  startTimeoutMs?: number;
}

/**
 * Downloads the broker jars once (through Maven) and returns the libs dir. Safe to call
 * concurrently. Asynchronous: the global setup runs it while the unit project's workers run.
 */
export async function ensureKafkaJars(cacheDir = DEFAULT_CACHE_DIR): Promise<string> {
  const libs = join(cacheDir, 'libs');
  const pomText = readFileSync(POM, 'utf8');
  const version = /<kafka\.version>([^<]+)</.exec(pomText)?.[1] ?? 'unknown';
  const marker = join(libs, '.complete');
  if (existsSync(marker) && readFileSync(marker, 'utf8').trim() === version) return libs;
  mkdirSync(cacheDir, { recursive: true });
  // Fetch into a private dir and rename, so a concurrent or interrupted fetch never leaves a
  // half-filled libs dir that looks complete.
  const staging = mkdtempSync(join(cacheDir, 'libs-staging-'));
  const res = await runProcess('mvn', ['-q', '-B', '-f', POM, 'dependency:copy-dependencies', `-DoutputDirectory=${staging}`], { timeoutMs: 600_000 });
  if (res.error || res.status !== 0) {
    rmSync(staging, { recursive: true, force: true });
    const why = res.error ? res.error.message : `${res.stdout}\n${res.stderr}`.trim().slice(-4000);
    throw new Error(`could not fetch the Kafka jars with Maven (is Maven installed and Maven Central reachable?): ${why}`);
  }
  if (!readdirSync(staging).some((f) => /^kafka_2\.13-.*\.jar$/.test(f))) {
    rmSync(staging, { recursive: true, force: true });
    throw new Error(`Maven ran but fetched no kafka_2.13 jar into ${staging}`);
  }
  writeFileSync(join(staging, '.complete'), version);
  if (existsSync(libs)) {
    if (existsSync(marker) && readFileSync(marker, 'utf8').trim() === version) {
      rmSync(staging, { recursive: true, force: true }); // someone else finished first
      return libs;
    }
    rmSync(libs, { recursive: true, force: true });
  }
  try {
    renameSync(staging, libs);
  } catch (err) {
    rmSync(staging, { recursive: true, force: true });
    if (!existsSync(marker)) throw err;
  }
  return libs;
}

/** A port that was free a moment ago (bind port 0 on loopback, read it, release it). */
export async function freePort(): Promise<number> {
  return await new Promise((ok, fail) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', fail);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => ok(port));
    });
  });
}

/** Resolves once a kafkajs admin can list topics on `brokers`, or throws after `timeoutMs`. */
export async function waitForBroker(brokers: string, timeoutMs = 60_000, alive: () => boolean = () => true): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown;
  while (Date.now() < deadline) {
    if (!alive()) throw new Error('the Kafka broker process exited while starting');
    const admin = new Kafka({
      clientId: 'aetn-test-wait',
      brokers: [brokers],
      logLevel: logLevel.NOTHING,
      connectionTimeout: 1000,
      retry: { retries: 0 },
    }).admin();
    try {
      await admin.connect();
      await admin.listTopics();
      await admin.disconnect();
      return;
    } catch (err) {
      lastErr = err;
      await admin.disconnect().catch(() => undefined);
      await sleep(250);
    }
  }
  throw new Error(`Kafka broker at ${brokers} not ready after ${timeoutMs} ms: ${(lastErr as Error)?.message ?? lastErr}`);
}

export class TestKafkaBroker {
  private proc: ChildProcess | undefined;
  private watchdog: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private starts = 0;

  private constructor(
    readonly port: number,
    readonly controllerPort: number,
    readonly dataDir: string,
    readonly logDir: string,
    private readonly libs: string,
    private readonly opts: Required<BrokerOptions>,
  ) {}

  /** `host:port` for kafkajs `brokers: [..]`. */
  get brokers(): string {
    return `127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** Fetches jars if needed, formats fresh storage and starts the broker; resolves when it serves. */
  static async start(options: BrokerOptions = {}): Promise<TestKafkaBroker> {
    const opts: Required<BrokerOptions> = {
      cacheDir: options.cacheDir ?? DEFAULT_CACHE_DIR,
      partitions: options.partitions ?? 4,
      jvmOpts: options.jvmOpts ?? TEST_JVM_OPTS,
      startTimeoutMs: options.startTimeoutMs ?? 90_000,
    };
    const libs = await ensureKafkaJars(opts.cacheDir);
    const port = await freePort();
    let controllerPort = await freePort();
    while (controllerPort === port) controllerPort = await freePort();
    const dataDir = mkdtempSync(join(tmpdir(), `aetn-kafka-${port}-`));
    const logDir = join(opts.cacheDir, 'logs');
    mkdirSync(logDir, { recursive: true });
    const broker = new TestKafkaBroker(port, controllerPort, dataDir, logDir, libs, opts);
    broker.writeConfig();
    await broker.format();
    try {
      await broker.launch();
    } catch (err) {
      await broker.destroy();
      throw err;
    }
    return broker;
  }

  private get propsPath(): string {
    return join(this.dataDir, 'server.properties');
  }

  private get outPath(): string {
    return join(this.logDir, `broker-${this.port}.out`);
  }

  private writeConfig(): void {
    const props = [
      'process.roles=broker,controller',
      'node.id=1',
      `controller.quorum.voters=1@127.0.0.1:${this.controllerPort}`,
      `listeners=PLAINTEXT://127.0.0.1:${this.port},CONTROLLER://127.0.0.1:${this.controllerPort}`,
      `advertised.listeners=PLAINTEXT://127.0.0.1:${this.port}`,
      'controller.listener.names=CONTROLLER',
      'inter.broker.listener.name=PLAINTEXT',
      'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
      `log.dirs=${join(this.dataDir, 'data')}`,
      `num.partitions=${this.opts.partitions}`,
      'auto.create.topics.enable=true',
      // Single node: every internal topic has one replica; few offset partitions start faster.
      'offsets.topic.replication.factor=1',
      'offsets.topic.num.partitions=4',
      'transaction.state.log.replication.factor=1',
      'transaction.state.log.min.isr=1',
      'transaction.state.log.num.partitions=4',
      'default.replication.factor=1',
      'min.insync.replicas=1',
      // Tests join groups often: do not wait 3 s for more members before the first rebalance.
      'group.initial.rebalance.delay.ms=0',
      'num.network.threads=2',
      'num.io.threads=4',
      'log.retention.check.interval.ms=600000',
    ];
    writeFileSync(this.propsPath, props.join('\n') + '\n');
    const log4j = [
      'log4j.rootLogger=WARN, stdout',
      'log4j.appender.stdout=org.apache.log4j.ConsoleAppender',
      'log4j.appender.stdout.layout=org.apache.log4j.PatternLayout',
      'log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n',
      // One line when the server is up and when it shuts down, for reading the logs later.
      'log4j.logger.kafka.server.KafkaRaftServer=INFO',
      'log4j.logger.kafka.server.BrokerServer=INFO',
    ];
    writeFileSync(join(this.dataDir, 'log4j.properties'), log4j.join('\n') + '\n');
  }

  private javaArgs(mainClass: string, args: string[]): string[] {
    return [
      ...this.opts.jvmOpts,
      `-Dlog4j.configuration=file:${join(this.dataDir, 'log4j.properties')}`,
      `-Dkafka.logs.dir=${this.logDir}`,
      '-cp',
      `${this.libs}/*`,
      mainClass,
      ...args,
    ];
  }

  private async format(): Promise<void> {
    // A KRaft cluster id is 16 random bytes, base64url without padding.
    // (Not starting with '-': the StorageTool's argument parser would take it for an option.)
    let clusterId = randomBytes(16).toString('base64url');
    while (clusterId.startsWith('-')) clusterId = randomBytes(16).toString('base64url');
    const res = await runProcess('java', this.javaArgs('kafka.tools.StorageTool', ['format', '-t', clusterId, '-c', this.propsPath]), { timeoutMs: 120_000 });
    if (res.error || res.status !== 0) {
      throw new Error(`formatting Kafka storage failed: ${res.error?.message ?? ''}${res.stdout}${res.stderr}`.slice(-4000));
    }
  }

  private async launch(): Promise<void> {
    this.starts++;
    const out = createWriteStream(this.outPath, { flags: 'a' });
    out.write(`\n===== start #${this.starts} at ${new Date().toISOString()} =====\n`);
    const proc = spawn('java', this.javaArgs('kafka.Kafka', [this.propsPath]), { stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout!.pipe(out, { end: false });
    proc.stderr!.pipe(out, { end: false });
    this.exited = new Promise((ok) => proc.once('exit', () => ok()));
    this.exited.then(() => out.end());
    this.proc = proc;
    // If this Node process dies without stopping the broker (crash, kill -9), the watchdog's stdin
    // closes and it kills the JVM, so no orphan broker is left holding ports and CPU.
    this.watchdog = spawn('sh', ['-c', `read _ ; kill -9 ${proc.pid} 2>/dev/null`], { stdio: ['pipe', 'ignore', 'ignore'] });
    this.watchdog.unref();
    (this.watchdog.stdin as unknown as { unref?: () => void }).unref?.();
    try {
      await waitForBroker(this.brokers, this.opts.startTimeoutMs, () => this.running);
    } catch (err) {
      await this.stop();
      throw new Error(`${(err as Error).message}\n--- broker output (${this.outPath}) ---\n${tail(this.outPath)}`);
    }
  }

  /** Stops the broker: SIGTERM (clean shutdown), then SIGKILL after `graceMs`. Data is kept. */
  async stop(graceMs = 15_000): Promise<void> {
    const proc = this.proc;
    this.releaseWatchdog();
    if (!proc || !this.running) return;
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  /** Kills the broker at once (SIGKILL), as a crash would. Data is kept. */
  async kill(): Promise<void> {
    const proc = this.proc;
    this.releaseWatchdog();
    if (!proc || !this.running) return;
    proc.kill('SIGKILL');
    await this.exited;
  }

  /** Starts the broker again on the same ports with the same data. */
  async restart(): Promise<void> {
    if (this.running) await this.stop();
    await this.launch();
  }

  /** Stops the broker and removes its data (logs under the cache dir are kept). */
  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  private releaseWatchdog(): void {
    const w = this.watchdog;
    this.watchdog = undefined;
    if (w && w.exitCode === null) w.kill('SIGKILL');
  }
}

function tail(path: string, chars = 4000): string {
  try {
    return readFileSync(path, 'utf8').slice(-chars);
  } catch {
    return '(no output)';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
