// The realtime head on worker threads (head-worker.ts): both cores for inference, since
// tfjs-wasm runs one thread per engine in Node.
import { resolve } from 'node:path';
import { UserError } from '../util/errors.js';
import { spawnWorker, whenReady } from '../util/worker.js';
import { readHeadCheckpoint } from './head-checkpoint.js';
import type { HeadInfo, LoadHeadOptions } from './head-forward.js';
import type { RecentEvents } from './realtime-head.js';

export interface HeadWorkerData {
  dir: string;
  opts: Omit<LoadHeadOptions, 'workers'>;
  /** OpenBLAS threads (process-wide) while the pool runs; unset: leave the default. */
  blasThreads?: number;
}

export interface HeadPool extends HeadInfo {
  workers: number;
  /** Like LoadedHead.embed, with the users split across the worker threads. */
  embed(states: readonly RecentEvents[], nowMs: number): Promise<Float32Array[]>;
  close(): Promise<void>;
}

/**
 * Loads the head on `workers` threads (default 2): tfjs-wasm runs one thread per engine in Node,
 * so this is how the head gets both cores. Each worker verifies the checkpoint itself; results are
 * identical to loadHead's on the same backend (same kernels, same grouping per worker).
 */
export async function loadHeadPool(modelDir: string, opts: LoadHeadOptions & { workers?: number } = {}): Promise<HeadPool> {
  const { workers: n = 2, ...rest } = opts;
  if (!Number.isInteger(n) || n < 1) throw new UserError(`head workers must be a positive integer, got ${n}`);
  // The main thread reads the manifest and vocabulary for the package map; workers load weights.
  const data = await readHeadCheckpoint(modelDir, rest);
  const appIndexOfPackage = new Map<string, number>();
  for (const app of data.vocab.apps) for (const p of app.packages ?? []) appIndexOfPackage.set(p, app.index);
  // Several workers already fill the cores: OpenBLAS threads on top would only contend with them.
  const { availableParallelism } = await import('node:os');
  const wd: HeadWorkerData = { dir: resolve(modelDir), opts: rest, ...(n > 1 ? { blasThreads: Math.max(1, Math.floor(availableParallelism() / n)) } : {}) };
  type Reply = { id: number; vectors?: Float32Array[]; error?: string; userError?: boolean; ready?: boolean };
  const handles = Array.from({ length: n }, () => {
    const w = spawnWorker(import.meta.url, './head-worker', { workerData: wd });
    const pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
    let failure: Error | undefined;
    const fail = (e: Error) => {
      failure ??= e;
      for (const p of pending.values()) p.reject(e);
      pending.clear();
    };
    const ready = new Promise<void>((res, rej) => {
      w.once('error', rej);
      w.on('message', (m: Reply) => {
        if (m.ready) return res();
        if (m.id === 0 && m.error) return rej(m.userError ? new UserError(m.error) : new Error(m.error));
        const p = pending.get(m.id);
        if (!p) return;
        pending.delete(m.id);
        p.resolve(m);
      });
    });
    w.on('error', (e) => fail(e));
    w.on('exit', (code) => fail(new Error(`realtime head worker exited with code ${code}`)));
    let next = 1;
    const call = (states: readonly RecentEvents[], nowMs: number): Promise<Float32Array[]> => {
      if (failure) return Promise.reject(failure);
      const id = next++;
      return new Promise<Reply>((resolveCall, reject) => {
        pending.set(id, { resolve: resolveCall, reject });
        // Only what the head reads crosses the thread boundary.
        w.postMessage({ id, nowMs, states: states.map((s) => ({ events: s.events.map((e) => ({ app: e.app, type: e.type, timestampMs: e.timestampMs })) })) });
      }).then((r) => {
        if (r.error) throw r.userError ? new UserError(r.error) : new Error(r.error);
        return r.vectors!;
      });
    };
    return { w, ready, call };
  });
  const m = data.manifest;
  const pool: HeadPool = {
    featureId: m.featureId,
    baseFeatureId: m.baseFeatureId,
    dim: m.config.outDim,
    maxEvents: m.config.maxEvents,
    manifest: m,
    appIndexOfPackage,
    workers: n,
    async embed(states, nowMs) {
      // Small batches stay on one worker: a thread hop costs more than it saves.
      const parts = states.length < 64 ? 1 : n;
      const size = Math.ceil(states.length / parts);
      const chunks: Promise<Float32Array[]>[] = [];
      for (let i = 0; i < parts; i++) {
        const part = states.slice(i * size, (i + 1) * size);
        if (part.length > 0) chunks.push(handles[i]!.call(part, nowMs));
      }
      return (await Promise.all(chunks)).flat();
    },
    async close() {
      await Promise.all(handles.map((h) => h.w.terminate()));
      if (wd.blasThreads) {
        // The thread count is process-wide: give the next user of OpenBLAS the default back.
        const ng = await import('./native-gemm.js');
        if (ng.loadNativeGemm().ok) ng.resetNativeGemmThreads();
      }
    },
  };
  return whenReady(pool, handles.map((h) => h.ready));
}
