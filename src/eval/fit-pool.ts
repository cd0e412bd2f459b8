// Runs classifier fits (Test #1 hold-outs, Test #2 folds) on worker threads: every fit is independent
// and deterministic from its own seed, so results do not depend on the number of workers or the order
// they finish in. The vector matrices are shared once per model (SharedArrayBuffer), not copied per job.
import type { Worker } from 'node:worker_threads';
import { spawnWorker } from '../util/worker.js';
import { runFitJob, type FitJob, type FitResult } from './protocols.js';

interface Pending {
  jobId: number;
  matrix: number;
  job: FitJob;
  resolve: (r: FitResult) => void;
  reject: (e: Error) => void;
}

class Slot {
  busy: Pending | undefined;
  constructor(readonly worker: Worker, readonly ready: Promise<void>) {}
}

export class FitPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private readonly local = new Map<number, Float32Array>();
  private nextId = 1;
  private nextJob = 1;
  private closed = false;

  /** `workers` <= 1 runs every job inline on the calling thread. */
  constructor(readonly workers: number) {
    if (workers <= 1) return;
    for (let i = 0; i < workers; i++) {
      const worker = spawnWorker(import.meta.url, './fit-worker');
      const slot: Slot = new Slot(
        worker,
        new Promise<void>((resolve, reject) => {
          const onMsg = (m: { ready?: boolean }) => {
            if (m.ready) {
              worker.off('message', onMsg);
              resolve();
            }
          };
          worker.on('message', onMsg);
          worker.once('error', reject);
        }),
      );
      worker.on('message', (m: { jobId?: number; result?: FitResult; error?: string }) => {
        if (m.jobId === undefined || !slot.busy) return;
        const p = slot.busy;
        slot.busy = undefined;
        if (m.error) p.reject(new Error(`classifier fit failed in a worker: ${m.error}`));
        else p.resolve(m.result!);
        this.pump();
      });
      worker.on('error', (err) => {
        const p = slot.busy;
        slot.busy = undefined;
        p?.reject(err);
        for (const q of this.queue.splice(0)) q.reject(err);
      });
      this.slots.push(slot);
    }
  }

  /** Makes a matrix available to jobs; returns its id. */
  share(X: Float32Array): number {
    const id = this.nextId++;
    if (this.slots.length === 0) {
      this.local.set(id, X);
      return id;
    }
    const buffer = new SharedArrayBuffer(X.byteLength);
    new Float32Array(buffer).set(X);
    for (const s of this.slots) s.worker.postMessage({ type: 'share', id, buffer });
    return id;
  }

  release(id: number): void {
    this.local.delete(id);
    for (const s of this.slots) s.worker.postMessage({ type: 'release', id });
  }

  run(matrix: number, job: FitJob): Promise<FitResult> {
    if (this.closed) return Promise.reject(new Error('FitPool is closed'));
    if (this.slots.length === 0) {
      const X = this.local.get(matrix);
      if (!X) return Promise.reject(new Error(`matrix ${matrix} was not shared`));
      // Yield between inline jobs so progress output and signals get a turn.
      return new Promise((resolve, reject) =>
        setImmediate(() => {
          try {
            resolve(runFitJob(X, job));
          } catch (err) {
            reject(err as Error);
          }
        }),
      );
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ jobId: this.nextJob++, matrix, job, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    for (const s of this.slots) {
      if (s.busy || this.queue.length === 0) continue;
      const p = this.queue.shift()!;
      s.busy = p;
      s.ready.then(
        () => s.worker.postMessage({ type: 'job', jobId: p.jobId, matrix: p.matrix, job: p.job }),
        (err: Error) => p.reject(err),
      );
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
