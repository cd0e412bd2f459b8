// `aetn start` end to end: a fresh directory, every stage built (tiny size), serving, and the
// printed grpcurl examples run verbatim with grpcurl (a client we did not write).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess, execFile } from 'node:child_process';
import { mkdtempSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ensureGoTool } from '../tools/go-tools.js';
import { openPrepared } from '../../src/data/prepared.js';

const exec = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'aetn-start-'));
let proc: ChildProcess | undefined;
let stdout = '';
let stderr = '';
let grpcurl = '';

function startSystem(extra: string[] = []): Promise<void> {
  proc = spawn(
    process.execPath,
    ['bin/aetn.js', 'start', '--dir', dir, '--users', '800', '--epochs', '1', '--head-epochs', '1', '--size', 'tiny', '--port', '0', '--metrics-port', '0', ...extra],
    { env: { ...process.env, AETN_PROGRESS: '0', AETN_LOG_LEVEL: 'warn' } },
  );
  proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setInterval(() => {
      if (stdout.includes('Ctrl-C stops everything')) {
        clearInterval(timer);
        resolve();
      }
    }, 200);
    proc!.once('exit', (code) => {
      clearInterval(timer);
      reject(new Error(`aetn start exited with ${code} before serving:\n${stderr.slice(-3000)}`));
    });
  });
}

beforeAll(async () => {
  grpcurl = await ensureGoTool('grpcurl');
  // The first run without the held-out replay, so the EventService test sees untouched users.
  await startSystem(['--no-replay']);
}, 600_000);

afterAll(async () => {
  if (proc && proc.exitCode === null) {
    const exited = new Promise((r) => proc!.once('exit', r));
    proc.kill('SIGINT');
    await exited;
  }
});

