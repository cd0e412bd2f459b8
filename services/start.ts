// `aetn start`: the whole system on one machine with embedded defaults. Each batch stage runs as a
// child `aetn` process (its own progress bar, its own memory) and is skipped when its output is
// already there, so a re-run goes straight to serving. Then the serving process (and the realtime
// consumer when Kafka is configured) run in this process until Ctrl-C.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AetnConfig } from '../src/config/config.js';
import { installersOf, openPrepared } from '../src/data/prepared.js';
import { EmbeddingStore } from '../src/store/store.js';
import { readCurrent, featureIndexDir } from '../src/index/layout.js';
import { UserError } from '../src/util/errors.js';
import { child } from '../src/util/log.js';

const log = child('start');

export interface StartOptions {
  dir: string;
  /** Raw dataset to use instead of a generated demo world. */
  data?: string;
  users: number;
  seed: number;
  /** 'paper' = the paper's sizes; 'small' (default) finishes in minutes on 2 cores; 'tiny' is for tests. */
  size: 'tiny' | 'small' | 'paper';
  epochs: number;
  headEpochs: number;
  /** Stop after the batch stages (build only). */
  noServe: boolean;
  /** Replay the held-out week through EventService once serving (default true). */
  replay?: boolean;
}

const SIZES: Record<StartOptions['size'], { aetn: string[]; head: string[] }> = {
  paper: { aetn: [], head: [] },
  small: { aetn: ['--d-model', '64', '--d-ff', '128', '--heads', '4', '--enc-layers', '2', '--dec-layers', '1', '--d-emb', '64', '--batch-size', '500', '--lr', '2e-3'], head: [] },
  tiny: { aetn: ['--d-model', '16', '--d-ff', '32', '--heads', '2', '--enc-layers', '1', '--dec-layers', '1', '--d-emb', '16', '--batch-size', '250', '--lr', '3e-3'], head: ['--d-model', '16', '--heads', '2', '--d-ff', '32'] },
};

