// Worker-thread entry: one model replica with its own tfjs backend (the wasm backend runs one
// thread per Node thread, so a worker per core is how training and embedding use both cores).
// Weights come through a SharedArrayBuffer written by the main thread between calls; gradients go
// back through this worker's own SharedArrayBuffer, so no large array is copied per step.
import { parentPort, workerData } from 'node:worker_threads';
import type { UserExample } from '../data/types.js';
import { initBackend } from './backend.js';
import { setNativeGemmThreads } from './native-gemm.js';
import type { EngineMemoryOptions } from './memory.js';
import { LocalEngine, loadFactory, type GradResult } from './train-engine.js';

export interface WorkerInit {
  factoryUrl: string;
  cfg: unknown;
  seed: number;
  backend: string;
  weights: SharedArrayBuffer; // numParams float32, written by the main thread
  grad: SharedArrayBuffer; // numParams float32, written by this worker
  blasThreads: number; // OpenBLAS threads (process-wide) when the native GEMM is in use
  memory: EngineMemoryOptions; // this replica's memory budget (or fixed chunk)
}

export type WorkerRequest =
  | { id: number; op: 'sync'; version: number }
  | { id: number; op: 'gradient'; version: number; examples: UserExample[]; seed: number }
  | { id: number; op: 'evaluate'; version: number; examples: UserExample[] }
  | { id: number; op: 'embed'; version: number; examples: UserExample[] };

export interface WorkerReply {
  id: number;
  ok: boolean;
  result?: GradResult;
  vectors?: Float32Array;
  error?: string;
}

async function main(): Promise<void> {
  const init = workerData as WorkerInit;
  await initBackend(init.backend);
  setNativeGemmThreads(init.blasThreads);
  const factory = await loadFactory(init.factoryUrl);
  const engine = LocalEngine.create(factory, init.cfg, init.seed, init.memory);
  const weights = new Float32Array(init.weights);
  const grad = new Float32Array(init.grad);
  if (weights.length !== engine.numParams) throw new Error(`shared weights hold ${weights.length} values, the model has ${engine.numParams}`);
  let version = -1;
  const port = parentPort!;
  port.on('message', (req: WorkerRequest) => {
    try {
      if (req.version !== version) {
        engine.setWeightsSync(weights);
        version = req.version;
      }
      let reply: WorkerReply;
      switch (req.op) {
        case 'sync':
          reply = { id: req.id, ok: true };
          break;
        case 'gradient':
          reply = { id: req.id, ok: true, result: engine.gradientSync(req.examples, req.seed, grad) };
          break;
        case 'evaluate':
          reply = { id: req.id, ok: true, result: engine.evaluateSync(req.examples) };
          break;
        case 'embed': {
          const vectors = engine.embedSync(req.examples);
          port.postMessage({ id: req.id, ok: true, vectors } satisfies WorkerReply, [vectors.buffer as ArrayBuffer]);
          return;
        }
      }
      port.postMessage(reply);
    } catch (err) {
      port.postMessage({ id: req.id, ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) } satisfies WorkerReply);
    }
  });
  port.postMessage({ ready: true, numParams: engine.numParams });
}

main().catch((err) => {
  parentPort?.postMessage({ fatal: err instanceof Error ? (err.stack ?? err.message) : String(err) });
});