describe('aetn start', () => {
  it('builds every stage and prints where everything is', () => {
    for (const what of ['raw data', 'prepared data', 'AETN model', 'realtime head', 'store + index', 'gRPC', 'metrics']) expect(stdout).toContain(what);
    for (const f of ['raw/dataset.json', 'prepared/manifest.json', 'models/aetn-tiny/manifest.json', 'models/head-tiny/manifest.json', 'store/aetn-store.json', 'api-key.txt']) {
      expect(existsSync(join(dir, f)), f).toBe(true);
    }
    for (const stage of ['generate a demo world', 'prepare', 'train AETN', 'train the realtime head', 'embed', 'index']) expect(stderr).toContain(`✔ ${stage}`);
  });

  it('the printed grpcurl examples return real answers', async () => {
    const lines = stdout.split('\n').filter((l) => l.startsWith('grpcurl '));
    expect(lines.length).toBe(5);
    const outputs: string[] = [];
    for (const line of lines) {
      // The printed commands are shell lines; run them through the shell exactly as a person would paste them.
      const { stdout: out } = await exec('bash', ['-c', line.replace(/^grpcurl /, `${grpcurl} `)], { timeout: 60_000 });
      outputs.push(out);
    }
    const [vector, neighbors, lookalike, health, list] = outputs as [string, string, string, string, string];
    const v = JSON.parse(vector) as { user: { found: boolean; longTerm: { present: boolean; values: number[] } } };
    expect(v.user.found).toBe(true);
    expect(v.user.longTerm.present).toBe(true);
    expect(v.user.longTerm.values.length).toBe(16);
    const n = JSON.parse(neighbors) as { neighbors: { userId: string; score: number }[] };
    expect(n.neighbors.length).toBe(10);
    // ExtendLookalike streams chunks then a summary: several JSON documents.
    expect(lookalike).toMatch(/"users"/);
    expect(lookalike).toMatch(/"seedsUsed": [1-9]/);
    expect(health).toContain('SERVING');
    expect(list).toContain('aetn.v1.UserVectorService');
    expect(list).toContain('aetn.v1.AudienceService');
  });

  it('events published through EventService change the short-term vector (grpcurl, client streaming)', async () => {
    const address = /gRPC\s+(\S+)/.exec(stdout)![1]!;
    const key = /x-api-key: (demo-[0-9a-f]+)/.exec(stdout)![1]!;
    const call = async (method: string, body: unknown): Promise<string> =>
      (await exec(grpcurl, ['-plaintext', '-H', `x-api-key: ${key}`, '-d', typeof body === 'string' ? body : JSON.stringify(body), address, method], { timeout: 60_000 })).stdout;
    const ds = await openPrepared(join(dir, 'prepared'));
    let user = '';
    for await (const ex of ds.examples({ shard: 1 })) {
      user = ex.userId;
      break;
    }
    const shortOf = async () => {
      const r = JSON.parse(await call('aetn.v1.UserVectorService/GetUserVector', { user_id: user, view: 'VECTOR_VIEW_ALL' })) as { user: { shortTerm?: { present?: boolean; values?: number[] } } };
      return r.user.shortTerm?.present ? r.user.shortTerm.values! : null;
    };
    expect(await shortOf()).toBeNull();
    const now = Date.now();
    const events = (from: number, n: number) =>
      ds.vocab.apps.slice(from, from + n).map((a, i) => ({ eventId: `t-${from + i}`, userId: user, packageName: a.packages[0], type: 'APP_EVENT_TYPE_INSTALL', timestampMs: String(now - 60_000 + i) }));
    // Client streaming: two request messages in one call.
    const body = [{ events: events(0, 2) }, { events: events(2, 1) }].map((m) => JSON.stringify(m)).join('\n');
    const ack1 = JSON.parse(await call('aetn.v1.EventService/PublishEvents', body)) as { accepted?: number; duplicates?: number };
    expect(ack1.accepted).toBe(3);
    // The first short-term vector ever written makes the head's feature the default short-term
    // feature at the server's next registry poll (2 s); later writes are visible at once.
    let v1 = await shortOf();
    for (let i = 0; i < 50 && v1 === null; i++) {
      await new Promise((r) => setTimeout(r, 200));
      v1 = await shortOf();
    }
    expect(v1).not.toBeNull();
    const ack2 = JSON.parse(await call('aetn.v1.EventService/PublishEvents', { events: events(40, 3) })) as { accepted?: number };
    expect(ack2.accepted).toBe(3);
    const v2 = await shortOf();
    expect(v2).not.toEqual(v1);
    // A replay of acknowledged events is idempotent: counted as duplicates, the vector stays.
    const ack3 = JSON.parse(await call('aetn.v1.EventService/PublishEvents', { events: events(40, 3) })) as { duplicates?: number };
    expect(ack3.duplicates).toBe(3);
    expect(await shortOf()).toEqual(v2);
  });

  it('a re-run reuses what is built, replays the held-out week through EventService, and Ctrl-C stops cleanly', async () => {
    const exited = new Promise<number | null>((r) => proc!.once('exit', (code) => r(code)));
    proc!.kill('SIGINT');
    expect(await exited).toBe(0);
    stdout = '';
    stderr = '';
    const t0 = performance.now();
    await startSystem();
    expect(stderr).not.toContain('✔ train AETN');
    expect(stderr).not.toContain('✔ embed');
    expect(performance.now() - t0).toBeLessThan(60_000);
    // The demo traffic: the held-out week through EventService, durable before each ack.
    for (let i = 0; i < 300 && !stdout.includes('replayed '); i++) await new Promise((r) => setTimeout(r, 200));
    const m = /replayed (\d+) held-out-week events through EventService: (\d+) accepted, (\d+) duplicates \(already applied\), (\d+) rejected/.exec(stdout);
    expect(m, stdout).not.toBeNull();
    const [sent, accepted, duplicates, rejected] = m!.slice(1).map(Number) as [number, number, number, number];
    // Every valid held-out event was sent once, and each came back as exactly one outcome.
    const { loadDatasetSpec, readRecords } = await import('../../src/data/raw.js');
    const spec = loadDatasetSpec(join(dir, 'raw'));
    let heldOut = 0;
    for (const rec of readRecords(spec.paths.heldOut!, 'events', { lines: 0, ok: 0, bad: 0 })) if (rec.ok) heldOut++;
    expect(heldOut).toBeGreaterThan(0);
    expect(sent).toBe(heldOut);
    expect(accepted + duplicates + rejected).toBe(sent);
    // The first run's replay was cut short by Ctrl-C: this one applies the rest, and what the first
    // applied comes back as duplicates.
    expect(accepted).toBeGreaterThan(0);
  });
});
