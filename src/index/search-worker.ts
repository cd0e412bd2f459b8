// One search thread of a SearchPool: holds its own copy of the index (hnswlib objects cannot be
// shared between threads) and answers queries one at a time.
import { parentPort, workerData } from 'node:worker_threads';
import { IndexHandle } from './handle.js';
import { StoreError } from '../store/errors.js';

interface Init {
  storeDir: string;
  featureId: string;
  dim?: number;
}

type Request =
  | { id: number; op: 'search'; vector: Float32Array; k: number; ef?: number }
  | { id: number; op: 'searchByUser'; userId: string; k: number; ef?: number }
  | { id: number; op: 'reload' }
  | { id: number; op: 'info' };

const init = workerData as Init;
const port = parentPort!;
const ready = IndexHandle.open(init.storeDir, init.featureId, init.dim !== undefined ? { dim: init.dim } : {});
// A failed open is reported to each request (below), not as an unhandled rejection killing the thread.
ready.catch(() => undefined);

function reply(id: number, result: unknown): void {
  port.postMessage({ id, ok: true, result });
}

function fail(id: number, err: unknown): void {
  const e = err as Error & { code?: string };
  port.postMessage({ id, ok: false, error: { name: e?.name, message: e?.message ?? String(err), code: err instanceof StoreError ? e.code : undefined } });
}

const info = (h: IndexHandle) => ({ generation: h.generation, count: h.count, dim: h.dim, efSearch: h.efSearch });

port.on('message', (req: Request) => {
  ready.then(
    async (h) => {
      try {
        switch (req.op) {
          case 'search':
            return reply(req.id, h.search(req.vector, req.k, req.ef));
          case 'searchByUser':
            return reply(req.id, h.searchByUser(req.userId, req.k, req.ef));
          case 'reload':
            return reply(req.id, { changed: await h.reloadIfChanged(), ...info(h) });
          case 'info':
            return reply(req.id, info(h));
        }
      } catch (err) {
        fail(req.id, err);
      }
    },
    (err: unknown) => fail(req.id, err),
  );
});
