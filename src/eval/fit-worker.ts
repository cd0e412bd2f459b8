// Worker thread of FitPool: holds the shared vector matrices it was sent and runs classifier jobs.
import { parentPort } from 'node:worker_threads';
import { runFitJob, type FitJob } from './protocols.js';

type Msg =
  | { type: 'share'; id: number; buffer: SharedArrayBuffer }
  | { type: 'release'; id: number }
  | { type: 'job'; jobId: number; matrix: number; job: FitJob };

const matrices = new Map<number, Float32Array>();
const port = parentPort!;
port.on('message', (m: Msg) => {
  if (m.type === 'share') matrices.set(m.id, new Float32Array(m.buffer));
  else if (m.type === 'release') matrices.delete(m.id);
  else {
    try {
      const X = matrices.get(m.matrix);
      if (!X) throw new Error(`matrix ${m.matrix} was not shared with this worker`);
      port.postMessage({ jobId: m.jobId, result: runFitJob(X, m.job) });
    } catch (err) {
      port.postMessage({ jobId: m.jobId, error: (err as Error).stack ?? String(err) });
    }
  }
});
port.postMessage({ ready: true });
