// Concurrent HNSW search for a serving process. hnswlib queries block the thread that runs them,
// so queries go to worker threads, each holding its own copy of the index (memory: one index per
// thread). A query goes to the least busy worker. reloadIfChanged() makes every worker load the
// new generation in the background; queries in flight finish on the generation they started on.
import type { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { spawnWorker, whenReady } from '../util/worker.js';
import { StoreError } from '../store/errors.js';
import type { StoreErrorCode } from '../store/types.js';
import type { Neighbor } from './handle.js';

export interface PoolOptions {
  threads?: number;
  dim?: number;
}

export interface PoolInfo {
  generation: number;
  count: number;
  dim: number;
  efSearch: number;
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

interface Slot {
  worker: Worker;
  busy: number;
  pending: Map<number, Pending>;
}

const STORE_CODES = new Set<string>(['NOT_FOUND', 'INVALID_ARGUMENT', 'FAILED_PRECONDITION']);

export class SearchPool {
  private nextId = 1;
  private closed = false;

  private constructor(
    readonly featureId: string,
    private readonly slots: Slot[],
  ) {}

  static async open(storeDir: string, featureId: string, opts: PoolOptions = {}): Promise<SearchPool> {
    const n = Math.max(1, opts.threads ?? Math.min(4, availableParallelism()));
    const slots: Slot[] = [];
    for (let i = 0; i < n; i++) {
      const workerData = { storeDir, featureId, ...(opts.dim !== undefined ? { dim: opts.dim } : {}) };
      const worker = spawnWorker(import.meta.url, './search-worker', { workerData });
      const slot: Slot = { worker, busy: 0, pending: new Map() };
      worker.on('message', (m: { id: number; ok: boolean; result?: unknown; error?: { message: string; code?: StoreErrorCode; name?: string } }) => {
        const p = slot.pending.get(m.id);
        if (!p) return;
        slot.pending.delete(m.id);
        slot.busy--;
        if (m.ok) p.resolve(m.result);
        else p.reject(m.error?.code ? new StoreError(m.error.code, m.error.message) : new Error(m.error?.message ?? 'search worker failed'));
      });
      const failAll = (err: Error) => {
        for (const p of slot.pending.values()) p.reject(err);
        slot.pending.clear();
        slot.busy = 0;
      };
      worker.on('error', (err: Error & { code?: unknown }) =>
        failAll(typeof err.code === 'string' && STORE_CODES.has(err.code) ? new StoreError(err.code as StoreErrorCode, err.message) : err),
      );
      worker.on('exit', (code) => failAll(new Error(`search worker exited (code ${code})`)));
      slots.push(slot);
    }
    const pool = new SearchPool(featureId, slots);
    return whenReady(pool, slots.map((s) => pool.call(s, { op: 'info' })));
  }

  get threads(): number {
    return this.slots.length;
  }

  search(vector: Float32Array | number[], k: number, ef?: number): Promise<Neighbor[]> {
    const v = vector instanceof Float32Array ? vector : Float32Array.from(vector);
    return this.call(this.pick(), { op: 'search', vector: v, k, ef }) as Promise<Neighbor[]>;
  }

  searchByUser(userId: string, k: number, ef?: number): Promise<Neighbor[]> {
    return this.call(this.pick(), { op: 'searchByUser', userId, k, ef }) as Promise<Neighbor[]>;
  }

  /** Every worker loads the live generation if it changed; true when any did. */
  async reloadIfChanged(): Promise<boolean> {
    const res = (await Promise.all(this.slots.map((s) => this.call(s, { op: 'reload' })))) as { changed: boolean }[];
    return res.some((r) => r.changed);
  }

  async info(): Promise<PoolInfo> {
    return (await this.call(this.slots[0], { op: 'info' })) as PoolInfo;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }

  private pick(): Slot {
    let best = this.slots[0];
    for (const s of this.slots) if (s.busy < best.busy) best = s;
    return best;
  }

  private call(slot: Slot, msg: Record<string, unknown>): Promise<unknown> {
    if (this.closed) return Promise.reject(new Error('the search pool is closed'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      slot.busy++;
      slot.worker.postMessage({ id, ...msg });
    });
  }
}
