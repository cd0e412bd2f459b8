// Worker thread of `aetn generate`: writes one contiguous range of users into part files.
import { parentPort, workerData } from 'node:worker_threads';
import { runPart } from './generate.js';

const done = runPart(workerData, (n) => parentPort!.postMessage({ tick: n }));
parentPort!.postMessage({ done });
