// Stopping the LMDB serving process releases everything it started: the search pool's worker
// threads are gone after stop(), and the process then ends on its own.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { join } from 'node:path';
import { buildFixture, type Fixture } from './fixture.js';
import { runProcess } from '../spawn.js';

let fx: Fixture;
beforeAll(async () => {
  fx = await buildFixture({ users: 300 });
});
afterAll(() => fx?.cleanup());

it('after stop() the search threads are gone and the serving process exits by itself', async () => {
  // 30 s after start (stop() comes ~2 s in): anything left running keeps the process alive and is killed.
  const r = await runProcess(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures', 'serve-stop.ts'), fx.storeDir], { timeoutMs: 30_000 });
  const out = r.stdout;
  const err = r.stderr;
  const outcome = r.error ? r.error.message : r.status;
  const line = out.split('\n').find((l) => l.startsWith('{'));
  expect(line, err).toBeDefined();
  const { before, after } = JSON.parse(line!) as { before: string[]; after: string[] };
  const ports = (xs: string[]) => xs.filter((x) => x === 'MessagePort').length;
  expect(ports(before)).toBe(2); // the pool was running: one port per search thread
  expect(ports(after)).toBe(0);
  expect(after).not.toContain('TCPServerWrap');
  expect(outcome, err).toBe(0);
}, 60_000);