async function stage(name: string, args: string[]): Promise<void> {
  log.info({ stage: name }, `stage ${name}: aetn ${args.join(' ')}`);
  process.stderr.write(`\n▶ ${name}: aetn ${args.join(' ')}\n`);
  const started = performance.now();
  await new Promise<void>((ok, fail) => {
    const p = spawn(process.execPath, [...resolveCli(), ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
    p.on('error', fail);
    p.on('exit', (code, sig) => (code === 0 ? ok() : fail(new UserError(`stage ${name} failed (${sig ?? `exit ${code}`}): aetn ${args.join(' ')}`))));
  });
  process.stderr.write(`✔ ${name} in ${((performance.now() - started) / 1000).toFixed(1)}s\n`);
}

function resolveCli(): string[] {
  // The CLI is this folder's sibling: dist/services/cli/main.js when compiled; services/cli/main.ts
  // under tsx (then the child needs the tsx loader too).
  if (import.meta.url.endsWith('.ts')) return ['--import', 'tsx', fileURLToPath(new URL('./cli/main.ts', import.meta.url))];
  return [fileURLToPath(new URL('./cli/main.js', import.meta.url))];
}

export interface BuiltSystem {
  rawDir: string;
  preparedDir: string;
  modelDir: string;
  /** null: no realtime head (the data has no usable install events); only long-term vectors serve. */
  headDir: string | null;
  /** Why there is no head (printed), when headDir is null. */
  noHeadReason?: string;
  storeDir: string;
  featureId: string;
  apiKey: string;
}

/** Runs every batch stage whose output is missing; returns where everything is. */
export async function buildAll(o: StartOptions): Promise<BuiltSystem> {
  const dir = resolve(o.dir);
  mkdirSync(dir, { recursive: true });
  const rawDir = o.data ? resolve(o.data) : join(dir, 'raw');
  const preparedDir = join(dir, 'prepared');
  const modelDir = join(dir, 'models', `aetn-${o.size}`);
  const headDir = join(dir, 'models', `head-${o.size}`);
  const storeDir = join(dir, 'store');
  const size = SIZES[o.size];

  if (!existsSync(join(rawDir, 'dataset.json'))) {
    if (o.data) throw new UserError(`--data ${o.data}: no dataset.json there (see the README for the raw input format)`);
    await stage('generate a demo world', ['generate', '--users', String(o.users), '--seed', String(o.seed), '--out', rawDir]);
  }
  if (!existsSync(join(preparedDir, 'manifest.json'))) {
    await stage('prepare', ['prepare', '--in', rawDir, '--out', preparedDir]);
  }
  if (!existsSync(join(modelDir, 'manifest.json'))) {
    await stage('train AETN', ['train', '--data', preparedDir, '--out', modelDir, '--epochs', String(o.epochs), '--seed', String(o.seed), ...size.aetn]);
  }
  let noHeadReason: string | undefined;
  if (!existsSync(join(headDir, 'manifest.json'))) {
    noHeadReason = await whyNoHeadSamples(preparedDir);
    if (noHeadReason) {
      log.warn({ reason: noHeadReason }, 'realtime head skipped');
      process.stderr.write(`\n⚠ train the realtime head: skipped, ${noHeadReason}. The long-term vectors are served; EventService (short-term vectors) is off.\n`);
    } else {
      await stage('train the realtime head', ['train', '--head', 'realtime', '--base-model', modelDir, '--data', preparedDir, '--out', headDir, '--seed', String(o.seed), '--epochs', String(o.headEpochs), ...size.head]);
    }
  }
  const manifest = JSON.parse(readFileSync(join(modelDir, 'manifest.json'), 'utf8')) as { featureId: string };
  const featureId = manifest.featureId;
  const ds = await openPrepared(preparedDir);
  let have = 0;
  if (existsSync(join(storeDir, 'aetn-store.json'))) {
    const store = EmbeddingStore.open(storeDir, { create: false });
    have = store.getFeature(featureId) ? store.count(featureId) : 0;
    await store.close();
  }
  if (have < ds.manifest.numUsers) {
    await stage('embed', ['embed', '--model', modelDir, '--data', preparedDir, '--store', storeDir]);
  }
  if (!readCurrent(featureIndexDir(storeDir, featureId))) {
    await stage('index', ['index', '--store', storeDir, '--feature', featureId]);
  }
  // A demo API key with every scope, kept next to the data (never logged).
  const keyFile = join(dir, 'api-key.txt');
  if (!existsSync(keyFile)) writeFileSync(keyFile, `demo-${randomBytes(12).toString('hex')}\n`, { mode: 0o600 });
  const apiKey = readFileSync(keyFile, 'utf8').trim();
  return { rawDir, preparedDir, modelDir, headDir: noHeadReason ? null : headDir, ...(noHeadReason ? { noHeadReason } : {}), storeDir, featureId, apiKey };
}

/**
 * Why the realtime head cannot be trained on this prepared dataset, or undefined when it can: it
 * learns from users who have an install after at least one earlier event (install or uninstall).
 * A retention-only dataset (installed lists, no events) has none. Stops at the first such user, so
 * on data with events it reads only the first few users.
 */
export async function whyNoHeadSamples(preparedDir: string): Promise<string | undefined> {
  const ds = await openPrepared(preparedDir);
  if ((ds.manifest.counts['kept.installs'] ?? 0) === 0) return 'the data has no install events in the vocabulary (retention only: installed-app lists)';
  for await (const ex of ds.examples()) {
    // An install strictly later than the user's earliest event is a cut point with history before it.
    let first = Infinity;
    for (const t of ex.installTimes) first = Math.min(first, t);
    for (const t of ex.uninstallTimes) first = Math.min(first, t);
    for (const t of ex.installTimes) if (t > first) return undefined;
  }
  return 'no user has an install after an earlier event (the realtime head learns from those)';
}

/**
 * The app whose installers seed the demo's look-alike call: a niche look-alike target with at least
 * the look-alike's seed floor of installers (a smaller world may have none: then the least-installed
 * app that reaches the floor, or failing that the most-installed one).
 */
async function demoSeedApp(ds: Awaited<ReturnType<typeof openPrepared>>, minSeeds: number): Promise<string> {
  const targets = ds.lookalikeTargets;
  if (targets.length > 0) {
    const inst = await installersOf(ds, targets);
    const ok = targets.find((a) => (inst.get(a)?.length ?? 0) >= minSeeds);
    if (ok) return ok;
  }
  const apps = ds.vocab.apps.map((a) => a.appId);
  const inst = await installersOf(ds, [...targets, ...apps]);
  const ranked = [...inst.entries()].sort((a, b) => a[1].length - b[1].length);
  const niche = ranked.find(([, users]) => users.length >= minSeeds);
  return niche?.[0] ?? ranked[ranked.length - 1]?.[0] ?? '';
}

export async function examples(sys: BuiltSystem, cfg: AetnConfig): Promise<string> {
  const ds = await openPrepared(sys.preparedDir);
  let user = '';
  for await (const ex of ds.examples({ shard: 0 })) {
    user = ex.userId;
    break;
  }
  const app = await demoSeedApp(ds, cfg.serve.lookalikeMinSeeds);
  const addr = `${cfg.serve.host}:${cfg.serve.port}`;
  const h = `-H 'x-api-key: ${sys.apiKey}'`;
  return [
    `# a ranker's call: long-term, short-term and combined vector of one user`,
    `grpcurl -plaintext ${h} -d '{"user_id":"${user}","view":"VECTOR_VIEW_ALL"}' ${addr} aetn.v1.UserVectorService/GetUserVector`,
    `# the 10 users nearest to that user`,
    `grpcurl -plaintext ${h} -d '{"user_id":"${user}","k":10}' ${addr} aetn.v1.AudienceService/SearchNeighbors`,
    `# a look-alike audience of 1000 users for the installers of niche app ${app}`,
    `grpcurl -plaintext ${h} -d '{"seed_app_id":"${app}","audience_size":1000}' ${addr} aetn.v1.AudienceService/ExtendLookalike`,
    `# health and reflection`,
    `grpcurl -plaintext ${addr} grpc.health.v1.Health/Check`,
    `grpcurl -plaintext ${addr} list`,
  ].join('\n');
}

export async function runStart(o: StartOptions, cfg: AetnConfig): Promise<{ stop(): Promise<void> }> {
  const t0 = performance.now();
  const sys = await buildAll(o);
  if (o.noServe) return { stop: async () => {} };
  cfg = { ...cfg, storeDir: sys.storeDir, realtime: { ...cfg.realtime, headDir: sys.headDir }, serve: { ...cfg.serve, apiKeys: { ...cfg.serve.apiKeys, [sys.apiKey]: ['vectors:read', 'audience:write', 'events:write'] } } };
  const { runServe } = await import('./serve.js');
  const serving = await runServe(cfg, { searchThreads: 1 });
  const stops: Array<() => Promise<void>> = [() => serving.stop()];
  let realtimeNote = 'realtime ingestion: EventService/PublishEvents feeds the realtime head directly (set kafka.brokers to use Kafka)';
  if (!sys.headDir) {
    realtimeNote = `realtime ingestion: off (no realtime head: ${sys.noHeadReason ?? 'not trained'}); long-term vectors only`;
  } else if (cfg.kafka.brokers.length > 0) {
    const { runRealtime } = await import('./realtime.js');
    const rt = await runRealtime({ ...cfg, metrics: { ...cfg.metrics, port: null } });
    stops.unshift(() => rt.stop());
    realtimeNote = `realtime ingestion: consuming ${cfg.kafka.topic} from ${cfg.kafka.brokers.join(',')}`;
  }
  const port = serving.server.port;
  const shown = { ...cfg, serve: { ...cfg.serve, port } };
  process.stdout.write(
    [
      '',
      `aetn is up (${((performance.now() - t0) / 1000).toFixed(0)}s).`,
      `  raw data        ${sys.rawDir}`,
      `  prepared data   ${sys.preparedDir}`,
      `  AETN model      ${sys.modelDir}  (feature ${sys.featureId})`,
      `  realtime head   ${sys.headDir ?? `none (${sys.noHeadReason ?? 'not trained'})`}`,
      `  store + index   ${sys.storeDir}`,
      `  gRPC            ${cfg.serve.host}:${port}   API key in ${join(resolve(o.dir), 'api-key.txt')}`,
      `  metrics         ${serving.metricsUrl ?? 'off'}`,
      `  ${realtimeNote}`,
      '',
      'Try (grpcurl: go install github.com/fullstorydev/grpcurl/cmd/grpcurl@latest):',
      await examples(sys, shown),
      '',
      'Ctrl-C stops everything cleanly.',
      '',
    ].join('\n'),
  );
  if (o.replay !== false && cfg.kafka.brokers.length === 0 && sys.headDir) {
    // Background traffic; its outcome is printed, and a failure never takes the server down.
    void replayHeldOut(sys.rawDir, `${cfg.serve.host}:${port}`, sys.apiKey)
      .then((r) =>
        process.stdout.write(
          `replayed ${r.sent} held-out-week events through EventService: ${r.accepted} accepted, ${r.duplicates} duplicates (already applied), ${r.rejected} rejected (apps outside the vocabulary)\n`,
        ),
      )
      .catch((err: Error) => log.warn({ err: err.message }, 'held-out replay failed'));
  }
  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= (async () => { for (const s of stops) await s(); })());
  return { stop };
}

/**
 * The demo's live traffic: the held-out week's events, stamped with the current time, published
 * through the public EventService (client streaming, batches of 100) at `rate` events/s, so that
 * short-term vectors visibly change. A re-run replays the same event ids: they come back as
 * duplicates and change nothing.
 */
export async function replayHeldOut(rawDir: string, address: string, apiKey: string, rate = 200): Promise<{ sent: number; accepted: number; duplicates: number; rejected: number }> {
  const { loadDatasetSpec, readRecords } = await import('../src/data/raw.js');
  const { createClient } = await import('../src/serve/client.js');
  const { EventService, PublishEventsRequestSchema } = await import('../src/gen/aetn/v1/event_service_pb.js');
  const { create } = await import('@bufbuild/protobuf');
  const grpc = await import('@grpc/grpc-js');
  const spec = loadDatasetSpec(rawDir);
  const totals = { sent: 0, accepted: 0, duplicates: 0, rejected: 0 };
  if (!spec.paths.heldOut) return totals;
  const client = createClient(EventService, address, { apiKey });
  const raw = client.raw as unknown as Record<string, (md: InstanceType<typeof grpc.Metadata>, cb: (err: Error | null, res: unknown) => void) => { write(m: unknown): void; end(): void }>;
  const t0 = performance.now();
  const send = (events: Array<{ eventId: string; userId: string; pkg: string; type: 1 | 2 }>) =>
    new Promise<void>((resolve, reject) => {
      const md = new grpc.Metadata();
      md.set('x-api-key', apiKey);
      const call = raw.publishEvents!.call(client.raw, md, (err, res) => {
        if (err) return reject(err);
        const r = res as { accepted: number; duplicates: number; rejected: unknown[] };
        totals.accepted += r.accepted;
        totals.duplicates += r.duplicates;
        totals.rejected += r.rejected.length;
        resolve();
      });
      const now = BigInt(Date.now());
      call.write(create(PublishEventsRequestSchema, { events: events.map((e) => ({ eventId: e.eventId, userId: e.userId, packageName: e.pkg, type: e.type, timestampMs: now })) }));
      call.end();
    });
  try {
    let batch: Array<{ eventId: string; userId: string; pkg: string; type: 1 | 2 }> = [];
    const flush = async () => {
      if (batch.length === 0) return;
      await send(batch);
      totals.sent += batch.length;
      batch = [];
      const dueMs = (totals.sent / rate) * 1000 - (performance.now() - t0);
      if (dueMs > 1) await new Promise((r) => setTimeout(r, dueMs));
    };
    for (const rec of readRecords<{ eventId: string; userId: string; pkg: string; type: 1 | 2; timeMs: number }>(spec.paths.heldOut, 'events', { lines: 0, ok: 0, bad: 0 })) {
      if (!rec.ok) continue;
      batch.push(rec.row);
      if (batch.length >= 100) await flush();
    }
    await flush();
  } finally {
    client.close();
  }
  return totals;
}
