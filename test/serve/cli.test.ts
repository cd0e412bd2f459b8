// `aetn serve` as a process: starts on a store, answers, exposes /metrics, drains on SIGTERM and
// exits 0; refuses a missing store with a clear message.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { once } from 'node:events';
import { createClient } from '../../src/serve/client.js';
import { UserVectorService } from '../../src/gen/aetn/v1/user_vector_pb.js';
import { REPO_ROOT } from '../tools/go-tools.js';
import { buildFixture, KEYS, type Fixture } from './fixture.js';

let fx: Fixture;
beforeAll(async () => {
  fx = await buildFixture({ users: 300 });
});
afterAll(() => fx?.cleanup());

function aetn(args: string[], env: Record<string, string> = {}) {
  return spawn(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'services/cli/main.ts'), ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, AETN_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

it('serves, exposes metrics, and drains on SIGTERM', async () => {
  const p = aetn(['serve', '--store', fx.storeDir, '--port', '0', '--metrics-port', '0'], { AETN_API_KEYS: `${KEYS.ranker}=vectors:read` });
  let out = '';
  let err = '';
  p.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const line = await new Promise<string>((resolve, reject) => {
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out);
    });
    p.once('exit', (code) => reject(new Error(`exited ${code}: ${err}`)));
  });
  const m = /listening on (\S+) \(plaintext, auth on \(1 keys\), metrics (\S+)\)/.exec(line);
  expect(m, line).not.toBeNull();
  const c = createClient(UserVectorService, m![1]!, { apiKey: KEYS.ranker });
  const res = await c.getUserVector({ userId: fx.users[0]! });
  expect(res.user!.found).toBe(true);
  c.close();
  const metrics = await (await fetch(m![2]!)).text();
  expect(metrics).toMatch(/aetn_grpc_requests_total\{method="UserVectorService\/GetUserVector",code="OK"\} 1/);
  expect(err).not.toContain(KEYS.ranker);
  p.kill('SIGTERM');
  const [code] = await once(p, 'exit');
  expect(code).toBe(0);
});

it('refuses a directory that is not a store, and shows help', async () => {
  const p = aetn(['serve', '--store', join(fx.dir, 'missing'), '--port', '0', '--metrics-port', 'off']);
  let err = '';
  p.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const [code] = await once(p, 'exit');
  expect(code).toBe(2);
  expect(err).toContain('no embedding store at');
  const h = aetn(['serve', '--help']);
  let help = '';
  h.stdout.on('data', (d: Buffer) => (help += d.toString()));
  await once(h, 'exit');
  expect(help).toContain('--tls-cert');
  expect(help).toContain('grpcurl');
});
