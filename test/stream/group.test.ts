// Realtime consumers as one consumer group with shared state, across processes: two consumer
// processes share one LmdbSharedStates; one is killed (-9) mid-stream right after a durable write
// and before its Kafka commit, the other takes its partitions over and continues from the shared
// rows. Every user's event count must come out exact: nothing lost, nothing applied twice (the
// window is kept smaller than a redelivery, so dedupe by event id alone could not hide a repeat).
// On Cassandra the node is also frozen for 15 s right after the kill, so the survivor's takeover
// meets request timeouts, an eviction from the group and a rejoin while its units still read
// (the interleaving that once lost events: test/stream/shared-processor.test.ts pins it exactly).
import { describe, expect, inject, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createKafka } from '../../src/stream/kafka.js';
import { LmdbSharedStates, type SharedStateStore, type SharedUserRow } from '../../src/stream/shared-state.js';
import { SharedStateProcessor } from '../../src/stream/shared-processor.js';
import { CassandraStates } from '../../src/stream/cassandra-states.js';
import { CassandraStore } from '../../src/store/cassandra.js';
import { CassandraCluster, cassandraAvailable } from '../cassandra/cluster.js';
import { connectProducer, createTopic, expectedWindow, fakeEmbed, fakeHead, makeEvents, produceEvents, SHORT_FEATURE, testVocab, uniqueName, waitFor } from './helpers.js';

const brokers = inject('kafkaBrokers');
const fixture = join(fileURLToPath(new URL('.', import.meta.url)), 'fixtures', 'group-consumer.ts');
const MAX_EVENTS = 2;

interface Member {
  child: ChildProcess;
  lines: Record<string, unknown>[];
  stderr: string;
  exit: Promise<{ code: number | null; signal: string | null }>;
}

function startMember(env: Record<string, string>): Member {
  const child = spawn(process.execPath, ['--import', 'tsx', fixture], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const m: Member = { child, lines: [], stderr: '', exit: new Promise((r) => child.on('exit', (code, signal) => r({ code, signal }))) };
  let buf = '';
  child.stdout!.on('data', (d) => {
    buf += d;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line.startsWith('{')) m.lines.push(JSON.parse(line) as Record<string, unknown>);
    }
  });
  child.stderr!.on('data', (d) => (m.stderr += d));
  return m;
}

