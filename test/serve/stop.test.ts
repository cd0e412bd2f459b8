// Stopping the LMDB serving process releases everything it started: the search pool's worker
// threads are gone after stop(), and the process then ends on its own.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { buildFixture, type Fixture } from './fixture.js';

let fx: Fixture;
beforeAll(async () => {
  fx = await buildFixture({ users: 300 });
});
afterAll(() => fx?.cleanup());

it('after stop() the search threads are gone and the serving process exits by itself', async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fixtures', 'serve-stop.ts'), fx.storeDir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const outcome = await Promise.race([exited, new Promise<'still running'>((r) => setTimeout(() => r('still running'), 30_000))]);
  if (outcome === 'still running') child.kill('SIGKILL');
  const line = out.split('\n').find((l) => l.startsWith('{'));
  expect(line, err).toBeDefined();
  const { before, after } = JSON.parse(line!) as { before: string[]; after: string[] };
  const ports = (xs: string[]) => xs.filter((x) => x === 'MessagePort').length;
  expect(ports(before)).toBe(2); // the pool was running: one port per search thread
  expect(ports(after)).toBe(0);
  expect(after).not.toContain('TCPServerWrap');
  expect(outcome, err).toBe(0);
}, 60_000);
