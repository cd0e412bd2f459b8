// The cluster mode end to end (`npm run test:cluster`; minutes, not part of `npm test`): three real
// Cassandra 5.0 nodes on loopback addresses, Kafka, the schema job, two embedding shards, the index
// job, two serving replicas and two realtime consumers of one group, each process started with the
// command line docker-compose.yml's `cluster` profile gives it (paths and ports mapped to this
// host). Traffic: events published through the replicas' EventService (into Kafka, to the
// consumers), neighbour and look-alike calls, all with the documented client behaviour (round robin,
// one retry on another replica after UNAVAILABLE). Mid-stream, one Cassandra node, one replica and
// one consumer are killed with SIGKILL. Checked: no call failed beyond that retry; every accepted
// event applied exactly once per user (the consumers' shared `states` rows); the short-term vectors
// the replicas serve are those rows'; neighbour and look-alike answers equal to the embedded mode's
// (one LMDB store and its index built by `aetn start` from the same model and data), and the same
// recall against exact search. It prints a summary for docs/parts/scale-out.md.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir, loadavg } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CassandraCluster, cassandraAvailable } from '../cassandra/cluster.js';
import { commandOf, COMPOSE_KEYS, resolvedServices } from '../deploy/compose-file.js';
import { ReplicaClient, type PlainAppEvent } from './replicas.js';
import { CassandraStore } from '../../src/store/cassandra.js';
import { CassandraStates } from '../../src/stream/cassandra-states.js';
import { EmbeddingStore } from '../../src/store/store.js';

const exec = promisify(execFile);
const brokers = inject('kafkaBrokers');
const avail = cassandraAvailable();
const KEY = 'adtool-key-0001'; // vectors:read + audience:write in COMPOSE_KEYS
const KEYS = `${COMPOSE_KEYS};writer-key-0001=events:write`;
const USERS = 600;
const SIZE = 'tiny';
/** A narrow search (the server raises it to k), so that the index is not exact on 600 users. */
const EF = 10;

interface Proc {
  name: string;
  child: ChildProcess;
  out: string;
  exited: Promise<number | null>;
}

const procs: Proc[] = [];
let cluster: CassandraCluster | undefined;
let dir = '';
const t0 = Date.now();
const log = (msg: string) => process.stdout.write(`[cluster ${((Date.now() - t0) / 1000).toFixed(0).padStart(4)} s, load ${loadavg()[0]!.toFixed(1)}] ${msg}\n`);

/** A compose command line with the file's /data paths and model size mapped to this test's. */
function mapped(service: string): string[] {
  return commandOf(service).map((a) => a.replace(/^\/data/, dir).replace(/(aetn|head)-small$/, `$1-${SIZE}`));
}

