// `aetn start --data DIR` on a small retention-only dataset (installed-app lists, no events), as a
// new user brings it: every batch stage but the realtime head runs, the head is skipped with a
// notice, and the long-term vectors are served without it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { tmp, writeRaw, type App } from '../data/helpers.js';
import { openPrepared } from '../../src/data/prepared.js';
import { createClient } from '../../src/serve/client.js';
import { AudienceService } from '../../src/gen/aetn/v1/audience_pb.js';
import { UserVectorService, VectorView } from '../../src/gen/aetn/v1/user_vector_pb.js';

const exec = promisify(execFile);
const root = tmp('aetn-start-ret-');
const raw = join(root, 'raw');
const dir = join(root, 'work');
const env = { ...process.env, AETN_PROGRESS: '0', AETN_LOG_LEVEL: 'warn' };
const common = ['bin/aetn.js', 'start', '--dir', dir, '--data', raw, '--size', 'tiny', '--epochs', '1', '--port', '0', '--metrics-port', '0'];
let proc: ChildProcess | undefined;

/**
 * 300 users over 40 apps in 4 categories: each user holds 3-7 apps, mostly of one category; and 2
 * users whose only app nobody else has (below any threshold >= 2: they get no vector).
 */
function retentionOnly(): void {
  const apps: App[] = Array.from({ length: 40 }, (_, i) => ({ id: `a${i}`, packages: [`com.x.a${i}`], category: `cat${i % 4}` }));
  apps.push({ id: 'solo1', packages: ['com.solo.one'], category: 'cat0' }, { id: 'solo2', packages: ['com.solo.two'], category: 'cat1' });
  let s = 7;
  const rnd = (k: number) => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 8) % k;
  const installed: [string, string[]][] = Array.from({ length: 300 }, (_, u) => {
    const own = new Set<number>();
    const n = 3 + rnd(5);
    while (own.size < n) own.add(rnd(5) === 0 ? rnd(40) : (u % 4) + 4 * rnd(10));
    return [`u${u}`, [...own].map((a) => `com.x.a${a}`)];
  });
  installed.push(['lone1', ['com.solo.one']], ['lone2', ['com.solo.two']]);
  writeRaw(raw, { apps, installed });
}

beforeAll(() => retentionOnly());
afterAll(async () => {
  if (proc && proc.exitCode === null) {
    const exited = new Promise((r) => proc!.once('exit', r));
    proc.kill('SIGINT');
    await exited;
  }
});

describe('aetn start on retention-only data', () => {
  it('--build-only: skips the realtime head with a notice and builds the long-term vectors', async () => {
    const { stdout, stderr } = await exec(process.execPath, [...common, '--build-only'], { env, timeout: 300_000 });
    expect(stderr).toMatch(/train the realtime head: skipped, the data has no install events in the vocabulary \(retention only/);
    expect(stderr).not.toContain('✔ train the realtime head');
    for (const stage of ['prepare', 'train AETN', 'embed', 'index']) expect(stderr).toContain(`✔ ${stage}`);
    expect(existsSync(join(dir, 'models', 'head-tiny', 'manifest.json'))).toBe(false);
    const ds = await openPrepared(join(dir, 'prepared'));
    expect(ds.manifest.counts['kept.installs'] ?? 0).toBe(0);
    expect(ds.manifest.minInstallsSource).toBe('derived');
    expect(ds.manifest.minInstalls).toBe(2);
    expect(ds.manifest.numUsers).toBe(300);
    // prepare and embed both say who is left without a vector.
    expect(ds.manifest.usersWithoutVector).toBe(2);
    expect(stdout).toMatch(/min installs 2 \(derived from the number of users/);
    expect(stdout).toMatch(/users without a vector: 2 of 302 \(none of their apps/);
    expect(stdout).toMatch(/embedded 300 users[^\n]*\nusers without a vector: 2 of 302 in the prepared data/);
  }, 300_000);

  it('serves the long-term vectors and audiences without a head', async () => {
    let stdout = '';
    let stderr = '';
    proc = spawn(process.execPath, [...common, '--no-replay'], { env });
    proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    await new Promise<void>((resolve, reject) => {
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
    // Everything was built by the first run: nothing is retrained.
    expect(stderr).not.toContain('✔ train AETN');
    expect(stderr).toContain('train the realtime head: skipped');
    expect(stdout).toMatch(/realtime head\s+none \(the data has no install events/);
    expect(stdout).toMatch(/realtime ingestion: off/);
    const address = /gRPC\s+(\S+)/.exec(stdout)![1]!;
    const apiKey = readFileSync(join(dir, 'api-key.txt'), 'utf8').trim();
    const uv = createClient(UserVectorService, address, { apiKey });
    const au = createClient(AudienceService, address, { apiKey });
    try {
      const r = await uv.getUserVector({ userId: 'u5', view: VectorView.ALL });
      expect(r.user?.found).toBe(true);
      expect(r.user?.longTerm?.present).toBe(true);
      expect(r.user?.longTerm?.values.length).toBe(16);
      expect(r.user?.shortTerm?.present ?? false).toBe(false);
      const n = await au.searchNeighbors({ query: { case: 'userId', value: 'u5' }, k: 5 });
      expect(n.neighbors.length).toBe(5);
    } finally {
      uv.close();
      au.close();
    }
    const exited = new Promise<number | null>((r) => proc!.once('exit', (code) => r(code)));
    proc.kill('SIGINT');
    expect(await exited).toBe(0);
  }, 300_000);
});
