// Worker thread of `aetn prepare`: assembles the shards the main thread hands it, one at a time.
import { parentPort, workerData } from 'node:worker_threads';
import { assembleShard, type AssembleCtx } from './prepare.js';

const ctx = workerData as AssembleCtx;
parentPort!.on('message', (shard: number) => {
  try {
    parentPort!.postMessage({ shard, result: assembleShard(ctx, shard) });
  } catch (err) {
    parentPort!.postMessage({ shard, error: (err as Error).message });
  }
});
parentPort!.postMessage({ ready: true });
