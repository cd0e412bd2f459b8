// End to end through the compiled CLI (the test setup builds dist/ first): `aetn produce` replays a raw
// dataset into Kafka, `aetn realtime` (a separate process with a real, tiny realtime head) writes
// short-term vectors, serves /metrics, and on SIGTERM commits and exits 0.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { initBackend } from '../../src/model/backend.js';
import { RealtimeHead, defaultHeadConfig } from '../../src/model/realtime-head.js';
import { saveHead } from '../../src/model/head-checkpoint.js';
import { loadHead } from '../../src/model/head-forward.js';
import type { Vocabulary } from '../../src/data/types.js';
import { EmbeddingStore } from '../../src/store/store.js';
import { StateDb } from '../../src/stream/state.js';
import { createKafka } from '../../src/stream/kafka.js';
import { uniqueName, waitFor } from './helpers.js';

const brokers = inject('kafkaBrokers');
const root = join(import.meta.dirname, '..', '..');
const bin = join(root, 'bin', 'aetn.js');
const env = { ...process.env, AETN_PROGRESS: '0', AETN_LOG_LEVEL: 'warn' };

function aetn(args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', env, timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const APPS = 12;
const USERS = 20;
const PER_USER = 6;
const REF = Date.UTC(2026, 0, 31);

/** A raw dataset in the data part's format: catalog, history events (and a bad line), held-out week. */
function writeDataset(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const catalog = ['app_id,packages,category,preinstalled,universal'];
  for (let a = 0; a < APPS; a++) catalog.push(`app${a},com.t.app${a}|com.t.app${a}.lite,cat${a % 3},false,false`);
  const events = ['event_id,user_id,package,type,timestamp'];
  for (let u = 0; u < USERS; u++) {
    for (let i = 0; i < PER_USER; i++) {
      const a = (u + i * 5) % APPS;
      events.push(`h-${u}-${i},user${u},com.t.app${a}${i % 2 ? '.lite' : ''},${i % 3 === 2 ? 'uninstall' : 'install'},${REF - (PER_USER - i) * 3600_000}`);
    }
  }
  events.push('broken,line'); // malformed: skipped and counted, not sent
  const held = ['event_id,user_id,package,type,timestamp', `w-1,user1,com.t.app3,install,${REF + 86400_000}`];
  writeFileSync(join(dir, 'catalog.csv'), catalog.join('\n') + '\n');
  writeFileSync(join(dir, 'events.csv'), events.join('\n') + '\n');
  writeFileSync(join(dir, 'heldout.csv'), held.join('\n') + '\n');
  writeFileSync(join(dir, 'dataset.json'), JSON.stringify({ format: 'aetn-raw/1', referenceDate: '2026-01-31', catalog: 'catalog.csv', events: 'events.csv', heldOut: 'heldout.csv' }));
}

describe.skipIf(!brokers)('aetn produce + aetn realtime (compiled CLI, real Kafka, real head)', () => {
  let work: string;
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'aetn-stream-cli-'));
  }, 300_000);
  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('--help works without Kafka', () => {
    const r = aetn(['produce', '--help']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/--rate <n>/);
    expect(aetn(['realtime', '--help']).out).toMatch(/--head <model dir>/);
  });

  it('refuses bad arguments with a clear message', () => {
    const data = join(work, 'nodata');
    const r = aetn(['produce', '--data', data, '--brokers', brokers]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/input directory not found/);
    expect(aetn(['produce', '--data', data, '--brokers', 'nohostport']).err).toMatch(/bad Kafka broker address/);
    expect(aetn(['realtime', '--store', join(work, 's0'), '--brokers', brokers]).err).toMatch(/no realtime head/);
  });

  it('replays a dataset and the realtime process turns it into short-term vectors', async () => {
    const data = join(work, 'data');
    writeDataset(data);
    const topic = uniqueName('cli-events');
    const group = uniqueName('cli-g');
    const storeDir = join(work, 'store');
    const headDir = join(work, 'head');

    // A tiny real head over the dataset's vocabulary (random frozen app matrix: wiring, not quality).
    await initBackend('cpu');
    const vocab: Vocabulary = {
      hash: 'cli-test-vocab',
      categories: ['cat0', 'cat1', 'cat2'],
      apps: Array.from({ length: APPS }, (_, a) => ({ index: a, appId: `app${a}`, category: a % 3, packages: [`com.t.app${a}`, `com.t.app${a}.lite`] })),
    };
    const appDim = 8;
    const mat = Float32Array.from({ length: APPS * appDim }, (_, i) => Math.sin(i * 1.7));
    const cfg = defaultHeadConfig({ numApps: APPS, appDim, dModel: 16, heads: 2, dFf: 32, maxEvents: 8, outDim: 8, gapBuckets: 12, recentK: 2 });
    const head = new RealtimeHead(cfg, mat, 5);
    const manifest = await saveHead(headDir, head, { baseFeatureId: 'aetn-cli-test', vocab });
    head.dispose?.();

    const rt = spawn(process.execPath, [bin, 'realtime', '--store', storeDir, '--brokers', brokers, '--head', headDir, '--topic', topic, '--dlq-topic', `${topic}.dlq`, '--group', group, '--backend', 'cpu', '--metrics-port', '0', '--partitions', '3'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    rt.stdout.on('data', (d) => (out += d));
    rt.stderr.on('data', (d) => (err += d));
    const exited = new Promise<{ code: number | null; signal: string | null }>((r) => rt.on('exit', (code, signal) => r({ code, signal })));
    try {
      await waitFor('realtime to start', () => /aetn realtime: consuming/.test(out) || rt.exitCode !== null, 90_000);
      expect(rt.exitCode, err).toBeNull();
      expect(out).toContain(`as feature ${manifest.featureId}`);

      const p = aetn(['produce', '--data', data, '--brokers', brokers, '--topic', topic, '--rate', '0']);
      expect(p.code, p.err).toBe(0);
      expect(p.out).toMatch(new RegExp(`produced ${USERS * PER_USER} events .* to ${topic}`));
      expect(p.out).toMatch(/skipped malformed records: 1/);
      const h = aetn(['produce', '--data', data, '--brokers', brokers, '--topic', topic, '--heldout', '--rate', '50']);
      expect(h.out).toMatch(/produced 1 events/);

      const store = EmbeddingStore.open(storeDir, { create: false });
      try {
        await waitFor('vectors of every user', () => store.getFeature(manifest.featureId) !== undefined && store.count(manifest.featureId) === USERS && (new StateDb(store.root).get('user1')?.applied ?? 0) === PER_USER + 1, 60_000);
        const feat = store.getFeature(manifest.featureId)!;
        expect(feat.namespace).toBe('short');
        expect(feat.dim).toBe(8);
        // The stored vector is what the head gives for the stored state.
        const loaded = await loadHead(headDir, { backend: 'cpu' });
        const db = new StateDb(store.root);
        const st = db.get('user3')!;
        expect(st.applied).toBe(PER_USER);
        const stored = store.get(manifest.featureId, 'user3')!;
        const again = loaded.embed([st], stored.updatedAtMs)[0]!;
        for (let j = 0; j < 8; j++) expect(stored.vector[j]).toBeCloseTo(again[j]!, 4);
        loaded.dispose();
      } finally {
        await store.close();
      }

      const url = /metrics (http:\/\/\S+)/.exec(out)?.[1];
      expect(url).toBeDefined();
      const metrics = await (await fetch(url!)).text();
      expect(metrics).toMatch(new RegExp(`aetn_stream_events_total{result="applied"} ${USERS * PER_USER + 1}`));
      expect(metrics).toMatch(/aetn_stream_freshness_seconds_count \d+/);

      rt.kill('SIGTERM');
      const ex = await exited;
      expect(ex.code, err).toBe(0);
      // Graceful stop committed everything that was applied.
      const admin = createKafka({ brokers, clientId: 'cli-check' }).admin();
      await admin.connect();
      const committed = (await admin.fetchOffsets({ groupId: group, topics: [topic] }))[0]!.partitions.reduce((s, x) => s + Number(x.offset), 0);
      const ends = (await admin.fetchTopicOffsets(topic)).reduce((s, x) => s + Number(x.high), 0);
      await admin.disconnect();
      expect(committed).toBe(ends);
      expect(ends).toBe(USERS * PER_USER + 1);
    } finally {
      if (rt.exitCode === null) rt.kill('SIGKILL');
    }
  });
});