function start(name: string, args: string[], env: NodeJS.ProcessEnv): Proc {
  const child = spawn(process.execPath, ['bin/aetn.js', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const p: Proc = { name, child, out: '', exited: new Promise((r) => child.on('exit', (c) => r(c))) };
  child.stdout!.on('data', (d: Buffer) => (p.out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (p.out += d.toString()));
  procs.push(p);
  return p;
}

async function waitOut(p: Proc, re: RegExp, timeoutMs = 240_000): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = re.exec(p.out);
    if (m) return m;
    if (p.child.exitCode !== null) throw new Error(`${p.name} exited ${p.child.exitCode} before ${re}:\n${p.out.slice(-3000)}`);
    if (Date.now() > deadline) throw new Error(`${p.name}: no ${re} after ${timeoutMs} ms:\n${p.out.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function run(name: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  const p = start(name, args, env);
  const code = await p.exited;
  if (code !== 0) throw new Error(`${name} (aetn ${args.join(' ')}) exited ${code}:\n${p.out.slice(-4000)}`);
  return p.out;
}

function cosineTopK(q: Float32Array, all: { userId: string; vector: Float32Array }[], k: number, skip: string): string[] {
  const norm = (v: Float32Array) => Math.sqrt(v.reduce((s, x) => s + x * x, 0)) || 1;
  const qn = norm(q);
  const scored = all.filter((e) => e.userId !== skip).map((e) => {
    let dot = 0;
    for (let i = 0; i < q.length; i++) dot += q[i]! * e.vector[i]!;
    return { id: e.userId, s: dot / (qn * norm(e.vector)) };
  });
  scored.sort((a, b) => b.s - a.s || (a.id < b.id ? -1 : 1));
  return scored.slice(0, k).map((x) => x.id);
}

afterAll(async () => {
  for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
  await cluster?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 120_000);

describe.skipIf(!brokers || !avail.ok)('cluster mode: 3 Cassandra nodes, 2 serving replicas, 2 realtime consumers', () => {
  let base: NodeJS.ProcessEnv;
  let clusterEnv: (service: string) => NodeJS.ProcessEnv;
  let featureId = '';

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'aetn-cluster-'));
    base = { ...process.env, AETN_API_KEYS: KEYS, AETN_PROGRESS: '0', AETN_LOG_LEVEL: 'warn' };
    log(`starting 3 Cassandra nodes (1 GB heap each) beside Kafka ${brokers}`);
    const nodesUp = CassandraCluster.start({ nodes: 3, heap: '1G', timeoutMs: 420_000 }).then((c) => (cluster = c));
    // The models job of the profile, shrunk to seconds (later flags win); its LMDB store and index
    // are the embedded mode's answers on the same vectors.
    const models = [...mapped('models'), '--users', String(USERS), '--size', SIZE, '--epochs', '1', '--head-epochs', '1'];
    await run('models', models, { ...base, AETN_STORE_BACKEND: 'lmdb', AETN_STORE_DIR: join(dir, 'store') });
    featureId = (JSON.parse(readFileSync(join(dir, 'models', `aetn-${SIZE}`, 'manifest.json'), 'utf8')) as { featureId: string }).featureId;
    log(`models job done (feature ${featureId}); waiting for the nodes`);
    await nodesUp;
    const services = await resolvedServices(['cluster']);
    clusterEnv = (service: string) => {
      const env = { ...base, ...services.get(service)!.environment };
      env.AETN_CASSANDRA_CONTACT_POINTS = cluster!.contactPoints.join(',');
      env.AETN_KAFKA_BROKERS = brokers;
      env.AETN_API_KEYS = KEYS;
      env.AETN_STORE_DIR = join(dir, `unused-${service}`);
      env.AETN_LOG_LEVEL = 'warn';
      if (env.AETN_REALTIME_HEAD) env.AETN_REALTIME_HEAD = env.AETN_REALTIME_HEAD.replace(/^\/data/, dir).replace(/head-small$/, `head-${SIZE}`);
      return env;
    };
    log(`nodes up at ${cluster!.contactPoints.join(', ')}; schema job`);
    await run('cassandra-init', mapped('cassandra-init'), clusterEnv('cassandra-init'));
    log('embedding shards 0/2 and 1/2 side by side');
    await Promise.all([run('embed0', mapped('embed0'), clusterEnv('embed0')), run('embed1', mapped('embed1'), clusterEnv('embed1'))]);
    log('index job');
    await run('index', mapped('index'), clusterEnv('index'));
    log('index published; starting 2 replicas, 2 consumers and the embedded reference server');
  }, 1_500_000);

  it('survives losing a node, a replica and a consumer mid-stream: no failed call beyond the retry, every event once, answers as the embedded mode', async () => {
    const local = ['--host', '127.0.0.1', '--port', '0', '--metrics-port', '0'];
    const serve1 = start('serve1', [...mapped('serve1'), ...local], clusterEnv('serve1'));
    const serve2 = start('serve2', [...mapped('serve2'), ...local], clusterEnv('serve2'));
    // Two consumers on one host: the compose metrics port (one per container) is turned off here.
    const rt1 = start('realtime1', [...mapped('realtime1'), '--metrics-port', '0', '--chunk', '200'], clusterEnv('realtime1'));
    const rt2 = start('realtime2', [...mapped('realtime2'), '--metrics-port', 'off', '--chunk', '200'], clusterEnv('realtime2'));
    const embedded = start('embedded', ['serve', ...local], { ...base, AETN_STORE_BACKEND: 'lmdb', AETN_STORE_DIR: join(dir, 'store'), AETN_KAFKA_BROKERS: '' });
    const addr = async (p: Proc) => (await waitOut(p, /listening on (\S+)/))[1]!;
    const [a1, a2, a0] = await Promise.all([addr(serve1), addr(serve2), addr(embedded)]);
    const [rt1Line] = await Promise.all([waitOut(rt1, /aetn realtime: consuming.*metrics (\S+)/), waitOut(rt2, /aetn realtime: consuming/)]);
    const rt1Metrics = rt1Line[1]!;
    log(`replicas ${a1} ${a2}, embedded ${a0}; consumers running`);

    const replicas = new ReplicaClient([a1, a2], KEY);
    const writer = new ReplicaClient([a1, a2], 'writer-key-0001');
    const reference = new ReplicaClient([a0, a0], KEY);

    // The embedded mode's vectors: exact search over them is the recall baseline.
    const lmdb = EmbeddingStore.open(join(dir, 'store'), { create: false });
    const all = [...lmdb.iterate(featureId)].map((e) => ({ userId: e.userId, vector: Float32Array.from(e.vector) }));
    await lmdb.close();
    expect(all.length).toBe(USERS);
    const queries = all.filter((_, i) => i % 6 === 0).map((e) => e.userId); // 100 users
    const seedsOf = (j: number) => all.filter((_, i) => i % 7 === j).slice(0, 60).map((e) => e.userId);

    // The held-out week as traffic, with new timestamps (as `aetn start` replays it).
    const { loadDatasetSpec, readRecords } = await import('../../src/data/raw.js');
    const spec = loadDatasetSpec(join(dir, 'raw'));
    const events: PlainAppEvent[] = [];
    for (const rec of readRecords<{ eventId: string; userId: string; pkg: string; type: 1 | 2; timeMs: number }>(spec.paths.heldOut!, 'events', { lines: 0, ok: 0, bad: 0 })) {
      if (rec.ok) events.push({ eventId: rec.row.eventId, userId: rec.row.userId, packageName: rec.row.pkg, type: rec.row.type, timestampMs: 0 });
    }
    expect(events.length).toBeGreaterThan(500);
    const accepted = new Map<string, number>();
    let rejected = 0;
    let sent = 0;
    const neighbourAnswers = new Map<string, string[]>();
    const lookalikes: string[][] = [];
    const BATCH = 40;
    const batches = Math.ceil(events.length / BATCH);
    const killAt = Math.floor(batches / 3);
    let killedAtMs = 0;
    for (let b = 0; b < batches; b++) {
      if (b === killAt) {
        // Right after a burst of events: the killed consumer then likely holds written chunks whose
        // Kafka offsets are not committed yet (commits go out once a second), which the survivor
        // receives again (reported as redeliveredSkipped).
        for (let x = 0; x < 3; x++, sent += BATCH) await writer.publish(events.slice(b * BATCH, (b + 1) * BATCH).map((e) => ({ ...e, eventId: `${e.eventId}-burst${x}`, timestampMs: Date.now() }))).then((r) => {
          const bad = new Set(r.rejected.map((y) => y.index));
          rejected += bad.size;
          events.slice(b * BATCH, (b + 1) * BATCH).forEach((e, i) => bad.has(i) || accepted.set(e.userId, (accepted.get(e.userId) ?? 0) + 1));
        });
        await new Promise((r) => setTimeout(r, 400));
        log(`killing (SIGKILL) Cassandra node 3, replica serve2 and consumer realtime2 after ${sent} events`);
        killedAtMs = Date.now();
        await Promise.all([cluster!.killNode(3), (serve2.child.kill('SIGKILL'), serve2.exited), (rt2.child.kill('SIGKILL'), rt2.exited)]);
      }
      const now = Date.now();
      const batch = events.slice(b * BATCH, (b + 1) * BATCH).map((e) => ({ ...e, timestampMs: now }));
      sent += batch.length;
      const r = await writer.publish(batch).catch(() => undefined);
      if (r) {
        const bad = new Set(r.rejected.map((x) => x.index));
        rejected += bad.size;
        batch.forEach((e, i) => bad.has(i) || accepted.set(e.userId, (accepted.get(e.userId) ?? 0) + 1));
      }
      // Reads beside the writes: a few neighbour calls per batch, a look-alike now and then.
      for (let q = 0; q < 3; q++) {
        const u = queries[(b * 3 + q) % queries.length]!;
        const res = await replicas.neighbors(u, 10, EF).catch(() => undefined);
        if (res && !neighbourAnswers.has(u)) neighbourAnswers.set(u, res.neighbors.map((n) => n.userId));
      }
      if (b % Math.max(1, Math.floor(batches / 6)) === 0) {
        const got = await replicas.lookalike(seedsOf(lookalikes.length % 7), 100, `lookalike-${lookalikes.length}`).catch(() => undefined);
        if (got) lookalikes.push(got);
      }
    }
    const totalAccepted = [...accepted.values()].reduce((s, n) => s + n, 0);
    log(`traffic done: ${sent} events sent (${totalAccepted} accepted, ${rejected} rejected at the edge), ${replicas.counts.calls + writer.counts.calls} calls`);

    // Every accepted event applied exactly once, by whichever consumer owned the user's partition.
    const store = await CassandraStore.open({ contactPoints: cluster!.contactPoints.slice(0, 2), localDataCenter: 'datacenter1', keyspace: 'aetn', replicationFactor: 3, consistency: 'localQuorum', requestTimeoutMs: 30_000 }, { create: false });
    const states = new CassandraStates(store.client, 'aetn');
    const users = [...accepted.keys()];
    const sumApplied = async () => [...(await states.read(users)).values()].reduce((s, r) => s + r.state.applied, 0);
    const deadline = Date.now() + 180_000;
    let applied = 0;
    while ((applied = await sumApplied()) < totalAccepted && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1000));
    const caughtUpS = (Date.now() - killedAtMs) / 1000;
    await new Promise((r) => setTimeout(r, 3000)); // room for a wrongly repeated delivery to show
    const rows = await states.read(users);
    let wrongUsers = 0;
    for (const [u, n] of accepted) if (rows.get(u)?.state.applied !== n) wrongUsers++;
    log(`states: ${applied} of ${totalAccepted} events applied ${caughtUpS.toFixed(0)} s after the kills; ${wrongUsers} of ${users.length} users with a wrong count`);
    expect(wrongUsers).toBe(0);
    expect(await sumApplied()).toBe(totalAccepted);

    // The short-term vectors the surviving replica serves are the consumers' rows.
    const sample = users.slice(0, 20);
    let sameShort = 0;
    for (const u of sample) {
      const part = await replicas.shortVector(u);
      const row = rows.get(u)!;
      if (part?.present && part.values.length === row.vector.length && part.values.every((x, i) => Math.abs(x - row.vector[i]!) <= 1e-6 * Math.max(1, Math.abs(row.vector[i]!)))) sameShort++;
    }
    await store.close();
    // Events the surviving consumer received again (delivered before to the killed one, whose
    // offsets Kafka had not committed) and skipped by their users' applied offsets.
    const metrics = await (await fetch(rt1Metrics)).text();
    const replaySkipped = Number(/^aetn_stream_replay_skipped_total (\S+)$/m.exec(metrics)?.[1] ?? 'NaN');

    // Neighbours and look-alikes: the same answers as the embedded mode, the same recall.
    let same = 0;
    let hitsReplica = 0;
    let hitsEmbedded = 0;
    const byId = new Map(all.map((e) => [e.userId, e.vector]));
    for (const [u, ids] of neighbourAnswers) {
      const ref = (await reference.neighbors(u, 10, EF)).neighbors.map((n) => n.userId);
      if (JSON.stringify(ref) === JSON.stringify(ids)) same++;
      const exact = new Set(cosineTopK(byId.get(u)!, all, 10, u));
      hitsReplica += ids.filter((x) => exact.has(x)).length;
      hitsEmbedded += ref.filter((x) => exact.has(x)).length;
    }
    let sameLookalike = 0;
    for (let j = 0; j < lookalikes.length; j++) {
      const ref = await reference.lookalike(seedsOf(j % 7), 100, `lookalike-${j}`);
      if (JSON.stringify(ref) === JSON.stringify(lookalikes[j])) sameLookalike++;
    }
    const n = neighbourAnswers.size;
    const c = { calls: replicas.counts.calls + writer.counts.calls, retried: replicas.counts.retried + writer.counts.retried, failed: replicas.counts.failed + writer.counts.failed };
    const summary = {
      calls: c,
      errors: [...replicas.counts.errors, ...writer.counts.errors].slice(0, 5),
      events: { sent, accepted: totalAccepted, rejected, applied, usersWrong: wrongUsers, redeliveredSkipped: replaySkipped, caughtUpAfterKillS: Math.round(caughtUpS) },
      shortTermServedEqualRows: `${sameShort}/${sample.length}`,
      neighbours: { queries: n, ef: EF, sameAsEmbedded: same, recallReplica: hitsReplica / (n * 10), recallEmbedded: hitsEmbedded / (n * 10) },
      lookalike: { calls: lookalikes.length, sameAsEmbedded: sameLookalike },
      loadAvg1m: Number(loadavg()[0]!.toFixed(1)),
    };
    log(`summary ${JSON.stringify(summary)}`);
    replicas.close();
    writer.close();
    reference.close();

    expect(c.failed, summary.errors.join('\n')).toBe(0);
    expect(c.retried).toBeGreaterThan(0); // the killed replica was called, and the retry carried it
    expect(sameShort).toBe(sample.length);
    expect(n).toBeGreaterThanOrEqual(90);
    expect(same).toBe(n);
    expect(hitsReplica).toBe(hitsEmbedded);
    expect(lookalikes.length).toBeGreaterThanOrEqual(5);
    expect(sameLookalike).toBe(lookalikes.length);
    // The survivors stayed up.
    for (const p of [serve1, rt1, embedded]) expect(p.child.exitCode, `${p.name}:\n${p.out.slice(-2000)}`).toBeNull();
  }, 1_200_000);
});
