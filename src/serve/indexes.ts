// The IndexSource over the store's HNSW indexes (src/index): one per feature id, opened on first
// use, reloaded when a rebuild publishes a new generation. In-process handles are fastest per
// query; a SearchPool (worker threads) keeps long searches off the event loop that serves rankers.
import type { Logger } from 'pino';
import { IndexHandle } from '../index/handle.js';
import { SearchPool } from '../index/pool.js';
import type { AnnSearcher, IndexSource, Neighbour } from './backend.js';

interface Entry {
  searcher: AnnSearcher;
  reload(): Promise<boolean>;
  close(): Promise<void>;
}

export interface StoreIndexesOptions {
  /** 0: search on the serving thread; N > 0: a pool of N worker threads per feature. */
  threads?: number;
  log: Logger;
  /** Dimension check per feature (from the store's registry). */
  dimOf?: (featureId: string) => number | undefined;
}

async function openEntry(storeDir: string, featureId: string, opts: StoreIndexesOptions): Promise<Entry> {
  const dim = opts.dimOf?.(featureId);
  if (!opts.threads) {
    const h = await IndexHandle.open(storeDir, featureId, dim !== undefined ? { dim } : {});
    const searcher: AnnSearcher = {
      get size() {
        return h.count;
      },
      search: (v, k, ef) => h.search(v, k, ef) as Neighbour[],
    };
    return { searcher, reload: () => h.reloadIfChanged(), close: async () => {} };
  }
  const pool = await SearchPool.open(storeDir, featureId, { threads: opts.threads, ...(dim !== undefined ? { dim } : {}) });
  let size = (await pool.info()).count;
  const searcher: AnnSearcher = {
    get size() {
      return size;
    },
    search: (v, k, ef) => pool.search(v, k, ef),
  };
  return {
    searcher,
    reload: async () => {
      const changed = await pool.reloadIfChanged();
      if (changed) size = (await pool.info()).count;
      return changed;
    },
    close: () => pool.close(),
  };
}

export class StoreIndexes implements IndexSource {
  private readonly entries = new Map<string, Promise<Entry | undefined>>();

  constructor(
    private readonly storeDir: string,
    private readonly opts: StoreIndexesOptions,
  ) {}

  get(featureId: string): Promise<AnnSearcher | undefined> {
    let e = this.entries.get(featureId);
    if (!e) {
      e = openEntry(this.storeDir, featureId, this.opts).then(
        (x) => {
          this.opts.log.info({ featureId, size: x.searcher.size, threads: this.opts.threads ?? 0 }, 'index loaded');
          return x;
        },
        (err: Error & { code?: string }) => {
          // No index yet (or a refused one): forget it so the next call, or the poller, tries again.
          this.entries.delete(featureId);
          if (err.code === 'NOT_FOUND') return undefined;
          throw err;
        },
      );
      this.entries.set(featureId, e);
    }
    return e.then((x) => x?.searcher);
  }

  async refresh(): Promise<void> {
    for (const [featureId, p] of this.entries) {
      const e = await p.catch(() => undefined);
      if (!e) continue;
      try {
        if (await e.reload()) this.opts.log.info({ featureId, size: e.searcher.size }, 'index reloaded (new generation)');
      } catch (err) {
        this.opts.log.warn({ err, featureId }, 'index reload failed; serving the loaded generation');
      }
    }
  }

  async close(): Promise<void> {
    const all = [...this.entries.values()];
    this.entries.clear();
    await Promise.all(all.map(async (p) => (await p.catch(() => undefined))?.close()));
  }
}