describe('shared realtime state: versions', () => {
  it('keeps the newest version of a row: an older write (a zombie) never replaces it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'aetn-shared-'));
    const s = new LmdbSharedStates(dir);
    try {
      const row = (version: number, apps: number[]): SharedUserRow => ({
        state: { userId: 'u1', applied: apps.length, updatedAtMs: 1, events: apps.map((a, i) => ({ app: a, type: 1, timestampMs: i, eventId: `e${a}` })) },
        applied: new Map([[0, version]]),
        vector: new Float32Array([version]),
        version,
      });
      await s.write('f', [row(10, [1, 2])]);
      await s.write('f', [row(7, [1])]); // the zombie's older unit lands late
      const got = (await s.read(['u1'])).get('u1')!;
      expect(got.version).toBe(10);
      expect(got.state.applied).toBe(2);
      expect(got.applied.get(0)).toBe(10);
      expect(Array.from((await s.vectors('f', ['u1', 'u2']))[0]!.vector)).toEqual([10]);
      expect((await s.vectors('f', ['u1']))[0]!.updatedAtMs).toBe(1);
      expect((await s.vectors('f', ['u2']))[0]).toBeUndefined();
    } finally {
      await s.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('skips a redelivered event by its user\'s applied offset, and refuses units without offsets', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'aetn-shared-'));
    const s = new LmdbSharedStates(dir);
    try {
      const p = new SharedStateProcessor({ states: s, head: fakeHead, featureId: SHORT_FEATURE, maxEvents: 1 });
      const ev = (i: number) => ({ eventId: `e${i}`, userId: 'u1', app: i, type: 1 as const, timestampMs: 1000 + i });
      const mark = (last: number) => ({ topic: 't', partition: 3, appliedBefore: -1, lastOffset: last });
      const a = await p.submit({ events: [ev(0), ev(1)], offsets: [5, 6], offset: mark(6) });
      expect(a.applied).toBe(2);
      // A second consumer (its own processor, same store) gets the partition from offset 5 again.
      const q = new SharedStateProcessor({ states: s, head: fakeHead, featureId: SHORT_FEATURE, maxEvents: 1 });
      const b = await q.submit({ events: [ev(0), ev(1), ev(2)], offsets: [5, 6, 7], offset: mark(7) });
      expect(b).toMatchObject({ applied: 1, skipped: 2 });
      const row = (await s.read(['u1'])).get('u1')!;
      expect(row.state.applied).toBe(3);
      expect(row.applied.get(3)).toBe(7);
      await expect(q.submit({ events: [ev(3)] })).rejects.toThrow(/needs its partition and offset/);
    } finally {
      await s.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

interface Backend {
  env: Record<string, string>;
  /** The shared store as the test process reads it (a third process). */
  states: SharedStateStore;
  /** Run right after the kill: a store stall the survivor must ride out (its retries are checked). */
  stall?: () => Promise<void>;
  close(): Promise<void>;
}

/**
 * Two members of one group over one topic, sharing their state through `backend`; one killed -9
 * right after its 4th durable chunk. Checks every user's count, window and vector.
 */
async function killOneMemberMidStream(makeBackend: (dir: string) => Promise<Backend>): Promise<void> {
  const topic = uniqueName('events');
  const groupId = uniqueName('g');
  await createTopic(brokers, topic, 4);
  const dir = mkdtempSync(join(tmpdir(), 'aetn-group-'));
  const backend = await makeBackend(dir);
  const rowsOf = async (ids: string[]) => [...(await backend.states.read(ids)).values()];
  const env = { ...backend.env, AETN_LOG_LEVEL: 'info', BROKERS: brokers, TOPIC: topic, GROUP_ID: groupId, CHUNK_SIZE: '20', MAX_EVENTS: String(MAX_EVENTS) };
  const users = 40;
  const perUser = 20;
  const userIds = Array.from({ length: users }, (_, u) => `u${u}`);
  const events = makeEvents({ users, perUser });
  const doomed = startMember({ ...env, KILL_AFTER_CHUNKS: '4' });
  const survivor = startMember(env);
  const admin = createKafka({ brokers, clientId: 'group-check' }).admin();
  await admin.connect();
  try {
    await waitFor('both members in the group', async () => {
      const g = (await admin.describeGroups([groupId])).groups[0]!;
      return g.state === 'Stable' && g.members.length === 2;
    }, 90_000, 250);
    const producer = await connectProducer(brokers);
    for (let i = 0; i < events.length; i += 100) {
      await produceEvents(producer, topic, events.slice(i, i + 100));
      await new Promise((r) => setTimeout(r, 300)); // a stream, not one backlog
    }
    await producer.disconnect();

    const killed = await Promise.race([doomed.exit, new Promise<null>((r) => setTimeout(() => r(null), 60_000))]);
    expect(killed?.signal, doomed.stderr).toBe('SIGKILL');
    expect(doomed.lines.filter((l) => 'durable' in l).length).toBe(4);
    await backend.stall?.();
    const total = async () => (await rowsOf(userIds)).reduce((s, r) => s + r.state.applied, 0);
    // Generous: after the kill the group rebalances (session timeout) and, on a 2-core machine running
    // other suites' JVMs beside this one, the survivor's writes can be slow; correctness is checked below.
    let applied = 0;
    try {
      await waitFor('every event applied', async () => {
        // A survivor that died cannot finish: say so at once, with its own words.
        if (survivor.child.exitCode !== null || survivor.child.signalCode !== null) throw new Error(`the surviving member exited (${survivor.child.exitCode ?? survivor.child.signalCode}) with ${applied} of ${events.length} events applied`);
        applied = await total();
        return applied >= events.length;
      }, 240_000, 250);
    } catch (err) {
      const short = (await rowsOf(userIds)).filter((r) => r.state.applied < perUser).map((r) => `${r.state.userId}:${r.state.applied}/v${r.version}/${JSON.stringify([...r.applied])}`);
      const committed = JSON.stringify((await admin.fetchOffsets({ groupId, topics: [topic] }))[0]?.partitions);
      const ends = JSON.stringify(await admin.fetchTopicOffsets(topic));
      const last = survivor.lines.slice(-60).map((l) => JSON.stringify(l)).join('\n');
      throw new Error(
        `${(err as Error).message}; ${applied} of ${events.length} applied.\nusers short of events (user:applied/version/offsets): ${short.join(' ')}\n` +
          `committed offsets: ${committed}\nends: ${ends}\nsurvivor's last lines:\n${last}\nsurvivor's stderr (tail):\n${survivor.stderr.slice(-6000)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 1500)); // room for any wrongly repeated delivery to show
    survivor.child.kill('SIGTERM');
    const end = await survivor.exit;
    expect(end.code, survivor.stderr).toBe(0);

    const vocab = testVocab();
    const rows = new Map((await rowsOf(userIds)).map((r) => [r.state.userId, r]));
    expect(rows.size).toBe(users);
    for (const u of userIds) {
      const r = rows.get(u)!;
      expect(r.state.applied, `user ${u}`).toBe(perUser);
      const want = expectedWindow(events, u, vocab, MAX_EVENTS);
      expect(r.state.events).toEqual(want);
      expect(Array.from(r.vector)).toEqual(Array.from(fakeEmbed({ events: want })));
    }
    expect(await total()).toBe(events.length);
    // The serving read of the short-term vectors: the rows' vectors, with their time of change.
    const served = await backend.states.vectors(SHORT_FEATURE, userIds);
    for (let i = 0; i < users; i++) {
      expect(Array.from(served[i]!.vector)).toEqual(Array.from(rows.get(userIds[i]!)!.vector));
      expect(served[i]!.updatedAtMs).toBe(rows.get(userIds[i]!)!.state.updatedAtMs);
    }
    expect(await backend.states.vectors('another-feature', userIds.slice(0, 1))).toEqual([undefined]);
    const last = survivor.lines.find((l) => 'stats' in l)!;
    const stats = last.stats as { applied: number; skipped: number };
    // The survivor received the killed member's unacknowledged chunks again and skipped them.
    expect(stats.skipped).toBeGreaterThan(0);
    // Through a stall, the survivor's reads and writes timed out and were retried, not given up.
    if (backend.stall) expect(last.storeRetries, survivor.stderr.slice(-4000)).toBeGreaterThan(0);
  } finally {
    for (const m of [doomed, survivor]) if (m.child.exitCode === null && m.child.signalCode === null) m.child.kill('SIGKILL');
    await admin.disconnect();
    await backend.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

describe.skipIf(!brokers)('realtime consumer group across processes, shared state (real Kafka)', () => {
  it('LMDB shared by the processes of one host: one member killed mid-stream, the other continues from the shared rows, every event applied once', async () => {
    await killOneMemberMidStream(async (dir) => {
      const stateDir = join(dir, 'states');
      const reader = new LmdbSharedStates(stateDir);
      return {
        env: { STATE_DIR: stateDir },
        states: reader,
        close: () => reader.close(),
      };
    });
  }, 420_000);

  it.skipIf(!cassandraAvailable().ok)('Cassandra states table (a real node): one member killed mid-stream, every event applied once', async () => {
    const cluster = await CassandraCluster.start({ nodes: 1 });
    try {
      await killOneMemberMidStream(async () => {
        const keyspace = uniqueName('g').replace('-', '_');
        const store = await CassandraStore.open({ contactPoints: cluster.contactPoints, localDataCenter: 'datacenter1', keyspace, replicationFactor: 1, consistency: 'localQuorum', requestTimeoutMs: 30_000 });
        const reader = new CassandraStates(store.client, keyspace);
        return {
          // Requests time out after 3 s; the members retry transient failures for up to 90 s.
          env: { CASSANDRA: cluster.contactPoints.join(','), KEYSPACE: keyspace, READ_TIMEOUT_MS: '3000', STORE_RETRY_MS: '90000' },
          states: reader,
          // The node freezes for 15 s right after the kill (a long GC pause, a starved host): the
          // survivor takes the dead member's partitions over during it, its requests time out, it
          // misses heartbeats and is evicted from the group, and it rejoins while units still read.
          stall: () => cluster.pauseNode(1, 15_000),
          close: () => store.close(),
        };
      });
    } finally {
      await cluster.stop();
    }
  }, 600_000);
});
