// Starting worker threads, the one copy. Every pool in the code base (data generation and
// preparation, classifier fits, index search, model training, the realtime head) starts its
// workers here and waits for them with whenReady.
import { Worker, type WorkerOptions } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

/**
 * Starts a worker thread running the module `name` (a path without extension, relative to `from`,
 * the caller's `import.meta.url`). Compiled code (dist/) runs `name.js`. From the TypeScript
 * sources (vitest, tsx) the worker runs `name.ts` and registers tsx's loader first: loader hooks of
 * the parent thread do not reach worker threads on Node 20.
 */
export function spawnWorker(from: string | URL, name: string, options: WorkerOptions = {}): Worker {
  const base = String(from);
  const fromSource = base.endsWith('.ts');
  const url = new URL(`${name}.${fromSource ? 'ts' : 'js'}`, base);
  if (!fromSource) return new Worker(url, options);
  const bootstrap = `import(${JSON.stringify(tsxApi())}).then((m) => { m.register(); return import(${JSON.stringify(url.href)}); });`;
  return new Worker(bootstrap, { ...options, eval: true });
}

/** tsx's loader API as a file URL: resolved here, because the eval'd bootstrap has no module base. */
function tsxApi(): string {
  const pkg = createRequire(import.meta.url).resolve('tsx/package.json');
  return pathToFileURL(join(dirname(pkg), 'dist', 'esm', 'api', 'index.mjs')).href;
}

/**
 * Waits until every worker of a new pool is ready and returns the pool; if one fails to start, the
 * pool is closed (no worker is left running) and the first error is thrown.
 */
export async function whenReady<P extends { close(): Promise<void> }>(pool: P, ready: Iterable<Promise<unknown>>): Promise<P> {
  try {
    await Promise.all(ready);
  } catch (err) {
    await pool.close();
    throw err;
  }
  return pool;
}
