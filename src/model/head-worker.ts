// Worker-thread entry of the head pool (head-pool.ts): loads the head once, then embeds the batches
// the main thread posts, and reports load failures as a message with id 0.
import { parentPort, workerData } from 'node:worker_threads';
import { UserError } from '../util/errors.js';
import { loadHead, type LoadedHead } from './head-forward.js';
import type { HeadWorkerData } from './head-pool.js';
import type { RecentEvents } from './realtime-head.js';

async function runHeadWorker(data: HeadWorkerData): Promise<void> {
  const { parentPort } = await import('node:worker_threads');
  if (!parentPort) return;
  const port = parentPort;
  let head: LoadedHead;
  try {
    head = await loadHead(data.dir, data.opts);
    if (data.blasThreads) {
      const { setNativeGemmThreads } = await import('./native-gemm.js');
      setNativeGemmThreads(data.blasThreads);
    }
  } catch (err) {
    port.postMessage({ id: 0, error: (err as Error).message, userError: err instanceof UserError });
    return;
  }
  port.on('message', async (msg: { id: number; nowMs: number; states: RecentEvents[] }) => {
    try {
      // Asynchronous readback: the only kind webgpu has; on the other backends the same vectors.
      const vectors = await head.embedAsync(msg.states, msg.nowMs);
      port.postMessage({ id: msg.id, vectors }, vectors.map((v) => v.buffer as ArrayBuffer));
    } catch (err) {
      port.postMessage({ id: msg.id, error: (err as Error).message, userError: err instanceof UserError });
    }
  });
  port.postMessage({ ready: true });
}

await runHeadWorker(workerData as HeadWorkerData);
